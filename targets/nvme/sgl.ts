// SGL walking (NVMe base spec "Scatter Gather List"): turns the SGL of an I/O command
// (PSDT 01b) into (region, offset, length) segments of guest memory, like walkPrp does
// for PRPs, with every address, length and descriptor checked. Hostile input yields the
// status the spec names:
//   SGL Descriptor Type Invalid   a type we do not take (keyed, transport, reserved, vendor,
//                                 or a Bit Bucket where data flows host to controller)
//   SGL Offset Invalid            a descriptor with the Offset sub type (fabrics only)
//   Invalid Number of SGL Descr.  a (Last) Segment descriptor that is not the last of its segment
//   Invalid SGL Segment Descr.    a segment descriptor whose length is 0 or not a multiple of 16,
//                                 that is not qword aligned, a Last Segment that chains further,
//                                 or a chain longer than MAX_SGL_DESCRIPTORS (loops end here)
//   Data SGL Length Invalid       the SGL describes less or more data than the command moves
//   Data Transfer Error           a data block or segment that is not in guest memory
// Nothing is allocated: descriptors are read straight from guest memory one at a time.
import { GuestMemory, TWO32 } from '../../src/memory/guest_memory.js';
import { SegmentTable } from '../../bdev/bdev_io.js';
import { MAX_SGL_DESCRIPTORS, SC, SGL, SGL_DESC, SGL_SUBTYPE_ADDRESS, SGL_SUBTYPE_OFFSET } from './nvme_defs.js';
import { addSeg, MAX_GPA } from './prp.js';

/** Where Bit Bucket descriptors of a read land: a scratch buffer of at least the largest transfer. */
export interface BitBucket { region: number; off: number }

// the descriptor last read by readDesc (module scratch: no allocation per descriptor)
let dAddr = 0, dLen = 0, dType = 0, dSub = 0;

function parse(b: Uint8Array, o: number): void {
  const lo = (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
  const hi = (b[o + 4] | (b[o + 5] << 8) | (b[o + 6] << 16) | (b[o + 7] << 24)) >>> 0;
  // addresses at or beyond MAX_GPA are never guest memory: -1 makes every lookup fail
  dAddr = hi >= MAX_GPA / TWO32 ? -1 : hi * TWO32 + lo;
  dLen = (b[o + 8] | (b[o + 9] << 8) | (b[o + 10] << 16) | (b[o + 11] << 24)) >>> 0;
  dType = b[o + 15] >>> 4;
  dSub = b[o + 15] & 0xf;
}

/** Reads the 16-byte descriptor at gpa; false if it is not (wholly) in guest memory. */
function readDesc(mem: GuestMemory, gpa: number): boolean {
  const r = mem.regionOfRange(gpa, SGL_DESC);
  if (r < 0) return false;
  parse(mem.u8[r], gpa - mem.gpa[r]);
  return true;
}

// the walk in progress: segments so far, bytes still to describe
let wN = 0, wLeft = 0;

/** Appends the Data Block or Bit Bucket descriptor last parsed; 0 or -(status). */
function data(mem: GuestMemory, segs: SegmentTable, base: number, max: number, bitBucket: BitBucket | null): number {
  if (dType === SGL.BIT_BUCKET) {
    if (!bitBucket) return -SC.SGL_DESCRIPTOR_TYPE_INVALID;
  } else if (dType !== SGL.DATA_BLOCK) {
    return -SC.SGL_DESCRIPTOR_TYPE_INVALID;
  } else if (dSub !== SGL_SUBTYPE_ADDRESS) {
    return dSub === SGL_SUBTYPE_OFFSET ? -SC.SGL_OFFSET_INVALID : -SC.SGL_DESCRIPTOR_TYPE_INVALID;
  }
  if (dLen === 0) return 0;                              // describes no data
  if (dLen > wLeft) return -SC.DATA_SGL_LENGTH_INVALID;  // SGLS bit 18 = 0: no SGL longer than the transfer
  if (dType === SGL.BIT_BUCKET) {
    if (wN >= max) return -SC.INVALID_FIELD;
    segs.region[base + wN] = bitBucket!.region; segs.off[base + wN] = bitBucket!.off; segs.len[base + wN] = dLen;
    wN++;
  } else {
    if (dAddr < 0) return -SC.DATA_XFER_ERROR;
    const r = addSeg(mem, segs, base, wN, max, dAddr, dLen);
    if (r < 0) return r;
    wN = r;
  }
  wLeft -= dLen;
  return 0;
}

/**
 * Walks the SGL whose first descriptor (SGL1) is at sqe[dptr .. dptr+16) for a transfer of
 * `len` bytes into segs[base .. base+max). `bitBucket`: where Bit Bucket descriptors put their
 * data (reads), or null where they are not allowed. Returns the segment count, or -(status).
 */
export function walkSgl(mem: GuestMemory, sqe: Uint8Array, dptr: number, len: number,
  segs: SegmentTable, base: number, max: number, bitBucket: BitBucket | null): number {
  if (len <= 0) return 0;
  wN = 0; wLeft = len;
  parse(sqe, dptr);
  if (dType !== SGL.SEGMENT && dType !== SGL.LAST_SEGMENT) {
    // the whole transfer in one descriptor
    const r = data(mem, segs, base, max, bitBucket);
    if (r < 0) return r;
    return wLeft === 0 ? wN : -SC.DATA_SGL_LENGTH_INVALID;
  }

  let budget = MAX_SGL_DESCRIPTORS;
  for (;;) {
    // (dAddr, dLen, dType, dSub) is a Segment or Last Segment descriptor
    if (dSub !== SGL_SUBTYPE_ADDRESS) return dSub === SGL_SUBTYPE_OFFSET ? -SC.SGL_OFFSET_INVALID : -SC.SGL_DESCRIPTOR_TYPE_INVALID;
    if (dLen === 0 || dLen % SGL_DESC !== 0) return -SC.INVALID_SGL_SEGMENT;
    if (dAddr < 0) return -SC.DATA_XFER_ERROR;
    if (dAddr % 8 !== 0) return -SC.INVALID_SGL_SEGMENT;   // an SGL segment is qword aligned
    const count = dLen / SGL_DESC;
    if (count > budget) return -SC.INVALID_SGL_SEGMENT;    // a chain that loops, or absurdly long
    budget -= count;
    const last = dType === SGL.LAST_SEGMENT, seg = dAddr;
    let chained = false;
    for (let i = 0; i < count; i++) {
      if (!readDesc(mem, seg + i * SGL_DESC)) return -SC.DATA_XFER_ERROR;
      if (dType === SGL.SEGMENT || dType === SGL.LAST_SEGMENT) {
        if (i !== count - 1) return -SC.INVALID_NUM_SGL_DESCRIPTORS; // only the last descriptor of a segment may chain
        if (last) return -SC.INVALID_SGL_SEGMENT;                    // the last segment chains no further
        chained = true;
        break;
      }
      const r = data(mem, segs, base, max, bitBucket);
      if (r < 0) return r;
    }
    // a segment ending in a data descriptor ends the SGL (whether or not it was announced as the last)
    if (!chained) break;
  }
  return wLeft === 0 ? wN : -SC.DATA_SGL_LENGTH_INVALID;
}
