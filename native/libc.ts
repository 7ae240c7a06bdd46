// koffi bindings to the libc/kernel calls vhostd needs. Pointers to memory the
// process mapped itself are passed as plain numbers (addresses fit in 2^53).
import { koffi, libc } from './koffi.js';
import { check } from './errors.js';

const fn = (sig: string) => libc.func(sig);

export const raw = {
  close: fn('int close(int fd)'),
  fcntl: fn('int fcntl(int fd, int cmd, int arg)'),
  read: fn('intptr_t read(int fd, _Out_ void *buf, size_t len)'),
  preadv2: libc.func('preadv2', 'intptr_t', ['int', 'intptr_t', 'int', 'int64_t', 'int']),
  write: fn('intptr_t write(int fd, const void *buf, size_t len)'),
  pread: fn('intptr_t pread(int fd, _Out_ void *buf, size_t len, int64_t off)'),
  pwrite: fn('intptr_t pwrite(int fd, const void *buf, size_t len, int64_t off)'),
  preadAddr: libc.func('pread', 'intptr_t', ['int', 'intptr_t', 'size_t', 'int64_t']),
  pwriteAddr: libc.func('pwrite', 'intptr_t', ['int', 'intptr_t', 'size_t', 'int64_t']),
  open: fn('int open(const char *path, int flags, uint32_t mode)'),
  fsync: fn('int fsync(int fd)'),
  fdatasync: fn('int fdatasync(int fd)'),
  fallocate: fn('int fallocate(int fd, int mode, int64_t off, int64_t len)'),
  ftruncate: fn('int ftruncate(int fd, int64_t len)'),
  ioctlAddr: libc.func('ioctl', 'int', ['int', 'unsigned long', 'intptr_t']),
  ioctlBuf: libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
  memfdCreate: fn('int memfd_create(const char *name, unsigned int flags)'),
  mmap: libc.func('mmap', 'intptr_t', ['intptr_t', 'size_t', 'int', 'int', 'int', 'int64_t']),
  munmap: libc.func('munmap', 'int', ['intptr_t', 'size_t']),
  madvise: libc.func('madvise', 'int', ['intptr_t', 'size_t', 'int']),
  eventfd: fn('int eventfd(unsigned int initval, int flags)'),
  timerfdCreate: fn('int timerfd_create(int clockid, int flags)'),
  timerfdSettime: fn('int timerfd_settime(int fd, int flags, const void *newValue, void *oldValue)'),
  getpid: fn('int getpid()'),
  gettid: fn('int gettid()'),
  sysconf: fn('long sysconf(int name)'),
  schedSetaffinity: fn('int sched_setaffinity(int pid, size_t size, const void *mask)'),
  schedGetaffinity: fn('int sched_getaffinity(int pid, size_t size, _Out_ void *mask)'),
};

export const O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0o100, O_EXCL = 0o200, O_TRUNC = 0o1000;
export const O_NONBLOCK = 0o4000, O_DIRECT = 0o40000, O_CLOEXEC = 0o2000000, O_DSYNC = 0o10000;
export const F_GETFL = 3, F_SETFL = 4, F_GETFD = 1, F_SETFD = 2, FD_CLOEXEC = 1;
export const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_POPULATE = 0x8000;
export const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
export const F_ADD_SEALS = 1033, F_GET_SEALS = 1034;
export const F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
export const EFD_NONBLOCK = 0o4000, EFD_CLOEXEC = 0o2000000, EFD_SEMAPHORE = 1;
export const FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;
const MAP_FAILED = -1;

export function close(fd: number): void { check('close', raw.close(fd)); }
export function closeQuiet(fd: number): void { if (fd >= 0) raw.close(fd); }

