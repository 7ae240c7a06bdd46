// Starting vhostd as a real process for end-to-end tests.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { REPO_ROOT, startDaemon, type DaemonHandle } from "./harness.js";
import { ok } from "../integration/daemon.js";

export interface VhostdOptions {
  dir: string;
  /** SPDK save_config-style subsystems */
  config: { subsystems: { subsystem: string; config: { method: string; params: Record<string, unknown> }[] }[] };
  cpumask?: string;
  /** socket to wait for (relative to dir); default the first controller */
  waitFor?: string;
  extraArgs?: string[];
}

export interface Vhostd extends DaemonHandle {
  rpcSocket: string;
  dir: string;
}

export async function startVhostd(o: VhostdOptions): Promise<Vhostd> {
  const cfg = path.join(o.dir, "vhostd.json");
  await fs.writeFile(cfg, JSON.stringify(o.config, null, 1));
  const rpcSocket = path.join(o.dir, "rpc.sock");
  const first = o.config.subsystems.flatMap((s) => s.config).find((c) => c.method.startsWith("vhost_create"));
  const wait = path.join(o.dir, o.waitFor ?? String(first?.params.ctrlr ?? "rpc.sock"));
  const args = [path.join(REPO_ROOT, "dist/src/cli/vhostd.js"), "-m", o.cpumask ?? "0x1", "-r", rpcSocket,
    "-S", o.dir, "-c", cfg, ...(o.extraArgs ?? [])];
  const h = await startDaemon(process.execPath, args, wait, 20);
  return Object.assign(h, { rpcSocket, dir: o.dir });
}

export function blkConfig(bdevs: { method: string; params: Record<string, unknown> }[],
  ctrls: { ctrlr: string; dev_name: string; cpumask?: string; readonly?: boolean }[]): VhostdOptions["config"] {
  return {
    subsystems: [
      { subsystem: "bdev", config: bdevs },
      { subsystem: "vhost_blk", config: ctrls.map((c) => ({ method: "vhost_create_blk_controller", params: c })) },
    ],
  };
}

/**
 * Latencies (µs) of the delay bdev that restart tests put over their file bdev: a TCG guest
 * submits slowly and a file completes in microseconds, so without it no request would be in
 * flight when vhostd is killed.
 */
export const RESTART_DELAY = { avg_read_latency: 5000, p99_read_latency: 10_000, avg_write_latency: 20_000, p99_write_latency: 50_000 };

/**
 * Waits until a bdev has completed `ops` more writes than when called: the guest's I/O is
 * flowing (a job that printed its start marker may still be setting up under TCG).
 */
export async function waitForWrites(d: Vhostd, bdev: string, ops: number, timeoutMs: number): Promise<number> {
  const writes = async () => Number((await ok(d.rpcSocket, "bdev_get_iostat", { name: bdev })).bdevs[0].num_write_ops);
  const start = await writes(), end = Date.now() + timeoutMs;
  for (;;) {
    const n = await writes();
    if (n - start >= ops) return n;
    if (Date.now() > end) throw new Error(`only ${n - start} writes reached bdev ${bdev} in ${timeoutMs} ms:\n${d.log()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
