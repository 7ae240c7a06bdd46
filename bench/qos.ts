// QoS benchmark: does a bdev_set_qos_limit cap hold, and does an uncapped neighbour on the
// same reactor keep its rate?
//   npm run build && node dist/bench/qos.js [--runs 5] [--time 3] [--iops 20000] [--mbytes 200] [--qd 32]
// One vhostd reactor (cpu 0) serves three vhost-user-blk controllers on null bdevs: Iops
// (rw_ios_per_sec), Bytes (rw_mbytes_per_sec, 128 KiB I/Os) and Free (no limit). Each round
// runs vhost-load on Free alone, then on all three at once; prints per round and the medians:
// capped rates against their limits, and Free's rate beside the capped ones against alone.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { buildTools, DEFAULT_SRC } from "./lib/build.js";
import { spawnTracked, stopTracked, waitForSocket } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import { numArg, rpc } from "./lib/script.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const arg = numArg;
const runs = arg("--runs", 5), timeS = arg("--time", 3), iopsCap = arg("--iops", 20000), mbCap = arg("--mbytes", 200);
const qd = arg("--qd", 32);


interface Rate { iops: number; mibS: number }

/** One vhost-load run (client threads on cpu 1, sleeping on interrupts so that three fit). */
function load(bin: string, sock: string, bs: string): Promise<Rate> {
  const args = ["-s", sock, "-w", "randrw", "-b", bs, "-q", String(qd), "-T", String(timeS), "--warmup", "0.5",
    "--irq", "--cpus", "1", "--json"];
  return new Promise((res, rej) => execFile(bin, args, { timeout: (timeS + 30) * 1000 }, (e, out, err) => {
    try {
      const j = JSON.parse(out);
      if (e || !j.ok) throw new Error(j.error ?? String(e));
      res({ iops: j.total.iops, mibS: j.total.mib_s });
    } catch (x) { rej(new Error(`vhost-load ${sock}: ${(x as Error).message} ${err}`)); }
  }));
}

const pct = (x: number, ref: number) => `${x >= ref ? "+" : ""}${((x / ref - 1) * 100).toFixed(1)}%`;

async function main(): Promise<void> {
  const { vhostLoad } = buildTools(DEFAULT_SRC);
  const dir = mkdtempSync(join(tmpdir(), "vhostd-qos-bench-"));
  const sock = join(dir, "rpc.sock");
  const d = spawnTracked(["taskset", "-c", "0", process.execPath, join(ROOT, "dist/src/cli/vhostd.js"), "-m", "0x1",
    "-r", sock, "-S", dir], join(dir, "vhostd.log"));
  try {
    await waitForSocket(sock, d, 20_000, "vhostd");
    for (const n of ["Iops", "Bytes", "Free"]) {
      await rpc(sock, "bdev_null_create", { name: n, num_blocks: 1 << 22, block_size: 512 });
      await rpc(sock, "vhost_create_blk_controller", { ctrlr: `qos.${n}`, dev_name: n, cpumask: "0x1" });
    }
    await rpc(sock, "bdev_set_qos_limit", { name: "Iops", rw_ios_per_sec: iopsCap });
    await rpc(sock, "bdev_set_qos_limit", { name: "Bytes", rw_mbytes_per_sec: mbCap });
    const s = (n: string) => join(dir, `qos.${n}`);
    console.log(`vhostd QoS, 1 reactor, null bdevs via vhost-user-blk, vhost-load randrw qd${qd} --irq, ${runs} x ${timeS} s`);
    console.log(`caps: Iops ${iopsCap} IOPS (4k), Bytes ${mbCap} MiB/s (128k); Free uncapped (4k)`);
    const iops: number[] = [], bytes: number[] = [], alone: number[] = [], beside: number[] = [];
    for (let r = 0; r < runs; r++) {
      const a = await load(vhostLoad, s("Free"), "4k");
      const [i, b, f] = await Promise.all([load(vhostLoad, s("Iops"), "4k"), load(vhostLoad, s("Bytes"), "128k"),
        load(vhostLoad, s("Free"), "4k")]);
      iops.push(i.iops); bytes.push(b.mibS); alone.push(a.iops); beside.push(f.iops);
      console.log(`run ${r + 1}: Iops ${i.iops.toFixed(0)} IOPS (${pct(i.iops, iopsCap)}), Bytes ${b.mibS.toFixed(1)} MiB/s ` +
        `(${pct(b.mibS, mbCap)}), Free ${a.iops.toFixed(0)} IOPS alone / ${f.iops.toFixed(0)} beside the capped`);
    }
    const mi = median(iops), mb = median(bytes), ma = median(alone), mf = median(beside);
    console.log(`median: Iops ${mi.toFixed(0)} IOPS = cap ${pct(mi, iopsCap)}; Bytes ${mb.toFixed(1)} MiB/s = cap ${pct(mb, mbCap)}; ` +
      `Free ${ma.toFixed(0)} IOPS alone, ${mf.toFixed(0)} beside the capped (${pct(mf, ma)})`);
  } finally {
    await stopTracked(d);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
