// The state of one emulated NVMe controller on its reactor: its queues, namespaces,
// features, Error Information log and device-private memory, created from the spec the
// control plane sends, and the views of guest memory its queues live in. The command
// layers build on it: completions (nvme_cq.ts), I/O commands (nvme_io.ts), admin
// commands (nvme_admin.ts), and the poller (nvme_ctrlr.ts).
//
// Device-private memory (one anonymous mapping per controller) sits in front of the guest
// regions of `mem` (GuestMemory extra regions: index 0, never reachable by a guest
// address): a bit bucket that reads' SGL Bit Bucket descriptors point into, and the
// bounce buffers Compare reads the namespace into.
import { GuestMemory, MemRegionSpec } from '../../src/memory/guest_memory.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';
import { BdevChannel } from '../../bdev/channel.js';
import { BdevChannelSpec } from '../../bdev/types.js';
import { mmap, munmap, view } from '../../native/libc.js';
import * as D from './nvme_defs.js';
import { BitBucket } from './sgl.js';
import * as Id from './identify.js';
import { ChangedNsList } from './changed_ns.js';
import { Cq, Sq } from './nvme_queues.js';

export interface NvmeNsSpec { nsid: number; bdev: BdevChannelSpec; uuid: string }

export interface NvmeCtrlrSpec {
  ctrlr: string;
  mem: MemRegionSpec[];
  /** Address (in this process) of the doorbell page (BAR0 + 0x1000). */
  dbHva: number;
  asq: number; acq: number; asqs: number; acqs: number;
  msix: number[];
  /** The control plane signals it on trapped doorbell writes. */
  wakeFd: number;
  /** Float64 counters shared with the control plane (see C_*). */
  counters: SharedArrayBuffer;
  shadowDoorbells: boolean;
  mappableDoorbells: boolean;
  identity: Id.CtrlrIdentity;
  namespaces: NvmeNsSpec[];
  /** Error Information log ring (LOG_ERROR_ENTRIES x 64 bytes), kept by the control plane across resets. */
  errorLog?: SharedArrayBuffer;
}

// counters (Float64Array indexes)
export const C_TRAPPED_DB = 0, C_IO_CMDS = 1, C_ADMIN_CMDS = 2, C_IRQS = 3, C_SHADOW = 4,
  /** Error Information log entries ever made (= the last entry's Error Count). */
  C_ERRORS = 5,
  /** Completed successfully: bytes and commands read (Read and Compare) and written (Write), for SMART. */
  C_READ_BYTES = 6, C_WRITE_BYTES = 7, C_READS = 8, C_WRITES = 9,
  C_BAD_DB = 10,
  /** I/O commands whose data pointer is an SGL; of them, those whose SGL1 is a (Last) Segment descriptor. */
  C_SGL_CMDS = 11, C_SGL_LIST_CMDS = 12,
  C_COMPARES = 13, C_COMPARE_FAILS = 14,
  /** Abort commands received; commands they aborted. */
  C_ABORT_CMDS = 15, C_ABORTED = 16,
  C_COUNT = 17;

/** Bytes of an Error Information log ring. */
export const ERROR_LOG_BYTES = D.LOG_ERROR_ENTRIES * D.ERROR_ENTRY;

/** Segments per command: one per page of the largest transfer, plus one for a misaligned start. */
export const SEGS_PER_CMD = (D.MAX_XFER / D.PAGE) + 1;

/** `nblocks` is the bdev's current size (the channel's shared cell): a resize reaches I/O checks and Identify at once. */
export interface Ns { nsid: number; ch: BdevChannel; bs: number; readonly nblocks: number; uuid: Uint8Array; spec: NvmeNsSpec;
  flush: boolean; unmap: boolean; wz: boolean }

/** What became of a Namespace Attribute Changed notice (nsResized). */
export type NsNotice = 'queued' | 'masked' | 'disabled' | 'no-namespace';

/** Parameter Error Location (Error Information log): byte | bit << 8 of the command field in error. */
export const LOC_NONE = 0xffff, LOC_OPC = 0, LOC_FUSE = 1, LOC_PSDT = 1 | (6 << 8), LOC_NSID = 4, LOC_DPTR = 24,
  LOC_CDW10 = 40, LOC_CSI = 47, LOC_CDW12 = 48;

