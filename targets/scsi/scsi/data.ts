// Moving bytes between the task's data buffer (segments in guest memory) and small
// buffers: responses of non-I/O commands out, parameter lists in. Byte loops over
// the segments: the amounts are small and nothing is allocated.
import { DataDir } from './constants.js';
import type { ScsiTask } from './task.js';

/** Per-thread scratch for building responses (REPORT LUNS for up to 2047 LUNs fits). */
export const SCRATCH_SIZE = 16384;
export const scratch = new Uint8Array(SCRATCH_SIZE);

/** Bytes of data-in buffer the task offers (0 if its buffer is data-out or absent). */
export function dataInCapacity(t: ScsiTask): number {
  return t.dir === DataDir.FROM_DEVICE && t.mem !== null ? t.transferLen : 0;
}

/** Bytes of data-out buffer the task carries (0 if its buffer is data-in or absent). */
export function dataOutLength(t: ScsiTask): number {
  return t.dir === DataDir.TO_DEVICE && t.mem !== null ? t.transferLen : 0;
}

/**
 * Copies src[0..len) to the start of the data-in buffer, truncated to what it holds.
 * Sets and returns t.dataTransferred.
 */
export function scatterIn(t: ScsiTask, src: Uint8Array, len: number): number {
  const cap = dataInCapacity(t);
  let n = len < cap ? len : cap;
  const mem = t.mem;
  let pos = 0;
  if (mem !== null && n > 0) {
    const s = t.segs, end = t.segBase + t.nseg;
    for (let i = t.segBase; i < end && pos < n; i++) {
      const buf = mem.u8[s.region[i]];
      let off = s.off[i];
      let l = s.len[i];
      if (l > n - pos) l = n - pos;
      for (let k = 0; k < l; k++) buf[off++] = src[pos + k];
      pos += l;
    }
  }
  n = pos;
  t.dataTransferred = n;
  return n;
}

/**
 * Copies len bytes of the data-out buffer, from byte `from`, to dst[dstOff..).
 * Returns the number copied (less than len if the buffer ends first).
 */
export function gatherOut(t: ScsiTask, from: number, dst: Uint8Array, dstOff: number, len: number): number {
  const mem = t.mem;
  if (mem === null || len <= 0) return 0;
  const s = t.segs, end = t.segBase + t.nseg;
  let skip = from, got = 0;
  for (let i = t.segBase; i < end && got < len; i++) {
    const l = s.len[i];
    if (skip >= l) { skip -= l; continue; }
    const buf = mem.u8[s.region[i]];
    let off = s.off[i] + skip;
    let take = l - skip;
    skip = 0;
    if (take > len - got) take = len - got;
    for (let k = 0; k < take; k++) dst[dstOff + got + k] = buf[off++];
    got += take;
  }
  return got;
}

/** Whether the first `len` bytes of the data-out buffer are all zero. */
export function dataOutIsZero(t: ScsiTask, len: number): boolean {
  const mem = t.mem;
  if (mem === null) return true;
  const s = t.segs, end = t.segBase + t.nseg;
  let left = len;
  for (let i = t.segBase; i < end && left > 0; i++) {
    const buf = mem.u8[s.region[i]];
    let off = s.off[i];
    const l = s.len[i] < left ? s.len[i] : left;
    for (let k = 0; k < l; k++) if (buf[off++] !== 0) return false;
    left -= l;
  }
  return true;
}

/**
 * Makes the task's segments describe exactly `bytes` from the start of its buffer:
 * returns how many segments that takes, shortening the last one in place if needed
 * (remembered in t.clipIdx/clipLen and undone by unclip). Returns -1 if the buffer is shorter.
 */
export function clipSegments(t: ScsiTask, bytes: number): number {
  if (bytes === 0) return 0;
  const s = t.segs, end = t.segBase + t.nseg;
  let acc = 0;
  for (let i = t.segBase; i < end; i++) {
    const l = s.len[i];
    if (acc + l >= bytes) {
      if (acc + l > bytes) {
        t.clipIdx = i;
        t.clipLen = l;
        s.len[i] = bytes - acc;
      }
      return i - t.segBase + 1;
    }
    acc += l;
  }
  return -1;
}

export function unclip(t: ScsiTask): void {
  if (t.clipIdx >= 0) {
    t.segs.len[t.clipIdx] = t.clipLen;
    t.clipIdx = -1;
  }
}
