// SplitQueue on synthetic rings in synthetic guest memory: chain decoding (good and
// hostile), ring index handling, EVENT_IDX / flag notification logic.
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import {
  Chain, CHAIN_BAD_ADDR, CHAIN_BAD_INDEX, CHAIN_BAD_INDIRECT, CHAIN_BAD_ORDER, CHAIN_OK, CHAIN_TOO_LONG,
  CHAIN_TOO_MANY_SEGS, QueueSetupError, SplitQueue,
} from '../../../src/virtio/split_queue.js';
import { SegmentTable } from '../../../bdev/bdev_io.js';
import {
  VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
} from '../../../src/virtio/constants.js';
import * as libc from '../../../native/libc.js';
import { Buf, eventfdCount, FakeGuest, FakeVring, TWO32, VringOptions, writeDesc, writeTable } from './fake_driver.js';

const MiB = 1 << 20;
/** R0 and R1 are gpa-adjacent (separate host mappings); a gap before R2; R3 ends at 2^32; R4 is above 4 GiB. */
const LAYOUT = [
  { gpa: 0x0010_0000, size: MiB },
  { gpa: 0x0020_0000, size: MiB },
  { gpa: 0x0040_0000, size: MiB },
  { gpa: 0xfff0_0000, size: MiB },
  { gpa: 0x1_0010_0000, size: MiB },
];
const R0 = 0x0010_0000, R1 = 0x0020_0000, R2 = 0x0040_0000, R3 = 0xfff0_0000, R4 = 0x1_0010_0000;
const N = 64;

const guests: FakeGuest[] = [];
const fds: number[] = [];
afterEach(() => {
  for (const g of guests.splice(0)) g.destroy();
  for (const fd of fds.splice(0)) libc.closeQuiet(fd);
});

function setup(o: VringOptions = {}, layout = LAYOUT) {
  const g = new FakeGuest(layout);
  guests.push(g);
  const v = new FakeVring(g, { size: N, ...o });
  const mem = new GuestMemory(g.regions);
  const q = new SplitQueue(mem, v.spec());
  const segs = new SegmentTable(256);
  const c = new Chain();
  const read = (head: number, maxSegs = 256) => q.readChain(head, segs, 0, maxSegs, c);
  const seg = (k: number) => ({ region: segs.region[k], off: segs.off[k], len: segs.len[k] });
  return { g, v, mem, q, segs, c, read, seg };
}

describe('SplitQueue setup', () => {
  it('rejects sizes that are not a power of two up to 32768', () => {
    const g = new FakeGuest(LAYOUT); guests.push(g);
    const mem = new GuestMemory(g.regions);
    const v = new FakeVring(g, { size: 64 });
    for (const size of [0, 3, 100, 65536]) {
      expect(() => new SplitQueue(mem, { ...v.spec(), size })).toThrow(QueueSetupError);
    }
  });

  it('rejects rings outside guest memory, straddling a region end, or misaligned', () => {
    const g = new FakeGuest(LAYOUT); guests.push(g);
    const mem = new GuestMemory(g.regions);
    const v = new FakeVring(g, { size: 64 });
    const s = v.spec();
    expect(() => new SplitQueue(mem, { ...s, descUaddr: 0x1000 })).toThrow(QueueSetupError);
    expect(() => new SplitQueue(mem, { ...s, descUaddr: R0 })).toThrow(QueueSetupError); // a gpa is not a uaddr
    expect(() => new SplitQueue(mem, { ...s, usedUaddr: g.regions[0].hva })).toThrow(QueueSetupError); // nor an hva
    const r0end = g.regions[0].uaddr + MiB;
    expect(() => new SplitQueue(mem, { ...s, descUaddr: r0end - 16 * 32 })).toThrow(QueueSetupError);
    expect(() => new SplitQueue(mem, { ...s, availUaddr: s.availUaddr + 1 })).toThrow(QueueSetupError);
    expect(() => new SplitQueue(mem, { ...s, usedUaddr: s.usedUaddr + 2 })).toThrow(QueueSetupError);
    expect(() => new SplitQueue(mem, s)).not.toThrow();
  });
});

