// One block I/O on a reactor. Preallocated by its owner (a virtqueue slot, an NVMe
// command slot) and reused: nothing here is allocated per I/O.
import type { GuestMemory } from '../src/memory/guest_memory.js';

export interface BdevIoSink {
  onBdevIoDone(io: BdevIo): void;
}

/** Scatter list storage shared by many BdevIos: entry i = (region, offset, length). */
export class SegmentTable {
  readonly region: Int32Array;
  readonly off: Float64Array;
  readonly len: Int32Array;
  constructor(readonly capacity: number) {
    this.region = new Int32Array(capacity);
    this.off = new Float64Array(capacity);
    this.len = new Int32Array(capacity);
  }
}

export class BdevIo {
  type = 0;
  offsetBlocks = 0;
  numBlocks = 0;
  status = 0;
  /** Memory the segments point into. */
  mem: GuestMemory | null = null;
  /** Segments are segs[segBase .. segBase+nseg). */
  segs: SegmentTable;
  segBase = 0;
  nseg = 0;
  /** Total bytes described by the segments. */
  bytes = 0;
  /** Flags for write_zeroes: may the module unmap instead. */
  mayUnmap = false;
  startNs = 0;
  /** Owner's slot number, for the sink. */
  readonly tag: number;
  readonly sink: BdevIoSink;
  /** A piece of a split I/O: completes without statistics. */
  internal = false;
  /** Set by the layer on submit. */
  channel: unknown = null;

  constructor(sink: BdevIoSink, tag: number, segs: SegmentTable) {
    this.sink = sink;
    this.tag = tag;
    this.segs = segs;
  }
}
