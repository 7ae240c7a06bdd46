// virtio-scsi queues on a reactor: request queues (SCSI commands through the LUN layer,
// nothing allocated per request), the control queue (task management, asynchronous
// notification) and the event queue (hot-plug events to the guest).
//
// Per reactor and controller, a ScsiCtrlState holds the LUNs (with this reactor's bdev
// channels) shared by every queue of the controller running here. In-flight commands are
// also published in a SharedArrayBuffer per request queue (target + tag per head), which
// the control queue, possibly on another reactor, reads to answer ABORT TASK, QUERY TASK
// and the reset functions.
//
// With the front end's inflight region (INFLIGHT_SHMFD), every queue marks the heads it
// fetched there, as blk does, so that a restarted back end knows what was left unanswered:
// - request queues run those commands again, oldest first, before fetching new ones;
// - the control queue runs its unanswered TMFs again, and takes new ones, only once the
//   request queues are back (or after RECOVER_WAIT_MS): an ABORT TASK must find the re-run
//   command it aborts, or the guest would retry it while the old one still runs;
// - the event queue takes the buffers it held back first, so none is lost, and flags
//   VIRTIO_SCSI_T_EVENTS_MISSED: the event that was being written died with the back end.
//   (libvhost-user re-pops unanswered elements of every queue the same way.)
import { CHAIN_OK, SplitQueueSpec } from '../../src/virtio/split_queue.js';
import { VirtioQueue } from '../../src/virtio/virtio_queue.js';
import { eventfdDrain } from '../../native/libc.js';
import { GuestMemory, MemRegionSpec } from '../../src/memory/guest_memory.js';
import { SegmentTable } from '../../bdev/bdev_io.js';
import { BdevChannelSpec } from '../../bdev/types.js';
import { blockIoDone, DataDir, executeScsi, LunInfo, ScsiLun, ScsiTask, ScsiTaskSink } from './scsi/index.js';
import * as V from './virtio_scsi.js';

/** A target as the control plane describes it to a reactor (LUN 0 only). */
export interface ScsiTargetSpec {
  target: number;
  /** Changes every time the slot is (re)filled: distinguishes a new target from an old one. */
  gen: number;
  lun: LunInfo;
  bdev: BdevChannelSpec;
}

/** Words per head in a request queue's in-flight table: key (target + 1, 0 = free), tag lo, tag hi, spare. */
export const INFLIGHT_WORDS = 4;

/** Per reactor and controller: the LUNs this reactor's queues of the controller use. */
export class ScsiCtrlState {
  readonly luns: (ScsiLun | null)[] = new Array<ScsiLun | null>(V.SCSI_MAX_TARGETS).fill(null);
  readonly gens = new Float64Array(V.SCSI_MAX_TARGETS);
  /** Commands in flight per target, on this reactor. */
  readonly inflight = new Int32Array(V.SCSI_MAX_TARGETS);
  /** REPORT LUNS list of every target: LUN 0. */
  readonly lunIds: ArrayLike<number> = Uint32Array.of(0);
  /** Called when the last in-flight command of a removed target finishes. */
  onTargetIdle: ((target: number) => void) | null = null;
  /** Queues of the controller on this reactor. */
  refs = 0;

  constructor(readonly ctrlr: string) {}

  /** Removed targets whose last command finished (bit per target), handed to onTargetIdle by flushIdle. */
  idleTargets = 0;

  taskDone(t: number): void {
    if (--this.inflight[t] === 0) {
      const lun = this.luns[t];
      if (lun !== null && lun.removed) this.idleTargets |= 1 << t;
    }
  }

  /**
   * Reports removed targets that went idle. Called from a queue's poll(), not from inside a
   * completion: the target's channel may be closed by the callback.
   */
  flushIdle(): void {
    const m = this.idleTargets;
    this.idleTargets = 0;
    for (let t = 0; t < this.luns.length; t++) {
      if ((m & (1 << t)) !== 0 && this.inflight[t] === 0 && this.onTargetIdle !== null) this.onTargetIdle(t);
    }
  }
}

/** Counters a queue keeps for diagnosis. */
export interface ScsiQueueCounters {
  requests: number; errors: number; badChains: number; badTargets: number; lastError: string;
}

