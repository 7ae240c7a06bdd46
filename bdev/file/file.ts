// File bdev, control side: serves a regular file or a block device (SPDK's bdev_uring
// and bdev_aio). Opens and validates the backing file, detects its size and block size,
// probes O_DIRECT, picks the I/O engine, and shares a size cell with the reactors so a
// rescan (or a truncation noticed by the size watcher) reaches every channel at once.
import * as fs from 'node:fs';
import { Bdev, ConfigCall } from '../bdev.js';
import { BdevError } from '../registry.js';
import { checkGeometry, checkUuid } from '../validate.js';
import { MAX_REACTORS } from '../stats.js';
import { IoTypeName } from '../types.js';
import { koffi, libc } from '../../native/koffi.js';
import { errnoMessage, errnoName, ERRNO } from '../../native/errors.js';
import { closeQuiet, fdatasync, mmap, munmap, raw, O_CLOEXEC, O_DIRECT, O_RDONLY, O_RDWR } from '../../native/libc.js';
import { logger } from '../../src/log.js';
import { chooseEngine, ENGINE_BY_CODE, EngineName } from './engine.js';

const log = logger('bdev_file');

// <linux/fs.h> block device ioctls.
export const BLKSSZGET = 0x1268, BLKDISCARD = 0x1277, BLKZEROOUT = 0x127f, BLKGETSIZE64 = 0x80081272;

/** Shared state layout (one SharedArrayBuffer per bdev). */
export const CELL_NUM_BLOCKS = 0;   // Float64: bdev size in blocks (rescan updates it)
export const CELL_LIMIT_BLOCKS = 1; // Float64: blocks the file really backs now (≤ num blocks)
export const STATE_ENGINES_OFF = 16; // Int32[MAX_REACTORS]: engine code each reactor's channel got
export const STATE_BYTES = STATE_ENGINES_OFF + 4 * MAX_REACTORS;

export type FileModule = 'uring' | 'aio';

export interface FileBdevParams {
  module: FileModule;
  name: string;
  filename: string;
  /** 0 / undefined: detect (block devices: logical block size; files: O_DIRECT alignment or 512). */
  block_size?: number;
  uuid?: string;
  /** bdev_aio only: open read-only. */
  readonly?: boolean;
  /** bdev_aio only: offer UNMAP and WRITE_ZEROES (fallocate); bdev_uring always does. */
  fallocate?: boolean;
  /** Caps the engine choice (tests); default from VHOSTD_FILE_ENGINE, else io_uring. */
  engine?: EngineName;
  /** false: never O_DIRECT (tests; not an RPC parameter). */
  direct?: boolean;
}

/** A create/rescan failure with the errno behind it (the RPC layer returns -errno like SPDK). */
export class FileBdevError extends BdevError {
  constructor(message: string, readonly errno: number) {
    super('invalid', message);
  }
}

/** Data a reactor channel needs (structured-clone safe). */
export interface FileChannelData {
  [k: string]: unknown;
  fd: number;
  directFd: number;
  /** O_DIRECT alignment of file offsets and total lengths. */
  align: number;
  /** O_DIRECT alignment of buffer addresses and segment lengths. */
  memAlign: number;
  blockDevice: boolean;
  readonly: boolean;
  engine: EngineName;
  state: SharedArrayBuffer;
}

/** Files opened for writing by a file bdev: device:inode → bdev name. */
const writers = new Map<string, string>();
/** Bdevs on regular files whose size the watcher checks. */
const watched = new Set<FileBdev>();
let watchTimer: NodeJS.Timeout | null = null;
export const WATCH_INTERVAL_MS = 1000;

function fail(what: string, filename: string, errno: number, hint = ''): never {
  throw new FileBdevError(`${what} '${filename}': ${errnoMessage(errno)} (${errnoName(errno)})${hint}`, errno);
}

function openHint(errno: number, readonly: boolean, module: FileModule): string {
  if (errno === ERRNO.EACCES || errno === ERRNO.EPERM) {
    return readonly ? ': vhostd needs read access' : `: vhostd needs read and write access${module === 'aio' ? ' (or pass readonly: true)' : ''}`;
  }
  if (errno === ERRNO.EROFS) return module === 'aio' ? ': the file system is read-only, pass readonly: true' : ': the file system is read-only';
  if (errno === ERRNO.ENOENT) return ': check the path (it is resolved relative to the daemon\'s working directory)';
  return '';
}

