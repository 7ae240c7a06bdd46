// One vhost-load run: argv, execution with timeout, --json parsing.
import { runCaptured } from "./proc.js";

export interface Case { rw: string; bs: string; qd: number; queues: number }

export interface LoadOpts {
  bin: string;
  timeS: number;
  warmupS: number;
  clientCpus: string;   // --cpus for the queue threads
  yieldMulti: boolean;  // --yield when queues > 1
  extra: string[];      // passed through verbatim
}

export interface Metrics { iops: number; avgUs: number; p50Us: number; p99Us: number; p999Us: number; mibS: number; kicksPerIo: number; busyNsPerIo: number }

export type RunOutcome =
  | { ok: true; metrics: Metrics; raw: unknown }
  | { ok: false; exitCode: number | null; error: string; raw?: unknown };

// Exit status meanings from the vhost-load README.
const EXIT: Record<number, string> = {
  1: "data verification mismatch",
  2: "bad arguments or target cannot serve them",
  3: "connect failure / disconnect / protocol violation / control timeout",
  4: "I/O error status or I/O timeout",
  5: "local system error",
};

export const caseLabel = (c: Case) => `${c.rw} ${c.bs} qd${c.qd} q${c.queues}`;

export function loadArgv(o: LoadOpts, c: Case, socket: string, targetArgs: string[] = []): string[] {
  const a = [
    "taskset", "-c", o.clientCpus, o.bin, "--socket", socket, "--json",
    "--rw", c.rw, "--bs", c.bs, "--qd", String(c.qd), "--queues", String(c.queues),
    "--time", String(o.timeS), "--warmup", String(o.warmupS), "--cpus", o.clientCpus,
  ];
  if (c.queues > 1 && o.yieldMulti) a.push("--yield");
  return [...a, ...targetArgs, ...o.extra];
}

type Json = { [k: string]: any };

function parse(stdout: string): Json | undefined {
  const line = stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  if (!line) return undefined;
  try { return JSON.parse(line) as Json; } catch { return undefined; }
}

export async function runCase(o: LoadOpts, c: Case, socket: string, targetArgs: string[] = []): Promise<RunOutcome> {
  const timeoutMs = (o.timeS + o.warmupS + 30) * 1000;
  const r = await runCaptured(loadArgv(o, c, socket, targetArgs), timeoutMs);
  const j = parse(r.stdout);
  const stderrTail = r.stderr.trim().split("\n").slice(-2).join(" | ");
  if (r.timedOut) return { ok: false, exitCode: null, error: `vhost-load killed after ${timeoutMs / 1000} s timeout`, raw: j };
  if (r.code !== 0 || !j || j.ok !== true) {
    const code = r.code ?? null;
    const what = (j?.error as string | undefined) ?? (stderrTail || "no JSON output");
    return { ok: false, exitCode: code, error: `exit ${code}${code !== null && EXIT[code] ? ` (${EXIT[code]})` : ""}: ${what}`, raw: j };
  }
  if (j.errors > 0 || j.interrupted) return { ok: false, exitCode: 0, error: `errors=${j.errors} interrupted=${j.interrupted}`, raw: j };
  const t = j.total, l = t.lat_us;
  return {
    ok: true,
    raw: j,
    metrics: {
      iops: t.iops, avgUs: l.avg, p50Us: l.p50, p99Us: l.p99, p999Us: l.p99_9, mibS: t.mib_s,
      kicksPerIo: j.kicks_per_io, busyNsPerIo: j.client?.busy_ns_per_io,
    },
  };
}
