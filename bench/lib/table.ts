// Markdown comparison table.
import type { Summary } from "./stats.js";

export interface Row { caseLabel: string; target: string; s: Summary }

const int = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-");
const us = (x: number) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x < 1000 ? x.toFixed(1) : x.toFixed(0)) : "-");

/** Rows in case order; ratio = median IOPS / baseline's median IOPS for the same case. */
export function formatTable(rows: Row[], baseline: string): string {
  const head = ["case", "target", "IOPS", "avg lat us", "p50 us", "p99 us", `ratio vs ${baseline}`, "client ns/io", "runs ok"];
  const base = new Map(rows.filter((r) => r.target === baseline).map((r) => [r.caseLabel, r.s.iops]));
  const body = rows.map((r) => {
    const b = base.get(r.caseLabel);
    const ratio = r.s.okRuns && b && Number.isFinite(b) ? (r.s.iops / b).toFixed(2) : "-";
    const iops = r.s.okRuns ? int(r.s.iops) : "FAILED";
    return [r.caseLabel, r.target, iops, us(r.s.avgUs), us(r.s.p50Us), us(r.s.p99Us), ratio, int(r.s.clientNsPerIo), `${r.s.okRuns}/${r.s.runs}`];
  });
  const right = new Set([2, 3, 4, 5, 6, 7]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(" | ")} |`;
  const sep = `|${widths.map((w, i) => (right.has(i) ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(head), sep, ...body.map(line)].join("\n");
}

/** Distinct failure messages, one line each. */
export function formatFailures(rows: Row[]): string {
  return rows.flatMap((r) => r.s.errors.map((e) => `- ${r.caseLabel} / ${r.target}: ${e}`)).join("\n");
}
