// rbd bdev, reactor side: librbd aio on this reactor's own image handle.
//
// Per I/O: two FFI calls to submit (rbd_aio_create_completion + the aio call; librbd has no
// batched submit) and three to reap (rbd_aio_get_arg, rbd_aio_get_return_value,
// rbd_aio_release), plus one rbd_poll_io_events per poll round while I/O is in flight.
// Completions are created without a callback: librbd queues them on the image and signals
// the image's eventfd, which wakes a sleeping reactor; no librbd thread ever enters
// JavaScript. Slots (the I/O, its iovec array) are preallocated and grow only past the
// highest number of I/Os ever in flight; guest buffers go straight into the iovecs.
import { BdevChannel, registerChannelFactory } from '../channel.js';
import { BdevIo } from '../bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType, ioTypeNames } from '../types.js';
import { IovecTable } from '../../native/async_io.js';
import { ceph, cephErr, NativeCells, Rbd } from '../../native/rbd.js';
import { eventfdDrain } from '../../native/libc.js';
import { logger } from '../../src/log.js';
import type { RbdChannelData } from './rbd.js';

const log = logger('bdev_rbd');

const INITIAL_SLOTS = 128;
const INITIAL_IOVS = 64;
/** Completions reaped per rbd_poll_io_events call. */
const POLL_BATCH = 64;
/** At most one error line per channel per this many ms (a dead cluster fails every I/O). */
const LOG_EVERY_MS = 1000;

export class RbdChannel extends BdevChannel {
  private readonly image: number;
  private readonly efd: number;
  private readonly readOnly: boolean;
  private readonly f: Rbd;
  private readonly out = new NativeCells(1);
  private readonly comps = new NativeCells(POLL_BATCH);
  private ios: (BdevIo | null)[] = [];
  private iovs: IovecTable[] = [];
  private free = new Int32Array(0);
  private nfree = 0;
  private inFlight = 0;
  private lastLog = -Infinity;
  private quietErrors = 0;

  constructor(spec: BdevChannelSpec, reactorIndex: number) {
    super(spec, reactorIndex);
    const d = spec.data as RbdChannelData;
    if (reactorIndex >= d.images.length) {
      throw new Error(`rbd bdev '${spec.name}' has no image handle for reactor ${reactorIndex} (opened for ${d.images.length})`);
    }
    this.image = d.images[reactorIndex];
    this.efd = d.efds[reactorIndex];
    this.readOnly = d.readOnly;
    this.f = ceph().rbd;
    this.grow(INITIAL_SLOTS);
  }

  /** Doubles the slots (only when more I/Os are in flight than ever before). */
  private grow(n: number): void {
    const old = this.ios.length;
    const free = new Int32Array(n);
    free.set(this.free.subarray(0, this.nfree));
    this.free = free;
    for (let i = old; i < n; i++) {
      this.ios.push(null);
      this.iovs.push(new IovecTable(INITIAL_IOVS));
    }
    for (let i = n - 1; i >= old; i--) this.free[this.nfree++] = i;
  }

