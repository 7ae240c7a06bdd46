// Validates the e2e harness against qemu-storage-daemon's vhost-user-blk
// export (a reference back end): geometry, multi-queue, fio verify suites,
// and that guest writes land in the back end's raw file.

import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bootGuest,
  ensureGuest,
  startGuest,
  startQsd,
  tempDir,
  vhostUserBlkArgs,
  type BootResult,
  type DaemonHandle,
} from "./harness.js";
import {
  discardRange,
  guestScript,
  md5Range,
  waitDevice,
  parseKv,
  parseSteps,
  standardBlockSuite,
  stepOutput,
  writePattern,
} from "./lib/fio-jobs.js";

const DEV = "/dev/vda";
const SIZE_MIB = 256;
const QUEUES = 2;
const PAT_OFF = 200 * 1024 * 1024 + 512; // deliberately not 4k aligned
const PAT_LEN = 256 * 1024;

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("qsd vhost-user-blk (harness self-test)", () => {
  let dir = "";
  let image = "";
  let qsd: DaemonHandle | undefined;
  let res: BootResult;
  let kv: Record<string, string> = {};
  let steps: Record<string, number> = {};
  const suite = [
    ...standardBlockSuite(DEV),
    writePattern(DEV, PAT_OFF, PAT_LEN),
    discardRange(DEV, 224 * 1024 * 1024, 16 * 1024 * 1024),
  ];

  beforeAll(async () => {
    const t0 = Date.now();
    await ensureGuest();
    const tGuest = Date.now();
    dir = await tempDir();
    image = path.join(dir, "disk.raw");
    qsd = await startQsd({
      socketPath: path.join(dir, "vub.sock"),
      image,
      sizeMiB: SIZE_MIB,
      numQueues: QUEUES,
    });
    res = await bootGuest({
      devices: vhostUserBlkArgs(qsd.socketPath, { numQueues: QUEUES, reconnect: 1 }),
      script: guestScript(suite),
      timeoutMs: 300_000,
    });
    kv = parseKv(res.output);
    steps = parseSteps(res.output);
    console.log(
      `[qsd-blk] ensureGuest ${tGuest - t0} ms; boot ${res.bootMs} ms; qemu wall ${res.wallMs} ms; ` +
        `guest /test.sh start at ${res.guestBootS}s, end at ${res.guestEndS}s uptime`,
    );
  }, 20 * 60_000);

  afterAll(async () => {
    await qsd?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("guest script succeeds", () => {
    expect(res.rc, res.output).toBe(0);
    expect(res.output).toContain("@@ALL-STEPS-OK@@");
  });

  it("exposes the expected geometry and queues", () => {
    expect(Number(kv.size_sectors)).toBe((SIZE_MIB * 1024 * 1024) / 512);
    expect(Number(kv.nr_hw_queues)).toBe(QUEUES);
    expect(Number(kv.logical_block_size)).toBe(512);
    expect(Number(kv.physical_block_size)).toBeGreaterThanOrEqual(512);
    expect(kv.ro).toBe("0");
    // QSD advertises discard/write-zeroes on writable exports
    expect(Number(kv.discard_max_bytes)).toBeGreaterThan(0);
    expect(Number(kv.discard_granularity)).toBeGreaterThan(0);
  });

  for (const s of suite) {
    it(`step ${s.name}`, () => {
      expect(steps[s.name], stepOutput(res.output, s.name) || res.output).toBe(0);
    });
  }

  it("uses libaio in the guest", () => {
    expect(kv.fio_engine).toBe("libaio");
  });

  it("guest writes reach the back end file", async () => {
    expect(kv.readback_md5).toBe(kv.pattern_md5);
    const fh = await fs.open(image, "r");
    const buf = Buffer.alloc(PAT_LEN);
    await fh.read(buf, 0, PAT_LEN, PAT_OFF);
    await fh.close();
    expect(createHash("md5").update(buf).digest("hex")).toBe(kv.pattern_md5);
  });

  // Second boot against the same, still running daemon: QSD must accept a new
  // front end and the data must persist. Also exercises startGuest()/waitFor().
  it("second boot sees the first boot's data", async () => {
    const g = await startGuest({
      devices: vhostUserBlkArgs(qsd!.socketPath, { numQueues: QUEUES, reconnect: 1 }),
      script: guestScript([waitDevice(DEV), md5Range(DEV, PAT_OFF, PAT_LEN, "pat")]),
      timeoutMs: 120_000,
    });
    const m = await g.waitFor(/@@KV md5_pat=(\w+)@@/, 120_000);
    expect(m[1]).toBe(kv.pattern_md5);
    const r2 = await g.done;
    expect(r2.rc, r2.output).toBe(0);
    console.log(`[qsd-blk] second boot: boot ${r2.bootMs} ms, qemu wall ${r2.wallMs} ms`);
  }, 180_000);
});
