// QoS on a reactor: one channel's reads and writes that found no budget wait here, in
// two preallocated FIFO rings (reads, writes: they have separate byte limits, so a read
// waiting for read budget must not hold up a write). Released in arrival order as budget
// comes back, by the channel's poller; the rings only grow (doubling) when more I/Os wait
// than ever before. Nothing is allocated per I/O.
import { BdevIo } from '../bdev_io.js';
import { IoStatus, IoType } from '../types.js';
import { QosBucket, monoMs } from './qos_bucket.js';
import { closeQuiet, eventfdDrain, timerfd, timerfdArm } from '../../native/libc.js';

/** What the queue needs from its channel. */
export interface QosHost {
  readonly blockSize: number;
  /** Runs an admitted I/O (the rest of BdevChannel.submit). */
  resume(io: BdevIo): void;
  complete(io: BdevIo, status: number): void;
}

/** Polls between clock reads while I/Os wait (a clock read costs as much as a null I/O). */
const CLOCK_EVERY = 4;
const INITIAL = 64;
const MAX_WAITING = 1 << 20;

class Ring {
  ios: (BdevIo | null)[] = new Array(INITIAL).fill(null);
  seq = new Float64Array(INITIAL);
  head = 0;
  count = 0;

  push(io: BdevIo, seq: number): boolean {
    if (this.count === this.ios.length) {
      if (this.count >= MAX_WAITING) return false;
      this.grow();
    }
    const i = (this.head + this.count++) & (this.ios.length - 1);
    this.ios[i] = io;
    this.seq[i] = seq;
    return true;
  }

  peek(): BdevIo { return this.ios[this.head]!; }
  headSeq(): number { return this.seq[this.head]; }

  shift(): BdevIo {
    const io = this.ios[this.head]!;
    this.ios[this.head] = null;
    this.head = (this.head + 1) & (this.ios.length - 1);
    this.count--;
    return io;
  }

  private grow(): void {
    const n = this.ios.length, ios: (BdevIo | null)[] = new Array(n * 2).fill(null), seq = new Float64Array(n * 2);
    for (let k = 0; k < this.count; k++) {
      const j = (this.head + k) & (n - 1);
      ios[k] = this.ios[j];
      seq[k] = this.seq[j];
    }
    this.ios = ios; this.seq = seq; this.head = 0;
  }
}

export class QosQueue {
  readonly bucket: QosBucket;
  /** The bucket's enabled word: read on every submit. */
  readonly on: Int32Array;
  private readonly reads = new Ring();
  private readonly writes = new Ring();
  private seq = 0;
  private polls = 0;
  private seenGen = -1;
  /** An I/O was queued since the last release attempt (it may fit in the budget left). */
  private dirty = false;
  private tfd = -1;
  /** The timerfd was armed (drained before the next sleep; no syscall for channels without waiters). */
  private armed = false;

  constructor(sab: SharedArrayBuffer, private readonly host: QosHost) {
    this.bucket = new QosBucket(sab);
    this.on = this.bucket.i32.subarray(0, 1);
  }

  get waiting(): number { return this.reads.count + this.writes.count; }

  /**
   * Called for every I/O while QoS is on: true if the I/O waits here (the poller runs it later).
   * Only reads and writes are limited (as SPDK); an I/O queues behind earlier waiters of its kind.
   */
  hold(io: BdevIo): boolean {
    const t = io.type;
    if (t !== IoType.READ && t !== IoType.WRITE) return false;
    const ring = t === IoType.READ ? this.reads : this.writes;
    if (ring.count === 0) {
      if (this.bucket.take(t === IoType.READ, io.numBlocks * this.host.blockSize)) return false;
      this.bucket.markDry();
    }
    if (!ring.push(io, this.seq++)) { this.host.complete(io, IoStatus.NOMEM); return true; }
    this.dirty = true;
    return true;
  }

  /** The channel's poller: refills the shared buckets when a slice began, then releases what fits. */
  poll(): number {
    if (this.reads.count + this.writes.count === 0) return 0;
    if (Atomics.load(this.on, 0) === 0) return this.releaseAll();
    if (++this.polls % CLOCK_EVERY === 0) this.bucket.refill(monoMs());
    const gen = this.bucket.generation;
    if (gen === this.seenGen && !this.dirty) return 0;
    this.seenGen = gen;
    this.dirty = false;
    return this.release();
  }

  /** Releases waiting I/Os in arrival order while their kind has budget. */
  release(): number {
    let n = 0, readOk = true, writeOk = true;
    const r = this.reads, w = this.writes, bucket = this.bucket, bs = this.host.blockSize;
    for (;;) {
      const useRead = readOk && r.count > 0 && (!writeOk || w.count === 0 || r.headSeq() < w.headSeq());
      const useWrite = !useRead && writeOk && w.count > 0;
      if (!useRead && !useWrite) return n;
      const ring = useRead ? r : w, io = ring.peek();
      if (!bucket.take(useRead, io.numBlocks * bs)) {
        bucket.markDry();
        if (useRead) readOk = false; else writeOk = false;
        continue;
      }
      ring.shift();
      n++;
      this.host.resume(io);
    }
  }

  /** QoS was turned off: everything waiting runs now. */
  private releaseAll(): number {
    let n = 0;
    while (this.reads.count + this.writes.count > 0) {
      const r = this.reads, w = this.writes;
      const ring = w.count === 0 || (r.count > 0 && r.headSeq() < w.headSeq()) ? r : w;
      this.host.resume(ring.shift());
      n++;
    }
    return n;
  }

  /** The fd that wakes a sleeping reactor at the next slice (created on first use). */
  wakeFd(): number {
    if (this.tfd < 0) this.tfd = timerfd();
    return this.tfd;
  }

  /** Before the reactor sleeps: with I/Os waiting, wake it at the next slice; false = don't sleep. */
  canSleep(): boolean {
    if (this.armed) { eventfdDrain(this.tfd); this.armed = false; }
    if (this.reads.count + this.writes.count === 0) return true;
    if (Atomics.load(this.on, 0) === 0 || this.tfd < 0) return false;
    this.dirty = true;   // re-check the budget on waking even if no refill happened elsewhere
    timerfdArm(this.tfd, 1);
    this.armed = true;
    return true;
  }

  /** The channel is closing: anything still waiting fails (its submitter is gone). */
  destroy(): void {
    while (this.reads.count > 0) this.host.complete(this.reads.shift(), IoStatus.ABORTED);
    while (this.writes.count > 0) this.host.complete(this.writes.shift(), IoStatus.ABORTED);
    closeQuiet(this.tfd);
    this.tfd = -1;
  }
}