/** Device-private memory: the bit bucket, then one bounce buffer per concurrent Compare. */
export const PRIV_BYTES = D.MAX_XFER * (1 + D.COMPARE_BUFFERS);
export const PRIV_REGION = 0;
export const cmpOff = (k: number) => D.MAX_XFER * (1 + k);

export abstract class NvmeCtrlrState implements BdevIoSink {
  readonly name: string;
  mem: GuestMemory;
  protected readonly db: Uint32Array;
  protected readonly cnt: Float64Array;
  protected readonly sqs: (Sq | null)[] = new Array(D.MAX_IO_QUEUES + 1).fill(null);
  protected readonly cqs: (Cq | null)[] = new Array(D.MAX_IO_QUEUES + 1).fill(null);
  protected readonly ns = new Map<number, Ns>();
  protected msix: number[];
  protected shadowGpa = -1;
  protected eventGpa = -1;
  protected shadow: Uint32Array | null = null;
  protected eventIdx: Uint32Array | null = null;
  protected readonly aers: number[] = [];
  /** Asynchronous events not yet reported (no AER was outstanding): completion DW0 values. */
  protected readonly events: number[] = [];
  /**
   * Log pages whose event was reported (or is queued) and not cleared yet: the event type is
   * masked until the host reads that log page with RAE cleared (NVMe 1.4 section 5.2).
   */
  protected readonly aenMasked = new Set<number>();
  /** Changed Namespace List log page (LID 04h). */
  protected readonly changedNs = new ChangedNsList();
  protected readonly features = new Map<number, number>();
  protected readonly admSegs = new SegmentTable(SEGS_PER_CMD);
  protected inflight = 0;
  fatal: string | null = null;
  stopping = false;
  onDrained: (() => void) | null = null;
  onFatal: ((why: string) => void) | null = null;
  /** Called when a deferred memory update may proceed (no I/O in flight). */
  onIdle: (() => void) | null = null;
  protected readonly started = performance.now();
  protected readonly errLog: Uint8Array;
  /** Context of the command being completed, for its Error Information log entry. */
  protected eNsid = 0;
  protected eLba = 0;
  protected eLoc = LOC_NONE;
  /** Abort completions not yet in the admin CQ (it was full): limited by ACL. */
  protected abortsQueued = 0;
  protected readonly priv: MemRegionSpec;
  protected readonly privBuf: Buffer;
  protected readonly bitBucket: BitBucket = { region: PRIV_REGION, off: 0 };
  protected readonly cmpSegs = new SegmentTable(D.COMPARE_BUFFERS);
  protected readonly cmpFree: number[] = [];
  constructor(readonly spec: NvmeCtrlrSpec, openChannel: (s: BdevChannelSpec) => BdevChannel) {
    this.name = `nvme:${spec.ctrlr}`;
    const privHva = mmap(PRIV_BYTES);
    this.priv = { gpa: 0, size: PRIV_BYTES, uaddr: 0, hva: privHva };
    this.privBuf = Buffer.from(view(privHva, PRIV_BYTES));
    for (let k = D.COMPARE_BUFFERS - 1; k >= 0; k--) {
      this.cmpFree.push(k);
      this.cmpSegs.region[k] = PRIV_REGION; this.cmpSegs.off[k] = cmpOff(k);
    }
    try {
      this.mem = new GuestMemory(spec.mem, [this.priv]);
      this.errLog = new Uint8Array(spec.errorLog ?? new SharedArrayBuffer(ERROR_LOG_BYTES), 0, ERROR_LOG_BYTES);
    } catch (e) { munmap(privHva, PRIV_BYTES); throw e; }
    this.db = new Uint32Array(view(spec.dbHva, D.DOORBELL_AREA));
    this.cnt = new Float64Array(spec.counters);
    this.msix = spec.msix.slice();
    for (const n of spec.namespaces) this.addNs(n, openChannel);
    this.features.set(D.FEAT.NUM_QUEUES, ((D.MAX_IO_QUEUES - 1) << 16) | (D.MAX_IO_QUEUES - 1));
    this.features.set(D.FEAT.VWC, spec.identity.vwc ? 1 : 0);
    this.features.set(D.FEAT.TEMP_THRESH, 0x0157);
    this.features.set(D.FEAT.ARBITRATION, 0);
    this.features.set(D.FEAT.POWER_MGMT, 0);
    this.features.set(D.FEAT.ERROR_RECOVERY, 0);
    this.features.set(D.FEAT.IRQ_COALESCE, 0);
    this.features.set(D.FEAT.WRITE_ATOMIC, 0);
    this.features.set(D.FEAT.ASYNC_EVENT, 0);
    this.features.set(D.FEAT.KEEP_ALIVE, 0);
    // admin queues
    const fail = (why: string): never => { this.destroy(); throw new Error(why); };
    if (spec.asqs < 2 || spec.acqs < 2 || spec.asqs > 4096 || spec.acqs > 4096) fail(`admin queue sizes ${spec.asqs}/${spec.acqs} are invalid`);
    const acq = new Cq(0, spec.acq, spec.acqs, true, 0);
    this.cqs[0] = acq;
    this.sqs[0] = this.newSq(0, spec.asq, spec.asqs, acq);
    acq.sqs = 1;
    if (!this.mapQueues()) fail(`the admin queues (ASQ 0x${spec.asq.toString(16)}, ACQ 0x${spec.acq.toString(16)}) are not in guest memory`);
  }

