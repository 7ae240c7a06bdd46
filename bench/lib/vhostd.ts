// vhostd drivers: SPDK save_config JSON with one bdev and either the vhost.0 blk controller
// or (vhostd-nvme-*) an NVMe subsystem with a VFIOUSER listener, socket nvme/cntrl.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startDaemon } from "./spawn-target.js";
import type { DriverEnv, TargetDriver, TargetInstance } from "./target.js";

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

/** NVMe doorbell modes of the VFIOUSER transport (SPDK's option names). */
const NVME_TRANSPORT: Record<string, Record<string, boolean>> = {
  "": {},                                                           // mappable doorbell page (default)
  shadow: { disable_mappable_bar0: true },                          // shadow doorbells
  trap: { disable_mappable_bar0: true, disable_shadow_doorbells: true }, // every doorbell write traps
};

export const NVME_TARGET_RE = /^vhostd-nvme-(null|malloc)(?:-(shadow|trap))?$/;

function nvmeConfig(b: Bdev, traddr: string, transport: Record<string, boolean>): object {
  const nqn = "nqn.2019-07.io.spdk:bench0";
  return {
    subsystems: [
      { subsystem: "bdev", config: [b] },
      {
        subsystem: "nvmf",
        config: [
          { method: "nvmf_create_transport", params: { trtype: "VFIOUSER", ...transport } },
          { method: "nvmf_create_subsystem", params: { nqn, allow_any_host: true, serial_number: "BENCH0001", model_number: "vhostd bench" } },
          { method: "nvmf_subsystem_add_ns", params: { nqn, namespace: { bdev_name: b.params.name, nsid: 1 } } },
          { method: "nvmf_subsystem_add_listener", params: { nqn, listen_address: { trtype: "VFIOUSER", traddr, trsvcid: "0" } } },
        ],
      },
    ],
  };
}

/** Writes `cfg` as the config of a vhostd pinned to reactor 0 (sockets in DIR/sock) and waits for `socket`. */
async function startVhostd(env: DriverEnv, dir: string, name: string, cfg: object, socket: string): Promise<TargetInstance> {
  const cli = join(env.repoRoot, "dist/src/cli/vhostd.js");
  if (!existsSync(cli)) throw new Error(`${name}: ${cli} not found (vhostd not built yet? run npx tsc -p .)`);
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(cfg, null, 1));
  const argv = [process.execPath, cli, "-m", "0x1", "-r", join(dir, "rpc.sock"), "-S", join(dir, "sock"), "-c", file,
    "--disable-cpumask-locks"];   // benches of several checkouts may share a CPU
  return startDaemon(env, dir, name, argv, socket, 20_000);
}

/** vhostd-nvme-{null,malloc}[-shadow|-trap]: the same bdevs as vhostd-null/-malloc behind an emulated NVMe controller. */
export function vhostdNvme(env: DriverEnv, name: string): TargetDriver {
  const m = NVME_TARGET_RE.exec(name);
  if (!m) throw new Error(`bad NVMe target name ${name}`);
  const bdev = BDEVS[m[1]];
  const transport = NVME_TRANSPORT[m[2] ?? ""];
  return {
    name,
    start: async (dir) => {
      const nvmeDir = join(dir, "sock", "nvme");
      mkdirSync(nvmeDir, { recursive: true });
      const inst = await startVhostd(env, dir, name, nvmeConfig(bdev, nvmeDir, transport), join(nvmeDir, "cntrl"));
      return { ...inst, client: "nvme-load" as const };
    },
  };
}

export function vhostd(env: DriverEnv, name: string, bdevOverride?: Bdev): TargetDriver {
  const kind = NAMES[name] ?? { bdev: "", scsi: false };
  const bdev = bdevOverride ?? BDEVS[kind.bdev];
  return {
    name,
    start: async (dir) => {
      mkdirSync(join(dir, "sock"));
      const inst = await startVhostd(env, dir, name, config(bdev, kind.scsi), join(dir, "sock", "vhost.0"));
      return kind.scsi ? { ...inst, loadArgs: ["--type", "scsi"] } : inst;
    },
  };
}
