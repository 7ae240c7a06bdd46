// Starting vhostd as a real process for end-to-end tests.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { REPO_ROOT, startDaemon, type DaemonHandle } from "./harness.js";

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
