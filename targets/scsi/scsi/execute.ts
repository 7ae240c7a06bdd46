// executeScsi: the entry point. Validates the CDB frame, routes the command, and
// answers the non-I/O commands (INQUIRY, MODE SENSE/SELECT, READ CAPACITY, REPORT LUNS,
// REQUEST SENSE, TEST UNIT READY, START STOP UNIT) from the thread's scratch buffer.
import { Asc, Op, SAI_READ_CAPACITY_16, SenseKey } from './constants.js';
import { be16, be32, be64, CDB_LEN, put32, put64 } from './cdb.js';
import { dataOutLength, gatherOut, scatterIn, scratch, SCRATCH_SIZE } from './data.js';
import { absentInquiry, standardInquiry, vpdPage } from './inquiry.js';
import { modeSelect, modeSense } from './mode.js';
import { checkCondition, invalidCdbField, writeFixedSense } from './sense.js';
import { completeTask, execReadWrite, execSyncCache, execUnmap, execVerify, execWriteSame, Job, overflow,
  startFlush } from './block.js';
import type { ScsiLun } from './lun.js';
import type { ScsiTask } from './task.js';

const modeCur = new Uint8Array(64);
/** Largest MODE SELECT parameter list accepted (ours is at most 8 + 16 + 3 pages). */
const MODE_SELECT_MAX = 512;

/** Copies min(len, alloc) bytes of the scratch response to the data-in buffer and completes. */
function respond(t: ScsiTask, len: number, alloc: number): void {
  scatterIn(t, scratch, len < alloc ? len : alloc);
  completeTask(t);
}

function resetTask(t: ScsiTask, lun: ScsiLun | null): void {
  if (t.busy) throw new Error(`ScsiTask ${t.tag} executed while still in flight`);
  t.busy = true;
  t.status = 0;
  t.senseLen = 0;
  t.dataTransferred = 0;
  t.residual = 0;
  t.overrun = false;
  t.failed = false;
  t.ioBusy = false;
  t.pumping = false;
  t.flushAfter = false;
  t.job = Job.NONE;
  t.phase = 0;
  t.clipIdx = -1;
  t.lun = lun;
}

/**
 * Executes the command in `task` against `lun` (null or removed = no such LUN).
 * Completes by calling task.sink.onScsiTaskDone(task) exactly once, possibly before
 * returning. The task must not be executed again until then.
 */
export function executeScsi(lun: ScsiLun | null, task: ScsiTask): void {
  const t = task;
  resetTask(t, lun);
  const c = t.cdb;
  if (t.cdbLen < 1) { invalidCdbField(t, 0, -1); completeTask(t); return; }
  const op = c[0];
  const absent = lun === null || lun.removed;
  if (absent && op !== Op.INQUIRY && op !== Op.REPORT_LUNS && op !== Op.REQUEST_SENSE) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED);
    completeTask(t);
    return;
  }
  const need = CDB_LEN[op];
  if (need === 0) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE);
    completeTask(t);
    return;
  }
  // A CDB shorter than its operation code requires: the fields we would read are missing.
  if (t.cdbLen < need) { invalidCdbField(t, 0, -1); completeTask(t); return; }
  const ctl = c[need - 1];
  if ((ctl & 0x04) !== 0) { invalidCdbField(t, need - 1, 2); completeTask(t); return; } // NACA
  if ((ctl & 0x01) !== 0) { invalidCdbField(t, need - 1, 0); completeTask(t); return; } // LINK (obsolete)

  OPS[op](t, lun!, absent);
}

/** Runs one command on a present LUN (or, for the three that answer for an absent one, lun may be absent). */
type OpHandler = (t: ScsiTask, lun: ScsiLun, absent: boolean) => void;

function unsupported(t: ScsiTask): void { // unreachable: CDB_LEN lists exactly the opcodes below
  checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE);
  completeTask(t);
}

