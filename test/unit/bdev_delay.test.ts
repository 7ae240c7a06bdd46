// delay bdev: control-plane checks (claims, latencies, config), and its channel over a
// malloc base: data goes through, reads and writes complete no earlier than their latency,
// in order per list, other I/O types at once; latency updates apply to later I/Os; the
// timerfd wakes a sleeping reactor; contexts are reused.
import { afterEach, describe, expect, it } from 'vitest';
import * as libc from '../../native/libc.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';
import { BdevRegistry } from '../../bdev/registry.js';
import { MallocBdev } from '../../bdev/malloc/malloc.js';
import { DelayBdev } from '../../bdev/delay/delay.js';
import { DelayChannel } from '../../bdev/delay/delay_channel.js';
import '../../bdev/malloc/malloc_channel.js';
import { GuestMemory } from '../../src/memory/guest_memory.js';
import { IoStatus, IoType } from '../../bdev/types.js';
import { Epoll } from '../../native/epoll.js';

const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });

const LAT = { avg_read_latency: 20_000, p99_read_latency: 20_000, avg_write_latency: 40_000, p99_write_latency: 40_000 };

function setup(lat = LAT) {
  const reg = new BdevRegistry();
  const m = new MallocBdev({ name: 'M0', num_blocks: 2048, block_size: 512 });
  reg.register(m);
  reg.claim('M0', DelayBdev.claimOwner('D0'));
  const d = new DelayBdev(m, { base_bdev_name: 'M0', name: 'D0', ...lat });
  reg.register(d);
  const ch = new DelayChannel(d.channelSpec(), 0);
  cleanup.push(() => { ch.destroy(); m.destroy(); });
  // one 64 KiB buffer region as "guest memory"
  const addr = libc.mmap(65536);
  cleanup.push(() => libc.munmap(addr, 65536));
  const mem = new GuestMemory([{ gpa: 0, size: 65536, uaddr: 0, hva: addr }]);
  const done: { tag: number; status: number; at: number }[] = [];
  const sink: BdevIoSink = { onBdevIoDone: (io) => done.push({ tag: io.tag, status: io.status, at: performance.now() }) };
  const segs = new SegmentTable(16);
  const ios = Array.from({ length: 16 }, (_, i) => { const io = new BdevIo(sink, i, segs); io.mem = mem; return io; });
  /** I/O `tag` on blocks [lba, lba+8) using buffer bytes tag*4096.. */
  const submit = (tag: number, type: number, lba = tag * 8) => {
    const io = ios[tag];
    segs.region[tag] = 0; segs.off[tag] = tag * 4096; segs.len[tag] = 4096;
    io.type = type; io.offsetBlocks = lba; io.numBlocks = type === IoType.FLUSH ? 0 : 8;
    io.segBase = tag; io.nseg = type === IoType.READ || type === IoType.WRITE ? 1 : 0; io.bytes = io.nseg * 4096;
    ch.submit(io);
    return performance.now();
  };
  const pollUntil = (n: number, ms = 2000) => {
    const end = performance.now() + ms;
    while (done.length < n && performance.now() < end) ch.poll();
  };
  return { reg, m, d, ch, mem, done, submit, pollUntil };
}

describe('delay bdev (control plane)', () => {
  it('takes the base geometry and I/O types; reports SPDK\'s driver_specific and save_config call', () => {
    const t = setup();
    expect([t.d.blockSize, t.d.numBlocks, t.d.module]).toEqual([512, 2048, 'delay']);
    expect([...t.d.ioTypes].sort()).toEqual([...t.m.ioTypes].sort());
    expect(t.m.claimedBy).toBe('delay bdev D0');
    expect(t.d.driverSpecific()).toEqual({ delay: { name: 'D0', base_bdev_name: 'M0', ...LAT } });
    expect(t.d.configCall()).toEqual({ method: 'bdev_delay_create',
      params: { name: 'D0', base_bdev_name: 'M0', ...LAT, uuid: t.d.uuid } });
    t.d.setLatency('p99_write', 90_000);
    expect(t.d.latencies().p99_write_latency).toBe(90_000);
    t.d.destroy();
    expect(t.m.claimedBy).toBeNull();
  });

  it('refuses p99 below the average and latencies that are not whole microseconds', () => {
    const m = new MallocBdev({ name: 'M1', num_blocks: 64, block_size: 512 });
    cleanup.push(() => m.destroy());
    const mk = (o: Partial<typeof LAT>) => () => new DelayBdev(m, { base_bdev_name: 'M1', name: 'D1', ...LAT, ...o });
    expect(mk({ p99_read_latency: 10 })).toThrow(/p99 latency .* is less than its average.*make p99 at least the average/);
    expect(mk({ avg_write_latency: 1.5, p99_write_latency: 2 })).toThrow(/avg_write_latency 1.5 is invalid: give whole microseconds/);
    expect(mk({ avg_read_latency: -1 })).toThrow(/avg_read_latency -1 is invalid/);
  });
});

