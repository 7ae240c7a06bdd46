// The queue structures of an emulated NVMe controller (reactor side): a completion queue
// and a submission queue with its preallocated per-slot command state, and the
// little-endian helpers that read and write their entries in guest memory.
import { TWO32 } from '../../src/memory/guest_memory.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';

export class Cq {
  u8: Uint8Array = new Uint8Array(0);
  tail = 0;
  phase = 1;
  head = 0;
  sqs = 0;
  irqPending = false;
  readonly overflow: number[] = [];
  constructor(readonly id: number, readonly gpa: number, readonly size: number, readonly ien: boolean, readonly iv: number) {}
}

export class Sq {
  u8: Uint8Array = new Uint8Array(0);
  head = 0;
  tail = 0;
  inflight = 0;
  deleting = false;
  /** Entries (by SQ slot) that an Abort marked while still unfetched; how many are marked. */
  readonly abortMark: Uint8Array;
  marks = 0;
  /** Compare in a slot: its bounce buffer (-1: none) and the count of its guest segments. */
  readonly cmpBuf: Int16Array;
  readonly nseg: Uint16Array;
  /** admin cid waiting for this SQ's deletion (-1: none) */
  deleteCid = -1;
  readonly ios: BdevIo[] = [];
  readonly free: number[] = [];
  readonly cid: Uint16Array;
  readonly nsid: Uint32Array;
  /** DSM: ranges left, next range address */
  readonly dsmLeft: Int32Array;
  readonly dsmBuf: Float64Array;
  readonly status: Int32Array;
  constructor(readonly id: number, readonly gpa: number, readonly size: number, readonly cq: Cq, sink: BdevIoSink, readonly segs: SegmentTable) {
    this.abortMark = new Uint8Array(size);
    this.cmpBuf = new Int16Array(size).fill(-1);
    this.nseg = new Uint16Array(size);
    this.cid = new Uint16Array(size);
    this.nsid = new Uint32Array(size);
    this.dsmLeft = new Int32Array(size);
    this.dsmBuf = new Float64Array(size * 2);
    this.status = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      this.ios.push(new BdevIo(sink, (id << 16) | i, segs));
      this.free.push(size - 1 - i);
    }
  }
}

/** Any locked RMW is a full barrier on x86 (and Atomics are sequentially consistent). */
export const FENCE = new Int32Array(new SharedArrayBuffer(4));

export const u32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
export function w32(b: Uint8Array, o: number, v: number): void { b[o] = v; b[o + 1] = v >>> 8; b[o + 2] = v >>> 16; b[o + 3] = v >>> 24; }
export function w64(b: Uint8Array, o: number, v: number): void { w32(b, o, v % TWO32); w32(b, o + 4, Math.floor(v / TWO32)); }

/** Overflowed completions: (sqid, cid, status, dw0, sqhd, kind) per entry. */
export const OVF = 6;
export const K_PLAIN = 0, K_ABORT = 1;
