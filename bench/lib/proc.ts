// Child-process bookkeeping: spawn in own process group, kill by PID, reap on exit.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, statSync, openSync, closeSync, readFileSync } from "node:fs";

const live = new Set<ChildProcess>();

export interface Spawned {
  child: ChildProcess;
  exited: Promise<number | null>; // exit code (null when killed by a signal)
}

/** Spawn `argv` in its own process group; stdout/stderr go to `logFile` if given. */
export function spawnTracked(argv: string[], logFile?: string): Spawned {
  const fd = logFile ? openSync(logFile, "a") : "ignore";
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ["ignore", fd, fd] });
  if (typeof fd === "number") closeSync(fd);
  live.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => { live.delete(child); resolve(127); });
    child.once("exit", (code) => { live.delete(child); resolve(code); });
  });
  return { child, exited };
}

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid, sig); } catch { try { child.kill(sig); } catch { /* gone */ } }
}

/** SIGTERM the child's group, SIGKILL after `graceMs`; resolves when it has exited. */
export async function stopTracked(s: Spawned, graceMs = 3000): Promise<void> {
  killGroup(s.child, "SIGTERM");
  const t = setTimeout(() => killGroup(s.child, "SIGKILL"), graceMs);
  await s.exited;
  clearTimeout(t);
}

/** SIGTERM every live group, SIGKILL stragglers after `graceMs`, wait for all to exit. */
export async function stopAll(graceMs = 2000): Promise<void> {
  const waits = [...live].map((c) => new Promise<void>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) return r();
    c.once("exit", () => r());
    killGroup(c, "SIGTERM");
  }));
  const t = setTimeout(killAllSync, graceMs);
  await Promise.all(waits);
  clearTimeout(t);
}

/** Synchronous last resort (process 'exit' handler): SIGKILL every live group. */
export function killAllSync(): void {
  for (const c of live) killGroup(c, "SIGKILL");
}

export interface RunResult { code: number | null; stdout: string; stderr: string; timedOut: boolean }

/** Run to completion with a hard timeout (group SIGKILL), capturing output. */
export function runCaptured(argv: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    let stdout = "", stderr = "", timedOut = false;
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => { timedOut = true; killGroup(child, "SIGKILL"); }, timeoutMs);
    const done = (code: number | null) => { clearTimeout(t); live.delete(child); resolve({ code, stdout, stderr, timedOut }); };
    child.once("error", (e) => { stderr += String(e); done(127); });
    child.once("close", (code) => done(code));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait until `path` is a Unix socket; throw if `s` exits first or on timeout. */
export async function waitForSocket(path: string, s: Spawned, timeoutMs: number, what: string): Promise<void> {
  let exited: number | null | undefined;
  void s.exited.then((c) => { exited = c; });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(path) && statSync(path).isSocket()) return;
    if (exited !== undefined) throw new Error(`${what} exited (code ${exited}) before creating ${path}`);
    await sleep(20);
  }
  throw new Error(`${what}: socket ${path} did not appear within ${timeoutMs / 1000} s`);
}

/** Last `n` lines of a log file, for error messages. */
export function tailFile(path: string, n = 8): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-n).join("\n");
  } catch { return ""; }
}
