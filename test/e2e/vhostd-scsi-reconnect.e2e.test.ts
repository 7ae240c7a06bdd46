// vhostd dies (SIGKILL) or is restarted (SIGTERM) while a Linux guest writes with fio verify
// to a vhost-user-scsi disk (a file bdev behind a delay bdev: 20-50 ms writes, so commands
// are in flight at the kill). QEMU 11 from the Debian sid chroot reconnects (bookworm's 7.2
// vhost-user-scsi cannot: reconnect came in 8.2); the new vhostd re-runs the commands left
// in the inflight region, and the guest finishes with no verify error and no I/O error.
// Linux's virtio_scsi never aborts a command that times out (virtscsi_eh_timed_out resets
// the timer: only the device can end it), so a restart slower than the guest's SCSI
// timeout brings timeouts but no TMF; TMFs around a restart are covered by the unit tests
// (test/unit/virtio/scsi_inflight.test.ts). TMFs the new vhostd answered are reported.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureGuest, startGuest } from "./harness.js";
import { fioVerifyAcrossRestart, guestScript, parseKv, parseSteps, PRELUDE, stepOutput, type Step } from "./lib/fio-jobs.js";
import { ensureQemuSid, useQemuSid, type QemuSid } from "./lib/qemu-sid.js";
import { SCSI_PRELUDE, vhostUserScsiArgs } from "./lib/scsi.js";
import { RESTART_DELAY, startVhostd, waitForWrites, type Vhostd, type VhostdOptions } from "./vhostd.js";
import { ok } from "../integration/daemon.js";

/**
 * Finds target 0's disk; counts the commands that failed before the test (the boot-time scan
 * has some); sets the disk's command timeout (s) if given.
 */
function findDisk(timeoutS?: number): Step {
  return {
    name: "find-disk",
    sh: `wait_target 0 120 || return 1\nS0=$SD\necho "target 0 is $SD"\nkv ioerr_before "$(cat /sys/block/$S0/device/ioerr_cnt)"` +
      (timeoutS ? `\necho ${timeoutS} > /sys/block/$S0/device/timeout\nkv sd_timeout "$(cat /sys/block/$S0/device/timeout)"` : ""),
  };
}

interface Case {
  title: string;
  sig: "SIGKILL" | "SIGTERM";
  /** vhostd stays down this long (beyond its restart time). */
  downMs?: number;
  /** The guest's SCSI command timeout, s (Linux default 30). */
  sdTimeoutS?: number;
}

const CASES: Case[] = [
  { title: "a SIGKILL restart", sig: "SIGKILL" },
  { title: "a SIGTERM restart", sig: "SIGTERM" },
  // commands time out in the guest while vhostd is away (Linux waits on: no abort, no error)
  { title: "a SIGKILL with vhostd back only after the guest's SCSI command timeout", sig: "SIGKILL", downMs: 6000, sdTimeoutS: 2 },
];

