// NVMe 1.4 constants used by the emulated controller: registers, opcodes, status codes.

// ---- BAR0 registers
export const REG = {
  CAP: 0x00, VS: 0x08, INTMS: 0x0c, INTMC: 0x10, CC: 0x14, CSTS: 0x1c, NSSR: 0x20,
  AQA: 0x24, ASQ: 0x28, ACQ: 0x30, CMBLOC: 0x38, CMBSZ: 0x3c,
} as const;
export const DOORBELL_BASE = 0x1000;
/** BAR0: registers page + doorbell page (DSTRD=0, 4-byte doorbells: 512 queue pairs) + room. */
export const BAR0_SIZE = 0x4000;
export const DOORBELL_AREA = 0x1000;
export const MAX_QUEUE_PAIRS = DOORBELL_AREA / 8;

export const CC_EN = 1, CC_SHN_SHIFT = 14, CC_SHN_MASK = 3;
export const CSTS_RDY = 1, CSTS_CFS = 2, CSTS_SHST_SHIFT = 2, CSTS_SHST_NORMAL = 0, CSTS_SHST_COMPLETE = 2;

export const NVME_VERSION = 0x00010400;

// ---- admin opcodes
export const ADM = {
  DELETE_SQ: 0x00, CREATE_SQ: 0x01, GET_LOG_PAGE: 0x02, DELETE_CQ: 0x04, CREATE_CQ: 0x05, IDENTIFY: 0x06,
  ABORT: 0x08, SET_FEATURES: 0x09, GET_FEATURES: 0x0a, ASYNC_EVENT: 0x0c, KEEP_ALIVE: 0x18, DBBUF_CONFIG: 0x7c,
} as const;

// ---- I/O opcodes
export const IO = { FLUSH: 0x00, WRITE: 0x01, READ: 0x02, COMPARE: 0x05, WRITE_ZEROES: 0x08, DSM: 0x09 } as const;

// ---- features
export const FEAT = {
  ARBITRATION: 0x01, POWER_MGMT: 0x02, TEMP_THRESH: 0x04, ERROR_RECOVERY: 0x05, VWC: 0x06, NUM_QUEUES: 0x07,
  IRQ_COALESCE: 0x08, IRQ_CONFIG: 0x09, WRITE_ATOMIC: 0x0a, ASYNC_EVENT: 0x0b, KEEP_ALIVE: 0x0f,
} as const;

// ---- log pages
export const LOG = { ERROR: 0x01, SMART: 0x02, FW_SLOT: 0x03 } as const;

// ---- status: (SCT << 8) | SC
export const SCT_GENERIC = 0, SCT_CMD = 1, SCT_MEDIA = 2;
export const SC = {
  SUCCESS: 0x000,
  INVALID_OPCODE: 0x001,
  INVALID_FIELD: 0x002,
  CID_CONFLICT: 0x003,
  DATA_XFER_ERROR: 0x004,
  INTERNAL: 0x006,
  ABORT_REQ: 0x007,
  ABORT_SQ_DELETED: 0x008,
  INVALID_NS: 0x00b,
  PRP_OFFSET_INVALID: 0x013,
  LBA_OUT_OF_RANGE: 0x080,
  NS_NOT_READY: 0x082,
  // command specific (SCT 1)
  CQ_INVALID: 0x100,
  INVALID_QID: 0x101,
  INVALID_QSIZE: 0x102,
  ABORT_LIMIT: 0x103,
  AER_LIMIT: 0x105,
  INVALID_LOG_PAGE: 0x109,
  INVALID_IRQ_VECTOR: 0x108,
  INVALID_QUEUE_DELETION: 0x10c,
  FEATURE_NOT_SAVEABLE: 0x10d,
  // media errors (SCT 2)
  COMPARE_FAILURE: 0x285,
  /** Do Not Retry bit, or'ed into a status. */
  DNR: 0x8000,
} as const;

/** Completion DW3 upper half for a status (SCT<<8|SC, optional DNR) and phase. */
export function statusField(status: number, phase: number): number {
  const sc = status & 0xff, sct = (status >> 8) & 0x7, dnr = (status & SC.DNR) ? 1 : 0;
  return (phase & 1) | (sc << 1) | (sct << 9) | (dnr << 15);
}

// ---- async events
export const AER_TYPE_ERROR = 0, AER_TYPE_SMART = 1, AER_TYPE_NOTICE = 2;
export const AER_INFO_INVALID_DB_REG = 0x00, AER_INFO_INVALID_DB_VALUE = 0x01;
export const LOG_ERROR_ENTRIES = 1;

/** Limits the controller advertises. */
export const MQES = 1023;          // CAP.MQES (0-based): 1024 entries
export const MDTS = 5;             // 2^5 * 4 KiB = 128 KiB per command
export const PAGE = 4096;
export const MAX_XFER = PAGE << MDTS;
export const MAX_IO_QUEUES = 31;   // I/O queue pairs per controller (vectors 0..31)
export const NUM_MSIX = MAX_IO_QUEUES + 1;
export const MAX_NS = 32;
export const SQE = 64, CQE = 16;
