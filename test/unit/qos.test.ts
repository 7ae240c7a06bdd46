// QoS: the shared token bucket's arithmetic (SPDK's slice budgets, minimums, debt of big
// I/Os, catch-up cap, the clock going back) and a channel's waiting queue (arrival order,
// reads and writes held apart, release as budget returns, everything released when off).
import { describe, it, expect, afterEach } from 'vitest';
import { QosBucket, createQosState, monoMs, RW_IOPS, RW_BPS, R_BPS, W_BPS, BURST_SLICES, OWED_MAX_SLICES } from '../../bdev/qos/qos_bucket.js';
import { BdevChannel } from '../../bdev/channel.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType } from '../../bdev/types.js';
import { createStats } from '../../bdev/stats.js';
import { setQosLimits, assignedRateLimits, qosConfigCalls } from '../../bdev/qos/qos.js';
import { NullBdev } from '../../bdev/null/null.js';

const MIB = 1 << 20;
const T0 = 1_700_000_000_000;

function bucket(limits: number[], now = T0): QosBucket {
  const b = new QosBucket(createQosState());
  b.configure(limits, now);
  return b;
}

describe('QoS token bucket', () => {
  it('gives one slice (1 ms) of each limit, with SPDK minimums per slice', () => {
    const b = bucket([20_000, 100 * MIB, 0, 0]);
    expect(b.enabled).toBe(true);
    expect(b.slice(RW_IOPS)).toMatchObject({ max: 20, remaining: 20 });
    expect(b.slice(RW_BPS).max).toBe(Math.floor(100 * MIB / 1000));
    expect(b.slice(R_BPS).max).toBe(0);
    // 1000 IOPS = 1 per slice; 1 MiB/s = 1048 bytes per slice; tiny limits get the minimum
    expect(bucket([1000, MIB, 0, 0]).slice(RW_IOPS).max).toBe(1);
    expect(bucket([1000, MIB, 0, 0]).slice(RW_BPS).max).toBe(1048);
    expect(bucket([0, 0, 100_000, 0]).slice(R_BPS).max).toBe(512);
    expect(bucket([0, 0, 0, 0]).enabled).toBe(false);
  });

  it('lets I/Os pass while budget is left, then refuses; a refill restores one slice', () => {
    const b = bucket([5000, 0, 0, 0]);   // 5 per slice
    let passed = 0;
    for (let i = 0; i < 20; i++) if (b.take(true, 4096)) passed++;
    expect(passed).toBe(5);
    expect(b.refill(T0)).toBe(false);             // same slice: nothing
    expect(b.refill(T0 + 1)).toBe(true);
    passed = 0;
    for (let i = 0; i < 20; i++) if (b.take(false, 4096)) passed++;
    expect(passed).toBe(5);
  });

  it('a late refill credits the slices passed, and a bucket holds at most BURST_SLICES of them', () => {
    const b = bucket([10_000, 0, 0, 0]);   // 10 per slice
    b.refill(T0 + 1);
    expect(b.slice(RW_IOPS).remaining).toBe(20);   // the first slice's 10 were not used: kept
    for (let i = 0; i < 20; i++) b.take(true, 512);
    b.refill(T0 + 4);                               // a reactor that ran again 3 slices later
    expect(b.slice(RW_IOPS).remaining).toBe(30);
    b.refill(T0 + 5000);                            // nothing used for 5 s: a full bucket, no more
    expect(b.slice(RW_IOPS).remaining).toBe(10 * BURST_SLICES);
  });

  it('slices after the bucket ran dry are owed in full (a reactor descheduled while I/O waited)', () => {
    const b = bucket([10_000, 0, 0, 0]);
    for (let i = 0; i < 10; i++) b.take(true, 512);
    expect(b.take(true, 512)).toBe(false);
    b.markDry(() => T0);
    b.refill(T0 + 50);                              // the reactor ran again 50 ms later
    expect(b.slice(RW_IOPS).remaining).toBe(500);
    for (let i = 0; i < 500; i++) b.take(true, 512);
    b.markDry(() => T0 + 51);                       // dry again, and the reactor stalls for 3 s
    b.markDry(() => T0 + 2000);                     // (a later failure in the same spell changes nothing)
    b.refill(T0 + 3051);
    expect(b.slice(RW_IOPS).remaining).toBe(10 + 10 * OWED_MAX_SLICES);   // 1 slice before it ran dry, the rest owed
  });

  it('an I/O bigger than a slice passes when any budget is left, and its debt delays the next ones', () => {
    const b = bucket([0, MIB, 0, 0]);      // 1048 bytes per slice
    expect(b.take(false, 64 * 1024)).toBe(true);
    expect(b.slice(RW_BPS).remaining).toBe(1048 - 65536);
    expect(b.take(false, 512)).toBe(false);
    let slices = 0;
    for (let t = 1; !b.take(false, 512); t++) { b.refill(T0 + t); slices++; }
    // the debt of 64 KiB at 1048 bytes per slice takes ~62 slices to pay back
    expect(slices).toBe(Math.ceil((65536 - 1048) / 1048));
  });

  it('read and write byte limits apply to their kind only; a refused I/O takes nothing from other limits', () => {
    const b = bucket([1000, 0, 1 * MIB, 0]);  // 1 I/O per slice, 1048 read bytes per slice
    expect(b.take(false, 8192)).toBe(true);   // a write: only the I/O limit
    expect(b.slice(R_BPS).remaining).toBe(1048);
    expect(b.take(true, 512)).toBe(false);    // I/O limit exhausted
    expect(b.slice(R_BPS).remaining).toBe(1048);
    b.refill(T0 + 1);
    const c = bucket([2000, 0, 0, 1 * MIB]);  // 2 I/Os, 1048 write bytes per slice
    expect(c.take(false, 2048)).toBe(true);   // write debt
    expect(c.take(false, 512)).toBe(false);   // refused by w_mbytes: the I/O limit is given back
    expect(c.slice(RW_IOPS).remaining).toBe(1);
    expect(c.slice(W_BPS).remaining).toBe(1048 - 2048);
    expect(c.take(true, 512)).toBe(true);     // reads are not write-limited
  });

  it('a clock stepped back restarts the slices without a refill', () => {
    const b = bucket([1000, 0, 0, 0]);
    b.take(true, 512);
    expect(b.refill(T0 - 5000)).toBe(false);
    expect(b.slice(RW_IOPS).remaining).toBe(0);
    expect(b.refill(T0 - 4999)).toBe(true);
    expect(b.slice(RW_IOPS).remaining).toBe(1);
  });

  it('very high byte limits use coarser units instead of overflowing 32-bit budgets', () => {
    const b = bucket([0, 4_000_000 * MIB, 0, 0]);
    const s = b.slice(RW_BPS);
    expect(s.shift).toBeGreaterThan(0);
    expect(s.max * (BURST_SLICES + OWED_MAX_SLICES)).toBeLessThanOrEqual(1 << 29);
    expect(b.take(true, 1 << 30)).toBe(true);
    b.refill(T0 + 10_000);
    expect(b.slice(RW_BPS).remaining).toBeGreaterThan(0);
  });
});