export function setNonBlocking(fd: number, on = true): void {
  const fl = check('fcntl(F_GETFL)', raw.fcntl(fd, F_GETFL, 0));
  check('fcntl(F_SETFL)', raw.fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

export function setCloexec(fd: number): void { check('fcntl(F_SETFD)', raw.fcntl(fd, F_SETFD, FD_CLOEXEC)); }

export function open(path: string, flags: number, mode = 0o644): number {
  return check('open', raw.open(path, flags | O_CLOEXEC, mode), path);
}

export function pread(fd: number, buf: Uint8Array, off: number): number {
  return check('pread', Number(raw.pread(fd, buf, buf.byteLength, off)));
}

export function pwrite(fd: number, buf: Uint8Array, off: number): number {
  return check('pwrite', Number(raw.pwrite(fd, buf, buf.byteLength, off)));
}

export function fsync(fd: number): void { check('fsync', raw.fsync(fd)); }
export function fdatasync(fd: number): void { check('fdatasync', raw.fdatasync(fd)); }
export function fallocate(fd: number, mode: number, off: number, len: number): void {
  check('fallocate', raw.fallocate(fd, mode, off, len));
}
export function ftruncate(fd: number, len: number): void { check('ftruncate', raw.ftruncate(fd, len)); }

export function ioctl(fd: number, request: number, arg: Uint8Array | number): number {
  const r = typeof arg === 'number' ? raw.ioctlAddr(fd, request, arg) : raw.ioctlBuf(fd, request, arg);
  return check('ioctl', r);
}

export function memfdCreate(name: string, size: number, flags = MFD_CLOEXEC): number {
  const fd = check('memfd_create', raw.memfdCreate(name, flags), name);
  try { ftruncate(fd, size); } catch (e) { raw.close(fd); throw e; }
  return fd;
}

/** The seals of a memfd (F_SEAL_*), or -1 for an fd that cannot carry seals. */
export function getSeals(fd: number): number {
  const r = raw.fcntl(fd, F_GET_SEALS, 0);
  return r < 0 ? -1 : r;
}

/** Adds seals to a memfd; false when it refuses (not a memfd, or already F_SEAL_SEAL). */
export function addSeals(fd: number, seals: number): boolean {
  return raw.fcntl(fd, F_ADD_SEALS, seals) === 0;
}

/** Maps fd (or anonymous memory when fd < 0) and returns the address as a number. */
export function mmap(len: number, fd = -1, offset = 0, prot = PROT_READ | PROT_WRITE,
  flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED): number {
  const addr = Number(raw.mmap(0, len, prot, flags, fd, offset));
  if (addr === MAP_FAILED) check('mmap', -1, `len=${len} fd=${fd} offset=${offset}`);
  return addr;
}

export function munmap(addr: number, len: number): void { check('munmap', raw.munmap(addr, len)); }

export const MADV_POPULATE_WRITE = 23;

/** Faults in (and zero-fills) a shared mapping on the thread pool, so first I/Os don't page-fault. */
export function populateAsync(addr: number, len: number): Promise<void> {
  return new Promise((resolve, reject) => {
    (raw.madvise as unknown as { async: Function }).async(addr, len, MADV_POPULATE_WRITE, (err: unknown, r: number) => {
      if (err) reject(err);
      else if (r < 0) reject(new Error('madvise(MADV_POPULATE_WRITE) failed: not enough memory for the bdev?'));
      else resolve();
    });
  });
}

/** An ArrayBuffer over memory this process has mapped (no copy). */
export function view(addr: number, len: number): ArrayBuffer { return koffi.view(addr, len); }

export function eventfd(initval = 0, flags = EFD_NONBLOCK | EFD_CLOEXEC): number {
  return check('eventfd', raw.eventfd(initval, flags));
}

const one = new BigUint64Array([1n]);
const oneBytes = new Uint8Array(one.buffer);
const drainBuf = new Uint8Array(8);

/** Signals an eventfd (adds 1). Returns false if the counter is saturated or fd is bad. */
export function eventfdSignal(fd: number): boolean { return Number(raw.write(fd, oneBytes, 8)) === 8; }

const RWF_NOWAIT = 8;
/** One iovec over 8 bytes of its own page, for preadv2 (which takes addresses). */
const drainPage = mmap(4096);
new BigUint64Array(view(drainPage, 16)).set([BigInt(drainPage + 64), 8n]);
/**
 * Whether the kernel reads eventfds with RWF_NOWAIT (Linux 5.12+): such a read never blocks,
 * even when the front end that shares the eventfd has made it blocking again (O_NONBLOCK
 * belongs to the open file, not to our fd).
 */
const drainNoWait = ((): boolean => {
  const fd = raw.eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return false;
  try { return Number(raw.preadv2(fd, drainPage, 1, -1, RWF_NOWAIT)) === -1 && koffi.errno() === 11 /* EAGAIN */; }
  finally { raw.close(fd); }
})();

/** Reads and clears an eventfd without ever blocking (see drainNoWait); returns whether it was signalled. */
export function eventfdDrain(fd: number): boolean {
  if (drainNoWait) return Number(raw.preadv2(fd, drainPage, 1, -1, RWF_NOWAIT)) === 8;
  return Number(raw.read(fd, drainBuf, 8)) === 8;
}

const CLOCK_MONOTONIC = 1;
/** struct itimerspec (interval, value; each tv_sec, tv_nsec as int64), reused: little-endian 32-bit halves. */
const itimer = new Int32Array(8);

/** A non-blocking CLOCK_MONOTONIC timerfd (readable once it expires; clear it with eventfdDrain). */
export function timerfd(): number {
  return check('timerfd_create', raw.timerfdCreate(CLOCK_MONOTONIC, EFD_NONBLOCK | EFD_CLOEXEC));
}

/** Arms a timerfd to expire once, `ms` from now (at least 1 µs); 0 or less disarms it. */
export function timerfdArm(fd: number, ms: number): void {
  const t = itimer;
  if (ms <= 0) { t[4] = 0; t[6] = 0; } else {
    const us = Math.max(1, Math.ceil(ms * 1000));
    t[4] = Math.floor(us / 1e6);
    t[6] = (us % 1e6) * 1000;
  }
  check('timerfd_settime', raw.timerfdSettime(fd, 0, t, null));
}

export function gettid(): number { return raw.gettid(); }
export function getpid(): number { return raw.getpid(); }

/** Pins the thread `tid` (0 = calling thread) to the given CPUs. */
export function setAffinity(tid: number, cpus: number[]): void {
  const mask = new Uint8Array(128);
  for (const c of cpus) mask[c >> 3] |= 1 << (c & 7);
  check('sched_setaffinity', raw.schedSetaffinity(tid, mask.length, mask), `cpus ${cpus.join(',')}`);
}

export function getAffinity(tid = 0): number[] {
  const mask = new Uint8Array(128);
  check('sched_getaffinity', raw.schedGetaffinity(tid, mask.length, mask));
  const cpus: number[] = [];
  for (let i = 0; i < mask.length * 8; i++) if (mask[i >> 3] & (1 << (i & 7))) cpus.push(i);
  return cpus;
}

export function onlineCpus(): number { return Number(raw.sysconf(84 /* _SC_NPROCESSORS_ONLN */)); }
