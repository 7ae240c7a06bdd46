// One NVMe I/O queue pair on a reactor: submission and completion rings in DMA memory,
// doorbells in the mapped BAR0 page, preallocated command slots (cid = slot) each with its
// own PRP list page. Every namespace channel of the controller on this reactor shares it.
//
// Hot path: no allocation, no FFI. Entries are written as 32-bit words, the SQ tail
// doorbell is stored once per batch (at the next poll, or before the reactor sleeps), the
// CQ head once per batch of completions. A BdevIo is a request that may need several
// commands (a cut scatter list, more blocks than a command holds): it keeps its own
// position and takes command slots as they free up; requests that find none wait in FIFO.
// Timeouts are checked on a coarse clock read every CLOCK_EVERY polls.
import { BdevChannel } from '../channel.js';
import { BdevIo } from '../bdev_io.js';
import { IoStatus, IoType } from '../types.js';
import { view } from '../../native/libc.js';
import { logger } from '../../src/log.js';

const log = logger('bdev_nvme');
import {
  CQE_WORDS, DSM_AD, DSM_MAX_RANGES, DSM_RANGE_MAX_BLOCKS, IO, MAX_NLB, PAGE, SQE_WORDS, TWO32, statusText,
} from './nvme_spec.js';
import { MAX_PRP_BYTES, PrpCursor, planCommand, prpErrorText } from './prp.js';
import { C_GEN, C_STATE, Q_ACK, Q_ACTIVE, Q_INFLIGHT, Q_PROGRESS, Q_TIMEOUT, ST, qpCell } from './ctrlr_state.js';

/** A qpair as plain data (built by the control plane when it created the queues). */
export interface QpairSpec {
  ctrlr: string;
  /** Unique per attached controller in this process (a re-attached name gets new qpairs). */
  serial: number;
  index: number;
  qid: number;
  depth: number;
  sqHva: number;
  cqHva: number;
  /** depth-1 pages: one PRP list (or DSM range list) per command slot. */
  listHva: number;
  sqDbHva: number;
  cqDbHva: number;
  /** Signalled by the control plane to make a sleeping reactor look at a state change. */
  wakeFd: number;
  /** The CQ's MSI-X eventfd (interrupt mode: the reactor may sleep with commands in flight), or -1. */
  irqFd: number;
  state: SharedArrayBuffer;
  maxXferBytes: number;
  timeoutMs: number;
}

/** What a namespace channel tells the qpair about its I/O. */
export interface NsTarget {
  readonly nsid: number;
  readonly blockSize: number;
}

const FREE = -1;
const CLOCK_EVERY = 1024;
/** A request caught by more controller resets than this fails. */
const MAX_RESET_RETRIES = 3;

export class NvmeQpair {
  readonly depth: number;
  readonly slots: number;
  private readonly sq: Uint32Array;
  private readonly cq: Uint32Array;
  private readonly lists: Uint32Array;
  private readonly sqDb: Uint32Array;
  private readonly cqDb: Uint32Array;
  private readonly st: Int32Array;
  private readonly ackCell: number;
  private readonly inflightCell: number;
  private readonly timeoutCell: number;
  private readonly progressCell: number;
  private sqTail = 0;
  private cqHead = 0;
  private phase = 1;
  private dirty = false;
  private seenGen: number;
  // command slots
  private readonly cmdReq: Int32Array;
  private readonly cmdTime: Float64Array;
  private readonly freeCmd: Int32Array;
  private nfreeCmd: number;
  // requests (one per BdevIo in progress), grown when more are in flight than ever before
  private reqIo: (BdevIo | null)[] = [];
  private reqNs: (NsTarget | null)[] = [];
  private reqSeg = new Int32Array(0);
  private reqOff = new Float64Array(0);
  private reqLba = new Float64Array(0);
  private reqLeft = new Float64Array(0);
  private reqOut = new Int32Array(0);
  private reqStatus = new Int32Array(0);
  private reqTries = new Int32Array(0);
  private reqSeq = new Float64Array(0);
  private seq = 0;
  private reqQueued = new Int8Array(0);
  private freeReq = new Int32Array(0);
  private nfreeReq = 0;
  // requests waiting for a command slot (FIFO ring)
  private waitq = new Int32Array(0);
  private wHead = 0;
  private wLen = 0;
  private readonly cur = new PrpCursor();
  private now = 0;
  private polls = 0;
  inflight = 0;
  /** Completions whose cid named no command in flight (a broken device). */
  bogus = 0;
  private warned = 0;

