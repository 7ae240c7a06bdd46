// Inflight tracking (INFLIGHT_SHMFD): requests in flight when a back end dies are run
// again, in order, by the next one; completed ones are not.
import { describe, it, expect, afterEach } from 'vitest';
import { FakeGuest, FakeVring, blkHeader, blkStatus, pattern } from './fake_driver.js';
import * as libc from '../../../native/libc.js';
import { BlkQueue } from '../../../targets/blk/blk_queue.js';
import * as B from '../../../targets/blk/virtio_blk.js';
import { BdevChannel } from '../../../bdev/channel.js';
import { BdevIo } from '../../../bdev/bdev_io.js';
import { MallocChannel } from '../../../bdev/malloc/malloc_channel.js';
import { BdevChannelSpec, IoStatus } from '../../../bdev/types.js';
import { createStats } from '../../../bdev/stats.js';
import { InflightRegion, inflightQueueBytes } from '../../../src/virtio/inflight.js';

const MiB = 1 << 20;
const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });

class HoldChannel extends BdevChannel {
  readonly held: BdevIo[] = [];
  protected submitIo(io: BdevIo): void { this.held.push(io); }
  release(): void { for (const io of this.held.splice(0)) this.complete(io, IoStatus.SUCCESS); }
}

function setup() {
  const g = new FakeGuest([{ gpa: 0x10_0000, size: 4 * MiB }]);
  cleanup.push(() => g.destroy());
  const callFd = libc.eventfd(), kickFd = libc.eventfd();
  cleanup.push(() => { libc.closeQuiet(callFd); libc.closeQuiet(kickFd); });
  const v = new FakeVring(g, { size: 16, eventIdx: true, indirect: false, callFd });
  const ifBytes = inflightQueueBytes(16);
  const ifAddr = libc.mmap(ifBytes);
  cleanup.push(() => libc.munmap(ifAddr, ifBytes));
  const bytes = 1 * MiB, fd = libc.memfdCreate('inflight-disk', bytes), addr = libc.mmap(bytes, fd);
  cleanup.push(() => { libc.munmap(addr, bytes); libc.closeQuiet(fd); });
  const spec: BdevChannelSpec = { name: 'm0', module: 'malloc', blockSize: 512, numBlocks: bytes / 512,
    stats: createStats(1), maxIoBlocks: 0, data: { addr, bytes } };
  const disk = new Uint8Array(libc.view(addr, bytes));
  const queue = (ch: BdevChannel, lastAvail: number) => new BlkQueue({ ctrlr: 'c', qid: 0, mem: g.regions,
    ring: { ...v.spec(), lastAvail }, kickFd, bdev: spec, readOnly: false, serial: 's', inflight: { addr: ifAddr } }, ch);
  const write = (sector: number, seed: number) => {
    const h = blkHeader(g, B.VIRTIO_BLK_T_OUT, sector), d = g.alloc(4096, 512), s = blkStatus(g);
    g.write(d, pattern(4096, seed));
    return v.addChain([{ addr: h, len: 16 }, { addr: d, len: 4096 }, { addr: s, len: 1, write: true }]);
  };
  return { g, v, spec, disk, queue, write, ifAddr };
}

describe('inflight tracking across a back-end restart', () => {
  it('re-executes exactly the requests that were in flight, oldest first', () => {
    const t = setup();
    const hold = new HoldChannel(t.spec, 0);
    const q1 = t.queue(hold, 0);
    const heads = [t.write(0, 1), t.write(8, 2), t.write(16, 3), t.write(24, 4)];
    t.v.publish(...heads);
    q1.poll();
    expect(hold.held).toHaveLength(4);
    // the back end completes the 2nd request only, publishes it, then "dies" with 3 in flight
    const second = hold.held.splice(1, 1)[0];
    hold.complete(second, IoStatus.SUCCESS);
    q1.flushUsed();
    expect(t.v.takeUsed().map((u) => u.id)).toEqual([heads[1]]);
    // QEMU restores last_avail to used->idx (1) for the new back end; inflight says better
    const ch2 = new MallocChannel(t.spec, 0);
    const q2 = t.queue(ch2, 1);
    expect(q2.lastAvail).toBe(4);
    q2.poll();
    expect(q2.resubmitted).toBe(3);
    expect(t.v.takeUsed().map((u) => u.id)).toEqual([heads[0], heads[2], heads[3]]);
    for (const [i, sector] of [[1, 0], [3, 16], [4, 24]]) {
      expect(t.disk.subarray(sector * 512, sector * 512 + 4096)).toEqual(pattern(4096, i));
    }
    // the 2nd request was not run again by q2 (its data came only from q1's hold channel, never copied)
    expect(t.disk.subarray(8 * 512, 8 * 512 + 4096).every((b) => b === 0)).toBe(true);
    // and new requests continue after the recovered ones
    const h5 = t.write(32, 5);
    t.v.publish(h5);
    q2.poll();
    expect(t.v.takeUsed().map((u) => u.id)).toEqual([h5]);
  });

  it('repairs a batch whose used index was published but whose flags were not cleared', () => {
    const t = setup();
    const region = new InflightRegion(libc.view(t.ifAddr, inflightQueueBytes(16)), 0, 16);
    expect(region.recover(0)).toBeNull();        // fresh: initialized
    for (const h of [3, 5, 7]) region.fetched(h);
    region.completed(5);
    region.completed(7);
    // crash here: the ring's used idx already says 2, the region still says 0
    const again = new InflightRegion(libc.view(t.ifAddr, inflightQueueBytes(16)), 0, 16);
    expect(again.recover(2)).toEqual({ lastAvail: 3, resubmit: [3] });
  });

  it('treats a garbage region as fresh rather than trusting it', () => {
    const t = setup();
    new Uint8Array(libc.view(t.ifAddr, inflightQueueBytes(16))).fill(0xff);
    const region = new InflightRegion(libc.view(t.ifAddr, inflightQueueBytes(16)), 0, 16);
    expect(region.recover(9)).toBeNull();
    expect(region.recover(9)).toEqual({ lastAvail: 9, resubmit: [] });
  });
});
