// End-to-end harness: builds/locates the test guest, boots it under QEMU TCG
// with per-test devices and a per-test /test.sh, and runs qemu-storage-daemon.
// Node builtins only.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { newcArchive, type CpioEntry } from "./lib/cpio.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "../..");
export const BUILD_SCRIPT = path.join(REPO_ROOT, "test/guest/build-guest.sh");

export const GUEST_CACHE =
  process.env.VHOSTD_GUEST_CACHE ?? path.join(os.homedir(), ".cache/vhostd-guest");

const verbose = () => process.env.VHOSTD_E2E_VERBOSE === "1";
const keepTmp = () => process.env.VHOSTD_E2E_KEEP === "1";

// ---------------------------------------------------------------- guest image

export interface GuestImage {
  cacheDir: string;
  kernel: string;
  /** base initramfs used for boots (plain cpio unless VHOSTD_GUEST_INITRD=gz) */
  initrd: string;
  initrdGz: string;
  kver: string;
}

let guestPromise: Promise<GuestImage> | undefined;

/** Build the guest if needed (idempotent, cached per process). */
export function ensureGuest(): Promise<GuestImage> {
  guestPromise ??= (async () => {
    const t0 = Date.now();
    await run("bash", [BUILD_SCRIPT], { env: { ...process.env, VHOSTD_GUEST_CACHE: GUEST_CACHE } });
    const env = parseEnvFile(await fs.readFile(path.join(GUEST_CACHE, "guest.env"), "utf8"));
    const img: GuestImage = {
      cacheDir: GUEST_CACHE,
      kernel: env.VMLINUZ!,
      initrdGz: env.INITRD_GZ!,
      initrd: process.env.VHOSTD_GUEST_INITRD === "gz" ? env.INITRD_GZ! : env.INITRD_CPIO!,
      kver: env.KVER!,
    };
    if (verbose()) console.error(`[e2e] guest ready in ${Date.now() - t0} ms: ${img.kver}`);
    return img;
  })();
  guestPromise.catch(() => (guestPromise = undefined));
  return guestPromise;
}

function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

// ---------------------------------------------------------------- boot

export interface BootOptions {
  /** extra QEMU args, e.g. vhostUserBlkArgs(...) */
  devices: string[];
  /** busybox sh script run as /test.sh inside the guest */
  script: string;
  /** extra files for the overlay, path (no leading /) -> content */
  files?: Record<string, string | Buffer>;
  memMiB?: number;
  smp?: number;
  timeoutMs: number;
  /** extra kernel command line */
  append?: string;
  /** keep the temp dir (also VHOSTD_E2E_KEEP=1) */
  keep?: boolean;
  /** another guest image than the shared one (e.g. lib/nested_guest.ts) */
  image?: GuestImage;
}

export interface BootResult {
  /** exit code of /test.sh */
  rc: number;
  /** test.sh stdout+stderr, between the BEGIN/RESULT markers */
  output: string;
  /** full ttyS0 log (firmware, kernel messages, init, test output) */
  serial: string;
  /** guest uptime (s) when /test.sh started and ended */
  guestBootS: number;
  guestEndS: number;
  /** host wall time from QEMU spawn to exit */
  wallMs: number;
  /** host wall time from QEMU spawn until /test.sh started (boot time) */
  bootMs: number;
}

export class GuestError extends Error {
  constructor(message: string, readonly serial: string, readonly stderr: string) {
    super(message);
    this.name = "GuestError";
  }
}

const BEGIN_RE = /@@VHOSTD-BEGIN[^@]*uptime=([\d.]+)@@\r?\n/;
const RESULT_RE = /@@VHOSTD-RESULT rc=(\d+) uptime=([\d.]+)@@/;