/** BLKGETSIZE64 / BLKSSZGET. */
function blockDeviceGeometry(fd: number, filename: string): { bytes: number; lbs: number } {
  const b = new Uint8Array(8);
  if (raw.ioctlBuf(fd, BLKGETSIZE64, b) < 0) fail('cannot get the size (BLKGETSIZE64) of', filename, koffi.errno());
  const bytes = Number(new DataView(b.buffer).getBigUint64(0, true));
  const s = new Uint8Array(4);
  if (raw.ioctlBuf(fd, BLKSSZGET, s) < 0) fail('cannot get the logical block size (BLKSSZGET) of', filename, koffi.errno());
  return { bytes, lbs: new DataView(s.buffer).getUint32(0, true) };
}

/** Current size in bytes of an open regular file or block device. */
export function backingSize(fd: number, blockDevice: boolean, filename: string): number {
  if (blockDevice) return blockDeviceGeometry(fd, filename).bytes;
  return fs.fstatSync(fd).size;
}

const sysStatx = libc.func('statx', 'int', ['int', 'str', 'int', 'uint32', 'void *']);
const AT_EMPTY_PATH = 0x1000, STATX_DIOALIGN = 0x2000;

interface DioAlign { mem: number; off: number; source: string }

/**
 * O_DIRECT alignment of an open file: statx(STATX_DIOALIGN) where the file system reports
 * it (Linux 6.1+), else the logical block size of a block device, else a probe.
 * Returns a string (the reason) when the file cannot do O_DIRECT.
 */
function directAlignment(dfd: number, blockDevice: boolean, lbs: number, bytes: number): DioAlign | string {
  const b = new Uint8Array(256);
  if (sysStatx(dfd, '', AT_EMPTY_PATH, STATX_DIOALIGN, b) === 0) {
    const dv = new DataView(b.buffer);
    if (dv.getUint32(0, true) & STATX_DIOALIGN) {
      const mem = dv.getUint32(0x98, true), off = dv.getUint32(0x9c, true);
      if (off === 0) return 'the file system does not support O_DIRECT for this file (statx reports no DIO alignment)';
      return { mem: Math.max(mem, 1), off, source: 'statx' };
    }
  }
  if (blockDevice) return { mem: lbs, off: lbs, source: 'BLKSSZGET' };
  const a = probeDirectAlign(dfd, bytes);
  return a ? { mem: a, off: a, source: 'probe' } : 'O_DIRECT reads fail at every alignment from 512 to 65536 bytes';
}

/**
 * Smallest offset/length alignment an O_DIRECT read accepts (probed with a page-aligned
 * buffer at offset 0), or 0 if none up to 64 KiB works. A hole may accept less than the
 * device needs: channels raise the alignment if the kernel later refuses an I/O.
 */
function probeDirectAlign(fd: number, fileBytes: number): number {
  const max = 65536;
  const buf = mmap(max);
  try {
    for (let a = 512; a <= max && a <= fileBytes; a *= 2) {
      const r = Number(raw.preadAddr(fd, buf, a, 0));
      if (r >= 0) return a;
      if (koffi.errno() !== ERRNO.EINVAL) return 0;
    }
    return 0;
  } finally {
    munmap(buf, max);
  }
}

interface Backing {
  fd: number;
  directFd: number;
  /** O_DIRECT alignment of file offsets/lengths and of buffer addresses/lengths (0: not direct). */
  align: number;
  memAlign: number;
  alignSource?: string;
  blockDevice: boolean;
  bytes: number;
  blockSize: number;
  blockSizeOverride: boolean;
  key: string;
  bufferedReason?: string;
}

