// A lock file held for the life of the process (fcntl write lock, as SPDK's CPU core locks),
// with a short JSON note (pid, RPC socket) that tells a second instance who holds it.
import { closeSync, constants as C, fstatSync, ftruncateSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tryLockFile } from '../../native/process.js';

export interface HeldLock { readonly path: string; release(): void }
export interface LockHolder { pid: number; rpcSocket?: string; cpus?: number[] }
export type LockResult = { held: HeldLock } | { holder: LockHolder };

/** Locks `path` (created if missing) without waiting; on success writes `note` into it. */
export function lockFile(path: string, note: LockHolder): LockResult {
  for (let attempt = 0; ; attempt++) {
    const fd = openSync(path, C.O_RDWR | C.O_CREAT, 0o600);
    let keep = false;
    try {
      const pid = tryLockFile(fd);
      if (pid !== 0) return { holder: readHolder(path, pid) };
      // the holder may have unlinked the file between our open and lock: then lock the new one
      if (!samePath(fd, path) && attempt < 3) continue;
      ftruncateSync(fd, 0);
      writeSync(fd, JSON.stringify(note) + '\n');
      keep = true;
      return { held: { path, release: () => release(path, fd) } };
    } finally {
      // closing any fd of the file drops this process's lock on it: only when not held
      if (!keep) closeSync(fd);
    }
  }
}

function samePath(fd: number, path: string): boolean {
  try { return fstatSync(fd).ino === statSync(path).ino; } catch { return false; }
}

// unlink first, then close: whoever opened the old file meanwhile fails to lock it, or sees it gone
function release(path: string, fd: number): void {
  try { if (samePath(fd, path)) unlinkSync(path); } catch { /* gone */ }
  try { closeSync(fd); } catch { /* closed */ }
}

function readHolder(path: string, pid: number): LockHolder {
  let note: Partial<LockHolder> = {};
  try { note = JSON.parse(readFileSync(path, 'utf8')) as LockHolder; } catch { /* empty or foreign */ }
  // fcntl's answer is the truth about the pid; the note adds what that process said about itself
  const real = pid > 0 ? pid : typeof note.pid === 'number' ? note.pid : -1;
  return note.pid === real ? { ...note, pid: real } : { pid: real };
}
