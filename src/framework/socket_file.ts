// Controller sockets (vhost-user, vfio-user): what may be replaced at the path before listen,
// and the owner/group/mode every controller socket gets after it (--socket-owner, --socket-mode).
import { chmodSync, chownSync, lstatSync, unlinkSync } from 'node:fs';
import { probeUnixSocket } from '../../native/socket_probe.js';

export class SocketPathError extends Error {
  constructor(readonly code: 'exists' | 'busy' | 'invalid', message: string) { super(message); this.name = 'SocketPathError'; }
}

export interface SocketAccess {
  uid?: number;
  gid?: number;
  mode?: number;
  /** As the operator wrote it, for messages. */
  owner?: string;
}

let access: SocketAccess = {};

/** Daemon-wide: applied to every controller socket created from now on. */
export function setControllerSocketAccess(a: SocketAccess): void { access = { ...a }; }
export function controllerSocketAccess(): SocketAccess { return access; }

/**
 * Makes `path` free for a new listening socket: nothing there, or a stale socket (removed).
 * A regular file, directory or other non-socket is never deleted, and a socket some process
 * still listens on (another vhostd's controller, say) is never replaced.
 */
export function prepareSocketPath(path: string): void {
  let st;
  try { st = lstatSync(path); } catch { return; }
  if (!st.isSocket()) {
    const what = st.isFile() ? 'a regular file' : st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : 'not a socket';
    throw new SocketPathError('exists', `cannot create the socket ${path}: the path exists and is ${what}, ` +
      'which vhostd does not delete; move it away or choose another name or socket directory');
  }
  const state = probeUnixSocket(path);
  if (state === 'live') {
    throw new SocketPathError('busy', `cannot create the socket ${path}: another process (another vhostd?) is listening on it; ` +
      'stop that process or choose another name or socket directory');
  }
  if (state !== 'stale') {
    throw new SocketPathError('busy', `cannot create the socket ${path}: cannot tell whether it is in use (${state}); remove it if it is stale`);
  }
  unlinkSync(path);
}

/** Gives a just-created socket the configured owner, group and mode. */
export function applySocketAccess(path: string): void {
  const a = access;
  if (a.uid !== undefined || a.gid !== undefined) {
    try { chownSync(path, a.uid ?? -1, a.gid ?? -1); } catch (e) {
      throw new SocketPathError('invalid', `cannot give the socket ${path} to ${a.owner}: ${(e as Error).message} ` +
        '(--socket-owner needs root or CAP_CHOWN, or a group this user belongs to)');
    }
  }
  if (a.mode !== undefined) {
    try { chmodSync(path, a.mode); } catch (e) {
      throw new SocketPathError('invalid', `cannot set mode ${a.mode.toString(8).padStart(4, '0')} on the socket ${path}: ${(e as Error).message}`);
    }
  }
}
