// SCSI numbers used by the logical-unit layer: operation codes (SPC-4/SBC-3), status
// codes (SAM-5), sense keys and additional sense codes (SPC-4 annex D), and the
// limits this implementation advertises in its Block Limits VPD page.

/** Operation codes handled by executeScsi. */
export const Op = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  VERIFY_10: 0x2f,
  SYNCHRONIZE_CACHE_10: 0x35,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  MODE_SELECT_10: 0x55,
  MODE_SENSE_10: 0x5a,
  READ_16: 0x88,
  WRITE_16: 0x8a,
  VERIFY_16: 0x8f,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  VERIFY_12: 0xaf,
} as const;

/** SERVICE ACTION IN(16) service actions. */
export const SAI_READ_CAPACITY_16 = 0x10;

/** SAM-5 status codes. */
export const Status = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  TASK_ABORTED: 0x40,
} as const;

/** Sense keys. */
export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  ABORTED_COMMAND: 0xb,
} as const;

/** Additional sense code and qualifier, packed as (ASC << 8) | ASCQ. */
export const Asc = {
  NO_ADDITIONAL_SENSE: 0x0000,
  LUN_NOT_READY: 0x0400,
  PERIPHERAL_DEVICE_WRITE_FAULT: 0x0300,
  UNRECOVERED_READ_ERROR: 0x1100,
  PARAMETER_LIST_LENGTH_ERROR: 0x1a00,
  INVALID_COMMAND_OPERATION_CODE: 0x2000,
  LBA_OUT_OF_RANGE: 0x2100,
  INVALID_FIELD_IN_CDB: 0x2400,
  LOGICAL_UNIT_NOT_SUPPORTED: 0x2500,
  INVALID_FIELD_IN_PARAMETER_LIST: 0x2600,
  WRITE_PROTECTED: 0x2700,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x3900,
  INTERNAL_TARGET_FAILURE: 0x4400,
  DATA_IN_BUFFER_OVERFLOW: 0x4b08,
  DATA_OUT_BUFFER_OVERFLOW: 0x4b0b,
} as const;

/** Direction of a task's data buffer, as the transport found it. */
export const DataDir = { NONE: 0, TO_DEVICE: 1, FROM_DEVICE: 2 } as const;

/** Peripheral device type of a disk, and the byte INQUIRY returns for an absent LUN. */
export const PDT_DISK = 0x00;
export const PQ_NOT_CONNECTED_BYTE = 0x7f; // qualifier 3, device type 1Fh

/** Largest CDB a task holds (virtio-scsi's default cdb_size). */
export const CDB_MAX = 32;
/** Room for sense data in a task; fixed format uses 18 bytes. */
export const SENSE_MAX = 32;
export const FIXED_SENSE_LEN = 18;

/** Advertised limits (Block Limits VPD page), enforced by the command decoders. */
export const MAX_UNMAP_DESCRIPTORS = 256;           // as SPDK
export const MAX_UNMAP_LBA_COUNT = 0x400000;        // 4 Mi blocks, as SPDK
export const MAX_WRITE_SAME_BLOCKS = 0xffff;
/** Default MAXIMUM TRANSFER LENGTH in bytes (SPDK: 4 MiB). */
export const DEFAULT_MAX_TRANSFER_BYTES = 4 * 1024 * 1024;

export const VENDOR_ID = 'VHOSTD';
export const PRODUCT_REVISION = '0001';
/**
 * IEEE company id put in the NAA type 6 designator. vhostd has no OUI of its own;
 * this is the one SPDK puts in its NAA designators (00-03-47). LunInfo.naaCompanyId overrides it.
 */
export const DEFAULT_NAA_COMPANY_ID = 0x000347;

/** Segments the WRITE SAME pattern path may use to repeat its one block. */
export const WS_SEGS = 32;

/** What a task's bdev I/O sequence is doing (block.ts). */
export const Job = { NONE: 0, RW: 1, FLUSH: 2, UNMAP: 3, WS_ZERO: 4, WS_PATTERN: 5 } as const;