  protected submitIo(io: BdevIo): void {
    const t = io.type;
    if (t === IoType.RESET) { this.complete(io, IoStatus.SUCCESS); return; }
    if (t !== IoType.READ && t !== IoType.WRITE && t !== IoType.FLUSH && t !== IoType.UNMAP && t !== IoType.WRITE_ZEROES) {
      this.complete(io, IoStatus.UNSUPPORTED);
      return;
    }
    if (this.readOnly && t !== IoType.READ && t !== IoType.FLUSH) { this.complete(io, IoStatus.FAILED); return; }
    if (t !== IoType.FLUSH && io.numBlocks === 0) { this.complete(io, IoStatus.SUCCESS); return; }
    const bs = this.blockSize;
    if ((t === IoType.READ || t === IoType.WRITE) && (io.bytes !== io.numBlocks * bs || io.mem === null)) {
      this.complete(io, IoStatus.FAILED);
      return;
    }
    if (this.nfree === 0) this.grow(this.ios.length * 2);
    const slot = this.free[--this.nfree];
    const f = this.f;
    let rc = f.aioCreateCompletion(slot, 0, this.out.base) as number;
    if (rc < 0) { this.fail(slot, io, rc, 'rbd_aio_create_completion'); return; }
    const comp = this.out.get(0);
    const off = io.offsetBlocks * bs, len = io.numBlocks * bs;
    switch (t) {
      case IoType.READ:
      case IoType.WRITE: {
        const n = io.nseg;
        let iov = this.iovs[slot];
        if (n > iov.capacity) {
          iov.free();
          iov = this.iovs[slot] = new IovecTable(1 << Math.ceil(Math.log2(n)));
        }
        const segs = io.segs, hva = io.mem!.hva, b = io.segBase;
        for (let i = 0; i < n; i++) iov.set(i, hva[segs.region[b + i]] + segs.off[b + i], segs.len[b + i]);
        rc = (t === IoType.READ ? f.aioReadv : f.aioWritev)(this.image, iov.base, n, off, comp) as number;
        break;
      }
      case IoType.UNMAP: rc = f.aioDiscard(this.image, off, len, comp) as number; break;
      case IoType.WRITE_ZEROES: rc = f.aioWriteZeroes(this.image, off, len, comp, 0, 0) as number; break;
      default: rc = f.aioFlush(this.image, comp) as number; break;
    }
    if (rc < 0) { f.aioRelease(comp); this.fail(slot, io, rc, 'rbd_aio submit'); return; }
    this.ios[slot] = io;
    this.inFlight++;
  }

  private fail(slot: number, io: BdevIo, rc: number, what: string): void {
    this.free[this.nfree++] = slot;
    this.logError(what, io, rc);
    this.complete(io, IoStatus.FAILED);
  }

  private logError(what: string, io: BdevIo, rc: number): void {
    const now = performance.now();
    if (now - this.lastLog < LOG_EVERY_MS) { this.quietErrors++; return; }
    const more = this.quietErrors > 0 ? ` (and ${this.quietErrors} more errors since the last message)` : '';
    this.lastLog = now; this.quietErrors = 0;
    log.error(`bdev '${this.spec.name}': ${what} failed for a ${ioTypeNames[io.type] ?? io.type} of ${io.numBlocks} blocks at block ${io.offsetBlocks}: ` +
      `${cephErr(rc)}${more}${rc === -110 ? ': the cluster did not answer within rados_osd_op_timeout' : ''}`);
  }

  override poll(): number {
    if (this.inFlight === 0) return 0;
    const f = this.f, comps = this.comps;
    let total = 0;
    for (;;) {
      const n = f.pollIoEvents(this.image, comps.base, POLL_BATCH) as number;
      for (let i = 0; i < n; i++) {
        const c = comps.get(i);
        const slot = f.aioGetArg(c) as number;
        const rv = f.aioGetReturnValue(c) as number;
        f.aioRelease(c);
        this.finish(slot, rv);
      }
      total += n > 0 ? n : 0;
      if (n < POLL_BATCH) return total;
    }
  }

  private finish(slot: number, rv: number): void {
    const io = this.ios[slot];
    if (slot < 0 || slot >= this.ios.length || io === null) {
      log.error(`bdev '${this.spec.name}': librbd completed an unknown I/O slot ${slot}`);
      return;
    }
    this.ios[slot] = null;
    this.free[this.nfree++] = slot;
    this.inFlight--;
    let status: number = IoStatus.SUCCESS;
    if (rv < 0) { status = IoStatus.FAILED; this.logError('librbd', io, rv); }
    else if (io.type === IoType.READ && rv !== io.bytes) { status = IoStatus.FAILED; this.logError(`short read (${rv} of ${io.bytes} bytes)`, io, -5); }
    this.complete(io, status);
  }

  override eventFd(): number { return this.efd; }
  override inflight(): number { return this.inFlight; }

  /** Clears the eventfd before a sleep; a signal means completions may be queued: poll again first. */
  override canSleep(): boolean {
    return !eventfdDrain(this.efd) || this.inFlight === 0;
  }

  override destroy(): void {
    if (this.inFlight > 0) {
      // librbd still owns those completions; the handle's rbd_close waits for them
      log.warn(`bdev '${this.spec.name}': channel closed with ${this.inFlight} I/O(s) still at the cluster`);
    }
    this.out.free();
    this.comps.free();
    for (const iov of this.iovs) iov.free();
  }
}

registerChannelFactory('rbd', (spec, r) => new RbdChannel(spec, r));
