// QoS rate limits of one bdev as token buckets in shared memory, used by every reactor's
// channel to the bdev at once (SPDK: struct spdk_bdev_qos, whose quota is atomic too).
//
// Why one shared bucket and not a per-reactor share of the limit: a share wastes the limit
// whenever the load is uneven (a guest whose queues all sit on one reactor would get 1/N
// of its limit). A shared bucket lets any reactor take what is left, at the cost of one
// Atomics.sub per limit per I/O on a cache line the reactors share, which is what SPDK pays.
//
// Time is cut in 1 ms slices (SPDK_BDEV_QOS_TIMESLICE_IN_USEC). There is no QoS thread:
// the first reactor that polls with waiting I/O in a new slice wins a compareExchange on the
// slice number and refills the buckets for every slice since the last refill, so a limit
// holds however the channels come and go. Budget nobody asked for is kept BURST_SLICES
// slices deep (a slow client loses nothing; a burst after an idle spell is 20 ms of budget).
// Slices after a bucket ran dry are owed in full, up to a second: a reactor the OS did not
// run for 50 ms while its guest waited releases those 50 slices' I/O when it runs again
// (SPDK's QoS poller credits every missed slice too).
// The clock is CLOCK_MONOTONIC in ms (monoMs), the same in every thread: performance.now()
// alone is not (each thread has its own origin, milliseconds apart), and Date.now() ticks
// in 10 ms steps on some VMs.

