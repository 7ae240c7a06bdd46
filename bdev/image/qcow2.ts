// qcow2 reading for image import (docs/interop/qcow2.rst in QEMU): the header (versions 2
// and 3), L1/L2 tables, and what a guest cluster holds: data at a host offset, zeros
// (unallocated, or the v3 zero flag) or a deflate-compressed cluster. The file is untrusted:
// every offset and size is checked against the file before use, and anything this reader
// does not handle (backing files, encryption, external data files, extended L2 entries,
// zstd) is refused with an error that says what to do.
import { readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

export class ImageError extends Error {
  constructor(message: string) { super(message); this.name = 'ImageError'; }
}

export const QCOW2_MAGIC = 0x514649fb;   // "QFI\xfb"
const MAX_CLUSTER_BITS = 21;             // 2 MiB, QEMU's limit
const MIN_CLUSTER_BITS = 9;
/** Incompatible feature bits (v3). */
const INCOMPAT_DIRTY = 1, INCOMPAT_CORRUPT = 2, INCOMPAT_DATA_FILE = 4, INCOMPAT_COMPRESSION = 8, INCOMPAT_EXTL2 = 16;

export interface Qcow2Header {
  version: number;
  clusterBits: number;
  clusterSize: number;
  /** Virtual disk size in bytes. */
  size: number;
  l1Size: number;
  l1Offset: number;
  /** The image's own file size (offsets must stay below it). */
  fileSize: number;
  dirty: boolean;
}

function u64(b: Buffer, off: number): number {
  const v = b.readBigUInt64BE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageError(`qcow2 header field at byte ${off} is too large (${v})`);
  return Number(v);
}

/** Reads exactly `len` bytes at `pos` (fewer only at the end of the file). */
export function preadFull(fd: number, buf: Uint8Array, pos: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Parses and checks the header; `name` is used in messages. */
export function parseQcow2Header(h: Buffer, fileSize: number, name: string): Qcow2Header {
  const bad = (why: string) => new ImageError(`${name} is not a usable qcow2 image: ${why}`);
  if (h.length < 72 || h.readUInt32BE(0) !== QCOW2_MAGIC) throw bad('no qcow2 magic (QFI\\xfb) at the start');
  const version = h.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw bad(`version ${version} is not supported (2 and 3 are)`);
  const backingOffset = u64(h, 8);
  if (backingOffset !== 0) {
    const len = Math.min(h.readUInt32BE(16), 1023);
    const backing = backingOffset + len <= h.length ? h.subarray(backingOffset, backingOffset + len).toString() : '?';
    throw new ImageError(`${name} has a backing file (${backing}): import a self-contained image; flatten it first with ` +
      `'qemu-img convert -O qcow2 ${name} flat.qcow2'`);
  }
  const clusterBits = h.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw bad(`cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  const size = u64(h, 24);
  const crypt = h.readUInt32BE(32);
  if (crypt !== 0) {
    throw new ImageError(`${name} is encrypted (method ${crypt === 1 ? 'AES' : crypt === 2 ? 'LUKS' : crypt}): ` +
      `decrypt it first ('qemu-img convert --object secret,... -O qcow2')`);
  }
  const l1Size = h.readUInt32BE(36);
  const l1Offset = u64(h, 40);
  let dirty = false;
  if (version === 3) {
    if (h.length < 104) throw bad('the version 3 header is truncated');
    const incompat = u64(h, 72);
    if (incompat & INCOMPAT_CORRUPT) throw bad('QEMU marked it corrupt: repair it with \'qemu-img check -r all\' first');
    if (incompat & INCOMPAT_DATA_FILE) throw new ImageError(`${name} keeps its data in an external data file: not yet supported; ` +
      `convert it with 'qemu-img convert -O qcow2' first`);
    if (incompat & INCOMPAT_COMPRESSION) throw new ImageError(`${name} uses a compression type other than zlib (zstd): not yet ` +
      `supported; convert it with 'qemu-img convert -O qcow2 -o compression_type=zlib' first`);
    if (incompat & INCOMPAT_EXTL2) throw new ImageError(`${name} uses extended L2 entries (subclusters): not yet supported; ` +
      `convert it with 'qemu-img convert -O qcow2' first`);
    const unknown = incompat & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2);
    if (unknown) throw bad(`unknown incompatible feature bits 0x${unknown.toString(16)}`);
    dirty = (incompat & INCOMPAT_DIRTY) !== 0;
  }
  const clusterSize = 2 ** clusterBits;
  const perL2 = clusterSize / 8;
  const needL1 = Math.ceil(size / (clusterSize * perL2));
  if (l1Size < needL1) throw bad(`its L1 table has ${l1Size} entries, fewer than the ${needL1} its ${size}-byte size needs`);
  if (l1Offset % clusterSize !== 0 && l1Offset % 512 !== 0) throw bad(`the L1 table offset ${l1Offset} is not aligned`);
  if (needL1 > 0 && l1Offset + needL1 * 8 > fileSize) {
    throw bad(`the L1 table (${needL1} entries at offset ${l1Offset}) ends past the end of the file (${fileSize} bytes)`);
  }
  return { version, clusterBits, clusterSize, size, l1Size, l1Offset, fileSize, dirty };
}

/** What one guest cluster holds. */
export const ZERO = 0, DATA = 1, COMPRESSED = 2;

/** Reads the L1 entries the image uses (offsets of L2 tables; 0 = none). */
export function readL1(fd: number, h: Qcow2Header, name: string): number[] {
  const n = Math.ceil(h.size / (h.clusterSize * (h.clusterSize / 8)));
  const buf = Buffer.alloc(n * 8);
  if (preadFull(fd, buf, h.l1Offset) < buf.length) throw new ImageError(`${name}: the L1 table is cut off by the end of the file`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const hi = buf.readUInt32BE(i * 8), lo = buf.readUInt32BE(i * 8 + 4);
    const off = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
    if (off !== 0 && (off % h.clusterSize !== 0 || off + h.clusterSize > h.fileSize)) {
      throw new ImageError(`${name} is corrupt: L1 entry ${i} points to an L2 table at ${off}, ` +
        (off % h.clusterSize !== 0 ? 'not cluster aligned' : `past the end of the file (${h.fileSize} bytes)`));
    }
    out.push(off);
  }
  return out;
}

/**
 * Decodes guest cluster `c` from its L2 entry into `out` (clusterSize bytes) and returns ZERO
 * (out untouched: the caller zero-fills or skips), DATA or COMPRESSED (out filled).
 */
export function readCluster(fd: number, h: Qcow2Header, l2: Buffer, idx: number, out: Uint8Array, name: string, c: number): number {
  const hi = l2.readUInt32BE(idx * 8), lo = l2.readUInt32BE(idx * 8 + 4);
  const where = () => `guest cluster ${c} (offset ${c * h.clusterSize})`;
  if (hi & 0x40000000) {
    // compressed: x = 62 - (cluster_bits - 8) bits of host offset, then the count of extra 512-byte sectors
    const e = l2.readBigUInt64BE(idx * 8);
    const x = BigInt(62 - (h.clusterBits - 8));
    const off = Number(e & ((1n << x) - 1n));
    const sectors = Number((e >> x) & ((1n << (62n - x)) - 1n));
    const len = Math.min((sectors + 1) * 512 - (off & 511), h.fileSize - off);
    if (off >= h.fileSize || len <= 0) {
      throw new ImageError(`${name} is corrupt: compressed ${where()} at ${off} is past the end of the file (${h.fileSize} bytes)`);
    }
    const src = Buffer.alloc(len);
    preadFull(fd, src, off);
    let plain: Buffer;
    try {
      plain = inflateRawSync(src, { maxOutputLength: h.clusterSize, finishFlush: 2 /* Z_SYNC_FLUSH: tolerate the padding */ });
    } catch (e) {
      throw new ImageError(`${name} is corrupt: compressed ${where()} does not inflate (${(e as Error).message})`);
    }
    if (plain.length !== h.clusterSize) {
      throw new ImageError(`${name} is corrupt: compressed ${where()} inflates to ${plain.length} bytes, not ${h.clusterSize}`);
    }
    out.set(plain);
    return COMPRESSED;
  }
  if (h.version === 3 && (lo & 1)) return ZERO;   // the v3 "reads as zeros" flag
  const off = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
  if (off === 0) return ZERO;                       // unallocated, no backing file: zeros
  if (off % h.clusterSize !== 0) throw new ImageError(`${name} is corrupt: ${where()} is at host offset ${off}, not cluster aligned`);
  if (off >= h.fileSize) {
    throw new ImageError(`${name} is corrupt: ${where()} is at host offset ${off}, past the end of the file (${h.fileSize} bytes)`);
  }
  const n = preadFull(fd, out, off);
  if (n < out.length) out.fill(0, n);   // the last cluster of a file may be short on disk
  return DATA;
}
