// The NVMe bdev's reactor side (namespace channel + qpair) against a fake controller on
// synthetic memory: data in and out, batching of doorbells, cut scatter lists, queue full,
// error statuses, DSM and Write Zeroes, reset (I/O waits and runs again) and failure.
import { describe, expect, it } from 'vitest';
import { BdevIo, BdevIoSink, SegmentTable } from '../../../bdev/bdev_io.js';
import { IoStatus, IoType } from '../../../bdev/types.js';
import { createStats } from '../../../bdev/stats.js';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import { NvmeChannel } from '../../../bdev/nvme/nvme_channel.js';
import { C_GEN, C_STATE, ST, Q_ACK, qpCell } from '../../../bdev/nvme/ctrlr_state.js';
import { FakeNvme, PAGE, region } from './bdev_nvme_fake.js';

const BS = 512, BLOCKS = 8192;

function setup(depth = 16) {
  const g = region(256 * PAGE);
  const fake = new FakeNvme(depth, BS, BLOCKS, [{ hva: g.hva, size: 256 * PAGE }]);
  const ch = new NvmeChannel({ name: 'Fake0n1', module: 'nvme', blockSize: BS, numBlocks: BLOCKS, stats: createStats(1),
    maxIoBlocks: 0, data: { ctrlr: 'Fake0', nsid: 1, qpairs: [fake.spec] } }, 0);
  const mem = new GuestMemory([{ gpa: 0, size: 256 * PAGE, uaddr: 0, hva: g.hva }]);
  const done: [number, number][] = [];
  const sink: BdevIoSink = { onBdevIoDone: (io) => { done.push([io.tag, io.status]); } };
  const segs = new SegmentTable(4096);
  let nextSeg = 0, tag = 0;
  /** An I/O over guest byte ranges [(offset, length)]. */
  const io = (type: number, lba: number, ranges: [number, number][] = [], blocks?: number) => {
    const x = new BdevIo(sink, tag++, segs);
    x.type = type; x.offsetBlocks = lba; x.mem = mem; x.segBase = nextSeg; x.nseg = ranges.length;
    for (const [o, l] of ranges) { segs.region[nextSeg] = 0; segs.off[nextSeg] = o; segs.len[nextSeg] = l; nextSeg++; }
    x.bytes = ranges.reduce((n, r) => n + r[1], 0);
    x.numBlocks = blocks ?? x.bytes / BS;
    return x;
  };
  /** Polls and serves until nothing moves. */
  const run = () => { for (let i = 0; i < 1000; i++) { const a = ch.poll(); const b = fake.serve(); if (!a && !b && ch.inflight() === 0) return; } };
  return { g, fake, ch, io, done, run };
}