/** Write base initramfs + zero padding + overlay cpio with /test.sh. */
export async function makeInitrd(
  img: GuestImage,
  dest: string,
  script: string,
  files: Record<string, string | Buffer> = {},
): Promise<void> {
  await pipeline(createReadStream(img.initrd), createWriteStream(dest));
  const { size } = await fs.stat(dest);
  // The kernel only looks for a following archive at a 4-byte aligned offset;
  // zeros between archives are skipped.
  const pad = Buffer.alloc((512 - (size % 512)) % 512);
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  for (const name of Object.keys(files)) {
    const parts = name.replace(/^\/+/, "").split("/").slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  for (const d of [...dirs].sort()) entries.push({ name: d });
  for (const [name, data] of Object.entries(files)) entries.push({ name, data });
  entries.push({ name: "test.sh", data: script });
  await fs.appendFile(dest, Buffer.concat([pad, newcArchive(entries)]));
}

export interface RunningGuest {
  proc: ChildProcess;
  /** resolves when QEMU exits (rejects on timeout / missing result) */
  done: Promise<BootResult>;
  /** test.sh output (ttyS1) received so far */
  output(): string;
  /** wait until the live output matches `re` (e.g. a marker the script echoes) */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGKILL QEMU */
  kill(): void;
}

/** Boot the guest once, run `script`, return its exit code and output. */
export async function bootGuest(opts: BootOptions): Promise<BootResult> {
  return (await startGuest(opts)).done;
}

/**
 * Start the guest and return at once, for tests that act on the host while the
 * guest runs (daemon restart, hot unplug...). ttyS1 is streamed live.
 */
export async function startGuest(opts: BootOptions): Promise<RunningGuest> {
  const img = opts.image ?? (await ensureGuest());
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "vhostd-guest-"));
  const initrd = path.join(dir, "initrd");
  const s0 = path.join(dir, "ttyS0.log");
  await makeInitrd(img, initrd, opts.script, opts.files);

  const mem = opts.memMiB ?? 512;
  const args = [
    "-accel", "tcg",
    "-machine", "q35,memory-backend=mem",
    "-object", `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    "-m", `${mem}M`,
    "-smp", String(opts.smp ?? 2),
    "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
    "-monitor", "none",
    // ttyS0: console (kernel + init) to a file; ttyS1: clean test output to stdout
    "-serial", `file:${s0}`,
    "-chardev", "stdio,id=ttys1,signal=off",
    "-serial", "chardev:ttys1",
    "-kernel", img.kernel,
    "-initrd", initrd,
    "-append",
    `console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off ${opts.append ?? ""}`.trim(),
    ...opts.devices,
  ];
  if (verbose()) console.error(`[e2e] qemu-system-x86_64 ${args.join(" ")}`);

  const t0 = Date.now();
  const qemu = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let clean = "";
  const waiters = new Set<() => void>();
  let bootMs = -1;
  qemu.stdout!.on("data", (d: Buffer) => {
    clean += d.toString();
    if (bootMs < 0 && BEGIN_RE.test(clean)) bootMs = Date.now() - t0;
    for (const w of [...waiters]) w();
  });
  qemu.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  let exited = false;
  const timer = setTimeout(() => {
    timedOut = true;
    qemu.kill("SIGKILL");
  }, opts.timeoutMs);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      qemu.on("error", reject);
      qemu.on("close", (code, signal) => {
        exited = true;
        for (const w of [...waiters]) w();
        resolve({ code, signal });
      });
    },
  ).finally(() => clearTimeout(timer));

  const done = (async (): Promise<BootResult> => {
    const ex = await exit;
    const wallMs = Date.now() - t0;
    const serial = await fs.readFile(s0, "utf8").catch(() => "");
    if (!(opts.keep || keepTmp())) await fs.rm(dir, { recursive: true, force: true });
    else {
      await fs.writeFile(path.join(dir, "ttyS1.log"), clean);
      console.error(`[e2e] kept ${dir}`);
    }
    if (verbose()) console.error(serial);

    const tail = () =>
      `\n--- qemu stderr ---\n${stderr}\n--- serial (tail) ---\n${serial.slice(-4000)}`;
    if (timedOut) {
      throw new GuestError(`guest timed out after ${opts.timeoutMs} ms${tail()}`, serial, stderr);
    }
    // prefer ttyS1 (no kernel messages); fall back to the console
    const src = RESULT_RE.test(clean) ? clean : serial;
    const b = BEGIN_RE.exec(src);
    const r = RESULT_RE.exec(src);
    if (!b || !r) {
      throw new GuestError(
        `guest produced no result (qemu exit ${ex.code ?? ex.signal})${tail()}`,
        serial,
        stderr,
      );
    }
    return {
      rc: Number(r[1]),
      output: src.slice(b.index + b[0].length, r.index).replace(/\r\n/g, "\n"),
      serial,
      guestBootS: Number(b[1]),
      guestEndS: Number(r[2]),
      wallMs,
      bootMs,
    };
  })();
  done.catch(() => {}); // callers that only use waitFor() must not crash the run

  return {
    proc: qemu,
    done,
    output: () => clean.replace(/\r\n/g, "\n"),
    kill: () => qemu.kill("SIGKILL"),
    waitFor(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = clean.replace(/\r\n/g, "\n").match(re);
          if (m) finish(() => resolve(m));
          else if (exited) finish(() => reject(new Error(`guest exited before ${re}`)));
        };
        const t = setTimeout(
          () => finish(() => reject(new Error(`timeout waiting for ${re}; output:\n${clean}`))),
          timeoutMs,
        );
        const finish = (f: () => void) => {
          clearTimeout(t);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
  };
}

// ---------------------------------------------------------------- QEMU device args

export interface VhostUserBlkOpts {
  id?: string;
  numQueues?: number;
  queueSize?: number;
  /** seconds between reconnect attempts when the back end goes away */
  reconnect?: number;
  extra?: string; // appended to -device
}

/** -chardev/-device args for a vhost-user-blk-pci device on `socket`. */
export function vhostUserBlkArgs(socket: string, o: VhostUserBlkOpts = {}): string[] {
  const id = o.id ?? "vub0";
  let chardev = `socket,id=${id}c,path=${socket}`;
  if (o.reconnect) chardev += `,reconnect=${o.reconnect}`;
  let dev = `vhost-user-blk-pci,id=${id},chardev=${id}c,num-queues=${o.numQueues ?? 1}`;
  if (o.queueSize) dev += `,queue-size=${o.queueSize}`;
  if (o.extra) dev += `,${o.extra}`;
  return ["-chardev", chardev, "-device", dev];
}

// ---------------------------------------------------------------- daemons

export interface DaemonHandle {
  socketPath: string;
  proc: ChildProcess;
  /** combined stdout/stderr so far */
  log(): string;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone */
  stop(graceMs?: number): Promise<void>;
  exited: Promise<number | null>;
}

export interface QsdOptions {
  socketPath: string;
  /** raw image file; or "null" for a null-co device of `sizeMiB` */
  image: string | "null";
  /** create/resize the raw file to this size (sparse); also the null-co size */
  sizeMiB?: number;
  numQueues?: number;
  logicalBlockSize?: number;
  writable?: boolean;
  /** open the file with O_DIRECT (cache.direct=on) */
  direct?: boolean;
  /** seconds to wait for the socket; default 15 */
  startTimeoutS?: number;
}

/** Start qemu-storage-daemon exporting a vhost-user-blk socket. */
export async function startQsd(o: QsdOptions): Promise<DaemonHandle> {
  await fs.rm(o.socketPath, { force: true });
  const nodeArgs: string[] = [];
  if (o.image === "null") {
    const size = (o.sizeMiB ?? 256) * 1024 * 1024;
    nodeArgs.push("--blockdev", `driver=null-co,node-name=disk0,size=${size},read-zeroes=on`);
  } else {
    if (o.sizeMiB !== undefined) {
      const fh = await fs.open(o.image, "a");
      await fh.truncate(o.sizeMiB * 1024 * 1024);
      await fh.close();
    }
    const direct = o.direct ? "on" : "off";
    nodeArgs.push(
      "--blockdev",
      `driver=file,node-name=file0,filename=${o.image},cache.direct=${direct},aio=threads,discard=unmap`,
      "--blockdev",
      `driver=raw,node-name=disk0,file=file0,discard=unmap`,
    );
  }
  let exp = `type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=${o.socketPath}`;
  exp += `,writable=${o.writable === false ? "off" : "on"},num-queues=${o.numQueues ?? 1}`;
  if (o.logicalBlockSize) exp += `,logical-block-size=${o.logicalBlockSize}`;
  const args = [...nodeArgs, "--export", exp];
  if (verbose()) console.error(`[e2e] qemu-storage-daemon ${args.join(" ")}`);
  return startDaemon("qemu-storage-daemon", args, o.socketPath, o.startTimeoutS ?? 15);
}

/** Spawn a daemon and wait until it accepts connections on `socketPath`. */
export async function startDaemon(
  cmd: string,
  args: string[],
  socketPath: string,
  startTimeoutS = 15,
  env?: NodeJS.ProcessEnv,
): Promise<DaemonHandle> {
  const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => {
    proc.on("exit", (code) => resolve(code));
    proc.on("error", (e) => {
      out += String(e);
      resolve(-1);
    });
  });
  let gone = false;
  void exited.then(() => (gone = true));

  const handle: DaemonHandle = {
    socketPath,
    proc,
    log: () => out,
    exited,
    async stop(graceMs = 5000) {
      if (gone) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(t);
    },
  };

  // Wait until the daemon listens: a socket file we can connect to. (The
  // probe connection is closed at once; vhost-user back ends accept a new one.)
  const deadline = Date.now() + startTimeoutS * 1000;
  for (;;) {
    if (gone) throw new Error(`${cmd} exited during startup:\n${out}`);
    if (existsSync(socketPath)) break;
    if (Date.now() > deadline) {
      await handle.stop(1000);
      throw new Error(`${cmd}: socket ${socketPath} did not appear in ${startTimeoutS}s:\n${out}`);
    }
    await sleep(50);
  }
  return handle;
}

/** True if something accepts connections on a unix socket. */
export function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

// ---------------------------------------------------------------- misc

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { ...opts, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
        else resolve({ stdout, stderr });
      },
    );
  });
}

/** A fresh temp dir (caller removes it). */
export function tempDir(prefix = "vhostd-e2e-"): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Is QEMU/QSD available here at all? (tests can skip otherwise) */
export function haveQemu(): boolean {
  const dirs = (process.env.PATH ?? "").split(":");
  return ["qemu-system-x86_64", "qemu-storage-daemon"].every((b) =>
    dirs.some((d) => existsSync(path.join(d, b))),
  );
}
