// The reactor side of an emulated NVMe controller: the admin queue and all I/O queues
// of one controller, polled on one reactor (so a CQ shared by several SQs never needs a
// cross-reactor message). Commands are read from SQs in guest memory, turned into bdev
// I/Os, and completed into CQs in guest memory with phase bits; MSI-X eventfds are
// signalled once per poll round per CQ that got entries. Nothing here may throw into
// the reactor: hostile values end as NVMe status codes or controller fatal status.
//
// Data pointers of I/O commands may be PRPs or SGLs (prp.ts, sgl.ts); admin commands take
// PRPs only (SGLs for admin commands are for fabrics). Every command that completes with
// an error status is recorded in the Error Information log (a ring shared with the
// control plane, so it outlives controller resets).
//
// Device-private memory (one anonymous mapping per controller) sits in front of the guest
// regions of `mem` (GuestMemory extra regions: index 0, never reachable by a guest
// address): a bit bucket that reads' SGL Bit Bucket descriptors point into, and the
// bounce buffers Compare reads the namespace into.
import { GuestMemory, MemRegionSpec, TWO32 } from '../../src/memory/guest_memory.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';
import { BdevChannel } from '../../bdev/channel.js';
import { BdevChannelSpec, IoStatus, IoType } from '../../bdev/types.js';
import { Poller } from '../../src/reactor/poller.js';
import { eventfdDrain, eventfdSignal, mmap, munmap, view } from '../../native/libc.js';
import * as D from './nvme_defs.js';
import { walkPrp, copySegs } from './prp.js';
import { BitBucket, walkSgl } from './sgl.js';
import * as Id from './identify.js';
import { ChangedNsList } from './changed_ns.js';

export interface NvmeNsSpec { nsid: number; bdev: BdevChannelSpec; uuid: string }

export interface NvmeCtrlrSpec {
  ctrlr: string;
  mem: MemRegionSpec[];
  /** Address (in this process) of the doorbell page (BAR0 + 0x1000). */
  dbHva: number;
  asq: number; acq: number; asqs: number; acqs: number;
  msix: number[];
  /** The control plane signals it on trapped doorbell writes. */
  wakeFd: number;
  /** Float64 counters shared with the control plane (see C_*). */
  counters: SharedArrayBuffer;
  shadowDoorbells: boolean;
  mappableDoorbells: boolean;
  identity: Id.CtrlrIdentity;
  namespaces: NvmeNsSpec[];
  /** Error Information log ring (LOG_ERROR_ENTRIES x 64 bytes), kept by the control plane across resets. */
  errorLog?: SharedArrayBuffer;
}

// counters (Float64Array indexes)
export const C_TRAPPED_DB = 0, C_IO_CMDS = 1, C_ADMIN_CMDS = 2, C_IRQS = 3, C_SHADOW = 4,
  /** Error Information log entries ever made (= the last entry's Error Count). */
  C_ERRORS = 5,
  /** Completed successfully: bytes and commands read (Read and Compare) and written (Write), for SMART. */
  C_READ_BYTES = 6, C_WRITE_BYTES = 7, C_READS = 8, C_WRITES = 9,
  C_BAD_DB = 10,
  /** I/O commands whose data pointer is an SGL; of them, those whose SGL1 is a (Last) Segment descriptor. */
  C_SGL_CMDS = 11, C_SGL_LIST_CMDS = 12,
  C_COMPARES = 13, C_COMPARE_FAILS = 14,
  /** Abort commands received; commands they aborted. */
  C_ABORT_CMDS = 15, C_ABORTED = 16,
  C_COUNT = 17;

/** Bytes of an Error Information log ring. */
export const ERROR_LOG_BYTES = D.LOG_ERROR_ENTRIES * D.ERROR_ENTRY;

/** Segments per command: one per page of the largest transfer, plus one for a misaligned start. */
export const SEGS_PER_CMD = (D.MAX_XFER / D.PAGE) + 1;

/** `nblocks` is the bdev's current size (the channel's shared cell): a resize reaches I/O checks and Identify at once. */
interface Ns { nsid: number; ch: BdevChannel; bs: number; readonly nblocks: number; uuid: Uint8Array; spec: NvmeNsSpec;
  flush: boolean; unmap: boolean; wz: boolean }

/** What became of a Namespace Attribute Changed notice (nsResized). */
export type NsNotice = 'queued' | 'masked' | 'disabled' | 'no-namespace';

class Cq {
  u8: Uint8Array = new Uint8Array(0);
  tail = 0;
  phase = 1;
  head = 0;
  sqs = 0;
  irqPending = false;
  readonly overflow: number[] = [];
  constructor(readonly id: number, readonly gpa: number, readonly size: number, readonly ien: boolean, readonly iv: number) {}
}

class Sq {
  u8: Uint8Array = new Uint8Array(0);
  head = 0;
  tail = 0;
  inflight = 0;
  deleting = false;
  /** Entries (by SQ slot) that an Abort marked while still unfetched; how many are marked. */
  readonly abortMark: Uint8Array;
  marks = 0;
  /** Compare in a slot: its bounce buffer (-1: none) and the count of its guest segments. */
  readonly cmpBuf: Int16Array;
  readonly nseg: Uint16Array;
  /** admin cid waiting for this SQ's deletion (-1: none) */
  deleteCid = -1;
  readonly ios: BdevIo[] = [];
  readonly free: number[] = [];
  readonly cid: Uint16Array;
  readonly nsid: Uint32Array;
  /** DSM: ranges left, next range address */
  readonly dsmLeft: Int32Array;
  readonly dsmBuf: Float64Array;
  readonly status: Int32Array;
  constructor(readonly id: number, readonly gpa: number, readonly size: number, readonly cq: Cq, sink: BdevIoSink, readonly segs: SegmentTable) {
    this.abortMark = new Uint8Array(size);
    this.cmpBuf = new Int16Array(size).fill(-1);
    this.nseg = new Uint16Array(size);
    this.cid = new Uint16Array(size);
    this.nsid = new Uint32Array(size);
    this.dsmLeft = new Int32Array(size);
    this.dsmBuf = new Float64Array(size * 2);
    this.status = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      this.ios.push(new BdevIo(sink, (id << 16) | i, segs));
      this.free.push(size - 1 - i);
    }
  }
}

/** Any locked RMW is a full barrier on x86 (and Atomics are sequentially consistent). */
const FENCE = new Int32Array(new SharedArrayBuffer(4));

const u32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
function w32(b: Uint8Array, o: number, v: number): void { b[o] = v; b[o + 1] = v >>> 8; b[o + 2] = v >>> 16; b[o + 3] = v >>> 24; }
function w64(b: Uint8Array, o: number, v: number): void { w32(b, o, v % TWO32); w32(b, o + 4, Math.floor(v / TWO32)); }

