// Online resize: the disk image of a running guest's disk grows, the operator runs
// bdev_uring_rescan, and the guest sees the new capacity and can write and verify data past
// the old end. vhost-user-blk: config-change message to QEMU, config interrupt to the guest;
// vhost-user-scsi: PARAM_CHANGE event (CAPACITY DATA HAS CHANGED), the guest rescans the disk.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RpcClient } from "../../src/cli/rpc-client.js";
import { ensureGuest, startGuest, vhostUserBlkArgs } from "./harness.js";
import { guestScript, parseSteps, PRELUDE, stepOutput, waitDevice, type Step } from "./lib/fio-jobs.js";
import { SCSI_PRELUDE, vhostUserScsiArgs } from "./lib/scsi.js";
import { blkConfig, startVhostd, type Vhostd } from "./vhostd.js";

const OLD = 64 << 20, NEW = 96 << 20;

/** `dev` is a /dev path or a shell expression (e.g. "/dev/$SD"). */
function waitGrow(dev: string): Step {
  const b = dev.replace(/^\/dev\//, "");
  return {
    name: "wait-grow",
    sh: `old=$(cat /sys/block/${b}/size)
kv size_before $old
echo "@@READY-TO-GROW@@"
n=0
while [ "$(cat /sys/block/${b}/size)" = "$old" ]; do
  n=$((n+1)); [ $n -gt 600 ] && { echo "capacity still $old sectors after 60 s"; return 1; }
  sleep 0.1
done
kv size_after "$(cat /sys/block/${b}/size)"
dmesg | grep -i "capacity change\\|new size\\|detected capacity" | tail -2`,
  };
}

function verifyTail(dev: string): Step {
  return {
    name: "fio-verify-past-old-end",
    sh: `$FIO --name=tail --filename=${dev} --rw=randwrite --bs=4k --iodepth=8 --offset=${OLD} --size=${NEW - OLD} \\
  --verify=crc32c --do_verify=1`,
  };
}

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd blk online resize (guest sees the new capacity)", () => {
  let dir = "";
  let d: Vhostd | undefined;

  beforeAll(async () => {
    await ensureGuest();
    dir = await fs.mkdtemp("/var/tmp/vhostd-resize-");
  }, 20 * 60_000);

  afterAll(async () => {
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  const kinds = [
    {
      kind: "blk", dev: "/dev/vda", prelude: PRELUDE, wait: waitDevice("/dev/vda"),
      config: (file: string) => blkConfig([{ method: "bdev_uring_create", params: { name: "F0", filename: file, block_size: 512 } }],
        [{ ctrlr: "blk0", dev_name: "F0" }]),
      devices: () => vhostUserBlkArgs(path.join(dir, "blk0")),
      logged: /resized from 131072 to 196608 blocks; the front end was told/,
    },
    {
      kind: "scsi", dev: "/dev/$SD", prelude: PRELUDE + SCSI_PRELUDE, wait: { name: "wait-target", sh: "wait_target 0 60" },
      config: (file: string) => ({
        subsystems: [
          { subsystem: "bdev", config: [{ method: "bdev_uring_create", params: { name: "F0", filename: file, block_size: 512 } }] },
          { subsystem: "vhost_scsi", config: [
            { method: "vhost_create_scsi_controller", params: { ctrlr: "scsi0" } },
            { method: "vhost_scsi_controller_add_target", params: { ctrlr: "scsi0", scsi_target_num: 0, bdev_name: "F0" } },
          ] },
        ],
      }),
      devices: () => vhostUserScsiArgs(path.join(dir, "scsi0")),
      logged: /target 0 \(bdev F0\) resized from 131072 to 196608 blocks; the guest was told/,
    },
  ];

  for (const k of kinds) {
    it(`${k.kind}: file grows + bdev_uring_rescan: the guest's disk size follows, fio verify past the old end passes`, async () => {
      const file = path.join(dir, `${k.kind}.img`);
      await fs.writeFile(file, "");
      await fs.truncate(file, OLD);
      await d?.stop();                 // left running by a failed run before (its RPC socket is locked)
      d = await startVhostd({ dir, config: k.config(file) });
      const g = await startGuest({
        devices: k.devices(),
        script: guestScript([k.wait, waitGrow(k.dev), verifyTail(k.dev)], k.prelude),
        timeoutMs: 180_000,
      });
      await g.waitFor(/@@READY-TO-GROW@@/, 150_000);
      await fs.truncate(file, NEW);
      const c = await RpcClient.connect(d.rpcSocket);
      try { expect(await c.call("bdev_uring_rescan", { name: "F0" })).toBe(true); } finally { c.close?.(); }
      const res = await g.done;
      const st = parseSteps(res.output);
      expect(st["wait-grow"], stepOutput(res.output, "wait-grow") + "\n" + d.log()).toBe(0);
      expect(res.output).toContain(`@@KV size_before=${OLD / 512}@@`);
      expect(res.output).toContain(`@@KV size_after=${NEW / 512}@@`);
      expect(st["fio-verify-past-old-end"], stepOutput(res.output, "fio-verify-past-old-end")).toBe(0);
      expect(d.log()).toMatch(k.logged);
      await d.stop();
      d = undefined;
    }, 300_000);
  }
});