export interface ScsiQueueSpec {
  ctrlr: string;
  qid: number;
  mem: MemRegionSpec[];
  ring: SplitQueueSpec;
  kickFd: number;
  /** This queue's part of the front end's inflight-tracking region, and the queues it covers. */
  inflight?: { addr: number; numQueues: number };
}

/** Longest the control queue holds TMFs back waiting for the request queues after a (re)start. */
export const RECOVER_WAIT_MS = 3000;

const CHAIN_ERRORS: Record<number, string> = {
  [-1]: 'a buffer address is outside guest memory', [-2]: 'the descriptor chain loops or is longer than its table',
  [-3]: 'a next index is out of range', [-4]: 'a malformed indirect descriptor table',
  [-5]: 'a device-readable descriptor follows a writable one', [-6]: 'the request has more segments than seg_max',
};

function newCounters(): ScsiQueueCounters { return { requests: 0, errors: 0, badChains: 0, badTargets: 0, lastError: '' }; }

/** Copies up to `len` bytes of segments [from, from+count) into dst; returns the bytes copied. */
function gather(mem: GuestMemory, s: SegmentTable, from: number, count: number, dst: Uint8Array, len: number): number {
  let got = 0;
  for (let k = from; k < from + count && got < len; k++) {
    const u8 = mem.u8[s.region[k]], o = s.off[k], l = s.len[k];
    for (let i = 0; i < l && got < len; i++) dst[got++] = u8[o + i];
  }
  return got;
}

function putLe32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff; b[o + 1] = (v >>> 8) & 0xff; b[o + 2] = (v >>> 16) & 0xff; b[o + 3] = (v >>> 24) & 0xff;
}

/** Copies src[0..len) into segments [from, from+count); returns the bytes written. */
function scatter(mem: GuestMemory, s: SegmentTable, from: number, count: number, src: Uint8Array, len: number): number {
  let put = 0;
  for (let k = from; k < from + count && put < len; k++) {
    const u8 = mem.u8[s.region[k]], o = s.off[k], l = s.len[k];
    for (let i = 0; i < l && put < len; i++) u8[o + i] = src[put++];
  }
  return put;
}

/** A virtio-scsi queue: the virtqueue machinery, plus the answer to a chain that cannot be served. */
abstract class QueueBase extends VirtioQueue<ScsiQueueCounters> {
  constructor(kind: string, readonly spec: ScsiQueueSpec, segsPerHead: number) {
    super(`scsi:${spec.ctrlr}:${kind}${spec.qid}`, spec, segsPerHead, newCounters());
  }

  /** A chain that cannot be served goes back unused (as SPDK does). */
  protected badChain(head: number, why: string): void {
    this.counters.badChains++;
    this.counters.lastError = `request ${head}: ${why}`;
    this.used(head, 0);
  }
}

// ---------------------------------------------------------------- request queue

export class ScsiRequestQueue extends QueueBase implements ScsiTaskSink {
  private readonly tasks: ScsiTask[];
  private readonly busy: Uint8Array;
  private readonly tgt: Int8Array;
  /** First writable segment (the response) and the response area's size, per head. */
  private readonly respSeg: Int32Array;
  private readonly respN: Int32Array;
  private readonly respLen: Int32Array;
  /** A writable segment narrowed to the data-in part (restored before the response is written). */
  private readonly saveIdx: Int32Array;
  private readonly saveOff: Float64Array;
  private readonly saveLen: Int32Array;
  private readonly hdr = new Uint8Array(V.CMD_REQ_SIZE);
  private readonly resp = new Uint8Array(V.CMD_RESP_SIZE);
  private readonly respView = new DataView(this.resp.buffer);
  /** In-flight table shared with the control queue: INFLIGHT_WORDS Int32 per head. */
  readonly table: Int32Array;
  private count = 0;
  /** Index of the first segment after a skip (set by skip()). */
  private first = 0;

