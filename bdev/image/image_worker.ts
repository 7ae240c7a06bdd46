// piscina worker for image import: reads the image file, decodes qcow2 clusters (inflating
// compressed ones) and finds the all-zero parts, so that none of this runs on the control
// loop or a reactor. A chunk's result is one transferred ArrayBuffer: a zero flag per
// granule, then the chunk's bytes (zero granules are left zero and not written).
import { closeSync, fstatSync, openSync } from 'node:fs';
import Piscina from 'piscina';
import { ImageError, parseQcow2Header, preadFull, QCOW2_MAGIC, Qcow2Header, readCluster, readL1, ZERO } from './qcow2.js';

export type ImageFormat = 'raw' | 'qcow2';

export interface ProbeTask { kind: 'probe'; filename: string; format?: ImageFormat }
export interface ProbeResult { format: ImageFormat; size: number; fileSize: number; qcow2?: Qcow2Header; l1?: number[]; dirty?: boolean }

export interface ChunkTask {
  kind: 'chunk';
  job: number;
  filename: string;
  format: ImageFormat;
  qcow2?: Qcow2Header;
  /** L1 entries from index l1Base that cover this chunk (qcow2). */
  l1?: number[];
  l1Base?: number;
  /** Virtual offset and length (length: a multiple of granule except at the end). */
  offset: number;
  length: number;
  granule: number;
  /** A buffer of at least ceil(length / granule) + length bytes to fill (recycled by the caller). */
  buf?: ArrayBuffer;
}

const HEADER_READ = 65536;

function probe(t: ProbeTask): ProbeResult {
  const fd = openSync(t.filename, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(HEADER_READ, fileSize));
    preadFull(fd, head, 0);
    const isQcow2 = head.length >= 4 && head.readUInt32BE(0) === QCOW2_MAGIC;
    const format = t.format ?? (isQcow2 ? 'qcow2' : 'raw');
    if (format === 'raw') return { format, size: fileSize, fileSize };
    if (!isQcow2) throw new ImageError(`${t.filename} is not a qcow2 image (no QFI\\xfb magic): import it with format 'raw'`);
    const h = parseQcow2Header(head, fileSize, t.filename);
    return { format, size: h.size, fileSize, qcow2: h, l1: readL1(fd, h, t.filename), dirty: h.dirty };
  } finally { closeSync(fd); }
}

/** Recently used L2 tables of this worker, by job and host offset. */
const l2Cache = new Map<string, Buffer>();
const L2_CACHE_MAX = 32;

function l2Table(fd: number, t: ChunkTask, h: Qcow2Header, off: number): Buffer {
  const key = `${t.job}:${t.filename}:${off}`;
  let b = l2Cache.get(key);
  if (b) { l2Cache.delete(key); l2Cache.set(key, b); return b; }
  b = Buffer.alloc(h.clusterSize);
  if (preadFull(fd, b, off) < b.length) throw new ImageError(`${t.filename} is corrupt: the L2 table at ${off} is cut off by the end of the file`);
  l2Cache.set(key, b);
  if (l2Cache.size > L2_CACHE_MAX) l2Cache.delete(l2Cache.keys().next().value!);
  return b;
}

function chunk(t: ChunkTask): ArrayBuffer {
  const ngran = Math.ceil(t.length / t.granule);
  const out = t.buf && t.buf.byteLength >= ngran + t.length ? t.buf : new ArrayBuffer(ngran + t.length);
  const flags = new Uint8Array(out, 0, ngran), data = Buffer.from(out, ngran, t.length);
  if (out === t.buf) data.fill(0);   // a recycled buffer: holes and unallocated clusters must read as zero
  const fd = openSync(t.filename, 'r');
  try {
    if (t.format === 'raw') {
      preadFull(fd, data, t.offset);   // past the end of the file stays zero
    } else {
      const h = t.qcow2!, cs = h.clusterSize, perL2 = cs / 8;
      const first = Math.floor(t.offset / cs), last = Math.ceil(Math.min(t.offset + t.length, h.size) / cs);
      const tmp = Buffer.alloc(cs);
      for (let c = first; c < last; c++) {
        const l2off = t.l1![Math.floor(c / perL2) - t.l1Base!];
        if (!l2off) continue;                                  // no L2 table: zeros
        const kind = readCluster(fd, h, l2Table(fd, t, h, l2off), c % perL2, tmp, t.filename, c);
        if (kind === ZERO) continue;
        // copy the part of the cluster inside this chunk (chunks are cluster aligned unless clusters exceed them)
        const cStart = c * cs, from = Math.max(cStart, t.offset), to = Math.min(cStart + cs, t.offset + t.length);
        data.set(tmp.subarray(from - cStart, to - cStart), from - t.offset);
      }
    }
  } finally { closeSync(fd); }
  for (let g = 0; g < ngran; g++) {
    const a = g * t.granule, b = Math.min(a + t.granule, t.length);
    flags[g] = isZero(data, a, b) ? 1 : 0;
  }
  return out;
}

const ZEROS = Buffer.alloc(1 << 16);
function isZero(b: Buffer, from: number, to: number): boolean {
  for (let p = from; p < to; p += ZEROS.length) {
    const n = Math.min(ZEROS.length, to - p);
    if (b.compare(ZEROS, 0, n, p, p + n) !== 0) return false;
  }
  return true;
}

export default function run(t: ProbeTask | ChunkTask): ProbeResult | ArrayBuffer {
  if (t.kind === 'probe') return probe(t);
  return Piscina.move(chunk(t)) as unknown as ArrayBuffer;
}
