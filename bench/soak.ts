// Soak: keeps vhostd under changing load for a while and samples its memory and fds.
//   npm run build && node dist/bench/soak.js [--minutes 10] [--sample-s 10]
// Each cycle: vhost-load connects to a controller, runs a --verify workload of random
// shape, disconnects (memory tables mapped and unmapped each time); every few cycles a
// controller and its bdev are deleted and recreated over RPC. Prints RSS and fd count
// per sample and the growth from the first sample after warm-up to the last.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { buildTools, DEFAULT_SRC } from "./lib/build.js";
import { spawnTracked, stopTracked } from "./lib/proc.js";
import { numArg, rpc } from "./lib/script.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const arg = numArg;
const minutes = arg("--minutes", 10), sampleS = arg("--sample-s", 10);


function vl(bin: string, args: string[]): Promise<number> {
  return new Promise((res) => execFile(bin, args, { timeout: 60_000 }, (e) => res(e ? ((e as { code?: number }).code ?? -1) : 0)));
}

function sample(pid: number): { rssKiB: number; fds: number } {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  return { rssKiB: Number(/VmRSS:\s+(\d+)/.exec(st)![1]), fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function main(): Promise<void> {
  const { vhostLoad } = buildTools(DEFAULT_SRC);
  const dir = mkdtempSync(join(tmpdir(), "vhostd-soak-"));
  const img = join("/var/tmp", `vhostd-soak-${process.pid}.img`);
  const fd = openSync(img, "w"); ftruncateSync(fd, 256 << 20); closeSync(fd);
  const cfg = join(dir, "cfg.json");
  writeFileSync(cfg, JSON.stringify({ subsystems: [
    { subsystem: "bdev", config: [
      { method: "bdev_malloc_create", params: { name: "M0", num_blocks: 262144, block_size: 512 } },
      { method: "bdev_uring_create", params: { name: "F0", filename: img, block_size: 512 } }] },
    { subsystem: "vhost_blk", config: [
      { method: "vhost_create_blk_controller", params: { ctrlr: "m0", dev_name: "M0" } },
      { method: "vhost_create_blk_controller", params: { ctrlr: "f0", dev_name: "F0" } }] },
  ] }));
  const sock = join(dir, "rpc.sock");
  const d = spawnTracked([process.execPath, join(ROOT, "dist/src/cli/vhostd.js"), "-m", "0x1", "-r", sock, "-S", dir, "-c", cfg],
    join(dir, "vhostd.log"));
  await new Promise((r) => setTimeout(r, 3000));
  const pid = d.child.pid!;
  const end = Date.now() + minutes * 60_000;
  const samples: { t: number; rssKiB: number; fds: number; cycles: number }[] = [];
  let cycles = 0, failures = 0, nextSample = Date.now();
  let seed = 1;
  console.log(`soak: ${minutes} min, vhostd pid ${pid}, sampling every ${sampleS} s`);
  while (Date.now() < end) {
    const ctrl = cycles % 2 ? "f0" : "m0";
    const bs = ["4k", "16k", "64k", "512"][seed % 4], qd = [1, 8, 32][seed % 3];
    const rc = await vl(vhostLoad, ["-s", join(dir, ctrl), "--verify", "--rw", "randrw", "--bs", bs, "--qd", String(qd),
      "--time", "1", "--size", "64m", "--seed", String(seed++), "--yield"]);
    if (rc !== 0) { failures++; console.log(`cycle ${cycles}: vhost-load exited ${rc} on ${ctrl}`); }
    cycles++;
    if (cycles % 10 === 0) {   // churn: delete and recreate a controller and its bdev
      await rpc(sock, "vhost_delete_controller", { ctrlr: "m0" });
      await rpc(sock, "bdev_malloc_delete", { name: "M0" });
      await rpc(sock, "bdev_malloc_create", { name: "M0", num_blocks: 262144, block_size: 512 });
      await rpc(sock, "vhost_create_blk_controller", { ctrlr: "m0", dev_name: "M0" });
    }
    if (Date.now() >= nextSample) {
      const s = { t: Math.round((Date.now() - (end - minutes * 60_000)) / 1000), ...sample(pid), cycles };
      samples.push(s);
      console.log(`t=${s.t}s cycles=${s.cycles} rss=${(s.rssKiB / 1024).toFixed(1)} MiB fds=${s.fds}`);
      nextSample += sampleS * 1000;
    }
  }
  await stopTracked(d);
  rmSync(dir, { recursive: true, force: true });
  rmSync(img, { force: true });
  const warm = samples[Math.min(1, samples.length - 1)], last = samples[samples.length - 1];
  console.log(`\n${cycles} cycles, ${failures} failed; RSS ${(warm.rssKiB / 1024).toFixed(1)} -> ${(last.rssKiB / 1024).toFixed(1)} MiB ` +
    `(${((last.rssKiB - warm.rssKiB) / 1024).toFixed(1)} MiB after warm-up), fds ${warm.fds} -> ${last.fds}`);
  process.exitCode = failures > 0 ? 1 : 0;
}

void main();