/** The handler of every operation code (a table indexed by the opcode, as CDB_LEN). */
const OPS: OpHandler[] = new Array<OpHandler>(256).fill(unsupported);
for (const op of [Op.READ_6, Op.READ_10, Op.READ_12, Op.READ_16, Op.WRITE_6, Op.WRITE_10, Op.WRITE_12, Op.WRITE_16]) OPS[op] = execReadWrite;
OPS[Op.WRITE_SAME_10] = OPS[Op.WRITE_SAME_16] = execWriteSame;
OPS[Op.UNMAP] = execUnmap;
OPS[Op.SYNCHRONIZE_CACHE_10] = OPS[Op.SYNCHRONIZE_CACHE_16] = execSyncCache;
OPS[Op.VERIFY_10] = OPS[Op.VERIFY_12] = OPS[Op.VERIFY_16] = execVerify;
OPS[Op.INQUIRY] = (t, lun, absent) => inquiry(t, absent ? null : lun);
OPS[Op.REQUEST_SENSE] = (t, _lun, absent) => requestSense(t, absent);
OPS[Op.REPORT_LUNS] = (t) => reportLuns(t);
OPS[Op.TEST_UNIT_READY] = (t, lun) => {
  if (lun.channel === null) checkCondition(t, SenseKey.NOT_READY, Asc.LUN_NOT_READY);
  completeTask(t);
};
OPS[Op.START_STOP_UNIT] = startStop;
OPS[Op.READ_CAPACITY_10] = readCapacity10;
OPS[Op.SERVICE_ACTION_IN_16] = serviceActionIn16;
OPS[Op.MODE_SENSE_6] = OPS[Op.MODE_SENSE_10] = modeSenseCmd;
OPS[Op.MODE_SELECT_6] = OPS[Op.MODE_SELECT_10] = modeSelectCmd;

function modeSenseCmd(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  const alloc = c[0] === Op.MODE_SENSE_10 ? be16(c, 7) : c[4];
  const len = modeSense(t, lun, scratch);
  if (len < 0) { completeTask(t); return; }
  respond(t, len, alloc);
}

function inquiry(t: ScsiTask, lun: ScsiLun | null): void {
  const c = t.cdb;
  const evpd = (c[1] & 0x01) !== 0, page = c[2], alloc = be16(c, 3);
  if ((c[1] & 0x02) !== 0) { invalidCdbField(t, 1, 1); completeTask(t); return; } // CMDDT (obsolete)
  if (!evpd && page !== 0) { invalidCdbField(t, 2, -1); completeTask(t); return; }
  let len: number;
  if (lun === null) len = absentInquiry(evpd, page, scratch);
  else if (evpd) {
    len = vpdPage(lun, page, scratch);
    if (len < 0) { invalidCdbField(t, 2, -1); completeTask(t); return; }
  } else len = standardInquiry(lun, scratch);
  respond(t, len, alloc);
}

/** REQUEST SENSE: sense is always delivered with the failing command (autosense), so this
 * reports NO SENSE, or LOGICAL UNIT NOT SUPPORTED for an absent LUN (SPC-4 6.39). */
function requestSense(t: ScsiTask, absent: boolean): void {
  const c = t.cdb, alloc = c[4];
  const key = absent ? SenseKey.ILLEGAL_REQUEST : SenseKey.NO_SENSE;
  const ascq = absent ? Asc.LOGICAL_UNIT_NOT_SUPPORTED : Asc.NO_ADDITIONAL_SENSE;
  let len: number;
  if ((c[1] & 0x01) !== 0) { // DESC: descriptor format, no descriptors
    scratch.fill(0, 0, 8);
    scratch[0] = 0x72; scratch[1] = key; scratch[2] = ascq >>> 8; scratch[3] = ascq & 0xff;
    len = 8;
  } else {
    len = writeFixedSense(scratch, 0, key, ascq, -1, -1, false, -1);
  }
  respond(t, len, alloc);
}

