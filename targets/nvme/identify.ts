// Identify data structures (NVMe 1.4 figures 247, 249, 251): controller, namespace,
// active namespace list and namespace identification descriptors; plus log pages.
import { ACL, LOG_ERROR_ENTRIES, MAX_IO_QUEUES, MAX_NS, MDTS, MQES, NVME_VERSION, OAES_NS_ATTR, SGLS } from './nvme_defs.js';

export const PCI_VENDOR_ID = 0x4e58;
export const PCI_DEVICE_ID = 0x0001;

export interface CtrlrIdentity {
  serial: string;
  model: string;
  firmware: string;
  subnqn: string;
  cntlid: number;
  /** OACS bit 8: Doorbell Buffer Config offered. */
  dbbuf: boolean;
  /** Volatile write cache present (the bdevs can flush). */
  vwc: boolean;
  /** ONCS bits offered. */
  compare: boolean;
  dsm: boolean;
  writeZeroes: boolean;
}

export interface NsIdentity {
  nsid: number;
  blockSize: number;
  numBlocks: number;
  /** 16 bytes (from the bdev UUID). */
  uuid: Uint8Array;
}

function ascii(b: Uint8Array, off: number, len: number, s: string): void {
  b.fill(0x20, off, off + len);
  const e = Buffer.from(s, 'ascii');
  b.set(e.subarray(0, len), off);
}

export function identifyController(c: CtrlrIdentity): Uint8Array {
  const b = new Uint8Array(4096), dv = new DataView(b.buffer);
  dv.setUint16(0, PCI_VENDOR_ID, true);
  dv.setUint16(2, PCI_VENDOR_ID, true);
  ascii(b, 4, 20, c.serial);
  ascii(b, 24, 40, c.model);
  ascii(b, 64, 8, c.firmware);
  b[72] = 6;                 // RAB
  b[76] = 0;                 // CMIC: single controller (no multipath head)
  b[77] = MDTS;
  dv.setUint16(78, c.cntlid, true);
  dv.setUint32(80, NVME_VERSION, true);
  dv.setUint32(92, OAES_NS_ATTR, true); // OAES: Namespace Attribute Notices (a namespace that grows)
  b[111] = 1;                // CNTRLTYPE: I/O controller
  dv.setUint16(256, c.dbbuf ? 1 << 8 : 0, true); // OACS
  b[258] = ACL;              // ACL (0-based)
  b[259] = 3;                // AERL (0-based)
  b[260] = 0x03;             // FRMW: slot 1 read-only, 1 slot
  b[261] = 0x00;             // LPA
  b[262] = LOG_ERROR_ENTRIES - 1; // ELPE (0-based)
  b[263] = 0;                // NPSS
  dv.setUint16(266, 0x0157, true); // WCTEMP 343 K
  dv.setUint16(268, 0x0175, true); // CCTEMP 373 K
  b[512] = 0x66;             // SQES: 64 bytes
  b[513] = 0x44;             // CQES: 16 bytes
  dv.setUint16(514, MQES + 1, true); // MAXCMD
  dv.setUint32(516, MAX_NS, true);   // NN
  let oncs = 0;
  if (c.compare) oncs |= 1;
  if (c.dsm) oncs |= 1 << 2;
  if (c.writeZeroes) oncs |= 1 << 3;
  dv.setUint16(520, oncs, true);
  b[525] = c.vwc ? 1 : 0;    // VWC
  dv.setUint32(536, SGLS, true); // SGLS: byte-aligned SGLs (+ Bit Bucket) for I/O commands
  ascii(b, 768, 256, '');
  b.fill(0, 768, 1024);
  b.set(Buffer.from(c.subnqn, 'utf8').subarray(0, 255), 768);
  // power state 0: 25 W, entry/exit latency 0
  dv.setUint16(2048, 2500, true);
  return b;
}

