// Block commands (SBC-3): READ/WRITE 6/10/12/16, WRITE SAME 10/16, UNMAP,
// SYNCHRONIZE CACHE 10/16, VERIFY 10/12/16, and the loop that drives the task's one
// BdevIo through the (possibly several) bdev I/Os a command needs.
//
// Hot path rules: no closures, promises or object literals. A task submits one bdev
// I/O at a time; `pump` keeps going while completions arrive synchronously (malloc,
// null) instead of recursing, and stops when one is left in flight (it resumes from
// blockIoDone).
import type { BdevIo } from '../../../bdev/bdev_io.js';
import { IoStatus, IoType } from '../../../bdev/types.js';
import { Asc, Job, WS_SEGS, MAX_UNMAP_DESCRIPTORS, MAX_UNMAP_LBA_COUNT, MAX_WRITE_SAME_BLOCKS, Op, SenseKey,
  Status } from './constants.js';
import { be16, be32, be64 } from './cdb.js';
import { clipSegments, dataInCapacity, dataOutIsZero, dataOutLength, gatherOut, unclip } from './data.js';
import { checkCondition, checkConditionInfo, invalidCdbField, invalidParamField } from './sense.js';
import type { ScsiLun } from './lun.js';
import type { ScsiTask } from './task.js';

export { Job, WS_SEGS } from './constants.js';

const desc = new Uint8Array(16);

// ---- completion ----------------------------------------------------------------------

/** Ends the task: restores borrowed segments, computes the residual, tells the sink. */
export function completeTask(t: ScsiTask): void {
  unclip(t);
  const r = t.transferLen - t.dataTransferred;
  t.residual = r > 0 ? r : 0;
  t.busy = false;
  t.lun = null;
  t.job = Job.NONE;
  t.sink.onScsiTaskDone(t);
}

/** CHECK CONDITION, ABORTED COMMAND, DATA-IN/OUT BUFFER OVERFLOW, and the overrun flag. */
export function overflow(t: ScsiTask, dataOut: boolean): void {
  t.overrun = true;
  checkCondition(t, SenseKey.ABORTED_COMMAND, dataOut ? Asc.DATA_OUT_BUFFER_OVERFLOW : Asc.DATA_IN_BUFFER_OVERFLOW);
}

function lbaOutOfRange(t: ScsiTask): void { checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE); }
function writeProtected(t: ScsiTask): void { checkCondition(t, SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED); }
function notReady(t: ScsiTask): void { checkCondition(t, SenseKey.NOT_READY, Asc.LUN_NOT_READY); }

/** Maps a failed bdev I/O to SCSI status and sense. */
function ioError(t: ScsiTask, io: BdevIo): void {
  switch (io.status) {
    case IoStatus.FAILED:
      if (io.type === IoType.READ) {
        checkConditionInfo(t, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, io.offsetBlocks);
      } else if (io.type === IoType.FLUSH) {
        checkCondition(t, SenseKey.MEDIUM_ERROR, Asc.PERIPHERAL_DEVICE_WRITE_FAULT);
      } else {
        checkConditionInfo(t, SenseKey.MEDIUM_ERROR, Asc.PERIPHERAL_DEVICE_WRITE_FAULT, io.offsetBlocks);
      }
      break;
    case IoStatus.OUT_OF_RANGE: lbaOutOfRange(t); break;
    case IoStatus.UNSUPPORTED: checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE); break;
    case IoStatus.NOMEM: t.status = Status.TASK_SET_FULL; t.senseLen = 0; break;
    case IoStatus.ABORTED: checkCondition(t, SenseKey.ABORTED_COMMAND, Asc.NO_ADDITIONAL_SENSE); break;
    default: checkCondition(t, SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
  }
}

/** The task's BdevIo finished: the transport passes this to each ScsiTask it creates. */
export function blockIoDone(t: ScsiTask, io: BdevIo): void {
  t.ioBusy = false;
  const st = io.status;
  if (st !== IoStatus.SUCCESS) {
    // A bdev without a volatile cache may not implement flush: nothing to flush is success.
    if (!(io.type === IoType.FLUSH && st === IoStatus.UNSUPPORTED)) {
      ioError(t, io);
      t.failed = true;
    }
  } else if (t.job === Job.RW && (io.type === IoType.READ || io.type === IoType.WRITE)) {
    t.dataTransferred = io.bytes;
  }
  if (!t.pumping) pump(t);
}

