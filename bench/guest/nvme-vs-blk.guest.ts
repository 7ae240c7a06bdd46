// Guest-side figures: fio inside a QEMU 11 guest (TCG, from the Debian sid chroot of the
// e2e tests) on vhostd's emulated NVMe controller (vfio-user-pci) and on a vhost-user-blk
// disk, the same bdev type behind both, same vhostd process and reactor, same boot. fio
// runs interleave the two devices (nvme, blk, nvme, blk, ...) and the table shows medians.
// Under TCG the guest itself is the bottleneck: a few thousand IOPS.
//
//   npm run bench:guest
//   GUEST_BENCH_MODES=mappable,shadow,trapped GUEST_BENCH_RUNS=3 GUEST_BENCH_RUNTIME=5 npm run bench:guest
//
// GUEST_BENCH_MODES  NVMe doorbell modes, one boot each (default mappable): mappable (SPDK's
//                    default), shadow (disable_mappable_bar0), trapped (+ disable_shadow_doorbells)
// GUEST_BENCH_BDEV   malloc (default) or null
// GUEST_BENCH_RUNS   repetitions per case and device (default 3)
// GUEST_BENCH_RUNTIME seconds per fio run (default 5, plus 1 s ramp)
// GUEST_BENCH_CASES  default randread:1,randread:32,randwrite:1,randwrite:32 (rw:iodepth, 4 KiB)
import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { bootGuest, ensureGuest, tempDir, vhostUserBlkArgs } from "../../test/e2e/harness.js";
import { PRELUDE } from "../../test/e2e/lib/fio-jobs.js";
import { ensureQemuSid, useQemuSid, vfioUserPciArgs } from "../../test/e2e/lib/qemu-sid.js";
import { startVhostd } from "../../test/e2e/vhostd.js";
import { RpcClient } from "../../src/cli/rpc-client.js";

type Mode = "mappable" | "shadow" | "trapped";
const TRANSPORT: Record<Mode, Record<string, boolean>> = {
  mappable: {},
  shadow: { disable_mappable_bar0: true },
  trapped: { disable_mappable_bar0: true, disable_shadow_doorbells: true },
};

const env = process.env;
const MODES = (env.GUEST_BENCH_MODES ?? "mappable").split(",").map((s) => s.trim()).filter(Boolean) as Mode[];
const BDEV = env.GUEST_BENCH_BDEV ?? "malloc";
const RUNS = Number(env.GUEST_BENCH_RUNS ?? 3);
const RUNTIME = Number(env.GUEST_BENCH_RUNTIME ?? 5);
const CASES = (env.GUEST_BENCH_CASES ?? "randread:1,randread:32,randwrite:1,randwrite:32").split(",").map((c) => {
  const [rw, qd] = c.split(":");
  return { rw, qd: Number(qd) };
});
const BLOCKS = 524288; // 256 MiB of 512-byte blocks

interface Sample { mode: Mode; dev: "nvme" | "blk"; rw: string; qd: number; iops: number; latUs: number; p99Us: number }

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function script(): string {
  const runs: string[] = [];
  for (let rep = 1; rep <= RUNS; rep++) {
    for (const c of CASES) {
      // alternate which device goes first, so drift hits both alike
      const devs = rep % 2 ? ["nvme", "blk"] : ["blk", "nvme"];
      for (const d of devs) runs.push(`one ${d} ${c.rw} ${c.qd} ${rep}`);
    }
  }
  return `${PRELUDE}
wait_dev /dev/vda 60 || exit 1
t=0; while ! ls /sys/block | grep -q '^nvme'; do t=$((t+1)); [ $t -gt 600 ] && { echo "no nvme disk"; exit 1; }; sleep 0.1; done
NVME=/dev/$(ls /sys/block | grep '^nvme' | head -1)
wait_dev $NVME 30 || exit 1
kv nvme $NVME
one() { # one DEV RW QD REP
  if [ $1 = nvme ]; then f=$NVME; else f=/dev/vda; fi
  echo "@@FIO $1 $2 $3 $4@@"
  fio --name=j --filename=$f --direct=1 --ioengine=$FIO_ENGINE --rw=$2 --bs=4k --iodepth=$3 --size=200m \\
    --time_based --runtime=${RUNTIME} --ramp_time=1 --norandommap --randrepeat=0 --output-format=json || echo '{"failed":true}'
  echo "@@FIO-END@@"
}
${runs.join("\n")}
echo "@@ALL-STEPS-OK@@"
`;
}