describe('NVMe bdev qpair', () => {
  it('writes and reads back, one SQ doorbell store per batch', () => {
    const t = setup();
    for (let i = 0; i < 8192; i++) t.g.u8[i] = (i * 7) & 0xff;
    for (let k = 0; k < 4; k++) t.ch.submit(t.io(IoType.WRITE, 16 * k, [[2048 * k, 2048]]));
    expect(t.fake.sqTailDoorbell).toBe(0);          // nothing rung until the poll
    t.ch.poll();
    expect(t.fake.sqTailDoorbell).toBe(4);
    t.run();
    expect(t.done).toEqual([[0, 0], [1, 0], [2, 0], [3, 0]]);
    expect(t.fake.log.map((c) => [c.opc, c.nsid, c.slba, c.nlb])).toEqual([[1, 1, 0, 4], [1, 1, 16, 4], [1, 1, 32, 4], [1, 1, 48, 4]]);
    t.ch.submit(t.io(IoType.READ, 16, [[65536, 2048]]));
    t.run();
    expect(Buffer.from(t.g.u8.subarray(65536, 65536 + 2048)).equals(Buffer.from(t.g.u8.subarray(2048, 4096)))).toBe(true);
    expect(t.fake.cqHeadDoorbell).toBe(5);
  });

  it('a scatter list with a page break in the middle becomes several commands', () => {
    const t = setup();
    t.g.u8.fill(0xab, 0, 1024); t.g.u8.fill(0xcd, 8192, 8192 + 4096);
    t.ch.submit(t.io(IoType.WRITE, 100, [[0, 1024], [8192, 4096]]));
    t.run();
    expect(t.done).toEqual([[0, IoStatus.SUCCESS]]);
    expect(t.fake.log.map((c) => [c.slba, c.nlb])).toEqual([[100, 2], [102, 8]]);
    expect(t.fake.disk[100 * BS]).toBe(0xab);
    expect(t.fake.disk[102 * BS + 4095]).toBe(0xcd);
  });

  it('a layout that cannot be cut into whole blocks fails, no command is sent', () => {
    const t = setup();
    t.ch.submit(t.io(IoType.WRITE, 0, [[0, 256], [4096, 256]]));
    expect(t.done).toEqual([[0, IoStatus.FAILED]]);
    expect(t.fake.log).toEqual([]);
  });

  it('more I/O than command slots: the rest waits and runs in order', () => {
    const t = setup(8);   // 7 slots
    for (let k = 0; k < 20; k++) t.ch.submit(t.io(IoType.WRITE, k, [[k * 512, 512]]));
    t.ch.poll();
    expect(t.fake.sqTailDoorbell).toBe(7);
    t.run();
    expect(t.done.map((d) => d[0])).toEqual([...Array(20).keys()]);
    expect(t.done.every((d) => d[1] === 0)).toBe(true);
    expect(t.fake.log.map((c) => c.slba)).toEqual([...Array(20).keys()]);
  });

  it('large transfers are cut at the command limit', () => {
    const t = setup();
    t.ch.submit(t.io(IoType.READ, 0, [[0, 256 * 1024]]));
    t.run();
    expect(t.fake.log.map((c) => [c.slba, c.nlb])).toEqual([[0, 256], [256, 256]]);
    expect(t.done).toEqual([[0, 0]]);
  });

  it('error statuses map to bdev statuses', () => {
    const t = setup();
    t.fake.failWith.set(2, 0x80);   // LBA out of range
    t.fake.failWith.set(1, 0x281);  // media error
    t.ch.submit(t.io(IoType.READ, 0, [[0, 512]]));
    t.ch.submit(t.io(IoType.WRITE, 0, [[0, 512]]));
    t.run();
    expect(t.done).toEqual([[0, IoStatus.OUT_OF_RANGE], [1, IoStatus.FAILED]]);
  });

  it('unmap is a DSM deallocate with one range; write zeroes and flush are one command each', () => {
    const t = setup();
    t.fake.disk.fill(1, 20 * BS, 30 * BS);
    t.ch.submit(t.io(IoType.UNMAP, 10, [], 100));
    t.ch.submit(t.io(IoType.WRITE_ZEROES, 20, [], 1000));
    t.ch.submit(t.io(IoType.FLUSH, 0, [], 0));
    t.run();
    expect(t.fake.log.map((c) => [c.opc, c.cdw10, c.cdw11])).toEqual([[9, 0, 4], [8, 20, 0], [0, 0, 0]]);
    expect(t.fake.log[1].nlb).toBe(1000);
    expect(t.fake.disk.subarray(20 * BS, 30 * BS).every((b) => b === 0)).toBe(true);
    const range = new Uint32Array(t.fake.mem.u8[1].buffer, t.fake.mem.u8[1].byteOffset + t.fake.log[0].cid * PAGE, 4);
    expect([...range]).toEqual([0, 100, 10, 0]);
    expect(t.done).toEqual([[0, 0], [1, 0], [2, 0]]);
  });

  it('reset: I/O in flight is dropped and runs again once the queues are back; new I/O waits', () => {
    const t = setup();
    t.g.u8.fill(0x5a, 0, 4096);
    t.fake.hold = true;
    t.ch.submit(t.io(IoType.WRITE, 8, [[0, 4096]]));
    t.ch.poll(); t.fake.serve();
    expect(t.fake.held.length).toBe(1);
    const st = t.fake.state;
    Atomics.store(st, C_STATE, ST.RESETTING);
    t.ch.submit(t.io(IoType.READ, 8, [[8192, 4096]]));   // waits
    t.ch.poll();
    expect(t.done).toEqual([]);
    // the controller is disabled: a new generation
    Atomics.add(st, C_GEN, 1); Atomics.store(st, C_STATE, ST.DISABLED);
    t.ch.poll();
    expect(Atomics.load(st, qpCell(0, Q_ACK))).toBe(1);
    expect(t.done).toEqual([]);
    t.fake.resetQueues(); t.fake.hold = false;
    Atomics.store(st, C_STATE, ST.OK);
    t.run();
    expect(t.done).toEqual([[0, 0], [1, 0]]);
    expect(t.g.u8[8192 + 4095]).toBe(0x5a);
  });

  it('a request caught by more than 3 resets fails', () => {
    const t = setup();
    t.fake.hold = true;
    t.ch.submit(t.io(IoType.READ, 0, [[0, 512]]));
    const st = t.fake.state;
    for (let k = 1; k <= 4; k++) {
      t.ch.poll(); t.fake.serve();
      expect(t.fake.held.length, `round ${k}`).toBe(1);
      expect(t.done).toEqual([]);
      Atomics.add(st, C_GEN, 1); Atomics.store(st, C_STATE, ST.DISABLED);
      t.ch.poll();
      t.fake.resetQueues(); t.fake.hold = true;
      Atomics.store(st, C_STATE, ST.OK);
      if (k === 4) break;
    }
    expect(t.done).toEqual([[0, IoStatus.FAILED]]);
    expect(t.ch.inflight()).toBe(0);
  });

  it('failure: I/O in flight and new I/O fail at once; a bogus completion is ignored', () => {
    const t = setup();
    t.fake.hold = true;
    t.ch.submit(t.io(IoType.WRITE, 0, [[0, 512]]));
    t.ch.poll(); t.fake.serve();
    t.fake.post(9, 0);                 // a cid never sent
    t.ch.poll();
    expect(t.done).toEqual([]);
    Atomics.add(t.fake.state, C_GEN, 1); Atomics.store(t.fake.state, C_STATE, ST.FAILED);
    t.ch.poll();
    t.ch.submit(t.io(IoType.READ, 0, [[0, 512]]));
    expect(t.done).toEqual([[0, IoStatus.FAILED], [1, IoStatus.FAILED]]);
    expect(t.ch.inflight()).toBe(0);
  });
});