// ---- the I/O loop ----------------------------------------------------------------------

function submit(t: ScsiTask): void {
  t.ioBusy = true;
  t.lun!.channel!.submit(t.io);
}

function prepare(t: ScsiTask, type: number, lba: number, blocks: number): void {
  const io = t.io;
  io.type = type;
  io.offsetBlocks = lba;
  io.numBlocks = blocks;
  io.mem = t.mem;
  io.segs = t.segs;
  io.segBase = t.segBase;
  io.nseg = 0;
  io.bytes = 0;
  io.mayUnmap = false;
  io.status = 0;
}

/** Submits the task's next bdev I/O; false when there is nothing left (or it failed). */
function nextIo(t: ScsiTask): boolean {
  if (t.failed) return false;
  const lun = t.lun!;
  switch (t.job) {
    case Job.RW:
    case Job.WS_ZERO:
      if (t.phase === 0) { t.phase = 1; submit(t); return true; } // prepared by the command
      break;
    case Job.WS_PATTERN:
      if (t.blocks > 0) {
        const n = t.blocks < t.perIo ? t.blocks : t.perIo;
        prepare(t, IoType.WRITE, t.lba, n);
        const io = t.io;
        if (t.wsOwn) { io.segs = t.wsSegs; io.segBase = 0; }
        io.nseg = n * t.segsPerBlock;
        io.bytes = n * lun.blockSize;
        t.lba += n;
        t.blocks -= n;
        submit(t);
        return true;
      }
      break;
    case Job.UNMAP:
      while (t.idx < t.count) {
        gatherOut(t, 8 + 16 * t.idx, desc, 0, 16);
        t.idx++;
        const lba = be64(desc, 0), n = be32(desc, 8);
        if (n === 0) continue;
        // Checked before any unmap; checked again because guest memory may have changed.
        if (lba >= lun.numBlocks || n > lun.numBlocks - lba) { lbaOutOfRange(t); t.failed = true; return false; }
        prepare(t, IoType.UNMAP, lba, n);
        submit(t);
        return true;
      }
      break;
    case Job.FLUSH:
      break;
  }
  if (t.flushAfter) {
    t.flushAfter = false;
    prepare(t, IoType.FLUSH, t.fLba, t.fBlocks);
    submit(t);
    return true;
  }
  return false;
}

/** Drives the task until an I/O is left in flight or the command is done. */
export function pump(t: ScsiTask): void {
  t.pumping = true;
  while (!t.ioBusy) {
    if (!nextIo(t)) {
      t.pumping = false;
      completeTask(t);
      return;
    }
  }
  t.pumping = false;
}

function start(t: ScsiTask, job: number): void {
  t.job = job;
  t.phase = 0;
  pump(t);
}

// ---- commands ---------------------------------------------------------------------------

/** READ/WRITE 6/10/12/16. */
export function execReadWrite(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb, op = c[0];
  let lba: number, n: number, flags = 0, tlOff: number;
  switch (op) {
    case Op.READ_6: case Op.WRITE_6:
      lba = ((c[1] & 0x1f) << 16) | (c[2] << 8) | c[3];
      n = c[4] === 0 ? 256 : c[4];
      tlOff = 4;
      break;
    case Op.READ_10: case Op.WRITE_10:
      flags = c[1]; lba = be32(c, 2); n = be16(c, 7); tlOff = 7;
      break;
    case Op.READ_12: case Op.WRITE_12:
      flags = c[1]; lba = be32(c, 2); n = be32(c, 6); tlOff = 6;
      break;
    default: // READ_16, WRITE_16
      flags = c[1]; lba = be64(c, 2); n = be32(c, 10); tlOff = 10;
  }
  const isWrite = (op & 0x0f) === 0x0a;
  if (isWrite && lun.readOnly) { writeProtected(t); completeTask(t); return; }
  if ((flags & 0xe0) !== 0) { invalidCdbField(t, 1, 7); completeTask(t); return; } // RD/WRPROTECT
  if (lba >= lun.numBlocks || n > lun.numBlocks - lba) { lbaOutOfRange(t); completeTask(t); return; }
  if (n === 0) { completeTask(t); return; }
  if (n > lun.maxTransferBlocks) { invalidCdbField(t, tlOff, -1); completeTask(t); return; }
  const bytes = n * lun.blockSize;
  const cap = isWrite ? dataOutLength(t) : dataInCapacity(t);
  if (cap < bytes) { overflow(t, isWrite); completeTask(t); return; }
  if (lun.channel === null) { notReady(t); completeTask(t); return; }
  const nseg = t.transferLen === bytes ? t.nseg : clipSegments(t, bytes);
  if (nseg < 0) { overflow(t, isWrite); completeTask(t); return; }
  prepare(t, isWrite ? IoType.WRITE : IoType.READ, lba, n);
  t.io.nseg = nseg;
  t.io.bytes = bytes;
  t.flushAfter = isWrite && ((flags & 0x08) !== 0 || !lun.wce); // FUA, or write-through
  t.fLba = lba;
  t.fBlocks = n;
  start(t, Job.RW);
}

