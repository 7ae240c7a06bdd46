// Control-plane view of a block device. Modules subclass Bdev; reactors only ever
// see the plain BdevChannelSpec it produces.
import { randomUUID } from 'node:crypto';
import { BdevChannelSpec, IoTypeName } from './types.js';
import { createStats, MAX_REACTORS } from './stats.js';
import { createQosState } from './qos/qos_bucket.js';

import type { ConfigCall } from '../src/framework/app_context.js';
export type { ConfigCall };

export interface BdevOptions {
  name: string;
  blockSize: number;
  numBlocks: number;
  uuid?: string;
  ioTypes: IoTypeName[];
  maxIoBlocks?: number;
}

export abstract class Bdev {
  readonly name: string;
  readonly aliases: string[] = [];
  readonly uuid: string;
  readonly blockSize: number;
  numBlocks: number;
  readonly ioTypes: ReadonlySet<IoTypeName>;
  readonly maxIoBlocks: number;
  readonly stats: SharedArrayBuffer = createStats(MAX_REACTORS);
  /** QoS rate limits, shared with every channel (bdev_set_qos_limit; see qos/qos.ts). */
  readonly qos: SharedArrayBuffer = createQosState();
  /** The size in blocks as every reactor channel sees it (see setNumBlocks). */
  private readonly sizeCell = new Float64Array(new SharedArrayBuffer(8));
  private readonly resizeListeners = new Set<(b: Bdev, oldBlocks: number) => void>();
  /** Found on another bdev by examine (lvols): save_config then ends the bdev config with bdev_wait_for_examine. */
  readonly examined: boolean = false;
  /** Name of the owner holding an exclusive claim (e.g. a vhost controller), if any. */
  claimedBy: string | null = null;
  abstract readonly module: string;

  constructor(o: BdevOptions) {
    this.name = o.name;
    this.uuid = o.uuid ?? randomUUID();
    this.blockSize = o.blockSize;
    this.numBlocks = o.numBlocks;
    this.sizeCell[0] = o.numBlocks;
    this.ioTypes = new Set(o.ioTypes);
    this.maxIoBlocks = o.maxIoBlocks ?? 0;
  }

  channelSpec(): BdevChannelSpec {
    return {
      name: this.name, module: this.module, blockSize: this.blockSize, numBlocks: this.numBlocks,
      size: this.sizeCell.buffer as SharedArrayBuffer, qos: this.qos, stats: this.stats, maxIoBlocks: this.maxIoBlocks, data: this.channelData(),
    };
  }

  /** Calls `fn` after every change of size (a consumer tells its guest); returns the unsubscribe. */
  onResize(fn: (b: Bdev, oldBlocks: number) => void): () => void {
    this.resizeListeners.add(fn);
    return () => { this.resizeListeners.delete(fn); };
  }

  /** Changes the size seen by the control plane and by every channel, then tells the consumers. */
  protected setNumBlocks(n: number): void {
    const old = this.numBlocks;
    this.numBlocks = n;
    this.sizeCell[0] = n;
    if (n === old) return;
    for (const fn of [...this.resizeListeners]) {
      try { fn(this, old); } catch { /* a consumer's failure to notify must not undo the resize */ }
    }
  }

  /** Module data a reactor needs to open a channel (addresses, fds, flags). */
  protected abstract channelData(): Record<string, unknown>;
  /**
   * The RPC call that recreates this bdev (for save_config); null when another bdev's call does
   * (NVMe namespaces) or when examine finds it again (lvols: see `examined`).
   */
  abstract configCall(): ConfigCall | null;
  /** driver_specific section of bdev_get_bdevs, if any. */
  driverSpecific(): Record<string, unknown> | undefined { return undefined; }
  /** Work to finish before the bdev serves I/O (e.g. faulting in memory); runs off the main thread where it can. */
  prepare(): Promise<void> { return Promise.resolve(); }
  /** Releases the bdev's resources once no reactor uses it any more. */
  abstract destroy(): Promise<void> | void;
}
