// Seeded PRNG for the fuzzer: mulberry32, one independent stream per case, so any case's
// input depends only on (seed, case number) and a run is reproducible from its seed.
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }

  /** A stream for case `n` of a run seeded with `seed`. */
  static forCase(seed: number, n: number): Rng {
    let h = (seed ^ Math.imul(n + 0x9e3779b9, 0x85ebca6b)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
    return new Rng(h ^ (h >>> 16));
  }

  /** mulberry32: a uint32. */
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number { return n <= 0x100000000 ? Math.floor((this.u32() / 0x100000000) * n) : Math.floor(this.float() * n); }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }
  float(): number { return (this.u32() * 0x100000000 + this.u32()) / 2 ** 64; }
  chance(p: number): boolean { return this.u32() / 0x100000000 < p; }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]; }
  u64(): bigint { return (BigInt(this.u32()) << 32n) | BigInt(this.u32()); }
  bytes(n: number): Uint8Array { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff; return b; }
  /** Picks an index by weight. */
  weighted(w: readonly number[]): number {
    let t = 0;
    for (const x of w) t += x;
    let r = this.float() * t;
    for (let i = 0; i < w.length; i++) { r -= w[i]; if (r < 0) return i; }
    return w.length - 1;
  }
}

/** Values that tend to break integer handling, as 64-bit quantities. */
export const INTERESTING_U64: readonly bigint[] = [
  0n, 1n, 2n, 3n, 7n, 8n, 9n, 15n, 16n, 255n, 256n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n,
  0xffffffffn, 0x100000000n, 0xfffffffffn, 0x1fffffffffffffn, 0x20000000000000n, 0x7fffffffffffffffn,
  0x8000000000000000n, 0xfffffffffffff000n, 0xffffffffffffffffn,
];
export const INTERESTING_U32: readonly number[] = [
  0, 1, 2, 3, 4, 7, 8, 9, 16, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 257, 0x7fff, 0x8000, 0x8001, 0xffff, 0x10000,
  0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
];