function reportLuns(t: ScsiTask): void {
  const c = t.cdb, sel = c[2], alloc = be32(c, 6);
  if (alloc < 16) { invalidCdbField(t, 6, -1); completeTask(t); return; }
  if (sel > 2) { invalidCdbField(t, 2, -1); completeTask(t); return; }
  const luns = t.targetLuns;
  const count = sel === 1 || luns === null ? 0 : t.targetLunCount; // no well-known LUs
  const max = (SCRATCH_SIZE - 8) >>> 3;
  const n = count < max ? count : max;
  scratch.fill(0, 0, 8 + 8 * n);
  put32(scratch, 0, 8 * count); // LUN LIST LENGTH: the whole list, even if truncated
  for (let i = 0; i < n; i++) {
    const id = luns![i], o = 8 + 8 * i;
    if (id < 256) { scratch[o + 1] = id; }                       // peripheral device addressing
    else { scratch[o] = 0x40 | ((id >>> 8) & 0x3f); scratch[o + 1] = id & 0xff; } // flat space
  }
  respond(t, 8 + 8 * n, alloc);
}

function startStop(t: ScsiTask, lun: ScsiLun): void {
  const b4 = t.cdb[4];
  // STOP (START=0) with power condition 0 and NO_FLUSH=0: write the cache out first.
  if ((b4 & 0xf0) === 0 && (b4 & 0x01) === 0 && (b4 & 0x04) === 0 && lun.channel !== null) {
    startFlush(t, lun, 0, lun.numBlocks);
    return;
  }
  completeTask(t);
}

function readCapacity10(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  if ((c[8] & 0x01) === 0 && be32(c, 2) !== 0) { invalidCdbField(t, 2, -1); completeTask(t); return; }
  const last = lun.numBlocks - 1;
  put32(scratch, 0, last >= 0xffffffff ? 0xffffffff : last); // FFFFFFFFh: use READ CAPACITY(16)
  put32(scratch, 4, lun.blockSize);
  respond(t, 8, 8);
}

function serviceActionIn16(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  if ((c[1] & 0x1f) !== SAI_READ_CAPACITY_16) { invalidCdbField(t, 1, 4); completeTask(t); return; }
  if ((c[14] & 0x01) === 0 && be64(c, 2) !== 0) { invalidCdbField(t, 2, -1); completeTask(t); return; }
  const alloc = be32(c, 10);
  scratch.fill(0, 0, 32);
  put64(scratch, 0, lun.numBlocks - 1);   // RETURNED LOGICAL BLOCK ADDRESS
  put32(scratch, 8, lun.blockSize);       // LOGICAL BLOCK LENGTH IN BYTES
  // byte 12: no protection; 13: one logical block per physical block;
  // 14: LBPME (unmap supported), LBPRZ=0, lowest aligned LBA 0.
  if (lun.supportsUnmap) scratch[14] = 0x80;
  respond(t, 32, alloc);
}

function modeSelectCmd(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  const pll = c[0] === Op.MODE_SELECT_10 ? be16(c, 7) : c[4];
  if ((c[1] & 0x01) !== 0) { invalidCdbField(t, 1, 0); completeTask(t); return; }  // SP: can't save
  if (pll === 0) { completeTask(t); return; }
  if ((c[1] & 0x10) === 0) { invalidCdbField(t, 1, 4); completeTask(t); return; }  // PF=0: vendor format
  if (dataOutLength(t) < pll) { overflow(t, true); completeTask(t); return; }
  if (pll > MODE_SELECT_MAX) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR); completeTask(t); return;
  }
  gatherOut(t, 0, scratch, 0, pll);
  const r = modeSelect(t, lun, scratch, pll, modeCur);
  if (r < 0) { completeTask(t); return; }
  t.dataTransferred = pll;
  if (r === 1 && lun.channel !== null) { startFlush(t, lun, 0, lun.numBlocks); return; } // cache now off
  completeTask(t);
}