describe('SplitQueue.readChain: well-formed chains', () => {
  it('decodes a Linux-style header/data.../status chain into segments', () => {
    const { g, v, read, c, seg } = setup();
    const h = g.alloc(16), d1 = g.alloc(4096), d2 = g.alloc(512), st = g.alloc(1);
    const head = v.addChain([{ addr: h, len: 16 }, { addr: d1, len: 4096, write: true },
      { addr: d2, len: 512, write: true }, { addr: st, len: 1, write: true }]);
    expect(read(head)).toBe(CHAIN_OK);
    expect(c.head).toBe(head);
    expect(c.n).toBe(4);
    expect(c.nRead).toBe(1);
    expect(c.readBytes).toBe(16);
    expect(c.writeBytes).toBe(4096 + 512 + 1);
    expect(seg(0)).toEqual({ region: 0, off: h - R0, len: 16 });
    expect(seg(1)).toEqual({ region: 0, off: d1 - R0, len: 4096 });
    expect(seg(3)).toEqual({ region: 0, off: st - R0, len: 1 });
  });

  it('decodes into segs[base..] without touching entries below base', () => {
    const { g, v, q, segs, c } = setup();
    segs.len[9] = 777;
    const head = v.addChain([{ addr: g.alloc(16), len: 16 }, { addr: g.alloc(1), len: 1, write: true }]);
    expect(q.readChain(head, segs, 10, 4, c)).toBe(CHAIN_OK);
    expect(c.base).toBe(10);
    expect(segs.len[9]).toBe(777);
    expect(segs.len[10]).toBe(16);
    expect(segs.len[11]).toBe(1);
  });

  it('splits a buffer spanning two gpa-adjacent regions instead of rejecting it', () => {
    const { v, read, c, seg } = setup();
    const start = R1 - 100;
    const head = v.addChain([{ addr: start, len: 300, write: true }]);
    expect(read(head)).toBe(CHAIN_OK);
    expect(c.n).toBe(2);
    expect(c.writeBytes).toBe(300);
    expect(seg(0)).toEqual({ region: 0, off: MiB - 100, len: 100 });
    expect(seg(1)).toEqual({ region: 1, off: 0, len: 200 });
  });

  it('accepts buffers ending exactly at a region end and in a region above 4 GiB', () => {
    const { v, read, c, seg } = setup();
    const head = v.addChain([{ addr: R2 + MiB - 64, len: 64 }, { addr: R4 + 8, len: 8, write: true },
      { addr: TWO32 - 1, len: 1, write: true }]);
    expect(read(head)).toBe(CHAIN_OK);
    expect(c.n).toBe(3);
    expect(seg(1)).toEqual({ region: 4, off: 8, len: 8 });
    expect(seg(2)).toEqual({ region: 3, off: MiB - 1, len: 1 });
  });

  it('skips zero-length descriptors without producing segments', () => {
    const { g, v, read, c } = setup();
    const head = v.addChain([{ addr: g.alloc(16), len: 16 }, { addr: 0, len: 0 }, { addr: g.alloc(1), len: 1, write: true }]);
    expect(read(head)).toBe(CHAIN_OK);
    expect(c.n).toBe(2);
    expect(c.nRead).toBe(1);
  });

  it('follows an indirect table (in a high region, with a buffer spanning regions)', () => {
    const { g, v, read, c, seg } = setup();
    const h = g.alloc(16);
    const head = v.addIndirect([{ addr: h, len: 16 }, { addr: R1 - 8, len: 16, write: true },
      { addr: R4 + 100, len: 1, write: true }], 4);
    expect(read(head)).toBe(CHAIN_OK);
    expect(c.n).toBe(4);
    expect(c.nRead).toBe(1);
    expect(c.readBytes).toBe(16);
    expect(c.writeBytes).toBe(17);
    expect(seg(1)).toEqual({ region: 0, off: MiB - 8, len: 8 });
    expect(seg(2)).toEqual({ region: 1, off: 0, len: 8 });
    expect(seg(3)).toEqual({ region: 4, off: 100, len: 1 });
  });

  it('ignores the write flag on the descriptor that points at an indirect table', () => {
    const { g, v, read } = setup();
    const t = g.alloc(32);
    writeTable(g, t, [{ addr: g.alloc(16), len: 16 }, { addr: g.alloc(1), len: 1, write: true }]);
    const head = v.takeDesc();
    v.desc(head, t, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE);
    expect(read(head)).toBe(CHAIN_OK);
  });

  it('keeps every segment length positive for a buffer larger than 2 GiB (Int32 segment lengths)', () => {
    // One 3 GiB region (anonymous, never touched), one 2.5 GiB + 1 descriptor.
    const big = 3 * 1024 * MiB;
    const { v, read, c, segs } = setup({ size: 8 }, [{ gpa: 0x4000_0000, size: big }]);
    const len = 2.5 * 1024 * MiB + 1;
    const head = v.addChain([{ addr: 0x4000_0000 + 16 * MiB, len, write: true }]);
    expect(read(head)).toBe(CHAIN_OK);
    expect(c.writeBytes).toBe(len);
    let sum = 0;
    for (let k = 0; k < c.n; k++) { expect(segs.len[k]).toBeGreaterThan(0); sum += segs.len[k]; }
    expect(sum).toBe(len);
  });
});