describe('QoS limits on the control plane (SPDK rules)', () => {
  it('rounds I/O limits up to 1000s, keeps unnamed limits, 0 turns one off, save_config follows', () => {
    const b = new NullBdev({ name: 'n', num_blocks: 8, block_size: 512 });
    expect(assignedRateLimits(b)).toEqual({ rw_ios_per_sec: 0, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 0 });
    expect(qosConfigCalls(b)).toEqual([]);
    expect(setQosLimits(b, { rw_ios_per_sec: 1500, w_mbytes_per_sec: 10 }))
      .toEqual({ rw_ios_per_sec: 2000, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 10 });
    expect(setQosLimits(b, { r_mbytes_per_sec: 7 }))
      .toEqual({ rw_ios_per_sec: 2000, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 7, w_mbytes_per_sec: 10 });
    expect(qosConfigCalls(b)).toEqual([{ method: 'bdev_set_qos_limit',
      params: { name: 'n', rw_ios_per_sec: 2000, r_mbytes_per_sec: 7, w_mbytes_per_sec: 10 } }]);
    setQosLimits(b, { rw_ios_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 0 });
    expect(new QosBucket(b.qos).enabled).toBe(false);
    expect(qosConfigCalls(b)).toEqual([]);
    expect(() => setQosLimits(b, {})).toThrow(/No rate limits specified: give at least one of rw_ios_per_sec/);
  });
});

// ---- the waiting queue inside a channel ----

/** A channel that records the order in which the module receives I/Os. */
class RecordingChannel extends BdevChannel {
  got: number[] = [];
  protected submitIo(io: BdevIo): void { this.got.push(io.tag); this.complete(io, IoStatus.SUCCESS); }
}

const channels: BdevChannel[] = [];
afterEach(() => { for (const c of channels.splice(0)) c.closeAll(); });

