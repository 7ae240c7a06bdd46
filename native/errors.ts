import { koffi } from './koffi.js';

const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(koffi.os.errno)) {
  if (!errnoNames.has(num)) errnoNames.set(num, name);
}

/** A failed libc/kernel call: which call, the errno name and a readable message. */
export class NativeError extends Error {
  readonly call: string;
  readonly errno: number;
  readonly code: string;
  constructor(call: string, errno: number, detail?: string) {
    const code = errnoNames.get(errno) ?? `E${errno}`;
    super(`${call} failed: ${code} (${errnoMessage(errno)})${detail ? `: ${detail}` : ''}`);
    this.name = 'NativeError';
    this.call = call;
    this.errno = errno;
    this.code = code;
  }
}

const messages: Record<string, string> = {
  EPERM: 'operation not permitted', ENOENT: 'no such file or directory', EINTR: 'interrupted system call',
  EIO: 'input/output error', EBADF: 'bad file descriptor', EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'out of memory', EACCES: 'permission denied', EFAULT: 'bad address', EBUSY: 'device or resource busy',
  EEXIST: 'file exists', ENODEV: 'no such device', ENOTDIR: 'not a directory', EISDIR: 'is a directory',
  EINVAL: 'invalid argument', EMFILE: 'too many open files', ENOSPC: 'no space left on device',
  ESPIPE: 'illegal seek', EROFS: 'read-only file system', EPIPE: 'broken pipe', ENOSYS: 'function not implemented',
  EOPNOTSUPP: 'operation not supported', EADDRINUSE: 'address already in use', ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer', ENOTCONN: 'not connected', ETIMEDOUT: 'timed out', ENOTSOCK: 'not a socket',
  EFBIG: 'file too large', ENXIO: 'no such device or address', E2BIG: 'argument list too long',
};

export function errnoMessage(errno: number): string {
  const name = errnoNames.get(errno);
  return (name && messages[name]) ?? `errno ${errno}`;
}

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** Throws NativeError when a libc call returned -1 (or a negative value). */
export function check(call: string, ret: number, detail?: string): number {
  if (ret < 0) throw new NativeError(call, koffi.errno(), detail);
  return ret;
}

export const ERRNO = koffi.os.errno;
