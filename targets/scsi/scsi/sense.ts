// Fixed-format sense data (SPC-4 4.5.3) and the helpers that end a task with
// CHECK CONDITION. No allocation: sense bytes go into the task's own buffer.
import { FIXED_SENSE_LEN, Status } from './constants.js';
import type { ScsiTask } from './task.js';

/**
 * Writes 18 bytes of fixed-format sense data at buf[off].
 * `info` >= 0 sets VALID and the INFORMATION field (only when it fits in 32 bits).
 * `field` >= 0 sets the sense-key-specific field pointer (SKSV=1): `cd` says whether it
 * points into the CDB (true) or the parameter list (false); `bit` >= 0 adds a bit pointer.
 */
export function writeFixedSense(buf: Uint8Array, off: number, key: number, ascq: number,
  info: number, field: number, cd: boolean, bit: number): number {
  buf.fill(0, off, off + FIXED_SENSE_LEN);
  buf[off] = 0x70; // current error, fixed format
  if (info >= 0 && info <= 0xffffffff) {
    buf[off] |= 0x80;
    buf[off + 3] = info >>> 24; buf[off + 4] = (info >>> 16) & 0xff;
    buf[off + 5] = (info >>> 8) & 0xff; buf[off + 6] = info & 0xff;
  }
  buf[off + 2] = key & 0x0f;
  buf[off + 7] = FIXED_SENSE_LEN - 8; // additional sense length
  buf[off + 12] = ascq >>> 8;
  buf[off + 13] = ascq & 0xff;
  if (field >= 0) {
    buf[off + 15] = 0x80 | (cd ? 0x40 : 0) | (bit >= 0 ? 0x08 | (bit & 7) : 0);
    buf[off + 16] = (field >>> 8) & 0xff;
    buf[off + 17] = field & 0xff;
  }
  return FIXED_SENSE_LEN;
}

/** CHECK CONDITION with the given sense key and ASC/ASCQ (packed). */
export function checkCondition(t: ScsiTask, key: number, ascq: number): void {
  t.status = Status.CHECK_CONDITION;
  t.senseLen = writeFixedSense(t.sense, 0, key, ascq, -1, -1, false, -1);
}

/** CHECK CONDITION with VALID + INFORMATION (the failing LBA, for medium errors). */
export function checkConditionInfo(t: ScsiTask, key: number, ascq: number, info: number): void {
  t.status = Status.CHECK_CONDITION;
  t.senseLen = writeFixedSense(t.sense, 0, key, ascq, info, -1, false, -1);
}

/** ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at CDB byte `field` (bit `bit`, or -1). */
export function invalidCdbField(t: ScsiTask, field: number, bit: number): void {
  t.status = Status.CHECK_CONDITION;
  t.senseLen = writeFixedSense(t.sense, 0, 0x5, 0x2400, -1, field, true, bit);
}

/** ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, pointing at parameter byte `field`. */
export function invalidParamField(t: ScsiTask, field: number, bit: number): void {
  t.status = Status.CHECK_CONDITION;
  t.senseLen = writeFixedSense(t.sense, 0, 0x5, 0x2600, -1, field, false, bit);
}
