// io_uring engine over raw syscalls (koffi). Rings are mmapped and accessed through
// typed-array views; the hot path (prep*/submit/reap) allocates nothing.
// A ring belongs to the thread that creates it: create and use it in the reactor.
import * as fs from 'node:fs';
import { koffi, libc } from './koffi.js';
import { ERRNO, NativeError, check } from './errors.js';
import { closeQuiet, mmap, munmap, raw, view, MAP_POPULATE, MAP_SHARED, PROT_READ, PROT_WRITE } from './libc.js';
import type { AsyncIoEngine, CqeSink } from './async_io.js';
import { get64, put64 } from './async_io.js';
import * as C from './io_uring_consts.js';

export { IovecTable } from './async_io.js';
export type { AsyncIoEngine, CqeSink } from './async_io.js';

const ERRNO_LAST = (): number => koffi.errno();
const sysSetup = libc.func('syscall', 'long', ['long', 'uint32', 'void *']);
const sysEnter = libc.func('syscall', 'long', ['long', 'int', 'uint32', 'uint32', 'uint32', 'intptr_t', 'size_t']);
const sysRegister = libc.func('syscall', 'long', ['long', 'int', 'uint32', 'void *', 'uint32']);

export interface IoUringOptions {
  /**
   * Kernel SQ polling thread (no syscall per submit while it is awake). Note the
   * kernel may post CQEs before it advances the SQ head, so prep* can briefly
   * return false right after a reap: keep the op and retry after submit().
   */
  sqpoll?: boolean;
  /** SQPOLL idle time before the thread sleeps, ms (default 1000). */
  sqThreadIdleMs?: number;
  /** CQ size (default 2 * entries). */
  cqEntries?: number;
}

const NO_SINK_MAX = 0x7fffffff;

export class IoUring implements AsyncIoEngine {
  readonly name = 'io_uring' as const;
  readonly ringFd: number;
  readonly depth: number;
  readonly cqEntries: number;
  readonly features: number;
  readonly sqpoll: boolean;

  private readonly maps: Array<[number, number]>;
  private sqRing: Uint32Array;   // whole SQ ring as u32 words
  private cqRing: Uint32Array;   // whole CQ ring as u32 words
  private cqRes: Int32Array;     // same memory, signed view for cqe.res
  private sqes: Uint32Array;
  private readonly sqHeadW: number; private readonly sqTailW: number; private readonly sqFlagsW: number;
  private readonly cqHeadW: number; private readonly cqTailW: number; private readonly cqesW: number;
  private readonly sqMask: number; private readonly cqMask: number;
  private sqeTail = 0;       // next SQE slot to fill (local, u32 wrapping)
  private published = 0;     // last tail stored to the ring
  private cqHead = 0;
  private closed = false;

