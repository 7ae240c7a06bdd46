// A Linux guest in QEMU runs fio with data verification on a vhost-user-blk disk served
// from a Ceph RBD image (one-node cluster: one monitor, one memstore OSD, see
// test/ceph/start-cluster.sh). The configuration registers the cluster and creates the
// rbd bdev at start-up, as a restored save_config would. Afterwards `rbd export` must
// hold the bytes the guest wrote.
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootGuest, ensureGuest, tempDir, vhostUserBlkArgs, type BootResult } from "./harness.js";
import {
  blockInfo, fioFsyncHeavy, fioRandWriteVerify, fioSeqVerify, guestScript, parseKv, parseSteps, stepOutput,
  waitDevice, writePattern, type Step,
} from "./lib/fio-jobs.js";
import { blkConfig, startVhostd, type Vhostd } from "./vhostd.js";
import { ok } from "../integration/daemon.js";
import { cephUnavailable, rbdCli, startCeph, stopCeph } from "../lib/ceph.js";

const MIB = 1024 * 1024;
const SIZE_MIB = 128;
const PAT_OFF = 100 * MIB + 4096;
const PAT_LEN = 256 * 1024;
const CEPH_DIR = "/tmp/vhostd-ceph-e2e";

const skip = process.env.VHOSTD_SKIP_E2E === "1" || cephUnavailable() !== undefined;

describe.skipIf(skip)("vhostd vhost-user-blk on a Ceph RBD image with a QEMU guest", () => {
  let dir = "";
  let conf = "";
  let d: Vhostd | undefined;
  let res: BootResult;
  let steps: Record<string, number> = {};
  const suite: Step[] = [
    waitDevice("/dev/vda"),
    blockInfo("/dev/vda"),
    fioRandWriteVerify("/dev/vda", { offset: "0", size: "8m" }),
    fioSeqVerify("/dev/vda", { offset: "32m", size: "16m" }),
    fioFsyncHeavy("/dev/vda", { offset: "64m", size: "1m" }),
    writePattern("/dev/vda", PAT_OFF, PAT_LEN),
  ];

  beforeAll(async () => {
    await ensureGuest();
    conf = await startCeph(CEPH_DIR);
    await rbdCli(conf, ["create", "--size", String(SIZE_MIB), "rbd/guest"]);
    dir = await tempDir("vhostd-rbd-e2e-");
    d = await startVhostd({
      dir,
      config: blkConfig(
        [
          { method: "bdev_rbd_register_cluster", params: { name: "ceph", config_file: conf } },
          { method: "bdev_rbd_create", params: { name: "Rbd0", pool_name: "rbd", rbd_name: "guest", block_size: 512, cluster_name: "ceph" } },
        ],
        [{ ctrlr: "rbd0", dev_name: "Rbd0" }],
      ),
    });
    res = await bootGuest({
      devices: vhostUserBlkArgs(path.join(dir, "rbd0"), { numQueues: 2, reconnect: 1 }),
      script: guestScript(suite),
      timeoutMs: 240_000,
    });
    steps = parseSteps(res.output);
  }, 20 * 60_000);

  afterAll(async () => {
    await d?.stop();
    stopCeph(CEPH_DIR);
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

  it("the guest sees the image's size, flush, discard and write-zeroes", () => {
    const kv = parseKv(res.output);
    expect(Number(kv.size_sectors)).toBe(SIZE_MIB * MIB / 512);
    expect(Number(kv.logical_block_size)).toBe(512);
    expect(kv.write_cache).toBe("write_back");
    expect(Number(kv.discard_max_hw_bytes)).toBeGreaterThan(0);
    expect(Number(kv.write_zeroes_max_bytes)).toBeGreaterThan(0);
  });

  it("the cluster holds what the guest wrote (rbd export), and flushes reached the bdev", async () => {
    const kv = parseKv(res.output);
    expect(kv.readback_md5).toBe(kv.pattern_md5);
    const st = (await ok(d!.rpcSocket, "bdev_get_iostat", { name: "Rbd0" })).bdevs[0];
    expect(st.num_write_ops).toBeGreaterThan(500);
    expect(Object.values(st.io_error ?? {}).reduce((a: number, x) => a + Number(x), 0)).toBe(0);
    const img = path.join(dir, "guest.raw");
    await rbdCli(conf, ["export", "--no-progress", "rbd/guest", img]);
    const fh = await fs.open(img);
    try {
      const buf = Buffer.alloc(PAT_LEN);
      await fh.read(buf, 0, PAT_LEN, PAT_OFF);
      expect(createHash("md5").update(buf).digest("hex")).toBe(kv.pattern_md5);
    } finally { await fh.close(); }
  }, 120_000);
});
