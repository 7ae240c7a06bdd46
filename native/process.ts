// Process-level libc calls for start-up and exit: POSIX record locks (fcntl F_SETLK, as
// SPDK's CPU core locks), user/group lookup through NSS, and _exit.
import { koffi, libc } from './koffi.js';
import { check } from './errors.js';

const sys = {
  fcntlLock: libc.func('fcntl', 'int', ['int', 'int', 'void *']),
  exit: libc.func('void _exit(int status)'),
  getpwnam: libc.func('getpwnam', 'void *', ['const char *']),
  getgrnam: libc.func('getgrnam', 'void *', ['const char *']),
};

// struct passwd / struct group on LP64 Linux: two pointers, then uid_t/gid_t
const Passwd = koffi.struct('vhostd_passwd', { name: 'char *', passwd: 'char *', uid: 'uint32_t', gid: 'uint32_t' });
const Group = koffi.struct('vhostd_group', { name: 'char *', passwd: 'char *', gid: 'uint32_t' });

const F_GETLK = 5, F_SETLK = 6, F_WRLCK = 1, F_UNLCK = 2;
// struct flock (LP64 Linux): short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
const FLOCK_SIZE = 32, L_TYPE = 0, L_PID = 24;

/**
 * Takes a write lock on the whole file (fcntl F_SETLK, not waiting). Returns 0 when this process
 * holds it now, else the pid of the process holding it (-1 if that cannot be told).
 * The lock lasts until the process exits or closes any fd of the file.
 */
export function tryLockFile(fd: number): number {
  const fl = Buffer.alloc(FLOCK_SIZE);
  fl.writeInt16LE(F_WRLCK, L_TYPE);
  if (sys.fcntlLock(fd, F_SETLK, fl) === 0) return 0;
  const errno = koffi.errno();
  if (errno !== koffi.os.errno.EAGAIN && errno !== koffi.os.errno.EACCES) check('fcntl(F_SETLK)', -1);
  fl.fill(0);
  fl.writeInt16LE(F_WRLCK, L_TYPE);
  if (sys.fcntlLock(fd, F_GETLK, fl) !== 0 || fl.readInt16LE(L_TYPE) === F_UNLCK) return -1;
  return fl.readInt32LE(L_PID);
}

/** Ends the process at once, whatever its threads are doing (no exit handlers, no thread joins). */
export function exitNow(code: number): never {
  sys.exit(code);
  throw new Error('unreachable');
}

/** uid and login group of a user name, or null when NSS does not know it. */
export function lookupUser(name: string): { uid: number; gid: number } | null {
  const p = sys.getpwnam(name);
  if (!p) return null;
  const pw = koffi.decode(p, Passwd) as { uid: number; gid: number };
  return { uid: pw.uid, gid: pw.gid };
}

export function lookupGroup(name: string): number | null {
  const g = sys.getgrnam(name);
  return g ? (koffi.decode(g, Group) as { gid: number }).gid : null;
}