  private constructor(fd: number, p: Uint32Array, sqpoll: boolean) {
    this.ringFd = fd;
    this.sqpoll = sqpoll;
    const sqOff = C.P_SQ_OFF >> 2, cqOff = C.P_CQ_OFF >> 2;
    this.depth = p[C.P_SQ_ENTRIES >> 2];
    this.cqEntries = p[C.P_CQ_ENTRIES >> 2];
    this.features = p[C.P_FEATURES >> 2];
    const sqSize = p[sqOff + C.SQO_ARRAY] + this.depth * 4;
    const cqSize = p[cqOff + C.CQO_CQES] + this.cqEntries * C.CQE_SIZE;
    const single = (this.features & C.IORING_FEAT_SINGLE_MMAP) !== 0;
    const prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED | MAP_POPULATE;
    this.maps = [];
    const map = (len: number, off: number) => {
      const a = mmap(len, fd, off, prot, flags);
      this.maps.push([a, len]);
      return a;
    };
    try {
      const sqLen = single ? Math.max(sqSize, cqSize) : sqSize;
      const sqAddr = map(sqLen, C.IORING_OFF_SQ_RING);
      const cqAddr = single ? sqAddr : map(cqSize, C.IORING_OFF_CQ_RING);
      const sqesAddr = map(this.depth * C.SQE_SIZE, C.IORING_OFF_SQES);
      this.sqRing = new Uint32Array(view(sqAddr, sqLen));
      const cqBuf = view(cqAddr, single ? sqLen : cqSize);
      this.cqRing = new Uint32Array(cqBuf);
      this.cqRes = new Int32Array(cqBuf);
      this.sqes = new Uint32Array(view(sqesAddr, this.depth * C.SQE_SIZE));
    } catch (e) {
      this.unmapAll();
      throw e;
    }
    this.sqHeadW = p[sqOff + C.SQO_HEAD] >> 2;
    this.sqTailW = p[sqOff + C.SQO_TAIL] >> 2;
    this.sqFlagsW = p[sqOff + C.SQO_FLAGS] >> 2;
    this.sqMask = this.sqRing[p[sqOff + C.SQO_RING_MASK] >> 2];
    this.cqHeadW = p[cqOff + C.CQO_HEAD] >> 2;
    this.cqTailW = p[cqOff + C.CQO_TAIL] >> 2;
    this.cqesW = p[cqOff + C.CQO_CQES] >> 2;
    this.cqMask = this.cqRing[p[cqOff + C.CQO_RING_MASK] >> 2];
    // Identity SQ index array: slot i always refers to SQE i.
    const arrW = p[sqOff + C.SQO_ARRAY] >> 2;
    for (let i = 0; i < this.depth; i++) this.sqRing[arrW + i] = i;
    this.sqeTail = this.published = Atomics.load(this.sqRing, this.sqTailW);
    this.cqHead = Atomics.load(this.cqRing, this.cqHeadW);
  }

  /** Creates a ring with `entries` SQEs (rounded up to a power of two by the kernel). */
  static create(entries: number, opts: IoUringOptions = {}): IoUring {
    const params = new Uint32Array(C.PARAMS_SIZE / 4);
    const setup = (extra: number): number => {
      params.fill(0);
      let flags = extra;
      if (opts.sqpoll) {
        flags |= C.IORING_SETUP_SQPOLL;
        params[C.P_SQ_THREAD_IDLE >> 2] = opts.sqThreadIdleMs ?? 1000;
      }
      if (opts.cqEntries) {
        flags |= C.IORING_SETUP_CQSIZE;
        params[C.P_CQ_ENTRIES >> 2] = opts.cqEntries;
      }
      params[C.P_FLAGS >> 2] = flags;
      return Number(sysSetup(C.SYS_io_uring_setup, entries, params));
    };
    // SUBMIT_ALL (5.18+): a failing SQE does not stop the rest of the batch.
    let fd = setup(C.IORING_SETUP_SUBMIT_ALL);
    if (fd < 0 && ERRNO_LAST() === ERRNO.EINVAL) fd = setup(0);
    check('io_uring_setup', fd, `entries=${entries}${opts.sqpoll ? ' sqpoll' : ''}`);
    try {
      return new IoUring(fd, params, !!opts.sqpoll);
    } catch (e) {
      closeQuiet(fd);
      throw e;
    }
  }

  /** Registers fixed files; ops with fixedFile=true then take an index into `fds`. */
  registerFiles(fds: number[]): void {
    const arr = Int32Array.from(fds);
    this.register(C.IORING_REGISTER_FILES, arr, arr.length, 'IORING_REGISTER_FILES');
  }

  unregisterFiles(): void { this.register(C.IORING_UNREGISTER_FILES, null, 0, 'IORING_UNREGISTER_FILES'); }

  /** The kernel signals efd for every posted CQE. */
  registerEventfd(efd: number): void {
    this.register(C.IORING_REGISTER_EVENTFD, Int32Array.of(efd), 1, 'IORING_REGISTER_EVENTFD');
  }

  unregisterEventfd(): void { this.register(C.IORING_UNREGISTER_EVENTFD, null, 0, 'IORING_UNREGISTER_EVENTFD'); }

  private register(op: number, arg: Int32Array | null, n: number, what: string): void {
    for (;;) {
      const r = Number(sysRegister(C.SYS_io_uring_register, this.ringFd, op, arg, n));
      if (r >= 0) return;
      const errno = ERRNO_LAST();
      if (errno !== ERRNO.EINTR) throw new NativeError(`io_uring_register(${what})`, errno);
    }
  }

