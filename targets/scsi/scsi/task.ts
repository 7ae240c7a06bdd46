// One SCSI command slot, preallocated by the transport (one per in-flight command)
// and reused: the CDB, the data buffer description, the answer, and the bdev I/O
// the block commands drive. Nothing here is allocated per command.
import { BdevIo, BdevIoSink, SegmentTable } from '../../../bdev/bdev_io.js';
import type { GuestMemory } from '../../../src/memory/guest_memory.js';
import { CDB_MAX, DataDir, Job, SENSE_MAX, Status, WS_SEGS } from './constants.js';
import type { ScsiLun } from './lun.js';

export interface ScsiTaskSink {
  /** Called exactly once per executeScsi, possibly before executeScsi returns. */
  onScsiTaskDone(task: ScsiTask): void;
}

/** Runs when the task's bdev I/O completes: the block commands' state machine (blockIoDone in block.ts). */
export type TaskIoDone = (t: ScsiTask, io: BdevIo) => void;

export class ScsiTask implements BdevIoSink {
  // ---- inputs, set by the transport before executeScsi --------------------------
  /** The CDB, copied in by the transport (see loadCdb): guest memory must not be read twice. */
  readonly cdb = new Uint8Array(CDB_MAX);
  cdbLen = 0;
  /** Memory the data segments point into. */
  mem: GuestMemory | null = null;
  /** Data buffer: segs[segBase .. segBase+nseg), `transferLen` bytes in total. */
  segs: SegmentTable;
  segBase = 0;
  nseg = 0;
  transferLen = 0;
  /** DataDir.NONE / TO_DEVICE (data-out, e.g. WRITE) / FROM_DEVICE (data-in, e.g. READ). */
  dir: number = DataDir.NONE;
  /** LUN numbers of the target, for REPORT LUNS (the transport keeps this array). */
  targetLuns: ArrayLike<number> | null = null;
  targetLunCount = 0;

  // ---- outputs ---------------------------------------------------------------------
  /** SAM status (Status.GOOD, CHECK_CONDITION, ...). */
  status: number = Status.GOOD;
  /** Sense data (fixed format) valid when senseLen > 0. */
  readonly sense = new Uint8Array(SENSE_MAX);
  senseLen = 0;
  /** Bytes moved to (data-in) or taken from (data-out) the data buffer. */
  dataTransferred = 0;
  /** transferLen - dataTransferred. */
  residual = 0;
  /**
   * The command needed more data buffer than the transport supplied (or one in the other
   * direction). status is also CHECK CONDITION / ABORTED COMMAND / DATA-IN (4B/08) or
   * DATA-OUT (4B/0B) BUFFER OVERFLOW; a virtio-scsi transport answers VIRTIO_SCSI_S_OVERRUN.
   */
  overrun = false;

  // ---- completion -------------------------------------------------------------------
  readonly sink: ScsiTaskSink;
  readonly tag: number;

  // ---- internal state (owned by execute/block) ----------------------------------
  /** The one bdev I/O this task drives (sequentially) for block commands. */
  readonly io: BdevIo;
  /** Private segment table for WRITE SAME's repeated block. */
  readonly wsSegs = new SegmentTable(WS_SEGS);
  busy = false;
  lun: ScsiLun | null = null;
  job: number = Job.NONE;
  phase = 0;
  ioBusy = false;
  pumping = false;
  failed = false;
  /** Flush after the data phase (FUA, or write cache disabled). */
  flushAfter = false;
  lba = 0;
  blocks = 0;
  /** Range the trailing flush covers. */
  fLba = 0;
  fBlocks = 0;
  /** WRITE SAME pattern: the io uses wsSegs (true) or the transport's clipped segments. */
  wsOwn = false;
  /** UNMAP: next descriptor and count. WRITE SAME: blocks per write, segments per block. */
  idx = 0;
  count = 0;
  perIo = 0;
  segsPerBlock = 0;
  /** A segment of the transport's table shortened while the command runs (restored at the end). */
  clipIdx = -1;
  clipLen = 0;

  private readonly ioDone: TaskIoDone;

  constructor(sink: ScsiTaskSink, tag: number, segs: SegmentTable, ioDone: TaskIoDone) {
    this.sink = sink;
    this.ioDone = ioDone;
    this.tag = tag;
    this.segs = segs;
    this.io = new BdevIo(this, tag, segs);
  }

  /** Copies a CDB (e.g. out of guest memory) into the task; longer CDBs are cut to CDB_MAX. */
  loadCdb(src: Uint8Array, off: number, len: number): void {
    const n = len < CDB_MAX ? len : CDB_MAX;
    const c = this.cdb;
    for (let i = 0; i < n; i++) c[i] = src[off + i];
    for (let i = n; i < CDB_MAX; i++) c[i] = 0;
    this.cdbLen = len;
  }

  /** Describes the data buffer. */
  setData(mem: GuestMemory | null, segs: SegmentTable, segBase: number, nseg: number,
    transferLen: number, dir: number): void {
    this.mem = mem;
    this.segs = segs;
    this.segBase = segBase;
    this.nseg = nseg;
    this.transferLen = transferLen;
    this.dir = dir;
  }

  onBdevIoDone(io: BdevIo): void { this.ioDone(this, io); }
}