/** Opens the backing file and works out its geometry; closes everything on failure. */
function openBacking(p: FileBdevParams): Backing {
  const { filename } = p;
  const ro = p.module === 'aio' && !!p.readonly;
  if (p.block_size !== undefined && p.block_size !== 0) checkGeometry(p.block_size, 1);
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(filename, { bigint: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    fail('cannot use', filename, -(err.errno ?? -ERRNO.EINVAL), openHint(-(err.errno ?? 0), ro, p.module));
  }
  if (st.isDirectory()) {
    throw new FileBdevError(`'${filename}' is a directory: give the path of a regular file or a block device`, ERRNO.EISDIR);
  }
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new FileBdevError(`'${filename}' is neither a regular file nor a block device`, ERRNO.EINVAL);
  }
  const flags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  const fd = raw.open(filename, flags, 0);
  if (fd < 0) { const e = koffi.errno(); fail('cannot open', filename, e, openHint(e, ro, p.module)); }
  let directFd = -1;
  try {
    const fst = fs.fstatSync(fd, { bigint: true });
    const blockDevice = fst.isBlockDevice();
    if (!blockDevice && !fst.isFile()) {
      throw new FileBdevError(`'${filename}' is neither a regular file nor a block device`, ERRNO.EINVAL);
    }
    const key = blockDevice ? `blk:${fst.rdev}` : `${fst.dev}:${fst.ino}`;
    if (!ro) {
      const other = writers.get(key);
      if (other !== undefined) {
        throw new FileBdevError(`'${filename}' is already open for writing by bdev '${other}': ` +
          `two writers would corrupt each other's data; delete '${other}' first or use the same bdev`, ERRNO.EBUSY);
      }
    }
    let bytes: number, lbs = 0;
    if (blockDevice) ({ bytes, lbs } = blockDeviceGeometry(fd, filename));
    else bytes = Number(fst.size);

    // O_DIRECT: open a second fd; if the file system refuses it, stay buffered.
    let align = 0, memAlign = 0, alignSource: string | undefined, bufferedReason: string | undefined;
    const dfd = p.direct === false ? -2 : raw.open(filename, flags | O_DIRECT, 0);
    if (dfd === -2) {
      bufferedReason = 'O_DIRECT disabled by the direct: false option';
    } else if (dfd < 0) {
      const e = koffi.errno();
      bufferedReason = e === ERRNO.EINVAL
        ? 'the file system does not support O_DIRECT (open returned EINVAL)'
        : `open with O_DIRECT failed: ${errnoName(e)}`;
    } else {
      directFd = dfd;
      const dst = fs.fstatSync(dfd, { bigint: true });
      if (dst.dev !== fst.dev || dst.ino !== fst.ino) {
        bufferedReason = 'the file was replaced while it was being opened';
      } else {
        const a = directAlignment(dfd, blockDevice, lbs, bytes);
        if (typeof a === 'string') bufferedReason = a;
        else ({ off: align, mem: memAlign, source: alignSource } = a);
      }
    }

    const override = p.block_size !== undefined && p.block_size !== 0;
    let blockSize: number;
    if (override) {
      blockSize = p.block_size!;
      if (blockDevice && blockSize < lbs) {
        throw new FileBdevError(`block_size ${blockSize} is below the logical block size ${lbs} of '${filename}': ` +
          `use ${lbs} or a larger power of two, or omit block_size`, ERRNO.EINVAL);
      }
    } else {
      blockSize = blockDevice ? lbs : (align > 0 && !bufferedReason ? align : 512);
    }
    if (!bufferedReason && blockSize % align !== 0) {
      bufferedReason = `block_size ${blockSize} is smaller than the O_DIRECT alignment ${align} of this file system`;
    }
    if (bufferedReason && directFd >= 0) { closeQuiet(directFd); directFd = -1; }
    if (bufferedReason) { align = memAlign = 0; alignSource = undefined; }

    const numBlocks = Math.floor(bytes / blockSize);
    if (numBlocks < 1) {
      throw new FileBdevError(`'${filename}' is ${bytes} bytes, smaller than one ${blockSize}-byte block: ` +
        `grow it first (e.g. truncate -s 1G ${filename})`, ERRNO.EINVAL);
    }
    checkGeometry(blockSize, numBlocks);
    if (bytes % blockSize !== 0) {
      log.warn(`'${filename}' is ${bytes} bytes, not a multiple of block_size ${blockSize}: the last ${bytes % blockSize} bytes are not used`);
    }
    return { fd, directFd, align, memAlign, alignSource, blockDevice, bytes, blockSize, blockSizeOverride: override, key, bufferedReason };
  } catch (e) {
    closeQuiet(directFd);
    closeQuiet(fd);
    throw e;
  }
}

