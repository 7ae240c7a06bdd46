// AF_UNIX stream sockets with SCM_RIGHTS fd passing, through one native scratch
// area per socket helper (msghdr + iovec + cmsg), so no koffi structs are needed.
import { raw as libcRaw, mmap, view, closeQuiet } from './libc.js';
import { check, ERRNO } from './errors.js';
import { koffi, libc } from './koffi.js';

const sys = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('bind', 'int', ['int', 'intptr_t', 'uint32_t']),
  connect: libc.func('connect', 'int', ['int', 'intptr_t', 'uint32_t']),
  listen: libc.func('int listen(int fd, int backlog)'),
  accept4: libc.func('accept4', 'int', ['int', 'intptr_t', 'intptr_t', 'int']),
  recvmsg: libc.func('recvmsg', 'intptr_t', ['int', 'intptr_t', 'int']),
  sendmsg: libc.func('sendmsg', 'intptr_t', ['int', 'intptr_t', 'int']),
  shutdown: libc.func('int shutdown(int fd, int how)'),
};

const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1, SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
export const MAX_FDS = 32;

// Scratch layout: [0,56) msghdr, [64,80) iovec, [128, 128+CMSG) cmsg, [512, 512+110) sockaddr_un, [1024,..) data
const SCRATCH = 1 << 16;
const OFF_MSG = 0, OFF_IOV = 64, OFF_CMSG = 128, CMSG_SPACE = 16 + 4 * MAX_FDS, OFF_ADDR = 512, OFF_DATA = 1024;
export const MAX_IO = SCRATCH - OFF_DATA;

const base = mmap(SCRATCH);
const mem = new Uint8Array(view(base, SCRATCH));
const dv = new DataView(mem.buffer);

function sockaddr(path: string): number {
  const p = Buffer.from(path);
  if (p.length >= 108) throw new Error(`socket path '${path}' is too long (${p.length} bytes; the limit is 107)`);
  mem.fill(0, OFF_ADDR, OFF_ADDR + 110);
  dv.setUint16(OFF_ADDR, AF_UNIX, true);
  mem.set(p, OFF_ADDR + 2);
  return 2 + p.length + 1;
}


export function unixListen(path: string, backlog = 16): number {
  const fd = check('socket', sys.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    const len = sockaddr(path);
    check('bind', sys.bind(fd, base + OFF_ADDR, len), path);
    check('listen', sys.listen(fd, backlog), path);
  } catch (e) { closeQuiet(fd); throw e; }
  return fd;
}

/** Connects (blocking) and returns a non-blocking socket fd. */
export function unixConnect(path: string, nonBlocking = true): number {
  const fd = check('socket', sys.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  try {
    const len = sockaddr(path);
    check('connect', sys.connect(fd, base + OFF_ADDR, len), path);
    if (nonBlocking) {
      const fl = libcRaw.fcntl(fd, 3, 0);
      libcRaw.fcntl(fd, 4, fl | 0o4000);
    }
  } catch (e) { closeQuiet(fd); throw e; }
  return fd;
}

/** Accepts one connection; returns -1 when none is pending. */
export function unixAccept(listenFd: number): number {
  const fd = sys.accept4(listenFd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    const e = koffi.errno();
    if (e === ERRNO.EAGAIN || e === ERRNO.EINTR || e === ERRNO.ECONNABORTED) return -1;
    check('accept4', -1);
  }
  return fd;
}

export interface RecvResult {
  /** Bytes read; 0 = peer closed; -1 = would block. */
  n: number;
  fds: number[];
}

/** Reads up to `len` bytes into dst[off..] and collects passed fds. */
export function recvWithFds(fd: number, dst: Uint8Array, off: number, len: number): RecvResult {
  if (len > MAX_IO) len = MAX_IO;
  dv.setBigUint64(OFF_IOV, BigInt(base + OFF_DATA), true);
  dv.setBigUint64(OFF_IOV + 8, BigInt(len), true);
  mem.fill(0, OFF_MSG, OFF_MSG + 56);
  dv.setBigUint64(OFF_MSG + 16, BigInt(base + OFF_IOV), true);
  dv.setBigUint64(OFF_MSG + 24, 1n, true);
  dv.setBigUint64(OFF_MSG + 32, BigInt(base + OFF_CMSG), true);
  dv.setBigUint64(OFF_MSG + 40, BigInt(CMSG_SPACE), true);
  const n = Number(sys.recvmsg(fd, base + OFF_MSG, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) {
    const e = koffi.errno();
    if (e === ERRNO.EAGAIN || e === ERRNO.EINTR) return { n: -1, fds: [] };
    check('recvmsg', -1);
  }
  const fds: number[] = [];
  const controllen = Number(dv.getBigUint64(OFF_MSG + 40, true));
  let c = 0;
  while (c + 16 <= controllen) {
    const clen = Number(dv.getBigUint64(OFF_CMSG + c, true));
    const level = dv.getInt32(OFF_CMSG + c + 8, true), type = dv.getInt32(OFF_CMSG + c + 12, true);
    if (clen < 16) break;
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let i = 16; i + 4 <= clen; i += 4) fds.push(dv.getInt32(OFF_CMSG + c + i, true));
    }
    c += (clen + 7) & ~7;
  }
  if (n > 0) dst.set(mem.subarray(OFF_DATA, OFF_DATA + n), off);
  return { n, fds };
}

/**
 * Sends all of `data` with `fds` attached to the first byte. Blocks briefly if the socket is
 * full, or with `maxSpins` 0 never: a full socket then throws EAGAIN (the peer stopped reading).
 */
export function sendWithFds(fd: number, data: Uint8Array, fds: number[] = [], maxSpins = 100000): void {
  if (fds.length > MAX_FDS) throw new Error(`cannot pass ${fds.length} fds (at most ${MAX_FDS})`);
  let sent = 0;
  let spins = 0;
  while (sent < data.length) {
    const chunk = Math.min(data.length - sent, MAX_IO);
    mem.set(data.subarray(sent, sent + chunk), OFF_DATA);
    mem.fill(0, OFF_MSG, OFF_MSG + 56);
    dv.setBigUint64(OFF_IOV, BigInt(base + OFF_DATA), true);
    dv.setBigUint64(OFF_IOV + 8, BigInt(chunk), true);
    dv.setBigUint64(OFF_MSG + 16, BigInt(base + OFF_IOV), true);
    dv.setBigUint64(OFF_MSG + 24, 1n, true);
    if (sent === 0 && fds.length > 0) {
      const clen = 16 + 4 * fds.length;
      dv.setBigUint64(OFF_CMSG, BigInt(clen), true);
      dv.setInt32(OFF_CMSG + 8, SOL_SOCKET, true);
      dv.setInt32(OFF_CMSG + 12, SCM_RIGHTS, true);
      fds.forEach((x, i) => dv.setInt32(OFF_CMSG + 16 + 4 * i, x, true));
      dv.setBigUint64(OFF_MSG + 32, BigInt(base + OFF_CMSG), true);
      dv.setBigUint64(OFF_MSG + 40, BigInt((clen + 7) & ~7), true);
    }
    const n = Number(sys.sendmsg(fd, base + OFF_MSG, MSG_NOSIGNAL));
    if (n < 0) {
      const e = koffi.errno();
      if ((e === ERRNO.EINTR || (e === ERRNO.EAGAIN && spins < maxSpins)) && spins++ < 100000) continue;
      check('sendmsg', -1);
    }
    sent += n;
  }
}

export function shutdownSocket(fd: number): void { sys.shutdown(fd, 2); }
