// A Linux guest in QEMU uses vhostd's vhost-user-blk disks: geometry, queues, limits,
// fio data verification, and a second boot against the same running daemon.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootGuest, ensureGuest, tempDir, vhostUserBlkArgs, type BootResult } from "./harness.js";
import {
  blockInfo, fioRandWriteVerify, guestScript, md5Range, parseKv, parseSteps, standardBlockSuite, stepOutput,
  waitDevice, writePattern, type Step,
} from "./lib/fio-jobs.js";
import { blkConfig, startVhostd, type Vhostd } from "./vhostd.js";

const MIB = 1024 * 1024;
const PAT_OFF = 200 * MIB + 512;
const PAT_LEN = 256 * 1024;

function trimWrite(dev: string): Step {
  return {
    name: "fio-trimwrite",
    sh: `$FIO --name=tw --filename=${dev} --rw=trimwrite --bs=64k --iodepth=8 --offset=160m --size=16m`,
  };
}

function twoQueueJobs(dev: string): Step {
  // two jobs pinned to the two guest CPUs -> both hardware queues carry I/O
  return {
    name: "fio-two-queues",
    sh: `$FIO --name=q0 --filename=${dev} --rw=randwrite --bs=4k --iodepth=8 --offset=0 --size=8m --cpus_allowed=0 \\
  --verify=crc32c --name=q1 --filename=${dev} --rw=randwrite --bs=4k --iodepth=8 --offset=8m --size=8m \\
  --cpus_allowed=1 --verify=crc32c`,
  };
}

function kvFor(out: string, dev: string): Record<string, string> {
  // blockInfo prints KV lines per step; split the output at the step marker of this device
  const i = out.indexOf(`@@STEP-BEGIN block-info-${dev}@@`);
  return parseKv(i >= 0 ? out.slice(i, out.indexOf("@@STEP ", i + 1) + 1 || undefined) : out);
}

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd vhost-user-blk with a QEMU guest", () => {
  let dir = "";
  let d: Vhostd | undefined;
  let res: BootResult;
  let steps: Record<string, number> = {};
  const info4k = { ...blockInfo("/dev/vdb"), name: "block-info-/dev/vdb" };
  const info512 = { ...blockInfo("/dev/vda"), name: "block-info-/dev/vda" };
  const suite: Step[] = [
    ...standardBlockSuite("/dev/vda").map((s) => (s.name === blockInfo("/dev/vda").name ? info512 : s)),
    trimWrite("/dev/vda"),
    twoQueueJobs("/dev/vda"),
    writePattern("/dev/vda", PAT_OFF, PAT_LEN),
    waitDevice("/dev/vdb"),
    info4k,
    { ...fioRandWriteVerify("/dev/vdb", { offset: "0", size: "8m" }), name: "fio-4k-randwrite-verify" },
  ];

  beforeAll(async () => {
    await ensureGuest();
    dir = await tempDir("vhostd-blk-e2e-");
    d = await startVhostd({
      dir,
      config: blkConfig(
        [
          { method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: 524288, block_size: 512 } },
          { method: "bdev_malloc_create", params: { name: "Malloc4k", num_blocks: 16384, block_size: 4096 } },
        ],
        [{ ctrlr: "blk0", dev_name: "Malloc0" }, { ctrlr: "blk4k", dev_name: "Malloc4k" }],
      ),
      waitFor: "blk4k",
    });
    res = await bootGuest({
      devices: [
        ...vhostUserBlkArgs(path.join(dir, "blk0"), { numQueues: 2, reconnect: 1, id: "d0" }),
        ...vhostUserBlkArgs(path.join(dir, "blk4k"), { numQueues: 1, reconnect: 1, id: "d1" }),
      ],
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

  it("512-byte disk: capacity, block sizes, two queues, discard and write-zeroes limits", () => {
    const kv = kvFor(res.output, "/dev/vda");
    expect(Number(kv.size_sectors)).toBe(524288);
    expect(Number(kv.logical_block_size)).toBe(512);
    expect(Number(kv.nr_hw_queues)).toBe(2);
    expect(kv.ro).toBe("0");
    expect(Number(kv.discard_max_hw_bytes)).toBe(4194304 * 512);
    expect(Number(kv.discard_granularity)).toBe(512);
    expect(Number(kv.write_zeroes_max_bytes)).toBe(4194304 * 512);
    expect(kv.write_cache).toBe("write_back");
  });

  it("4096-byte disk: capacity and block size", () => {
    const kv = kvFor(res.output, "/dev/vdb");
    expect(Number(kv.size_sectors)).toBe(16384 * 8);
    expect(Number(kv.logical_block_size)).toBe(4096);
    expect(Number(kv.physical_block_size)).toBe(4096);
    expect(Number(kv.nr_hw_queues)).toBe(1);
    expect(Number(kv.discard_granularity)).toBe(4096);
  });

  it("a second guest boot against the same daemon reads the first boot's data", async () => {
    const kv = parseKv(res.output);
    expect(kv.readback_md5).toBe(kv.pattern_md5);
    const r2 = await bootGuest({
      devices: vhostUserBlkArgs(path.join(dir, "blk0"), { numQueues: 2, reconnect: 1 }),
      script: guestScript([waitDevice("/dev/vda"), md5Range("/dev/vda", PAT_OFF, PAT_LEN, "pat")]),
      timeoutMs: 120_000,
    });
    expect(r2.rc, r2.output.slice(-3000)).toBe(0);
    expect(parseKv(r2.output).md5_pat).toBe(kv.pattern_md5);
  }, 180_000);
});
