// I/O engines for the file bdev, one per reactor channel: io_uring first, then Linux
// AIO, then plain preadv/pwritev on the reactor thread. The control plane picks the
// preferred engine once (and says why it fell back); a reactor that cannot create it
// walks further down the same chain and records what it got.
import { koffi, libc } from '../../native/koffi.js';
import { IoUring, ioUringAvailable } from '../../native/io_uring.js';
import { LinuxAio } from '../../native/linux_aio.js';
import type { CqeSink } from '../../native/async_io.js';
import { closeQuiet, eventfd, raw } from '../../native/libc.js';

export type EngineName = 'io_uring' | 'linux-aio' | 'sync';
export const ENGINE_ORDER: readonly EngineName[] = ['io_uring', 'linux-aio', 'sync'];
/** Engine codes stored per reactor in the bdev's shared state (0 = no channel yet). */
export const ENGINE_CODE: Record<EngineName, number> = { io_uring: 1, 'linux-aio': 2, sync: 3 };
export const ENGINE_BY_CODE: Record<number, EngineName> = { 1: 'io_uring', 2: 'linux-aio', 3: 'sync' };
/** Environment variable that caps the engine choice (e.g. force linux-aio or sync for testing). */
export const ENGINE_ENV = 'VHOSTD_FILE_ENGINE';

export function isEngineName(s: string): s is EngineName { return (ENGINE_ORDER as readonly string[]).includes(s); }

/** What a reactor channel drives: vectored reads/writes, datasync and (io_uring only) fallocate. */
export interface FileEngine {
  readonly name: EngineName;
  /** prepFallocate is asynchronous; otherwise the channel runs fallocate itself. */
  readonly hasFallocate: boolean;
  prepReadv(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number): boolean;
  prepWritev(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number): boolean;
  prepFdatasync(fd: number, userData: number): boolean;
  prepFallocate(fd: number, mode: number, offset: number, len: number, userData: number): boolean;
  /** Submits everything prepared (one syscall for io_uring / linux-aio). */
  submit(): number;
  /** Delivers ready completions; res is bytes or -errno. Never blocks. */
  reap(sink: CqeSink): number;
  /** Readable when completions are ready, or -1 (sync: everything completes inside submit()). */
  eventFd(): number;
  close(): void;
}

class UringEngine implements FileEngine {
  readonly name = 'io_uring' as const;
  readonly hasFallocate = true;
  private readonly ring: IoUring;
  private readonly efd: number;

  constructor(depth: number) {
    this.ring = IoUring.create(depth);
    try {
      this.efd = eventfd();
      this.ring.registerEventfd(this.efd);
    } catch (e) {
      this.ring.close();
      throw e;
    }
  }
  prepReadv(fd: number, iov: number, n: number, off: number, ud: number): boolean { return this.ring.prepReadv(fd, iov, n, off, ud); }
  prepWritev(fd: number, iov: number, n: number, off: number, ud: number): boolean { return this.ring.prepWritev(fd, iov, n, off, ud); }
  prepFdatasync(fd: number, ud: number): boolean { return this.ring.prepFsync(fd, true, ud); }
  prepFallocate(fd: number, mode: number, off: number, len: number, ud: number): boolean {
    return this.ring.prepFallocate(fd, mode, off, len, ud);
  }
  /** No syscall when nothing is prepared or left over. */
  submit(): number { return this.ring.submit(); }
  reap(sink: CqeSink): number { return this.ring.reap(sink); }
  eventFd(): number { return this.efd; }
  close(): void { this.ring.close(); closeQuiet(this.efd); }
}

class AioEngine implements FileEngine {
  readonly name = 'linux-aio' as const;
  readonly hasFallocate = false;
  private readonly aio: LinuxAio;
  private readonly efd: number;

  constructor(depth: number) {
    this.aio = LinuxAio.create(depth);
    try {
      this.efd = eventfd();
      this.aio.registerEventfd(this.efd);
    } catch (e) {
      this.aio.close();
      throw e;
    }
  }
  prepReadv(fd: number, iov: number, n: number, off: number, ud: number): boolean { return this.aio.prepReadv(fd, iov, n, off, ud); }
  prepWritev(fd: number, iov: number, n: number, off: number, ud: number): boolean { return this.aio.prepWritev(fd, iov, n, off, ud); }
  prepFdatasync(fd: number, ud: number): boolean { return this.aio.prepFsync(fd, true, ud); }
  prepFallocate(): boolean { return false; }
  /** No syscall when nothing is prepared. */
  submit(): number { return this.aio.submit(); }
  reap(sink: CqeSink): number { return this.aio.reap(sink); }
  eventFd(): number { return this.efd; }
  close(): void { this.aio.close(); closeQuiet(this.efd); }
}

const sys = {
  preadv: libc.func('preadv', 'intptr_t', ['int', 'intptr_t', 'int', 'int64_t']),
  pwritev: libc.func('pwritev', 'intptr_t', ['int', 'intptr_t', 'int', 'int64_t']),
};
const OP_READV = 1, OP_WRITEV = 2, OP_FDATASYNC = 3;

/**
 * Each op runs as a blocking syscall on the reactor inside submit(): one preadv/pwritev/
 * fdatasync per I/O, inherent to synchronous copies (no allocation: the ops sit in typed
 * arrays). Chosen for files on tmpfs/ramfs (a copy beats io_uring's worker threads there)
 * and as the last resort; elsewhere the reactor stalls for the duration of every I/O.
 */
