// A Linux guest in QEMU uses a vhostd vhost-user-scsi controller: one sd disk per
// target with the right size and identity (vendor, model, VPD 0x83 vs. what the RPC
// reports), the blk fio verify jobs on each disk, and a target hot-added and then
// hot-removed while fio keeps verifying on another target.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuest, startGuest, tempDir, type BootResult, type RunningGuest } from "./harness.js";
import {
  blockInfo, fioRandWriteVerify, fioSeqVerify, fioUnalignedVerify, fioFsyncHeavy, guestScript, parseKv, parseSteps,
  PRELUDE, stepOutput, type Step,
} from "./lib/fio-jobs.js";
import { startVhostd, type Vhostd } from "./vhostd.js";
import { ok } from "../integration/daemon.js";
import { naaFromUuid } from "../../targets/scsi/scsi/index.js";
import { DEFAULT_NAA_COMPANY_ID } from "../../targets/scsi/scsi/constants.js";
import { SCSI_PRELUDE, vhostUserScsiArgs } from "./lib/scsi.js";

function identStep(t: number): Step {
  return { name: `ident-t${t}`, sh: `wait_target ${t} 60 || return 1\nident ${t}` };
}

/** Sets S<t>=sdX for later steps (device paths are "/dev/$S<t>"). */
function findStep(t: number): Step {
  return { name: `find-t${t}`, sh: `wait_target ${t} 60 || return 1\nS${t}=$SD\necho "target ${t} is $SD"` };
}

function named(s: Step, suffix: string): Step { return { ...s, name: `${s.name}-${suffix}` }; }

/**
 * Hot-plug phase: fio verify loops on target 0 in the background; the host adds target 2
 * when it sees @@READY-HOTADD@@ and removes it at @@READY-REMOVE@@; the guest must see the
 * disk come and go while the background loop keeps passing.
 */
