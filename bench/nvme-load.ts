// nvme-load: random I/O against an emulated NVMe controller over vfio-user (vhostd's
// nvmf VFIOUSER listener, or SPDK's), with the lean initiator in lib/nvme_initiator.ts.
// The NVMe counterpart of vhost-load for the benchmark harness; pin it with taskset.
//
//   node dist/bench/nvme-load.js --socket DIR/cntrl --rw randread --bs 4k --qd 32 --time 5 [--json]
//
// Exit status as vhost-load's: 0 ok, 1 check mismatch, 2 arguments, 3 connect/protocol,
// 4 I/O error or timeout, 5 local error.
import { parseArgs } from "node:util";
import { NvmeInitiator, type DoorbellMode, type RunResult } from "./lib/nvme_initiator.js";

const USAGE = `usage: nvme-load --socket PATH [options]
  --rw MODE        randread | randwrite | randrw (50/50) (default randread)
  --bs SIZE        bytes per I/O, e.g. 4k (default 4k; up to 128k)
  --qd N           commands in flight per queue (default 32)
  --queues N       I/O queue pairs, all driven by this one thread (default 1)
  --time SEC       measured seconds (default 5)
  --warmup SEC     unmeasured seconds first (default 1)
  --doorbells M    auto | mmap | shadow | trap (default auto: mmap if BAR0's doorbell page
                   is mappable, else shadow if offered, else trap)
  --queue-size N   I/O queue entries (default 1024, as Linux; capped by the controller's MQES)
  --check          write a pattern, read it back and compare before the run
  --json           one JSON object on stdout`;

function size(s: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(s);
  if (!m) throw new Error(`bad size '${s}'`);
  return Number(m[1]) * ({ "": 1, k: 1024, m: 1 << 20 }[m[2].toLowerCase() as "" | "k" | "m"]);
}

function fail(code: number, msg: string, json: boolean): never {
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: msg, exit: code }) + "\n");
  process.stderr.write(`nvme-load: ${msg}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let v;
  try {
    v = parseArgs({
      options: {
        socket: { type: "string" }, rw: { type: "string" }, bs: { type: "string" }, qd: { type: "string" },
        queues: { type: "string" }, time: { type: "string" }, warmup: { type: "string" }, doorbells: { type: "string" },
        "queue-size": { type: "string" }, check: { type: "boolean" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) { fail(2, `${(e as Error).message}\n${USAGE}`, false); }
  if (v.help) { process.stdout.write(USAGE + "\n"); return; }
  const json = v.json ?? false;
  const usage = (m: string) => fail(2, m, json);
  if (!v.socket) usage("--socket is required");
  const rw = v.rw ?? "randread";
  const readPct = { randread: 100, randwrite: 0, randrw: 50 }[rw];
  if (readPct === undefined) usage(`--rw ${rw}: randread, randwrite or randrw`);
  const num = (name: string, s: string | undefined, d: number, min: number) => {
    const n = Number(s ?? d);
    if (!Number.isFinite(n) || n < min) usage(`--${name}: bad value '${s}'`);
    return n;
  };
  let bs = 0;
  try { bs = size(v.bs ?? "4k"); } catch (e) { usage((e as Error).message); }
  const qd = num("qd", v.qd, 32, 1), queues = num("queues", v.queues, 1, 1);
  const timeS = num("time", v.time, 5, 0.01), warmupS = num("warmup", v.warmup, 1, 0);
  const doorbells = (v.doorbells ?? "auto") as DoorbellMode | "auto";
  if (!["auto", "mmap", "shadow", "trap"].includes(doorbells)) usage(`--doorbells ${doorbells}: auto, mmap, shadow or trap`);
  const queueSize = v["queue-size"] !== undefined ? num("queue-size", v["queue-size"], 0, 2) : undefined;

  let ini: NvmeInitiator;
  try {
    ini = new NvmeInitiator({ socket: v.socket!, doorbells, queues, qd, bs, queueSize });
  } catch (e) { fail(3, `connect ${v.socket}: ${(e as Error).message}`, json); }
  try {
    await ini.setup();
  } catch (e) {
    ini.c.close();
    const m = (e as Error).message;
    fail(/--|does not offer|needs queues|not a multiple|exceeds/.test(m) ? 2 : 3, `setup: ${m}`, json);
  }
  if (v.check) {
    const nlb = bs / ini.blockSize, last = (Math.floor(ini.nsze / nlb) - 1) * nlb;
    try { await ini.check(0); await ini.check(last); } catch (e) {
      await ini.close();
      fail(/mismatch|read back/.test((e as Error).message) ? 1 : 4, (e as Error).message, json);
    }
  }
  let r: RunResult;
  try {
    r = ini.run(readPct!, timeS, warmupS);
  } catch (e) { await ini.close(); fail(5, (e as Error).stack ?? String(e), json); }
  const posted = await ini.c.drainPosted().catch(() => []);
  await ini.close();
  const errors = r.errors + posted.length;
  const out = {
    ok: errors === 0 && !r.drainTimedOut,
    tool: "nvme-load", socket: v.socket, rw, bs, qd, queues, doorbells: ini.mode, time_s: r.secs,
    device: { model: ini.model, serial: ini.serial, nsze: ini.nsze, block_size: ini.blockSize, mqes: ini.mqes,
      queue_size: ini.queues[0]?.size, shadow_offered: (ini.oacs & 0x100) !== 0,
      bar0_mappable: ini.bar0.sparse.length > 0 },
    total: { ios: r.ios, bytes: r.bytes, iops: r.iops, mib_s: r.mibS,
      lat_us: { min: r.lat.min, avg: r.lat.avg, p50: r.lat.p50, p99: r.lat.p99, p99_9: r.lat.p999, max: r.lat.max } },
    reads: r.reads, writes: r.writes, errors, posted_write_errors: posted.length, interrupted: false,
    drain_timed_out: r.drainTimedOut,
    traps_per_io: r.trapsPerIo, doorbells_per_io: r.doorbellsPerIo, ios_per_batch: r.iosPerBatch,
    client: { busy_ns_per_io: r.busyNsPerIo, empty_poll_pct: r.emptyPollPct, cpu_s: r.cpuS },
  };
  if (json) process.stdout.write(JSON.stringify(out) + "\n");
  else {
    const f = (x: number, d = 2) => x.toFixed(d);
    process.stdout.write(
      `${ini.model} (${ini.serial}), ${ini.nsze} x ${ini.blockSize} B, doorbells: ${ini.mode}\n` +
      `${rw} bs=${bs} qd=${qd} queues=${queues}: ${Math.round(r.iops).toLocaleString("en-US")} IOPS, ${f(r.mibS)} MiB/s, ` +
      `lat avg ${f(r.lat.avg)} p50 ${f(r.lat.p50)} p99 ${f(r.lat.p99)} max ${f(r.lat.max)} us\n` +
      `errors ${errors}, doorbell messages/io ${f(r.trapsPerIo, 4)}, doorbell writes/io ${f(r.doorbellsPerIo, 3)}, ios/batch ${f(r.iosPerBatch, 1)}, ` +
      `client busy ${f(r.busyNsPerIo, 0)} ns/io, empty polls ${f(r.emptyPollPct, 1)}%, cpu ${f(r.cpuS)} s\n`);
  }
  process.exit(errors ? 4 : r.drainTimedOut ? 4 : 0);
}

main().catch((e) => fail(5, (e as Error).stack ?? String(e), process.argv.includes("--json")));