  constructor(readonly spec: QpairSpec) {
    this.depth = spec.depth;
    this.slots = spec.depth - 1;
    this.sq = new Uint32Array(view(spec.sqHva, spec.depth * SQE_WORDS * 4));
    this.cq = new Uint32Array(view(spec.cqHva, spec.depth * CQE_WORDS * 4));
    this.lists = new Uint32Array(view(spec.listHva, this.slots * PAGE));
    this.sqDb = new Uint32Array(view(spec.sqDbHva, 4));
    this.cqDb = new Uint32Array(view(spec.cqDbHva, 4));
    this.st = new Int32Array(spec.state);
    this.ackCell = qpCell(spec.index, Q_ACK);
    this.inflightCell = qpCell(spec.index, Q_INFLIGHT);
    this.timeoutCell = qpCell(spec.index, Q_TIMEOUT);
    this.progressCell = qpCell(spec.index, Q_PROGRESS);
    this.cmdReq = new Int32Array(this.slots).fill(FREE);
    this.cmdTime = new Float64Array(this.slots);
    this.freeCmd = new Int32Array(this.slots);
    for (let i = 0; i < this.slots; i++) this.freeCmd[i] = this.slots - 1 - i;
    this.nfreeCmd = this.slots;
    this.growReqs(this.slots);
    this.seenGen = Atomics.load(this.st, C_GEN);
    this.now = performance.now();
  }

  activate(on: boolean): void { Atomics.store(this.st, qpCell(this.spec.index, Q_ACTIVE), on ? 1 : 0); }

  private growReqs(n: number): void {
    const old = this.reqIo.length;
    const g32 = (a: Int32Array) => { const b = new Int32Array(n); b.set(a); return b; };
    const g64 = (a: Float64Array) => { const b = new Float64Array(n); b.set(a); return b; };
    this.reqSeg = g32(this.reqSeg); this.reqOff = g64(this.reqOff); this.reqLba = g64(this.reqLba);
    this.reqLeft = g64(this.reqLeft); this.reqOut = g32(this.reqOut); this.reqStatus = g32(this.reqStatus);
    this.reqTries = g32(this.reqTries); this.reqSeq = g64(this.reqSeq);
    const q8 = new Int8Array(n); q8.set(this.reqQueued); this.reqQueued = q8;
    const free = new Int32Array(n); free.set(this.freeReq.subarray(0, this.nfreeReq)); this.freeReq = free;
    for (let i = old; i < n; i++) { this.reqIo.push(null); this.reqNs.push(null); this.freeReq[this.nfreeReq++] = i; }
    // the wait ring is as large as the number of requests (a request waits at most once)
    const w = new Int32Array(n);
    for (let i = 0; i < this.wLen; i++) w[i] = this.waitq[(this.wHead + i) % this.waitq.length];
    this.waitq = w; this.wHead = 0;
  }

  /**
   * Starts a BdevIo (the channel checked its range against the bdev size). While the
   * controller resets, it waits and runs once the queues are back (as in SPDK); on a failed
   * controller it fails at once.
   */
  submit(io: BdevIo, ns: NsTarget): void {
    const s = Atomics.load(this.st, C_STATE);
    if (s === ST.FAILED) { (io.channel as BdevChannel).complete(io, IoStatus.FAILED); return; }
    if (io.type === IoType.RESET) { (io.channel as BdevChannel).complete(io, IoStatus.SUCCESS); return; }
    if (this.nfreeReq === 0) this.growReqs(this.reqIo.length * 2);
    const r = this.freeReq[--this.nfreeReq];
    this.reqIo[r] = io; this.reqNs[r] = ns;
    this.reqTries[r] = 0;
    this.reqSeq[r] = this.seq++;
    this.restart(r);
    this.st[this.inflightCell] = ++this.inflight;
    // keep FIFO order behind waiting requests; wait out a reset
    if (this.wLen > 0 || s !== ST.OK || Atomics.load(this.st, C_GEN) !== this.seenGen) { this.enqueue(r); return; }
    if (!this.drive(r)) this.enqueue(r);
  }

  /** Puts a request back at its start (a new one, or one whose commands a reset dropped). */
  private restart(r: number): void {
    const io = this.reqIo[r]!;
    this.reqSeg[r] = io.segBase; this.reqOff[r] = 0;
    this.reqLba[r] = io.offsetBlocks; this.reqLeft[r] = io.type === IoType.FLUSH ? 1 : io.numBlocks;
    this.reqOut[r] = 0; this.reqStatus[r] = IoStatus.SUCCESS;
  }

  private enqueue(r: number): void {
    if (this.reqQueued[r]) return;
    this.reqQueued[r] = 1;
    this.waitq[(this.wHead + this.wLen) % this.waitq.length] = r;
    this.wLen++;
  }

