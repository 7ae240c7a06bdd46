// MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 6.11-6.14) for the pages a disk
// reports: Read-Write Error Recovery (01h), Caching (08h), Control (0Ah).
// Only WCE and RCD of the caching page are changeable; MODE SELECT accepts any page
// whose other bits match what MODE SENSE reports (what Linux's sd writes back).
import { Asc, Op, SenseKey } from './constants.js';
import { be16, put16, put32 } from './cdb.js';
import { checkCondition, invalidCdbField, invalidParamField } from './sense.js';
import type { ScsiLun } from './lun.js';
import type { ScsiTask } from './task.js';

const PAGE_RW_ERROR = 0x01, PAGE_CACHING = 0x08, PAGE_CONTROL = 0x0a, PAGE_ALL = 0x3f;

/** Page length byte (bytes after the 2-byte page header) per page code; 0 = unsupported. */
function pageLen(page: number): number {
  switch (page) {
    case PAGE_RW_ERROR: return 0x0a;
    case PAGE_CACHING: return 0x12;
    case PAGE_CONTROL: return 0x0a;
    default: return 0;
  }
}

/** Writes one page at out[o..) for page control pc (0 current, 1 changeable, 2 default). */
function writePage(lun: ScsiLun, page: number, pc: number, out: Uint8Array, o: number): number {
  const n = pageLen(page);
  out.fill(0, o, o + 2 + n);
  out[o] = page;              // PS=0: pages are not savable
  out[o + 1] = n;
  switch (page) {
    case PAGE_RW_ERROR:
      if (pc !== 1) out[o + 2] = 0x80; // AWRE
      break;
    case PAGE_CACHING:
      if (pc === 1) out[o + 2] = 0x05; // WCE and RCD changeable
      else if (pc === 2) out[o + 2] = lun.defaultWce ? 0x04 : 0;
      else out[o + 2] = (lun.wce ? 0x04 : 0) | (lun.rcd ? 0x01 : 0);
      break;
    case PAGE_CONTROL:
      if (pc !== 1) out[o + 3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
      break;
  }
  return 2 + n;
}

/** MODE SENSE(6) or (10) response into out[0..); returns its length or -1 (sense set). */
export function modeSense(t: ScsiTask, lun: ScsiLun, out: Uint8Array): number {
  const c = t.cdb;
  const ten = c[0] === Op.MODE_SENSE_10;
  const dbd = (c[1] & 0x08) !== 0;
  const llbaa = ten && (c[1] & 0x10) !== 0;
  const pc = c[2] >>> 6, page = c[2] & 0x3f, subpage = c[3];
  if (pc === 3) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.SAVING_PARAMETERS_NOT_SUPPORTED);
    return -1;
  }
  if (page !== PAGE_ALL && pageLen(page) === 0) { invalidCdbField(t, 2, 5); return -1; }
  if (subpage !== 0 && subpage !== 0xff) { invalidCdbField(t, 3, -1); return -1; }

  const hlen = ten ? 8 : 4;
  const blen = dbd ? 0 : llbaa ? 16 : 8;
  out.fill(0, 0, hlen + blen);
  let p = hlen;
  if (blen === 16) {          // long LBA block descriptor
    const nb = lun.numBlocks;
    put32(out, p, Math.floor(nb / 4294967296)); put32(out, p + 4, nb >>> 0);
    put32(out, p + 12, lun.blockSize);
  } else if (blen === 8) {    // short LBA block descriptor (SBC-3 6.4.2)
    put32(out, p, lun.numBlocks > 0xffffffff ? 0xffffffff : lun.numBlocks);
    put32(out, p + 4, lun.blockSize); // byte 4 reserved (0), 5..7 block length
  }
  p += blen;
  if (page === PAGE_ALL) {
    p += writePage(lun, PAGE_RW_ERROR, pc, out, p);
    p += writePage(lun, PAGE_CACHING, pc, out, p);
    p += writePage(lun, PAGE_CONTROL, pc, out, p);
  } else {
    p += writePage(lun, page, pc, out, p);
  }
  const devSpecific = (lun.readOnly ? 0x80 : 0) | 0x10; // WP, DPOFUA
  if (ten) {
    put16(out, 0, p - 2);
    out[3] = devSpecific;
    out[4] = llbaa && blen === 16 ? 0x01 : 0; // LONGLBA
    put16(out, 6, blen);
  } else {
    out[0] = p - 1;
    out[2] = devSpecific;
    out[3] = blen;
  }
  return p;
}

/**
 * Validates and applies a MODE SELECT parameter list already copied to buf[0..len).
 * Returns 0 when accepted, 1 when accepted and the write cache was just disabled
 * (the caller flushes), -1 on error (sense set). Nothing changes unless all is valid.
 */
export function modeSelect(t: ScsiTask, lun: ScsiLun, buf: Uint8Array, len: number, cur: Uint8Array): number {
  const ten = t.cdb[0] === Op.MODE_SELECT_10;
  const hlen = ten ? 8 : 4;
  if (len < hlen) { checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR); return -1; }
  const bdl = ten ? be16(buf, 6) : buf[3];
  if (hlen + bdl > len) { checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR); return -1; }
  const long = ten && (buf[4] & 1) !== 0;
  if (bdl !== 0 && bdl !== (long ? 16 : 8)) { invalidParamField(t, ten ? 6 : 3, -1); return -1; }
  if (bdl !== 0) {
    // Block length must be ours (or 0 = unchanged); capacity can't be changed this way, ignored.
    const o = hlen + (long ? 12 : 4);
    const bl = long ? buf[o] * 0x1000000 + ((buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3])
      : (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3];
    if (bl !== 0 && bl !== lun.blockSize) { invalidParamField(t, long ? o : o + 1, -1); return -1; }
  }
  let newWce = lun.wce, newRcd = lun.rcd;
  let p = hlen + bdl;
  while (p < len) {
    if (p + 2 > len) { checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR); return -1; }
    const page = buf[p] & 0x3f;
    if (buf[p] & 0x40) { invalidParamField(t, p, 6); return -1; } // no subpages here
    const n = pageLen(page);
    if (n === 0) { invalidParamField(t, p, 5); return -1; }
    if (buf[p + 1] !== n) { invalidParamField(t, p + 1, -1); return -1; }
    if (p + 2 + n > len) { checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR); return -1; }
    writePage(lun, page, 0, cur, 0);
    writePage(lun, page, 1, cur, 32);
    for (let i = 2; i < 2 + n; i++) {
      if (((buf[p + i] ^ cur[i]) & ~cur[32 + i] & 0xff) !== 0) { invalidParamField(t, p + i, -1); return -1; }
    }
    if (page === PAGE_CACHING) {
      newWce = (buf[p + 2] & 0x04) !== 0;
      newRcd = (buf[p + 2] & 0x01) !== 0;
    }
    p += 2 + n;
  }
  const flush = lun.wce && !newWce;
  lun.wce = newWce;
  lun.rcd = newRcd;
  return flush ? 1 : 0;
}
