// QEMU 11.x with vfio-user-pci from a Debian sid chroot (test/guest/build-qemu-sid.sh),
// for the harness: `useQemuSid()` bind-mounts /dev, /proc, /sys, the temp dir and the
// guest image cache into the chroot at the same paths, and puts a `qemu-system-x86_64`
// shim first in PATH that runs the chroot's QEMU. harness.ts is unchanged: its spawn
// of "qemu-system-x86_64" finds the shim, and every path it passes is valid inside.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { GUEST_CACHE, REPO_ROOT } from "../harness.js";

const exec = promisify(execFile);

export const QEMU_SID_CACHE = process.env.VHOSTD_QEMU_SID ?? path.join(os.homedir(), ".cache/vhostd-qemu-sid");
export const QEMU_SID_ROOT = path.join(QEMU_SID_CACHE, "root");
export const BUILD_QEMU_SID = path.join(REPO_ROOT, "test/guest/build-qemu-sid.sh");

export interface QemuSid { root: string; version: string }

/** Builds the chroot if needed (minutes the first time). Resolves with a skip reason on failure. */
export async function ensureQemuSid(timeoutMs = 20 * 60_000): Promise<QemuSid | { skip: string }> {
  if (os.platform() !== "linux") return { skip: "the QEMU sid chroot needs Linux" };
  if (process.getuid?.() !== 0) return { skip: "the QEMU sid chroot needs root (debootstrap, chroot, bind mounts)" };
  try {
    await exec("bash", [BUILD_QEMU_SID], { timeout: timeoutMs, maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    return { skip: `QEMU with vfio-user-pci is not available: build-qemu-sid.sh failed: ${(err.stderr ?? err.message).trim().split("\n").slice(-5).join(" | ")}` };
  }
  const env = await fs.readFile(path.join(QEMU_SID_CACHE, "qemu.env"), "utf8").catch(() => "");
  const version = /QEMU_VERSION=(.*)/.exec(env)?.[1] ?? "unknown";
  return { root: QEMU_SID_ROOT, version };
}

async function isMountpoint(p: string): Promise<boolean> {
  try { await exec("mountpoint", ["-q", p]); return true; } catch { return false; }
}

/**
 * Makes the harness run the chroot's QEMU until the returned cleanup runs.
 * `dirs`: extra host directories QEMU must see (socket directories outside the temp dir).
 */
export async function useQemuSid(q: QemuSid, dirs: string[] = []): Promise<() => Promise<void>> {
  const mounts: string[] = [];
  const bind = async (src: string, rbind = false) => {
    const dst = path.join(q.root, src);
    await fs.mkdir(dst, { recursive: true });
    if (await isMountpoint(dst)) return;
    await exec("mount", [rbind ? "--rbind" : "--bind", src, dst]);
    mounts.push(dst);
  };
  const tmp = os.tmpdir();
  const wanted = [tmp, GUEST_CACHE, ...dirs].filter((d) => existsSync(d));
  try {
    await bind("/dev", true);
    await bind("/proc");
    await bind("/sys");
    for (const d of wanted) if (!d.startsWith(tmp + path.sep) || d === tmp) await bind(d);
  } catch (e) {
    await unmount(mounts);
    throw e;
  }
  const shimDir = await fs.mkdtemp(path.join(tmp, "vhostd-qemu-sid-shim-"));
  const shim = path.join(shimDir, "qemu-system-x86_64");
  await fs.writeFile(shim, `#!/bin/sh\nexec chroot ${q.root} /usr/bin/qemu-system-x86_64 "$@"\n`, { mode: 0o755 });
  const oldPath = process.env.PATH;
  process.env.PATH = `${shimDir}:${oldPath ?? ""}`;
  return async () => {
    process.env.PATH = oldPath;
    await fs.rm(shimDir, { recursive: true, force: true });
    await unmount(mounts);
  };
}

async function unmount(mounts: string[]): Promise<void> {
  for (const m of mounts.reverse()) {
    try { await exec("umount", ["-l", m]); } catch { /* already gone */ }
  }
}

/** -device args for QEMU's vfio-user-pci client on `socket`. */
export function vfioUserPciArgs(socket: string, id = "nvme0"): string[] {
  return ["-device", JSON.stringify({ driver: "vfio-user-pci", id, socket: { path: socket, type: "unix" } })];
}
