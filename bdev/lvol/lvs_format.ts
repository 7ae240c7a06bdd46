// On-disk format of an lvstore (vhostd's own, not SPDK's blobstore), at the start of the base bdev:
//
//   [0, 64 KiB)        superblock copy A      ┐ two copies, written alternately: each update goes
//   [64 KiB, 128 KiB)  superblock copy B      ┘ to the older copy with seq+1, between flushes
//   [128 KiB, ...)     map area: 4 KiB pages, each lvol owns a run of them (its cluster map)
//   [dataStart, end)   data clusters
//
// A superblock copy is a 32-byte header (magic, CRC32 of the body, body length, sequence
// number) and a JSON body: the lvstore (uuid, name, geometry) and its lvols (uuid, name, size
// in clusters, thin, snapshot, parent uuid, map pages). At load the valid copy with the highest
// sequence number wins, so an update torn by a crash leaves the previous state.
// A cluster map is a little-endian u32 per cluster index: 0 = unallocated (read the parent, or
// zeroes), p+1 = physical cluster p. The data path writes one base block of it per newly
// allocated cluster, after the cluster's data (see lvol_channel.ts). Which clusters are free is
// not stored: it is what no map references.
import { crc32 } from 'node:zlib';

export const SB_SLOT = 64 * 1024;
export const MAP_START = 2 * SB_SLOT;
export const MAP_PAGE = 4096;
const MAGIC = 'VHDLVS01';
const HEADER = 32;

export interface LvolDesc {
  uuid: string;
  name: string;
  clusters: number;
  thin: boolean;
  snapshot: boolean;
  readOnly: boolean;
  parent: string | null;
  page: number;
  pages: number;
}

export interface LvsDesc {
  v: 1;
  uuid: string;
  name: string;
  clusterSize: number;
  blockSize: number;
  mapPages: number;
  dataStart: number;
  dataClusters: number;
  lvols: LvolDesc[];
}

/** Layout of a new lvstore on `bytes` of base bdev. */
export function layout(bytes: number, clusterSize: number): { mapPages: number; dataStart: number; dataClusters: number } {
  const est = Math.floor(bytes / clusterSize);
  // room for every cluster mapped ~4 times over (snapshots, clones) and at least 256 lvols
  const mapPages = Math.max(256, Math.ceil((est * 4 * 4) / MAP_PAGE));
  const dataStart = Math.ceil((MAP_START + mapPages * MAP_PAGE) / clusterSize) * clusterSize;
  return { mapPages, dataStart, dataClusters: Math.max(0, Math.floor((bytes - dataStart) / clusterSize)) };
}

/** Map pages an lvol of `clusters` clusters gets: a power of two, so it can grow in place for a while. */
export function mapPagesFor(clusters: number): number {
  const need = Math.max(1, Math.ceil((clusters * 4) / MAP_PAGE));
  let p = 1;
  while (p < need) p *= 2;
  return p;
}

/** One superblock copy, padded to whole blocks. */
export function encodeSuperblock(d: LvsDesc, seq: number, blockSize: number): Uint8Array {
  const body = Buffer.from(JSON.stringify(d));
  if (HEADER + body.length > SB_SLOT) {
    throw new Error(`lvstore '${d.name}' metadata needs ${HEADER + body.length} bytes, more than the ${SB_SLOT} a superblock holds: ` +
      `delete some lvols or snapshots`);
  }
  const out = new Uint8Array(Math.ceil((HEADER + body.length) / blockSize) * blockSize);
  const dv = new DataView(out.buffer);
  out.set(Buffer.from(MAGIC, 'latin1'), 0);
  dv.setUint32(8, crc32(body), true);
  dv.setUint32(12, body.length, true);
  dv.setFloat64(16, seq, true);
  out.set(body, HEADER);
  return out;
}

/** A superblock copy, or null if this is not one (or it is torn). */
export function decodeSuperblock(b: Uint8Array): { desc: LvsDesc; seq: number } | null {
  if (b.length < HEADER || Buffer.from(b.subarray(0, 8)).toString('latin1') !== MAGIC) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const len = dv.getUint32(12, true);
  if (HEADER + len > b.length) return null;
  const body = b.subarray(HEADER, HEADER + len);
  if (crc32(body) !== dv.getUint32(8, true)) return null;
  try {
    const desc = JSON.parse(Buffer.from(body).toString('utf8')) as LvsDesc;
    if (desc.v !== 1 || !Array.isArray(desc.lvols)) return null;
    return { desc, seq: dv.getFloat64(16, true) };
  } catch { return null; }
}

/** The newer valid copy of the two superblock slots (the first 2*SB_SLOT bytes), or null. */
export function pickSuperblock(region: Uint8Array): { desc: LvsDesc; seq: number } | null {
  const a = decodeSuperblock(region.subarray(0, SB_SLOT));
  const b = decodeSuperblock(region.subarray(SB_SLOT, 2 * SB_SLOT));
  if (a && b) return a.seq >= b.seq ? a : b;
  return a ?? b;
}