  constructor(spec: ScsiQueueSpec, readonly st: ScsiCtrlState, table: SharedArrayBuffer | null = null) {
    super('q', spec, V.SCSI_CHAIN_SEGS);
    const n = this.vq.size;
    this.tasks = [];
    for (let i = 0; i < n; i++) this.tasks.push(new ScsiTask(this, i, this.segs, blockIoDone));
    this.busy = new Uint8Array(n);
    this.tgt = new Int8Array(n);
    this.respSeg = new Int32Array(n);
    this.respN = new Int32Array(n);
    this.respLen = new Int32Array(n);
    this.saveIdx = new Int32Array(n).fill(-1);
    this.saveOff = new Float64Array(n);
    this.saveLen = new Int32Array(n);
    this.table = new Int32Array(table ?? new SharedArrayBuffer(n * INFLIGHT_WORDS * 4), 0, n * INFLIGHT_WORDS);
  }

  get inFlight(): number { return this.count; }

  // runRecovered() (VirtioQueue) runs the commands the previous back end left in flight,
  // oldest first: called when the queue starts, before the control queue can look for them.

  poll(): number {
    if (this.st.idleTargets !== 0) this.st.flushIdle();
    return this.pollRequests();
  }

  /** Runs one request (handed over by VirtioQueue's fetch loop, or recovered). */
  handle(head: number): void {
    this.counters.requests++;
    if (this.busy[head] !== 0) { this.vq.broken = `request ${head} was made available while still in flight`; return; }
    this.fetched(head);
    const c = this.chain, s = this.segs;
    const base = head * V.SCSI_CHAIN_SEGS;
    const rc = this.vq.readChain(head, s, base, V.SCSI_CHAIN_SEGS, c);
    if (rc !== CHAIN_OK) { this.badChain(head, CHAIN_ERRORS[rc]); return; }
    // Without a request header (up to the task attributes) or a response header there is
    // nothing to answer with: the chain goes back unused (as SPDK does).
    if (c.readBytes < V.CMD_REQ_FIXED || c.writeBytes < V.CMD_RESP_FIXED) {
      this.badChain(head, `request (${c.readBytes} readable bytes) or response (${c.writeBytes} writable) too short`);
      return;
    }
    const hdrLen = c.readBytes < V.CMD_REQ_SIZE ? c.readBytes : V.CMD_REQ_SIZE;
    // the header is read where it lies when one segment holds it (each field read once)
    let h: Uint8Array = this.hdr, ho = 0;
    if (s.len[base] >= hdrLen) { h = this.mem.u8[s.region[base]]; ho = s.off[base]; }
    else gather(this.mem, s, base, c.nRead, h, hdrLen);
    const wBase = base + c.nRead, nW = c.n - c.nRead;
    const respLen = c.writeBytes < V.CMD_RESP_SIZE ? c.writeBytes : V.CMD_RESP_SIZE;
    this.respSeg[head] = wBase;
    this.respN[head] = nW;
    this.respLen[head] = respLen;
    this.saveIdx[head] = -1;
    this.busy[head] = 1;
    this.count++;
    const dataOut = c.readBytes - hdrLen, dataIn = c.writeBytes - respLen;
    if (dataOut > 0 && dataIn > 0) {
      // bidirectional commands need VIRTIO_SCSI_F_INOUT, which is not offered
      this.counters.errors++;
      this.reply(head, V.VIRTIO_SCSI_S_FAILURE);
      return;
    }
    const addr = V.decodeLun(h[ho], h[ho + 1], h[ho + 2], h[ho + 3]);
    const t = addr >>> 16;
    const lun = addr < 0 || t >= V.SCSI_MAX_TARGETS ? null : this.st.luns[t];
    if (lun === null) { this.counters.badTargets++; this.reply(head, V.VIRTIO_SCSI_S_BAD_TARGET); return; }
    if ((addr & 0xffff) !== 0) { this.counters.badTargets++; this.reply(head, V.VIRTIO_SCSI_S_INCORRECT_LUN); return; }
    const task = this.tasks[head];
    task.loadCdb(h, ho + V.CMD_REQ_FIXED, hdrLen - V.CMD_REQ_FIXED);
    if (dataOut > 0) {
      this.skip(head, base, c.nRead, hdrLen, false);
      task.setData(this.mem, s, this.first, base + c.nRead - this.first, dataOut, DataDir.TO_DEVICE);
    } else if (dataIn > 0) {
      this.skip(head, wBase, nW, respLen, true);
      task.setData(this.mem, s, this.first, wBase + nW - this.first, dataIn, DataDir.FROM_DEVICE);
    } else {
      task.setData(null, s, base, 0, 0, DataDir.NONE);
    }
    task.targetLuns = this.st.lunIds;
    task.targetLunCount = 1;
    this.tgt[head] = t;
    this.st.inflight[t]++;
    const tab = this.table, w = head * INFLIGHT_WORDS;
    tab[w + 1] = h[ho + 8] | (h[ho + 9] << 8) | (h[ho + 10] << 16) | (h[ho + 11] << 24);
    tab[w + 2] = h[ho + 12] | (h[ho + 13] << 8) | (h[ho + 14] << 16) | (h[ho + 15] << 24);
    Atomics.store(tab, w, t + 1);
    executeScsi(lun, task);
  }

