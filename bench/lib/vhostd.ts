// vhostd drivers: SPDK save_config JSON with one bdev and vhost.0 blk controller.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startDaemon } from "./spawn-target.js";
import type { DriverEnv, TargetDriver } from "./target.js";

type Bdev = { method: string; params: Record<string, unknown> };

const BDEVS: Record<string, Bdev> = {
  null: { method: "bdev_null_create", params: { name: "Null0", num_blocks: 262144, block_size: 4096 } },
  malloc: { method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: 262144, block_size: 4096 } },
};

/** vhostd-null, vhostd-malloc (blk) and vhostd-scsi-null, vhostd-scsi-malloc (scsi target 0). */
const NAMES: Record<string, { bdev: string; scsi: boolean }> = {
  "vhostd-null": { bdev: "null", scsi: false },
  "vhostd-malloc": { bdev: "malloc", scsi: false },
  "vhostd-scsi-null": { bdev: "null", scsi: true },
  "vhostd-scsi-malloc": { bdev: "malloc", scsi: true },
};

export const vhostdNames = Object.keys(NAMES);

function config(b: Bdev, scsi: boolean): object {
  const ctrlr = scsi
    ? {
      subsystem: "vhost_scsi",
      config: [
        { method: "vhost_create_scsi_controller", params: { ctrlr: "vhost.0", cpumask: "0x1" } },
        { method: "vhost_scsi_controller_add_target", params: { ctrlr: "vhost.0", scsi_target_num: 0, bdev_name: b.params.name } },
        { method: "vhost_start_scsi_controller", params: { ctrlr: "vhost.0" } },
      ],
    }
    : {
      subsystem: "vhost_blk",
      config: [{ method: "vhost_create_blk_controller", params: { ctrlr: "vhost.0", dev_name: b.params.name, cpumask: "0x1" } }],
    };
  return { subsystems: [{ subsystem: "bdev", config: [b] }, ctrlr] };
}

/** vhostd-file:PATH — a bdev_uring_create bdev (O_DIRECT where the file system allows it). */
export function vhostdFile(env: DriverEnv, name: string, path: string): TargetDriver {
  return vhostd(env, name, { method: "bdev_uring_create", params: { name: "File0", filename: path } });
}

export function vhostd(env: DriverEnv, name: string, bdevOverride?: Bdev): TargetDriver {
  const kind = NAMES[name] ?? { bdev: "", scsi: false };
  const bdev = bdevOverride ?? BDEVS[kind.bdev];
  return {
    name,
    start: async (dir) => {
      const cli = join(env.repoRoot, "dist/src/cli/vhostd.js");
      if (!existsSync(cli)) throw new Error(`${name}: ${cli} not found (vhostd not built yet? run npx tsc -p .)`);
      const sockDir = join(dir, "sock");
      mkdirSync(sockDir);
      const cfg = join(dir, "config.json");
      writeFileSync(cfg, JSON.stringify(config(bdev, kind.scsi), null, 1));
      const argv = [process.execPath, cli, "-m", "0x1", "-r", join(dir, "rpc.sock"), "-S", sockDir, "-c", cfg];
      const inst = await startDaemon(env, dir, name, argv, join(sockDir, "vhost.0"), 20_000);
      return kind.scsi ? { ...inst, loadArgs: ["--type", "scsi"] } : inst;
    },
  };
}