describe('delay bdev (channel)', () => {
  it('writes and reads go through the base and complete after their latency; flush at once', () => {
    const t = setup();
    const buf = t.mem.u8[0];
    for (let i = 0; i < 4096; i++) buf[i] = (i * 7) & 0xff;
    const w0 = t.submit(0, IoType.WRITE, 16);
    expect(t.done).toEqual([]);
    expect(t.ch.inflight()).toBe(1);
    t.submit(1, IoType.FLUSH);
    expect(t.done.map((d) => d.tag)).toEqual([1]);      // not delayed
    t.pollUntil(2);
    expect(t.done[1]).toMatchObject({ tag: 0, status: IoStatus.SUCCESS });
    expect(t.done[1].at - w0).toBeGreaterThanOrEqual(40);
    const r2 = t.submit(2, IoType.READ, 16);
    t.pollUntil(3);
    expect(t.done[2].tag).toBe(2);
    expect(t.done[2].at - r2).toBeGreaterThanOrEqual(20);
    expect(t.done[2].at - r2).toBeLessThan(40);          // the read latency, not the write one
    expect(buf.subarray(2 * 4096, 3 * 4096)).toEqual(buf.subarray(0, 4096));
    expect(t.ch.inflight()).toBe(0);
  });

  it('completions of one latency come out in submission order; a lowered latency waits behind older I/Os', () => {
    const t = setup();
    // seed 1: none of the next 12 draws is a 1-in-100 p99 pick, so all five go to the avg list
    (t.ch as unknown as { rng: number }).rng = 1;
    for (let i = 0; i < 4; i++) t.submit(i, IoType.WRITE);
    t.d.setLatency('avg_write', 1_000);
    t.d.setLatency('p99_write', 1_000);
    t.submit(4, IoType.WRITE);
    t.pollUntil(5);
    expect(t.done.map((d) => d.tag)).toEqual([0, 1, 2, 3, 4]);
  });

  it('more I/Os in flight than preallocated contexts: they grow once and are reused', () => {
    const t = setup({ avg_read_latency: 1_000, p99_read_latency: 1_000, avg_write_latency: 1_000, p99_write_latency: 1_000 });
    const segs = new SegmentTable(1);
    const sink: BdevIoSink = { onBdevIoDone: (io) => t.done.push({ tag: io.tag, status: io.status, at: 0 }) };
    const many = Array.from({ length: 300 }, (_, i) => { const io = new BdevIo(sink, i, segs); io.mem = t.mem; return io; });
    segs.region[0] = 0; segs.off[0] = 0; segs.len[0] = 512;
    for (const round of [0, 1]) {
      for (const io of many) {
        io.type = IoType.READ; io.offsetBlocks = io.tag % 2048; io.numBlocks = 1; io.segBase = 0; io.nseg = 1; io.bytes = 512;
        t.ch.submit(io);
      }
      expect(t.ch.inflight()).toBe(300);
      t.pollUntil(300 * (round + 1));
      expect(t.done.length).toBe(300 * (round + 1));
    }
    expect(t.done.every((d) => d.status === IoStatus.SUCCESS)).toBe(true);
  });

  it('a reactor may sleep with I/Os held: the timerfd wakes it at the deadline', () => {
    const t = setup();
    const fds = t.ch.wakeFds();
    expect(fds.length).toBeGreaterThanOrEqual(1);
    const ep = new Epoll(4);
    cleanup.push(() => ep.close());
    for (const fd of fds) ep.add(fd);
    const w = t.submit(0, IoType.WRITE);
    expect(t.ch.canSleep()).toBe(true);
    const n = ep.wait(1000);
    const woke = performance.now() - w;
    expect(n).toBeGreaterThan(0);
    expect(woke).toBeGreaterThanOrEqual(39);
    expect(woke).toBeLessThan(900);
    t.ch.poll(); t.pollUntil(1);
    expect(t.done.map((d) => d.tag)).toEqual([0]);
    expect(t.ch.canSleep()).toBe(true);                  // nothing held: sleeps without a timer
  });
});