const hotplug: Step = {
  name: "hotplug",
  sh: String.raw`
rm -f /tmp/stop /tmp/bgfail /tmp/bgcount
( i=0
  while [ ! -e /tmp/stop ]; do
    $FIO --name=bg --filename=/dev/$S0 --rw=randwrite --bs=4k --iodepth=4 --offset=200m --size=2m \
      --verify=crc32c --do_verify=1 >/tmp/bg.log 2>&1 || { echo "iteration $i failed" > /tmp/bgfail; cat /tmp/bg.log >> /tmp/bgfail; break; }
    i=$((i+1)); echo $i > /tmp/bgcount
  done ) &
BG=$!
before=$(ls /sys/block | tr '\n' ' ')
echo "@@READY-HOTADD@@"
wait_target 2 120 || { touch /tmp/stop; wait $BG; return 1; }
kv hot_before "$before"
kv hot_after "$(ls /sys/block | tr '\n' ' ')"
ident 2
$FIO --name=hot --filename=/dev/$SD --rw=randwrite --bs=4k --iodepth=8 --size=4m --verify=crc32c --do_verify=1 \
  || { touch /tmp/stop; wait $BG; return 1; }
GONE=$SD
echo "@@READY-REMOVE@@"
n=0
while [ -e /sys/block/$GONE ]; do
  n=$((n+1)); [ $n -gt 1200 ] && { echo "$GONE still there after 120 s"; touch /tmp/stop; wait $BG; return 1; }
  sleep 0.1
done
kv hot_removed "$GONE"
sleep 1
touch /tmp/stop
wait $BG
kv bg_iterations "$(cat /tmp/bgcount 2>/dev/null || echo 0)"
[ -e /tmp/bgfail ] && { cat /tmp/bgfail; return 1; }
return 0`,
};

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd vhost-user-scsi with a QEMU guest", () => {
  let dir = "";
  let d: Vhostd | undefined;
  let g: RunningGuest | undefined;
  let res: BootResult;
  let steps: Record<string, number> = {};
  let kv: Record<string, string> = {};
  let bdevs: Record<string, { uuid: string; product_name: string; num_blocks: number; block_size: number }> = {};
  let ctrls: { backend_specific: { scsi: { scsi_dev_num: number; luns: { bdev_name: string }[] }[] } }[] = [];
  let hotCtrl: typeof ctrls = [];
  let hostErr = "";

  const suite: Step[] = [
    findStep(0), findStep(1), identStep(0), identStep(1),
    named(blockInfo("/dev/$S0"), "t0"),
    named(fioRandWriteVerify("/dev/$S0", { offset: "0", size: "16m" }), "t0"),
    named(fioSeqVerify("/dev/$S0", { offset: "64m", size: "32m" }), "t0"),
    named(fioUnalignedVerify("/dev/$S0", { offset: "100m", size: "8m" }), "t0"),
    named(fioFsyncHeavy("/dev/$S0", { offset: "128m", size: "4m" }), "t0"),
    named(fioRandWriteVerify("/dev/$S1", { offset: "0", size: "8m" }), "t1"),
    named(fioSeqVerify("/dev/$S1", { offset: "16m", size: "16m" }), "t1"),
    hotplug,
  ];

  beforeAll(async () => {
    await ensureGuest();
    dir = await tempDir("vhostd-scsi-e2e-");
    d = await startVhostd({
      dir,
      cpumask: "0x3",
      config: {
        subsystems: [
          { subsystem: "bdev", config: [
            { method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: 524288, block_size: 512 } },
            { method: "bdev_malloc_create", params: { name: "Malloc4k", num_blocks: 16384, block_size: 4096 } },
            { method: "bdev_malloc_create", params: { name: "Hot", num_blocks: 65536, block_size: 512 } },
          ] },
          { subsystem: "vhost_scsi", config: [
            { method: "vhost_create_scsi_controller", params: { ctrlr: "scsi0", delay: true } },
            { method: "vhost_scsi_controller_add_target", params: { ctrlr: "scsi0", scsi_target_num: 0, bdev_name: "Malloc0" } },
            { method: "vhost_scsi_controller_add_target", params: { ctrlr: "scsi0", scsi_target_num: 1, bdev_name: "Malloc4k" } },
            { method: "vhost_start_scsi_controller", params: { ctrlr: "scsi0" } },
          ] },
        ],
      },
      waitFor: "scsi0",
    });
    for (const b of await ok(d.rpcSocket, "bdev_get_bdevs")) bdevs[b.name] = b;
    ctrls = await ok(d.rpcSocket, "vhost_get_controllers");
    g = await startGuest({
      devices: vhostUserScsiArgs(path.join(dir, "scsi0"), { numQueues: 2 }),
      script: guestScript(suite, PRELUDE + SCSI_PRELUDE),
      timeoutMs: 900_000,
    });
    try {
      // both disks must show up soon after boot; a guest stuck in SCSI scanning fails fast
      await g.waitFor(/@@STEP find-t1 rc=\d+@@/, 300_000);
      await g.waitFor(/@@READY-HOTADD@@/, 800_000);
      await ok(d.rpcSocket, "vhost_scsi_controller_add_target", { ctrlr: "scsi0", scsi_target_num: 2, bdev_name: "Hot" });
      hotCtrl = await ok(d.rpcSocket, "vhost_get_controllers");
      await g.waitFor(/@@READY-REMOVE@@/, 300_000);
      await ok(d.rpcSocket, "vhost_scsi_controller_remove_target", { ctrlr: "scsi0", scsi_target_num: 2 });
    } catch (e) {
      hostErr = (e as Error).message.slice(0, 2000);
      g.kill();
    }
    res = await g.done.catch((e: Error) => ({ rc: -1, output: g!.output(), serial: String(e), guestBootS: 0, guestEndS: 0,
      wallMs: 0, bootMs: 0 }));
    steps = parseSteps(res.output);
    kv = parseKv(res.output);
  }, 20 * 60_000);

  afterAll(async () => {
    g?.kill();
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("guest script succeeds", () => {
    expect(hostErr).toBe("");
    expect(res.rc, res.output.slice(-4000) + "\n--- vhostd log ---\n" + d?.log().slice(-4000)).toBe(0);
  });

  for (const s of suite) {
    it(`step ${s.name}`, () => {
      expect(steps[s.name], stepOutput(res.output, s.name) || res.output.slice(-3000)).toBe(0);
    });
  }

  it("one sd disk per target with the bdev's size and block size", () => {
    expect(ctrls[0]!.backend_specific.scsi.map((t) => [t.scsi_dev_num, t.luns[0]!.bdev_name]))
      .toEqual([[0, "Malloc0"], [1, "Malloc4k"]]);
    const m0 = bdevs.Malloc0!, m4 = bdevs.Malloc4k!;
    expect(Number(kv.t0_size)).toBe((m0.num_blocks * m0.block_size) / 512);
    expect(Number(kv.t0_lbs)).toBe(512);
    expect(Number(kv.t1_size)).toBe((m4.num_blocks * m4.block_size) / 512);
    expect(Number(kv.t1_lbs)).toBe(4096);
    expect(kv.t0_dev).not.toBe(kv.t1_dev);
  });

  it("vendor, model and VPD 0x83 match what the RPC reports", () => {
    for (const [t, name] of [[0, "Malloc0"], [1, "Malloc4k"], [2, "Hot"]] as const) {
      const b = bdevs[name]!;
      expect(kv[`t${t}_vendor`]).toBe("VHOSTD");
      expect(kv[`t${t}_model`]).toBe(b.product_name.replace(/ /g, "_"));
      const pg = Buffer.from(kv[`t${t}_pg83`] ?? "", "hex");
      expect(pg[1]).toBe(0x83);
      // first designator: NAA (type 3), binary, 16 bytes, derived from the bdev's UUID
      expect(pg[5]! & 0x0f).toBe(3);
      expect(pg[7]).toBe(16);
      const uuid = Uint8Array.from(Buffer.from(b.uuid.replace(/-/g, ""), "hex"));
      expect([...pg.subarray(8, 24)]).toEqual([...naaFromUuid(uuid, DEFAULT_NAA_COMPANY_ID)]);
    }
  });

  it("a target added while the guest runs appears; removed, it disappears; I/O on the others went on", () => {
    expect(hotCtrl[0]!.backend_specific.scsi.map((t) => t.scsi_dev_num)).toEqual([0, 1, 2]);
    expect(kv.hot_before!.split(" ")).not.toContain(kv.t2_dev);
    expect(kv.hot_after!.split(" ")).toContain(kv.t2_dev);
    expect(kv.hot_removed).toBe(kv.t2_dev);
    expect(Number(kv.t2_size)).toBe(65536);
    expect(Number(kv.bg_iterations)).toBeGreaterThan(0);
  });

  it("after removal the RPC shows the remaining targets and the bdev is released", async () => {
    const c = await ok(d!.rpcSocket, "vhost_get_controllers");
    expect(c[0].backend_specific.scsi.map((t: { scsi_dev_num: number }) => t.scsi_dev_num)).toEqual([0, 1]);
    const [hot] = await ok(d!.rpcSocket, "bdev_get_bdevs", { name: "Hot" });
    expect(hot.claimed).toBe(false);
  });
});
