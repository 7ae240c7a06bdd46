// A split virtqueue as the device sees it, on a reactor. Rings are read through typed
// arrays over guest memory; every index, address and length from the guest is checked.
// Allocation-free: a chain is decoded into a preallocated segment table.
import { GuestMemory, TWO32 } from '../memory/guest_memory.js';
import { SegmentTable } from '../../bdev/bdev_io.js';
import { eventfdSignal } from '../../native/libc.js';
import { VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
  VRING_USED_F_NO_NOTIFY } from './constants.js';

export interface SplitQueueSpec {
  size: number;
  /** Front-end virtual addresses from SET_VRING_ADDR. */
  descUaddr: number;
  availUaddr: number;
  usedUaddr: number;
  lastAvail: number;
  eventIdx: boolean;
  indirect: boolean;
  callFd: number;
  /** Interrupt coalescing (vhost_controller_set_coalescing); absent or delayBaseUs 0 = off. */
  coalescing?: Coalescing;
}

/** SPDK's coalescing: above iopsThreshold, interrupts are spaced by delayBaseUs x the excess rate. */
export interface Coalescing { delayBaseUs: number; iopsThreshold: number }

/** How often the request rate is measured for coalescing (ms), as SPDK. */
export const COALESCING_CHECK_MS = 10;

/** Chain decode results (negative = the guest broke the rules). */
export const CHAIN_OK = 0;
export const CHAIN_BAD_ADDR = -1;      // buffer outside guest memory
export const CHAIN_TOO_LONG = -2;      // loop or longer than the table
export const CHAIN_BAD_INDEX = -3;     // next index out of range
export const CHAIN_BAD_INDIRECT = -4;  // malformed indirect table
export const CHAIN_BAD_ORDER = -5;     // readable descriptor after a writable one
export const CHAIN_TOO_MANY_SEGS = -6; // more segments than the device accepts

/** Largest segment readChain produces (SegmentTable lengths are Int32). */
export const SEG_PIECE_MAX = 0x40000000;

export class QueueSetupError extends Error {}

/** A decoded descriptor chain: segments [base, base+n), the first `nRead` device-readable. */
export class Chain {
  head = 0;
  base = 0;
  n = 0;
  nRead = 0;
  readBytes = 0;
  writeBytes = 0;
  /** Buffer descriptors in the chain (an indirect table's own descriptor not counted). */
  descs = 0;
  /** Largest single descriptor length, in bytes. */
  maxLen = 0;
}

export class SplitQueue {
  readonly size: number;
  readonly mask: number;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly usedEventIdx: number;   // in avail16
  private readonly availEventIdx: number;  // in used16
  lastAvail: number;
  private usedIdx: number;
  private publishedUsed: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  readonly callFd: number;
  /** Set when the guest broke the ring protocol; the queue then stops. */
  broken: string | null = null;
  notifications = 0;
  private pollMode = true;
  // coalescing state (all 0 when off)
  private coalBaseMs = 0;
  private coalThreshold = 0;   // requests per COALESCING_CHECK_MS
  private irqDelayMs = 0;
  private nextEventMs = 0;
  private nextCheckMs = 0;
  private reqCount = 0;
  /** An interrupt is owed to the guest but held back by coalescing. */
  signalPending = false;

  constructor(readonly mem: GuestMemory, spec: SplitQueueSpec) {
    const n = spec.size;
    if (n < 1 || n > 32768 || (n & (n - 1)) !== 0) throw new QueueSetupError(`queue size ${n} is not a power of two up to 32768`);
    this.size = n;
    this.mask = n - 1;
    this.eventIdx = spec.eventIdx;
    this.indirect = spec.indirect;
    this.callFd = spec.callFd;
    const descLen = 16 * n, availLen = 6 + 2 * n, usedLen = 6 + 8 * n;
    const d = this.locate(spec.descUaddr, descLen, 16, 'descriptor table');
    const a = this.locate(spec.availUaddr, availLen, 2, 'avail ring');
    const u = this.locate(spec.usedUaddr, usedLen, 4, 'used ring');
    this.desc32 = new Uint32Array(mem.u8[d.r].buffer, d.off, 4 * n);
    this.desc16 = new Uint16Array(mem.u8[d.r].buffer, d.off, 8 * n);
    this.avail16 = new Uint16Array(mem.u8[a.r].buffer, a.off, 3 + n);
    this.used16 = new Uint16Array(mem.u8[u.r].buffer, u.off, 3 + 4 * n);
    this.used32 = new Uint32Array(mem.u8[u.r].buffer, u.off, (usedLen + 2) >> 2);
    this.usedEventIdx = 2 + n;
    this.availEventIdx = 2 + 4 * n;
    this.lastAvail = spec.lastAvail & 0xffff;
    this.usedIdx = Atomics.load(this.used16, 1);
    this.publishedUsed = this.usedIdx;
    this.suppressKicks();
    if (spec.coalescing) this.setCoalescing(spec.coalescing);
  }

