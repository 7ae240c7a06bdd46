// Claims the RPC socket path: PATH.lock is locked for the life of the process (as SPDK's RPC
// server does), a stale socket file is removed, a live daemon or a non-socket is refused.
import net from 'node:net';
import { lstatSync, unlinkSync } from 'node:fs';
import { lockFile, HeldLock } from '../framework/lock_file.js';
import { probeUnixSocket } from '../../native/socket_probe.js';

export class SocketInUseError extends Error {
  constructor(message: string) { super(message); this.name = 'SocketInUseError'; }
}

/** Locks PATH.lock and clears PATH for the RPC server; throws SocketInUseError naming the running instance. */
export function lockRpcSocket(path: string): HeldLock {
  let r;
  try { r = lockFile(`${path}.lock`, { pid: process.pid, rpcSocket: path }); } catch (e) {
    throw new SocketInUseError(`-r ${path}: cannot lock ${path}.lock: ${(e as Error).message}`);
  }
  if ('holder' in r) {
    const pid = r.holder.pid > 0 ? `pid ${r.holder.pid}` : 'pid unknown';
    throw new SocketInUseError(`another vhostd (${pid}) is already serving RPC on ${path}; this instance stopped before changing anything. ` +
      `Stop it first (vhostctl -s ${path} spdk_kill_instance SIGTERM) or give this one its own -r, -m and -S`);
  }
  try {
    clearStale(path);
  } catch (e) {
    r.held.release();
    throw e;
  }
  return r.held;
}

function clearStale(path: string): void {
  let st;
  try { st = lstatSync(path); } catch { return; }
  if (!st.isSocket()) {
    throw new SocketInUseError(`${path} exists and is not a socket: remove it or choose another path with -r`);
  }
  const state = probeUnixSocket(path);
  if (state === 'live') {
    throw new SocketInUseError(`another process is already serving RPC on ${path} (it holds no ${path}.lock: an older vhostd ` +
      'or another program); this instance stopped before changing anything: stop it or choose another path with -r');
  }
  if (state !== 'stale') throw new SocketInUseError(`cannot tell whether ${path} is in use (${state}): remove it or choose another path with -r`);
  unlinkSync(path);
}

function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Last check right before listen(): a stale socket file goes, a live one or a non-socket is refused. */
export async function claimSocketPath(path: string): Promise<void> {
  let st;
  try { st = lstatSync(path); } catch { return; }
  if (!st.isSocket()) {
    throw new SocketInUseError(`${path} exists and is not a socket: remove it or choose another path with -r`);
  }
  if (await probe(path)) {
    throw new SocketInUseError(`another process is already serving RPC on ${path}: stop it or choose another path with -r`);
  }
  unlinkSync(path);
}
