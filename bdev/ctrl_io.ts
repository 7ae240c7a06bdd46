// Control-plane bdev I/O: read, write, flush and write-zeroes on any bdev as Promises on the
// main thread (examining superblocks, writing metadata). Each request is a control message to
// reactor 0 (see ctrl_io_reactor.ts), which keeps one channel open per bdev and submits a
// BdevIo whose only segment points into a staging buffer that both threads view (anonymous
// shared mapping, page aligned so O_DIRECT file bdevs take it): no data crosses threads by copy.
// Offsets and lengths must be whole blocks. Not for the data path: one message per request.
import type { Bdev } from './bdev.js';
import type { BdevRegistry } from './registry.js';
import { IoStatus, IoType } from './types.js';
import { mmap, munmap, view, MAP_ANONYMOUS, MAP_SHARED, PROT_READ, PROT_WRITE } from '../native/libc.js';

/** What CtrlIo needs from the reactor pool. */
export interface ReactorCaller {
  readonly count: number;
  call<T = unknown>(index: number, op: string, args: unknown): Promise<T>;
}

export class CtrlIoError extends Error {
  constructor(message: string, readonly status: number) { super(message); this.name = 'CtrlIoError'; }
}

const STATUS_NAMES: Record<number, string> = { 1: 'I/O error', 2: 'not supported by the bdev', 3: 'out of memory',
  4: 'aborted', 5: 'out of range' };
const TYPE_NAMES: Record<number, string> = { 1: 'read', 2: 'write', 3: 'flush', 5: 'write_zeroes' };
const PAGE = 4096;
/** Largest single request; bigger reads and writes are issued in pieces of this size. */
const MAX_REQUEST = 8 << 20;

/** A page-aligned buffer both the main thread and the reactors can reach by address. */
class Staging {
  readonly hva: number;
  readonly size: number;
  readonly u8: Uint8Array;
  constructor(bytes: number) {
    this.size = Math.max(PAGE, Math.ceil(bytes / PAGE) * PAGE);
    this.hva = mmap(this.size, -1, 0, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
    this.u8 = new Uint8Array(view(this.hva, this.size));
  }
  free(): void { munmap(this.hva, this.size); }
}

export class CtrlIo {
  private pool: ReactorCaller | null = null;
  /** Bdevs reactor 0 has a channel open to (closed by release or when the bdev is deleted). */
  private readonly open = new Set<Bdev>();

  /** Connects the service to the reactors; `registry` lets it close channels of deleted bdevs. */
  attach(pool: ReactorCaller, registry?: BdevRegistry): void {
    this.pool = pool;
    registry?.onRemove((b) => this.release(b));
  }

  get attached(): boolean { return this.pool !== null; }

  async read(bdev: Bdev, offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    for (let done = 0; done < length;) {
      const n = Math.min(MAX_REQUEST, length - done);
      const s = new Staging(n);
      try {
        await this.submit(bdev, IoType.READ, offset + done, n, s);
        out.set(s.u8.subarray(0, n), done);
      } finally { s.free(); }
      done += n;
    }
    return out;
  }

  async write(bdev: Bdev, offset: number, data: Uint8Array): Promise<void> {
    for (let done = 0; done < data.length;) {
      const n = Math.min(MAX_REQUEST, data.length - done);
      const s = new Staging(n);
      try {
        s.u8.set(data.subarray(done, done + n));
        await this.submit(bdev, IoType.WRITE, offset + done, n, s);
      } finally { s.free(); }
      done += n;
    }
  }

  /** Makes every completed write durable (FLUSH; a bdev without flush has nothing volatile). */
  async flush(bdev: Bdev): Promise<void> {
    if (!bdev.ioTypes.has('flush')) return;
    await this.submit(bdev, IoType.FLUSH, 0, 0, null);
  }

  /** Zeroes a range: WRITE_ZEROES where the bdev has it, else writes of zeroed buffers. */
  async writeZeroes(bdev: Bdev, offset: number, length: number): Promise<void> {
    if (bdev.ioTypes.has('write_zeroes')) {
      this.check(bdev, offset, length);
      await this.submit(bdev, IoType.WRITE_ZEROES, offset, length, null);
      return;
    }
    for (let done = 0; done < length;) {
      const n = Math.min(MAX_REQUEST, length - done);
      const s = new Staging(n);
      try { await this.submit(bdev, IoType.WRITE, offset + done, n, s); } finally { s.free(); }
      done += n;
    }
  }

  /** Closes reactor 0's channel to the bdev (before the bdev goes away). */
  async release(bdev: Bdev): Promise<void> {
    if (!this.open.delete(bdev) || !this.pool) return;
    await this.pool.call(0, 'ctrlio.close', { name: bdev.name }).catch(() => { /* reactor gone: nothing open */ });
  }

  /** Runs `op` on every reactor (e.g. to update the channels of a bdev); resolves with their results. */
  callAll<T = unknown>(op: string, args: unknown): Promise<T[]> {
    const pool = this.need();
    return Promise.all(Array.from({ length: pool.count }, (_, i) => pool.call<T>(i, op, args)));
  }

  private need(): ReactorCaller {
    if (!this.pool) throw new Error('control-plane bdev I/O is not available: no reactors in this process');
    return this.pool;
  }

  private check(bdev: Bdev, offset: number, length: number): void {
    const bs = bdev.blockSize;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset % bs !== 0 || length % bs !== 0) {
      throw new CtrlIoError(`bdev '${bdev.name}': offset ${offset} and length ${length} must be whole ${bs}-byte blocks`, IoStatus.FAILED);
    }
    if (offset + length > bdev.numBlocks * bs) {
      throw new CtrlIoError(`bdev '${bdev.name}': ${length} bytes at ${offset} end past its ${bdev.numBlocks * bs} bytes`,
        IoStatus.OUT_OF_RANGE);
    }
  }

  private async submit(bdev: Bdev, type: number, offset: number, length: number, s: Staging | null): Promise<void> {
    const pool = this.need();
    if (type !== IoType.FLUSH) this.check(bdev, offset, length);
    this.open.add(bdev);
    const bs = bdev.blockSize;
    const status = await pool.call<number>(0, 'ctrlio.io', {
      bdev: bdev.channelSpec(), type, offsetBlocks: offset / bs, numBlocks: length / bs,
      hva: s ? s.hva : 0, size: s ? s.size : 0, bytes: s ? length : 0,
    });
    if (status !== IoStatus.SUCCESS) {
      throw new CtrlIoError(`${TYPE_NAMES[type]} of ${length} bytes at offset ${offset} on bdev '${bdev.name}' failed: ` +
        `${STATUS_NAMES[status] ?? `status ${status}`}`, status);
    }
  }
}

/** The process's service (attached to the reactors by the daemon at start). */
export const ctrlIo = new CtrlIo();
