// delay bdev, reactor side: each I/O runs on the base bdev's channel (opened and polled by
// this one); a read or write completion is then held in one of four FIFO timer lists (avg
// and p99, read and write, as SPDK) until its latency has passed. In interrupt mode a
// timerfd armed for the earliest deadline wakes the reactor. Contexts grow to the highest
// number of I/Os ever in flight and are reused: nothing is allocated per I/O.
import { BdevChannel, openChannel, registerChannelFactory } from '../channel.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../bdev_io.js';
import { BdevChannelSpec, IoType } from '../types.js';
import { closeQuiet, eventfdDrain, timerfd, timerfdArm } from '../../native/libc.js';
import { AVG_READ, AVG_WRITE, LATENCY_COUNT, P99_READ, P99_WRITE } from './latency.js';

const INITIAL_CONTEXTS = 128;
/** Polls between clock reads while completions are held (a clock read costs as much as a null I/O). */
const CLOCK_EVERY = 8;
const NONE = -1;

export class DelayChannel extends BdevChannel implements BdevIoSink {
  private readonly base: BdevChannel;
  private readonly latUs: Float64Array;
  private readonly tfd: number;
  private readonly noSegs = new SegmentTable(0);
  // per context (slot): the I/O sent to the base, the caller's I/O, its list, deadline, next in list
  private children: BdevIo[] = [];
  private parents: (BdevIo | null)[] = [];
  private kind = new Int8Array(0);
  private due = new Float64Array(0);
  private next = new Int32Array(0);
  private free = new Int32Array(0);
  private nfree = 0;
  private readonly head = new Int32Array(LATENCY_COUNT).fill(NONE);
  private readonly tail = new Int32Array(LATENCY_COUNT).fill(NONE);
  private held = 0;
  private atBase = 0;
  private polls = 0;
  private rng: number;

  constructor(spec: BdevChannelSpec, reactorIndex: number) {
    super(spec, reactorIndex);
    const d = spec.data as { base: BdevChannelSpec; latencyUs: SharedArrayBuffer };
    this.latUs = new Float64Array(d.latencyUs);
    this.base = openChannel(d.base, reactorIndex);
    this.tfd = timerfd();
    this.rng = (Date.now() ^ (reactorIndex * 0x9e3779b9)) >>> 0 || 1;
    this.grow(INITIAL_CONTEXTS);
  }

  /** Doubles the contexts (only when more I/Os are in flight than ever before). */
  private grow(n: number): void {
    const old = this.children.length;
    const kind = new Int8Array(n), due = new Float64Array(n), next = new Int32Array(n), free = new Int32Array(n);
    kind.set(this.kind); due.set(this.due); next.set(this.next); free.set(this.free.subarray(0, this.nfree));
    this.kind = kind; this.due = due; this.next = next; this.free = free;
    for (let i = old; i < n; i++) {
      this.children.push(new BdevIo(this, i, this.noSegs));
      this.parents.push(null);
      this.free[this.nfree++] = i;
    }
  }

  /** 1 I/O in 100 gets the p99 latency (xorshift32; SPDK uses rand_r). */
  private p99(): boolean {
    let x = this.rng;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    this.rng = x;
    return x % 100 === 0;
  }

  protected submitIo(io: BdevIo): void {
    if (this.nfree === 0) this.grow(this.children.length * 2);
    const slot = this.free[--this.nfree];
    const c = this.children[slot];
    this.parents[slot] = io;
    c.type = io.type; c.offsetBlocks = io.offsetBlocks; c.numBlocks = io.numBlocks; c.mayUnmap = io.mayUnmap;
    c.mem = io.mem; c.segs = io.segs; c.segBase = io.segBase; c.nseg = io.nseg; c.bytes = io.bytes;
    this.kind[slot] = io.type === IoType.READ ? (this.p99() ? P99_READ : AVG_READ)
      : io.type === IoType.WRITE ? (this.p99() ? P99_WRITE : AVG_WRITE) : NONE;
    this.atBase++;
    this.base.submit(c);
  }

  /** The base finished an I/O: hold it for its latency, or complete it now. */
  onBdevIoDone(c: BdevIo): void {
    const slot = c.tag, k = this.kind[slot];
    this.atBase--;
    const us = k === NONE ? 0 : this.latUs[k];
    if (us <= 0) { this.finish(slot); return; }
    this.due[slot] = performance.now() + us / 1000;
    this.next[slot] = NONE;
    if (this.tail[k] === NONE) this.head[k] = slot; else this.next[this.tail[k]] = slot;
    this.tail[k] = slot;
    this.held++;
  }

  private finish(slot: number): void {
    const io = this.parents[slot]!, status = this.children[slot].status;
    this.parents[slot] = null;
    this.children[slot].segs = this.noSegs;
    this.free[this.nfree++] = slot;
    this.complete(io, status);
  }

  /**
   * Completes held I/Os whose time has come. Each list is FIFO: it stops at the first one not
   * due, so after a latency is lowered newer I/Os wait behind older ones (as in SPDK).
   */
  private expire(now: number): number {
    let n = 0;
    for (let k = 0; k < LATENCY_COUNT; k++) {
      for (let s = this.head[k]; s !== NONE && this.due[s] <= now; s = this.head[k]) {
        this.head[k] = this.next[s];
        if (this.head[k] === NONE) this.tail[k] = NONE;
        this.held--;
        this.finish(s);
        n++;
      }
    }
    return n;
  }

  override poll(): number {
    let work = this.base.pollAll();
    if (this.held > 0 && (++this.polls % CLOCK_EVERY === 0 || work > 0)) work += this.expire(performance.now());
    return work;
  }

  override inflight(): number { return this.atBase + this.held; }
  override wakeFds(): number[] { return [this.tfd, ...this.base.wakeFdsAll()]; }

  /** Before the reactor sleeps: the timerfd is armed for the earliest deadline. */
  override canSleep(): boolean {
    eventfdDrain(this.tfd);
    if (!this.base.canSleepAll()) return false;
    if (this.held === 0) return true;
    let first = Infinity;
    for (let k = 0; k < LATENCY_COUNT; k++) if (this.head[k] !== NONE && this.due[this.head[k]] < first) first = this.due[this.head[k]];
    const wait = first - performance.now();
    if (wait <= 0) return false;
    timerfdArm(this.tfd, wait);
    return true;
  }

  override destroy(): void {
    this.base.closeAll();
    closeQuiet(this.tfd);
  }
}

registerChannelFactory('delay', (spec, r) => new DelayChannel(spec, r));
