// Linux native AIO (io_setup/io_submit/io_getevents) fallback engine. iocbs live in
// preallocated native memory; completions are reaped straight from the kernel's
// mmapped aio_ring when its layout is recognised (no syscall), else via io_getevents.
// Note: AIO is only truly asynchronous for O_DIRECT files; buffered I/O completes
// inside io_submit.
import { koffi, libc } from './koffi.js';
import { ERRNO, NativeError, check } from './errors.js';
import { mmap, munmap, view } from './libc.js';
import type { AsyncIoEngine, CqeSink } from './async_io.js';
import { get64, put64 } from './async_io.js';

const NR = process.arch === 'arm64'
  ? { setup: 0, destroy: 1, submit: 2, getevents: 4 }
  : { setup: 206, destroy: 207, submit: 209, getevents: 208 }; // x86_64

const sysSetup = libc.func('syscall', 'long', ['long', 'uint32', 'void *']);
const sysDestroy = libc.func('syscall', 'long', ['long', 'intptr_t']);
const sysSubmit = libc.func('syscall', 'long', ['long', 'intptr_t', 'long', 'intptr_t']);
const sysGetevents = libc.func('syscall', 'long', ['long', 'intptr_t', 'long', 'long', 'intptr_t', 'void *']);
const errnoNow = (): number => koffi.errno();

export const IOCB_CMD_PREAD = 0, IOCB_CMD_PWRITE = 1, IOCB_CMD_FSYNC = 2, IOCB_CMD_FDSYNC = 3;
export const IOCB_CMD_PREADV = 7, IOCB_CMD_PWRITEV = 8;
export const IOCB_FLAG_RESFD = 1;
const IOCB_SIZE = 64, EVENT_SIZE = 32;
const AIO_RING_MAGIC = 0xa10a10a1, AIO_RING_HDR = 32;

export class LinuxAio implements AsyncIoEngine {
  readonly name = 'linux-aio' as const;
  readonly depth: number;
  /** aio_context_t (the address of the kernel's completion ring). */
  readonly ctx: number;
  /** Whether completions are read from the mmapped ring without a syscall. */
  readonly userRing: boolean;

  private readonly mem: number; private readonly memLen: number;
  private iocbs: Uint32Array;   // depth iocbs
  private readonly ptrsAddr: number;     // iocb*[depth], constant: ptr[i] = &iocb[i]
  private readonly stashAddr: number;    // io_event[depth] filled by io_getevents
  private stash: Uint32Array;
  private stashHead = 0; private stashEnd = 0;
  private ring: Uint32Array | null;
  private readonly ringNr: number;
  private readonly synth: Float64Array;  // submit-time failures: [userData, res] pairs
  private synthHead = 0; private synthCount = 0;
  private readonly zeroTs = new Uint32Array(4);
  private pending = 0;
  private inflight = 0;
  private resfd = -1;
  private closed = false;

  private constructor(depth: number, ctx: number, userRing: boolean) {
    this.depth = depth;
    this.ctx = ctx;
    this.memLen = depth * (IOCB_SIZE + 8 + EVENT_SIZE);
    this.mem = mmap(this.memLen);
    const all = view(this.mem, this.memLen);
    this.iocbs = new Uint32Array(all, 0, depth * 16);
    this.ptrsAddr = this.mem + depth * IOCB_SIZE;
    const ptrs = new Uint32Array(all, depth * IOCB_SIZE, depth * 2);
    for (let i = 0; i < depth; i++) put64(ptrs, i * 2, this.mem + i * IOCB_SIZE);
    this.stashAddr = this.ptrsAddr + depth * 8;
    this.stash = new Uint32Array(all, depth * (IOCB_SIZE + 8), depth * 8);
    this.synth = new Float64Array(depth * 2);
    const hdr = new Uint32Array(view(ctx, AIO_RING_HDR));
    const ok = userRing && hdr[4] === AIO_RING_MAGIC && hdr[6] === 0 && hdr[7] === AIO_RING_HDR;
    this.ringNr = ok ? hdr[1] : 0;
    this.ring = ok ? new Uint32Array(view(ctx, AIO_RING_HDR + this.ringNr * EVENT_SIZE)) : null;
    this.userRing = ok;
  }