/** The SCSI midlayer's own view: commands that failed and commands that timed out (then aborted/reset). */
const scsiErrors: Step = {
  name: "scsi-errors",
  sh: String.raw`
kv ioerr_cnt "$(cat /sys/block/$S0/device/ioerr_cnt)"
kv iotmo_cnt "$(cat /sys/block/$S0/device/iotmo_cnt)"
dmesg | grep -iE 'scsi|sd [0-9]|abort|timing out' | grep -viE 'pci|acpi' | tail -15
return 0`,
};

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd vhost-user-scsi restart under guest I/O (inflight + reconnect, QEMU 11)", () => {
  let skip = "";
  let q: QemuSid | undefined;
  let dir = "";
  let d: Vhostd | undefined;
  const config = (): VhostdOptions["config"] => ({
    subsystems: [
      { subsystem: "bdev", config: [
        { method: "bdev_uring_create", params: { name: "F0", filename: path.join(dir, "disk.img"), block_size: 512 } },
        { method: "bdev_delay_create", params: { base_bdev_name: "F0", name: "D0", ...RESTART_DELAY } },
      ] },
      { subsystem: "vhost_scsi", config: [
        { method: "vhost_create_scsi_controller", params: { ctrlr: "scsi0", delay: true } },
        { method: "vhost_scsi_controller_add_target", params: { ctrlr: "scsi0", scsi_target_num: 0, bdev_name: "D0" } },
        { method: "vhost_start_scsi_controller", params: { ctrlr: "scsi0" } },
      ] },
    ],
  });
  const start = () => startVhostd({ dir, config: config(), waitFor: "scsi0", extraArgs: ["--log-level", "INFO"] });

  beforeAll(async () => {
    const r = await ensureQemuSid();
    if ("skip" in r) { skip = r.skip; console.warn(`[e2e] scsi reconnect: skipped: ${skip}`); return; }
    q = r;
    await ensureGuest();
    // /var/tmp: a real file system, so the bdev uses O_DIRECT like a production disk image
    dir = await fs.mkdtemp("/var/tmp/vhostd-scsi-reconnect-");
    await fs.writeFile(path.join(dir, "disk.img"), "");
    await fs.truncate(path.join(dir, "disk.img"), 128 << 20);
  }, 25 * 60_000);

  afterAll(async () => {
    await d?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  for (const { title, sig, downMs, sdTimeoutS } of CASES) {
    it(`guest fio verify passes across ${title}`, async (t) => {
      if (skip) t.skip();
      await d?.stop();                 // left running by a failed run before
      const t0 = Date.now();
      d = await start();
      const steps = [findDisk(sdTimeoutS), fioVerifyAcrossRestart("/dev/$S0", downMs ? 24 : 14), scsiErrors];
      const cleanup = await useQemuSid(q!, [dir]);
      let log1 = "";
      let res;
      try {
        const g = await startGuest({
          devices: vhostUserScsiArgs(path.join(dir, "scsi0"), { numQueues: 2, reconnectMs: 1000 }),
          script: guestScript(steps, PRELUDE + SCSI_PRELUDE),
          timeoutMs: 240_000,
        });
        try {
          await g.waitFor(/@@FIO-STARTED@@/, 200_000);
        } catch (e) {
          g.kill();
          throw new Error(`${(e as Error).message}\n--- vhostd ---\n${d.log()}`);
        }
        // fio's writes are flowing (each held 20-50 ms by the delay bdev): some are in flight now
        await waitForWrites(d, "D0", 100, 60_000);
        log1 = d.log();
        expect(g.output()).not.toContain("@@FIO-DONE@@");   // the restart happens under I/O
        d.proc.kill(sig);
        await d.exited;
        const down = Date.now();
        if (downMs) await new Promise((r) => setTimeout(r, downMs));
        d = await start();
        while (!/controller scsi0 started/.test(d.log()) && Date.now() - down < 30_000) await new Promise((r) => setTimeout(r, 20));
        console.log(`[scsi reconnect ${title}] vhostd serving again ${Date.now() - down} ms after it died`);
        res = await g.done.catch((e: Error) => {
          throw new Error(`${e.message}\n--- first vhostd ---\n${log1}\n--- second vhostd ---\n${d?.log()}`);
        });
      } finally {
        await cleanup();
      }
      const why = () => "\n--- first vhostd ---\n" + log1 + "\n--- second vhostd ---\n" + d!.log();
      const st = parseSteps(res.output);
      expect(st["find-disk"], stepOutput(res.output, "find-disk") + why()).toBe(0);
      expect(st["fio-verify-across-restart"], stepOutput(res.output, "fio-verify-across-restart") + why()).toBe(0);
      expect(st["scsi-errors"], res.output.slice(-3000)).toBe(0);
      expect(res.output).not.toMatch(/I\/O error|verify: bad|err=\s*[1-9]/);
      const kv = parseKv(res.output);
      // no command failed during the run; timeouts (followed by abort/reset TMFs) are allowed only if they recovered
      expect(Number(kv.ioerr_cnt) - Number(kv.ioerr_before), stepOutput(res.output, "scsi-errors")).toBe(0);
      expect(d.log()).toMatch(/front end connected/);
      expect(d.log()).toMatch(/queue 2 started/);
      if (sdTimeoutS) expect(Number(kv.sd_timeout)).toBe(sdTimeoutS);
      const [c] = await ok(d.rpcSocket, "vhost_get_controllers", { name: "scsi0" });
      console.log(`[scsi reconnect ${title}] recovered_requests=${c.recovered_requests} ioerr_cnt=${kv.ioerr_before}->${kv.ioerr_cnt} ` +
        `iotmo_cnt=${kv.iotmo_cnt}; ` +
        (d.log().match(/queue \d+: (re-running|answering|reusing)[^\n]*/g) ?? ["nothing was in flight"]).join("; ") +
        ` (${Math.round((Date.now() - t0) / 1000)} s)\n` + stepOutput(res.output, "scsi-errors"));
      // a SIGKILL leaves the delayed commands in flight: the new vhostd must have run them again
      if (sig === "SIGKILL") expect(c.recovered_requests).toBeGreaterThan(0);
      await d.stop();
      const tmfs = /answered (\d+) task management function\(s\): (\d+) waited/.exec(d.log());
      console.log(`[scsi reconnect ${title}] guest command timeouts ${Number(kv.iotmo_cnt)}, TMFs answered by the new vhostd: ` +
        (tmfs ? `${tmfs[1]} (${tmfs[2]} waited for re-run commands)` : "none"));
      if (sdTimeoutS) expect(Number(kv.iotmo_cnt)).toBeGreaterThan(0);   // the guest did time commands out
      d = undefined;
    }, 600_000);
  }
});
