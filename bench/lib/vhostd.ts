// vhostd drivers: SPDK save_config JSON with one bdev and vhost.0 blk controller.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startDaemon } from "./spawn-target.js";
import type { DriverEnv, TargetDriver } from "./target.js";

type Bdev = { method: string; params: Record<string, unknown> };

const BDEVS: Record<string, Bdev> = {
  "vhostd-null": { method: "bdev_null_create", params: { name: "Null0", num_blocks: 262144, block_size: 4096 } },
  "vhostd-malloc": { method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: 262144, block_size: 4096 } },
};

export const vhostdNames = Object.keys(BDEVS);

function config(b: Bdev): object {
  return {
    subsystems: [
      { subsystem: "bdev", config: [b] },
      {
        subsystem: "vhost_blk",
        config: [{ method: "vhost_create_blk_controller", params: { ctrlr: "vhost.0", dev_name: b.params.name, cpumask: "0x1" } }],
      },
    ],
  };
}

/** vhostd-file:PATH — a bdev_uring_create bdev (O_DIRECT where the file system allows it). */
export function vhostdFile(env: DriverEnv, name: string, path: string): TargetDriver {
  return vhostd(env, name, { method: "bdev_uring_create", params: { name: "File0", filename: path } });
}

export function vhostd(env: DriverEnv, name: string, bdevOverride?: Bdev): TargetDriver {
  const bdev = bdevOverride ?? BDEVS[name];
  return {
    name,
    start: async (dir) => {
      const cli = join(env.repoRoot, "dist/src/cli/vhostd.js");
      if (!existsSync(cli)) throw new Error(`${name}: ${cli} not found (vhostd not built yet? run npx tsc -p .)`);
      const sockDir = join(dir, "sock");
      mkdirSync(sockDir);
      const cfg = join(dir, "config.json");
      writeFileSync(cfg, JSON.stringify(config(bdev), null, 1));
      const argv = [process.execPath, cli, "-m", "0x1", "-r", join(dir, "rpc.sock"), "-S", sockDir, "-c", cfg];
      return startDaemon(env, dir, name, argv, join(sockDir, "vhost.0"), 20_000);
    },
  };
}
