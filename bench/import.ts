// Image import throughput: a 256 MiB image (all data, no holes: the worst case) as raw,
// qcow2 and compressed qcow2 (qemu-img convert), imported into a 256 MiB malloc bdev with
// bdev_import_image; median MiB/s of several runs per format. Peer, same run: qemu-img
// convert of the same image to a raw file in /dev/shm (tmpfs, RAM like the malloc bdev).
//   npm run build && node dist/bench/import.js [--runs 3] [--mib 256]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, openSync, writeSync, closeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnTracked, stopTracked, waitForSocket } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import { numArg, rpc } from "./lib/script.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const arg = numArg;
const runs = arg("--runs", 3), mib = arg("--mib", 256);


/** Half random (incompressible), half text (compressible), no holes. */
function makeImage(path: string): void {
  const fd = openSync(path, "w");
  const text = Buffer.from("vhostd image import benchmark ".repeat(35000)).subarray(0, 1 << 20);
  for (let i = 0; i < mib; i++) writeSync(fd, i % 2 ? randomBytes(1 << 20) : text);
  closeSync(fd);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "vhostd-import-bench-"));
  const sock = join(dir, "rpc.sock");
  const d = spawnTracked([process.execPath, join(ROOT, "dist/src/cli/vhostd.js"), "-m", "0x1", "-r", sock, "-S", dir],
    join(dir, "vhostd.log"));
  try {
    makeImage(join(dir, "img.raw"));
    execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", join(dir, "img.raw"), join(dir, "img.qcow2")]);
    execFileSync("qemu-img", ["convert", "-c", "-f", "raw", "-O", "qcow2", join(dir, "img.raw"), join(dir, "img-c.qcow2")]);
    await waitForSocket(sock, d, 20_000, "vhostd");
    await rpc(sock, "bdev_malloc_create", { name: "M", num_blocks: mib * 256, block_size: 4096 });
    console.log(`image import into a ${mib} MiB malloc bdev (1 reactor, ${2} piscina workers), ${runs} runs per image`);
    for (const img of ["img.raw", "img.qcow2", "img-c.qcow2"]) {
      const rates: number[] = [];
      for (let r = 0; r < runs; r++) {
        const { operation_id } = await rpc(sock, "bdev_import_image", { name: "M", filename: join(dir, img) });
        let j: any;
        for (;;) {
          [j] = await rpc(sock, "bdev_get_import_jobs", { operation_id });
          if (j.state !== "in progress") break;
          await new Promise((res) => setTimeout(res, 50));
        }
        if (j.state !== "complete") throw new Error(`${img}: ${j.error}`);
        rates.push((j.total_bytes / (1 << 20)) / (j.elapsed_ms / 1000));
      }
      const peer: number[] = [];
      const out = join("/dev/shm", `vhostd-import-bench-${process.pid}.raw`);
      for (let r = 0; r < runs; r++) {
        const t0 = performance.now();
        execFileSync("qemu-img", ["convert", "-O", "raw", join(dir, img), out]);
        peer.push(mib / ((performance.now() - t0) / 1000));
        rmSync(out, { force: true });
      }
      console.log(`${img.padEnd(12)} bdev_import_image median ${median(rates).toFixed(1)} MiB/s ` +
        `(runs: ${rates.map((x) => x.toFixed(1)).join(", ")}); qemu-img convert to tmpfs median ${median(peer).toFixed(1)} MiB/s`);
    }
  } finally {
    await stopTracked(d);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
