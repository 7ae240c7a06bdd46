// Reactor-side access to a bdev: a per-reactor channel, the statistics it keeps,
// and the registry of module channel factories.
import { BdevIo } from './bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType } from './types.js';
import { histBucket, S, SLOT_DOUBLES } from './stats.js';
import { IoSplitter } from './split.js';
import { QosQueue } from './qos/qos_queue.js';

/** One I/O in this many is timed (a power of two); latency sums are scaled up by it. */
export const LAT_SAMPLE = 16;

export abstract class BdevChannel {
  readonly blockSize: number;
  readonly maxIoBlocks: number;
  /** The bdev's current size in blocks (shared: a resize reaches every channel at once). */
  private readonly sizeCell: Float64Array;
  private readonly st: Float64Array;
  private splitter: IoSplitter | null = null;
  /** Rate limits (bdev_set_qos_limit): reads and writes without budget wait here. */
  readonly qos: QosQueue | null;

  constructor(readonly spec: BdevChannelSpec, reactorIndex: number) {
    this.blockSize = spec.blockSize;
    this.sizeCell = spec.size ? new Float64Array(spec.size, 0, 1) : Float64Array.of(spec.numBlocks);
    this.maxIoBlocks = spec.maxIoBlocks;
    this.st = new Float64Array(spec.stats, reactorIndex * SLOT_DOUBLES * 8, SLOT_DOUBLES);
    this.qos = spec.qos ? new QosQueue(spec.qos, this) : null;
  }

  private sampleSeq = 0;

  get numBlocks(): number { return this.sizeCell[0]; }

  /** Starts an I/O; the module calls this.complete(io, status) exactly once, now or later. */
  submit(io: BdevIo): void {
    io.channel = this;
    // Latency is timed on one I/O in LAT_SAMPLE: a clock read costs as much as a whole null I/O.
    io.startNs = (++this.sampleSeq & (LAT_SAMPLE - 1)) === 0 ? performance.now() * 1e6 : -1;
    if (io.offsetBlocks + io.numBlocks > this.numBlocks || io.offsetBlocks < 0) {
      this.complete(io, IoStatus.OUT_OF_RANGE);
      return;
    }
    const q = this.qos;
    if (q !== null && q.on[0] !== 0 && q.hold(io)) return;
    this.resume(io);
  }

  /** Runs an I/O that QoS admitted: split at the module's limit, or straight to the module. */
  resume(io: BdevIo): void {
    if (this.maxIoBlocks > 0 && io.numBlocks > this.maxIoBlocks) {
      if (this.splitter === null) this.splitter = new IoSplitter(this);
      if (this.splitter.needs(io)) { this.splitter.submit(io); return; }
    }
    this.submitIo(io);
  }

  /** Runs one piece of a split I/O in the module. */
  submitPiece(io: BdevIo): void {
    io.channel = this;
    this.submitIo(io);
  }

  protected abstract submitIo(io: BdevIo): void;

  /** Reaps completions of asynchronous modules; returns how many. */
  poll(): number { return 0; }
  /** An fd that becomes readable when poll() has work (interrupt mode), or -1. */
  eventFd(): number { return -1; }
  /** I/Os submitted and not completed. */
  inflight(): number { return 0; }
  /** fds that wake the reactor when poll() has work (interrupt mode). */
  wakeFds(): number[] { const fd = this.eventFd(); return fd >= 0 ? [fd] : []; }
  /** Before the reactor sleeps: can it (will a wake fd fire for every pending completion)? */
  canSleep(): boolean { return this.inflight() === 0 || this.eventFd() >= 0; }
  destroy(): void { /* nothing by default */ }

  // What the reactor (or a bdev stacked on this one) calls: the module's part plus the layer's QoS.
  pollAll(): number { const q = this.qos; return q === null ? this.poll() : this.poll() + q.poll(); }
  wakeFdsAll(): number[] { const fds = this.wakeFds(); return this.qos ? [...fds, this.qos.wakeFd()] : fds; }
  canSleepAll(): boolean { return (this.qos === null || this.qos.canSleep()) && this.canSleep(); }
  closeAll(): void { this.qos?.destroy(); this.destroy(); }

  complete(io: BdevIo, status: number): void {
    io.status = status;
    if (io.internal) { io.sink.onBdevIoDone(io); return; }
    const st = this.st;
    const timed = io.startNs >= 0;
    const lat = timed ? performance.now() * 1e6 - io.startNs : 0;
    const latSum = lat * LAT_SAMPLE;
    if (status !== IoStatus.SUCCESS) {
      st[S.ERRORS]++;
    } else {
      switch (io.type) {
        case IoType.READ:
          st[S.READ_OPS]++; st[S.READ_BYTES] += io.bytes;
          if (timed) {
            st[S.READ_LAT] += latSum;
            if (lat > st[S.READ_LAT_MAX]) st[S.READ_LAT_MAX] = lat;
            if (lat < st[S.READ_LAT_MIN] || st[S.READ_LAT_MIN] === 0) st[S.READ_LAT_MIN] = lat;
          }
          break;
        case IoType.WRITE:
          st[S.WRITE_OPS]++; st[S.WRITE_BYTES] += io.bytes;
          if (timed) {
            st[S.WRITE_LAT] += latSum;
            if (lat > st[S.WRITE_LAT_MAX]) st[S.WRITE_LAT_MAX] = lat;
            if (lat < st[S.WRITE_LAT_MIN] || st[S.WRITE_LAT_MIN] === 0) st[S.WRITE_LAT_MIN] = lat;
          }
          break;
        case IoType.UNMAP:
          st[S.UNMAP_OPS]++; st[S.UNMAP_BYTES] += io.numBlocks * this.blockSize; if (timed) st[S.UNMAP_LAT] += latSum; break;
        case IoType.FLUSH: st[S.FLUSH_OPS]++; if (timed) st[S.FLUSH_LAT] += latSum; break;
        case IoType.WRITE_ZEROES:
          st[S.WZ_OPS]++; st[S.WZ_BYTES] += io.numBlocks * this.blockSize; if (timed) st[S.WZ_LAT] += latSum;
          break;
        case IoType.RESET: st[S.RESETS]++; break;
      }
      if (timed) st[S.HIST + histBucket(lat)] += LAT_SAMPLE;
    }
    io.sink.onBdevIoDone(io);
  }
}

export type ChannelFactory = (spec: BdevChannelSpec, reactorIndex: number) => BdevChannel;
const factories = new Map<string, ChannelFactory>();

export function registerChannelFactory(module: string, f: ChannelFactory): void { factories.set(module, f); }

export function openChannel(spec: BdevChannelSpec, reactorIndex: number): BdevChannel {
  const f = factories.get(spec.module);
  if (!f) throw new Error(`no reactor-side driver for bdev module '${spec.module}'`);
  return f(spec, reactorIndex);
}