describe('SplitQueue.readChain: hostile chains', () => {
  it('a descriptor loop ends with CHAIN_TOO_LONG', () => {
    const { g, v, read } = setup();
    const b = g.alloc(16);
    v.desc(0, b, 16, VRING_DESC_F_NEXT, 1);
    v.desc(1, b, 16, VRING_DESC_F_NEXT, 2);
    v.desc(2, b, 16, VRING_DESC_F_NEXT, 0);
    expect(read(0)).toBe(CHAIN_TOO_LONG);
    v.desc(5, b, 0, VRING_DESC_F_NEXT, 5); // zero-length self loop: no segments, still bounded
    expect(read(5)).toBe(CHAIN_TOO_LONG);
  });

  it('a chain visiting more descriptors than the queue has ends with CHAIN_TOO_LONG', () => {
    const { g, v, read } = setup();
    const b = g.alloc(16);
    for (let i = 0; i < N; i++) v.desc(i, b, 1, VRING_DESC_F_NEXT, (i + 1) % N);
    expect(read(0)).toBe(CHAIN_TOO_LONG);
    // exactly N descriptors is fine
    v.desc(N - 1, b, 1, VRING_DESC_F_WRITE);
    for (let i = 0; i < N - 1; i++) v.desc(i, b, 1, VRING_DESC_F_NEXT, i + 1);
    expect(read(0)).toBe(CHAIN_OK);
  });

  it('a next index out of range ends with CHAIN_BAD_INDEX', () => {
    const { g, v, read } = setup();
    v.desc(0, g.alloc(16), 16, VRING_DESC_F_NEXT, N);
    expect(read(0)).toBe(CHAIN_BAD_INDEX);
    v.desc(0, g.alloc(16), 16, VRING_DESC_F_NEXT, 0xffff);
    expect(read(0)).toBe(CHAIN_BAD_INDEX);
  });

  it('addresses outside guest memory end with CHAIN_BAD_ADDR', () => {
    const { v, read } = setup();
    const cases: [number, number, number][] = [ // lo, hi, len
      [0, 0, 16],                                  // below every region
      [R0 + MiB * 2 - 16, 0, 32],                  // runs off R1 into the gap
      [R1 + MiB, 0, 1],                            // first byte of the gap
      [R2 + MiB, 0, 1],                            // one past R2
      [R2 + MiB - 1, 0, 2],                        // last byte of R2 and one past
      [0xffff_fff0, 0, 0x0010_0010],               // wraps to R0's start in 32-bit arithmetic
      [R3, 0, 0xffff_ffff],                        // length near 2^32
      [TWO32 - 16, 0, 32],                         // R3 end into the gap above 2^32
      [0x0010_0000, 2, 16],                        // R4's low word with a wrong hi word (2^33 + 1 MiB)
      [0x0010_0000, 0x200000, 16],                 // hi bits >= 2^21: beyond 2^53
      [0xffff_ffff, 0xffff_ffff, 16],
      [R0, 0x1f_ffff, 16],                         // just below 2^53, still not guest memory
    ];
    for (const [lo, hi, len] of cases) {
      v.descRaw(0, lo, hi, len, VRING_DESC_F_WRITE, 0);
      expect(read(0), `lo=${lo.toString(16)} hi=${hi.toString(16)} len=${len}`).toBe(CHAIN_BAD_ADDR);
    }
    // sanity: the high region itself is reachable
    v.descRaw(0, R4 % TWO32, 1, 16, VRING_DESC_F_WRITE, 0);
    expect(read(0)).toBe(CHAIN_OK);
  });

  it('a buffer starting in one region and spanning an unmapped gap is rejected', () => {
    const { v, read } = setup();
    v.desc(0, R1 + MiB - 8, 16, VRING_DESC_F_WRITE);
    expect(read(0)).toBe(CHAIN_BAD_ADDR);
  });

  it('a readable descriptor after a writable one ends with CHAIN_BAD_ORDER', () => {
    const { g, v, read } = setup();
    const head = v.addChain([{ addr: g.alloc(16), len: 16 }, { addr: g.alloc(8), len: 8, write: true },
      { addr: g.alloc(8), len: 8 }]);
    expect(read(head)).toBe(CHAIN_BAD_ORDER);
  });

  it('more segments than the caller allows ends with CHAIN_TOO_MANY_SEGS', () => {
    const { g, v, read } = setup();
    const bufs: Buf[] = [];
    for (let i = 0; i < 9; i++) bufs.push({ addr: g.alloc(8), len: 8, write: i > 0 });
    const head = v.addChain(bufs);
    expect(read(head, 9)).toBe(CHAIN_OK);
    expect(read(head, 8)).toBe(CHAIN_TOO_MANY_SEGS);
    // a split at a region boundary counts as a segment too
    const h2 = v.addChain([{ addr: R1 - 4, len: 8, write: true }]);
    expect(read(h2, 1)).toBe(CHAIN_TOO_MANY_SEGS);
  });

  it('indirect descriptors are refused unless negotiated', () => {
    const { g, v, read } = setup({ indirect: false });
    const head = v.addIndirect([{ addr: g.alloc(16), len: 16 }, { addr: g.alloc(1), len: 1, write: true }]);
    expect(read(head)).toBe(CHAIN_BAD_INDIRECT);
  });

  it('malformed indirect tables are refused', () => {
    const { g, v, read } = setup();
    const t = g.alloc(16 * 8);
    writeTable(g, t, [{ addr: g.alloc(16), len: 16 }, { addr: g.alloc(1), len: 1, write: true }]);
    const bad: [number, number, number, number][] = [ // addr, len, flags, expected
      [t, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, CHAIN_BAD_INDIRECT], // INDIRECT with NEXT
      [t, 0, VRING_DESC_F_INDIRECT, CHAIN_BAD_INDIRECT],                      // empty
      [t, 24, VRING_DESC_F_INDIRECT, CHAIN_BAD_INDIRECT],                     // not a multiple of 16
      [t + 2, 32, VRING_DESC_F_INDIRECT, CHAIN_BAD_INDIRECT],                 // misaligned
      [t, 16 * 32768 + 16, VRING_DESC_F_INDIRECT, CHAIN_BAD_INDIRECT],        // too long
      [R1 + MiB - 16, 32, VRING_DESC_F_INDIRECT, CHAIN_BAD_ADDR],             // table runs into the gap
      [R1 - 16, 32, VRING_DESC_F_INDIRECT, CHAIN_BAD_ADDR],                   // table spans two regions
      [0x10, 32, VRING_DESC_F_INDIRECT, CHAIN_BAD_ADDR],                      // outside guest memory
    ];
    for (const [addr, len, flags, want] of bad) {
      v.desc(0, addr, len, flags, 1);
      expect(read(0), `addr=${addr.toString(16)} len=${len} flags=${flags}`).toBe(want);
    }
  });

  it('an indirect descriptor inside an indirect table, or after direct data, is refused', () => {
    const { g, v, read } = setup();
    const inner = g.alloc(32);
    writeTable(g, inner, [{ addr: g.alloc(16), len: 16 }, { addr: g.alloc(1), len: 1, write: true }]);
    const outer = g.alloc(32);
    writeDesc(g, outer, g.alloc(16), 0, 16, VRING_DESC_F_NEXT, 1);
    writeDesc(g, outer + 16, inner, 0, 32, VRING_DESC_F_INDIRECT, 0);
    v.desc(0, outer, 32, VRING_DESC_F_INDIRECT);
    expect(read(0)).toBe(CHAIN_BAD_INDIRECT);
    // direct buffer, then an indirect descriptor
    v.desc(1, g.alloc(16), 16, VRING_DESC_F_NEXT, 2);
    v.desc(2, inner, 32, VRING_DESC_F_INDIRECT);
    expect(read(1)).toBe(CHAIN_BAD_INDIRECT);
  });

  it('loops, long chains and bad next indices inside an indirect table are caught', () => {
    const { g, v, read } = setup();
    const b = g.alloc(16);
    const t = g.alloc(16 * 4);
    for (let i = 0; i < 4; i++) writeDesc(g, t + 16 * i, b, 0, 16, VRING_DESC_F_NEXT, (i + 1) % 4);
    v.desc(0, t, 64, VRING_DESC_F_INDIRECT);
    expect(read(0)).toBe(CHAIN_TOO_LONG);
    writeDesc(g, t + 16 * 3, b, 0, 16, VRING_DESC_F_NEXT, 4); // next == table size
    expect(read(0)).toBe(CHAIN_BAD_INDEX);
    writeDesc(g, t + 16 * 3, b, 0, 16, VRING_DESC_F_WRITE, 0);
    expect(read(0)).toBe(CHAIN_OK);
    // a table entry pointing outside guest memory
    writeDesc(g, t + 16 * 3, 0xdead_0000, 0, 16, VRING_DESC_F_WRITE, 0);
    expect(read(0)).toBe(CHAIN_BAD_ADDR);
  });
});

