// CDB decoding: the length each supported operation code needs, and big-endian
// field readers over a byte array (plain arithmetic, exact up to 2^53).
import { Op } from './constants.js';

/** Required CDB length per supported operation code; 0 = not supported. */
export const CDB_LEN = new Uint8Array(256);
for (const op of [Op.TEST_UNIT_READY, Op.REQUEST_SENSE, Op.READ_6, Op.WRITE_6, Op.INQUIRY,
  Op.MODE_SELECT_6, Op.MODE_SENSE_6, Op.START_STOP_UNIT]) CDB_LEN[op] = 6;
for (const op of [Op.READ_CAPACITY_10, Op.READ_10, Op.WRITE_10, Op.VERIFY_10, Op.SYNCHRONIZE_CACHE_10,
  Op.WRITE_SAME_10, Op.UNMAP, Op.MODE_SELECT_10, Op.MODE_SENSE_10]) CDB_LEN[op] = 10;
for (const op of [Op.REPORT_LUNS, Op.READ_12, Op.WRITE_12, Op.VERIFY_12]) CDB_LEN[op] = 12;
for (const op of [Op.READ_16, Op.WRITE_16, Op.VERIFY_16, Op.SYNCHRONIZE_CACHE_16, Op.WRITE_SAME_16,
  Op.SERVICE_ACTION_IN_16]) CDB_LEN[op] = 16;

export function be16(b: Uint8Array, o: number): number { return (b[o] << 8) | b[o + 1]; }
export function be24(b: Uint8Array, o: number): number { return (b[o] << 16) | (b[o + 1] << 8) | b[o + 2]; }
export function be32(b: Uint8Array, o: number): number {
  return b[o] * 0x1000000 + ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]);
}
/**
 * 64-bit big-endian value as a number. Values >= 2^53 lose precision but stay >= 2^53,
 * which is all range checks need (no bdev is that large).
 */
export function be64(b: Uint8Array, o: number): number { return be32(b, o) * 4294967296 + be32(b, o + 4); }

export function put16(b: Uint8Array, o: number, v: number): void { b[o] = (v >>> 8) & 0xff; b[o + 1] = v & 0xff; }
export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff; b[o + 1] = (v >>> 16) & 0xff; b[o + 2] = (v >>> 8) & 0xff; b[o + 3] = v & 0xff;
}
export function put64(b: Uint8Array, o: number, v: number): void {
  put32(b, o, Math.floor(v / 4294967296)); put32(b, o + 4, v >>> 0);
}
/** ASCII string, space padded (or cut) to exactly `len` bytes. */
export function putAscii(b: Uint8Array, o: number, s: Uint8Array, len: number): void {
  for (let i = 0; i < len; i++) b[o + i] = i < s.length ? s[i] : 0x20;
}