  setCoalescing(c: Coalescing): void {
    this.coalBaseMs = c.delayBaseUs / 1000;
    this.coalThreshold = (c.iopsThreshold * COALESCING_CHECK_MS) / 1000;
    this.irqDelayMs = 0;
    if (this.coalBaseMs === 0 && this.signalPending) this.signalNow();
  }

  /** Sends a held-back interrupt now (e.g. before the reactor sleeps). */
  signalNow(): void {
    this.signalPending = false;
    if (this.callFd >= 0) { eventfdSignal(this.callFd); this.notifications++; }
  }

  /** Sends an owed interrupt unless coalescing says it is too early. */
  private coalescedSignal(): void {
    const now = performance.now();
    if (now >= this.nextCheckMs) {
      // requests completed in the last interval against the threshold (SPDK's formula)
      const reqs = this.reqCount, th = this.coalThreshold;
      const d = reqs > th && th > 0 ? (this.coalBaseMs * (reqs - th)) / th : 0;
      // capped: a guest that stopped submitting must not wait longer than one interval
      this.irqDelayMs = d < COALESCING_CHECK_MS ? d : COALESCING_CHECK_MS;
      this.reqCount = 0;
      this.nextCheckMs = now + COALESCING_CHECK_MS;
    }
    if (now < this.nextEventMs) return;
    this.signalNow();
    this.nextEventMs = now + this.irqDelayMs;
  }

  private locate(ua: number, len: number, align: number, what: string): { r: number; off: number } {
    const r = this.mem.regionOfUaddr(ua, len);
    if (r < 0) throw new QueueSetupError(`${what} at 0x${ua.toString(16)} (+${len}) is outside guest memory`);
    const off = ua - this.mem.uaddr[r];
    if (off % align !== 0) throw new QueueSetupError(`${what} at 0x${ua.toString(16)} is not ${align}-byte aligned`);
    return { r, off };
  }

  /** Requests the guest made available and we have not fetched yet (validated). */
  pending(): number {
    const avail = Atomics.load(this.avail16, 1);
    const n = (avail - this.lastAvail) & 0xffff;
    if (n > this.size) {
      this.broken = `avail index jumped by ${n} (queue size ${this.size})`;
      return 0;
    }
    return n;
  }

