// vhostd as a real process for the fuzzer, and vhost-load as the bystander's load.
// Output goes to files, not pipes: the fuzz loop is synchronous and must never make the
// daemon block on a full stderr pipe (that would look like a hang).
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, readlinkSync, writeFileSync, statSync, copyFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const VHOSTD = process.env.VHOSTD_FUZZ_VHOSTD ?? join(ROOT, 'dist/src/cli/vhostd.js');

export interface FuzzDaemon {
  proc: ChildProcess;
  pid: number;
  dir: string;
  logFile: string;
  rpcSocket: string;
  socket(ctrlr: string): string;
  alive(): boolean;
  exitInfo(): string;
  log(): string;
  stop(): Promise<number | null>;
}

export async function startFuzzDaemon(dir: string, ctrls: { ctrlr: string; bdev: string; mib: number }[]): Promise<FuzzDaemon> {
  const cfg = join(dir, 'vhostd.json');
  writeFileSync(cfg, JSON.stringify({
    subsystems: [
      { subsystem: 'bdev', config: ctrls.map((c) => ({ method: 'bdev_malloc_create',
        params: { name: c.bdev, num_blocks: (c.mib << 20) / 512, block_size: 512 } })) },
      { subsystem: 'vhost_blk', config: ctrls.map((c) => ({ method: 'vhost_create_blk_controller',
        params: { ctrlr: c.ctrlr, dev_name: c.bdev } })) },
    ],
  }, null, 1));
  const rpcSocket = join(dir, 'rpc.sock');
  const logFile = join(dir, 'vhostd.log');
  const out = openSync(logFile, 'w');
  const extra = (process.env.VHOSTD_FUZZ_DAEMON_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [VHOSTD, '-m', '0x1', '-r', rpcSocket, '-S', dir, '-c', cfg, ...extra],
    { stdio: ['ignore', out, out],
      env: process.env.VHOSTD_FUZZ_DAEMON_NODE_OPTIONS ? { ...process.env, NODE_OPTIONS: process.env.VHOSTD_FUZZ_DAEMON_NODE_OPTIONS } : process.env });
  closeSync(out);
  let exit: { code: number | null; signal: string | null } | null = null;
  const exited = new Promise<number | null>((r) => proc.on('exit', (code, signal) => { exit = { code, signal }; r(code); }));
  const log = () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } };
  const end = Date.now() + 20_000;
  while (!ctrls.every((c) => existsSync(join(dir, c.ctrlr))) || !/vhostd \S+ started/.test(log())) {
    if (exit) throw new Error(`vhostd exited early (${JSON.stringify(exit)}):\n${log()}`);
    if (Date.now() > end) { proc.kill('SIGKILL'); throw new Error(`vhostd did not start:\n${log()}`); }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    proc, pid: proc.pid!, dir, logFile, rpcSocket,
    socket: (c) => join(dir, c),
    // signal 0 probes the process without relying on the event loop having seen 'exit'
    alive: () => { if (exit) return false; try { process.kill(proc.pid!, 0); return !isZombie(proc.pid!); } catch { return false; } },
    exitInfo: () => exit ? `exit code ${exit.code} signal ${exit.signal}` : 'running',
    log,
    async stop() {
      if (!exit) proc.kill('SIGTERM');
      const t = setTimeout(() => { if (!exit) proc.kill('SIGKILL'); }, 10_000);
      const c = await exited;
      clearTimeout(t);
      return c;
    },
  };
}

function isZombie(pid: number): boolean {
  try { return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')); } catch { return true; }
}

export interface ProcSample { rssKiB: number; anonKiB: number; shmemKiB: number; fds: number; threads: number }

export function sampleProc(pid: number): ProcSample {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const num = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? NaN);
  return { rssKiB: num('VmRSS'), anonKiB: num('RssAnon'), shmemKiB: num('RssShmem'), fds: readdirSync(`/proc/${pid}/fd`).length, threads: num('Threads') };
}