/** Overflowed completions: (sqid, cid, status, dw0, sqhd, kind) per entry. */
const OVF = 6;
const K_PLAIN = 0, K_ABORT = 1;

/** Parameter Error Location (Error Information log): byte | bit << 8 of the command field in error. */
const LOC_NONE = 0xffff, LOC_OPC = 0, LOC_FUSE = 1, LOC_PSDT = 1 | (6 << 8), LOC_NSID = 4, LOC_DPTR = 24,
  LOC_CDW10 = 40, LOC_CSI = 47, LOC_CDW12 = 48;

/** Device-private memory: the bit bucket, then one bounce buffer per concurrent Compare. */
const PRIV_BYTES = D.MAX_XFER * (1 + D.COMPARE_BUFFERS);
const PRIV_REGION = 0;
const cmpOff = (k: number) => D.MAX_XFER * (1 + k);

export class NvmeCtrlr implements Poller, BdevIoSink {
  readonly name: string;
  mem: GuestMemory;
  private readonly db: Uint32Array;
  private readonly cnt: Float64Array;
  private readonly sqs: (Sq | null)[] = new Array(D.MAX_IO_QUEUES + 1).fill(null);
  private readonly cqs: (Cq | null)[] = new Array(D.MAX_IO_QUEUES + 1).fill(null);
  private readonly ns = new Map<number, Ns>();
  private msix: number[];
  private shadowGpa = -1;
  private eventGpa = -1;
  private shadow: Uint32Array | null = null;
  private eventIdx: Uint32Array | null = null;
  private readonly aers: number[] = [];
  /** Asynchronous events not yet reported (no AER was outstanding): completion DW0 values. */
  private readonly events: number[] = [];
  /**
   * Log pages whose event was reported (or is queued) and not cleared yet: the event type is
   * masked until the host reads that log page with RAE cleared (NVMe 1.4 section 5.2).
   */
  private readonly aenMasked = new Set<number>();
  /** Changed Namespace List log page (LID 04h). */
  private readonly changedNs = new ChangedNsList();
  private readonly features = new Map<number, number>();
  private readonly admSegs = new SegmentTable(SEGS_PER_CMD);
  private inflight = 0;
  fatal: string | null = null;
  stopping = false;
  onDrained: (() => void) | null = null;
  onFatal: ((why: string) => void) | null = null;
  /** Called when a deferred memory update may proceed (no I/O in flight). */
  onIdle: (() => void) | null = null;
  private readonly started = performance.now();
  private readonly errLog: Uint8Array;
  /** Context of the command being completed, for its Error Information log entry. */
  private eNsid = 0;
  private eLba = 0;
  private eLoc = LOC_NONE;
  /** Abort completions not yet in the admin CQ (it was full): limited by ACL. */
  private abortsQueued = 0;
  private readonly priv: MemRegionSpec;
  private readonly privBuf: Buffer;
  private readonly bitBucket: BitBucket = { region: PRIV_REGION, off: 0 };
  private readonly cmpSegs = new SegmentTable(D.COMPARE_BUFFERS);
  private readonly cmpFree: number[] = [];

  constructor(readonly spec: NvmeCtrlrSpec, openChannel: (s: BdevChannelSpec) => BdevChannel) {
    this.name = `nvme:${spec.ctrlr}`;
    const privHva = mmap(PRIV_BYTES);
    this.priv = { gpa: 0, size: PRIV_BYTES, uaddr: 0, hva: privHva };
    this.privBuf = Buffer.from(view(privHva, PRIV_BYTES));
    for (let k = D.COMPARE_BUFFERS - 1; k >= 0; k--) {
      this.cmpFree.push(k);
      this.cmpSegs.region[k] = PRIV_REGION; this.cmpSegs.off[k] = cmpOff(k);
    }
    try {
      this.mem = new GuestMemory(spec.mem, [this.priv]);
      this.errLog = new Uint8Array(spec.errorLog ?? new SharedArrayBuffer(ERROR_LOG_BYTES), 0, ERROR_LOG_BYTES);
    } catch (e) { munmap(privHva, PRIV_BYTES); throw e; }
    this.db = new Uint32Array(view(spec.dbHva, D.DOORBELL_AREA));
    this.cnt = new Float64Array(spec.counters);
    this.msix = spec.msix.slice();
    for (const n of spec.namespaces) this.addNs(n, openChannel);
    this.features.set(D.FEAT.NUM_QUEUES, ((D.MAX_IO_QUEUES - 1) << 16) | (D.MAX_IO_QUEUES - 1));
    this.features.set(D.FEAT.VWC, spec.identity.vwc ? 1 : 0);
    this.features.set(D.FEAT.TEMP_THRESH, 0x0157);
    this.features.set(D.FEAT.ARBITRATION, 0);
    this.features.set(D.FEAT.POWER_MGMT, 0);
    this.features.set(D.FEAT.ERROR_RECOVERY, 0);
    this.features.set(D.FEAT.IRQ_COALESCE, 0);
    this.features.set(D.FEAT.WRITE_ATOMIC, 0);
    this.features.set(D.FEAT.ASYNC_EVENT, 0);
    this.features.set(D.FEAT.KEEP_ALIVE, 0);
    // admin queues
    const fail = (why: string): never => { this.destroy(); throw new Error(why); };
    if (spec.asqs < 2 || spec.acqs < 2 || spec.asqs > 4096 || spec.acqs > 4096) fail(`admin queue sizes ${spec.asqs}/${spec.acqs} are invalid`);
    const acq = new Cq(0, spec.acq, spec.acqs, true, 0);
    this.cqs[0] = acq;
    this.sqs[0] = this.newSq(0, spec.asq, spec.asqs, acq);
    acq.sqs = 1;
    if (!this.mapQueues()) fail(`the admin queues (ASQ 0x${spec.asq.toString(16)}, ACQ 0x${spec.acq.toString(16)}) are not in guest memory`);
  }