/** VERIFY 10/12/16 with BYTCHK=0: range checked, nothing read (as QEMU's scsi-disk). */
export function execVerify(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb, op = c[0];
  const lba = op === Op.VERIFY_16 ? be64(c, 2) : be32(c, 2);
  const n = op === Op.VERIFY_10 ? be16(c, 7) : op === Op.VERIFY_12 ? be32(c, 6) : be32(c, 10);
  if ((c[1] & 0xe0) !== 0) invalidCdbField(t, 1, 7);        // VRPROTECT
  else if ((c[1] & 0x06) !== 0) invalidCdbField(t, 1, 2);   // BYTCHK: byte compare not supported
  else if (lba >= lun.numBlocks || n > lun.numBlocks - lba) lbaOutOfRange(t);
  completeTask(t);
}

/** SYNCHRONIZE CACHE 10/16 (IMMED is honoured by waiting, which the standard permits). */
export function execSyncCache(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  const sixteen = c[0] === Op.SYNCHRONIZE_CACHE_16;
  const lba = sixteen ? be64(c, 2) : be32(c, 2);
  let n = sixteen ? be32(c, 10) : be16(c, 7);
  if (lba >= lun.numBlocks || n > lun.numBlocks - lba) { lbaOutOfRange(t); completeTask(t); return; }
  if (n === 0) n = lun.numBlocks - lba;
  startFlush(t, lun, lba, n);
}

/** Flushes [lba, lba+n) and completes the task GOOD (or with the flush's error). */
export function startFlush(t: ScsiTask, lun: ScsiLun, lba: number, n: number): void {
  if (lun.channel === null) { notReady(t); completeTask(t); return; }
  t.flushAfter = true;
  t.fLba = lba;
  t.fBlocks = n;
  start(t, Job.FLUSH);
}

/** UNMAP (SBC-3 5.28): descriptors validated first, then unmapped one bdev I/O at a time. */
export function execUnmap(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  if (!lun.supportsUnmap) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE); completeTask(t); return;
  }
  if ((c[1] & 0x01) !== 0) { invalidCdbField(t, 1, 0); completeTask(t); return; } // ANCHOR
  if (lun.readOnly) { writeProtected(t); completeTask(t); return; }
  const pll = be16(c, 7);
  if (pll === 0) { completeTask(t); return; }
  if (pll < 8) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR); completeTask(t); return;
  }
  if (dataOutLength(t) < pll) { overflow(t, true); completeTask(t); return; }
  gatherOut(t, 0, desc, 0, 8);
  // Complete descriptors only: a partial one (BLOCK DESCRIPTOR DATA LENGTH not a multiple
  // of 16, or cut by the PARAMETER LIST LENGTH) is ignored, as SBC says.
  const bddl = be16(desc, 2);
  const avail = bddl < pll - 8 ? bddl : pll - 8;
  const count = avail >>> 4;
  if (count > MAX_UNMAP_DESCRIPTORS) { invalidParamField(t, 2, -1); completeTask(t); return; }
  let total = 0;
  for (let i = 0; i < count; i++) {
    gatherOut(t, 8 + 16 * i, desc, 0, 16);
    const lba = be64(desc, 0), n = be32(desc, 8);
    if (n === 0) continue;
    if (lba >= lun.numBlocks || n > lun.numBlocks - lba) { lbaOutOfRange(t); completeTask(t); return; }
    total += n;
  }
  if (total > MAX_UNMAP_LBA_COUNT) {
    checkCondition(t, SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST); completeTask(t); return;
  }
  if (lun.channel === null) { notReady(t); completeTask(t); return; }
  t.dataTransferred = pll;
  t.idx = 0;
  t.count = count;
  t.flushAfter = false;
  start(t, Job.UNMAP);
}

