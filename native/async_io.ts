import { mmap, munmap, view } from './libc.js';

// Engine-neutral async I/O interface shared by io_uring and Linux AIO.
// Hot-path methods take only numbers (fds, native addresses, offsets < 2^53) and
// never allocate. Iovec arrays are consumed at submit time, so an IovecTable
// slot may be reused as soon as submit() returns.

/** Receives completions; res is bytes transferred or a negative errno. */
export interface CqeSink {
  onCqe(userData: number, res: number): void;
}

export interface AsyncIoEngine {
  readonly name: 'io_uring' | 'linux-aio';
  /** Queue depth the engine was created with. */
  readonly depth: number;
  /** Each prep* queues one op; returns false when the queue is full (nothing queued). */
  prepReadv(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number): boolean;
  prepWritev(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number): boolean;
  prepRead(fd: number, bufAddr: number, len: number, offset: number, userData: number): boolean;
  prepWrite(fd: number, bufAddr: number, len: number, offset: number, userData: number): boolean;
  prepFsync(fd: number, datasync: boolean, userData: number): boolean;
  /** Submits everything prepared since the last submit; returns how many were submitted. */
  submit(): number;
  /** Submits, then blocks until at least minComplete completions are ready to reap. */
  submitAndWait(minComplete: number): number;
  /** Delivers up to max ready completions to sink; returns how many. Never blocks. */
  reap(sink: CqeSink, max?: number): number;
  /** Signal this eventfd on completions (epoll-able wakeup for the reactor). */
  registerEventfd(efd: number): void;
  close(): void;
}

/**
 * Preallocated native `struct iovec[capacity]` (anonymous mmap, 16 bytes each)
 * so callers can point iovecs at guest memory without allocating.
 */
export class IovecTable {
  readonly base: number;
  readonly capacity: number;
  private readonly u32: Uint32Array;
  private readonly bytes: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.bytes = Math.max(capacity * 16, 16);
    this.base = mmap(this.bytes);
    this.u32 = new Uint32Array(view(this.base, this.bytes));
  }

  /** Sets iovec i to {addr, len}. */
  set(i: number, addr: number, len: number): void {
    const w = i << 2, u = this.u32;
    u[w] = addr >>> 0; u[w + 1] = (addr / 4294967296) >>> 0;
    u[w + 2] = len >>> 0; u[w + 3] = (len / 4294967296) >>> 0;
  }

  /** Native address of iovec i (pass as iovAddr). */
  addrOf(i: number): number { return this.base + i * 16; }

  iovBase(i: number): number { return this.u32[i << 2] + this.u32[(i << 2) + 1] * 4294967296; }
  iovLen(i: number): number { return this.u32[(i << 2) + 2] + this.u32[(i << 2) + 3] * 4294967296; }

  free(): void { munmap(this.base, this.bytes); }
}

/** Writes a number < 2^53 (or a small negative, e.g. -1) as a little-endian u64 at u32 index w. */
export function put64(u: Uint32Array, w: number, v: number): void {
  u[w] = v >>> 0;
  u[w + 1] = Math.floor(v / 4294967296) >>> 0;
}

/** Reads a u64 at u32 index w as a number (exact below 2^53). */
export function get64(u: Uint32Array, w: number): number {
  return u[w] + u[w + 1] * 4294967296;
}
