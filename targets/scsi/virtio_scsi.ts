// virtio-scsi wire constants (virtio 1.2, 5.6), this target's limits, feature bits and
// config space.
import { bit, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from '../../src/virtio/constants.js';

// ---- feature bits -------------------------------------------------------------------
export const VIRTIO_SCSI_F_INOUT = 0;
export const VIRTIO_SCSI_F_HOTPLUG = 1;
export const VIRTIO_SCSI_F_CHANGE = 2;
export const VIRTIO_SCSI_F_T10_PI = 3;

// ---- queues -------------------------------------------------------------------------
export const CONTROLQ = 0;
export const EVENTQ = 1;
export const FIRST_REQUESTQ = 2;
/** Request queues a controller offers (the vhost-user queue count is this + 2). */
export const SCSI_MAX_REQUEST_QUEUES = 62;
export const SCSI_MAX_QUEUES = SCSI_MAX_REQUEST_QUEUES + 2;

// ---- sizes ----------------------------------------------------------------------------
export const CDB_SIZE = 32;
export const SENSE_SIZE = 96;
/** struct virtio_scsi_cmd_req: lun[8] id(le64) task_attr prio crn cdb[CDB_SIZE]. */
export const CMD_REQ_FIXED = 19;
export const CMD_REQ_SIZE = CMD_REQ_FIXED + CDB_SIZE;
/** struct virtio_scsi_cmd_resp: sense_len(le32) resid(le32) status_qualifier(le16) status response sense[SENSE_SIZE]. */
export const CMD_RESP_FIXED = 12;
export const CMD_RESP_SIZE = CMD_RESP_FIXED + SENSE_SIZE;
/** struct virtio_scsi_ctrl_tmf_req: type subtype lun[8] id(le64); resp: response. */
export const TMF_REQ_SIZE = 24;
export const TMF_RESP_SIZE = 1;
/** struct virtio_scsi_ctrl_an_req: type lun[8] event_requested; resp: event_actual response. */
export const AN_REQ_SIZE = 16;
export const AN_RESP_SIZE = 5;
/** struct virtio_scsi_event: event lun[8] reason. */
export const EVENT_SIZE = 16;

// ---- response codes -------------------------------------------------------------------
export const VIRTIO_SCSI_S_OK = 0;
export const VIRTIO_SCSI_S_FUNCTION_COMPLETE = 0;
export const VIRTIO_SCSI_S_OVERRUN = 1;
export const VIRTIO_SCSI_S_ABORTED = 2;
export const VIRTIO_SCSI_S_BAD_TARGET = 3;
export const VIRTIO_SCSI_S_RESET = 4;
export const VIRTIO_SCSI_S_BUSY = 5;
export const VIRTIO_SCSI_S_TRANSPORT_FAILURE = 6;
export const VIRTIO_SCSI_S_TARGET_FAILURE = 7;
export const VIRTIO_SCSI_S_NEXUS_FAILURE = 8;
export const VIRTIO_SCSI_S_FAILURE = 9;
export const VIRTIO_SCSI_S_FUNCTION_SUCCEEDED = 10;
export const VIRTIO_SCSI_S_FUNCTION_REJECTED = 11;
export const VIRTIO_SCSI_S_INCORRECT_LUN = 12;

// ---- control queue ------------------------------------------------------------------------
export const VIRTIO_SCSI_T_TMF = 0;
export const VIRTIO_SCSI_T_AN_QUERY = 1;
export const VIRTIO_SCSI_T_AN_SUBSCRIBE = 2;

export const VIRTIO_SCSI_T_TMF_ABORT_TASK = 0;
export const VIRTIO_SCSI_T_TMF_ABORT_TASK_SET = 1;
export const VIRTIO_SCSI_T_TMF_CLEAR_ACA = 2;
export const VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET = 3;
export const VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET = 4;
export const VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET = 5;
export const VIRTIO_SCSI_T_TMF_QUERY_TASK = 6;
export const VIRTIO_SCSI_T_TMF_QUERY_TASK_SET = 7;

// ---- event queue --------------------------------------------------------------------------
export const VIRTIO_SCSI_T_NO_EVENT = 0;
export const VIRTIO_SCSI_T_TRANSPORT_RESET = 1;
export const VIRTIO_SCSI_T_ASYNC_NOTIFY = 2;
export const VIRTIO_SCSI_T_PARAM_CHANGE = 3;
/** PARAM_CHANGE reason: ASC 2Ah / ASCQ 09h, CAPACITY DATA HAS CHANGED (ASC in the low byte). */
export const PARAM_CAPACITY_CHANGED = 0x2a | (0x09 << 8);
export const VIRTIO_SCSI_T_EVENTS_MISSED = 0x80000000;

export const VIRTIO_SCSI_EVT_RESET_HARD = 0;
export const VIRTIO_SCSI_EVT_RESET_RESCAN = 1;
export const VIRTIO_SCSI_EVT_RESET_REMOVED = 2;

// ---- this target's limits --------------------------------------------------------------------
/** Targets per controller (SPDK_VHOST_SCSI_CTRLR_MAX_DEVS) and LUNs per target (LUN 0 only). */
export const SCSI_MAX_TARGETS = 8;
export const SCSI_MAX_LUN = 0;
/** Data segments per request (seg_max) and the largest transfer in 512-byte sectors (max_sectors). */
export const SCSI_SEG_MAX = 126;
export const SCSI_MAX_SECTORS = 8192;      // 4 MiB, the LUN layer's default MAXIMUM TRANSFER LENGTH
export const SCSI_CMD_PER_LUN = 128;
/**
 * Segments a chain may decode into: data + request + response, each possibly split at
 * region edges (as blk).
 */
export const SCSI_CHAIN_SEGS = 2 * (SCSI_SEG_MAX + 2);

/** Byte 0 of a virtio-scsi LUN address, and the flat-space marker of byte 2. */
export const LUN_ADDR_BYTE0 = 1;

/** Device feature bits: ring features, HOTPLUG (hot-add/remove events) and CHANGE (none sent yet, but harmless). */
export function scsiFeatures(): bigint {
  return bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) |
    bit(VIRTIO_SCSI_F_HOTPLUG) | bit(VIRTIO_SCSI_F_CHANGE);
}

