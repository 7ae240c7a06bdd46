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
export const LOG = { ERROR: 0x01, SMART: 0x02, FW_SLOT: 0x03, CHANGED_NS: 0x04 } as const;
/** Get Log Page CDW10 bit 15: Retain Asynchronous Event (the event stays uncleared, its type masked). */
export const LOG_RAE = 1 << 15;

// ---- Identify CNS values
export const CNS = {
  NS: 0x00, CTRLR: 0x01, ACTIVE_NS_LIST: 0x02, NS_DESCRIPTORS: 0x03,
  /** I/O Command Set specific Identify Namespace / Controller (CSI in CDW11 bits 31:24; TP 4056, NVMe 2.0). */
  NS_CSI: 0x05, CTRLR_CSI: 0x06,
} as const;
/** Command Set Identifier of the NVM command set (the only one CAP.CSS offers). */
export const CSI_NVM = 0;

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
  /** Invalid SGL (Last) Segment Descriptor (named "Invalid SGL Last Segment Descriptor" before NVMe 1.4). */
  INVALID_SGL_SEGMENT: 0x00d,
  INVALID_NUM_SGL_DESCRIPTORS: 0x00e,
  DATA_SGL_LENGTH_INVALID: 0x00f,
  SGL_DESCRIPTOR_TYPE_INVALID: 0x011,
  PRP_OFFSET_INVALID: 0x013,
  SGL_OFFSET_INVALID: 0x016,
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

/** Mask of the status bits (SCT and SC) that make a completion an error. */
export const SC_MASK = 0x7ff;

// ---- async events
export const AER_TYPE_ERROR = 0, AER_TYPE_SMART = 1, AER_TYPE_NOTICE = 2;
export const AER_INFO_INVALID_DB_REG = 0x00, AER_INFO_INVALID_DB_VALUE = 0x01;
/** Notice: Namespace Attribute Changed (its log page: Changed Namespace List). */
export const AER_INFO_NS_ATTR_CHANGED = 0x00;
/** Asynchronous Event Configuration (feature 0Bh) bit 8 and Identify Controller OAES bit 8: Namespace Attribute Notices. */
export const AEC_NS_ATTR = 1 << 8;
export const OAES_NS_ATTR = 1 << 8;

// ---- Error Information log (LID 01h): a ring of the most recent entries, 64 bytes each
export const LOG_ERROR_ENTRIES = 64;   // Identify Controller ELPE = this - 1
export const ERROR_ENTRY = 64;

// ---- command fields
/** CDW0 bits 15:14 (byte 1 bits 7:6): PRP or SGL for data transfer. */
export const PSDT_PRP = 0, PSDT_SGL = 1, PSDT_SGL_MPTR_SGL = 2;
/** SGL descriptor types (byte 15 bits 7:4) and sub types (bits 3:0). */
export const SGL = { DATA_BLOCK: 0x0, BIT_BUCKET: 0x1, SEGMENT: 0x2, LAST_SEGMENT: 0x3, KEYED_DATA_BLOCK: 0x4, TRANSPORT_DATA_BLOCK: 0x5 } as const;
export const SGL_SUBTYPE_ADDRESS = 0x0, SGL_SUBTYPE_OFFSET = 0x1;
export const SGL_DESC = 16;
/**
 * Identify Controller SGLS: SGLs supported without alignment or granularity requirements
 * (bits 1:0 = 01b) and SGL Bit Bucket descriptors (bit 16, honoured for Read only).
 * No keyed/transport descriptors, no metadata SGLs, no SGL longer than the transfer.
 */
export const SGLS = 0x1 | (1 << 16);
/** Descriptors (data, bit bucket and segment ones) one command's SGL may have in all: bounds looping chains. */
export const MAX_SGL_DESCRIPTORS = 256;

/** Abort Command Limit (0-based in Identify Controller ACL): 4 Aborts outstanding. */
export const ACL = 3;
/** Compare commands in progress at once per controller (bounce buffers of MAX_XFER each). */
export const COMPARE_BUFFERS = 4;

/** Limits the controller advertises. */
export const MQES = 1023;          // CAP.MQES (0-based): 1024 entries
export const MDTS = 5;             // 2^5 * 4 KiB = 128 KiB per command
export const PAGE = 4096;
export const MAX_XFER = PAGE << MDTS;
export const MAX_IO_QUEUES = 31;   // I/O queue pairs per controller (vectors 0..31)
export const NUM_MSIX = MAX_IO_QUEUES + 1;
export const MAX_NS = 32;
export const SQE = 64, CQE = 16;