  /**
   * io_setup(depth): at most `depth` ops may be queued or in flight at once.
   * userRing=false forces reaping through io_getevents (default: ring when recognised).
   */
  static create(depth: number, opts: { userRing?: boolean } = {}): LinuxAio {
    const ctxp = new Uint32Array(2);
    check('io_setup', Number(sysSetup(NR.setup, depth, ctxp)), `nr_events=${depth}`);
    const ctx = get64(ctxp, 0);
    try {
      return new LinuxAio(depth, ctx, opts.userRing ?? true);
    } catch (e) {
      sysDestroy(NR.destroy, ctx);
      throw e;
    }
  }

  /** Completions are signalled on efd (IOCB_FLAG_RESFD) for ops prepared after this call; -1 disables. */
  registerEventfd(efd: number): void { this.resfd = efd; }

  // ---- hot path -------------------------------------------------------------

  private prep(cmd: number, fd: number, buf: number, n: number, off: number, userData: number): boolean {
    if (this.pending + this.inflight >= this.depth) return false;
    const s = this.iocbs, w = this.pending << 4;
    put64(s, w, userData);
    s[w + 2] = 0; s[w + 3] = 0;             // aio_key, aio_rw_flags
    s[w + 4] = cmd; s[w + 5] = fd;          // opcode | reqprio<<16, fildes
    put64(s, w + 6, buf);
    put64(s, w + 8, n);
    put64(s, w + 10, off);
    s[w + 12] = 0; s[w + 13] = 0;           // reserved2
    const efd = this.resfd;
    s[w + 14] = efd >= 0 ? IOCB_FLAG_RESFD : 0;
    s[w + 15] = efd >= 0 ? efd : 0;
    this.pending++;
    return true;
  }

  prepReadv(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number): boolean {
    return this.prep(IOCB_CMD_PREADV, fd, iovAddr, iovCnt, offset, userData);
  }
  prepWritev(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number): boolean {
    return this.prep(IOCB_CMD_PWRITEV, fd, iovAddr, iovCnt, offset, userData);
  }
  prepRead(fd: number, bufAddr: number, len: number, offset: number, userData: number): boolean {
    return this.prep(IOCB_CMD_PREAD, fd, bufAddr, len, offset, userData);
  }
  prepWrite(fd: number, bufAddr: number, len: number, offset: number, userData: number): boolean {
    return this.prep(IOCB_CMD_PWRITE, fd, bufAddr, len, offset, userData);
  }
  prepFsync(fd: number, datasync: boolean, userData: number): boolean {
    return this.prep(datasync ? IOCB_CMD_FDSYNC : IOCB_CMD_FSYNC, fd, 0, 0, 0, userData);
  }

  /**
   * io_submit for all prepared iocbs. An iocb the kernel rejects (e.g. EBADF, EINVAL)
   * completes with res = -errno at the next reap instead of throwing. On EAGAIN the
   * rest stay queued for the next submit.
   */
  submit(): number {
    const total = this.pending;
    let done = 0;
    while (done < total) {
      const r = Number(sysSubmit(NR.submit, this.ctx, total - done, this.ptrsAddr + done * 8));
      if (r > 0) { done += r; this.inflight += r; continue; }
      const errno = r === 0 ? ERRNO.EAGAIN : errnoNow();
      if (errno === ERRNO.EINTR) continue;
      if (errno === ERRNO.EAGAIN) break;
      const w = done << 4, k = ((this.synthHead + this.synthCount++) % this.depth) << 1; // fail it, go on
      this.synth[k] = get64(this.iocbs, w);
      this.synth[k + 1] = -errno;
      this.inflight++;
      done++;
    }
    if (done < total) this.iocbs.copyWithin(0, done << 4, total << 4);
    this.pending = total - done;
    return done;
  }

