// Command-line options -> BenchOptions (defaults, --quick, validation).
import { parseArgs } from "node:util";
import { TARGET_HELP } from "./drivers.js";
import type { Case } from "./vhostload.js";

export interface BenchOptions {
  targets: string[];
  baseline: string;
  cases: Case[];
  runs: number;
  timeS: number;
  warmupS: number;
  targetCpu: string;
  clientCpus: string;
  yieldMulti: boolean;
  extra: string[];
  nvmeExtra: string[];
  jsonOut?: string;
  vhostLoadSrc?: string;
}

export const USAGE = `usage: npm run bench -- [options]
  --targets LIST     comma-separated (default qsd-null,vhostd-null); known: ${TARGET_HELP}
  --baseline NAME    target the ratio column compares to (default: qsd-null if present, else the first)
  --rw LIST          default randread,randwrite
  --bs LIST          default 4k
  --qd LIST          default 1,32,128
  --queues LIST      default 1,2
  --time SEC         measured seconds per run (default 5)
  --warmup SEC       unmeasured seconds before each run (default 1)
  --runs N           repetitions; medians are reported (default 3)
  --quick            1 run, 2 s, 0.5 s warmup, randread+randwrite x qd 1,32 x 1 queue
  --target-cpu LIST  taskset for targets (default 0)
  --client-cpus LIST vhost-load --cpus (default 1)
  --no-yield         do not pass --yield to vhost-load for multi-queue cases
  --vl-args "ARGS"   extra vhost-load arguments, e.g. "--hugepages"
  --nl-args "ARGS"   extra nvme-load arguments (vhostd-nvme-* targets), e.g. "--queue-size 256"
  --vhost-load-src D vhost-load source dir (default /work/shared/tools/vhost-load)
  --json-out FILE    default bench/results/<timestamp>.json`;

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

function posNum(name: string, v: string, int: boolean): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (int && !Number.isInteger(n))) throw new Error(`--${name}: bad value '${v}'`);
  return n;
}

function nonNeg(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: bad value '${v}'`);
  return n;
}

export function parseOptions(argv: string[]): BenchOptions | "help" {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      targets: { type: "string" }, baseline: { type: "string" },
      rw: { type: "string" }, bs: { type: "string" }, qd: { type: "string" }, queues: { type: "string" },
      time: { type: "string" }, warmup: { type: "string" }, runs: { type: "string" },
      quick: { type: "boolean" }, "no-yield": { type: "boolean" },
      "target-cpu": { type: "string" }, "client-cpus": { type: "string" },
      "vl-args": { type: "string" }, "nl-args": { type: "string" }, "vhost-load-src": { type: "string" }, "json-out": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (v.help) return "help";
  const q = v.quick ?? false;
  const rws = list(v.rw ?? "randread,randwrite");
  const bss = list(v.bs ?? "4k");
  const qds = list(v.qd ?? (q ? "1,32" : "1,32,128")).map((x) => posNum("qd", x, true));
  const nqs = list(v.queues ?? (q ? "1" : "1,2")).map((x) => posNum("queues", x, true));
  // Order: rw, bs, queues, qd -- so related rows sit together in the table.
  const cases: Case[] = [];
  for (const rw of rws) for (const bs of bss) for (const queues of nqs) for (const qd of qds) cases.push({ rw, bs, qd, queues });
  const targets = list(v.targets ?? "qsd-null,vhostd-null");
  if (targets.length === 0) throw new Error("--targets: empty list");
  const baseline = v.baseline ?? (targets.includes("qsd-null") ? "qsd-null" : targets[0]);
  if (!targets.includes(baseline)) throw new Error(`--baseline ${baseline} is not in --targets`);
  return {
    targets, baseline, cases,
    runs: posNum("runs", v.runs ?? (q ? "1" : "3"), true),
    timeS: posNum("time", v.time ?? (q ? "2" : "5"), false),
    warmupS: nonNeg("warmup", v.warmup ?? (q ? "0.5" : "1")),
    targetCpu: v["target-cpu"] ?? "0",
    clientCpus: v["client-cpus"] ?? "1",
    yieldMulti: !v["no-yield"],
    extra: (v["vl-args"] ?? "").split(/\s+/).filter(Boolean),
    nvmeExtra: (v["nl-args"] ?? "").split(/\s+/).filter(Boolean),
    jsonOut: v["json-out"],
    vhostLoadSrc: v["vhost-load-src"],
  };
}