/** What the process's fds point at, counted by kind (memfd:..., anon_inode:[eventfd], socket, ...). */
export function fdKinds(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of readdirSync(`/proc/${pid}/fd`)) {
    let t: string;
    try { t = readlinkSync(`/proc/${pid}/fd/${f}`); } catch { continue; }
    const k = t.replace(/socket:\[\d+\]/, 'socket').replace(/pipe:\[\d+\]/, 'pipe').replace(/ \(deleted\)$/, '');
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Mappings in the process of memfds whose name starts with `prefix` (guest memory it still holds). */
export function mappingsOf(pid: number, prefix: string): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes(`/memfd:${prefix}`)).length;
}

/** Builds vhost-load outside the repo; returns its path or the reason it could not. */
export function buildVhostLoad(): { path: string } | { skip: string } {
  const src = process.env.VHOST_LOAD_SRC ?? '/work/shared/tools/vhost-load';
  if (process.env.VHOST_LOAD && existsSync(process.env.VHOST_LOAD)) return { path: process.env.VHOST_LOAD };
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'vhostd-bench/vhost-load');
  const bin = join(dir, 'vhost-load');
  if (!existsSync(join(src, 'vhost-load.c'))) {
    return existsSync(bin) ? { path: bin } : { skip: `vhost-load sources not found at ${src} (set VHOST_LOAD_SRC or VHOST_LOAD)` };
  }
  try {
    mkdirSync(dir, { recursive: true });
    for (const f of ['Makefile', 'vhost-load.c']) {
      const to = join(dir, f);
      if (!existsSync(to) || statSync(to).mtimeMs < statSync(join(src, f)).mtimeMs) {
        copyFileSync(join(src, f), to + '.tmp');
        spawnSync('mv', ['-f', to + '.tmp', to]);
      }
    }
  } catch (e) { return { skip: `cannot prepare ${dir}: ${(e as Error).message}` }; }
  const r = spawnSync('make', ['-s', '-C', dir, 'vhost-load'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || !existsSync(bin)) return { skip: `building vhost-load failed: ${r.error?.message ?? ''}${r.stderr ?? ''}` };
  return { path: bin };
}

export interface Load {
  proc: ChildProcess;
  outFile: string;
  /** Ends the run (SIGINT: drain and report) and returns exit code and JSON result. */
  finish(): Promise<{ code: number | null; signal: string | null; result: any; out: string }>;
  running(): boolean;
}

/** vhost-load --verify on `socket` until finish(). */
export function startLoad(bin: string, socket: string, dir: string, seed: number): Load {
  const outFile = join(dir, 'vhost-load.out');
  const out = openSync(outFile, 'w');
  // --irq: sleep on the call eventfd rather than burn a CPU; the CI box has two
  const proc = spawn(bin, ['--socket', socket, '--verify', '--rw', 'randrw', '--bs', '4k', '--qd', '4', '--size', '16m',
    '--seed', String(seed), '--irq', '--time', '3600', '--json', '--timeout', '10', '--io-timeout', '10'],
  { stdio: ['ignore', out, out] });
  closeSync(out);
  let exit: { code: number | null; signal: string | null } | null = null;
  const exited = new Promise<void>((r) => proc.on('exit', (code, signal) => { exit = { code, signal }; r(); }));
  return {
    proc, outFile,
    running: () => exit === null,
    async finish() {
      if (!exit) proc.kill('SIGINT');
      const t = setTimeout(() => { if (!exit) proc.kill('SIGKILL'); }, 30_000);
      await exited;
      clearTimeout(t);
      const text = readFileSync(outFile, 'utf8');
      let result: any = null;
      for (const line of text.split('\n')) { if (line.startsWith('{')) { try { result = JSON.parse(line); } catch { /* partial */ } } }
      return { code: exit!.code, signal: exit!.signal, result, out: text };
    },
  };
}
