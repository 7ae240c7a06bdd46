// The bdev layer splits I/Os larger than a module's limit; pieces carry the right blocks and
// the right slices of a multi-segment scatter list, and the caller sees one completion.
import { describe, it, expect, afterEach } from 'vitest';
import * as libc from '../../native/libc.js';
import { BdevChannel } from '../../bdev/channel.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType } from '../../bdev/types.js';
import { createStats, sumStats } from '../../bdev/stats.js';
import { GuestMemory } from '../../src/memory/guest_memory.js';

const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0)) f(); });

/** A RAM disk that refuses any I/O above its limit and can hold completions or fail one block. */
class LimitedDisk extends BdevChannel {
  readonly disk: Uint8Array;
  pieces: { offset: number; blocks: number; segs: number }[] = [];
  failBlock = -1;
  hold = false;
  held: BdevIo[] = [];
  protected submitIo(io: BdevIo): void {
    if (io.numBlocks > this.maxIoBlocks) throw new Error(`piece of ${io.numBlocks} blocks exceeds the limit`);
    this.pieces.push({ offset: io.offsetBlocks, blocks: io.numBlocks, segs: io.nseg });
    if (this.failBlock >= io.offsetBlocks && this.failBlock < io.offsetBlocks + io.numBlocks) { this.complete(io, IoStatus.FAILED); return; }
    let pos = io.offsetBlocks * this.blockSize;
    for (let i = io.segBase; i < io.segBase + io.nseg; i++) {
      const buf = io.mem!.u8[io.segs.region[i]], off = io.segs.off[i], len = io.segs.len[i];
      if (io.type === IoType.WRITE) this.disk.set(buf.subarray(off, off + len), pos);
      else buf.set(this.disk.subarray(pos, pos + len), off);
      pos += len;
    }
    if (this.hold) this.held.push(io); else this.complete(io, IoStatus.SUCCESS);
  }
  constructor(spec: BdevChannelSpec) { super(spec, 0); this.disk = new Uint8Array(spec.numBlocks * spec.blockSize); }
}

function setup(maxIoBlocks: number) {
  const spec: BdevChannelSpec = { name: 'lim', module: 'test', blockSize: 512, numBlocks: 1024, stats: createStats(1),
    maxIoBlocks, data: {} };
  const ch = new LimitedDisk(spec);
  const len = 1 << 20, addr = libc.mmap(len);
  cleanup.push(() => libc.munmap(addr, len));
  const mem = new GuestMemory([{ gpa: 0, size: len, uaddr: 0, hva: addr }]);
  const done: number[] = [];
  const sink: BdevIoSink = { onBdevIoDone: (io) => done.push(io.status) };
  const io = new BdevIo(sink, 0, new SegmentTable(8));
  io.mem = mem;
  return { ch, spec, mem, io, done };
}

/** Three segments of 1536, 3072 and 2560 bytes at scattered offsets: 14 blocks. */
function scatter(io: BdevIo, type: number, offsetBlocks: number): void {
  const parts = [[0x10000, 1536], [0x40000, 3072], [0x20200, 2560]];
  parts.forEach(([off, len], i) => { io.segs.region[i] = 0; io.segs.off[i] = off; io.segs.len[i] = len; });
  io.type = type; io.offsetBlocks = offsetBlocks; io.numBlocks = 14; io.segBase = 0; io.nseg = 3; io.bytes = 7168;
}

describe('I/O splitting at module limits', () => {
  it('writes and reads back a scattered 14-block I/O through 4-block pieces', () => {
    const t = setup(4);
    const u8 = t.mem.u8[0];
    for (let i = 0; i < u8.length; i++) u8[i] = (i * 7 + 3) & 0xff;
    const expected = new Uint8Array(7168);
    let k = 0;
    for (const [off, len] of [[0x10000, 1536], [0x40000, 3072], [0x20200, 2560]]) { expected.set(u8.subarray(off, off + len), k); k += len; }
    scatter(t.io, IoType.WRITE, 100);
    t.ch.submit(t.io);
    expect(t.done).toEqual([IoStatus.SUCCESS]);
    expect(t.ch.pieces.map((p) => [p.offset, p.blocks])).toEqual([[100, 4], [104, 4], [108, 4], [112, 2]]);
    expect(t.ch.disk.subarray(100 * 512, 114 * 512)).toEqual(expected);
    // read into cleared buffers
    for (const [off, len] of [[0x10000, 1536], [0x40000, 3072], [0x20200, 2560]]) u8.fill(0, off, off + len);
    scatter(t.io, IoType.READ, 100);
    t.ch.submit(t.io);
    expect(t.done).toEqual([IoStatus.SUCCESS, IoStatus.SUCCESS]);
    k = 0;
    for (const [off, len] of [[0x10000, 1536], [0x40000, 3072], [0x20200, 2560]]) { expect(u8.subarray(off, off + len)).toEqual(expected.subarray(k, k + len)); k += len; }
    // statistics count the caller's I/Os, not the pieces
    const st = sumStats(t.spec.stats);
    expect([st.writeOps, st.readOps, st.writeBytes]).toEqual([1, 1, 7168]);
  });

  it('stops at the first failing piece and reports the failure once', () => {
    const t = setup(4);
    t.ch.failBlock = 105;
    scatter(t.io, IoType.WRITE, 100);
    t.ch.submit(t.io);
    expect(t.done).toEqual([IoStatus.FAILED]);
    expect(t.ch.pieces).toHaveLength(2);
  });

  it('splits asynchronous completions too, and unmaps by blocks', () => {
    const t = setup(4);
    t.ch.hold = true;
    scatter(t.io, IoType.WRITE, 0);
    t.ch.submit(t.io);
    for (let n = 0; n < 4; n++) { expect(t.done).toEqual([]); const p = t.ch.held.shift()!; t.ch.complete(p, IoStatus.SUCCESS); }
    expect(t.done).toEqual([IoStatus.SUCCESS]);
    t.ch.hold = false;
    t.io.type = IoType.UNMAP; t.io.offsetBlocks = 10; t.io.numBlocks = 9; t.io.nseg = 0; t.io.bytes = 0;
    t.ch.pieces = [];
    t.ch.submit(t.io);
    expect(t.ch.pieces.map((p) => [p.offset, p.blocks, p.segs])).toEqual([[10, 4, 0], [14, 4, 0], [18, 1, 0]]);
  });

  it('fails an I/O whose buffers are shorter than its blocks instead of reading past them', () => {
    const t = setup(4);
    scatter(t.io, IoType.READ, 0);
    t.io.numBlocks = 16;   // 8192 bytes claimed, 7168 described
    t.ch.submit(t.io);
    expect(t.done).toEqual([IoStatus.FAILED]);
  });
});