  /** Takes the next head index off the avail ring; -1 if the head is out of range. */
  nextHead(): number {
    const head = this.avail16[2 + (this.lastAvail & this.mask)];
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= this.size) { this.broken = `avail ring entry ${head} is beyond the queue size ${this.size}`; return -1; }
    return head;
  }

  /**
   * Decodes the chain at `head` into segs[base ..], splitting buffers at region
   * boundaries. Returns CHAIN_OK or a CHAIN_* error.
   */
  readChain(head: number, segs: SegmentTable, base: number, maxSegs: number, c: Chain): number {
    c.head = head; c.base = base; c.n = 0; c.nRead = 0; c.readBytes = 0; c.writeBytes = 0; c.descs = 0; c.maxLen = 0;
    // d32/d16 view the current table; entry i starts at element b32 + 4i / b16 + 8i
    let d32 = this.desc32, d16 = this.desc16, b32 = 0, b16 = 0, tableSize = this.size;
    let i = head, count = 0, inIndirect = false;
    const mem = this.mem;
    for (;;) {
      if (++count > tableSize) return CHAIN_TOO_LONG;
      const e32 = b32 + i * 4, e16 = b16 + i * 8;
      const lo = d32[e32], hi = d32[e32 + 1], len = d32[e32 + 2];
      const flags = d16[e16 + 6], next = d16[e16 + 7];
      if (hi >= 0x200000) return CHAIN_BAD_ADDR;
      const addr = hi * TWO32 + lo;
      if (flags & VRING_DESC_F_INDIRECT) {
        if (inIndirect || !this.indirect || (flags & VRING_DESC_F_NEXT) || c.n > 0) return CHAIN_BAD_INDIRECT;
        if (len === 0 || (len & 15) !== 0 || len > 16 * 32768) return CHAIN_BAD_INDIRECT;
        const r = mem.regionOfRange(addr, len);
        if (r < 0) return CHAIN_BAD_ADDR;
        const off = addr - mem.gpa[r];
        if ((off & 3) !== 0) return CHAIN_BAD_INDIRECT;
        d32 = this.regionView32(r); d16 = this.regionView16(r);
        b32 = off / 4; b16 = off / 2;
        tableSize = len / 16;
        inIndirect = true; count = 0; i = 0;
        continue;
      }
      const write = (flags & VRING_DESC_F_WRITE) !== 0;
      if (!write && c.n > c.nRead) return CHAIN_BAD_ORDER;
      c.descs++;
      if (len > c.maxLen) c.maxLen = len;
      // translate [addr, addr+len), splitting across regions, and into pieces of at most
      // SEG_PIECE_MAX bytes: segment lengths are Int32, and a descriptor may be up to 4 GiB - 1
      let a = addr, left = len;
      while (left > 0) {
        const r = mem.regionOf(a);
        if (r < 0) return CHAIN_BAD_ADDR;
        const take = Math.min(left, mem.end[r] - a, SEG_PIECE_MAX);
        if (c.n >= maxSegs) return CHAIN_TOO_MANY_SEGS;
        const k = base + c.n;
        segs.region[k] = r; segs.off[k] = a - mem.gpa[r]; segs.len[k] = take;
        c.n++;
        if (!write) c.nRead++;
        a += take; left -= take;
      }
      if (write) c.writeBytes += len; else c.readBytes += len;
      if (!(flags & VRING_DESC_F_NEXT)) return CHAIN_OK;
      if (next >= tableSize) return CHAIN_BAD_INDEX;
      i = next;
    }
  }

  private readonly v32 = new Map<number, Uint32Array>();
  private readonly v16 = new Map<number, Uint16Array>();
  private regionView32(r: number): Uint32Array {
    let v = this.v32.get(r);
    if (!v) { const b = this.mem.u8[r].buffer; v = new Uint32Array(b, 0, b.byteLength >> 2); this.v32.set(r, v); }
    return v;
  }
  private regionView16(r: number): Uint16Array {
    let v = this.v16.get(r);
    if (!v) { const b = this.mem.u8[r].buffer; v = new Uint16Array(b, 0, b.byteLength >> 1); this.v16.set(r, v); }
    return v;
  }

  /** Puts a finished chain on the used ring (published by flush()). */
  pushUsed(head: number, len: number): void {
    const slot = 1 + 2 * (this.usedIdx & this.mask);
    this.used32[slot] = head;
    this.used32[slot + 1] = len;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /** Publishes used entries once and notifies the guest if it asked. Returns entries published. */
  flush(): number {
    const old = this.publishedUsed, nw = this.usedIdx;
    if (old === nw) {
      if (this.signalPending) this.coalescedSignal();
      return 0;
    }
    Atomics.store(this.used16, 1, nw);  // seq-cst store: orders the entries before the index, and the index before the reads below
    this.publishedUsed = nw;
    let notify: boolean;
    if (this.eventIdx) {
      const ev = Atomics.load(this.avail16, this.usedEventIdx);
      notify = ((nw - ev - 1) & 0xffff) < ((nw - old) & 0xffff);
    } else {
      notify = (Atomics.load(this.avail16, 0) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
    }
    if (this.coalBaseMs === 0) {
      if (notify && this.callFd >= 0) { eventfdSignal(this.callFd); this.notifications++; }
    } else {
      this.reqCount += (nw - old) & 0xffff;
      if (notify) this.signalPending = true;
      if (this.signalPending) this.coalescedSignal();
    }
    return (nw - old) & 0xffff;
  }

  /** Tell the driver not to kick while we poll. */
  suppressKicks(): void {
    this.pollMode = true;
    if (this.eventIdx) Atomics.store(this.used16, this.availEventIdx, (this.lastAvail + 0x7fff) & 0xffff);
    else Atomics.store(this.used16, 0, Atomics.load(this.used16, 0) | VRING_USED_F_NO_NOTIFY);
  }

  /** Called after fetching a batch in poll mode: keep the driver's kick threshold far ahead. */
  keepKicksSuppressed(): void {
    if (this.eventIdx && this.pollMode) this.used16[this.availEventIdx] = (this.lastAvail + 0x7fff) & 0xffff;
  }

  /**
   * Before sleeping: ask for a kick on the next request, and send an interrupt coalescing
   * still holds back. Returns false if requests are already pending.
   */
  enableKicks(): boolean {
    if (this.signalPending) this.signalNow();
    this.pollMode = false;
    if (this.eventIdx) Atomics.store(this.used16, this.availEventIdx, this.lastAvail);
    else Atomics.store(this.used16, 0, Atomics.load(this.used16, 0) & ~VRING_USED_F_NO_NOTIFY);
    return Atomics.load(this.avail16, 1) === this.lastAvail;
  }

  /** Used entries not yet fetched back by the device: inflight accounting helper. */
  get usedIndex(): number { return this.usedIdx; }
}
