// A Linux guest in QEMU 11 (vfio-user-pci, from the Debian sid chroot) drives vhostd's
// emulated NVMe controller with its own nvme driver: the driver binds, the namespace
// has the bdev's size and LBA format, fio verify jobs pass, and shadow doorbells are
// in use (trapped doorbell writes per I/O are reported).
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootGuest, ensureGuest, tempDir, type BootResult, type GuestError } from "./harness.js";
import {
  blockInfo, fioRandWriteVerify, fioSeqVerify, fioUnalignedVerify, guestScript, parseKv, parseSteps, stepOutput,
  waitDevice, type Step,
} from "./lib/fio-jobs.js";
import { ensureQemuSid, useQemuSid, vfioUserPciArgs } from "./lib/qemu-sid.js";
import { startVhostd, type Vhostd } from "./vhostd.js";
import { RpcClient } from "../../src/cli/rpc-client.js";

const NQN = "nqn.2019-07.io.spdk:cnode0";
const BLOCKS = 524288; // 256 MiB of 512-byte blocks

function nvmeInfo(): Step {
  return {
    name: "nvme-info",
    sh: String.raw`
ls /sys/class/nvme >/dev/null 2>&1 || { echo "no /sys/class/nvme"; return 1; }
kv driver "$(basename $(readlink /sys/class/nvme/nvme0/device/driver))"
kv model "$(cat /sys/class/nvme/nvme0/model | tr ' ' _)"
kv serial "$(cat /sys/class/nvme/nvme0/serial | tr ' ' _)"
kv subsysnqn "$(cat /sys/class/nvme/nvme0/subsysnqn)"
kv disks "$(ls /sys/block | grep nvme | tr '\n' ,)"
return 0`,
  };
}

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd emulated NVMe over vfio-user with a QEMU 11 guest", () => {
  let skip = "";
  let dir = "";
  let d: Vhostd | undefined;
  let res: BootResult | undefined;
  let steps: Record<string, number> = {};
  let cleanup: (() => Promise<void>) | undefined;
  let ctrl: Record<string, any> = {};
  const suite: Step[] = [
    waitDevice("/dev/nvme0n1", 60),
    nvmeInfo(),
    blockInfo("/dev/nvme0n1"),
    fioRandWriteVerify("/dev/nvme0n1", { offset: "0", size: "16m" }),
    fioSeqVerify("/dev/nvme0n1", { offset: "64m", size: "32m" }),
    fioUnalignedVerify("/dev/nvme0n1", { offset: "100m", size: "8m" }),
  ];

  beforeAll(async () => {
    const q = await ensureQemuSid();
    if ("skip" in q) { skip = q.skip; console.warn(`[e2e] nvme: skipped: ${skip}`); return; }
    await ensureGuest();
    dir = await tempDir("vhostd-nvme-e2e-");
    await fs.mkdir(path.join(dir, "nvme0"));
    d = await startVhostd({
      dir,
      config: {
        subsystems: [
          { subsystem: "bdev", config: [{ method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: BLOCKS, block_size: 512 } }] },
          {
            subsystem: "nvmf", config: [
              // the doorbell page is not mappable: the guest uses shadow doorbells (Doorbell Buffer Config)
              { method: "nvmf_create_transport", params: { trtype: "VFIOUSER", disable_mappable_bar0: true } },
              { method: "nvmf_create_subsystem", params: { nqn: NQN, allow_any_host: true, serial_number: "VHOSTD0001", model_number: "vhostd e2e" } },
              { method: "nvmf_subsystem_add_ns", params: { nqn: NQN, namespace: { bdev_name: "Malloc0", nsid: 1 } } },
              { method: "nvmf_subsystem_add_listener", params: { nqn: NQN, listen_address: { trtype: "VFIOUSER", traddr: path.join(dir, "nvme0"), trsvcid: "0" } } },
            ],
          },
        ],
      },
      waitFor: "nvme0/cntrl",
    });
    cleanup = await useQemuSid(q, [dir]);
    try {
      res = await bootGuest({
        devices: vfioUserPciArgs(path.join(dir, "nvme0/cntrl")),
        script: guestScript(suite),
        timeoutMs: 300_000,
      });
    } catch (e) {
      // keep going: the tests below report the guest's output and the daemon's log
      const g = e as GuestError;
      res = { rc: -1, output: `${g.message}\n${g.stderr ?? ""}`, serial: g.serial ?? "", guestBootS: 0, guestEndS: 0, wallMs: 0, bootMs: 0 };
    } finally {
      await cleanup();
      cleanup = undefined;
    }
    steps = parseSteps(res.output);
    const c = await RpcClient.connect(d.rpcSocket);
    try {
      const [s] = (await c.call("nvmf_get_subsystems", { nqn: NQN })) as any[];
      ctrl = s.vfio_user_controllers[0];
    } finally { c.close?.(); }
    console.log(`[e2e] nvme: io_commands=${ctrl.io_commands} trapped_doorbell_writes=${ctrl.trapped_doorbell_writes} ` +
      `per_io=${ctrl.trapped_doorbell_writes_per_io} shadow=${ctrl.shadow_doorbells_in_use} interrupts=${ctrl.interrupts}`);
  }, 25 * 60_000);

  afterAll(async () => {
    await cleanup?.();
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("guest script succeeds", (t) => {
    if (skip) t.skip();
    expect(res!.rc, res!.output.slice(-4000) + "\n--- serial ---\n" + res!.serial.slice(-4000) + "\n--- vhostd log ---\n" + d?.log()).toBe(0);
  });

  for (const s of suite) {
    it(`step ${s.name}`, (t) => {
      if (skip) t.skip();
      expect(steps[s.name], stepOutput(res!.output, s.name) || res!.output.slice(-3000)).toBe(0);
    });
  }

  it("the nvme driver binds; nvme0n1 has the bdev's size and 512-byte LBA format; no multipath head", (t) => {
    if (skip) t.skip();
    const kv = parseKv(res!.output);
    expect(kv.driver).toBe("nvme");
    // sysfs shows the space-padded identify strings (spaces printed as _ by the script)
    expect(kv.model.replace(/_+$/, "")).toBe("vhostd_e2e");
    expect(kv.serial.replace(/_+$/, "")).toBe("VHOSTD0001");
    expect(kv.subsysnqn).toBe(NQN);
    expect(kv.disks).toBe("nvme0n1,");
    expect(Number(kv.size_sectors)).toBe(BLOCKS);
    expect(Number(kv.logical_block_size)).toBe(512);
  });

  it("shadow doorbells are in use: far fewer trapped doorbell writes than I/Os", (t) => {
    if (skip) t.skip();
    expect(ctrl.shadow_doorbells_in_use).toBe(true);
    expect(ctrl.io_commands).toBeGreaterThan(1000);
    expect(ctrl.trapped_doorbell_writes_per_io).toBeLessThan(0.5);
  });
});