class SyncEngine implements FileEngine {
  readonly name = 'sync' as const;
  readonly hasFallocate = false;
  private readonly op: Uint8Array; private readonly fd: Int32Array;
  private readonly addr: Float64Array; private readonly cnt: Int32Array;
  private readonly off: Float64Array; private readonly ud: Float64Array;
  private readonly res: Float64Array;
  private head = 0; private count = 0;   // prepared, not yet run
  private doneHead = 0; private doneCount = 0; // run, not yet reaped (ring of the same capacity)
  private readonly doneUd: Float64Array; private readonly doneRes: Float64Array;

  constructor(readonly depth: number) {
    this.op = new Uint8Array(depth); this.fd = new Int32Array(depth);
    this.addr = new Float64Array(depth); this.cnt = new Int32Array(depth);
    this.off = new Float64Array(depth); this.ud = new Float64Array(depth);
    this.res = new Float64Array(depth);
    this.doneUd = new Float64Array(depth); this.doneRes = new Float64Array(depth);
  }
  private prep(op: number, fd: number, addr: number, cnt: number, off: number, ud: number): boolean {
    if (this.count + this.doneCount >= this.depth) return false;
    const i = (this.head + this.count) % this.depth;
    this.op[i] = op; this.fd[i] = fd; this.addr[i] = addr; this.cnt[i] = cnt; this.off[i] = off; this.ud[i] = ud;
    this.count++;
    return true;
  }
  prepReadv(fd: number, iov: number, n: number, off: number, ud: number): boolean { return this.prep(OP_READV, fd, iov, n, off, ud); }
  prepWritev(fd: number, iov: number, n: number, off: number, ud: number): boolean { return this.prep(OP_WRITEV, fd, iov, n, off, ud); }
  prepFdatasync(fd: number, ud: number): boolean { return this.prep(OP_FDATASYNC, fd, 0, 0, 0, ud); }
  prepFallocate(): boolean { return false; }
  submit(): number {
    let n = 0;
    while (this.count > 0) {
      const i = this.head;
      let r: number;
      for (;;) {
        switch (this.op[i]) {
          case OP_READV: r = Number(sys.preadv(this.fd[i], this.addr[i], this.cnt[i], this.off[i])); break;
          case OP_WRITEV: r = Number(sys.pwritev(this.fd[i], this.addr[i], this.cnt[i], this.off[i])); break;
          default: r = Number(raw.fdatasync(this.fd[i])); break;
        }
        if (r >= 0) break;
        r = -koffi.errno();
        if (r !== -4 /* EINTR */) break;
      }
      const d = (this.doneHead + this.doneCount) % this.depth;
      this.doneUd[d] = this.ud[i]; this.doneRes[d] = r;
      this.doneCount++;
      this.head = (i + 1) % this.depth; this.count--;
      n++;
    }
    return n;
  }
  reap(sink: CqeSink): number {
    let n = 0;
    while (this.doneCount > 0) {
      const d = this.doneHead;
      this.doneHead = (d + 1) % this.depth; this.doneCount--;
      n++;
      sink.onCqe(this.doneUd[d], this.doneRes[d]);
    }
    return n;
  }
  eventFd(): number { return -1; }
  close(): void { this.count = this.doneCount = 0; }
}

const probes = new Map<EngineName, { ok: boolean; reason?: string }>();

/** Whether an engine can be created in this process (probed once, cached). */
export function probeEngine(name: EngineName): { ok: boolean; reason?: string } {
  if (name === 'io_uring') return ioUringAvailable();
  let p = probes.get(name);
  if (p) return p;
  if (name === 'sync') p = { ok: true };
  else {
    try { LinuxAio.create(1).close(); p = { ok: true }; } catch (e) { p = { ok: false, reason: (e as Error).message }; }
  }
  probes.set(name, p);
  return p;
}

export interface EngineChoice {
  engine: EngineName;
  /** Why engines before it in the chain were skipped (empty when the first choice worked). */
  fallbacks: string[];
}

/**
 * Picks the best engine at or below `cap` (default: the VHOSTD_FILE_ENGINE environment
 * variable, else io_uring). Throws on an unknown cap name.
 */
export function chooseEngine(cap?: EngineName): EngineChoice {
  const start = cap ?? envCap();
  const fallbacks: string[] = [];
  const chain = ENGINE_ORDER.slice(ENGINE_ORDER.indexOf(start));
  if (start !== 'io_uring') {
    fallbacks.push(`${cap ? 'engine' : ENGINE_ENV}=${start} caps the engine choice`);
  }
  for (const name of chain) {
    const p = probeEngine(name);
    if (p.ok) return { engine: name, fallbacks };
    fallbacks.push(`${name} unavailable: ${p.reason}`);
  }
  return { engine: 'sync', fallbacks }; // not reached: sync always probes ok
}

function envCap(): EngineName {
  const v = process.env[ENGINE_ENV];
  if (v === undefined || v === '' || v === 'auto') return 'io_uring';
  if (!isEngineName(v)) {
    throw new Error(`${ENGINE_ENV}='${v}' is not an engine: use io_uring, linux-aio, sync or auto`);
  }
  return v;
}

/** Creates `first` or, failing that, the next engine in the chain; reports why it fell back. */
export function createEngine(first: EngineName, depth: number): { engine: FileEngine; fallbacks: string[] } {
  const fallbacks: string[] = [];
  for (const name of ENGINE_ORDER.slice(ENGINE_ORDER.indexOf(first))) {
    try {
      return { engine: makeEngine(name, depth), fallbacks };
    } catch (e) {
      fallbacks.push(`${name}: ${(e as Error).message}`);
    }
  }
  return { engine: new SyncEngine(depth), fallbacks };
}

function makeEngine(name: EngineName, depth: number): FileEngine {
  switch (name) {
    case 'io_uring': return new UringEngine(depth);
    case 'linux-aio': return new AioEngine(depth);
    default: return new SyncEngine(depth);
  }
}