/**
 * WRITE SAME 10/16. An all-zero block (or NDOB) becomes one WRITE_ZEROES, allowed to
 * unmap when the UNMAP bit is set; any other block is written repeatedly, up to WS_SEGS
 * blocks per bdev write by repeating its segments.
 */
export function execWriteSame(t: ScsiTask, lun: ScsiLun): void {
  const c = t.cdb;
  const sixteen = c[0] === Op.WRITE_SAME_16;
  const lba = sixteen ? be64(c, 2) : be32(c, 2);
  const n = sixteen ? be32(c, 10) : be16(c, 7);
  const nOff = sixteen ? 10 : 7;
  if (lun.readOnly) { writeProtected(t); completeTask(t); return; }
  if ((c[1] & 0xe0) !== 0) { invalidCdbField(t, 1, 7); completeTask(t); return; }  // WRPROTECT
  if ((c[1] & 0x10) !== 0) { invalidCdbField(t, 1, 4); completeTask(t); return; }  // ANCHOR
  if ((c[1] & 0x06) !== 0) { invalidCdbField(t, 1, (c[1] & 0x04) !== 0 ? 2 : 1); completeTask(t); return; } // PBDATA/LBDATA
  const ndob = sixteen && (c[1] & 0x01) !== 0;
  if (n === 0 || n > MAX_WRITE_SAME_BLOCKS) { invalidCdbField(t, nOff, -1); completeTask(t); return; }
  if (lba >= lun.numBlocks || n > lun.numBlocks - lba) { lbaOutOfRange(t); completeTask(t); return; }
  const bs = lun.blockSize;
  if (!ndob && dataOutLength(t) < bs) { overflow(t, true); completeTask(t); return; }
  if (lun.channel === null) { notReady(t); completeTask(t); return; }
  const zero = ndob || dataOutIsZero(t, bs);
  t.flushAfter = !lun.wce;
  t.fLba = lba;
  t.fBlocks = n;
  if (zero && lun.supportsWriteZeroes) {
    t.dataTransferred = ndob ? 0 : bs;
    prepare(t, IoType.WRITE_ZEROES, lba, n);
    t.io.mayUnmap = (c[1] & 0x08) !== 0;
    start(t, Job.WS_ZERO);
    return;
  }
  if (ndob) { invalidCdbField(t, 1, 0); completeTask(t); return; } // no block to repeat
  t.dataTransferred = bs;
  // Segments holding the one block.
  const s = t.segs, end = t.segBase + t.nseg;
  let k = 0, acc = 0;
  for (let i = t.segBase; i < end && acc < bs; i++) { acc += s.len[i]; k++; }
  if (k <= WS_SEGS) {
    const w = t.wsSegs, reps = Math.floor(WS_SEGS / k);
    let j = 0;
    for (let r = 0; r < reps; r++) {
      let left = bs;
      for (let i = 0; i < k; i++) {
        const si = t.segBase + i;
        const l = s.len[si] < left ? s.len[si] : left;
        w.region[j] = s.region[si]; w.off[j] = s.off[si]; w.len[j] = l;
        left -= l;
        j++;
      }
    }
    t.wsOwn = true;
    t.perIo = reps;
    t.segsPerBlock = k;
  } else {
    t.segsPerBlock = clipSegments(t, bs);
    t.wsOwn = false;
    t.perIo = 1;
  }
  t.lba = lba;
  t.blocks = n;
  start(t, Job.WS_PATTERN);
}