  protected destroyed = false;
  /** Frees the device-private memory; call once no I/O is in flight (and the channels are closed). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    munmap(this.priv.hva, PRIV_BYTES);
  }

  protected newSq(id: number, gpa: number, size: number, cq: Cq): Sq {
    const segs = new SegmentTable(size * SEGS_PER_CMD);
    const sq = new Sq(id, gpa, size, cq, this, segs);
    for (const io of sq.ios) { io.mem = this.mem; io.segBase = (io.tag & 0xffff) * SEGS_PER_CMD; }
    return sq;
  }

  addNs(n: NvmeNsSpec, open: (s: BdevChannelSpec) => BdevChannel): void {
    const ch = open(n.bdev);
    this.ns.set(n.nsid, { nsid: n.nsid, ch, bs: n.bdev.blockSize, get nblocks() { return ch.numBlocks; }, uuid: Id.uuidBytes(n.uuid), spec: n,
      flush: true, unmap: true, wz: true });
  }

  namespaces(): Ns[] { return [...this.ns.values()]; }

  // ------------------------------------------------------------------ memory

  /** Re-derives the views of queues and shadow buffers; false if one is no longer in guest memory. */
  protected mapQueues(): boolean {
    const view = (gpa: number, len: number): Uint8Array | null => {
      const r = this.mem.regionOfRange(gpa, len);
      if (r < 0) return null;
      const off = gpa - this.mem.gpa[r];
      return this.mem.u8[r].subarray(off, off + len);
    };
    for (const cq of this.cqs) if (cq) { const v = view(cq.gpa, cq.size * D.CQE); if (!v) return false; cq.u8 = v; }
    for (const sq of this.sqs) if (sq) { const v = view(sq.gpa, sq.size * D.SQE); if (!v) return false; sq.u8 = v; }
    if (this.shadowGpa >= 0) {
      const s = view(this.shadowGpa, D.PAGE), e = view(this.eventGpa, D.PAGE);
      if (!s || !e) return false;
      this.shadow = new Uint32Array(s.buffer, s.byteOffset, D.PAGE / 4);
      this.eventIdx = new Uint32Array(e.buffer, e.byteOffset, D.PAGE / 4);
    }
    return true;
  }

  setMemory(regions: MemRegionSpec[]): void {
    this.mem = new GuestMemory(regions, [this.priv]);
    for (const sq of this.sqs) if (sq) for (const io of sq.ios) io.mem = this.mem;
    // a queue whose memory is (transiently) unmapped, e.g. while the client remaps low RAM
    // around a ROM, is not polled until a later DMA_MAP brings it back
    this.unmapped = !this.mapQueues();
  }

  /** Some queue or doorbell buffer is not in guest memory at the moment: nothing is polled. */
  unmapped = false;

  get inFlight(): number { return this.inflight; }

  setMsix(fds: number[]): void { this.msix = fds.slice(); }

  protected setFatal(why: string): void {
    if (this.fatal) return;
    this.fatal = why;
    this.onFatal?.(why);
  }

  // ------------------------------------------------------------------ poller

  protected readTail(sq: Sq): number {
    return sq.id > 0 && this.shadow ? this.shadow[2 * sq.id] : this.db[2 * sq.id];
  }

  protected readHead(cq: Cq): number {
    return cq.id > 0 && this.shadow ? this.shadow[2 * cq.id + 1] : this.db[2 * cq.id + 1];
  }

  abstract onBdevIoDone(io: BdevIo): void;
}
