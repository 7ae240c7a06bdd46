// Median and per-(case, target) aggregation of repeated runs.
import type { RunOutcome } from "./vhostload.js";

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Summary {
  okRuns: number;
  runs: number;
  iops: number;
  avgUs: number;
  p50Us: number;
  p99Us: number;
  /** the load generator's own time per I/O (completion handling + submission), median */
  clientNsPerIo: number;
  errors: string[]; // distinct failure messages
}

/** Medians over the successful runs; each metric independently. */
export function summarize(outcomes: RunOutcome[]): Summary {
  const ok = outcomes.flatMap((o) => (o.ok ? [o.metrics] : []));
  const errors = [...new Set(outcomes.flatMap((o) => (o.ok ? [] : [o.error])))];
  return {
    okRuns: ok.length,
    runs: outcomes.length,
    iops: median(ok.map((m) => m.iops)),
    avgUs: median(ok.map((m) => m.avgUs)),
    p50Us: median(ok.map((m) => m.p50Us)),
    p99Us: median(ok.map((m) => m.p99Us)),
    clientNsPerIo: median(ok.map((m) => m.busyNsPerIo).filter((x) => Number.isFinite(x))),
    errors,
  };
}
