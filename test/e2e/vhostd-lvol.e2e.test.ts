// A Linux guest in QEMU on a thin lvol (vhost-user-blk): the block-device fio suite with
// verification runs over clusters allocated by its own first writes (copy-on-write of zeroes,
// map updates on the data path), then vhostd reports the clusters the guest allocated.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootGuest, ensureGuest, tempDir, vhostUserBlkArgs, type BootResult } from "./harness.js";
import { guestScript, parseKv, parseSteps, standardBlockSuite, stepOutput, type Step } from "./lib/fio-jobs.js";
import { blkConfig, startVhostd, type Vhostd } from "./vhostd.js";
import { ok } from "../integration/daemon.js";

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd thin lvol with a QEMU guest", () => {
  let dir = "";
  let d: Vhostd | undefined;
  let res: BootResult;
  let steps: Record<string, number> = {};
  const suite: Step[] = standardBlockSuite("/dev/vda");

  beforeAll(async () => {
    await ensureGuest();
    dir = await tempDir("vhostd-lvol-e2e-");
    d = await startVhostd({
      dir,
      config: blkConfig(
        [
          { method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: 400 * 2048, block_size: 512 } },
          { method: "bdev_lvol_create_lvstore", params: { bdev_name: "Malloc0", lvs_name: "lvs0", cluster_sz: 1 << 20 } },
          { method: "bdev_lvol_create", params: { lvs_name: "lvs0", lvol_name: "vol", size_in_mib: 256, thin_provision: true } },
        ],
        [{ ctrlr: "lv0", dev_name: "lvs0/vol" }],
      ),
    });
    res = await bootGuest({
      devices: vhostUserBlkArgs(path.join(dir, "lv0"), { numQueues: 2, reconnect: 1, id: "d0" }),
      script: guestScript(suite),
      timeoutMs: 300_000,
    });
    steps = parseSteps(res.output);
  }, 20 * 60_000);

  afterAll(async () => {
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("guest script succeeds", () => {
    expect(res.rc, res.output.slice(-4000) + "\n--- vhostd log ---\n" + d?.log()).toBe(0);
  });

  for (const s of suite) {
    it(`step ${s.name}`, () => {
      expect(steps[s.name], stepOutput(res.output, s.name) || res.output.slice(-3000)).toBe(0);
    });
  }

  it("the guest sees the lvol's size; its writes allocated clusters, the rest stays thin", async () => {
    expect(Number(parseKv(res.output).size_sectors)).toBe(256 * 2048);
    const [b] = await ok(d!.rpcSocket, "bdev_get_bdevs", { name: "lvs0/vol" });
    const n = b.driver_specific.lvol.num_allocated_clusters;
    expect(n).toBeGreaterThanOrEqual(60);   // the suite writes 16+32+8+4 MiB
    expect(n).toBeLessThan(256);
  });
});
