// File bdev, reactor side: one engine (io_uring / linux-aio / sync) per channel.
// submitIo() only prepares SQEs; poll() flushes them with one submit per reactor round,
// then reaps. Guest buffers go straight into iovecs (zero copy); O_DIRECT is used when
// the request is aligned, the buffered fd otherwise. Short transfers continue for the
// remainder; nothing partial is ever reported as success.
import { BdevChannel, registerChannelFactory } from '../channel.js';
import { BdevIo } from '../bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType } from '../types.js';
import { IovecTable } from '../../native/async_io.js';
import type { CqeSink } from '../../native/async_io.js';
import { koffi } from '../../native/koffi.js';
import { ERRNO } from '../../native/errors.js';
import { eventfdDrain, eventfdSignal, mmap, munmap, raw, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../native/libc.js';
import { TWO32 } from '../../src/memory/guest_memory.js';
import { logger } from '../../src/log.js';
import { createEngine, ENGINE_CODE, FileEngine } from './engine.js';
import { BLKDISCARD, BLKZEROOUT, CELL_LIMIT_BLOCKS, CELL_NUM_BLOCKS, FileChannelData, STATE_ENGINES_OFF } from './file.js';

const log = logger('bdev_file');

/** Slots (I/Os in flight) per channel; also the engine queue depth. */
export const FILE_CHANNEL_DEPTH = 128;
/** iovecs per slot; larger scatter lists go out in several pieces. */
export const IOV_PER_SLOT = 256;
const ZERO_BUF_BYTES = 1 << 20;
const MAX_RETRIES = 8;

// Slot kinds.
const K_RW = 1, K_ZERO = 2, K_FSYNC = 3, K_FALLOC = 4;
// UNMAP / WRITE_ZEROES methods, tried in order until one is supported. Unmapped ranges
// always read back as zeros afterwards, whichever method did it.
const M_PUNCH = 1, M_DISCARD = 2, M_ZERO_RANGE = 3, M_ZEROOUT = 4, M_WRITE = 5;
const UNMAP_METHODS = Uint8Array.of(M_PUNCH, M_DISCARD, M_ZERO_RANGE, M_ZEROOUT, M_WRITE);
const WZ_METHODS = Uint8Array.of(M_ZERO_RANGE, M_PUNCH, M_ZEROOUT, M_WRITE);

const NEG_EINTR = -ERRNO.EINTR, NEG_EAGAIN = -ERRNO.EAGAIN, NEG_EINVAL = -ERRNO.EINVAL;
const NEG_EOPNOTSUPP = -ERRNO.EOPNOTSUPP, NEG_ENOSYS = -ERRNO.ENOSYS, NEG_ENOTTY = -ERRNO.ENOTTY;

export class FileChannel extends BdevChannel implements CqeSink {
  readonly fd: number;
  readonly directFd: number;
  /** O_DIRECT alignment of file offsets / segment lengths, and of buffer addresses (raised if the kernel disagrees). */
  align: number;
  memAlign: number;
  private direct: boolean;
  readonly blockDevice: boolean;
  readonly readonly: boolean;
  readonly engine: FileEngine;
  private readonly cells: Float64Array;
  private readonly engineCodes: Int32Array;
  private readonly reactorIndex: number;
  private readonly efd: number;
  private readonly iov: IovecTable;
  private zeroBuf = 0;

  // Per-slot state (typed arrays: nothing allocated per I/O).
  private readonly slotIo: (BdevIo | null)[];
  private readonly kind: Uint8Array;
  private readonly write: Uint8Array;
  private readonly stage: Uint8Array;
  private readonly retries: Uint8Array;
  private readonly sfd: Int32Array;
  private readonly seg: Int32Array;       // next segment (absolute index into io.segs)
  private readonly segOff: Float64Array;  // bytes of that segment already done
  private readonly pos: Float64Array;     // file offset of the next byte
  private readonly left: Float64Array;    // bytes still to transfer
  private readonly issued: Float64Array;  // bytes in the op in flight
  private readonly freeSlots: Int32Array;
  private nfree: number;

  // I/Os waiting for a slot (FIFO ring, grows if needed).
  private waitq: (BdevIo | null)[] = new Array(64).fill(null);
  private waitHead = 0; private waitLen = 0;
  // Slots whose op the engine refused (queue full) or that completed synchronously.
  private readonly redo: Int32Array; private redoHead = 0; private redoLen = 0;
  private readonly doneSlot: Int32Array; private readonly doneRes: Float64Array;
  private doneHead = 0; private doneLen = 0;

  // Learned per channel: methods the file system or device refuses (index = M_*).
  private readonly unsupported = new Uint8Array(6);
  /** BLKDISCARD/BLKZEROOUT range (u64 start, u64 length as little-endian u32 halves). */
  private readonly ioctlRange = new Uint32Array(4);
  private readonly ioctlBytes = new Uint8Array(this.ioctlRange.buffer);
  /** Reads/writes started on the O_DIRECT fd and on the buffered fd (diagnostics, tests). */
  directIos = 0;
  bufferedIos = 0;
  /** UNMAP/WRITE_ZEROES that fell back to writing zeros (no fallocate mode or ioctl worked). */
  zeroWrites = 0;
  private submitFailed = false;

  constructor(spec: BdevChannelSpec, reactorIndex: number) {
    super(spec, reactorIndex);
    const d = spec.data as FileChannelData;
    this.fd = d.fd;
    this.directFd = d.directFd;
    this.align = d.align;
    this.memAlign = d.memAlign;
    this.direct = d.directFd >= 0;
    this.blockDevice = d.blockDevice;
    this.readonly = d.readonly;
    this.cells = new Float64Array(d.state, 0, 2);
    const depth = FILE_CHANNEL_DEPTH;
    const { engine, fallbacks } = createEngine(d.engine, depth);
    this.engine = engine;
    if (fallbacks.length) {
      log.warn(`bdev '${spec.name}' reactor ${reactorIndex}: using ${engine.name} instead of ${d.engine}: ${fallbacks.join('; ')}`);
    }
    this.reactorIndex = reactorIndex;
    this.engineCodes = new Int32Array(d.state, STATE_ENGINES_OFF);
    Atomics.store(this.engineCodes, reactorIndex, ENGINE_CODE[engine.name]);
    this.efd = engine.eventFd();
    this.iov = new IovecTable(depth * IOV_PER_SLOT);
    this.slotIo = new Array(depth).fill(null);
    this.kind = new Uint8Array(depth); this.write = new Uint8Array(depth);
    this.stage = new Uint8Array(depth); this.retries = new Uint8Array(depth);
    this.sfd = new Int32Array(depth); this.seg = new Int32Array(depth);
    this.segOff = new Float64Array(depth); this.pos = new Float64Array(depth);
    this.left = new Float64Array(depth); this.issued = new Float64Array(depth);
    this.freeSlots = new Int32Array(depth);
    for (let i = 0; i < depth; i++) this.freeSlots[i] = depth - 1 - i;
    this.nfree = depth;
    this.redo = new Int32Array(depth);
    this.doneSlot = new Int32Array(depth); this.doneRes = new Float64Array(depth);
  }

  // ---- submission ------------------------------------------------------------

  protected submitIo(io: BdevIo): void {
    const t = io.type;
    if (t === IoType.RESET) { this.complete(io, IoStatus.SUCCESS); return; }
    if (t !== IoType.READ && t !== IoType.WRITE && t !== IoType.FLUSH && t !== IoType.UNMAP && t !== IoType.WRITE_ZEROES) {
      this.complete(io, IoStatus.UNSUPPORTED);
      return;
    }
    if (this.readonly && t !== IoType.READ && t !== IoType.FLUSH) { this.complete(io, IoStatus.FAILED); return; }
    if (t !== IoType.FLUSH) {
      const end = io.offsetBlocks + io.numBlocks;
      if (end > this.cells[CELL_NUM_BLOCKS]) { this.complete(io, IoStatus.OUT_OF_RANGE); return; }
      // the file shrank under us: fail rather than read nothing or silently re-grow it
      if (end > this.cells[CELL_LIMIT_BLOCKS]) { this.complete(io, IoStatus.FAILED); return; }
      if (io.numBlocks === 0) { this.complete(io, IoStatus.SUCCESS); return; }
      if ((t === IoType.READ || t === IoType.WRITE) && io.bytes !== io.numBlocks * this.blockSize) {
        this.complete(io, IoStatus.FAILED);
        return;
      }
    }
    if (this.nfree === 0) { this.enqueue(io); return; }
    this.start(io, this.freeSlots[--this.nfree]);
  }

  private enqueue(io: BdevIo): void {
    if (this.waitLen === this.waitq.length) {
      const q: (BdevIo | null)[] = new Array(this.waitq.length * 2).fill(null);
      for (let i = 0; i < this.waitLen; i++) q[i] = this.waitq[(this.waitHead + i) % this.waitq.length];
      this.waitq = q;
      this.waitHead = 0;
    }
    this.waitq[(this.waitHead + this.waitLen++) % this.waitq.length] = io;
  }

  private start(io: BdevIo, s: number): void {
    const bs = this.blockSize;
    this.slotIo[s] = io;
    this.retries[s] = 0;
    this.pos[s] = io.offsetBlocks * bs;
    this.left[s] = io.numBlocks * bs;
    this.seg[s] = io.segBase;
    this.segOff[s] = 0;
    switch (io.type) {
      case IoType.READ:
      case IoType.WRITE:
        this.kind[s] = K_RW;
        this.write[s] = io.type === IoType.WRITE ? 1 : 0;
        if (this.directOk(io)) { this.sfd[s] = this.directFd; this.directIos++; } else { this.sfd[s] = this.fd; this.bufferedIos++; }
        break;
      case IoType.FLUSH:
        this.kind[s] = K_FSYNC;
        this.sfd[s] = this.fd;
        break;
      default: // UNMAP, WRITE_ZEROES
        this.kind[s] = K_FALLOC;
        this.write[s] = 1;
        this.sfd[s] = this.fd;
        this.stage[s] = 0;
        this.nextMethod(s);
        return;
    }
    this.issue(s);
  }

  /** Moves an UNMAP/WRITE_ZEROES slot to its next usable method and issues it. */
  private nextMethod(s: number): void {
    const io = this.slotIo[s]!;
    const list = io.type === IoType.UNMAP ? UNMAP_METHODS : WZ_METHODS;
    for (let k = this.stage[s]; k < list.length; k++) {
      const m = list[k];
      if (m !== M_WRITE && this.unsupported[m]) continue;
      if ((m === M_DISCARD || m === M_ZEROOUT) && !this.blockDevice) continue;
      if (m === M_PUNCH && io.type === IoType.WRITE_ZEROES && !io.mayUnmap) continue;
      this.stage[s] = k + 1; // where to continue if this one turns out unsupported
      if (m === M_DISCARD || m === M_ZEROOUT) {
        // block device ioctls: one synchronous syscall per I/O, inherent (no async form; used
        // only where the async fallocate path was refused); the range goes in a preallocated buffer
        const rg = this.ioctlRange;
        rg[0] = this.pos[s] % TWO32; rg[1] = Math.floor(this.pos[s] / TWO32);
        rg[2] = this.left[s] % TWO32; rg[3] = Math.floor(this.left[s] / TWO32);
        const r = raw.ioctlBuf(this.fd, m === M_DISCARD ? BLKDISCARD : BLKZEROOUT, this.ioctlBytes);
        this.deferDone(s, r < 0 ? -koffi.errno() : 0);
        return;
      }
      if (m === M_WRITE) {
        this.kind[s] = K_ZERO;
        this.zeroWrites++;
        const a = this.align;
        this.sfd[s] = this.direct && this.pos[s] % a === 0 && this.blockSize % a === 0 ? this.directFd : this.fd;
      }
      this.issue(s);
      return;
    }
    this.finish(s, IoStatus.FAILED); // not reached: M_WRITE always applies
  }

  private currentMethod(s: number): number {
    const list = this.slotIo[s]!.type === IoType.UNMAP ? UNMAP_METHODS : WZ_METHODS;
    return list[this.stage[s] - 1];
  }

  /** Whether an O_DIRECT transfer is possible: offset, every buffer address and segment length aligned. */
  private directOk(io: BdevIo): boolean {
    const a = this.align, m = this.memAlign;
    if (!this.direct || (io.offsetBlocks * this.blockSize) % a !== 0) return false;
    const s = io.segs, hva = io.mem!.hva, end = io.segBase + io.nseg;
    for (let i = io.segBase; i < end; i++) {
      if ((hva[s.region[i]] + s.off[i]) % m !== 0 || s.len[i] % a !== 0) return false;
    }
    return true;
  }

  /** The kernel refused an O_DIRECT op we thought aligned: demand more alignment from now on. */
  private raiseAlignment(): void {
    const old = `${this.align}/${this.memAlign}`;
    if (this.memAlign < this.align) this.memAlign = this.align;
    else if (this.align < 4096 && this.blockSize % (this.align * 2) === 0) this.memAlign = this.align *= 2;
    else this.direct = false;
    log.warn(`bdev '${this.spec.name}': O_DIRECT refused at alignment ${old}: ` +
      (this.direct ? `now ${this.align}/${this.memAlign}` : 'buffered I/O from now on'));
  }

  /** Prepares the slot's next op on the engine (or runs it synchronously when the engine cannot). */
  private issue(s: number): void {
    let ok: boolean;
    switch (this.kind[s]) {
      case K_RW: {
        const io = this.slotIo[s]!, segs = io.segs, hva = io.mem!.hva, end = io.segBase + io.nseg;
        const base = s * IOV_PER_SLOT, want = this.left[s];
        let i = this.seg[s], o = this.segOff[s], n = 0, bytes = 0;
        while (i < end && n < IOV_PER_SLOT && bytes < want) {
          const avail = segs.len[i] - o;
          if (avail > 0) {
            const take = avail < want - bytes ? avail : want - bytes;
            this.iov.set(base + n, hva[segs.region[i]] + segs.off[i] + o, take);
            n++; bytes += take;
          }
          i++; o = 0;
        }
        if (bytes === 0) { this.finish(s, IoStatus.FAILED); return; } // scatter list shorter than the I/O
        this.issued[s] = bytes;
        const a = this.iov.addrOf(base);
        ok = this.write[s] ? this.engine.prepWritev(this.sfd[s], a, n, this.pos[s], s)
          : this.engine.prepReadv(this.sfd[s], a, n, this.pos[s], s);
        break;
      }
      case K_ZERO: {
        const base = s * IOV_PER_SLOT, zb = this.zeroBuffer();
        let n = 0, bytes = 0;
        const want = this.left[s];
        while (n < IOV_PER_SLOT && bytes < want) {
          const take = Math.min(ZERO_BUF_BYTES, want - bytes);
          this.iov.set(base + n, zb, take);
          n++; bytes += take;
        }
        this.issued[s] = bytes;
        ok = this.engine.prepWritev(this.sfd[s], this.iov.addrOf(base), n, this.pos[s], s);
        break;
      }
      case K_FSYNC:
        ok = this.engine.prepFdatasync(this.sfd[s], s);
        break;
      default: { // K_FALLOC
        const mode = FALLOC_FL_KEEP_SIZE | (this.currentMethod(s) === M_PUNCH ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
        if (this.engine.hasFallocate) {
          ok = this.engine.prepFallocate(this.fd, mode, this.pos[s], this.left[s], s);
        } else {
          // no async fallocate in this engine: one synchronous syscall per I/O, inherent
          const r = raw.fallocate(this.fd, mode, this.pos[s], this.left[s]);
          this.deferDone(s, r < 0 ? -koffi.errno() : 0);
          return;
        }
      }
    }
    if (!ok) this.redo[(this.redoHead + this.redoLen++) % this.redo.length] = s;
  }

  private deferDone(s: number, res: number): void {
    const k = (this.doneHead + this.doneLen++) % this.doneSlot.length;
    this.doneSlot[k] = s; this.doneRes[k] = res;
    // wake a reactor that might go to sleep before its next poll (rare path: fallocate/ioctl
    // fallbacks): once per batch, when the queue becomes non-empty (poll drains and reaps it all)
    if (this.doneLen === 1 && this.efd >= 0) eventfdSignal(this.efd);
  }

  private zeroBuffer(): number {
    if (this.zeroBuf === 0) this.zeroBuf = mmap(ZERO_BUF_BYTES); // anonymous: reads as zeros, never written
    return this.zeroBuf;
  }

  // ---- completion -------------------------------------------------------------

  /** Engine completion: userData is the slot, res bytes or -errno. */
  onCqe(userData: number, res: number): void {
    const s = userData;
    if (this.slotIo[s] === null) return; // cannot happen; never complete twice
    switch (this.kind[s]) {
      case K_RW:
      case K_ZERO: this.rwDone(s, res); return;
      case K_FSYNC:
        if (res >= 0) { this.finish(s, IoStatus.SUCCESS); return; }
        if ((res === NEG_EINVAL || res === NEG_EOPNOTSUPP) && this.engine.name === 'linux-aio') {
          // some file systems have no AIO fdsync: do it here, one syscall per FLUSH (flushes are rare)
          const r = raw.fdatasync(this.fd);
          this.finish(s, r < 0 ? IoStatus.FAILED : IoStatus.SUCCESS);
          return;
        }
        if (this.retry(s, res)) return;
        this.finish(s, IoStatus.FAILED);
        return;
      default: this.fallocDone(s, res);
    }
  }

  private rwDone(s: number, res: number): void {
    if (res < 0) {
      if (res === NEG_EINVAL && this.sfd[s] === this.directFd && this.directFd >= 0) {
        if (this.direct) this.raiseAlignment();
        this.sfd[s] = this.fd; // buffered for this one
        this.issue(s);
        return;
      }
      if (this.retry(s, res)) return;
      this.finish(s, IoStatus.FAILED);
      return;
    }
    if (res === 0) {
      if (!this.write[s]) {
        // end of file inside the bdev: the file was truncated under us
        const lim = Math.floor(this.pos[s] / this.blockSize);
        if (lim < this.cells[CELL_LIMIT_BLOCKS]) this.cells[CELL_LIMIT_BLOCKS] = lim;
      }
      this.finish(s, IoStatus.FAILED);
      return;
    }
    if (res > this.issued[s]) { this.finish(s, IoStatus.FAILED); return; }
    this.pos[s] += res;
    this.left[s] -= res;
    if (this.kind[s] === K_RW) {
      // advance the segment cursor by res bytes
      const io = this.slotIo[s]!, len = io.segs.len;
      let i = this.seg[s], o = this.segOff[s], r = res;
      while (r > 0) {
        const rem = len[i] - o;
        if (r < rem) { o += r; r = 0; } else { r -= rem; i++; o = 0; }
      }
      this.seg[s] = i; this.segOff[s] = o;
    }
    if (this.left[s] <= 0) { this.finish(s, IoStatus.SUCCESS); return; }
    // short transfer or a scatter list longer than one op: continue with the rest
    if (this.sfd[s] === this.directFd && (res % this.align !== 0 || this.segOff[s] % this.align !== 0)) this.sfd[s] = this.fd;
    this.retries[s] = 0;
    this.issue(s);
  }

  private fallocDone(s: number, res: number): void {
    if (res >= 0) { this.finish(s, IoStatus.SUCCESS); return; }
    if (res === NEG_EOPNOTSUPP || res === NEG_ENOSYS || res === NEG_EINVAL || res === NEG_ENOTTY) {
      this.unsupported[this.currentMethod(s)] = 1; // remembered: later I/Os skip it
      this.nextMethod(s);
      return;
    }
    if (this.retry(s, res)) return;
    this.finish(s, IoStatus.FAILED);
  }

  /** Re-issues the same op after a transient error; false when out of retries or not transient. */
  private retry(s: number, res: number): boolean {
    if ((res !== NEG_EINTR && res !== NEG_EAGAIN) || this.retries[s] >= MAX_RETRIES) return false;
    this.retries[s]++;
    this.issue(s);
    return true;
  }

  private finish(s: number, status: number): void {
    const io = this.slotIo[s]!;
    this.slotIo[s] = null;
    this.freeSlots[this.nfree++] = s;
    if (this.waitLen > 0) {
      const next = this.waitq[this.waitHead]!;
      this.waitq[this.waitHead] = null;
      this.waitHead = (this.waitHead + 1) % this.waitq.length;
      this.waitLen--;
      this.start(next, this.freeSlots[--this.nfree]);
    }
    this.complete(io, status);
  }

  // ---- reactor hooks ----------------------------------------------------------

  override poll(): number {
    for (let c = this.redoLen; c > 0; c--) { // ops the engine could not take last round (may refuse again)
      const s = this.redo[this.redoHead];
      this.redoHead = (this.redoHead + 1) % this.redo.length;
      this.redoLen--;
      this.issue(s);
    }
    // one submit for everything prepared since the last round; follow-ups prepared while
    // reaping (remainders, waiting I/Os, new requests from completion callbacks) go next round
    try {
      this.engine.submit();
    } catch (e) { // pollers must not throw: the ops stay queued and go with the next round
      if (!this.submitFailed) log.error(`bdev '${this.spec.name}': ${this.engine.name} submit failed: ${(e as Error).message}`);
      this.submitFailed = true;
    }
    let n = 0, k: number;
    while ((k = this.reapOnce()) > 0) n += k;
    if (n > 0 && this.efd >= 0) {
      // drain the wake-up eventfd only after completions were seen, then look again: a
      // completion posted between the last reap and the drain would otherwise lose its wake-up
      do { eventfdDrain(this.efd); n += (k = this.reapOnce()); } while (k > 0);
    }
    return n;
  }

  /** Engine completions, then ops that ran synchronously (fallocate/ioctl without io_uring). */
  private reapOnce(): number {
    let n = this.engine.reap(this);
    while (this.doneLen > 0) {
      const k = this.doneHead;
      this.doneHead = (k + 1) % this.doneSlot.length;
      this.doneLen--;
      n++;
      this.onCqe(this.doneSlot[k], this.doneRes[k]);
    }
    return n;
  }

  override eventFd(): number { return this.efd; }

  override inflight(): number { return FILE_CHANNEL_DEPTH - this.nfree + this.waitLen; }

  override destroy(): void {
    Atomics.store(this.engineCodes, this.reactorIndex, 0);
    this.engine.close();
    this.iov.free();
    if (this.zeroBuf) { munmap(this.zeroBuf, ZERO_BUF_BYTES); this.zeroBuf = 0; }
  }
}

registerChannelFactory('uring', (spec, r) => new FileChannel(spec, r));
registerChannelFactory('aio', (spec, r) => new FileChannel(spec, r));
