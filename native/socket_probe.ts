// Tells a live Unix socket (a process listens on it) from a stale one (its owner is gone):
// first from /proc/net/unix (no side effect on the listener), else with one non-blocking
// connect that is closed at once.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { koffi, libc } from './koffi.js';
import { closeQuiet } from './libc.js';
import { errnoName } from './errors.js';

const sys = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  connect: libc.func('connect', 'int', ['int', 'void *', 'uint32_t']),
};
const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;

/** 'live': something accepts connections; 'stale': nobody listens; else the errno name that prevented the check. */
export function probeUnixSocket(path: string): 'live' | 'stale' | string {
  if (listedAsListening(path)) return 'live';
  const p = Buffer.from(path);
  if (p.length >= 108) return 'ENAMETOOLONG';
  const addr = Buffer.alloc(2 + p.length + 1);
  addr.writeUInt16LE(AF_UNIX, 0);
  p.copy(addr, 2);
  const fd = sys.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errnoName(koffi.errno());
  try {
    if (sys.connect(fd, addr, addr.length) === 0) return 'live';
    const e = koffi.errno();
    const E = koffi.os.errno;
    if (e === E.EAGAIN || e === E.EINPROGRESS) return 'live';   // a listener with a full backlog
    if (e === E.ECONNREFUSED || e === E.ENOENT) return 'stale';
    return errnoName(e);
  } finally {
    closeQuiet(fd);
  }
}

const SO_ACCEPTCON = 0x10000;

/** Whether /proc/net/unix (this network namespace) shows a listening socket bound to `path`. */
function listedAsListening(path: string): boolean {
  const abs = resolve(path);
  let text: string;
  try { text = readFileSync('/proc/net/unix', 'utf8'); } catch { return false; }
  // Num RefCount Protocol Flags Type St Inode Path
  for (const line of text.split('\n')) {
    if (!line.endsWith(path)) continue;   // abs ends with path too
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || (parseInt(f[3], 16) & SO_ACCEPTCON) === 0) continue;
    const bound = f.slice(7).join(' ');
    // a relative name was bound relative to its binder's working directory: compare both forms
    if (bound === path || bound === abs) return true;
  }
  return false;
}
