// Test helpers: start dist/src/cli/vhostd.js as a real process and talk to its socket.
import { spawn, ChildProcess, execFile } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const VHOSTD = join(ROOT, 'dist/src/cli/vhostd.js');
export const VHOSTCTL = join(ROOT, 'dist/src/cli/vhostctl.js');

export function tmpDir(): string { return mkdtempSync(join(tmpdir(), 'vhostd-test-')); }

export interface Daemon {
  proc: ChildProcess;
  sock: string;
  dir: string;
  stderr: () => string;
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function startDaemon(args: string[] = [], dir = tmpDir()): Promise<Daemon> {
  const sock = join(dir, 'rpc.sock');
  const proc = spawn(process.execPath, [VHOSTD, '-r', sock, '-S', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => { err += d; });
  proc.stdout!.on('data', (d) => { err += d; });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  let dead = false;
  exited.then(() => { dead = true; });
  await waitFor(() => dead || (existsSync(sock) && /vhostd \S+ started/.test(err)), 10_000, `vhostd on ${sock}`);
  if (dead) throw new Error(`vhostd exited early: ${err}`);
  return {
    proc, sock, dir, stderr: () => err, exited,
    async stop() {
      if (!dead) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Sends raw chunks (with a pause between them) and collects newline-terminated responses. */
export function rawExchange(sock: string, chunks: (string | Buffer)[], expect: number, pauseMs = 30): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let buf = '';
    const lines: string[] = [];
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`got ${lines.length}/${expect} responses: ${buf}`)); }, 5000);
    const finish = () => { clearTimeout(timer); c.destroy(); resolve(lines); };
    c.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
      if (lines.length >= expect) finish();
    });
    c.on('close', finish);
    c.on('error', reject);
    c.on('connect', async () => {
      for (const ch of chunks) { c.write(ch); await new Promise((r) => setTimeout(r, pauseMs)); }
      if (expect === 0) setTimeout(finish, 300);
    });
  });
}

let nextId = 1;
export interface RpcReply { id: unknown; result?: any; error?: { code: number; message: string } }

export async function rpc(sock: string, method: string, params?: unknown): Promise<RpcReply> {
  const req: Record<string, unknown> = { jsonrpc: '2.0', id: nextId++, method };
  if (params !== undefined) req.params = params;
  const [line] = await rawExchange(sock, [JSON.stringify(req)], 1, 0);
  return JSON.parse(line);
}

export async function ok(sock: string, method: string, params?: unknown): Promise<any> {
  const r = await rpc(sock, method, params);
  if (r.error) throw new Error(`${method}: ${r.error.code} ${r.error.message}`);
  return r.result;
}

export function run(file: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(process.execPath, [file, ...args], { timeout: 20_000 }, (e, stdout, stderr) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
    });
    if (input !== undefined) { p.stdin!.end(input); }
  });
}
