// NVMe constants the host driver uses (NVMe base spec 1.4 / 2.0): registers, opcodes,
// queue entry layout, status fields. Host side only; the emulated controller has its own.

export const PAGE = 4096;
export const REG = { CAP: 0x00, VS: 0x08, CC: 0x14, CSTS: 0x1c, AQA: 0x24, ASQ: 0x28, ACQ: 0x30 } as const;
export const DOORBELL_BASE = 0x1000;

export const CC_EN = 1;
/** CC: I/O SQ entry 2^6, CQ entry 2^4, MPS 4 KiB, NVM command set, round robin. */
export const CC_IOQES = (6 << 16) | (4 << 20);
export const CC_SHN_NORMAL = 1 << 14;
export const CSTS_RDY = 1, CSTS_CFS = 2, CSTS_SHST_MASK = 3 << 2, CSTS_SHST_COMPLETE = 2 << 2;

export const ADM = {
  DELETE_SQ: 0x00, CREATE_SQ: 0x01, GET_LOG_PAGE: 0x02, DELETE_CQ: 0x04, CREATE_CQ: 0x05, IDENTIFY: 0x06,
  ABORT: 0x08, SET_FEATURES: 0x09, GET_FEATURES: 0x0a,
} as const;
export const IO = { FLUSH: 0x00, WRITE: 0x01, READ: 0x02, WRITE_ZEROES: 0x08, DSM: 0x09 } as const;
export const CNS = { NS: 0x00, CTRLR: 0x01, ACTIVE_NS_LIST: 0x02 } as const;
export const FEAT_NUM_QUEUES = 0x07;
export const LOG_ERROR = 0x01;
/** DSM attribute: deallocate. */
export const DSM_AD = 1 << 2;

/** Identify Controller ONCS bits. */
export const ONCS_DSM = 1 << 2, ONCS_WRITE_ZEROES = 1 << 3;

export const SQE_BYTES = 64, CQE_BYTES = 16;
export const SQE_WORDS = 16, CQE_WORDS = 4;
/** Entries of the admin queues. */
export const ADMIN_DEPTH = 32;
/** Most blocks one Read/Write/Write Zeroes command can carry (NLB is 16 bits, 0-based). */
export const MAX_NLB = 65536;
/** DSM ranges per command and the most blocks per range (32-bit length). */
export const DSM_MAX_RANGES = 256;
export const DSM_RANGE_MAX_BLOCKS = 0xffffffff;

export const TWO32 = 4294967296;

/** Status field (SCT<<8 | SC) of a completion's DW3. */
export function cqeStatus(dw3: number): number { return (dw3 >>> 17) & 0x7ff; }

export function statusText(st: number): string {
  const sct = (st >> 8) & 7, sc = st & 0xff;
  return `SCT ${sct} SC 0x${sc.toString(16).padStart(2, '0')}`;
}