/** The four limits, in SPDK's order (enum spdk_bdev_qos_rate_limit_type). */
export const RW_IOPS = 0, RW_BPS = 1, R_BPS = 2, W_BPS = 3;
export const LIMIT_COUNT = 4;
export const LIMIT_NAMES = ['rw_ios_per_sec', 'rw_mbytes_per_sec', 'r_mbytes_per_sec', 'w_mbytes_per_sec'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export const SLICE_MS = 1;
/** Depth of a bucket, in slices of budget: the largest burst (SPDK's is about 1). */
export const BURST_SLICES = 20;
/** Smallest budget per slice (SPDK_BDEV_QOS_MIN_IO_PER_TIMESLICE, _MIN_BYTE_PER_TIMESLICE). */
export const MIN_IOS_PER_SLICE = 1;
export const MIN_BYTES_PER_SLICE = 512;
/** Slices a refill may owe after the bucket ran dry. */
export const OWED_MAX_SLICES = 1000;
/** Budgets and charges stay below this many units, so that Int32 arithmetic never wraps. */
const UNIT_CAP = 1 << 29;

// Int32 words
const ENABLED = 0;
const LAST_SLICE = 1;     // slice number (monoMs) of the last refill, modulo 2^32
const GEN = 2;            // bumped by every refill and every configuration change
const DRY = 3;            // 1 once a take failed since the last refill
const DRY_AT = 16;        // the slice in which it first failed
const REMAIN = 4;         // [4..8): units left in this slice (may be negative: debt of a big I/O)
const MAX = 8;            // [8..12): units per slice, 0 = limit off
const SHIFT = 12;         // [12..16): a byte-limit unit is 2^shift bytes
const I32_WORDS = 18;
// Float64 slots after the Int32 words: the limits as set, per second (I/Os or bytes)
const F64_LIMITS = I32_WORDS / 2;
const BYTES = (I32_WORDS + LIMIT_COUNT * 2) * 4;

export function createQosState(): SharedArrayBuffer { return new SharedArrayBuffer(BYTES); }

/** performance.now() and process.hrtime() both read CLOCK_MONOTONIC: this thread's fixed offset. */
const MONO_OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();
/** Milliseconds of CLOCK_MONOTONIC, comparable between threads, without allocating a BigInt per call. */
export function monoMs(): number { return performance.now() + MONO_OFFSET_MS; }

/** Typed views of one bdev's QoS state; reactors and the control plane each make their own. */
export class QosBucket {
  readonly i32: Int32Array;
  private readonly f64: Float64Array;

  constructor(readonly sab: SharedArrayBuffer) {
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
  }

  get enabled(): boolean { return Atomics.load(this.i32, ENABLED) !== 0; }
  get generation(): number { return Atomics.load(this.i32, GEN); }
  /** The limits in force, per second (I/Os for RW_IOPS, bytes for the others; 0 = off). */
  limits(): number[] { return [0, 1, 2, 3].map((i) => this.f64[F64_LIMITS + i]); }

  /** Units per slice and unit size of limit i (for tests and reports). */
  slice(i: number): { max: number; shift: number; remaining: number } {
    return { max: this.i32[MAX + i], shift: this.i32[SHIFT + i], remaining: Atomics.load(this.i32, REMAIN + i) };
  }

  /**
   * Control plane: puts new limits in force (per second; 0 = off) with a full slice of budget.
   * Limits must already follow SPDK's rules (see qos.ts).
   */
  configure(perSec: readonly number[], nowMs = monoMs()): void {
    const i32 = this.i32;
    let any = false;
    for (let i = 0; i < LIMIT_COUNT; i++) {
      const l = perSec[i];
      this.f64[F64_LIMITS + i] = l;
      let max = 0, shift = 0;
      if (l > 0) {
        any = true;
        const per = Math.max(Math.floor(l * SLICE_MS / 1000), i === RW_IOPS ? MIN_IOS_PER_SLICE : MIN_BYTES_PER_SLICE);
        // a refill adds up to BURST_SLICES + OWED_MAX_SLICES slices: keep that below UNIT_CAP by coarser units
        while ((per / 2 ** shift) * (BURST_SLICES + OWED_MAX_SLICES) > UNIT_CAP) shift++;
        max = Math.max(1, Math.floor(per / 2 ** shift));
      }
      Atomics.store(i32, MAX + i, max);
      Atomics.store(i32, SHIFT + i, shift);
      Atomics.store(i32, REMAIN + i, max);
    }
    Atomics.store(i32, LAST_SLICE, sliceOf(nowMs));
    Atomics.store(i32, ENABLED, any ? 1 : 0);
    Atomics.add(i32, GEN, 1);
  }

  /**
   * Takes the budget of one read or write of `bytes`; false (nothing taken) if a limit that
   * applies has none left. A limit with any budget left lets the I/O pass and goes negative,
   * so an I/O bigger than a whole slice still runs; the next refills pay its debt (as SPDK).
   */
  take(isRead: boolean, bytes: number): boolean {
    const i32 = this.i32;
    for (let i = 0; i < LIMIT_COUNT; i++) {
      const max = i32[MAX + i];
      if (max === 0 || (i === R_BPS && !isRead) || (i === W_BPS && isRead)) continue;
      const d = i === RW_IOPS ? 1 : units(bytes, i32[SHIFT + i]);
      if (Atomics.sub(i32, REMAIN + i, d) > 0) continue;
      Atomics.add(i32, REMAIN + i, d);
      this.rewind(i, isRead, bytes);
      return false;
    }
    return true;
  }

  /** A waiting I/O found no budget: the first one after a refill stamps the slice (one clock read). */
  markDry(clock: () => number = monoMs): void {
    const i32 = this.i32;
    if (Atomics.load(i32, DRY) === 0 && Atomics.compareExchange(i32, DRY, 0, 1) === 0) Atomics.store(i32, DRY_AT, sliceOf(clock()));
  }

  /** Gives back what take() took from the limits before `upTo`. */
  private rewind(upTo: number, isRead: boolean, bytes: number): void {
    const i32 = this.i32;
    for (let i = 0; i < upTo; i++) {
      const max = i32[MAX + i];
      if (max === 0 || (i === R_BPS && !isRead) || (i === W_BPS && isRead)) continue;
      Atomics.add(i32, REMAIN + i, i === RW_IOPS ? 1 : units(bytes, i32[SHIFT + i]));
    }
  }

  /**
   * Refills the buckets if a slice has begun since the last refill and this caller wins the
   * race to do it: one slice of budget per slice passed, at most a full bucket for the slices
   * before it ran dry, plus every slice since (up to OWED_MAX_SLICES). Debt (the overrun of a
   * big I/O) carries over. Returns whether it refilled.
   */
  refill(nowMs: number): boolean {
    const i32 = this.i32;
    const last = Atomics.load(i32, LAST_SLICE), now = sliceOf(nowMs);
    const k = (now - last) | 0;
    if (k === 0) return false;
    if (Atomics.compareExchange(i32, LAST_SLICE, last, now) !== last) return false;
    const dry = Atomics.exchange(i32, DRY, 0) !== 0;
    if (k < 0) return false;   // a thread whose clock lags a little: slices restart from its now
    let owed = dry ? (now - Atomics.load(i32, DRY_AT)) | 0 : 0;
    owed = owed < 0 ? 0 : owed > k ? k : owed;
    const before = k - owed;
    if (owed > OWED_MAX_SLICES) owed = OWED_MAX_SLICES;
    for (let i = 0; i < LIMIT_COUNT; i++) {
      const max = i32[MAX + i];
      if (max === 0) continue;
      // take what is left and put back the new amount; a take() racing in between sees 0
      // and waits for the next poll (SPDK has the same window)
      const left = Atomics.exchange(i32, REMAIN + i, 0);
      const full = BURST_SLICES * max, kept = left + (before > BURST_SLICES ? BURST_SLICES : before) * max;
      Atomics.add(i32, REMAIN + i, (kept > full ? full : kept) + owed * max);
    }
    Atomics.add(i32, GEN, 1);
    return true;
  }
}

function sliceOf(ms: number): number { return Math.floor(ms / SLICE_MS) | 0; }

/** An I/O's charge in 2^shift-byte units (rounded up, capped so that Int32 sums cannot wrap). */
function units(bytes: number, shift: number): number {
  const u = shift === 0 ? bytes : Math.ceil(bytes / 2 ** shift);
  return u > UNIT_CAP ? UNIT_CAP : u;
}
