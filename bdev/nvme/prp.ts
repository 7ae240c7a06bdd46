// Cuts an I/O's scatter list into NVMe commands whose data a PRP list can describe.
//
// IOVA = hva: a segment (region r, offset o) is at address mem.hva[r] + o for the device.
// A PRP list has one entry per memory page: only the first may start inside a page, and
// only the last may end inside one. A scatter list that breaks this rule in the middle
// (a segment that ends or starts off a page boundary) is cut there into several commands,
// as SPDK does; every piece must hold whole blocks, or the I/O fails (vhostd does not bounce).
import { PAGE, TWO32 } from './nvme_spec.js';
import type { SegmentTable } from '../bdev_io.js';

/** Largest transfer of one command: PRP1 plus one list page (512 entries) always suffices. */
export const MAX_PRP_BYTES = 512 * PAGE;

export const PRP_ERR_DWORD = 1, PRP_ERR_BLOCK = 2, PRP_ERR_EMPTY = 3;

export const prpErrorText: Record<number, string> = {
  [PRP_ERR_DWORD]: 'a data buffer is not 4-byte aligned (NVMe PRPs need dword alignment)',
  [PRP_ERR_BLOCK]: 'the scatter list breaks page alignment inside a block (a piece between two breaks is not a whole number of blocks); vhostd does not bounce such I/O',
  [PRP_ERR_EMPTY]: 'the scatter list is shorter than the I/O',
};

/**
 * The position in a scatter list (in) and the command just planned (out). One per qpair,
 * reused: a request keeps its own position between commands and loads it here.
 */
export class PrpCursor {
  seg = 0;
  off = 0;
  prp1 = 0;
  prp2 = 0;
  entries = 0;
  err = 0;
}

/**
 * Plans the next command from the cursor, at most maxBytes (a multiple of blockSize, at
 * most MAX_PRP_BYTES). Writes list entries 2..n into `list` from word `listBase` on (64-bit
 * little-endian as pairs of 32-bit words; that list page is at listHva) and sets prp1/prp2;
 * advances the cursor.
 * Returns the bytes the command carries, or -1 with c.err set.
 */
export function planCommand(c: PrpCursor, s: SegmentTable, hva: Float64Array, end: number,
  maxBytes: number, blockSize: number, list: Uint32Array, listBase: number, listHva: number): number {
  let seg = c.seg, off = c.off, bytes = 0, n = 0, lastEnd = 0, prp1 = 0, prp2 = 0;
  while (seg < end && bytes < maxBytes) {
    const len = s.len[seg];
    if (off >= len) { seg++; off = 0; continue; }
    const a = hva[s.region[seg]] + s.off[seg] + off;
    const inPage = a % PAGE;
    if (n === 0) {
      if ((a & 3) !== 0) { c.err = PRP_ERR_DWORD; return -1; }
      prp1 = a;
    } else {
      if (inPage !== 0 || lastEnd % PAGE !== 0) break;   // cut here: a new command starts
      if (n === 1) prp2 = a;
      const i = listBase + 2 * (n - 1);
      list[i] = a >>> 0;
      list[i + 1] = (a / TWO32) >>> 0;
    }
    let chunk = len - off;
    if (chunk > PAGE - inPage) chunk = PAGE - inPage;
    if (chunk > maxBytes - bytes) chunk = maxBytes - bytes;
    n++; bytes += chunk; off += chunk; lastEnd = a + chunk;
  }
  if (bytes === 0) { c.err = PRP_ERR_EMPTY; return -1; }
  const keep = bytes - (bytes % blockSize);
  if (keep === 0) { c.err = PRP_ERR_BLOCK; return -1; }
  // a cut inside a block: plan again up to the last whole block (same prefix, no cut)
  if (keep !== bytes) return planCommand(c, s, hva, end, keep, blockSize, list, listBase, listHva);
  c.seg = seg; c.off = off; c.entries = n;
  c.prp1 = prp1;
  c.prp2 = n === 1 ? 0 : n === 2 ? prp2 : listHva;
  return bytes;
}