  private destroyed = false;
  /** Frees the device-private memory; call once no I/O is in flight (and the channels are closed). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    munmap(this.priv.hva, PRIV_BYTES);
  }

  private newSq(id: number, gpa: number, size: number, cq: Cq): Sq {
    const segs = new SegmentTable(size * SEGS_PER_CMD);
    const sq = new Sq(id, gpa, size, cq, this, segs);
    for (const io of sq.ios) { io.mem = this.mem; io.segBase = (io.tag & 0xffff) * SEGS_PER_CMD; }
    return sq;
  }

  addNs(n: NvmeNsSpec, open: (s: BdevChannelSpec) => BdevChannel): void {
    const ch = open(n.bdev);
    this.ns.set(n.nsid, { nsid: n.nsid, ch, bs: n.bdev.blockSize, get nblocks() { return ch.numBlocks; }, uuid: Id.uuidBytes(n.uuid), spec: n,
      flush: true, unmap: true, wz: true });
  }

  /**
   * The bdev behind namespace `nsid` changed size (the channel sees the new size already):
   * the namespace goes into the Changed Namespace List log, and a Namespace Attribute Changed
   * notice is queued if the host enabled them (Asynchronous Event Configuration bit 8) and the
   * notice type is not masked by an earlier one the host has not cleared yet. poll() reports it.
   */
  nsResized(nsid: number): NsNotice {
    if (!this.ns.has(nsid)) return 'no-namespace';
    this.changedNs.add(nsid);
    if (!(this.features.get(D.FEAT.ASYNC_EVENT)! & D.AEC_NS_ATTR)) return 'disabled';
    return this.asyncEvent(D.AER_TYPE_NOTICE, D.AER_INFO_NS_ATTR_CHANGED, D.LOG.CHANGED_NS) ? 'queued' : 'masked';
  }

  namespaces(): Ns[] { return [...this.ns.values()]; }

  // ------------------------------------------------------------------ memory

  /** Re-derives the views of queues and shadow buffers; false if one is no longer in guest memory. */
  private mapQueues(): boolean {
    const view = (gpa: number, len: number): Uint8Array | null => {
      const r = this.mem.regionOfRange(gpa, len);
      if (r < 0) return null;
      const off = gpa - this.mem.gpa[r];
      return this.mem.u8[r].subarray(off, off + len);
    };
    for (const cq of this.cqs) if (cq) { const v = view(cq.gpa, cq.size * D.CQE); if (!v) return false; cq.u8 = v; }
    for (const sq of this.sqs) if (sq) { const v = view(sq.gpa, sq.size * D.SQE); if (!v) return false; sq.u8 = v; }
    if (this.shadowGpa >= 0) {
      const s = view(this.shadowGpa, D.PAGE), e = view(this.eventGpa, D.PAGE);
      if (!s || !e) return false;
      this.shadow = new Uint32Array(s.buffer, s.byteOffset, D.PAGE / 4);
      this.eventIdx = new Uint32Array(e.buffer, e.byteOffset, D.PAGE / 4);
    }
    return true;
  }

  setMemory(regions: MemRegionSpec[]): void {
    this.mem = new GuestMemory(regions, [this.priv]);
    for (const sq of this.sqs) if (sq) for (const io of sq.ios) io.mem = this.mem;
    // a queue whose memory is (transiently) unmapped, e.g. while the client remaps low RAM
    // around a ROM, is not polled until a later DMA_MAP brings it back
    this.unmapped = !this.mapQueues();
  }

  /** Some queue or doorbell buffer is not in guest memory at the moment: nothing is polled. */
  unmapped = false;

  get inFlight(): number { return this.inflight; }

  setMsix(fds: number[]): void { this.msix = fds.slice(); }

  private setFatal(why: string): void {
    if (this.fatal) return;
    this.fatal = why;
    this.onFatal?.(why);
  }

  // ------------------------------------------------------------------ poller

  wakeFds(): number[] { return [this.spec.wakeFd]; }

