// Guest-side figures for the PCIe NVMe bdev: a nested TCG guest (intel-iommu + an emulated
// NVMe SSD, test/e2e/lib/nested_guest.ts) runs vhostd with the SSD attached over VFIO and
// serves it as a vhost-blk controller; vhost-load drives it. The peer is the same SSD in the
// same guest run through the kernel's nvme driver with fio (libaio, O_DIRECT). Rounds
// alternate (vhost, kernel, kernel, vhost, ...); the table shows medians and the ratio.
// Under TCG both paths are bound by instruction emulation: the figures say little about
// real hardware.
//
//   npm run bench:guest -- bench/guest/nvme-pcie.guest.ts
//   PCIE_BENCH_RUNS=3 PCIE_BENCH_RUNTIME=5 PCIE_BENCH_CASES=randread:1,randread:32,randwrite:32 \
//   PCIE_BENCH_VL_MODE=irq|poll ...
import { randomFillSync } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { expect, it } from "vitest";
import { bootNestedGuest } from "../../test/e2e/lib/nested_guest.js";
import { vhostLoad } from "../../test/lib/vhost_load.js";

const env = process.env;
const RUNS = Number(env.PCIE_BENCH_RUNS ?? 3);
const RUNTIME = Number(env.PCIE_BENCH_RUNTIME ?? 5);
const CASES = env.PCIE_BENCH_CASES ?? "randread:1,randread:32,randwrite:32";
/** irq (default): vhost-load sleeps on its call eventfd, as fio does on the kernel driver; poll: it spins */
const VL_MODE = env.PCIE_BENCH_VL_MODE ?? "irq";

interface Sample { rep: number; path: "vhost" | "kernel"; rw: string; qd: number; iops: number; p50: number; ok: boolean }

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

it("PCIe NVMe: vhost-blk on Nvme0n1 vs the kernel nvme driver, same SSD, same guest run", async () => {
  const vl = vhostLoad();
  if (!vl.bin) throw new Error(vl.why);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "vhostd-pcie-bench-"));
  try {
    // 128 MiB of random data: neither path reads holes
    const img = path.join(dir, "nvme.img");
    const fh = await fs.open(img, "w");
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < 128; i++) await fh.write(randomFillSync(chunk));
    await fh.close();
    const cases = CASES.split(",").length;
    const r = await bootNestedGuest({
      nvmeImage: img,
      nvmeSizeMiB: 128,
      script: `VHOST_LOAD=${vl.bin} RUNS=${RUNS} RUNTIME=${RUNTIME} CASES=${CASES} VL_MODE=${VL_MODE} node bench/guest/pcie_bench.mjs`,
      timeoutMs: 300_000 + RUNS * cases * 2 * (RUNTIME + 1) * 3000,
    });
    const samples: Sample[] = [...r.output.matchAll(/^sample=(.*)$/gm)].map((m) => JSON.parse(m[1]!));
    expect(r.output).toMatch(/bench_done=1/);
    const rows: string[] = [];
    rows.push("| workload (4 KiB) | vhost-blk on Nvme0n1 IOPS (p50 µs) | kernel nvme + fio IOPS (p50 µs) | ratio |");
    rows.push("|---|---|---|---|");
    for (const c of CASES.split(",")) {
      const [rw, qdS] = c.split(":");
      const qd = Number(qdS);
      const pick = (p: Sample["path"]) => samples.filter((s) => s.path === p && s.rw === rw && s.qd === qd && s.ok);
      const v = pick("vhost"), k = pick("kernel");
      const vi = median(v.map((s) => s.iops)), ki = median(k.map((s) => s.iops));
      rows.push(`| ${rw} QD${qd} | ${Math.round(vi)} (${Math.round(median(v.map((s) => s.p50)))}) | ` +
        `${Math.round(ki)} (${Math.round(median(k.map((s) => s.p50)))}) | ${(vi / ki).toFixed(2)} |`);
    }
    console.log(`\nPCIe NVMe bench: medians of ${RUNS} alternating runs of ${RUNTIME} s (+1 s warm-up), vhost-load ${VL_MODE} mode, TCG guest, ${os.cpus().length} host CPUs\n` +
      rows.join("\n") + "\n");
    expect(samples.every((s) => s.ok), r.output).toBe(true);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 3_600_000);
