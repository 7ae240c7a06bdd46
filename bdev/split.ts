// Splits I/Os larger than a module accepts (BdevChannelSpec.maxIoBlocks) into pieces run
// one after another. Split contexts and their scatter lists are preallocated per channel.
import { BdevIo, BdevIoSink, SegmentTable } from './bdev_io.js';
import { IoStatus, IoType } from './types.js';

/** Segments one piece may hold (a piece never needs more than its parent's count + 1). */
const PIECE_SEGS = 512;
const CONTEXTS = 32;

/** What the splitter needs from its channel. */
export interface SplitHost {
  readonly blockSize: number;
  readonly maxIoBlocks: number;
  /** Runs a piece in the module, without statistics. */
  submitPiece(io: BdevIo): void;
  /** Completes the original I/O (with statistics). */
  complete(io: BdevIo, status: number): void;
}

class SplitContext implements BdevIoSink {
  readonly piece: BdevIo;
  parent: BdevIo | null = null;
  private next = 0;        // next block to issue
  private end = 0;
  private seg = 0;         // cursor into the parent's segments
  private segOff = 0;
  private running = false; // inside issue(): completions only set `again`
  private again = false;

  constructor(private readonly host: SplitHost, private readonly release: (c: SplitContext) => void) {
    this.piece = new BdevIo(this, 0, new SegmentTable(PIECE_SEGS));
    this.piece.internal = true;
  }

  start(parent: BdevIo): void {
    this.parent = parent;
    this.next = parent.offsetBlocks;
    this.end = parent.offsetBlocks + parent.numBlocks;
    this.seg = parent.segBase;
    this.segOff = 0;
    this.piece.type = parent.type;
    this.piece.mem = parent.mem;
    this.piece.mayUnmap = parent.mayUnmap;
    this.issue();
  }

  /** Issues pieces until one is in flight (or all are done). */
  private issue(): void {
    this.running = true;
    do {
      this.again = false;
      const p = this.parent!, piece = this.piece, host = this.host;
      const blocks = Math.min(host.maxIoBlocks, this.end - this.next);
      piece.offsetBlocks = this.next;
      piece.numBlocks = blocks;
      piece.nseg = 0; piece.segBase = 0; piece.bytes = 0;
      if (p.type === IoType.READ || p.type === IoType.WRITE) {
        let want = blocks * host.blockSize;
        const ps = p.segs, cs = piece.segs, last = p.segBase + p.nseg;
        while (want > 0 && this.seg < last) {
          const avail = ps.len[this.seg] - this.segOff, take = Math.min(avail, want);
          if (piece.nseg === PIECE_SEGS) { this.finish(IoStatus.FAILED); return; }
          cs.region[piece.nseg] = ps.region[this.seg];
          cs.off[piece.nseg] = ps.off[this.seg] + this.segOff;
          cs.len[piece.nseg] = take;
          piece.nseg++;
          piece.bytes += take;
          want -= take;
          this.segOff += take;
          if (this.segOff === ps.len[this.seg]) { this.seg++; this.segOff = 0; }
        }
        if (want > 0) { this.finish(IoStatus.FAILED); return; }   // buffers shorter than the I/O
      }
      this.next += blocks;
      host.submitPiece(piece);
    } while (this.again);
    this.running = false;
  }

  onBdevIoDone(piece: BdevIo): void {
    if (piece.status !== IoStatus.SUCCESS) { this.finish(piece.status); return; }
    if (this.next >= this.end) { this.finish(IoStatus.SUCCESS); return; }
    if (this.running) this.again = true; else this.issue();
  }

  private finish(status: number): void {
    const p = this.parent!;
    this.parent = null;
    this.running = false;
    this.again = false;
    this.release(this);
    this.host.complete(p, status);
  }
}

export class IoSplitter {
  private readonly free: SplitContext[] = [];
  private readonly waiting: (BdevIo | null)[] = new Array(1024).fill(null);
  private head = 0;
  private count = 0;

  constructor(private readonly host: SplitHost) {
    const release = (c: SplitContext) => this.release(c);
    for (let i = 0; i < CONTEXTS; i++) this.free.push(new SplitContext(host, release));
  }

  needs(io: BdevIo): boolean {
    return this.host.maxIoBlocks > 0 && io.numBlocks > this.host.maxIoBlocks && io.type !== IoType.FLUSH && io.type !== IoType.RESET;
  }

  submit(io: BdevIo): void {
    const c = this.free.pop();
    if (c) { c.start(io); return; }
    if (this.count === this.waiting.length) { this.host.complete(io, IoStatus.NOMEM); return; }
    this.waiting[(this.head + this.count++) % this.waiting.length] = io;
  }

  private release(c: SplitContext): void {
    if (this.count > 0) {
      const io = this.waiting[this.head]!;
      this.waiting[this.head] = null;
      this.head = (this.head + 1) % this.waiting.length;
      this.count--;
      c.start(io);
      return;
    }
    this.free.push(c);
  }
}