  /**
   * Skips `skip` bytes of segments [from, from+count): narrows the segment where the skip
   * ends in place (remembered per head when `save`, to be restored) and sets this.first to
   * the first segment after it.
   */
  private skip(head: number, from: number, count: number, skip: number, save: boolean): void {
    const s = this.segs, end = from + count;
    let k = from;
    while (k < end && skip >= s.len[k]) { skip -= s.len[k]; k++; }
    if (k < end && skip > 0) {
      if (save) { this.saveIdx[head] = k; this.saveOff[head] = s.off[k]; this.saveLen[head] = s.len[k]; }
      s.off[k] += skip;
      s.len[k] -= skip;
    }
    this.first = k;
  }

  onScsiTaskDone(task: ScsiTask): void {
    const head = task.tag, t = this.tgt[head];
    Atomics.store(this.table, head * INFLIGHT_WORDS, 0);
    if (task.status !== 0) this.counters.errors++;
    this.st.taskDone(t);
    let senseLen = task.senseLen;
    const room = this.respLen[head] - V.CMD_RESP_FIXED;
    if (senseLen > room) senseLen = room;
    const response = task.overrun ? V.VIRTIO_SCSI_S_OVERRUN : V.VIRTIO_SCSI_S_OK;
    const dataIn = task.dir === DataDir.FROM_DEVICE ? task.dataTransferred : 0;
    const k = this.respSeg[head], segs = this.segs;
    this.restore(head);
    if (senseLen === 0 && segs.len[k] >= V.CMD_RESP_FIXED) {
      // common case: no sense, the fixed part in one segment: written in place (the guest
      // reads sense only up to sense_len, so the sense area is left as it is)
      const u8 = this.mem.u8[segs.region[k]], o = segs.off[k];
      putLe32(u8, o, 0);
      putLe32(u8, o + 4, task.residual);
      u8[o + 8] = 0; u8[o + 9] = 0;
      u8[o + 10] = task.status;
      u8[o + 11] = response;
      this.finishInPlace(head, dataIn);
      return;
    }
    const dv = this.respView, r = this.resp;
    dv.setUint32(0, senseLen, true);
    dv.setUint32(4, task.residual, true);
    dv.setUint16(8, 0, true);
    r[10] = task.status;
    r[11] = response;
    const sense = task.sense;
    for (let i = 0; i < senseLen; i++) r[V.CMD_RESP_FIXED + i] = sense[i];
    for (let i = V.CMD_RESP_FIXED + senseLen; i < V.CMD_RESP_SIZE; i++) r[i] = 0;
    this.finish(head, dataIn);
  }

  /** Undoes skip()'s narrowing of a data segment. */
  private restore(head: number): void {
    const i = this.saveIdx[head];
    if (i >= 0) { this.segs.off[i] = this.saveOff[head]; this.segs.len[i] = this.saveLen[head]; this.saveIdx[head] = -1; }
  }

  /** finish() for a response already written to guest memory. */
  private finishInPlace(head: number, dataIn: number): void {
    this.busy[head] = 0;
    this.count--;
    this.used(head, this.respLen[head] + dataIn);
  }

  /** Answers without running a command: only the virtio-scsi response code is set. */
  private reply(head: number, response: number): void {
    const r = this.resp;
    r.fill(0);
    r[11] = response;
    this.finish(head, 0);
  }