export class FileBdev extends Bdev {
  readonly module: FileModule;
  readonly filename: string;
  readonly readonly: boolean;
  readonly fallocate: boolean;
  readonly engine: EngineName;
  readonly engineFallbacks: string[];
  private readonly b: Backing;
  private readonly state: SharedArrayBuffer;
  private readonly cells: Float64Array;
  private readonly engines: Int32Array;
  private destroyed = false;

  constructor(p: FileBdevParams) {
    checkUuid(p.uuid);
    let choice = chooseEngine(p.engine);
    const b = openBacking(p);
    if (choice.engine === 'io_uring' && !b.blockDevice && inMemoryFs(p.filename)) {
      // tmpfs/ramfs: io_uring hands these reads (buffered or O_DIRECT) to kernel worker threads that
      // then compete with the reactor for its CPU; a plain copy on the reactor is 2x faster
      choice = { engine: 'sync', fallbacks: [...choice.fallbacks,
        'the file is in a memory file system (tmpfs): synchronous copies beat io_uring worker threads there'] };
    }
    const ro = p.module === 'aio' && !!p.readonly;
    const falloc = p.module === 'uring' || !!p.fallocate;
    const ioTypes: IoTypeName[] = ro ? ['read', 'flush', 'reset']
      : falloc ? ['read', 'write', 'flush', 'unmap', 'write_zeroes', 'reset'] : ['read', 'write', 'flush', 'reset'];
    super({ name: p.name, blockSize: b.blockSize, numBlocks: Math.floor(b.bytes / b.blockSize), uuid: p.uuid, ioTypes });
    this.module = p.module;
    this.filename = p.filename;
    this.readonly = ro;
    this.fallocate = falloc;
    this.engine = choice.engine;
    this.engineFallbacks = choice.fallbacks;
    this.b = b;
    this.state = new SharedArrayBuffer(STATE_BYTES);
    this.cells = new Float64Array(this.state, 0, 2);
    this.engines = new Int32Array(this.state, STATE_ENGINES_OFF, MAX_REACTORS);
    this.cells[CELL_NUM_BLOCKS] = this.cells[CELL_LIMIT_BLOCKS] = this.numBlocks;
    if (!ro) writers.set(b.key, this.name);
    if (!b.blockDevice) watch(this);
    const why = choice.fallbacks.length ? ` (${choice.fallbacks.join('; ')})` : '';
    log.notice(`bdev '${this.name}': ${b.blockDevice ? 'block device' : 'file'} ${this.filename}, ` +
      `${this.numBlocks} blocks of ${this.blockSize} bytes, ` +
      `${b.directFd >= 0 ? `O_DIRECT (alignment ${b.align}, memory ${b.memAlign}, from ${b.alignSource})` : `buffered: ${b.bufferedReason}`}, ` +
      `engine ${choice.engine}${why}`);
  }

  get blockDevice(): boolean { return this.b.blockDevice; }
  get direct(): boolean { return this.b.directFd >= 0; }

  protected channelData(): FileChannelData {
    return {
      fd: this.b.fd, directFd: this.b.directFd, align: this.b.align, memAlign: this.b.memAlign, blockDevice: this.b.blockDevice,
      readonly: this.readonly, engine: this.engine, state: this.state,
    };
  }

  configCall(): ConfigCall {
    if (this.module === 'uring') {
      return { method: 'bdev_uring_create',
        params: { name: this.name, block_size: this.blockSize, filename: this.filename, uuid: this.uuid } };
    }
    const params: Record<string, unknown> = { name: this.name };
    if (this.b.blockSizeOverride) params.block_size = this.blockSize;
    Object.assign(params, { filename: this.filename, readonly: this.readonly, fallocate: this.fallocate, uuid: this.uuid });
    return { method: 'bdev_aio_create', params };
  }

  override driverSpecific(): Record<string, unknown> {
    const base: Record<string, unknown> = { filename: this.filename };
    if (this.module === 'aio') {
      Object.assign(base, { block_size_override: this.b.blockSizeOverride, readonly: this.readonly, fallocate: this.fallocate });
    }
    const reactorEngines: { reactor: number; engine: string }[] = [];
    for (let i = 0; i < this.engines.length; i++) {
      const c = Atomics.load(this.engines, i);
      if (c !== 0) reactorEngines.push({ reactor: i, engine: ENGINE_BY_CODE[c] ?? `unknown(${c})` });
    }
    Object.assign(base, {
      file_type: this.b.blockDevice ? 'block_device' : 'regular_file',
      engine: this.engine,
      ...(this.engineFallbacks.length ? { engine_fallback_reason: this.engineFallbacks.join('; ') } : {}),
      reactor_engines: reactorEngines,
      io_mode: this.direct ? 'O_DIRECT' : 'buffered',
      ...(this.direct
        ? { direct_io_alignment: this.b.align, direct_io_mem_alignment: this.b.memAlign, direct_io_alignment_source: this.b.alignSource }
        : { buffered_reason: this.b.bufferedReason }),
      ...(this.limitBlocks() < this.numBlocks ? { backing_blocks: this.limitBlocks() } : {}),
    });
    return { [this.module]: base };
  }

