// A throw-away one-node Ceph cluster for tests (test/ceph/start-cluster.sh), the rbd CLI,
// and a JSON-RPC call with a long timeout (librbd calls wait on the cluster).
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const START = resolve(ROOT, 'test/ceph/start-cluster.sh');
const STOP = resolve(ROOT, 'test/ceph/stop-cluster.sh');

/** Why the Ceph tests cannot run here, or undefined when they can (the start script installs what is missing as root). */
export function cephUnavailable(): string | undefined {
  if (existsSync('/usr/bin/ceph-mon') && existsSync('/usr/bin/ceph-osd') && existsSync('/usr/bin/rbd')) return undefined;
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) return undefined;
  return 'Ceph is not installed (apt-get install ceph-mon ceph-osd ceph-common) and this is not root';
}

function sh(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((res, rej) => {
    execFile(cmd, args, { timeout: timeoutMs, env: { ...process.env, ...env } }, (e, stdout, stderr) => {
      if (e) rej(new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${stderr}`)); else res(stdout.trim());
    });
  });
}

/** Starts (or reuses) the cluster in dir; resolves with its ceph.conf path. */
export async function startCeph(dir: string, port = 3300): Promise<string> {
  const out = await sh(START, [dir], 600_000, { CEPH_MON_PORT: String(port) });
  return out.split('\n').pop()!;
}

export function stopCeph(dir: string): void {
  try { execFileSync(STOP, [dir], { timeout: 30_000, stdio: 'ignore' }); } catch { /* already gone */ }
}

/** Runs the rbd CLI against the cluster. */
export function rbdCli(conf: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return sh('rbd', ['-c', conf, ...args], timeoutMs);
}

/** One JSON-RPC call; unlike the integration helper it waits up to timeoutMs (default 60 s). */
export function rpcSlow(sock: string, method: string, params?: unknown, timeoutMs = 60_000):
Promise<{ result?: any; error?: { code: number; message: string } }> {
  return new Promise((res, rej) => {
    const c = net.connect(sock);
    let buf = '';
    const t = setTimeout(() => { c.destroy(); rej(new Error(`${method}: no answer within ${timeoutMs} ms`)); }, timeoutMs);
    c.on('connect', () => c.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method, ...(params !== undefined ? { params } : {}) }) + '\n'));
    c.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) { clearTimeout(t); c.destroy(); res(JSON.parse(buf.slice(0, i))); }
    });
    c.on('error', (e) => { clearTimeout(t); rej(e); });
  });
}

export async function okSlow(sock: string, method: string, params?: unknown, timeoutMs?: number): Promise<any> {
  const r = await rpcSlow(sock, method, params, timeoutMs);
  if (r.error) throw new Error(`${method}: ${r.error.code} ${r.error.message}`);
  return r.result;
}
