// A vhost-user-blk controller: one socket, one bdev, queues spread over the reactors of
// its cpumask.
import { VhostTarget, QueueStart, VringState } from '../../src/vhost/target.js';
import { ReactorPool } from '../../src/reactor/pool.js';
import { Bdev } from '../../bdev/bdev.js';
import { blkConfigSpace, blkFeatures, BlkGeometry } from './blk_config.js';
import { BlkQueueSpec } from './blk_queue.js';
import { Coalescing } from '../../src/virtio/split_queue.js';
import { bit, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from '../../src/virtio/constants.js';
import { VIRTIO_BLK_ID_BYTES } from './virtio_blk.js';
import { logger } from '../../src/log.js';

const log = logger('vhost_blk');

export const BLK_MAX_QUEUES = 64;

export class BlkController implements VhostTarget {
  readonly maxQueues = BLK_MAX_QUEUES;
  private readonly geometry: BlkGeometry;
  private writeback: number;
  /** Interrupt coalescing for the queues (vhost_controller_set_coalescing). */
  private coalescing: Coalescing = { delayBaseUs: 0, iopsThreshold: 0 };
  /** Requests found in flight in the front end's inflight region at queue starts (re-run). */
  recovered = 0;

  constructor(readonly ctrlr: string, readonly bdev: Bdev, readonly readOnly: boolean,
    /** Reactor indices this controller's queues run on. */
    readonly reactors: number[], private readonly pool: ReactorPool) {
    this.geometry = {
      blockSize: bdev.blockSize, numBlocks: bdev.numBlocks, numQueues: this.maxQueues, readOnly,
      flush: bdev.ioTypes.has('flush'), discard: bdev.ioTypes.has('unmap'), writeZeroes: bdev.ioTypes.has('write_zeroes'),
    };
    this.writeback = this.geometry.flush ? 1 : 0;
  }

  features(): bigint { return blkFeatures(this.geometry); }

  configSpace(): Uint8Array {
    const c = blkConfigSpace({ ...this.geometry, numBlocks: this.bdev.numBlocks });
    c[32] = this.writeback;
    return c;
  }

  writeConfig(offset: number, data: Uint8Array): boolean {
    // only the writeback byte is writable (VIRTIO_BLK_F_CONFIG_WCE is not offered, so QEMU rarely writes)
    if (offset === 32 && data.length === 1) { this.writeback = data[0] ? 1 : 0; return true; }
    return false;
  }

  reactorFor(qid: number): number { return this.reactors[qid % this.reactors.length]; }

  async startQueue(q: QueueStart): Promise<number> {
    const v = q.vring;
    const reactor = this.reactorFor(v.index);
    const spec: BlkQueueSpec = {
      ctrlr: this.ctrlr, qid: v.index, mem: q.mem, kickFd: v.kickFd, bdev: this.bdev.channelSpec(),
      readOnly: this.readOnly, serial: this.bdev.name.slice(0, VIRTIO_BLK_ID_BYTES), inflight: q.inflight,
      ring: {
        size: v.num, descUaddr: v.descUaddr, availUaddr: v.availUaddr, usedUaddr: v.usedUaddr, lastAvail: v.lastAvail,
        eventIdx: (q.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n,
        indirect: (q.features & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n, callFd: v.callFd,
        coalescing: this.coalescing,
      },
    };
    const r = await this.pool.call(reactor, 'blk.startQueue', spec);
    if (r.recovered > 0) {
      this.recovered += r.recovered;
      log.notice(`${this.ctrlr}: queue ${v.index}: re-running ${r.recovered} request(s) left in flight by the previous connection`);
    }
    return reactor;
  }

  async stopQueue(v: VringState): Promise<number> {
    const r = await this.pool.call(v.reactor, 'blk.stopQueue', { ctrlr: this.ctrlr, qid: v.index });
    return r ? r.lastAvail : v.lastAvail;
  }

  /** Applies to running queues at once and to queues started later. */
  async setCoalescing(c: Coalescing): Promise<void> {
    this.coalescing = c;
    for (const r of new Set(this.reactors)) await this.pool.call(r, 'blk.coalescing', { ctrlr: this.ctrlr, ...c });
  }

  async queueInfo(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const r of new Set(this.reactors)) out.push(...await this.pool.call(r, 'blk.queueInfo', { ctrlr: this.ctrlr }));
    return out;
  }
}