  /** Submits, then blocks (io_getevents) until at least minComplete completions are reapable. */
  submitAndWait(minComplete: number): number {
    const n = this.submit();
    for (;;) {
      const ready = this.ready();
      if (ready >= minComplete || ready >= this.inflight) return n;
      if (this.stashHead > 0) { // compact the stash so io_getevents can append
        this.stash.copyWithin(0, this.stashHead << 3, this.stashEnd << 3);
        this.stashEnd -= this.stashHead; this.stashHead = 0;
      }
      const have = this.synthCount + this.stashEnd; // already out of the kernel
      const want = Math.min(minComplete - have, this.inflight - have);
      const r = Number(sysGetevents(NR.getevents, this.ctx, want, this.depth - this.stashEnd,
        this.stashAddr + this.stashEnd * EVENT_SIZE, null));
      if (r >= 0) { this.stashEnd += r; continue; }
      const errno = errnoNow();
      if (errno !== ERRNO.EINTR) throw new NativeError('io_getevents', errno);
    }
  }

  /** Completions reapable without blocking. */
  ready(): number {
    let n = this.synthCount + this.stashEnd - this.stashHead;
    const g = this.ring;
    if (g) n += (Atomics.load(g, 3) - g[2] + this.ringNr) % this.ringNr;
    return n;
  }

  reap(sink: CqeSink, max = 0x7fffffff): number {
    let n = 0;
    // 1. submit-time failures
    while (this.synthCount > 0 && n < max) {
      const k = this.synthHead << 1;
      this.synthHead = this.synthHead + 1 === this.depth ? 0 : this.synthHead + 1;
      this.synthCount--; this.inflight--; n++;
      sink.onCqe(this.synth[k], this.synth[k + 1]);
    }
    // 2. events already pulled by io_getevents
    n += this.reapStash(sink, max - n);
    if (n >= max) return n;
    // 3. the kernel ring
    const g = this.ring;
    if (g) {
      const nr = this.ringNr;
      let head = g[2];
      const tail = Atomics.load(g, 3);
      try {
        while (head !== tail && n < max) {
          const w = (AIO_RING_HDR >> 2) + (head << 3);
          const ud = get64(g, w), res = g[w + 4] + (g[w + 5] | 0) * 4294967296;
          head = head + 1 === nr ? 0 : head + 1;
          this.inflight--; n++;
          sink.onCqe(ud, res);
        }
      } finally {
        Atomics.store(g, 2, head);
      }
    } else if (this.inflight > 0) {
      this.stashHead = this.stashEnd = 0;
      const r = Number(sysGetevents(NR.getevents, this.ctx, 0, Math.min(max - n, this.depth), this.stashAddr, this.zeroTs));
      if (r < 0 && errnoNow() !== ERRNO.EINTR) throw new NativeError('io_getevents', errnoNow());
      if (r > 0) { this.stashEnd = r; n += this.reapStash(sink, max - n); }
    }
    return n;
  }

  private reapStash(sink: CqeSink, max: number): number {
    const s = this.stash;
    let n = 0;
    while (this.stashHead < this.stashEnd && n < max) {
      const w = this.stashHead++ << 3;
      this.inflight--; n++;
      sink.onCqe(get64(s, w), s[w + 4] + (s[w + 5] | 0) * 4294967296);
    }
    return n;
  }

  /** io_destroy (waits for in-flight ops) and frees the iocb memory. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Detach the views first: use after close then throws RangeError instead of faulting.
    this.iocbs = this.stash = new Uint32Array(0);
    if (this.ring) this.ring = new Uint32Array(0);
    this.pending = this.stashHead = this.stashEnd = this.synthCount = 0;
    this.inflight = this.depth; // prep* now returns false
    check('io_destroy', Number(sysDestroy(NR.destroy, this.ctx)));
    munmap(this.mem, this.memLen);
  }
}