/** struct virtio_scsi_config, 36 bytes (virtio 1.2 5.6.4). */
export function scsiConfigSpace(numRequestQueues: number): Uint8Array {
  const c = new Uint8Array(36);
  const dv = new DataView(c.buffer);
  dv.setUint32(0, numRequestQueues, true);  // num_queues (request queues)
  dv.setUint32(4, SCSI_SEG_MAX, true);      // seg_max
  dv.setUint32(8, SCSI_MAX_SECTORS, true);  // max_sectors
  dv.setUint32(12, SCSI_CMD_PER_LUN, true); // cmd_per_lun
  dv.setUint32(16, EVENT_SIZE, true);       // event_info_size
  dv.setUint32(20, SENSE_SIZE, true);       // sense_size
  dv.setUint32(24, CDB_SIZE, true);         // cdb_size
  dv.setUint16(28, 0, true);                // max_channel
  dv.setUint16(30, SCSI_MAX_TARGETS - 1, true); // max_target
  dv.setUint32(32, SCSI_MAX_LUN, true);     // max_lun
  return c;
}

/**
 * Decodes a virtio-scsi LUN address `01 target [40|lun>>8 | 00] lun 00 00 00 00`.
 * Returns the target (0..255) in bits 16..23 and the LUN (0..16383) in bits 0..15, or -1
 * when the address is malformed (byte 0 is not 1, or byte 2 is neither 0 nor a flat-space
 * 0x40..0x7f address).
 */
export function decodeLun(b0: number, b1: number, b2: number, b3: number): number {
  if (b0 !== LUN_ADDR_BYTE0) return -1;
  if (b2 !== 0 && (b2 < 0x40 || b2 > 0x7f)) return -1;
  return (b1 << 16) | (((b2 << 8) | b3) & 0x3fff);
}
