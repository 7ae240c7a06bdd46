// Online resize of an emulated NVMe namespace, seen by a Linux guest in QEMU 11 (vfio-user-pci
// from the Debian sid chroot): the namespace's file grows, the operator runs
// bdev_uring_rescan, the controller sends a Namespace Attribute Changed event, Linux reads the
// Changed Namespace List and rescans, /sys/block/nvme0n1/size follows, and fio writes and
// verifies data past the old end. One guest boot. Also checks that the guest's driver got no
// error status from the controller (Linux 6.1 asks for Identify CNS 06h at boot).
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RpcClient } from "../../src/cli/rpc-client.js";
import { ensureGuest, startGuest, tempDir } from "./harness.js";
import { guestScript, parseKv, parseSteps, stepOutput, waitDevice, type Step } from "./lib/fio-jobs.js";
import { ensureQemuSid, useQemuSid, vfioUserPciArgs } from "./lib/qemu-sid.js";
import { startVhostd, type Vhostd } from "./vhostd.js";

const NQN = "nqn.2019-07.io.spdk:cnode-resize";
const OLD = 64 << 20, NEW = 96 << 20;
const DEV = "/dev/nvme0n1";

function waitGrow(): Step {
  return {
    name: "wait-grow",
    sh: String.raw`
old=$(cat /sys/block/nvme0n1/size)
kv size_before $old
echo "@@READY-TO-GROW@@"
n=0
while [ "$(cat /sys/block/nvme0n1/size)" = "$old" ]; do
  n=$((n+1)); [ $n -gt 900 ] && { echo "size still $old sectors after 90 s"; dmesg | grep -i nvme | tail -20; return 1; }
  sleep 0.1
done
kv size_after "$(cat /sys/block/nvme0n1/size)"
return 0`,
  };
}

function verifyTail(): Step {
  return {
    name: "fio-verify-past-old-end",
    sh: `$FIO --name=tail --filename=${DEV} --rw=randwrite --bs=4k --iodepth=8 --offset=${OLD} --size=${NEW - OLD} \\
  --verify=crc32c --do_verify=1`,
  };
}

function kernelLog(): Step {
  return {
    name: "kernel-log",
    sh: String.raw`
dmesg | grep -i nvme
kv rescans "$(dmesg | grep -c 'rescanning namespaces')"
kv capacity_changes "$(dmesg | grep -c 'nvme0n1: detected capacity change')"
kv nvme_errors "$(dmesg | grep -ci 'nvme.*\(invalid field\|error\)')"
return 0`,
  };
}