function setupChannel(limits: number[]) {
  const qos = createQosState();
  const b = new QosBucket(qos);
  b.configure(limits);
  const spec: BdevChannelSpec = { name: 'q', module: 'test', blockSize: 512, numBlocks: 1 << 20, stats: createStats(1),
    maxIoBlocks: 0, qos, data: {} };
  const ch = new RecordingChannel(spec, 0);
  channels.push(ch);
  const done: number[] = [];
  const sink: BdevIoSink = { onBdevIoDone: (io) => done.push(io.tag) };
  const segs = new SegmentTable(0);
  const mk = (tag: number, type: number, blocks = 8) => {
    const io = new BdevIo(sink, tag, segs);
    io.type = type; io.offsetBlocks = tag * 8; io.numBlocks = blocks;
    return io;
  };
  return { ch, b, done, mk };
}

/** Polls the channel until `cond` or `ms` pass (refills come from the wall clock, 1 ms slices). */
function pollUntil(ch: BdevChannel, cond: () => boolean, ms: number): void {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) ch.pollAll();
}

describe('QoS waiting queue', () => {
  it('holds I/Os over the budget and releases them in arrival order as slices pass', () => {
    const { ch, done, mk } = setupChannel([2000, 0, 0, 0]);   // 2 per slice
    for (let i = 0; i < 10; i++) ch.submit(mk(i, i % 3 === 0 ? IoType.WRITE : IoType.READ));
    expect(ch.got).toEqual([0, 1]);
    expect(ch.qos!.waiting).toBe(8);
    pollUntil(ch, () => ch.got.length === 10, 2000);
    expect(ch.got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(done).toEqual(ch.got);
  });

  it('flushes and other unlimited I/O types pass waiting reads and writes', () => {
    const { ch, mk } = setupChannel([1000, 0, 0, 0]);
    ch.submit(mk(0, IoType.WRITE));
    ch.submit(mk(1, IoType.WRITE));
    ch.submit(mk(2, IoType.FLUSH));
    ch.submit(mk(3, IoType.UNMAP));
    expect(ch.got).toEqual([0, 2, 3]);
    pollUntil(ch, () => ch.got.length === 4, 2000);
    expect(ch.got).toEqual([0, 2, 3, 1]);
  });

  it('a read waiting for read budget does not hold up writes', () => {
    const { ch, mk } = setupChannel([0, 0, 1, 0]);      // 1 MiB/s of reads, writes free
    ch.submit(mk(0, IoType.READ, 256));                  // 128 KiB: ~125 slices of debt
    ch.submit(mk(1, IoType.READ));
    ch.submit(mk(2, IoType.WRITE));
    ch.submit(mk(3, IoType.WRITE));
    expect(ch.got).toEqual([0, 2, 3]);
    expect(ch.qos!.waiting).toBe(1);
  });

  it('turning QoS off releases everything waiting at the next poll', () => {
    const { ch, b, mk } = setupChannel([1000, 0, 0, 0]);
    for (let i = 0; i < 50; i++) ch.submit(mk(i, IoType.READ));
    expect(ch.got.length).toBe(1);
    b.configure([0, 0, 0, 0]);
    ch.pollAll();
    expect(ch.got.length).toBe(50);
    expect(ch.got).toEqual([...Array(50).keys()]);
  });

  it('a closing channel fails what still waits (ABORTED), once', () => {
    const { ch, mk } = setupChannel([1000, 0, 0, 0]);
    const statuses: number[] = [];
    const sink: BdevIoSink = { onBdevIoDone: (io) => statuses.push(io.status) };
    for (let i = 0; i < 3; i++) { const io = new BdevIo(sink, i, new SegmentTable(0)); io.type = IoType.READ; io.numBlocks = 1; ch.submit(io); }
    channels.splice(channels.indexOf(ch), 1);
    ch.closeAll();
    expect(statuses).toEqual([IoStatus.SUCCESS, IoStatus.ABORTED, IoStatus.ABORTED]);
  });

  it('never exceeds the rate over 300 ms of polling, and releases a slice of budget per slice it runs in', () => {
    const { ch, mk } = setupChannel([20_000, 0, 0, 0]);   // 20 per ms
    let tag = 0, slicesSeen = 0, lastSlice = Math.floor(monoMs());
    const start = monoMs(), end = start + 300;
    for (let now = start; now < end; now = monoMs()) {
      if (Math.floor(now) !== lastSlice) { slicesSeen++; lastSlice = Math.floor(now); }
      while (ch.qos!.waiting < 64) ch.submit(mk(tag++ % 1000, IoType.READ, 1));
      ch.pollAll();
    }
    const ms = monoMs() - start;
    // at most the first slice's budget, a full bucket and the elapsed slices
    expect(ch.got.length).toBeLessThanOrEqual(20 * (Math.ceil(ms) + 1 + BURST_SLICES));
    // a loaded machine deschedules this thread: count only the slices it ran in
    expect(ch.got.length).toBeGreaterThanOrEqual(20 * slicesSeen * 0.8);
  });
});
