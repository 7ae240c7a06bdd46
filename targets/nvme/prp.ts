// PRP walking: turns an NVMe command's PRP1/PRP2 (+ PRP lists) into (region, offset,
// length) segments of guest memory, with every address and offset checked. Hostile
// input (unmapped pages, bad offsets, list chains that loop) yields an NVMe status.
import { GuestMemory, TWO32 } from '../../src/memory/guest_memory.js';
import { SegmentTable } from '../../bdev/bdev_io.js';
import { PAGE, SC } from './nvme_defs.js';

/** Largest guest address we accept as a PRP entry or SGL address (JS numbers are exact below 2^53). */
export const MAX_GPA = 2 ** 52;

/** Reads a little-endian u64 from guest memory at gpa (8 bytes, 8-aligned); -1 if unmapped. */
export function readGuestU64(mem: GuestMemory, gpa: number): number {
  const r = mem.regionOfRange(gpa, 8);
  if (r < 0) return -1;
  const b = mem.u8[r], o = gpa - mem.gpa[r];
  const lo = (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
  const hi = (b[o + 4] | (b[o + 5] << 8) | (b[o + 6] << 16) | (b[o + 7] << 24)) >>> 0;
  if (hi >= MAX_GPA / TWO32) return -2;
  return hi * TWO32 + lo;
}

/** Appends guest range [gpa, gpa+len) to segs, merging with the previous segment; returns new count or a negative status. */
export function addSeg(mem: GuestMemory, segs: SegmentTable, base: number, n: number, max: number, gpa: number, len: number): number {
  while (len > 0) {
    const r = mem.regionOf(gpa);
    if (r < 0) return -SC.DATA_XFER_ERROR;
    const off = gpa - mem.gpa[r];
    const chunk = Math.min(len, mem.end[r] - gpa);
    const last = base + n - 1;
    if (n > 0 && segs.region[last] === r && segs.off[last] + segs.len[last] === off) {
      segs.len[last] += chunk;
    } else {
      if (n >= max) return -SC.INVALID_FIELD;
      segs.region[base + n] = r; segs.off[base + n] = off; segs.len[base + n] = chunk;
      n++;
    }
    gpa += chunk; len -= chunk;
  }
  return n;
}

/**
 * Walks PRP1/PRP2 for a transfer of `len` bytes (memory page size 4 KiB) into
 * segs[base .. base+max). Returns the number of segments, or -(status) on error.
 */
export function walkPrp(mem: GuestMemory, prp1: number, prp2: number, len: number,
  segs: SegmentTable, base: number, max: number): number {
  if (len <= 0) return 0;
  if (prp1 < 0 || prp1 >= MAX_GPA || prp2 < 0 || prp2 >= MAX_GPA) return -SC.DATA_XFER_ERROR;
  // PRP1 may carry an offset, but must be dword aligned
  if (prp1 & 3) return -SC.PRP_OFFSET_INVALID;
  const first = Math.min(len, PAGE - (prp1 % PAGE));
  let n = addSeg(mem, segs, base, 0, max, prp1, first);
  if (n < 0) return n;
  let left = len - first;
  if (left === 0) return n;
  if (left <= PAGE) {
    // PRP2 is a data pointer: page aligned
    if (prp2 % PAGE !== 0) return -SC.PRP_OFFSET_INVALID;
    return addSeg(mem, segs, base, n, max, prp2, left);
  }
  // PRP2 points to a PRP list (qword aligned, may start mid-page)
  if (prp2 & 7) return -SC.PRP_OFFSET_INVALID;
  let entry = prp2;
  // every page of the transfer needs one entry; chain pointers add at most one per list page
  const pagesLeft = Math.ceil(left / PAGE);
  let budget = pagesLeft * 2 + 2;
  while (left > 0) {
    if (--budget < 0) return -SC.DATA_XFER_ERROR;
    const lastInPage = (entry % PAGE) === PAGE - 8;
    const v = readGuestU64(mem, entry);
    if (v < 0) return -SC.DATA_XFER_ERROR;
    if (lastInPage && left > PAGE) {
      // the last entry of a list page chains to the next list page
      if (v & 7) return -SC.PRP_OFFSET_INVALID;
      if (v === entry + 8 - PAGE) return -SC.DATA_XFER_ERROR; // points back at itself
      entry = v;
      continue;
    }
    if (v % PAGE !== 0) return -SC.PRP_OFFSET_INVALID;
    const chunk = Math.min(left, PAGE);
    n = addSeg(mem, segs, base, n, max, v, chunk);
    if (n < 0) return n;
    left -= chunk;
    entry += 8;
  }
  return n;
}

/** Copies between a host buffer and the guest segments (dir 'out' = host→guest). */
export function copySegs(mem: GuestMemory, segs: SegmentTable, base: number, n: number, buf: Uint8Array, dir: 'in' | 'out'): number {
  let pos = 0;
  for (let i = base; i < base + n && pos < buf.length; i++) {
    const r = segs.region[i], off = segs.off[i], len = Math.min(segs.len[i], buf.length - pos);
    const g = mem.u8[r];
    if (dir === 'out') g.set(buf.subarray(pos, pos + len), off);
    else buf.set(g.subarray(off, off + len), pos);
    pos += len;
  }
  return pos;
}