function parse(mode: Mode, out: string): { samples: Sample[]; failures: string[] } {
  const samples: Sample[] = [], failures: string[] = [];
  for (const m of out.matchAll(/@@FIO (\S+) (\S+) (\d+) (\d+)@@\n([\s\S]*?)@@FIO-END@@/g)) {
    const [, dev, rw, qd] = m;
    try {
      const j = JSON.parse(m[5].slice(m[5].indexOf("{")));
      const job = j.jobs[0];
      const io = rw.includes("read") ? job.read : job.write;
      if (job.error) throw new Error(`fio error ${job.error}`);
      samples.push({ mode, dev: dev as "nvme" | "blk", rw, qd: Number(qd), iops: io.iops, latUs: io.lat_ns.mean / 1000,
        p99Us: (io.clat_ns.percentile?.["99.000000"] ?? NaN) / 1000 });
    } catch (e) {
      failures.push(`${mode} ${dev} ${rw} qd${qd}: ${(e as Error).message}: ${m[5].slice(0, 300)}`);
    }
  }
  return { samples, failures };
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(" ");
function busyPct(ms = 1000): number {
  const read = () => execFileSync("head", ["-1", "/proc/stat"]).toString().trim().split(/\s+/).slice(1).map(Number);
  const a = read();
  execFileSync("sleep", [String(ms / 1000)]);
  const b = read();
  const d = b.map((x, i) => x - a[i]);
  const total = d.reduce((s, x) => s + x, 0), idle = d[3] + (d[4] ?? 0);
  return total ? Math.round((100 * (total - idle)) / total) : 0;
}

describe("guest fio: NVMe over vfio-user vs vhost-user-blk", () => {
  it("runs", async (t) => {
    const q = await ensureQemuSid();
    if ("skip" in q) { console.warn(`guest bench skipped: ${q.skip}`); t.skip(); return; }
    await ensureGuest();
    const all: Sample[] = [], failures: string[] = [];
    const machine = `${os.cpus().length} CPUs (${os.cpus()[0]?.model}), QEMU ${q.version}, load before: ${loadavg()}, CPU busy before: ${busyPct()}%`;
    console.log(machine);
    const bdev = (name: string) => BDEV === "null"
      ? { method: "bdev_null_create", params: { name, num_blocks: BLOCKS, block_size: 512 } }
      : { method: "bdev_malloc_create", params: { name, num_blocks: BLOCKS, block_size: 512 } };
    for (const mode of MODES) {
      if (!TRANSPORT[mode]) throw new Error(`GUEST_BENCH_MODES: unknown mode ${mode}`);
      const dir = await tempDir("vhostd-guest-bench-");
      await fs.mkdir(path.join(dir, "nvme"));
      const nqn = "nqn.2019-07.io.spdk:gb0";
      const d = await startVhostd({
        dir,
        config: {
          subsystems: [
            { subsystem: "bdev", config: [bdev("B0"), bdev("B1")] },
            { subsystem: "vhost_blk", config: [{ method: "vhost_create_blk_controller", params: { ctrlr: "vhost.0", dev_name: "B1", cpumask: "0x1" } }] },
            {
              subsystem: "nvmf", config: [
                { method: "nvmf_create_transport", params: { trtype: "VFIOUSER", ...TRANSPORT[mode] } },
                { method: "nvmf_create_subsystem", params: { nqn, allow_any_host: true, serial_number: "GBENCH0001", model_number: "vhostd guest bench" } },
                { method: "nvmf_subsystem_add_ns", params: { nqn, namespace: { bdev_name: "B0", nsid: 1 } } },
                { method: "nvmf_subsystem_add_listener", params: { nqn, listen_address: { trtype: "VFIOUSER", traddr: path.join(dir, "nvme"), trsvcid: "0" } } },
              ],
            },
          ],
        },
        waitFor: "nvme/cntrl",
      });
      const cleanup = await useQemuSid(q, [dir]);
      try {
        const t0 = Date.now();
        const res = await bootGuest({
          devices: [...vfioUserPciArgs(path.join(dir, "nvme/cntrl")), ...vhostUserBlkArgs(path.join(dir, "vhost.0"), { numQueues: 2 })],
          script: script(),
          timeoutMs: (60 + RUNS * CASES.length * 2 * (RUNTIME + 4)) * 1000,
        });
        const p = parse(mode, res.output);
        all.push(...p.samples);
        failures.push(...p.failures);
        if (res.rc !== 0) failures.push(`${mode}: guest script exited ${res.rc}: ${res.output.slice(-1500)}`);
        const c = await RpcClient.connect(d.rpcSocket);
        try {
          const [s] = (await c.call("nvmf_get_subsystems", { nqn })) as any[];
          const x = s.vfio_user_controllers[0];
          console.log(`${mode}: boot ${Math.round(res.bootMs / 1000)} s, total ${Math.round((Date.now() - t0) / 1000)} s; NVMe controller: ` +
            `${x.io_commands} I/O commands, ${x.trapped_doorbell_writes} trapped doorbell writes (${x.trapped_doorbell_writes_per_io?.toFixed(4)} per I/O), ` +
            `shadow doorbells ${x.shadow_doorbells_in_use ? "in use" : "not in use"}`);
        } finally { c.close?.(); }
      } finally {
        await cleanup();
        await d.stop();
        await fs.rm(dir, { recursive: true, force: true });
      }
    }
    console.log(`load after: ${loadavg()}, CPU busy after (no guest): ${busyPct()}%`);
    // table: medians per (case, mode, device)
    const rows: string[][] = [["case", "device", "IOPS", "avg lat us", "p99 us", "runs"]];
    for (const c of CASES) {
      for (const mode of MODES) {
        for (const dev of ["nvme", "blk"] as const) {
          const s = all.filter((x) => x.mode === mode && x.dev === dev && x.rw === c.rw && x.qd === c.qd);
          const label = dev === "nvme" ? `nvme (${mode})` : MODES.length > 1 ? `virtio-blk (boot: ${mode})` : "virtio-blk";
          rows.push([`${c.rw} 4k qd${c.qd}`, label, Math.round(median(s.map((x) => x.iops))).toLocaleString("en-US"),
            median(s.map((x) => x.latUs)).toFixed(1), median(s.map((x) => x.p99Us)).toFixed(1), `${s.length}/${RUNS}`]);
        }
      }
    }
    const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) => `| ${r.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(w[i]) : c.padEnd(w[i]))).join(" | ")} |`;
    const table = [line(rows[0]), `|${w.map((n, i) => (i >= 2 && i <= 4 ? "-".repeat(n + 1) + ":" : "-".repeat(n + 2))).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
    console.log(`\nfio in the guest (TCG, ${BDEV} bdev, 4 KiB, libaio, direct, ${RUNTIME} s + 1 s ramp), medians of ${RUNS}:\n\n${table}\n`);
    if (failures.length) console.log(`failures:\n${failures.join("\n")}`);
    const out = path.resolve("bench/results", `guest-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    await fs.mkdir(path.dirname(out), { recursive: true });
    await fs.writeFile(out, JSON.stringify({ date: new Date().toISOString(), machine, bdev: BDEV, runs: RUNS, runtime: RUNTIME, samples: all, failures }, null, 1));
    console.log(`results written to ${out}`);
    expect(failures).toEqual([]);
  }, 60 * 60_000);
});