export function identifyNamespace(ns: NsIdentity | undefined): Uint8Array {
  const b = new Uint8Array(4096), dv = new DataView(b.buffer);
  if (!ns) return b; // inactive namespace: all zeros
  dv.setBigUint64(0, BigInt(ns.numBlocks), true);  // NSZE
  dv.setBigUint64(8, BigInt(ns.numBlocks), true);  // NCAP
  dv.setBigUint64(16, BigInt(ns.numBlocks), true); // NUSE
  b[24] = 0;   // NSFEAT
  b[25] = 0;   // NLBAF: one format (0-based)
  b[26] = 0;   // FLBAS: format 0
  b[30] = 0;   // NMIC
  b.set(ns.uuid.subarray(0, 16), 104); // NGUID
  const lbads = Math.log2(ns.blockSize);
  dv.setUint32(128, (lbads & 0xff) << 16, true); // LBAF0: MS 0, LBADS, RP 0
  return b;
}

/**
 * NVM Command Set specific Identify Controller (CNS 06h, CSI 00h): VSL, WZSL, WUSL, DMRL,
 * DMRSL and DMSL all 0, i.e. no limits beyond MDTS (Write Zeroes) and the 256 ranges of a
 * Dataset Management command. Linux asks for it at boot of any controller with VS >= 1.2.
 */
export function identifyControllerNvm(): Uint8Array { return new Uint8Array(4096); }

/**
 * NVM Command Set specific Identify Namespace (CNS 05h, CSI 00h): Logical Block Storage Tag
 * Mask, Protection Information Capabilities and the Extended LBA Formats are all 0 (no
 * protection information, no metadata, no storage tags), for an active namespace or not.
 */
export function identifyNamespaceNvm(): Uint8Array { return new Uint8Array(4096); }

export function activeNsList(nsids: number[], after: number): Uint8Array {
  const b = new Uint8Array(4096), dv = new DataView(b.buffer);
  let i = 0;
  for (const id of [...nsids].sort((x, y) => x - y)) {
    if (id > after && i < 1024) dv.setUint32(4 * i++, id, true);
  }
  return b;
}

export function nsDescriptors(ns: NsIdentity): Uint8Array {
  const b = new Uint8Array(4096);
  // NIDT 3: UUID
  b[0] = 3; b[1] = 16;
  b.set(ns.uuid.subarray(0, 16), 4);
  // NIDT 2: NGUID
  b[20] = 2; b[21] = 16;
  b.set(ns.uuid.subarray(0, 16), 24);
  return b;
}

export function uuidBytes(uuid: string): Uint8Array {
  const hex = uuid.replace(/-/g, '');
  const b = new Uint8Array(16);
  if (/^[0-9a-fA-F]{32}$/.test(hex)) for (let i = 0; i < 16; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return b;
}

/** Data units (thousands of 512-byte units, rounded up) for a byte count: SMART Data Units Read/Written. */
export function dataUnits(bytes: number): number { return Math.ceil(bytes / 512 / 1000); }

/** SMART / health log (512 bytes): temperature 300 K, spare 100 %, counters from the stats. */
export function smartLog(c: { dataUnitsRead: number; dataUnitsWritten: number; readCmds: number; writeCmds: number; powerOnHours: number;
  errorLogEntries: number }): Uint8Array {
  const b = new Uint8Array(512), dv = new DataView(b.buffer);
  dv.setUint16(1, 300, true); // composite temperature
  b[3] = 100; b[4] = 10;      // available spare, threshold
  const u128 = (off: number, v: number) => dv.setBigUint64(off, BigInt(Math.floor(v)), true);
  u128(32, c.dataUnitsRead); u128(48, c.dataUnitsWritten); u128(64, c.readCmds); u128(80, c.writeCmds);
  u128(128, c.powerOnHours);
  u128(176, c.errorLogEntries); // Number of Error Information Log Entries (over the controller's life)
  return b;
}

export function firmwareSlotLog(fw: string): Uint8Array {
  const b = new Uint8Array(512);
  b[0] = 1; // active slot 1
  ascii(b, 8, 8, fw);
  return b;
}

export { MAX_IO_QUEUES };