  // ---- hot path -------------------------------------------------------------

  /** Number of SQEs prepared but not yet submitted. */
  get pending(): number { return (this.sqeTail - this.published) >>> 0; }

  /** Free SQ slots (prep* fails when 0). */
  get sqSpace(): number {
    return this.depth - ((this.sqeTail - Atomics.load(this.sqRing, this.sqHeadW)) >>> 0);
  }

  private prep(op: number, fd: number, addr: number, len: number, off: number, opFlags: number,
    userData: number, fixed: boolean | undefined): boolean {
    const tail = this.sqeTail;
    if (((tail - Atomics.load(this.sqRing, this.sqHeadW)) >>> 0) >= this.depth) return false;
    const s = this.sqes, w = (tail & this.sqMask) << 4;
    s[w] = op | (fixed ? C.IOSQE_FIXED_FILE << 8 : 0); // opcode, flags, ioprio=0
    s[w + 1] = fd;
    put64(s, w + 2, off);
    put64(s, w + 4, addr);
    s[w + 6] = len;
    s[w + 7] = opFlags;
    put64(s, w + 8, userData);
    s[w + 10] = 0; s[w + 11] = 0; s[w + 12] = 0; s[w + 13] = 0; s[w + 14] = 0; s[w + 15] = 0;
    this.sqeTail = (tail + 1) >>> 0;
    return true;
  }

  prepReadv(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number, fixedFile?: boolean): boolean {
    return this.prep(C.IORING_OP_READV, fd, iovAddr, iovCnt, offset, 0, userData, fixedFile);
  }
  prepWritev(fd: number, iovAddr: number, iovCnt: number, offset: number, userData: number, fixedFile?: boolean): boolean {
    return this.prep(C.IORING_OP_WRITEV, fd, iovAddr, iovCnt, offset, 0, userData, fixedFile);
  }
  prepRead(fd: number, bufAddr: number, len: number, offset: number, userData: number, fixedFile?: boolean): boolean {
    return this.prep(C.IORING_OP_READ, fd, bufAddr, len, offset, 0, userData, fixedFile);
  }
  prepWrite(fd: number, bufAddr: number, len: number, offset: number, userData: number, fixedFile?: boolean): boolean {
    return this.prep(C.IORING_OP_WRITE, fd, bufAddr, len, offset, 0, userData, fixedFile);
  }
  prepFsync(fd: number, datasync: boolean, userData: number, fixedFile?: boolean): boolean {
    return this.prep(C.IORING_OP_FSYNC, fd, 0, 0, 0, datasync ? C.IORING_FSYNC_DATASYNC : 0, userData, fixedFile);
  }
  /** fallocate(fd, mode, offset, len): sqe.addr carries len, sqe.len carries mode. */
  prepFallocate(fd: number, mode: number, offset: number, len: number, userData: number, fixedFile?: boolean): boolean {
    return this.prep(C.IORING_OP_FALLOCATE, fd, len, mode, offset, 0, userData, fixedFile);
  }
  prepNop(userData: number): boolean { return this.prep(C.IORING_OP_NOP, -1, 0, 0, 0, 0, userData, false); }

  /** One io_uring_enter for everything prepared since the last submit (none if nothing is pending). */
  submit(): number { return this.enter(0); }

  /** Submits pending SQEs and waits until at least minComplete CQEs are ready. */
  submitAndWait(minComplete: number): number { return this.enter(minComplete); }

