// Per-bdev I/O statistics in shared memory: one slot per reactor, each written by
// its reactor only; the control plane sums the slots when asked.
export const MAX_REACTORS = 128;

export const S = {
  READ_OPS: 0, READ_BYTES: 1, WRITE_OPS: 2, WRITE_BYTES: 3, UNMAP_OPS: 4, UNMAP_BYTES: 5,
  FLUSH_OPS: 6, WZ_OPS: 7, WZ_BYTES: 8, ERRORS: 9,
  READ_LAT: 10, WRITE_LAT: 11, UNMAP_LAT: 12, FLUSH_LAT: 13, WZ_LAT: 14,
  READ_LAT_MAX: 15, READ_LAT_MIN: 16, WRITE_LAT_MAX: 17, WRITE_LAT_MIN: 18,
  RESETS: 19,
  HIST: 32,
} as const;
/** Latency histogram: 4 sub-buckets per power of two of nanoseconds, up to 2^40 ns. */
export const HIST_BUCKETS = 160;
export const SLOT_DOUBLES = S.HIST + HIST_BUCKETS;

export function createStats(reactors: number): SharedArrayBuffer {
  return new SharedArrayBuffer(Math.max(1, reactors) * SLOT_DOUBLES * 8);
}

export function histBucket(ns: number): number {
  if (ns < 8) return ns < 0 ? 0 : ns | 0;
  const e = ns >= 4294967296 ? 31 + (Math.log2(ns / 4294967296) | 0) + 1 : 31 - Math.clz32(ns);
  const sub = Math.floor(ns / Math.pow(2, e - 2)) & 3;
  const b = e * 4 + sub - 4;
  return b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
}

/** Lower bound in ns of histogram bucket b. */
export function histBucketStart(b: number): number {
  if (b < 8) return b;
  const e = (b + 4) >> 2, sub = (b + 4) & 3;
  return Math.pow(2, e) + sub * Math.pow(2, e - 2);
}

export interface IoStatsTotals {
  readOps: number; readBytes: number; writeOps: number; writeBytes: number;
  unmapOps: number; unmapBytes: number; flushOps: number; wzOps: number; wzBytes: number;
  errors: number; readLatNs: number; writeLatNs: number; unmapLatNs: number; flushLatNs: number; wzLatNs: number;
  readLatMaxNs: number; readLatMinNs: number; writeLatMaxNs: number; writeLatMinNs: number;
  histogram: number[];
}

export function sumStats(sab: SharedArrayBuffer): IoStatsTotals {
  const d = new Float64Array(sab);
  const slots = d.length / SLOT_DOUBLES;
  const at = (i: number) => { let s = 0; for (let r = 0; r < slots; r++) s += d[r * SLOT_DOUBLES + i]; return s; };
  const max = (i: number) => { let m = 0; for (let r = 0; r < slots; r++) m = Math.max(m, d[r * SLOT_DOUBLES + i]); return m; };
  const min = (i: number) => {
    let m = Infinity;
    for (let r = 0; r < slots; r++) { const v = d[r * SLOT_DOUBLES + i]; if (v > 0 && v < m) m = v; }
    return m === Infinity ? 0 : m;
  };
  const histogram: number[] = [];
  for (let b = 0; b < HIST_BUCKETS; b++) histogram.push(at(S.HIST + b));
  return {
    readOps: at(S.READ_OPS), readBytes: at(S.READ_BYTES), writeOps: at(S.WRITE_OPS), writeBytes: at(S.WRITE_BYTES),
    unmapOps: at(S.UNMAP_OPS), unmapBytes: at(S.UNMAP_BYTES), flushOps: at(S.FLUSH_OPS), wzOps: at(S.WZ_OPS),
    wzBytes: at(S.WZ_BYTES), errors: at(S.ERRORS), readLatNs: at(S.READ_LAT), writeLatNs: at(S.WRITE_LAT),
    unmapLatNs: at(S.UNMAP_LAT), flushLatNs: at(S.FLUSH_LAT), wzLatNs: at(S.WZ_LAT),
    readLatMaxNs: max(S.READ_LAT_MAX), readLatMinNs: min(S.READ_LAT_MIN),
    writeLatMaxNs: max(S.WRITE_LAT_MAX), writeLatMinNs: min(S.WRITE_LAT_MIN), histogram,
  };
}

export function resetStats(sab: SharedArrayBuffer): void { new Float64Array(sab).fill(0); }
