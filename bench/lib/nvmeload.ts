// One nvme-load run (the NVMe initiator in TypeScript, bench/nvme-load.ts) for a case,
// pinned like vhost-load; its JSON is mapped to the same metrics.
import { join } from "node:path";
import { runCaptured } from "./proc.js";
import type { Case, Metrics, RunOutcome } from "./vhostload.js";

export interface NvmeLoadOpts {
  repoRoot: string;
  timeS: number;
  warmupS: number;
  clientCpus: string;   // taskset for the whole initiator process
  extra: string[];      // passed through verbatim (e.g. --doorbells trap)
}

const EXIT: Record<number, string> = {
  1: "data check mismatch", 2: "bad arguments or the controller cannot serve them",
  3: "connect failure / protocol error", 4: "I/O error status or I/O timeout", 5: "local error",
};

export function nvmeLoadArgv(o: NvmeLoadOpts, c: Case, socket: string): string[] {
  return [
    "taskset", "-c", o.clientCpus, process.execPath, join(o.repoRoot, "dist/bench/nvme-load.js"), "--socket", socket, "--json",
    "--rw", c.rw, "--bs", c.bs, "--qd", String(c.qd), "--queues", String(c.queues),
    "--time", String(o.timeS), "--warmup", String(o.warmupS), ...o.extra,
  ];
}

export async function runNvmeCase(o: NvmeLoadOpts, c: Case, socket: string): Promise<RunOutcome> {
  const timeoutMs = (o.timeS + o.warmupS + 30) * 1000;
  const r = await runCaptured(nvmeLoadArgv(o, c, socket), timeoutMs);
  const line = r.stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  let j: any;
  try { j = line ? JSON.parse(line) : undefined; } catch { j = undefined; }
  if (r.timedOut) return { ok: false, exitCode: null, error: `nvme-load killed after ${timeoutMs / 1000} s timeout`, raw: j };
  if (r.code !== 0 || !j || j.ok !== true) {
    const code = r.code ?? null;
    const what = (j?.error as string | undefined)?.split("\n")[0] ?? (r.stderr.trim().split("\n").slice(-2).join(" | ") || "no JSON output");
    return { ok: false, exitCode: code, error: `exit ${code}${code !== null && EXIT[code] ? ` (${EXIT[code]})` : ""}: ${what}`, raw: j };
  }
  const t = j.total, l = t.lat_us;
  const metrics: Metrics = {
    iops: t.iops, avgUs: l.avg, p50Us: l.p50, p99Us: l.p99, p999Us: l.p99_9, mibS: t.mib_s,
    kicksPerIo: j.traps_per_io, busyNsPerIo: j.client?.busy_ns_per_io,
  };
  return { ok: true, raw: j, metrics };
}