  private enter(minComplete: number): number {
    const n = (this.sqeTail - this.published) >>> 0;
    if (n !== 0) {
      // Full barrier (xchg): SQEs visible before the tail, and the tail before the sq_flags load.
      Atomics.exchange(this.sqRing, this.sqTailW, this.sqeTail);
      this.published = this.sqeTail;
    }
    // Unconsumed SQEs, including any left in the ring by an earlier EBUSY/EAGAIN enter.
    const unconsumed = (this.sqeTail - Atomics.load(this.sqRing, this.sqHeadW)) >>> 0;
    let flags = 0, toSubmit = unconsumed;
    if (this.sqpoll) { // the SQ thread consumes the ring; wake it if it went to sleep
      toSubmit = 0;
      if (unconsumed !== 0 && (Atomics.load(this.sqRing, this.sqFlagsW) & C.IORING_SQ_NEED_WAKEUP)) {
        flags |= C.IORING_ENTER_SQ_WAKEUP;
      }
    }
    if (minComplete > 0) {
      if (this.cqReady() >= minComplete) minComplete = 0;
      else flags |= C.IORING_ENTER_GETEVENTS;
    }
    if (toSubmit === 0 && flags === 0) return n;
    for (;;) {
      const r = Number(sysEnter(C.SYS_io_uring_enter, this.ringFd, toSubmit, minComplete, flags, 0, 0));
      if (r >= 0) return this.sqpoll ? n : r;
      const errno = ERRNO_LAST();
      if (errno === ERRNO.EINTR) continue; // nothing consumed
      // CQ backlog / no memory: SQEs stay in the ring for the next enter; caller should reap.
      if (errno === ERRNO.EBUSY || errno === ERRNO.EAGAIN) return 0;
      throw new NativeError('io_uring_enter', errno);
    }
  }

  /** CQEs ready to reap. */
  cqReady(): number { return (Atomics.load(this.cqRing, this.cqTailW) - this.cqHead) >>> 0; }

  /** Calls sink.onCqe(userData, res) for up to max ready CQEs; returns the count. */
  reap(sink: CqeSink, max: number = NO_SINK_MAX): number {
    let head = this.cqHead;
    let tail = Atomics.load(this.cqRing, this.cqTailW); // acquire
    if (head === tail && (Atomics.load(this.sqRing, this.sqFlagsW) & C.IORING_SQ_CQ_OVERFLOW)) {
      this.flushOverflow();
      tail = Atomics.load(this.cqRing, this.cqTailW);
    }
    const q = this.cqRing, res = this.cqRes, mask = this.cqMask, base = this.cqesW;
    let n = 0;
    try {
      while (head !== tail && n < max) {
        const w = base + ((head & mask) << 2);
        const ud = get64(q, w), r = res[w + 2];
        head = (head + 1) >>> 0;
        n++;
        sink.onCqe(ud, r);
      }
    } finally {
      this.cqHead = head;
      Atomics.store(q, this.cqHeadW, head); // release the slots to the kernel
    }
    return n;
  }

  private flushOverflow(): void {
    const r = Number(sysEnter(C.SYS_io_uring_enter, this.ringFd, 0, 0, C.IORING_ENTER_GETEVENTS, 0, 0));
    if (r < 0 && ERRNO_LAST() !== ERRNO.EINTR) throw new NativeError('io_uring_enter(GETEVENTS)', ERRNO_LAST());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Detach the views first: use after close then throws RangeError instead of faulting.
    this.sqRing = this.cqRing = this.sqes = new Uint32Array(0);
    this.cqRes = new Int32Array(0);
    this.unmapAll();
    check('close(io_uring)', Number(raw.close(this.ringFd)));
  }

  private unmapAll(): void {
    for (const [a, len] of this.maps) munmap(a, len);
    this.maps.length = 0;
  }
}

let availability: { ok: boolean; reason?: string } | undefined;

/** Whether io_uring can be used here (probed once and cached). */
export function ioUringAvailable(): { ok: boolean; reason?: string } {
  if (availability) return availability;
  try {
    IoUring.create(4).close();
    availability = { ok: true };
  } catch (e) {
    let reason = e instanceof Error ? e.message : String(e);
    const disabled = readSysctl('/proc/sys/kernel/io_uring_disabled');
    if (disabled && disabled !== '0') reason += ` (kernel.io_uring_disabled=${disabled})`;
    availability = { ok: false, reason };
  }
  return availability;
}

function readSysctl(path: string): string | undefined {
  try { return fs.readFileSync(path, 'utf8').trim(); } catch { return undefined; }
}