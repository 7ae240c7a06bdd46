// vhostd benchmark harness: vhost-load (vhost-user-blk) or nvme-load (NVMe over vfio-user)
// against several targets, median table.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseOptions, USAGE, type BenchOptions } from "./lib/args.js";
import { buildTools } from "./lib/build.js";
import { makeDriver } from "./lib/drivers.js";
import { formatMachine, machineInfo, sampleBusy } from "./lib/machine.js";
import { killAllSync, stopAll } from "./lib/proc.js";
import { defaultResultsPath, writeResults } from "./lib/results.js";
import { summarize } from "./lib/stats.js";
import { formatFailures, formatTable, type Row } from "./lib/table.js";
import type { DriverEnv, TargetDriver } from "./lib/target.js";
import { caseLabel, runCase, type Case, type LoadOpts, type RunOutcome } from "./lib/vhostload.js";
import { runNvmeCase, type NvmeLoadOpts } from "./lib/nvmeload.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const log = (s: string) => process.stderr.write(s + "\n");

let tmp: string | undefined;
function cleanup(): void {
  killAllSync();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    log(`\n${sig}: stopping targets`);
    void stopAll().finally(() => { cleanup(); process.exit(130); });
  });
}

function progress(rep: number, o: BenchOptions, c: Case, t: string, r: RunOutcome): string {
  const head = `[${rep + 1}/${o.runs}] ${caseLabel(c).padEnd(24)} ${t.padEnd(16)}`;
  if (!r.ok) return `${head} FAILED ${r.error}`;
  const m = r.metrics;
  return `${head} ${Math.round(m.iops).toLocaleString("en-US").padStart(10)} IOPS  avg ${m.avgUs.toFixed(2)} us  p99 ${m.p99Us.toFixed(2)} us` +
    `  client ${m.busyNsPerIo?.toFixed(0) ?? "-"} ns/io`;
}

async function main(): Promise<number> {
  let o: BenchOptions | "help";
  try { o = parseOptions(process.argv.slice(2)); } catch (e) { log(`${(e as Error).message}\n${USAGE}`); return 2; }
  if (o === "help") { log(USAGE); return 0; }
  const opts = o;

  const tools = buildTools(opts.vhostLoadSrc);
  const machine = await machineInfo();
  console.log(formatMachine(machine));
  tmp = mkdtempSync(join(tmpdir(), "vhostd-bench-"));
  const env: DriverEnv = {
    repoRoot, fixtureBin: tools.testTarget, targetCpu: opts.targetCpu,
    lifetimeS: Math.ceil(opts.timeS + opts.warmupS + 60),
  };
  const load: LoadOpts = {
    bin: tools.vhostLoad, timeS: opts.timeS, warmupS: opts.warmupS,
    clientCpus: opts.clientCpus, yieldMulti: opts.yieldMulti, extra: opts.extra,
  };
  const nvmeLoad: NvmeLoadOpts = {
    repoRoot, timeS: opts.timeS, warmupS: opts.warmupS, clientCpus: opts.clientCpus, extra: opts.nvmeExtra,
  };
  const drivers: TargetDriver[] = opts.targets.map((t) => makeDriver(env, t));
  const skipped = new Map<string, string>();
  const started = new Set<string>();
  const outcomes = new Map<string, RunOutcome[]>();
  const key = (c: Case, t: string) => `${caseLabel(c)}\0${t}`;
  let n = 0;

  for (let rep = 0; rep < opts.runs; rep++) {
    for (const c of opts.cases) {
      // Interleave targets per case; rotate the order each repetition.
      const order = drivers.map((_, i) => drivers[(i + rep) % drivers.length]);
      for (const d of order) {
        if (skipped.has(d.name)) continue;
        const dir = mkdtempSync(join(tmp, `${n++}-`));
        let r: RunOutcome;
        try {
          const inst = await d.start(dir);
          started.add(d.name);
          try {
            r = inst.client === "nvme-load" ? await runNvmeCase(nvmeLoad, c, inst.socket) : await runCase(load, c, inst.socket, inst.loadArgs);
          } finally { await inst.stop(); }
        } catch (e) {
          const msg = (e as Error).message;
          if (!started.has(d.name)) {
            skipped.set(d.name, msg);
            log(`SKIPPING target ${d.name}: cannot start it:\n  ${msg.replace(/\n/g, "\n  ")}`);
            continue;
          }
          r = { ok: false, exitCode: null, error: `target start failed: ${msg.split("\n")[0]}` };
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
        log(progress(rep, opts, c, d.name, r));
        const k = key(c, d.name);
        outcomes.set(k, [...(outcomes.get(k) ?? []), r]);
      }
    }
  }

  const busyDuringPct = await sampleBusy(500); // after the last target stopped: others' load
  const rows: Row[] = opts.cases.flatMap((c) =>
    drivers.filter((d) => !skipped.has(d.name)).map((d) => ({ caseLabel: caseLabel(c), target: d.name, s: summarize(outcomes.get(key(c, d.name)) ?? []) })));
  const mq = opts.yieldMulti ? ", multi-queue cases add --yield" : "";
  console.log(`\n${opts.runs} run(s) x ${opts.timeS} s (+${opts.warmupS} s warmup), medians; ` +
    `target on CPU ${opts.targetCpu}, vhost-load --cpus ${opts.clientCpus}${mq}\n`);
  let baseline = opts.baseline;
  if (skipped.has(baseline)) {
    baseline = drivers.find((d) => !skipped.has(d.name))?.name ?? baseline;
    console.log(`(baseline ${opts.baseline} was skipped; ratios are vs ${baseline})\n`);
  }
  console.log(formatTable(rows, baseline));
  const fails = formatFailures(rows);
  console.log(`\nCPU busy after the run (no target running): ${busyDuringPct}%`);
  if (fails) console.log(`\nFailures:\n${fails}`);
  for (const [t, why] of skipped) console.log(`\nSkipped target ${t}: ${why.split("\n")[0]}`);

  const out = opts.jsonOut ?? defaultResultsPath(repoRoot);
  writeResults(out, {
    date: new Date().toISOString(), machine, busyDuringPct, options: opts,
    skipped: Object.fromEntries(skipped),
    results: rows.map((r) => ({ case: r.caseLabel, target: r.target, summary: r.s, runs: outcomes.get(`${r.caseLabel}\0${r.target}`) })),
  });
  log(`\nresults written to ${out}`);
  return rows.some((r) => r.s.okRuns > 0) ? 0 : 1;
}

main().then((code) => { cleanup(); process.exit(code); }, (e) => { log(`bench: ${(e as Error).stack ?? e}`); cleanup(); process.exit(1); });