describe('SplitQueue avail ring', () => {
  it('hands out heads in order and counts pending requests', () => {
    const { g, v, q } = setup();
    const heads = [5, 9, 1];
    for (const h of heads) v.desc(h, g.alloc(16), 16, 0);
    expect(q.pending()).toBe(0);
    v.publish(...heads);
    expect(q.pending()).toBe(3);
    expect([q.nextHead(), q.nextHead(), q.nextHead()]).toEqual(heads);
    expect(q.pending()).toBe(0);
    expect(q.broken).toBeNull();
  });

  it('wraps the 16-bit avail and used indices', () => {
    const { v, q } = setup({ startIdx: 65533 });
    expect(q.lastAvail).toBe(65533);
    const heads = [0, 1, 2, 3, 4, 5];
    v.publish(...heads);
    expect(v.availIdx).toBe(3);
    expect(q.pending()).toBe(6);
    const got: number[] = [];
    for (let k = 0; k < 6; k++) got.push(q.nextHead());
    expect(got).toEqual(heads);
    expect(q.lastAvail).toBe(3);
    for (const h of got) q.pushUsed(h, 100 + h);
    expect(q.flush()).toBe(6);
    expect(v.usedIdx).toBe(3);
    expect(v.takeUsed()).toEqual(heads.map((h) => ({ id: h, len: 100 + h })));
  });

  it('breaks the queue when the avail index jumps by more than the queue size', () => {
    const { v, q } = setup();
    v.setAvailIdx(N + 1);
    expect(q.pending()).toBe(0);
    expect(q.broken).toMatch(/avail index jumped/);
  });

  it('accepts a jump of exactly the queue size; a backwards index breaks the queue', () => {
    const { v, q } = setup({ startIdx: 10 });
    v.setAvailIdx(10 + N);
    expect(q.pending()).toBe(N);
    expect(q.broken).toBeNull();
    v.setAvailIdx(9);
    expect(q.pending()).toBe(0);
    expect(q.broken).not.toBeNull();
  });

  it('breaks the queue on an avail ring entry beyond the queue size', () => {
    const { v, q } = setup();
    v.setAvailRing(0, N);
    v.setAvailIdx(1);
    expect(q.pending()).toBe(1);
    expect(q.nextHead()).toBe(-1);
    expect(q.broken).toMatch(/beyond the queue size/);
  });
});

