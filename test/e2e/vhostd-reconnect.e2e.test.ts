// vhostd dies (SIGKILL) or is restarted (SIGTERM) while a guest writes with fio verify to
// a file-backed disk behind a delay bdev (20-50 ms writes, so that requests are in flight
// when vhostd dies); QEMU reconnects (reconnect=1), in-flight requests are re-run from
// the inflight region, and the guest finishes with no I/O error and no verify error.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuest, startGuest, vhostUserBlkArgs } from "./harness.js";
import { fioVerifyAcrossRestart, guestScript, parseSteps, stepOutput, waitDevice } from "./lib/fio-jobs.js";
import { blkConfig, RESTART_DELAY, startVhostd, waitForWrites, type Vhostd } from "./vhostd.js";
import { ok } from "../integration/daemon.js";

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd restart under guest I/O (inflight + reconnect)", () => {
  let dir = "";
  let d: Vhostd | undefined;
  const config = () => blkConfig(
    [
      { method: "bdev_uring_create", params: { name: "F0", filename: path.join(dir, "disk.img"), block_size: 512 } },
      { method: "bdev_delay_create", params: { base_bdev_name: "F0", name: "D0", ...RESTART_DELAY } },
    ],
    [{ ctrlr: "blk0", dev_name: "D0" }],
  );

  beforeAll(async () => {
    await ensureGuest();
    // /var/tmp: a real file system, so the bdev uses O_DIRECT like a production disk image
    dir = await fs.mkdtemp("/var/tmp/vhostd-reconnect-");
    await fs.writeFile(path.join(dir, "disk.img"), "");
    await fs.truncate(path.join(dir, "disk.img"), 128 << 20);
  }, 20 * 60_000);

  afterAll(async () => {
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  for (const sig of ["SIGKILL", "SIGTERM"] as const) {
    it(`guest fio verify passes across a ${sig} restart of vhostd`, async () => {
      const t0 = Date.now();
      await d?.stop();                 // left running by a failed run before (its RPC socket is locked)
      d = await startVhostd({ dir, config: config(), extraArgs: ["--log-level", "INFO"] });
      const steps = [waitDevice("/dev/vda"), fioVerifyAcrossRestart("/dev/vda")];
      const g = await startGuest({
        devices: vhostUserBlkArgs(path.join(dir, "blk0"), { numQueues: 2, reconnect: 1 }),
        script: guestScript(steps),
        timeoutMs: 120_000,
      });
      await g.waitFor(/@@FIO-STARTED@@/, 120_000);
      // fio's writes are flowing (each held 20-50 ms by the delay bdev): some are in flight now
      await waitForWrites(d, "D0", 100, 60_000);
      const log1 = d.log();
      expect(g.output()).not.toContain("@@FIO-DONE@@");   // the restart happens under I/O
      d.proc.kill(sig);
      await d.exited;
      d = await startVhostd({ dir, config: config(), extraArgs: ["--log-level", "INFO"] });
      const res = await g.done.catch((e: Error) => {
        throw new Error(`${e.message}\n--- first vhostd ---\n${log1}\n--- second vhostd ---\n${d?.log()}`);
      });
      const st = parseSteps(res.output);
      expect(st["fio-verify-across-restart"], stepOutput(res.output, "fio-verify-across-restart") +
        "\n--- first vhostd ---\n" + log1 + "\n--- second vhostd ---\n" + d.log()).toBe(0);
      expect(res.output).not.toMatch(/I\/O error|verify: bad|err=\s*[1-9]/);
      // QEMU came back to the new instance and the queues ran there
      expect(d.log()).toMatch(/front end connected/);
      expect(d.log()).toMatch(/queue 0 started/);
      const [c] = await ok(d.rpcSocket, "vhost_get_controllers", { name: "blk0" });
      console.log(`[reconnect ${sig}] recovered_requests=${c.recovered_requests} ` +
        (d.log().match(/re-running \d+ request\(s\)[^\n]*/g) ?? ["no request was in flight"]).join("; ") +
        ` (${Math.round((Date.now() - t0) / 1000)} s)`);
      // a SIGKILL leaves the delayed requests in flight: the new vhostd must have run them again
      if (sig === "SIGKILL") expect(c.recovered_requests).toBeGreaterThan(0);
      await d.stop();
      d = undefined;
    }, 400_000);
  }
});