/** Keeps the controller enabled a while so that the host can read its state over RPC. */
function linger(): Step {
  return { name: "linger", sh: `echo "@@QUERY-NOW@@"\nsleep 5\nreturn 0` };
}

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd NVMe online namespace resize (QEMU 11 guest)", () => {
  let skip = "";
  let dir = "";
  let d: Vhostd | undefined;
  let cleanup: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const q = await ensureQemuSid();
    if ("skip" in q) { skip = q.skip; console.warn(`[e2e] nvme resize: skipped: ${skip}`); return; }
    await ensureGuest();
    dir = await tempDir("vhostd-nvme-resize-e2e-");
    await fs.mkdir(path.join(dir, "nvme0"));
    await fs.writeFile(path.join(dir, "disk.img"), "");
    await fs.truncate(path.join(dir, "disk.img"), OLD);
    d = await startVhostd({
      dir,
      config: {
        subsystems: [
          { subsystem: "bdev", config: [{ method: "bdev_uring_create", params: { name: "F0", filename: path.join(dir, "disk.img"), block_size: 512 } }] },
          {
            subsystem: "nvmf", config: [
              // trapped/shadow doorbells: the reactor sleeps between commands, so the resize must wake it
              { method: "nvmf_create_transport", params: { trtype: "VFIOUSER", disable_mappable_bar0: true } },
              { method: "nvmf_create_subsystem", params: { nqn: NQN, allow_any_host: true, serial_number: "VHOSTDRESIZE", model_number: "vhostd resize e2e" } },
              { method: "nvmf_subsystem_add_ns", params: { nqn: NQN, namespace: { bdev_name: "F0", nsid: 1 } } },
              { method: "nvmf_subsystem_add_listener", params: { nqn: NQN, listen_address: { trtype: "VFIOUSER", traddr: path.join(dir, "nvme0"), trsvcid: "0" } } },
            ],
          },
        ],
      },
      waitFor: "nvme0/cntrl",
    });
    cleanup = await useQemuSid(q, [dir]);
  }, 25 * 60_000);

  afterAll(async () => {
    await cleanup?.();
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("file grows + bdev_uring_rescan: the guest gets the event, /sys/block/nvme0n1/size follows, fio verifies past the old end", async (t) => {
    if (skip) t.skip();
    const g = await startGuest({
      devices: vfioUserPciArgs(path.join(dir, "nvme0/cntrl")),
      script: guestScript([waitDevice(DEV, 60), waitGrow(), verifyTail(), kernelLog(), linger()]),
      timeoutMs: 300_000,
    });
    let res;
    let ctrl: Record<string, any> = {};
    try {
      await g.waitFor(/@@READY-TO-GROW@@/, 240_000);
      await fs.truncate(path.join(dir, "disk.img"), NEW);
      const c = await RpcClient.connect(d!.rpcSocket);
      try {
        expect(await c.call("bdev_uring_rescan", { name: "F0" })).toBe(true);
        // the controller's state while the guest still runs (its driver resets it at shutdown)
        await g.waitFor(/@@QUERY-NOW@@/, 240_000);
        ctrl = ((await c.call("nvmf_get_subsystems", { nqn: NQN })) as any[])[0].vfio_user_controllers[0];
      } finally { c.close?.(); }
      res = await g.done;
    } catch (e) {
      g.kill();
      throw new Error(`${(e as Error).message}\n--- guest ---\n${g.output().slice(-4000)}\n--- vhostd log ---\n${d!.log().slice(-4000)}`);
    } finally {
      await cleanup?.();
      cleanup = undefined;
    }
    const kv = parseKv(res.output), st = parseSteps(res.output);
    console.log(`[e2e] nvme resize: guest size ${kv.size_before} -> ${kv.size_after} sectors; rescans=${kv.rescans} ` +
      `capacity_changes=${kv.capacity_changes}; controller errors=${ctrl.errors} async_events=${JSON.stringify(ctrl.queues?.async_events)}\n` +
      stepOutput(res.output, "kernel-log"));
    const ctx = () => `${res.output.slice(-3000)}\n--- vhostd log ---\n${d!.log().slice(-3000)}`;
    expect(st["wait-grow"], stepOutput(res.output, "wait-grow") + "\n" + ctx()).toBe(0);
    expect(Number(kv.size_before)).toBe(OLD / 512);
    expect(Number(kv.size_after)).toBe(NEW / 512);
    expect(st["fio-verify-past-old-end"], stepOutput(res.output, "fio-verify-past-old-end")).toBe(0);
    expect(res.rc, ctx()).toBe(0);
    // the controller sent the event and Linux rescanned because of it (its scan work reads the log, which clears it)
    expect(d!.log()).toMatch(/namespace 1 \(bdev F0\) resized from 131072 to 196608 blocks; controller \S+: Namespace Attribute Changed event queued/);
    expect(Number(kv.rescans)).toBeGreaterThanOrEqual(1);
    expect(ctrl.queues.async_events).toMatchObject({ config: 0x100, pending: 0, masked_log_pages: [], changed_ns_list: [] });
    // the driver got no error status from any command (boot included)
    expect(ctrl.errors, JSON.stringify(ctrl.recent_errors)).toBe(0);
  }, 600_000);
});