  private dequeue(): void {
    this.reqQueued[this.waitq[this.wHead]] = 0;
    this.wHead = (this.wHead + 1) % this.waitq.length;
    this.wLen--;
  }

  /**
   * Issues the request's remaining commands while slots are free. Returns false when it
   * must wait for a slot (the caller queues it; it is then in the wait ring until done).
   */
  private drive(r: number): boolean {
    const io = this.reqIo[r]!, ns = this.reqNs[r]!;
    while (this.reqLeft[r] > 0) {
      if (this.nfreeCmd === 0) return false;
      const slot = this.freeCmd[--this.nfreeCmd];
      if (!this.build(r, io, ns, slot)) {
        this.freeCmd[this.nfreeCmd++] = slot;
        this.reqLeft[r] = 0;
        break;
      }
      this.cmdReq[slot] = r;
      this.cmdTime[slot] = this.now;
      this.reqOut[r]++;
    }
    if (this.reqOut[r] === 0) this.finish(r);
    return true;
  }

  /** Writes the SQ entry of the request's next command into the ring. False: the request failed. */
  private build(r: number, io: BdevIo, ns: NsTarget, slot: number): boolean {
    const sq = this.sq, o = this.sqTail * SQE_WORDS, bs = ns.blockSize;
    const lba = this.reqLba[r];
    let opc = 0, nlb = 0, prp1 = 0, prp2 = 0, cdw11 = 0, cdw10 = 0, cdw12 = 0;
    switch (io.type) {
      case IoType.READ: case IoType.WRITE: {
        const c = this.cur, listOff = slot * (PAGE / 4);
        c.seg = this.reqSeg[r]; c.off = this.reqOff[r];
        let max = this.spec.maxXferBytes;
        const left = this.reqLeft[r] * bs;
        if (max > left) max = left;
        const bytes = planCommand(c, io.segs, io.mem!.hva, io.segBase + io.nseg, max, bs,
          this.lists, listOff, this.spec.listHva + slot * PAGE);
        if (bytes < 0) { this.fail(r, c.err); return false; }
        this.reqSeg[r] = c.seg; this.reqOff[r] = c.off;
        opc = io.type === IoType.READ ? IO.READ : IO.WRITE;
        nlb = bytes / bs; prp1 = c.prp1; prp2 = c.prp2;
        cdw10 = lba >>> 0; cdw11 = (lba / TWO32) >>> 0; cdw12 = nlb - 1;
        break;
      }
      case IoType.WRITE_ZEROES: {
        nlb = this.reqLeft[r] > MAX_NLB ? MAX_NLB : this.reqLeft[r];
        opc = IO.WRITE_ZEROES;
        cdw10 = lba >>> 0; cdw11 = (lba / TWO32) >>> 0; cdw12 = nlb - 1;
        break;
      }
      case IoType.UNMAP: {
        // ranges of the DSM command in the slot's list page: cattr, nlb, slba (16 bytes each)
        const words = this.lists, base = slot * (PAGE / 4);
        let n = 0, at = lba, left = this.reqLeft[r];
        for (; left > 0 && n < DSM_MAX_RANGES; n++) {
          const k = left > DSM_RANGE_MAX_BLOCKS ? DSM_RANGE_MAX_BLOCKS : left;
          const w = base + 4 * n;
          words[w] = 0; words[w + 1] = k >>> 0; words[w + 2] = at >>> 0; words[w + 3] = (at / TWO32) >>> 0;
          at += k; left -= k; nlb += k;
        }
        opc = IO.DSM; prp1 = this.spec.listHva + slot * PAGE;
        cdw10 = n - 1; cdw11 = DSM_AD;
        break;
      }
      case IoType.FLUSH: opc = IO.FLUSH; nlb = 1; break;   // one command; nlb only counts it done
      default:
        this.reqStatus[r] = IoStatus.UNSUPPORTED;
        return false;
    }
    sq[o] = opc | (slot << 16); sq[o + 1] = ns.nsid; sq[o + 2] = 0; sq[o + 3] = 0; sq[o + 4] = 0; sq[o + 5] = 0;
    sq[o + 6] = prp1 >>> 0; sq[o + 7] = (prp1 / TWO32) >>> 0; sq[o + 8] = prp2 >>> 0; sq[o + 9] = (prp2 / TWO32) >>> 0;
    sq[o + 10] = cdw10; sq[o + 11] = cdw11; sq[o + 12] = cdw12; sq[o + 13] = 0; sq[o + 14] = 0; sq[o + 15] = 0;
    this.sqTail = this.sqTail + 1 === this.depth ? 0 : this.sqTail + 1;
    this.dirty = true;
    this.reqLba[r] = lba + nlb;
    this.reqLeft[r] -= nlb;
    return true;
  }