  private finish(head: number, dataIn: number): void {
    this.restore(head);
    const len = this.respLen[head];
    scatter(this.mem, this.segs, this.respSeg[head], this.respN[head], this.resp, len);
    this.busy[head] = 0;
    this.count--;
    this.used(head, len + dataIn);
  }
}

// ---------------------------------------------------------------- control queue

const CTRL_SEGS = 16;
/** What a pending task-management function waits for. */
const WAIT_TAG = 1, WAIT_TARGET = 2;

export class ScsiControlQueue extends QueueBase {
  private readonly hdr = new Uint8Array(V.TMF_REQ_SIZE);
  private readonly out = new Uint8Array(8);
  /** Request queues' in-flight tables, by qid (set by the control plane as queues start and stop). */
  tables: (Int32Array | null)[] = [];
  /** Pending TMFs: kind, target, queue/head of the task waited for, tag. */
  private readonly pWait: Uint8Array;
  private readonly pTarget: Int32Array;
  private readonly pQueue: Int32Array;
  private readonly pHead: Int32Array;
  private readonly pTagLo: Int32Array;
  private readonly pTagHi: Int32Array;
  private pending = 0;
  readonly tmfs = { total: 0, rejected: 0, waited: 0 };
  /**
   * With an inflight region, TMFs wait until this many request-queue tables are here (the
   * front end starts every queue the region covers), or until holdUntil (performance.now()).
   */
  private readonly awaitTables: number;
  private holdUntil = 0;
  /** TMFs are held back (see awaitTables). */
  holding: boolean;

  constructor(spec: ScsiQueueSpec, readonly st: ScsiCtrlState, nowMs = 0) {
    super('ctrl', spec, CTRL_SEGS);
    this.awaitTables = spec.inflight ? Math.max(0, spec.inflight.numQueues - V.FIRST_REQUESTQ) : 0;
    this.holding = spec.inflight !== undefined;
    this.holdUntil = nowMs + RECOVER_WAIT_MS;
    const n = this.vq.size;
    this.pWait = new Uint8Array(n);
    this.pTarget = new Int32Array(n);
    this.pQueue = new Int32Array(n);
    this.pHead = new Int32Array(n);
    this.pTagLo = new Int32Array(n);
    this.pTagHi = new Int32Array(n);
  }

  setTables(bufs: (SharedArrayBuffer | null)[]): void {
    this.tables = bufs.map((b) => (b ? new Int32Array(b) : null));
  }

  /** TMFs waiting for commands (recovered ones not run yet stay marked in the region for the next start). */
  get inFlight(): number { return this.pending; }

  override armInterrupt(): boolean {
    return super.armInterrupt() && this.pending === 0 && this.recoveredHeads === null && !this.holding;
  }

  /** Ends the hold once every request queue of the front end has its table here, or the wait is over. */
  resume(nowMs: number): boolean {
    if (!this.holding) return true;
    let n = 0;
    for (let q = 0; q < this.tables.length; q++) if (this.tables[q] !== null) n++;
    if (n < this.awaitTables && nowMs < this.holdUntil) return false;
    this.holding = false;
    return true;
  }

  /** Runs the TMFs the previous back end left unanswered (once resumed); returns how many. */
  override runRecovered(): number {
    return this.holding ? 0 : super.runRecovered();
  }

  poll(): number {
    const vq = this.vq;
    if (vq.broken !== null) return 0;
    let work = this.flushUsed();
    if (this.pending > 0) work += this.checkPending();
    if (this.stopping) {
      if (this.pending === 0 && this.onDrained) { const f = this.onDrained; this.onDrained = null; f(this); }
      return work;
    }
    if (this.holding && !this.resume(performance.now())) return work;
    if (this.recoveredHeads !== null) work += this.runRecovered();
    const n = this.fetchHeads();
    if (vq.broken !== null) { this.fail(vq.broken); return work + n; }
    work += n + this.flushUsed();
    return work;
  }

