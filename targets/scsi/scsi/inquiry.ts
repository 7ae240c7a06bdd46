// INQUIRY: standard data and the VPD pages a Linux initiator reads (SPC-4 6.6, 7.8;
// SBC-3 6.6). Responses are built in the thread's scratch buffer.
import { MAX_UNMAP_DESCRIPTORS, MAX_UNMAP_LBA_COUNT, MAX_WRITE_SAME_BLOCKS, PDT_DISK,
  PQ_NOT_CONNECTED_BYTE } from './constants.js';
import { put16, put32, put64, putAscii } from './cdb.js';
import type { ScsiLun } from './lun.js';

/** Standard INQUIRY data length we return: 36 bytes + vendor specific + version descriptors. */
export const STD_INQUIRY_LEN = 74;

const VPD_PAGES = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/** Standard INQUIRY data into out[0..); returns its length. */
export function standardInquiry(lun: ScsiLun, out: Uint8Array): number {
  out.fill(0, 0, STD_INQUIRY_LEN);
  out[0] = PDT_DISK;          // peripheral qualifier 0: connected
  out[1] = 0;                 // not removable
  out[2] = 0x06;              // VERSION: SPC-4
  out[3] = 0x12;              // HISUP, response data format 2
  out[4] = STD_INQUIRY_LEN - 5;
  out[7] = 0x02;              // CMDQUE
  putAscii(out, 8, lun.vendor, 8);
  putAscii(out, 16, lun.product, 16);
  putAscii(out, 32, lun.revision, 4);
  // Version descriptors (bytes 58..73): SAM-5, SPC-4, SBC-3, no version claimed.
  put16(out, 58, 0x00a0);
  put16(out, 60, 0x0460);
  put16(out, 62, 0x04c0);
  return STD_INQUIRY_LEN;
}

/** INQUIRY data for a LUN that does not exist (or was removed): qualifier 3, type 1Fh. */
export function absentInquiry(evpd: boolean, page: number, out: Uint8Array): number {
  if (evpd) {
    out.fill(0, 0, 4);
    out[0] = PQ_NOT_CONNECTED_BYTE;
    out[1] = page;
    return 4;
  }
  out.fill(0, 0, 36);
  out[0] = PQ_NOT_CONNECTED_BYTE;
  out[2] = 0x06;
  out[3] = 0x12;
  out[4] = 36 - 5;
  return 36;
}

/** A VPD page into out[0..); returns its length, or -1 if the page is not supported. */
export function vpdPage(lun: ScsiLun, page: number, out: Uint8Array): number {
  out.fill(0, 0, 64);
  out[0] = PDT_DISK;
  out[1] = page;
  let len: number; // page length (bytes after the 4-byte header)
  switch (page) {
    case 0x00: // supported VPD pages
      for (let i = 0; i < VPD_PAGES.length; i++) out[4 + i] = VPD_PAGES[i];
      len = VPD_PAGES.length;
      break;
    case 0x80: { // unit serial number
      const s = lun.serial;
      for (let i = 0; i < s.length; i++) out[4 + i] = s[i];
      len = s.length;
      break;
    }
    case 0x83: { // device identification
      let p = 4;
      // 1. NAA IEEE Registered Extended (type 6), logical unit association.
      out[p] = 0x01;            // protocol id 0 (PIV=0), code set 1: binary
      out[p + 1] = 0x03;        // PIV=0, association 0 (LU), designator type 3: NAA
      out[p + 2] = 0;
      out[p + 3] = 16;
      for (let i = 0; i < 16; i++) out[p + 4 + i] = lun.naa[i];
      p += 20;
      // 2. T10 vendor ID based: vendor(8) + product(16) + serial, ASCII.
      const sl = lun.serial.length < 231 ? lun.serial.length : 231;
      out[p] = 0x02;            // code set 2: ASCII
      out[p + 1] = 0x01;        // association LU, designator type 1: T10 vendor ID
      out[p + 2] = 0;
      out[p + 3] = 24 + sl;
      putAscii(out, p + 4, lun.vendor, 8);
      putAscii(out, p + 12, lun.product, 16);
      for (let i = 0; i < sl; i++) out[p + 28 + i] = lun.serial[i];
      p += 28 + sl;
      len = p - 4;
      break;
    }
    case 0xb0: { // block limits (SBC-3 6.6.4), page length 3Ch
      len = 0x3c;
      out[4] = 0x01;            // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is rejected
      out[5] = 0;               // MAXIMUM COMPARE AND WRITE LENGTH: not supported
      put16(out, 6, lun.blockSize < 4096 ? 4096 / lun.blockSize : 1); // OPTIMAL TRANSFER LENGTH GRANULARITY
      put32(out, 8, lun.maxTransferBlocks);   // MAXIMUM TRANSFER LENGTH
      put32(out, 12, lun.maxTransferBlocks);  // OPTIMAL TRANSFER LENGTH
      if (lun.supportsUnmap) {
        put32(out, 20, MAX_UNMAP_LBA_COUNT);  // MAXIMUM UNMAP LBA COUNT
        put32(out, 24, MAX_UNMAP_DESCRIPTORS); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
      }
      put64(out, 36, MAX_WRITE_SAME_BLOCKS);   // MAXIMUM WRITE SAME LENGTH
      break;
    }
    case 0xb1: // block device characteristics
      len = 0x3c;
      put16(out, 4, 1);         // MEDIUM ROTATION RATE: non-rotating
      break;
    case 0xb2: // logical block provisioning
      len = 4;
      out[4] = 0;               // THRESHOLD EXPONENT
      // LBPU (UNMAP), LBPWS (WRITE SAME 16 with UNMAP), LBPWS10; LBPRZ=0, ANC_SUP=0, DP=0.
      out[5] = lun.supportsUnmap ? 0xe0 : 0;
      out[6] = lun.supportsUnmap ? 0x02 : 0x00; // PROVISIONING TYPE: thin / not reported (full)
      break;
    default:
      return -1;
  }
  put16(out, 2, len);
  return 4 + len;
}