  private fail(r: number, err: number): void {
    this.reqStatus[r] = IoStatus.FAILED;
    if (this.warned < 5) {
      this.warned++;
      log.error(`${this.spec.ctrlr}: I/O of ${this.reqIo[r]!.numBlocks} blocks at ${this.reqIo[r]!.offsetBlocks} failed: ${prpErrorText[err]}`);
    }
  }

  private finish(r: number): void {
    const io = this.reqIo[r]!, status = this.reqStatus[r];
    this.reqIo[r] = null; this.reqNs[r] = null;
    this.freeReq[this.nfreeReq++] = r;
    this.st[this.inflightCell] = --this.inflight;
    (io.channel as BdevChannel).complete(io, status);
  }

  /** Stores the SQ tail doorbell if entries were added since the last one. */
  ring(): void {
    if (!this.dirty) return;
    this.dirty = false;
    Atomics.store(this.sqDb, 0, this.sqTail);
  }

  /** Reaps completions (and rings the SQ doorbell of what was queued since). Returns the work done. */
  poll(): number {
    const st = this.st;
    if (Atomics.load(st, C_STATE) !== ST.OK || Atomics.load(st, C_GEN) !== this.seenGen) return this.onStateChange();
    if ((++this.polls & (CLOCK_EVERY - 1)) === 0) this.tick();
    if (this.wLen > 0 && this.nfreeCmd > 0) this.runWaiting();
    this.ring();
    const cq = this.cq;
    let n = 0, h = this.cqHead, dw3 = Atomics.load(cq, h * CQE_WORDS + 3);
    while (((dw3 >>> 16) & 1) === this.phase) {
      const slot = dw3 & 0xffff;
      h = h + 1 === this.depth ? 0 : h + 1;
      if (h === 0) this.phase ^= 1;
      this.cqHead = h;
      n++;
      this.completeCmd(slot, (dw3 >>> 17) & 0x7ff);
      h = this.cqHead;
      dw3 = Atomics.load(cq, h * CQE_WORDS + 3);
    }
    if (n > 0) {
      Atomics.store(this.cqDb, 0, this.cqHead);
      if (this.wLen > 0) this.runWaiting();
      this.ring();
      st[this.progressCell] += n;
    }
    return n;
  }

  private completeCmd(slot: number, status: number): void {
    if (slot >= this.slots || this.cmdReq[slot] === FREE) {
      this.bogus++;
      if (this.bogus <= 3) log.error(`${this.spec.ctrlr}: qid ${this.spec.qid}: completion for command ${slot}, which is not in flight (ignored)`);
      return;
    }
    const r = this.cmdReq[slot];
    this.cmdReq[slot] = FREE;
    this.freeCmd[this.nfreeCmd++] = slot;
    if (status !== 0 && this.reqStatus[r] === IoStatus.SUCCESS) {
      const sct = status >> 8, sc = status & 0xff;
      this.reqStatus[r] = sct === 0 && sc === 0x80 ? IoStatus.OUT_OF_RANGE
        : sct === 0 && sc === 0x01 ? IoStatus.UNSUPPORTED
        : sct === 0 && (sc === 0x07 || sc === 0x08) ? IoStatus.ABORTED : IoStatus.FAILED;
      if (this.warned < 20) { this.warned++; log.warn(`${this.spec.ctrlr}: qid ${this.spec.qid}: command failed: ${statusText(status)}`); }
      this.reqLeft[r] = 0;   // stop issuing the rest of a split request
    }
    // blocks left to issue: the request is in the wait ring and goes on from there
    if (--this.reqOut[r] === 0 && this.reqLeft[r] === 0) this.finish(r);
  }

  private runWaiting(): void {
    while (this.wLen > 0 && this.nfreeCmd > 0) {
      const r = this.waitq[this.wHead];
      this.dequeue();   // before drive: a request it finishes may be reused at once by a new submission
      if (!this.drive(r)) {
        // out of slots again: back to the front
        this.wHead = (this.wHead - 1 + this.waitq.length) % this.waitq.length;
        this.waitq[this.wHead] = r;
        this.reqQueued[r] = 1;
        this.wLen++;
        return;
      }
    }
  }