  /** Runs one request (handed over by VirtioQueue's fetch loop, or recovered). */
  handle(head: number): void {
    this.counters.requests++;
    if (this.pWait[head] !== 0) { this.vq.broken = `control request ${head} was made available while still in flight`; return; }
    this.fetched(head);
    const c = this.chain, s = this.segs, base = head * CTRL_SEGS;
    const rc = this.vq.readChain(head, s, base, CTRL_SEGS, c);
    if (rc !== CHAIN_OK) { this.badChain(head, CHAIN_ERRORS[rc]); return; }
    if (c.readBytes < 4) { this.badChain(head, `control request of ${c.readBytes} bytes has no type`); return; }
    const h = this.hdr;
    gather(this.mem, s, base, c.nRead, h, V.TMF_REQ_SIZE);
    const type = h[0] | (h[1] << 8) | (h[2] << 16) | (h[3] << 24);
    switch (type) {
      case V.VIRTIO_SCSI_T_TMF:
        if (c.readBytes < V.TMF_REQ_SIZE || c.writeBytes < V.TMF_RESP_SIZE) {
          this.badChain(head, `TMF request/response of ${c.readBytes}/${c.writeBytes} bytes (need ${V.TMF_REQ_SIZE}/${V.TMF_RESP_SIZE})`);
          return;
        }
        this.tmf(head);
        return;
      case V.VIRTIO_SCSI_T_AN_QUERY:
      case V.VIRTIO_SCSI_T_AN_SUBSCRIBE: {
        if (c.readBytes < V.AN_REQ_SIZE || c.writeBytes < V.AN_RESP_SIZE) {
          this.badChain(head, `AN request/response of ${c.readBytes}/${c.writeBytes} bytes (need ${V.AN_REQ_SIZE}/${V.AN_RESP_SIZE})`);
          return;
        }
        // No asynchronous events are supported: event_actual 0, response OK (as QEMU).
        const o = this.out;
        o[0] = 0; o[1] = 0; o[2] = 0; o[3] = 0; o[4] = V.VIRTIO_SCSI_S_OK;
        this.answer(head, o, V.AN_RESP_SIZE);
        return;
      }
      default:
        // Reserved types have no response layout to answer in: returned unused (as SPDK).
        this.badChain(head, `unknown control request type ${type >>> 0}`);
    }
  }

