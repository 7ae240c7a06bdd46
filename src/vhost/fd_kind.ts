// What kind of file an fd from the front end is: vhostd only writes to fds whose writes
// cannot block (eventfds it made non-blocking, non-blocking sockets).
import { readlinkSync } from 'node:fs';
import { setNonBlocking } from '../../native/libc.js';

/** The kernel's name of the file behind `fd` ("anon_inode:[eventfd]", "pipe:[123]", "/dev/null"). */
export function fdKind(fd: number): string {
  try { return readlinkSync(`/proc/self/fd/${fd}`); } catch (e) { return `unknown (${(e as Error).message})`; }
}

/**
 * Checks that `fd` is an eventfd and makes it non-blocking (QEMU sends blocking ones; a write
 * to one blocks only at counter overflow, but must never block a reactor). Throws otherwise.
 */
export function requireEventfd(fd: number, what: string): void {
  const kind = fdKind(fd);
  if (kind !== 'anon_inode:[eventfd]') {
    throw new Error(`${what} is not an eventfd but ${kind}: the front end must pass an eventfd`);
  }
  setNonBlocking(fd);
}

/** Checks that `fd` is a socket and makes it non-blocking. */
export function requireSocket(fd: number, what: string): void {
  const kind = fdKind(fd);
  if (!kind.startsWith('socket:')) throw new Error(`${what} is not a socket but ${kind}: the front end must pass a unix socket`);
  setNonBlocking(fd);
}