  armInterrupt(): boolean {
    if (this.fatal || this.stopping) return this.inflight === 0;
    // queues not in guest memory are not polled (nor touched: their views may be stale); the DMA map message wakes us
    if (this.unmapped) return true;
    // a doorbell page the client maps is written without a trap: nothing could wake us
    if (this.spec.mappableDoorbells) return false;
    // an asynchronous event to report (queued by a control operation)
    if (this.events.length && this.aers.length) return false;
    for (const cq of this.cqs) if (cq && cq.overflow.length) return false;
    // fetched up to the tail but stopped for a free slot or bounce buffer that is free now
    for (const sq of this.sqs) if (sq && !sq.deleting && sq.head !== sq.tail && this.canFetch(sq)) return false;
    // with shadow doorbells, ask the guest to trap its next doorbell write (EventIdx = what we have seen)
    const ev = this.eventIdx;
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (!sq || sq.deleting) continue;
      if (q > 0 && ev) ev[2 * q] = sq.tail;
    }
    // full fence: our EventIdx store must be visible before we read the tails again
    // (the guest does the mirror image: store tail, fence, read EventIdx)
    Atomics.add(FENCE, 0, 0);
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (sq && !sq.deleting && this.readTail(sq) !== sq.tail) return false;
    }
    return true;
  }

  disarmInterrupt(): void { eventfdDrain(this.spec.wakeFd); }

  private readTail(sq: Sq): number {
    return sq.id > 0 && this.shadow ? this.shadow[2 * sq.id] : this.db[2 * sq.id];
  }

  private readHead(cq: Cq): number {
    return cq.id > 0 && this.shadow ? this.shadow[2 * cq.id + 1] : this.db[2 * cq.id + 1];
  }

  /** Whether the entry at sq.head can be fetched now (a command slot, and for a Compare a bounce buffer, are free). */
  private canFetch(sq: Sq): boolean {
    if (sq.free.length === 0) return false;
    return sq.id === 0 || this.cmpFree.length > 0 || sq.u8[sq.head * D.SQE] !== D.IO.COMPARE || sq.abortMark[sq.head] === 1;
  }

  poll(): number {
    if (this.fatal || this.unmapped) return this.drainCheck();
    let work = 0;
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (sq === null || sq.deleting) continue;
      if (this.stopping) continue;
      const tail = this.readTail(sq);
      if (tail !== sq.tail) {
        if (tail >= sq.size) {
          // doorbell value beyond the queue: ignore it and tell the host (async event, error type)
          this.cnt[C_BAD_DB]++;
          sq.tail = sq.head;
          if (q > 0 && this.shadow) this.shadow[2 * q] = sq.tail;
          else this.db[2 * q] = sq.tail;
          this.eNsid = 0; this.eLba = 0; this.eLoc = LOC_NONE;
          this.logError(q, 0xffff, 0, 0);   // not specific to a command: CID FFFFh
          this.asyncEvent(D.AER_TYPE_ERROR, D.AER_INFO_INVALID_DB_VALUE, D.LOG.ERROR);
          continue;
        }
        sq.tail = tail;
        // while we poll, keep the guest from trapping: EventIdx one behind what we have seen
        // makes Linux's need_event false for normal advances and for a wrap of the queue
        if (q > 0 && this.eventIdx !== null) this.eventIdx[2 * q] = (tail - 1) & 0xffff;
      } else if (sq.head === sq.tail) continue;
      // entries the last round left in the queue (no free slot or bounce buffer then) are fetched now
      while (sq.head !== sq.tail) {
        if (!this.canFetch(sq)) break; // the rest waits for completions
        const pos = sq.head, off = pos * D.SQE;
        sq.head = sq.head + 1 === sq.size ? 0 : sq.head + 1;
        work++;
        if (sq.marks > 0 && sq.abortMark[pos] === 1) {
          // aborted by an Abort command before we fetched it
          sq.abortMark[pos] = 0; sq.marks--;
          this.eNsid = u32(sq.u8, off + 4); this.eLba = 0; this.eLoc = LOC_NONE;
          this.post(sq.cq, sq, sq.u8[off + 2] | (sq.u8[off + 3] << 8), D.SC.ABORT_REQ, 0);
          continue;
        }
        if (q === 0) this.admin(sq, off); else this.io(sq, off);
      }
    }
    if (this.events.length && this.aers.length && !this.stopping) work += this.deliverEvents();
    for (let c = 0; c < this.cqs.length; c++) {
      const cq = this.cqs[c];
      if (cq === null) continue;
      if (cq.overflow.length) work += this.retryOverflow(cq);
      if (cq.irqPending) {
        cq.irqPending = false;
        const fd = this.msix[cq.iv] ?? -1;
        if (fd >= 0) { eventfdSignal(fd); this.cnt[C_IRQS]++; }
      }
    }
    if (this.stopping) work += this.drainCheck();
    return work;
  }

  private drainCheck(): number {
    if (this.inflight === 0 && this.onDrained) { const f = this.onDrained; this.onDrained = null; f(); return 1; }
    return 0;
  }

  // ------------------------------------------------------------------ completions

  /**
   * Posts a completion; status = SCT<<8|SC (| DNR). An error status makes an Error
   * Information log entry from the context in eNsid/eLba/eLoc.
   */
  private post(cq: Cq, sq: Sq, cid: number, status: number, dw0: number, kind = K_PLAIN): void {
    if (status & D.SC_MASK) this.logError(sq.id, cid, status, cq.phase);
    if (cq.overflow.length || this.cqFull(cq)) {
      cq.overflow.push(sq.id, cid, status, dw0, sq.head, kind);
      if (kind === K_ABORT) this.abortsQueued++;
      return;
    }
    this.write(cq, sq.id, sq.head, cid, status, dw0);
  }

  /** Appends an Error Information log entry (the ring keeps the newest LOG_ERROR_ENTRIES). */
  private logError(sqid: number, cid: number, status: number, phase: number): void {
    const count = ++this.cnt[C_ERRORS];
    const b = this.errLog, o = ((count - 1) % D.LOG_ERROR_ENTRIES) * D.ERROR_ENTRY;
    b.fill(0, o, o + D.ERROR_ENTRY);
    w64(b, o, count);                              // Error Count (starts at 1)
    b[o + 8] = sqid; b[o + 9] = sqid >>> 8;
    b[o + 10] = cid; b[o + 11] = cid >>> 8;
    const sf = status ? D.statusField(status, phase) : 0;
    b[o + 12] = sf; b[o + 13] = sf >>> 8;          // Status Field (and the phase tag it was posted with)
    b[o + 14] = this.eLoc; b[o + 15] = this.eLoc >>> 8;
    w64(b, o + 16, this.eLba);
    w32(b, o + 24, this.eNsid);
  }

  private cqFull(cq: Cq): boolean {
    const next = cq.tail + 1 === cq.size ? 0 : cq.tail + 1;
    if (next !== cq.head) return false;
    const h = this.readHead(cq);
    if (h < cq.size) cq.head = h;
    return next === cq.head;
  }

  private write(cq: Cq, sqid: number, sqhd: number, cid: number, status: number, dw0: number): void {
    const b = cq.u8, o = cq.tail * D.CQE;
    w32(b, o, dw0);
    w32(b, o + 4, 0);
    w32(b, o + 8, (sqhd & 0xffff) | (sqid << 16));
    // DW3 last: the phase bit makes the entry visible
    w32(b, o + 12, (cid & 0xffff) | (D.statusField(status, cq.phase) << 16));
    cq.tail++;
    if (cq.tail === cq.size) { cq.tail = 0; cq.phase ^= 1; }
    if (cq.ien) cq.irqPending = true;
  }

  private retryOverflow(cq: Cq): number {
    let n = 0;
    const o = cq.overflow;
    while (n * OVF < o.length && !this.cqFull(cq)) {
      const i = n * OVF;
      this.write(cq, o[i], o[i + 4], o[i + 1], o[i + 2], o[i + 3]);
      if (o[i + 5] === K_ABORT) this.abortsQueued--;
      n++;
    }
    if (n) o.splice(0, n * OVF);
    return n;
  }

  // ------------------------------------------------------------------ I/O commands

  private allocSlot(sq: Sq, cid: number, nsid: number): number {
    const s = sq.free.pop()!;
    sq.cid[s] = cid; sq.nsid[s] = nsid;
    sq.inflight++; this.inflight++;
    return s;
  }

  private releaseSlot(sq: Sq, s: number): void {
    sq.free.push(s);
    sq.inflight--; this.inflight--;
    if (sq.deleting && sq.inflight === 0) this.finishSqDelete(sq);
  }

  /** Completes a command that failed before reaching a bdev; `loc`: Parameter Error Location. */
  private fail(sq: Sq, cid: number, status: number, loc: number): void {
    this.eLoc = loc;
    this.post(sq.cq, sq, cid, status, 0);
  }

  /**
   * Maps the data pointer of the I/O command at sq.u8[off] (PRPs or an SGL, by PSDT) for
   * `len` bytes into segs[base ..]; `read`: data flows to the host (Bit Buckets allowed).
   */
  private mapData(b: Uint8Array, off: number, sgl: boolean, len: number, segs: SegmentTable, base: number, read: boolean): number {
    if (sgl) {
      this.cnt[C_SGL_CMDS]++;
      const t = b[off + 39] >>> 4;
      if (t === D.SGL.SEGMENT || t === D.SGL.LAST_SEGMENT) this.cnt[C_SGL_LIST_CMDS]++;
      return walkSgl(this.mem, b, off + 24, len, segs, base, SEGS_PER_CMD, read ? this.bitBucket : null);
    }
    const prp1 = u32(b, off + 24) + u32(b, off + 28) * TWO32;
    const prp2 = u32(b, off + 32) + u32(b, off + 36) * TWO32;
    return walkPrp(this.mem, prp1, prp2, len, segs, base, SEGS_PER_CMD);
  }

  private io(sq: Sq, off: number): void {
    const b = sq.u8;
    const opc = b[off], flags = b[off + 1], cid = b[off + 2] | (b[off + 3] << 8);
    const nsid = u32(b, off + 4);
    const cdw10 = u32(b, off + 40), cdw11 = u32(b, off + 44), cdw12 = u32(b, off + 48);
    this.cnt[C_IO_CMDS]++;
    this.eNsid = nsid; this.eLba = 0;
    if (flags & 0x03) { this.fail(sq, cid, D.SC.INVALID_FIELD | D.SC.DNR, LOC_FUSE); return; } // fused
    const psdt = (flags >> 6) & 3;
    // SGLs for data (MPTR, if any, a plain address: namespaces have no metadata); no metadata SGLs
    if (psdt > D.PSDT_SGL) { this.fail(sq, cid, D.SC.INVALID_FIELD | D.SC.DNR, LOC_PSDT); return; }
    const sgl = psdt === D.PSDT_SGL;
    const ns = this.ns.get(nsid);
    if (opc === D.IO.FLUSH && (nsid === 0xffffffff || ns)) {
      const target = ns ?? this.ns.values().next().value;
      if (!target || !target.flush) { this.post(sq.cq, sq, cid, 0, 0); return; }
      const s = this.allocSlot(sq, cid, target.nsid);
      const io = sq.ios[s];
      io.type = IoType.FLUSH; io.offsetBlocks = 0; io.numBlocks = target.nblocks; io.nseg = 0; io.bytes = 0;
      target.ch.submit(io);
      return;
    }
    if (!ns) { this.fail(sq, cid, D.SC.INVALID_NS | D.SC.DNR, LOC_NSID); return; }
    switch (opc) {
      case D.IO.READ: case D.IO.WRITE: case D.IO.COMPARE: {
        // Compare turned off (nvmf_create_transport disable_compare): ONCS says so, the opcode is refused
        if (opc === D.IO.COMPARE && !this.spec.identity.compare) { this.fail(sq, cid, D.SC.INVALID_OPCODE | D.SC.DNR, LOC_OPC); return; }
        const slba = cdw10 + cdw11 * TWO32, nlb = (cdw12 & 0xffff) + 1;
        const len = nlb * ns.bs;
        this.eLba = slba;
        if (len > D.MAX_XFER) { this.fail(sq, cid, D.SC.INVALID_FIELD | D.SC.DNR, LOC_CDW12); return; }
        if (slba + nlb > ns.nblocks) { this.fail(sq, cid, D.SC.LBA_OUT_OF_RANGE | D.SC.DNR, LOC_CDW10); return; }
        const s = this.allocSlot(sq, cid, nsid);
        const io = sq.ios[s];
        const n = this.mapData(b, off, sgl, len, io.segs, io.segBase, opc === D.IO.READ);
        if (n < 0) { this.releaseSlot(sq, s); this.fail(sq, cid, -n | D.SC.DNR, LOC_DPTR); return; }
        io.offsetBlocks = slba; io.numBlocks = nlb; io.bytes = len;
        if (opc === D.IO.COMPARE) {
          // read the range into a bounce buffer; onBdevIoDone compares it with the host's data
          const k = this.cmpFree.pop();
          if (k === undefined) { this.releaseSlot(sq, s); this.fail(sq, cid, D.SC.INTERNAL, LOC_NONE); return; } // poll() waits for one
          this.cnt[C_COMPARES]++;
          sq.cmpBuf[s] = k; sq.nseg[s] = n;
          this.cmpSegs.len[k] = len;
          io.segs = this.cmpSegs; io.segBase = k; io.nseg = 1;
          io.type = IoType.READ;
        } else {
          io.nseg = n;
          io.type = opc === D.IO.READ ? IoType.READ : IoType.WRITE;
        }
        ns.ch.submit(io);
        return;
      }
      case D.IO.WRITE_ZEROES: {
        const slba = cdw10 + cdw11 * TWO32, nlb = (cdw12 & 0xffff) + 1;
        this.eLba = slba;
        if (slba + nlb > ns.nblocks) { this.fail(sq, cid, D.SC.LBA_OUT_OF_RANGE | D.SC.DNR, LOC_CDW10); return; }
        const s = this.allocSlot(sq, cid, nsid);
        const io = sq.ios[s];
        io.type = IoType.WRITE_ZEROES; io.offsetBlocks = slba; io.numBlocks = nlb; io.nseg = 0; io.bytes = 0;
        io.mayUnmap = (cdw12 & (1 << 25)) !== 0;
        ns.ch.submit(io);
        return;
      }
      case D.IO.DSM: {
        const nr = (cdw10 & 0xff) + 1, ad = (cdw11 & 4) !== 0;
        if (!ad || !ns.unmap) { this.post(sq.cq, sq, cid, 0, 0); return; }  // hints only: nothing to do
        const s = this.allocSlot(sq, cid, nsid);
        const io = sq.ios[s];
        const n = this.mapData(b, off, sgl, nr * 16, io.segs, io.segBase, false);
        if (n < 0) { this.releaseSlot(sq, s); this.fail(sq, cid, -n | D.SC.DNR, LOC_DPTR); return; }
        // copy the range list out of guest memory (the guest may reuse it once we complete)
        const list = this.dsmList(sq, s);
        copySegs(this.mem, io.segs, io.segBase, n, list.subarray(0, nr * 16), 'in');
        sq.dsmLeft[s] = nr; sq.status[s] = 0;
        this.nextDsm(sq, s, ns);
        return;
      }
      default:
        this.fail(sq, cid, D.SC.INVALID_OPCODE | D.SC.DNR, LOC_OPC);
    }
  }

  private readonly dsmLists = new Map<number, Uint8Array>();
  private dsmList(sq: Sq, s: number): Uint8Array {
    const k = (sq.id << 16) | s;
    let l = this.dsmLists.get(k);
    if (!l) { l = new Uint8Array(256 * 16); this.dsmLists.set(k, l); }
    return l;
  }

  /** Submits the next range of a DSM deallocate, or completes it. */
  private nextDsm(sq: Sq, s: number, ns: Ns): void {
    const list = this.dsmList(sq, s);
    const io = sq.ios[s];
    while (sq.dsmLeft[s] > 0) {
      const nrTotal = sq.dsmLeft[s];
      sq.dsmLeft[s]--;
      // ranges are consumed from the end (order does not matter for deallocate)
      const o = (nrTotal - 1) * 16;
      const len = u32(list, o + 4), slba = u32(list, o + 8) + u32(list, o + 12) * TWO32;
      if (len === 0) continue;
      if (slba + len > ns.nblocks) {
        if (!sq.status[s]) { sq.status[s] = D.SC.LBA_OUT_OF_RANGE | D.SC.DNR; sq.dsmBuf[2 * s] = slba; }
        continue;
      }
      io.type = IoType.UNMAP; io.offsetBlocks = slba; io.numBlocks = len; io.nseg = 0; io.bytes = 0;
      io.status = -1;
      ns.ch.submit(io);
      return;
    }
    const cid = sq.cid[s], st = sq.status[s];
    this.eNsid = sq.nsid[s]; this.eLba = st ? sq.dsmBuf[2 * s] : 0; this.eLoc = LOC_NONE;
    if (this.sqs[sq.id] === sq) this.post(sq.cq, sq, cid, st, 0);
    this.releaseSlot(sq, s);
  }

  /** Compares a Compare's bounce buffer with the host's data: -1 if equal, else the offset of the first difference. */
  private compareData(sq: Sq, s: number, k: number, len: number): number {
    const mem = this.mem, segs = sq.segs, base = s * SEGS_PER_CMD, end = base + sq.nseg[s];
    const p = this.privBuf, start = cmpOff(k);
    let pos = start;
    for (let i = base; i < end && pos - start < len; i++) {
      const g = mem.u8[segs.region[i]], o = segs.off[i], l = segs.len[i];
      if (p.compare(g, o, o + l, pos, pos + l) !== 0) {
        for (let j = 0; j < l; j++) if (g[o + j] !== p[pos + j]) return pos - start + j;
        return pos - start; // the host changed its buffer meanwhile
      }
      pos += l;
    }
    return -1;
  }

  onBdevIoDone(io: BdevIo): void {
    const sq = this.sqs[io.tag >>> 16];
    if (!sq) return;
    const s = io.tag & 0xffff;
    let st = 0;
    switch (io.status) {
      case IoStatus.SUCCESS: st = 0; break;
      case IoStatus.OUT_OF_RANGE: st = D.SC.LBA_OUT_OF_RANGE | D.SC.DNR; break;
      case IoStatus.UNSUPPORTED: st = io.type === IoType.UNMAP ? 0 : D.SC.INVALID_OPCODE | D.SC.DNR; break;
      case IoStatus.ABORTED: st = D.SC.ABORT_REQ; break;
      default: st = D.SC.INTERNAL; break;
    }
    if (io.type === IoType.UNMAP) {
      if (st && !sq.status[s]) { sq.status[s] = st; sq.dsmBuf[2 * s] = io.offsetBlocks; }
      const ns = this.ns.get(sq.nsid[s]);
      if (ns) { this.nextDsm(sq, s, ns); return; }
      st = sq.status[s];
    }
    this.eNsid = sq.nsid[s]; this.eLba = io.offsetBlocks; this.eLoc = LOC_NONE;
    const k = sq.cmpBuf[s];
    if (k >= 0) {
      // a Compare: back to the command's own segments, then compare
      sq.cmpBuf[s] = -1;
      io.segs = sq.segs; io.segBase = s * SEGS_PER_CMD;
      if (st === 0) {
        this.cnt[C_READS]++; this.cnt[C_READ_BYTES] += io.bytes;
        const at = this.compareData(sq, s, k, io.bytes);
        if (at >= 0) {
          st = D.SC.COMPARE_FAILURE | D.SC.DNR;
          this.cnt[C_COMPARE_FAILS]++;
          const ns = this.ns.get(sq.nsid[s]);
          if (ns) this.eLba = io.offsetBlocks + Math.floor(at / ns.bs); // the first LBA that miscompared
        }
      }
      this.cmpFree.push(k);
    } else if (st === 0) {
      if (io.type === IoType.READ) { this.cnt[C_READS]++; this.cnt[C_READ_BYTES] += io.bytes; }
      else if (io.type === IoType.WRITE) { this.cnt[C_WRITES]++; this.cnt[C_WRITE_BYTES] += io.bytes; }
    }
    const cid = sq.cid[s];
    // complete first: releasing the last slot of a deleting SQ finishes its deletion
    if (this.sqs[sq.id] === sq) this.post(sq.cq, sq, cid, st, 0);
    this.releaseSlot(sq, s);
  }

  // ------------------------------------------------------------------ admin commands

  /**
   * Queues an asynchronous event (reported by the next poll round with an outstanding AER),
   * unless an event for the same log page is still uncleared: then it is masked (false).
   */
  private asyncEvent(type: number, info: number, log: number): boolean {
    if (this.aenMasked.has(log)) return false;
    this.aenMasked.add(log);
    this.events.push(type | (info << 8) | (log << 16));
    return true;
  }

  private deliverEvents(): number {
    const asq = this.sqs[0]!;
    let n = 0;
    while (this.aers.length && this.events.length) {
      this.eLoc = LOC_NONE;
      this.post(asq.cq, asq, this.aers.shift()!, 0, this.events.shift()!);
      n++;
    }
    return n;
  }

  /** Writes `data` to the command's PRPs; returns a status. */
  private toHost(prp1: number, prp2: number, data: Uint8Array, len = data.length): number {
    const n = walkPrp(this.mem, prp1, prp2, len, this.admSegs, 0, SEGS_PER_CMD);
    if (n < 0) { this.eLoc = LOC_DPTR; return -n | D.SC.DNR; }
    copySegs(this.mem, this.admSegs, 0, n, data.subarray(0, len), 'out');
    return 0;
  }

  private admin(sq: Sq, off: number): void {
    const b = sq.u8;
    const opc = b[off], flags = b[off + 1], cid = b[off + 2] | (b[off + 3] << 8);
    const nsid = u32(b, off + 4);
    const prp1 = u32(b, off + 24) + u32(b, off + 28) * TWO32;
    const prp2 = u32(b, off + 32) + u32(b, off + 36) * TWO32;
    const cdw10 = u32(b, off + 40), cdw11 = u32(b, off + 44), cdw12 = u32(b, off + 48), cdw13 = u32(b, off + 52);
    this.cnt[C_ADMIN_CMDS]++;
    let status = 0, dw0 = 0;
    this.eNsid = nsid; this.eLba = 0; this.eLoc = LOC_NONE;
    const done = () => this.post(sq.cq, sq, cid, status, dw0);
    // fused operations, and SGLs (for admin commands only over fabrics)
    if (flags & 0xc3) { this.eLoc = flags & 3 ? LOC_FUSE : LOC_PSDT; status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
    switch (opc) {
      case D.ADM.IDENTIFY: {
        const cns = cdw10 & 0xff;
        let data: Uint8Array | null = null;
        const ns = this.ns.get(nsid);
        const nsId = (n: Ns): Id.NsIdentity => ({ nsid: n.nsid, blockSize: n.bs, numBlocks: n.nblocks, uuid: n.uuid });
        if (cns === 0x01) data = Id.identifyController(this.spec.identity);
        else if (cns === 0x00) {
          if (nsid === 0 || (nsid > D.MAX_NS && nsid !== 0xffffffff)) status = D.SC.INVALID_NS | D.SC.DNR;
          else data = Id.identifyNamespace(ns ? nsId(ns) : undefined);
        } else if (cns === 0x02) {
          if (nsid >= 0xfffffffe) status = D.SC.INVALID_NS | D.SC.DNR;
          else data = Id.activeNsList([...this.ns.keys()], nsid);
        } else if (cns === 0x03) {
          if (!ns) status = D.SC.INVALID_NS | D.SC.DNR; else data = Id.nsDescriptors(nsId(ns));
        } else if (cns === D.CNS.CTRLR_CSI || cns === D.CNS.NS_CSI) {
          // I/O Command Set specific structures: for the NVM command set only (CSI, CDW11 bits 31:24)
          if ((cdw11 >>> 24) !== D.CSI_NVM) { this.eLoc = LOC_CSI; status = D.SC.INVALID_FIELD | D.SC.DNR; }
          else if (cns === D.CNS.CTRLR_CSI) data = Id.identifyControllerNvm();
          else if (nsid === 0 || (nsid > D.MAX_NS && nsid !== 0xffffffff)) status = D.SC.INVALID_NS | D.SC.DNR;
          else data = Id.identifyNamespaceNvm();
        } else { this.eLoc = LOC_CDW10; status = D.SC.INVALID_FIELD | D.SC.DNR; }
        if (data) status = this.toHost(prp1, prp2, data);
        done(); return;
      }
      case D.ADM.CREATE_CQ: {
        const qid = cdw10 & 0xffff, qsize = (cdw10 >>> 16) + 1, pc = cdw11 & 1, ien = (cdw11 & 2) !== 0, iv = cdw11 >>> 16;
        if (qid === 0 || qid > D.MAX_IO_QUEUES || this.cqs[qid]) status = D.SC.INVALID_QID | D.SC.DNR;
        else if (qsize < 2 || qsize > D.MQES + 1) status = D.SC.INVALID_QSIZE | D.SC.DNR;
        else if (!pc) status = D.SC.INVALID_FIELD | D.SC.DNR;
        else if (ien && iv >= D.NUM_MSIX) status = D.SC.INVALID_IRQ_VECTOR | D.SC.DNR;
        else if (prp1 % D.PAGE !== 0) status = D.SC.PRP_OFFSET_INVALID | D.SC.DNR;
        else {
          const cq = new Cq(qid, prp1, qsize, ien, iv);
          const r = this.mem.regionOfRange(prp1, qsize * D.CQE);
          if (r < 0) status = D.SC.DATA_XFER_ERROR | D.SC.DNR;
          else {
            const o = prp1 - this.mem.gpa[r];
            cq.u8 = this.mem.u8[r].subarray(o, o + qsize * D.CQE);
            this.cqs[qid] = cq;
            // a fresh queue starts at 0 (the doorbell/shadow value may be stale from a previous one)
            this.db[2 * qid + 1] = 0;
          }
        }
        done(); return;
      }
      case D.ADM.CREATE_SQ: {
        const qid = cdw10 & 0xffff, qsize = (cdw10 >>> 16) + 1, pc = cdw11 & 1, cqid = cdw11 >>> 16;
        const cq = cqid > 0 && cqid <= D.MAX_IO_QUEUES ? this.cqs[cqid] : null;
        if (!cq) status = D.SC.CQ_INVALID | D.SC.DNR;
        else if (qid === 0 || qid > D.MAX_IO_QUEUES || this.sqs[qid]) status = D.SC.INVALID_QID | D.SC.DNR;
        else if (qsize < 2 || qsize > D.MQES + 1) status = D.SC.INVALID_QSIZE | D.SC.DNR;
        else if (!pc) status = D.SC.INVALID_FIELD | D.SC.DNR;
        else if (prp1 % D.PAGE !== 0) status = D.SC.PRP_OFFSET_INVALID | D.SC.DNR;
        else {
          const r = this.mem.regionOfRange(prp1, qsize * D.SQE);
          if (r < 0) status = D.SC.DATA_XFER_ERROR | D.SC.DNR;
          else {
            const sq = this.newSq(qid, prp1, qsize, cq);
            const o = prp1 - this.mem.gpa[r];
            sq.u8 = this.mem.u8[r].subarray(o, o + qsize * D.SQE);
            this.db[2 * qid] = 0;
            this.sqs[qid] = sq;
            cq.sqs++;
          }
        }
        done(); return;
      }
      case D.ADM.DELETE_SQ: {
        const qid = cdw10 & 0xffff;
        const q = qid > 0 && qid <= D.MAX_IO_QUEUES ? this.sqs[qid] : null;
        if (!q || q.deleting) { status = D.SC.INVALID_QID | D.SC.DNR; done(); return; }
        q.deleting = true;
        q.deleteCid = cid;
        if (q.inflight === 0) this.finishSqDelete(q);
        return; // completed when its commands are done
      }
      case D.ADM.DELETE_CQ: {
        const qid = cdw10 & 0xffff;
        const q = qid > 0 && qid <= D.MAX_IO_QUEUES ? this.cqs[qid] : null;
        if (!q) status = D.SC.INVALID_QID | D.SC.DNR;
        else if (q.sqs > 0) status = D.SC.INVALID_QUEUE_DELETION | D.SC.DNR;
        else this.cqs[qid] = null;
        done(); return;
      }
      case D.ADM.GET_LOG_PAGE: {
        const lid = cdw10 & 0xff;
        const numd = ((cdw10 >>> 16) | ((cdw11 & 0xffff) << 16)) + 1;
        const offset = cdw12 + cdw13 * TWO32;
        let page: Uint8Array | null = null;
        if (lid === D.LOG.ERROR) page = this.errorLogPage();
        else if (lid === D.LOG.SMART) {
          page = Id.smartLog({ dataUnitsRead: Id.dataUnits(this.cnt[C_READ_BYTES]), dataUnitsWritten: Id.dataUnits(this.cnt[C_WRITE_BYTES]),
            readCmds: this.cnt[C_READS], writeCmds: this.cnt[C_WRITES], powerOnHours: (performance.now() - this.started) / 3.6e6,
            errorLogEntries: this.cnt[C_ERRORS] });
        } else if (lid === D.LOG.FW_SLOT) page = Id.firmwareSlotLog(this.spec.identity.firmware);
        else if (lid === D.LOG.CHANGED_NS) page = this.changedNs.page();
        if (!page) { status = D.SC.INVALID_LOG_PAGE | D.SC.DNR; done(); return; }
        if (offset % 4 !== 0 || offset >= page.length) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        const len = numd * 4;
        if (len > D.MAX_XFER) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        const out = new Uint8Array(len);
        out.set(page.subarray(offset, Math.min(page.length, offset + len)));
        status = this.toHost(prp1, prp2, out);
        if (status === 0) {
          // the Changed Namespace List is cleared by every read (as SPDK does); the event of a
          // log page is cleared, and its type unmasked, unless the host asked to retain it
          if (lid === D.LOG.CHANGED_NS) this.changedNs.clear();
          if (!(cdw10 & D.LOG_RAE)) this.aenMasked.delete(lid);
        }
        done(); return;
      }
      case D.ADM.GET_FEATURES: case D.ADM.SET_FEATURES: {
        const fid = cdw10 & 0xff, set = opc === D.ADM.SET_FEATURES;
        const sel = (cdw10 >>> 8) & 7;
        if (set && (cdw10 & 0x80000000)) { status = D.SC.FEATURE_NOT_SAVEABLE | D.SC.DNR; done(); return; }
        if (!this.features.has(fid) && fid !== D.FEAT.IRQ_CONFIG) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        if (fid === D.FEAT.VWC && !this.spec.identity.vwc) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        if (!set && sel === 3) { dw0 = fid === D.FEAT.NUM_QUEUES ? 0 : 0x4; done(); return; } // supported capabilities: changeable
        if (fid === D.FEAT.NUM_QUEUES) {
          if (set) {
            if ((cdw11 & 0xffff) === 0xffff || (cdw11 >>> 16) === 0xffff) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
          }
          dw0 = this.features.get(fid)!;
          done(); return;
        }
        if (fid === D.FEAT.IRQ_CONFIG) {
          const iv = cdw11 & 0xffff;
          if (iv >= D.NUM_MSIX) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
          dw0 = set ? cdw11 : iv;
          done(); return;
        }
        if (set) this.features.set(fid, fid === D.FEAT.VWC ? cdw11 & 1 : cdw11);
        dw0 = this.features.get(fid)!;
        done(); return;
      }
      case D.ADM.ASYNC_EVENT:
        if (this.aers.length >= 4) { status = D.SC.AER_LIMIT | D.SC.DNR; done(); return; }
        this.aers.push(cid);
        this.deliverEvents();
        return;
      case D.ADM.ABORT: {
        this.cnt[C_ABORT_CMDS]++;
        // Aborts complete at once, so only completions the full admin CQ holds back are outstanding
        if (this.abortsQueued > D.ACL) { status = D.SC.ABORT_LIMIT; done(); return; }
        dw0 = this.abort(cdw10 & 0xffff, cdw10 >>> 16) ? 0 : 1;
        this.post(sq.cq, sq, cid, 0, dw0, K_ABORT);
        return;
      }
      case D.ADM.KEEP_ALIVE:
        done(); return;
      case D.ADM.DBBUF_CONFIG: {
        if (!this.spec.shadowDoorbells) { status = D.SC.INVALID_OPCODE | D.SC.DNR; done(); return; }
        if (prp1 % D.PAGE !== 0 || prp2 % D.PAGE !== 0 || prp1 === 0 || prp2 === 0) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        if (this.mem.regionOfRange(prp1, D.PAGE) < 0 || this.mem.regionOfRange(prp2, D.PAGE) < 0) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        this.shadowGpa = prp1; this.eventGpa = prp2;
        this.mapQueues();
        // queues that exist already continue from their last doorbell values
        for (const q of this.sqs) if (q && q.id > 0) { this.shadow![2 * q.id] = q.tail; this.eventIdx![2 * q.id] = q.tail; }
        for (const q of this.cqs) if (q && q.id > 0) { this.shadow![2 * q.id + 1] = this.db[2 * q.id + 1]; }
        this.cnt[C_SHADOW] = 1;
        done(); return;
      }
      default:
        this.eLoc = LOC_OPC;
        status = D.SC.INVALID_OPCODE | D.SC.DNR;
        done();
    }
  }

  /**
   * Abort of command `cid` on SQ `sqid`; true if it was aborted. Possible for a command still
   * in its SQ (fetched later, it completes with Command Abort Requested) and for an outstanding
   * Asynchronous Event Request. A command already fetched runs to completion on its bdev (no
   * bdev I/O can be recalled): dw0 bit 0 = 1, not aborted - as for a CID that is not found.
   */
  private abort(sqid: number, cid: number): boolean {
    const t = sqid <= D.MAX_IO_QUEUES ? this.sqs[sqid] : null;
    if (!t || t.deleting) return false;
    if (sqid === 0) {
      const i = this.aers.indexOf(cid);
      if (i >= 0) {
        this.aers.splice(i, 1);
        this.eLoc = LOC_NONE;
        this.post(t.cq, t, cid, D.SC.ABORT_REQ, 0);
        this.cnt[C_ABORTED]++;
        return true;
      }
    }
    // submitted (up to the newest tail doorbell value) but not fetched yet
    let tail = this.readTail(t);
    if (tail >= t.size) tail = t.tail;
    for (let p = t.head; p !== tail; p = p + 1 === t.size ? 0 : p + 1) {
      const o = p * D.SQE;
      if (t.abortMark[p] === 0 && (t.u8[o + 2] | (t.u8[o + 3] << 8)) === cid) {
        t.abortMark[p] = 1; t.marks++;
        this.cnt[C_ABORTED]++;
        return true;
      }
    }
    return false;
  }

  /** The Error Information log page: the newest entry first, unused entries zero. */
  private errorLogPage(): Uint8Array {
    const page = new Uint8Array(ERROR_LOG_BYTES), count = this.cnt[C_ERRORS];
    for (let k = 0; k < D.LOG_ERROR_ENTRIES && k < count; k++) {
      const o = ((count - 1 - k) % D.LOG_ERROR_ENTRIES) * D.ERROR_ENTRY;
      page.set(this.errLog.subarray(o, o + D.ERROR_ENTRY), k * D.ERROR_ENTRY);
    }
    return page;
  }

  private finishSqDelete(sq: Sq): void {
    if (this.sqs[sq.id] !== sq) return;
    this.sqs[sq.id] = null;
    sq.cq.sqs--;
    const asq = this.sqs[0]!;
    if (sq.deleteCid >= 0) this.post(asq.cq, asq, sq.deleteCid, 0, 0);
  }

  info(): Record<string, unknown> {
    return {
      sqs: this.sqs.filter((q) => q).map((q) => ({ qid: q!.id, size: q!.size, cqid: q!.cq.id, head: q!.head, inflight: q!.inflight })),
      cqs: this.cqs.filter((q) => q).map((q) => ({ qid: q!.id, size: q!.size, iv: q!.iv, ien: q!.ien, sqs: q!.sqs, overflow: q!.overflow.length / OVF })),
      shadow_doorbells: this.shadow !== null,
      inflight: this.inflight,
      fatal: this.fatal,
      features: Object.fromEntries(this.features),
      compares_in_progress: D.COMPARE_BUFFERS - this.cmpFree.length,
      namespaces: [...this.ns.values()].map((n) => ({ nsid: n.nsid, blocks: n.nblocks, block_size: n.bs })),
      async_events: {
        config: this.features.get(D.FEAT.ASYNC_EVENT),
        outstanding_requests: this.aers.length,
        pending: this.events.length,
        masked_log_pages: [...this.aenMasked].sort((a, b) => a - b),
        changed_ns_list: this.changedNs.list(),
      },
    };
  }
}