  /** Coarse clock for timeouts: reads it, and flags a command older than the timeout. */
  private tick(): void {
    this.now = performance.now();
    const t = this.spec.timeoutMs;
    if (t <= 0 || this.inflight === 0) return;
    const limit = this.now - t;
    for (let s = 0; s < this.slots; s++) {
      if (this.cmdReq[s] !== FREE && this.cmdTime[s] < limit) {
        if (Atomics.load(this.st, this.timeoutCell) === 0) {
          log.error(`${this.spec.ctrlr}: qid ${this.spec.qid}: command ${s} had no completion in ${t} ms: resetting the controller`);
          Atomics.store(this.st, this.timeoutCell, 1);
        }
        return;
      }
    }
  }

  /**
   * The controller is resetting, disabled or failed. The control plane bumps the
   * generation only once the device does no more DMA (disabled, or gone): then the rings
   * start over and the generation is acknowledged; the commands in flight are dropped and
   * their requests wait to run again from their start once the queues are back (reads,
   * writes, write zeroes, deallocate and flush can all be repeated), or fail if the
   * controller failed or a request was caught by too many resets. While resetting (same
   * generation) commands in flight may still complete.
   */
  private onStateChange(): number {
    const s = Atomics.load(this.st, C_STATE), gen = Atomics.load(this.st, C_GEN);
    if (gen !== this.seenGen) {
      let n = 0;
      if (s === ST.FAILED) n = this.failAll();
      else n = this.requeueAll();
      this.cq.fill(0);
      this.sqTail = 0; this.cqHead = 0; this.phase = 1; this.dirty = false;
      this.seenGen = gen;
      Atomics.store(this.st, this.ackCell, gen);
      return n + 1;
    }
    if (s === ST.FAILED) { const w = this.wLen; this.failWaiting(); return w; }
    if (s !== ST.RESETTING) return 0;
    const cq = this.cq;
    let n = 0, dw3 = Atomics.load(cq, this.cqHead * CQE_WORDS + 3);
    while (((dw3 >>> 16) & 1) === this.phase) {
      this.cqHead = this.cqHead + 1 === this.depth ? 0 : this.cqHead + 1;
      if (this.cqHead === 0) this.phase ^= 1;
      n++;
      this.completeCmd(dw3 & 0xffff, (dw3 >>> 17) & 0x7ff);
      dw3 = Atomics.load(cq, this.cqHead * CQE_WORDS + 3);
    }
    if (n > 0) Atomics.store(this.cqDb, 0, this.cqHead);
    return n;
  }

  /**
   * After a reset dropped the commands in flight: every request starts over, in the order
   * they were submitted (a few times at most). Rare: this may allocate.
   */
  private requeueAll(): number {
    let n = 0;
    for (let s = 0; s < this.slots; s++) {
      if (this.cmdReq[s] === FREE) continue;
      this.cmdReq[s] = FREE;
      this.freeCmd[this.nfreeCmd++] = s;
      n++;
    }
    const live: number[] = [];
    for (let r = 0; r < this.reqIo.length; r++) if (this.reqIo[r] !== null) live.push(r);
    live.sort((a, b) => this.reqSeq[a] - this.reqSeq[b]);
    while (this.wLen > 0) this.dequeue();
    const failed: number[] = [];
    for (const r of live) {
      if (++this.reqTries[r] > MAX_RESET_RETRIES) { failed.push(r); continue; }
      this.restart(r);
      this.enqueue(r);
    }
    for (const r of failed) { this.reqStatus[r] = IoStatus.FAILED; this.finish(r); }
    return n;
  }

  private failWaiting(): void {
    while (this.wLen > 0) {
      const r = this.waitq[this.wHead];
      this.dequeue();
      this.reqLeft[r] = 0;
      this.reqStatus[r] = IoStatus.FAILED;
      if (this.reqOut[r] === 0) this.finish(r);
    }
  }

  /** Fails every command in flight (the controller no longer touches their memory). */
  private failAll(): number {
    let n = 0;
    this.failWaiting();
    for (let s = 0; s < this.slots; s++) {
      const r = this.cmdReq[s];
      if (r === FREE) continue;
      this.cmdReq[s] = FREE;
      this.freeCmd[this.nfreeCmd++] = s;
      this.reqStatus[r] = IoStatus.FAILED;
      this.reqLeft[r] = 0;
      if (--this.reqOut[r] === 0) this.finish(r);
      n++;
    }
    return n;
  }

  /**
   * Before the reactor sleeps (after the caller drained the eventfds and polled): rings what
   * is queued; it may sleep with commands in flight only if their completions interrupt.
   */
  canSleep(): boolean {
    if (this.dirty) { this.ring(); return false; }
    return this.inflight === 0 || (this.spec.irqFd >= 0 && this.wLen === 0);
  }
}