  /** Blocks the backing file covers now (less than numBlocks after a truncation). */
  limitBlocks(): number { return this.cells[CELL_LIMIT_BLOCKS]; }

  /** Re-reads the backing size; I/O past a shrunken end then fails until a rescan. */
  checkSize(): void {
    if (this.destroyed) return;
    let bytes: number;
    try { bytes = backingSize(this.b.fd, this.b.blockDevice, this.filename); } catch { return; }
    const lim = Math.min(this.numBlocks, Math.floor(bytes / this.blockSize));
    if (lim < this.cells[CELL_LIMIT_BLOCKS]) {
      log.warn(`bdev '${this.name}': '${this.filename}' shrank to ${bytes} bytes under the running bdev: ` +
        `I/O beyond block ${lim} fails until bdev_${this.module}_rescan`);
    }
    this.cells[CELL_LIMIT_BLOCKS] = lim;
  }

  /** bdev_*_rescan: picks up a new size. Returns the old and new block counts. */
  rescan(): { oldBlocks: number; newBlocks: number } {
    const bytes = backingSize(this.b.fd, this.b.blockDevice, this.filename);
    const newBlocks = Math.floor(bytes / this.blockSize);
    const oldBlocks = this.numBlocks;
    if (newBlocks < 1) {
      throw new FileBdevError(`'${this.filename}' is now ${bytes} bytes, smaller than one ${this.blockSize}-byte block: ` +
        `bdev '${this.name}' keeps its size of ${oldBlocks} blocks`, ERRNO.EINVAL);
    }
    if (newBlocks < oldBlocks && this.claimedBy) {
      throw new BdevError('claimed', `bdev '${this.name}' is in use by ${this.claimedBy}: ` +
        `cannot shrink it from ${oldBlocks} to ${newBlocks} blocks while it is open`);
    }
    if (newBlocks !== oldBlocks) {
      log.notice(`bdev '${this.name}' resized: ${oldBlocks} → ${newBlocks} blocks ('${this.filename}' is ${bytes} bytes)`);
    }
    // limit first when shrinking, size first when growing: a reactor never sees limit > size
    if (newBlocks < oldBlocks) {
      this.cells[CELL_LIMIT_BLOCKS] = newBlocks;
      this.cells[CELL_NUM_BLOCKS] = newBlocks;
      this.setNumBlocks(newBlocks);
    } else {
      this.cells[CELL_NUM_BLOCKS] = newBlocks;
      this.setNumBlocks(newBlocks);
      this.cells[CELL_LIMIT_BLOCKS] = newBlocks;
    }
    return { oldBlocks, newBlocks };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    unwatch(this);
    if (!this.readonly && writers.get(this.b.key) === this.name) writers.delete(this.b.key);
    // writes the guest saw completed are in the page cache at least; make them durable too
    if (!this.readonly) { try { fdatasync(this.b.fd); } catch (e) { log.warn(`bdev '${this.name}': final flush failed: ${(e as Error).message}`); } }
    closeQuiet(this.b.directFd);
    closeQuiet(this.b.fd);
  }
}

const MEMORY_FS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

function inMemoryFs(path: string): boolean {
  try { return MEMORY_FS.has(fs.statfsSync(path).type); } catch { return false; }
}

function watch(b: FileBdev): void {
  watched.add(b);
  if (!watchTimer) {
    watchTimer = setInterval(() => { for (const x of watched) x.checkSize(); }, WATCH_INTERVAL_MS);
    watchTimer.unref();
  }
}

function unwatch(b: FileBdev): void {
  watched.delete(b);
  if (watched.size === 0 && watchTimer) { clearInterval(watchTimer); watchTimer = null; }
}