  private tmf(head: number): void {
    this.tmfs.total++;
    const h = this.hdr;
    const subtype = (h[4] | (h[5] << 8) | (h[6] << 16) | (h[7] << 24)) >>> 0;
    const addr = V.decodeLun(h[8], h[9], h[10], h[11]);
    const t = addr >>> 16;
    if (addr < 0 || t >= V.SCSI_MAX_TARGETS || this.st.luns[t] === null) { this.respond(head, V.VIRTIO_SCSI_S_BAD_TARGET); return; }
    if (subtype !== V.VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET && (addr & 0xffff) !== 0) {
      this.respond(head, V.VIRTIO_SCSI_S_INCORRECT_LUN);
      return;
    }
    const lo = h[16] | (h[17] << 8) | (h[18] << 16) | (h[19] << 24);
    const hi = h[20] | (h[21] << 8) | (h[22] << 16) | (h[23] << 24);
    switch (subtype) {
      case V.VIRTIO_SCSI_T_TMF_ABORT_TASK: {
        // Commands are not cancelled in the bdev: the TMF completes once the task has
        // (the virtio spec requires the aborted request to be completed first).
        const at = this.findTag(t, lo, hi);
        if (at < 0) { this.respond(head, V.VIRTIO_SCSI_S_FUNCTION_COMPLETE); return; }
        this.wait(head, WAIT_TAG, t, at >>> 16, at & 0xffff, lo, hi);
        return;
      }
      case V.VIRTIO_SCSI_T_TMF_ABORT_TASK_SET:
      case V.VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET:
      case V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET:
      case V.VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET:
        if (!this.targetBusy(t)) { this.respond(head, V.VIRTIO_SCSI_S_FUNCTION_COMPLETE); return; }
        this.wait(head, WAIT_TARGET, t, 0, 0, 0, 0);
        return;
      case V.VIRTIO_SCSI_T_TMF_QUERY_TASK:
        this.respond(head, this.findTag(t, lo, hi) >= 0 ? V.VIRTIO_SCSI_S_FUNCTION_SUCCEEDED : V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
        return;
      case V.VIRTIO_SCSI_T_TMF_QUERY_TASK_SET:
        this.respond(head, this.targetBusy(t) ? V.VIRTIO_SCSI_S_FUNCTION_SUCCEEDED : V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
        return;
      case V.VIRTIO_SCSI_T_TMF_CLEAR_ACA: // NACA is rejected in every CDB: there is never an ACA condition
      default:
        this.tmfs.rejected++;
        this.respond(head, V.VIRTIO_SCSI_S_FUNCTION_REJECTED);
    }
  }

  /** (qid << 16) | head of the in-flight command of target t with this tag, or -1. */
  private findTag(t: number, lo: number, hi: number): number {
    const tabs = this.tables;
    for (let q = 0; q < tabs.length; q++) {
      const tab = tabs[q];
      if (tab === null) continue;
      for (let w = 0; w < tab.length; w += INFLIGHT_WORDS) {
        if (Atomics.load(tab, w) === t + 1 && tab[w + 1] === lo && tab[w + 2] === hi) return (q << 16) | (w / INFLIGHT_WORDS);
      }
    }
    return -1;
  }

  private targetBusy(t: number): boolean {
    const tabs = this.tables;
    for (let q = 0; q < tabs.length; q++) {
      const tab = tabs[q];
      if (tab === null) continue;
      for (let w = 0; w < tab.length; w += INFLIGHT_WORDS) if (Atomics.load(tab, w) === t + 1) return true;
    }
    return false;
  }

  private wait(head: number, kind: number, t: number, q: number, at: number, lo: number, hi: number): void {
    this.tmfs.waited++;
    this.pWait[head] = kind;
    this.pTarget[head] = t; this.pQueue[head] = q; this.pHead[head] = at; this.pTagLo[head] = lo; this.pTagHi[head] = hi;
    this.pending++;
  }

  private checkPending(): number {
    let done = 0;
    const n = this.vq.size;
    for (let head = 0; head < n && this.pending > 0; head++) {
      const kind = this.pWait[head];
      if (kind === 0) continue;
      let busy: boolean;
      if (kind === WAIT_TAG) {
        const tab = this.tables[this.pQueue[head]] ?? null, w = this.pHead[head] * INFLIGHT_WORDS;
        busy = tab !== null && w < tab.length && Atomics.load(tab, w) === this.pTarget[head] + 1 &&
          tab[w + 1] === this.pTagLo[head] && tab[w + 2] === this.pTagHi[head];
      } else {
        busy = this.targetBusy(this.pTarget[head]);
      }
      if (busy) continue;
      this.pWait[head] = 0;
      this.pending--;
      this.respond(head, V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
      done++;
    }
    return done;
  }

  private respond(head: number, response: number): void {
    this.out[0] = response;
    this.answer(head, this.out, V.TMF_RESP_SIZE);
  }

  /** Writes the response into the writable part of the chain (as decoded by handle). */
  private answer(head: number, src: Uint8Array, len: number): void {
    // re-decode: a pending TMF's chain was decoded many requests ago, the table is per head
    const c = this.chain, base = head * CTRL_SEGS;
    const rc = this.vq.readChain(head, this.segs, base, CTRL_SEGS, c);
    if (rc !== CHAIN_OK) { this.used(head, 0); return; }
    scatter(this.mem, this.segs, base + c.nRead, c.n - c.nRead, src, len);
    this.used(head, len);
  }
}

// ---------------------------------------------------------------- event queue

const EVENT_SEGS = 8;
const EVENT_RING = 64;

export class ScsiEventQueue extends QueueBase {
  private readonly evType = new Uint32Array(EVENT_RING);
  private readonly evTarget = new Uint8Array(EVENT_RING);
  private readonly evReason = new Uint32Array(EVENT_RING);
  private rd = 0;
  private wr = 0;
  /** An event was dropped for lack of a buffer: the next one carries VIRTIO_SCSI_T_EVENTS_MISSED. */
  missed: boolean;
  private readonly ev = new Uint8Array(V.EVENT_SIZE);
  private readonly evView = new DataView(this.ev.buffer);
  readonly sent = { events: 0, dropped: 0 };

  /** Next recovered buffer to use (index into recoveredHeads). */
  private spare = 0;

  constructor(spec: ScsiQueueSpec, missed = false) {
    super('event', spec, EVENT_SEGS);
    // a buffer in flight means an event was being written when the previous back end died
    this.missed = missed || this.recoveredHeads !== null;
  }

  get inFlight(): number { return 0; }

  /** Never called: event buffers are taken by nextBuffer() when there is an event to write. */
  handle(_head: number): void { /* nothing */ }

  /** Queues an event for the guest (sent on the next poll, or dropped if it has no buffer). */
  post(event: number, target: number, reason: number): void {
    if (this.wr - this.rd >= EVENT_RING) { this.missed = true; this.sent.dropped++; return; }
    const i = this.wr % EVENT_RING;
    this.evType[i] = event; this.evTarget[i] = target; this.evReason[i] = reason;
    this.wr++;
  }

  override armInterrupt(): boolean {
    eventfdDrain(this.spec.kickFd);
    if (this.wr !== this.rd) return false;
    // Buffers the guest posts are kept until there is an event: only a pending
    // "events missed" notice needs a kick when one arrives.
    if (this.missed) return this.recoveredHeads === null && this.vq.enableKicks();
    return true;
  }

  poll(): number {
    const vq = this.vq;
    if (vq.broken !== null) return 0;
    let work = this.flushUsed();
    if (this.stopping) {
      if (this.onDrained) { const f = this.onDrained; this.onDrained = null; f(this); }
      return work;
    }
    if (this.wr === this.rd && !this.missed) return work;
    while (this.wr !== this.rd || this.missed) {
      const head = this.nextBuffer();
      if (head < 0) break;
      let event: number, target = 0, reason = 0;
      if (this.wr !== this.rd) {
        const i = this.rd % EVENT_RING;
        event = this.evType[i]; target = this.evTarget[i]; reason = this.evReason[i];
        this.rd++;
      } else {
        event = V.VIRTIO_SCSI_T_NO_EVENT;
      }
      if (this.missed) { event = (event | V.VIRTIO_SCSI_T_EVENTS_MISSED) >>> 0; this.missed = false; }
      this.write(head, event, target, reason);
      work++;
    }
    if (vq.broken !== null) { this.fail(vq.broken); return work; }
    if (this.wr !== this.rd) {
      // no buffer: the events are lost, the guest learns it from the flag on the next one
      this.sent.dropped += this.wr - this.rd;
      this.rd = this.wr;
      this.missed = true;
    }
    return work + this.flushUsed();
  }

  /** A buffer the previous back end fetched and never used, or -1. */
  private recoveredBuffer(): number {
    const list = this.recoveredHeads;
    if (list === null) return -1;
    const head = list[this.spare++];
    if (this.spare >= list.length) { this.recoveredHeads = null; this.spare = 0; }
    this.resubmitted++;
    return head;
  }

  /** The next usable event buffer, or -1 (chains that cannot hold an event are returned unused). */
  private nextBuffer(): number {
    const vq = this.vq;
    for (;;) {
      let head = this.recoveredBuffer();
      if (head < 0) {
        if (vq.pending() === 0) return -1;
        head = vq.nextHead();
        if (head < 0) return -1;
      }
      this.fetched(head);
      const c = this.chain;
      const rc = vq.readChain(head, this.segs, 0, EVENT_SEGS, c);
      if (rc !== CHAIN_OK) { this.badChain(head, CHAIN_ERRORS[rc]); continue; }
      if (c.writeBytes < V.EVENT_SIZE || c.nRead !== 0) {
        this.badChain(head, `event buffer of ${c.writeBytes} writable bytes (${c.readBytes} readable)`);
        continue;
      }
      return head;
    }
  }

  private write(head: number, event: number, target: number, reason: number): void {
    const dv = this.evView, e = this.ev;
    dv.setUint32(0, event, true);
    e[4] = V.LUN_ADDR_BYTE0; e[5] = target; e[6] = 0; e[7] = 0;
    e[8] = 0; e[9] = 0; e[10] = 0; e[11] = 0;
    dv.setUint32(12, reason, true);
    const c = this.chain;
    scatter(this.mem, this.segs, 0, c.n, e, V.EVENT_SIZE);
    this.sent.events++;
    this.used(head, V.EVENT_SIZE);
  }
}
