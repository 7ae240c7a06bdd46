// QoS rate limits of one bdev as token buckets in shared memory, used by every reactor's
// channel to the bdev at once (SPDK: struct spdk_bdev_qos, whose quota is atomic too).
//
// Why one shared bucket and not a per-reactor share of the limit: a share wastes the limit
// whenever the load is uneven (a guest whose queues all sit on one reactor would get 1/N
// of its limit). A shared bucket lets any reactor take what is left, at the cost of one
// Atomics.sub per limit per I/O on a cache line the reactors share, which is what SPDK pays.
//
// Time is cut in 1 ms slices (SPDK_BDEV_QOS_TIMESLICE_IN_USEC). There is no QoS thread:
// the first reactor that polls with queued I/O in a new slice wins a compareExchange on the
// slice number and refills the buckets, so a limit holds however the channels come and go.
// The clock is Date.now(): the same in every thread (performance.now() is per thread and
// the threads' origins differ by milliseconds). A clock stepped back restarts the slices.

/** The four limits, in SPDK's order (enum spdk_bdev_qos_rate_limit_type). */
export const RW_IOPS = 0, RW_BPS = 1, R_BPS = 2, W_BPS = 3;
export const LIMIT_COUNT = 4;
export const LIMIT_NAMES = ['rw_ios_per_sec', 'rw_mbytes_per_sec', 'r_mbytes_per_sec', 'w_mbytes_per_sec'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export const SLICE_MS = 1;
/** A late refill credits at most this many slices: the burst after an idle spell is 10 ms of budget. */
export const CATCHUP_SLICES = 10;
/** Smallest budget per slice (SPDK_BDEV_QOS_MIN_IO_PER_TIMESLICE, _MIN_BYTE_PER_TIMESLICE). */
export const MIN_IOS_PER_SLICE = 1;
export const MIN_BYTES_PER_SLICE = 512;
/** Budgets and charges stay below this many units, so that Int32 arithmetic never wraps. */
const UNIT_CAP = 1 << 29;

// Int32 words
const ENABLED = 0;
const LAST_SLICE = 1;     // Date.now() of the last refill, modulo 2^32
const GEN = 2;            // bumped by every refill and every configuration change
const REMAIN = 4;         // [4..8): units left in this slice (may be negative: debt of a big I/O)
const MAX = 8;            // [8..12): units per slice, 0 = limit off
const SHIFT = 12;         // [12..16): a byte-limit unit is 2^shift bytes
const I32_WORDS = 16;
// Float64 slots after the Int32 words: the limits as set, per second (I/Os or bytes)
const F64_LIMITS = I32_WORDS / 2;
const BYTES = (I32_WORDS + LIMIT_COUNT * 2) * 4;

export function createQosState(): SharedArrayBuffer { return new SharedArrayBuffer(BYTES); }

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
  configure(perSec: readonly number[], nowMs = Date.now()): void {
    const i32 = this.i32;
    let any = false;
    for (let i = 0; i < LIMIT_COUNT; i++) {
      const l = perSec[i];
      this.f64[F64_LIMITS + i] = l;
      let max = 0, shift = 0;
      if (l > 0) {
        any = true;
        const per = Math.max(Math.floor(l * SLICE_MS / 1000), i === RW_IOPS ? MIN_IOS_PER_SLICE : MIN_BYTES_PER_SLICE);
        // a refill adds up to CATCHUP_SLICES slices: keep that below UNIT_CAP by coarser units
        while ((per / 2 ** shift) * CATCHUP_SLICES > UNIT_CAP) shift++;
        max = Math.max(1, Math.floor(per / 2 ** shift));
      }
      Atomics.store(i32, MAX + i, max);
      Atomics.store(i32, SHIFT + i, shift);
      Atomics.store(i32, REMAIN + i, max);
    }
    Atomics.store(i32, LAST_SLICE, nowMs | 0);
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
   * race to do it. Unused budget does not carry over, debt does (as SPDK's QoS poller).
   * Returns whether it refilled.
   */
  refill(nowMs: number): boolean {
    const i32 = this.i32;
    const last = Atomics.load(i32, LAST_SLICE), now = nowMs | 0;
    let k = (now - last) | 0;
    if (k === 0) return false;
    if (Atomics.compareExchange(i32, LAST_SLICE, last, now) !== last) return false;
    if (k < 0) return false;   // the clock went back: slices restart from now
    if (k > CATCHUP_SLICES) k = CATCHUP_SLICES;
    for (let i = 0; i < LIMIT_COUNT; i++) {
      const max = i32[MAX + i];
      if (max === 0) continue;
      const left = Atomics.exchange(i32, REMAIN + i, 0);
      Atomics.add(i32, REMAIN + i, (left < 0 ? left : 0) + k * max);
    }
    Atomics.add(i32, GEN, 1);
    return true;
  }
}

/** An I/O's charge in 2^shift-byte units (rounded up, capped so that Int32 sums cannot wrap). */
function units(bytes: number, shift: number): number {
  const u = shift === 0 ? bytes : Math.ceil(bytes / 2 ** shift);
  return u > UNIT_CAP ? UNIT_CAP : u;
}