describe('SplitQueue notifications', () => {
  function withCall(o: VringOptions) {
    const callFd = libc.eventfd();
    fds.push(callFd);
    return { ...setup({ ...o, callFd }), callFd };
  }

  it('EVENT_IDX: signals once per flush when used_event is crossed, never when it is not', () => {
    const { v, q, callFd } = withCall({ eventIdx: true });
    v.usedEvent = 0; // "interrupt me when used idx moves past 0"
    q.pushUsed(1, 1); q.pushUsed(2, 1); q.pushUsed(3, 1);
    expect(q.flush()).toBe(3);
    expect(eventfdCount(callFd)).toBe(1);
    expect(q.notifications).toBe(1);
    // used idx is 3; the driver asks for an interrupt only after entry 10
    v.usedEvent = 10;
    for (let i = 0; i < 5; i++) q.pushUsed(i, 1);
    q.flush();                                  // idx 8: event 10 not crossed
    expect(eventfdCount(callFd)).toBe(0);
    q.pushUsed(9, 1); q.pushUsed(9, 1);
    q.flush();                                  // idx 10: reaches used_event but has not passed it
    expect(eventfdCount(callFd)).toBe(0);
    q.pushUsed(9, 1);
    q.flush();                                  // idx 11 > used_event 10: signal
    expect(eventfdCount(callFd)).toBe(1);
    // nothing new: no signal
    expect(q.flush()).toBe(0);
    expect(eventfdCount(callFd)).toBe(0);
  });

  it('coalescing: above the IOPS threshold interrupts are spaced out; one held back goes out on signalNow; off again = every flush', () => {
    // a clock of our own: 100 flushes per ms whatever the load on the machine
    let clock = 1000;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    onTestFinished(() => now.mockRestore());
    const { q, callFd } = withCall({});
    const burst = (ms: number) => {
      const end = clock + ms;
      let flushes = 0;
      while (clock < end) { q.pushUsed(1, 1); q.flush(); flushes++; clock += 0.01; }
      return flushes;
    };
    // off: one interrupt per flush (the driver never suppresses them here)
    const n0 = burst(3);
    expect(eventfdCount(callFd)).toBe(n0);
    // 100 IOPS threshold, 1 ms base: the rate of this loop is far above it, so after the
    // first 10 ms measurement the delay hits its cap (10 ms)
    q.setCoalescing({ delayBaseUs: 1000, iopsThreshold: 100 });
    burst(12);
    eventfdCount(callFd);
    const before = q.notifications;
    const n1 = burst(25);
    const sent = q.notifications - before;
    // at most one interrupt per 10 ms (plus one at a window edge), against hundreds of flushes
    expect(n1).toBeGreaterThan(100);
    expect(sent).toBeGreaterThanOrEqual(1);
    expect(sent).toBeLessThanOrEqual(5);
    expect(eventfdCount(callFd)).toBe(sent);
    // completions since the last interrupt are owed: signalNow (the reactor calls it before sleeping) sends them
    q.pushUsed(1, 1); q.flush();
    expect(q.signalPending).toBe(true);
    q.signalNow();
    expect(q.signalPending).toBe(false);
    expect(eventfdCount(callFd)).toBe(1);
    // enableKicks (the reactor is about to sleep) sends an interrupt still held back
    q.pushUsed(1, 1); q.flush();
    expect(q.signalPending).toBe(true);
    q.enableKicks();
    expect(q.signalPending).toBe(false);
    expect(eventfdCount(callFd)).toBe(1);
    q.suppressKicks();
    // back off: every flush notifies again, and a pending interrupt is sent at once
    q.pushUsed(1, 1); q.flush();
    q.setCoalescing({ delayBaseUs: 0, iopsThreshold: 0 });
    q.pushUsed(1, 1); q.flush();
    expect(eventfdCount(callFd)).toBeGreaterThanOrEqual(1);
    const n2 = burst(2);
    expect(eventfdCount(callFd)).toBe(n2);
  });

  it('EVENT_IDX: used_event far behind (already passed) means no interrupt', () => {
    const { v, q, callFd } = withCall({ eventIdx: true });
    q.pushUsed(1, 1); q.flush();
    expect(eventfdCount(callFd)).toBe(1); // used_event 0 initially
    v.usedEvent = 0;                      // stale: idx already 1
    q.pushUsed(1, 1); q.flush();
    expect(eventfdCount(callFd)).toBe(0);
  });

  it('EVENT_IDX across the 16-bit wrap', () => {
    const { v, q, callFd } = withCall({ eventIdx: true, startIdx: 65534 });
    v.usedEvent = 65535;
    q.pushUsed(0, 1);
    q.flush(); // 65535: not past 65535
    expect(eventfdCount(callFd)).toBe(0);
    q.pushUsed(1, 1); q.pushUsed(2, 1);
    q.flush(); // 1: past 65535
    expect(eventfdCount(callFd)).toBe(1);
    expect(v.usedIdx).toBe(1);
  });

  it('without EVENT_IDX: VRING_AVAIL_F_NO_INTERRUPT suppresses the signal', () => {
    const { v, q, callFd } = withCall({ eventIdx: false });
    q.pushUsed(0, 1); q.pushUsed(1, 1);
    q.flush();
    expect(eventfdCount(callFd)).toBe(1);
    v.availFlags = VRING_AVAIL_F_NO_INTERRUPT;
    q.pushUsed(2, 1);
    q.flush();
    expect(eventfdCount(callFd)).toBe(0);
    expect(v.usedIdx).toBe(3);
    v.availFlags = 0;
    q.pushUsed(3, 1);
    q.flush();
    expect(eventfdCount(callFd)).toBe(1);
  });

  it('EVENT_IDX: kicks are suppressed while polling and avail_event stays ahead', () => {
    const { g, v, q } = setup({ eventIdx: true, startIdx: 65530 });
    // the driver kicks iff the new avail idx crosses avail_event (vring_need_event)
    const driverWouldKick = (oldIdx: number, newIdx: number) =>
      ((newIdx - v.availEvent - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    expect(driverWouldKick(65530, 65530 + 40)).toBe(false);
    for (let i = 0; i < 10; i++) v.desc(i, g.alloc(16), 16, 0);
    v.publish(0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    for (let n = q.pending(); n > 0; n--) q.nextHead();
    q.keepKicksSuppressed();
    expect(v.availEvent).toBe((q.lastAvail + 0x7fff) & 0xffff);
    expect(driverWouldKick(q.lastAvail, (q.lastAvail + 50) & 0xffff)).toBe(false);
    // before sleeping: the next request must kick
    expect(q.enableKicks()).toBe(true);
    expect(v.availEvent).toBe(q.lastAvail);
    expect(driverWouldKick(q.lastAvail, (q.lastAvail + 1) & 0xffff)).toBe(true);
    // back to polling
    q.suppressKicks();
    expect(driverWouldKick(q.lastAvail, (q.lastAvail + 1) & 0xffff)).toBe(false);
  });

  it('without EVENT_IDX: VRING_USED_F_NO_NOTIFY is set while polling and cleared before sleeping', () => {
    const { v, q } = setup({ eventIdx: false });
    expect(v.usedFlags & VRING_USED_F_NO_NOTIFY).toBe(VRING_USED_F_NO_NOTIFY);
    expect(q.enableKicks()).toBe(true);
    expect(v.usedFlags & VRING_USED_F_NO_NOTIFY).toBe(0);
    q.suppressKicks();
    expect(v.usedFlags & VRING_USED_F_NO_NOTIFY).toBe(VRING_USED_F_NO_NOTIFY);
  });

  it('enableKicks() returns false when requests are already pending', () => {
    for (const eventIdx of [true, false]) {
      const { g, v, q } = setup({ eventIdx });
      v.desc(0, g.alloc(16), 16, 0);
      v.publish(0);
      expect(q.enableKicks()).toBe(false);
      q.nextHead();
      expect(q.enableKicks()).toBe(true);
    }
  });
});
