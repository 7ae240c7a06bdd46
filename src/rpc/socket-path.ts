// Claims the RPC socket path: removes a stale socket file, refuses a live daemon or a non-socket.
import net from 'node:net';
import { lstatSync, unlinkSync } from 'node:fs';

export class SocketInUseError extends Error {
  constructor(message: string) { super(message); this.name = 'SocketInUseError'; }
}

function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

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
