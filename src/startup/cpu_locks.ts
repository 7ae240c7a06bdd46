// One lock file per reactor CPU (SPDK's /var/tmp/spdk_cpu_lock_NNN idea, with vhostd's own
// names): a second vhostd on the same CPUs stops before it touches anything.
import { join } from 'node:path';
import { HeldLock, lockFile } from '../framework/lock_file.js';
import { StartupError } from './errors.js';

/** A CPU another process holds; `holder` says which, for the RPC form of the message. */
export class CpuLockError extends StartupError {
  constructor(readonly holder: string, message: string) { super(message); }
}

/** Where the lock files live: /var/tmp, or VHOSTD_CPU_LOCK_DIR (tests use a private one). */
export function cpuLockDir(): string { return process.env.VHOSTD_CPU_LOCK_DIR || '/var/tmp'; }

export function cpuLockPath(cpu: number): string {
  return join(cpuLockDir(), `vhostd_cpu_lock_${String(cpu).padStart(3, '0')}`);
}

/** Locks every CPU of `cpus`, or releases what it took and throws a StartupError naming the holder. */
export function claimCpuLocks(cpus: number[], rpcSocket: string): HeldLock[] {
  const held: HeldLock[] = [];
  try {
    for (const cpu of cpus) {
      const path = cpuLockPath(cpu);
      let r;
      try { r = lockFile(path, { pid: process.pid, rpcSocket, cpus }); } catch (e) {
        throw new StartupError(`cannot lock CPU ${cpu} (${path}): ${(e as Error).message}; ` +
          'remove a lock file left by another user, set VHOSTD_CPU_LOCK_DIR, or pass --disable-cpumask-locks');
      }
      if ('held' in r) { held.push(r.held); continue; }
      const h = r.holder;
      const who = `CPU ${cpu} is already used by another vhostd (pid ${h.pid > 0 ? h.pid : 'unknown'}` +
        `${h.rpcSocket ? `, RPC socket ${h.rpcSocket}` : ''})`;
      throw new CpuLockError(who, `${who}; this instance stopped before changing anything. ` +
        `Stop that one first${h.rpcSocket ? ` (vhostctl -s ${h.rpcSocket} spdk_kill_instance SIGTERM)` : ''}, ` +
        'or run this one on other CPUs (-m) with its own -r and -S; --disable-cpumask-locks lets two instances share CPUs');
    }
    return held;
  } catch (e) {
    for (const l of held) l.release();
    throw e;
  }
}
