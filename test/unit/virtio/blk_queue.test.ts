// BlkQueue (virtio-blk request queue poller) driven by a fake guest driver on
// synthetic rings: request types and layouts, notification logic, and hostile input.
import { afterEach, describe, expect, it } from 'vitest';
import { BlkQueue } from '../../../targets/blk/blk_queue.js';
import * as B from '../../../targets/blk/virtio_blk.js';
import { BdevChannel } from '../../../bdev/channel.js';
import { BdevIo } from '../../../bdev/bdev_io.js';
import { NullChannel } from '../../../bdev/null/null_channel.js';
import { MallocChannel } from '../../../bdev/malloc/malloc_channel.js';
import { createStats } from '../../../bdev/stats.js';
import { BdevChannelSpec, IoStatus } from '../../../bdev/types.js';
import { VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from '../../../src/virtio/constants.js';
import * as libc from '../../../native/libc.js';
import {
  blkHeader, blkRange, blkStatus, Buf, eventfdCount, FakeGuest, FakeVring, pattern, RegionLayout, STATUS_UNTOUCHED,
  writeBlkHeader, writeDesc, writeTable,
} from './fake_driver.js';

const MiB = 1 << 20;
const R0 = 0x0010_0000, R1 = 0x0030_0000, R2 = 0x0050_0000, R3 = 0xfff0_0000, R4 = 0x1_0010_0000;
/** R0/R1 gpa-adjacent; a gap; R2 (4 MiB, for size_max); R3 ends at 2^32; R4 above 4 GiB. */
const LAYOUT: RegionLayout[] = [
  { gpa: R0, size: 2 * MiB }, { gpa: R1, size: MiB }, { gpa: R2, size: 4 * MiB },
  { gpa: R3, size: MiB }, { gpa: R4, size: MiB },
];

/** A bdev channel that holds I/Os until released: requests stay in flight. */
class HoldChannel extends BdevChannel {
  readonly held: BdevIo[] = [];
  submits = 0;
  protected submitIo(io: BdevIo): void { this.submits++; this.held.push(io); }
  release(status: number = IoStatus.SUCCESS): void { for (const io of this.held.splice(0)) this.complete(io, status); }
}

interface Opts {
  layout?: RegionLayout[];
  size?: number;
  eventIdx?: boolean;
  indirect?: boolean;
  startIdx?: number;
  readOnly?: boolean;
  blockSize?: number;
  numBlocks?: number;
  backend?: 'malloc' | 'null' | 'hold';
  serial?: string;
}

const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });

function blk(o: Opts = {}) {
  const g = new FakeGuest(o.layout ?? LAYOUT);
  cleanup.push(() => g.destroy());
  const callFd = libc.eventfd(), kickFd = libc.eventfd();
  cleanup.push(() => { libc.closeQuiet(callFd); libc.closeQuiet(kickFd); });
  const v = new FakeVring(g, { size: o.size ?? 64, eventIdx: o.eventIdx ?? false, indirect: o.indirect ?? true,
    startIdx: o.startIdx, callFd });
  const blockSize = o.blockSize ?? 512, numBlocks = o.numBlocks ?? (8 * MiB) / blockSize;
  const backend = o.backend ?? 'malloc';
  const bytes = blockSize * numBlocks;
  const data: Record<string, unknown> = {};
  let disk: Uint8Array | null = null;
  if (backend === 'malloc') {
    const fd = libc.memfdCreate('blk-test-disk', bytes);
    const addr = libc.mmap(bytes, fd);
    cleanup.push(() => { libc.munmap(addr, bytes); libc.closeQuiet(fd); });
    data.addr = addr; data.bytes = bytes;
    disk = new Uint8Array(libc.view(addr, bytes));
    disk.set(pattern(bytes, 7));
  }
  const bdev: BdevChannelSpec = { name: `${backend}0`, module: backend, blockSize, numBlocks, stats: createStats(1),
    maxIoBlocks: 0, data };
  const ch = backend === 'malloc' ? new MallocChannel(bdev, 0) : backend === 'null' ? new NullChannel(bdev, 0)
    : new HoldChannel(bdev, 0);
  const q = new BlkQueue({ ctrlr: 'vhost.0', qid: 0, mem: g.regions, ring: v.spec(), kickFd, bdev,
    readOnly: o.readOnly ?? false, serial: o.serial ?? 'SN-0001' }, ch);
  const broken: string[] = [];
  q.onBroken = (_q, why) => broken.push(why);
  return { g, v, q, ch, disk, callFd, kickFd, broken };
}
type T = ReturnType<typeof blk>;

interface Req { head: number; h: number; d: number; s: number }

/**
 * Header / data (in `descs` equal pieces) / status, Linux style; data for OUT is a pattern.
 * `dataAt` places the data buffer (default: fresh memory in R0).
 */
function rw(t: T, type: number, sector: number, bytes: number,
  o: { descs?: number; indirect?: boolean; dataAt?: number; seed?: number } = {}): Req {
  const h = blkHeader(t.g, type, sector);
  const d = o.dataAt ?? t.g.alloc(Math.max(bytes, 1), 512);
  if (type === B.VIRTIO_BLK_T_OUT) t.g.write(d, pattern(bytes, o.seed ?? 1));
  else if (bytes > 0) t.g.fill(d, bytes, 0xee);
  const s = blkStatus(t.g);
  const bufs: Buf[] = [{ addr: h, len: 16 }];
  const n = o.descs ?? 1, piece = bytes / n;
  for (let k = 0; k < n && bytes > 0; k++) bufs.push({ addr: d + k * piece, len: piece, write: type !== B.VIRTIO_BLK_T_OUT });
  bufs.push({ addr: s, len: 1, write: true });
  const head = o.indirect ? t.v.addIndirect(bufs) : t.v.addChain(bufs);
  return { head, h, d, s };
}

/** A request with no data: FLUSH, unknown types. */
function bare(t: T, type: number, sector = 0): Req {
  const h = blkHeader(t.g, type, sector), s = blkStatus(t.g);
  return { head: t.v.addChain([{ addr: h, len: 16 }, { addr: s, len: 1, write: true }]), h, d: 0, s };
}

/** DISCARD / WRITE_ZEROES with one range. */
function range(t: T, type: number, sector: number, num: number, flags = 0): Req {
  const h = blkHeader(t.g, type, 0), d = t.g.alloc(16), s = blkStatus(t.g);
  t.g.write(d, blkRange(sector, num, flags));
  return { head: t.v.addChain([{ addr: h, len: 16 }, { addr: d, len: 16 }, { addr: s, len: 1, write: true }]), h, d, s };
}

/** Publishes, polls once, returns the used entries (id -> len). */
function run(t: T, ...reqs: Req[]): Map<number, number> {
  t.v.publish(...reqs.map((r) => r.head));
  expect(() => t.q.poll()).not.toThrow();
  return new Map(t.v.takeUsed().map((u) => [u.id, u.len]));
}
const st = (t: T, r: Req) => t.g.u8At(r.s);
/** Byte equality for large arrays (vitest's deep equality is slow on megabytes). */
const same = (a: Uint8Array, b: Uint8Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const diskAt = (t: T, sector: number, len: number) => t.disk!.slice(sector * 512, sector * 512 + len);

describe('BlkQueue: request types', () => {
  it('OUT and IN with Linux-style multi-descriptor data round-trip through the malloc bdev', () => {
    const t = blk();
    const w = rw(t, B.VIRTIO_BLK_T_OUT, 8, 8192, { descs: 4, seed: 3 });
    let used = run(t, w);
    expect(used.get(w.head)).toBe(1);
    expect(st(t, w)).toBe(B.VIRTIO_BLK_S_OK);
    expect(diskAt(t, 8, 8192)).toEqual(pattern(8192, 3));
    const r = rw(t, B.VIRTIO_BLK_T_IN, 8, 8192, { descs: 2 });
    const r2 = rw(t, B.VIRTIO_BLK_T_IN, 12, 2048, { descs: 4 });
    used = run(t, r, r2);
    expect(used.get(r.head)).toBe(8192 + 1);
    expect(used.get(r2.head)).toBe(2048 + 1);
    expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
    expect(t.g.read(r.d, 8192)).toEqual(pattern(8192, 3));
    expect(t.g.read(r2.d, 2048)).toEqual(pattern(8192, 3).subarray(2048, 4096));
    expect(t.q.counters.requests).toBe(3);
    expect(t.q.inFlight).toBe(0);
    expect(t.g.canariesIntact()).toBe(true);
  });

  it('IN with no data buffer completes OK with used.len 1', () => {
    const t = blk();
    const r = rw(t, B.VIRTIO_BLK_T_IN, 0, 0);
    expect(run(t, r).get(r.head)).toBe(1);
    expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
  });

  it('FLUSH completes OK with used.len 1', () => {
    const t = blk();
    const r = bare(t, B.VIRTIO_BLK_T_FLUSH);
    expect(run(t, r).get(r.head)).toBe(1);
    expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
  });

  it('GET_ID writes the serial, zero-padded to 20 bytes, used.len 21; truncates long serials', () => {
    for (const [serial, want] of [['SN-0001', 'SN-0001'], ['ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'ABCDEFGHIJKLMNOPQRST']]) {
      const t = blk({ serial });
      const r = rw(t, B.VIRTIO_BLK_T_GET_ID, 0, 20);
      t.g.fill(r.d, 20, 0xee);
      expect(run(t, r).get(r.head)).toBe(21);
      expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
      const id = new Uint8Array(20);
      id.set(new TextEncoder().encode(want));
      expect(t.g.read(r.d, 20)).toEqual(id);
    }
  });

  it('GET_ID into a buffer split across descriptors and regions', () => {
    const t = blk();
    const h = blkHeader(t.g, B.VIRTIO_BLK_T_GET_ID, 0), s = blkStatus(t.g);
    const head = t.v.addChain([{ addr: h, len: 16 }, { addr: R1 - 6, len: 6, write: true },
      { addr: R1 + 100, len: 14, write: true }, { addr: s, len: 1, write: true }]);
    expect(run(t, { head, h, d: 0, s }).get(head)).toBe(21);
    const got = new Uint8Array([...t.g.read(R1 - 6, 6), ...t.g.read(R1 + 100, 14)]);
    expect(new TextDecoder().decode(got.subarray(0, 7))).toBe('SN-0001');
    expect(t.g.u8At(s)).toBe(B.VIRTIO_BLK_S_OK);
  });

  it('DISCARD and WRITE_ZEROES zero exactly their range', () => {
    const t = blk();
    const before = t.disk!.slice();
    const d = range(t, B.VIRTIO_BLK_T_DISCARD, 16, 8);
    const z = range(t, B.VIRTIO_BLK_T_WRITE_ZEROES, 100, 3, 1 /* may unmap */);
    const used = run(t, d, z);
    expect(used.get(d.head)).toBe(1);
    expect(used.get(z.head)).toBe(1);
    expect(st(t, d)).toBe(B.VIRTIO_BLK_S_OK);
    expect(st(t, z)).toBe(B.VIRTIO_BLK_S_OK);
    expect(diskAt(t, 16, 8 * 512).every((b) => b === 0)).toBe(true);
    expect(diskAt(t, 100, 3 * 512).every((b) => b === 0)).toBe(true);
    expect(diskAt(t, 15, 512)).toEqual(before.slice(15 * 512, 16 * 512));
    expect(diskAt(t, 24, 512)).toEqual(before.slice(24 * 512, 25 * 512));
    expect(diskAt(t, 103, 512)).toEqual(before.slice(103 * 512, 104 * 512));
  });

  it('DISCARD with flags set and WRITE_ZEROES with unknown flags are UNSUPP', () => {
    const t = blk();
    const before = t.disk!.slice();
    const d = range(t, B.VIRTIO_BLK_T_DISCARD, 16, 8, 1);
    const z = range(t, B.VIRTIO_BLK_T_WRITE_ZEROES, 16, 8, 2);
    const used = run(t, d, z);
    expect(st(t, d)).toBe(B.VIRTIO_BLK_S_UNSUPP);
    expect(st(t, z)).toBe(B.VIRTIO_BLK_S_UNSUPP);
    expect(used.get(d.head)).toBe(1);
    expect(used.get(z.head)).toBe(1);
    expect(same(t.disk!, before)).toBe(true);
  });

  it('DISCARD with two ranges (max_discard_seg is 1) is UNSUPP; a range past the end is IOERR', () => {
    const t = blk();
    const h = blkHeader(t.g, B.VIRTIO_BLK_T_DISCARD, 0), d = t.g.alloc(32), s = blkStatus(t.g);
    t.g.write(d, blkRange(0, 8, 0)); t.g.write(d + 16, blkRange(64, 8, 0));
    const two = { head: t.v.addChain([{ addr: h, len: 16 }, { addr: d, len: 32 }, { addr: s, len: 1, write: true }]), h, d, s };
    const sectors = (8 * MiB) / 512;
    const past = range(t, B.VIRTIO_BLK_T_DISCARD, sectors - 4, 8);
    const huge = range(t, B.VIRTIO_BLK_T_WRITE_ZEROES, 0, B.BLK_MAX_WRITE_ZEROES_SECTORS + 1);
    const far = range(t, B.VIRTIO_BLK_T_DISCARD, 2 ** 63, 1);
    run(t, two, past, huge, far);
    expect(st(t, two)).toBe(B.VIRTIO_BLK_S_UNSUPP);
    expect(st(t, past)).toBe(B.VIRTIO_BLK_S_IOERR);
    expect(st(t, huge)).toBe(B.VIRTIO_BLK_S_IOERR);
    expect(st(t, far)).toBe(B.VIRTIO_BLK_S_IOERR);
  });

  it('unknown request types are UNSUPP with used.len 1', () => {
    const t = blk();
    const reqs = [2, 3, 5, 0xffff_ffff].map((type) => bare(t, type));
    const used = run(t, ...reqs);
    for (const r of reqs) {
      expect(st(t, r)).toBe(B.VIRTIO_BLK_S_UNSUPP);
      expect(used.get(r.head)).toBe(1);
    }
  });

  it('out-of-range sectors are IOERR; the last sector is fine', () => {
    const t = blk();
    const sectors = (8 * MiB) / 512;
    const before = t.disk!.slice();
    const a = rw(t, B.VIRTIO_BLK_T_IN, sectors, 512);
    const b = rw(t, B.VIRTIO_BLK_T_IN, sectors - 1, 1024);
    const c = rw(t, B.VIRTIO_BLK_T_OUT, sectors - 1, 1024);
    const d = rw(t, B.VIRTIO_BLK_T_OUT, 2 ** 40, 512);
    const e = rw(t, B.VIRTIO_BLK_T_IN, 2 ** 64 - 2 ** 12, 512); // hi word 0xffffffff
    const ok = rw(t, B.VIRTIO_BLK_T_IN, sectors - 1, 512);
    const used = run(t, a, b, c, d, e, ok);
    for (const r of [a, b, c, d, e]) { expect(st(t, r)).toBe(B.VIRTIO_BLK_S_IOERR); expect(used.get(r.head)).toBe(1); }
    expect(st(t, ok)).toBe(B.VIRTIO_BLK_S_OK);
    expect(used.get(ok.head)).toBe(513);
    expect(same(t.disk!, before)).toBe(true);
    expect(t.q.counters.errors).toBe(5);
  });

  it('a 4096-byte-block bdev refuses misaligned sectors and lengths with IOERR', () => {
    const t = blk({ blockSize: 4096, numBlocks: 256 });
    const a = rw(t, B.VIRTIO_BLK_T_IN, 1, 4096);
    const b = rw(t, B.VIRTIO_BLK_T_OUT, 8, 512);
    const c = range(t, B.VIRTIO_BLK_T_DISCARD, 4, 8);
    const d = range(t, B.VIRTIO_BLK_T_WRITE_ZEROES, 8, 7);
    const ok = rw(t, B.VIRTIO_BLK_T_OUT, 8, 8192, { seed: 9 });
    const okz = range(t, B.VIRTIO_BLK_T_DISCARD, 64, 16);
    run(t, a, b, c, d, ok, okz);
    for (const r of [a, b, c, d]) expect(st(t, r)).toBe(B.VIRTIO_BLK_S_IOERR);
    expect(st(t, ok)).toBe(B.VIRTIO_BLK_S_OK);
    expect(st(t, okz)).toBe(B.VIRTIO_BLK_S_OK);
    expect(t.disk!.slice(4096, 4096 + 8192)).toEqual(pattern(8192, 9));
  });

  it('a read-only controller refuses OUT, DISCARD and WRITE_ZEROES with IOERR, serves IN and FLUSH', () => {
    const t = blk({ readOnly: true });
    const before = t.disk!.slice();
    const w = rw(t, B.VIRTIO_BLK_T_OUT, 0, 4096);
    const d = range(t, B.VIRTIO_BLK_T_DISCARD, 0, 8);
    const z = range(t, B.VIRTIO_BLK_T_WRITE_ZEROES, 0, 8);
    const r = rw(t, B.VIRTIO_BLK_T_IN, 0, 512);
    const f = bare(t, B.VIRTIO_BLK_T_FLUSH);
    const used = run(t, w, d, z, r, f);
    for (const x of [w, d, z]) { expect(st(t, x)).toBe(B.VIRTIO_BLK_S_IOERR); expect(used.get(x.head)).toBe(1); }
    expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
    expect(st(t, f)).toBe(B.VIRTIO_BLK_S_OK);
    expect(same(t.disk!, before)).toBe(true);
  });

  it('bdev errors become IOERR, unsupported I/O UNSUPP', () => {
    const t = blk({ backend: 'hold' });
    const a = rw(t, B.VIRTIO_BLK_T_IN, 0, 512), b = bare(t, B.VIRTIO_BLK_T_FLUSH);
    run(t, a);
    (t.ch as HoldChannel).release(IoStatus.FAILED);
    const used = run(t, b);          // flushes a's completion, submits b
    expect(st(t, a)).toBe(B.VIRTIO_BLK_S_IOERR);
    expect(used.get(a.head)).toBe(1);
    (t.ch as HoldChannel).release(IoStatus.UNSUPPORTED);
    t.q.poll();
    expect(t.v.takeUsed()).toEqual([{ id: b.head, len: 1 }]);
    expect(st(t, b)).toBe(B.VIRTIO_BLK_S_UNSUPP);
    expect(t.q.counters.errors).toBe(2);
  });
});

describe('BlkQueue: buffer layouts', () => {
  it('any layout: header and data in one descriptor (OUT), data and status in one descriptor (IN)', () => {
    const t = blk();
    const buf = t.g.alloc(16 + 1024, 16);
    writeBlkHeader(t.g, buf, B.VIRTIO_BLK_T_OUT, 40);
    t.g.write(buf + 16, pattern(1024, 5));
    const s1 = blkStatus(t.g);
    const w = { head: t.v.addChain([{ addr: buf, len: 16 + 1024 }, { addr: s1, len: 1, write: true }]), h: buf, d: buf + 16, s: s1 };
    const h2 = blkHeader(t.g, B.VIRTIO_BLK_T_IN, 40), ds = t.g.alloc(1024 + 1, 16);
    t.g.fill(ds, 1025, STATUS_UNTOUCHED);
    const r = { head: t.v.addChain([{ addr: h2, len: 16 }, { addr: ds, len: 1025, write: true }]), h: h2, d: ds, s: ds + 1024 };
    expect(run(t, w).get(w.head)).toBe(1);
    expect(st(t, w)).toBe(B.VIRTIO_BLK_S_OK);
    expect(diskAt(t, 40, 1024)).toEqual(pattern(1024, 5));
    expect(run(t, r).get(r.head)).toBe(1025);
    expect(t.g.read(ds, 1024)).toEqual(pattern(1024, 5));
    expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
  });

  it('any layout: the header split across two descriptors (IN and OUT, at odd offsets)', () => {
    const t = blk();
    for (const cut of [1, 8, 15]) {
      const hdr = t.g.alloc(16, 16);
      writeBlkHeader(t.g, hdr, B.VIRTIO_BLK_T_OUT, 2 * cut);
      const d = t.g.alloc(512); t.g.write(d, pattern(512, cut));
      const s = blkStatus(t.g);
      // the two header pieces in different places: the second piece at the start of R1
      t.g.write(R1 + 64 * cut, t.g.read(hdr + cut, 16 - cut));
      const w = { head: t.v.addChain([{ addr: hdr, len: cut }, { addr: R1 + 64 * cut, len: 16 - cut },
        { addr: d, len: 512 }, { addr: s, len: 1, write: true }]), h: hdr, d, s };
      expect(run(t, w).get(w.head)).toBe(1);
      expect(st(t, w)).toBe(B.VIRTIO_BLK_S_OK);
      expect(diskAt(t, 2 * cut, 512)).toEqual(pattern(512, cut));
      // IN: split header, writable data, status
      const rh = t.g.alloc(16, 16);
      writeBlkHeader(t.g, rh, B.VIRTIO_BLK_T_IN, 2 * cut);
      const rd = t.g.alloc(512), rs = blkStatus(t.g);
      const r = { head: t.v.addChain([{ addr: rh, len: cut }, { addr: rh + cut, len: 16 - cut },
        { addr: rd, len: 512, write: true }, { addr: rs, len: 1, write: true }]), h: rh, d: rd, s: rs };
      expect(run(t, r).get(r.head)).toBe(513);
      expect(t.g.read(rd, 512)).toEqual(pattern(512, cut));
    }
  });

  it('any layout: OUT with header+first data bytes in one descriptor and the rest split', () => {
    const t = blk();
    const buf = t.g.alloc(16 + 1536, 16);
    writeBlkHeader(t.g, buf, B.VIRTIO_BLK_T_OUT, 60);
    const data = pattern(1536, 11);
    t.g.write(buf + 16, data);
    const s = blkStatus(t.g);
    const head = t.v.addChain([{ addr: buf, len: 16 + 100 }, { addr: buf + 116, len: 1000 },
      { addr: buf + 1116, len: 436 }, { addr: s, len: 1, write: true }]);
    run(t, { head, h: buf, d: buf + 16, s });
    expect(t.g.u8At(s)).toBe(B.VIRTIO_BLK_S_OK);
    expect(diskAt(t, 60, 1536)).toEqual(data);
  });

  it('any layout: DISCARD header and range in one descriptor, or the range split', () => {
    const t = blk();
    const buf = t.g.alloc(32, 16);
    writeBlkHeader(t.g, buf, B.VIRTIO_BLK_T_WRITE_ZEROES, 0);
    t.g.write(buf + 16, blkRange(200, 2, 0));
    const s = blkStatus(t.g);
    const one = { head: t.v.addChain([{ addr: buf, len: 32 }, { addr: s, len: 1, write: true }]), h: buf, d: 0, s };
    const buf2 = t.g.alloc(32, 16);
    writeBlkHeader(t.g, buf2, B.VIRTIO_BLK_T_DISCARD, 0);
    t.g.write(buf2 + 16, blkRange(300, 1, 0));
    const s2 = blkStatus(t.g);
    const split = { head: t.v.addChain([{ addr: buf2, len: 20 }, { addr: buf2 + 20, len: 5 }, { addr: buf2 + 25, len: 7 },
      { addr: s2, len: 1, write: true }]), h: buf2, d: 0, s: s2 };
    run(t, one, split);
    expect(st(t, one)).toBe(B.VIRTIO_BLK_S_OK);
    expect(st(t, split)).toBe(B.VIRTIO_BLK_S_OK);
    expect(diskAt(t, 200, 1024).every((b) => b === 0)).toBe(true);
    expect(diskAt(t, 300, 512).every((b) => b === 0)).toBe(true);
    expect(diskAt(t, 301, 1).every((b) => b === 0)).toBe(false);
  });

  it('indirect tables for OUT, IN and FLUSH', () => {
    const t = blk();
    const w = rw(t, B.VIRTIO_BLK_T_OUT, 80, 4096, { descs: 8, indirect: true, seed: 21 });
    const f = (() => {
      const h = blkHeader(t.g, B.VIRTIO_BLK_T_FLUSH, 0), s = blkStatus(t.g);
      return { head: t.v.addIndirect([{ addr: h, len: 16 }, { addr: s, len: 1, write: true }], 4), h, d: 0, s };
    })();
    run(t, w, f);
    expect(st(t, w)).toBe(B.VIRTIO_BLK_S_OK);
    expect(st(t, f)).toBe(B.VIRTIO_BLK_S_OK);
    const r = rw(t, B.VIRTIO_BLK_T_IN, 80, 4096, { descs: 2, indirect: true });
    expect(run(t, r).get(r.head)).toBe(4097);
    expect(t.g.read(r.d, 4096)).toEqual(pattern(4096, 21));
  });

  it('buffers spanning two gpa-adjacent regions are split, not rejected; high regions work', () => {
    const t = blk();
    const w = rw(t, B.VIRTIO_BLK_T_OUT, 500, 4096, { dataAt: R1 - 1000, seed: 33 });
    run(t, w);
    expect(st(t, w)).toBe(B.VIRTIO_BLK_S_OK);
    expect(diskAt(t, 500, 4096)).toEqual(pattern(4096, 33));
    const r = rw(t, B.VIRTIO_BLK_T_IN, 500, 4096, { dataAt: R1 - 1536, descs: 2 });
    const hi = rw(t, B.VIRTIO_BLK_T_IN, 500, 4096, { dataAt: R4 + MiB - 4096 });
    const used = run(t, r, hi);
    expect(used.get(r.head)).toBe(4097);
    expect(t.g.read(R1 - 1536, 4096)).toEqual(pattern(4096, 33));
    expect(t.g.read(R4 + MiB - 4096, 4096)).toEqual(pattern(4096, 33));
    expect(t.g.canariesIntact()).toBe(true);
  });

  it('exactly seg_max data descriptors, and segments of exactly size_max, are served', () => {
    const t = blk();
    const many = rw(t, B.VIRTIO_BLK_T_IN, 0, B.BLK_SEG_MAX * 512, { descs: B.BLK_SEG_MAX, indirect: true });
    const big = rw(t, B.VIRTIO_BLK_T_IN, 0, B.BLK_SIZE_MAX, { dataAt: R2 });
    // any layout: header and a size_max data buffer in one descriptor
    const buf = R2 + 2 * MiB;
    writeBlkHeader(t.g, buf, B.VIRTIO_BLK_T_OUT, 4096);
    t.g.write(buf + 16, pattern(B.BLK_SIZE_MAX, 8));
    const s = blkStatus(t.g);
    const w = { head: t.v.addChain([{ addr: buf, len: 16 + B.BLK_SIZE_MAX }, { addr: s, len: 1, write: true }]), h: buf, d: 0, s };
    const used = run(t, many, big, w);
    expect(used.get(many.head)).toBe(B.BLK_SEG_MAX * 512 + 1);
    expect(used.get(big.head)).toBe(B.BLK_SIZE_MAX + 1);
    for (const r of [many, big, w]) expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
    expect(same(t.g.read(R2, B.BLK_SIZE_MAX), diskAt(t, 0, B.BLK_SIZE_MAX))).toBe(true);
    expect(same(diskAt(t, 4096, B.BLK_SIZE_MAX), pattern(B.BLK_SIZE_MAX, 8))).toBe(true);
  });

  it('wraps the 16-bit ring indices (lastAvail starting near 65535)', () => {
    const t = blk({ startIdx: 65533, size: 8 });
    expect(t.q.lastAvail).toBe(65533);
    for (let round = 0; round < 3; round++) {
      const reqs = [0, 1, 2, 3, 4].map((i) => rw(t, B.VIRTIO_BLK_T_OUT, 8 * i + round, 512, { seed: i + 10 * round, indirect: true }));
      const used = run(t, ...reqs);
      expect(used.size).toBe(5);
      for (const r of reqs) { expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK); expect(used.get(r.head)).toBe(1); }
    }
    expect(t.q.lastAvail).toBe((65533 + 15) & 0xffff);
    expect(t.v.usedIdx).toBe((65533 + 15) & 0xffff);
    expect(diskAt(t, 8 * 4 + 2, 512)).toEqual(pattern(512, 4 + 20));
    expect(t.q.vq.broken).toBeNull();
  });
});

describe('BlkQueue: notifications', () => {
  it('EVENT_IDX: exactly one call signal per batch when asked; none when used_event is not crossed', () => {
    const t = blk({ eventIdx: true });
    t.v.usedEvent = 0;
    run(t, rw(t, B.VIRTIO_BLK_T_IN, 0, 512), rw(t, B.VIRTIO_BLK_T_IN, 1, 512), bare(t, B.VIRTIO_BLK_T_FLUSH));
    expect(eventfdCount(t.callFd)).toBe(1);
    // the driver wants an interrupt only after 10 more completions
    t.v.usedEvent = t.v.usedIdx + 9;
    run(t, rw(t, B.VIRTIO_BLK_T_IN, 0, 512), rw(t, B.VIRTIO_BLK_T_IN, 1, 512));
    expect(eventfdCount(t.callFd)).toBe(0);
    expect(t.v.usedIdx).toBe(5);
    // a batch that crosses it: one signal
    const batch = Array.from({ length: 9 }, (_, i) => rw(t, B.VIRTIO_BLK_T_IN, i, 512));
    expect(run(t, ...batch).size).toBe(9);
    expect(eventfdCount(t.callFd)).toBe(1);
    // an idle poll: nothing
    expect(t.q.poll()).toBe(0);
    expect(eventfdCount(t.callFd)).toBe(0);
  });

  it('EVENT_IDX: async completions flushed in a later poll signal once', () => {
    const t = blk({ eventIdx: true, backend: 'hold' });
    run(t, rw(t, B.VIRTIO_BLK_T_IN, 0, 512), rw(t, B.VIRTIO_BLK_T_IN, 1, 512));
    expect(t.q.inFlight).toBe(2);
    expect(eventfdCount(t.callFd)).toBe(0);
    (t.ch as HoldChannel).release();
    expect(t.q.inFlight).toBe(0);
    expect(t.q.poll()).toBeGreaterThan(0);
    expect(t.v.takeUsed()).toHaveLength(2);
    expect(eventfdCount(t.callFd)).toBe(1);
  });

  it('EVENT_IDX: avail_event is kept ahead while polling; armInterrupt() is false when requests are pending', () => {
    const t = blk({ eventIdx: true, startIdx: 65000 });
    const driverWouldKick = (oldIdx: number, newIdx: number) =>
      ((newIdx - t.v.availEvent - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    for (let round = 0; round < 3; round++) {
      run(t, rw(t, B.VIRTIO_BLK_T_IN, 0, 512), rw(t, B.VIRTIO_BLK_T_IN, 0, 512));
      expect(t.v.availEvent).toBe((t.q.lastAvail + 0x7fff) & 0xffff);
      expect(driverWouldKick(t.v.availIdx, (t.v.availIdx + 2) & 0xffff)).toBe(false);
    }
    const r = rw(t, B.VIRTIO_BLK_T_IN, 0, 512);
    t.v.publish(r.head);
    libc.eventfdSignal(t.kickFd);
    expect(t.q.armInterrupt()).toBe(false);     // a request is waiting: don't sleep
    t.q.disarmInterrupt();
    t.q.poll();
    expect(st(t, r)).toBe(B.VIRTIO_BLK_S_OK);
    expect(t.q.armInterrupt()).toBe(true);      // idle: sleep, and the next request kicks
    expect(libc.eventfdDrain(t.kickFd)).toBe(false); // armInterrupt drained the stale kick
    expect(t.v.availEvent).toBe(t.q.lastAvail);
    expect(driverWouldKick(t.v.availIdx, (t.v.availIdx + 1) & 0xffff)).toBe(true);
    t.q.disarmInterrupt();
    expect(driverWouldKick(t.v.availIdx, (t.v.availIdx + 1) & 0xffff)).toBe(false);
  });

  it('without EVENT_IDX: VRING_AVAIL_F_NO_INTERRUPT suppresses the signal, otherwise one per batch', () => {
    const t = blk({ eventIdx: false });
    run(t, rw(t, B.VIRTIO_BLK_T_IN, 0, 512), rw(t, B.VIRTIO_BLK_T_IN, 1, 512));
    expect(eventfdCount(t.callFd)).toBe(1);
    t.v.availFlags = VRING_AVAIL_F_NO_INTERRUPT;
    const used = run(t, rw(t, B.VIRTIO_BLK_T_IN, 0, 512), bare(t, B.VIRTIO_BLK_T_FLUSH));
    expect(used.size).toBe(2);
    expect(eventfdCount(t.callFd)).toBe(0);
    t.v.availFlags = 0;
    run(t, bare(t, B.VIRTIO_BLK_T_FLUSH));
    expect(eventfdCount(t.callFd)).toBe(1);
    expect(t.q.vq.notifications).toBe(2);
  });
});

// ---- hostile input ----

/** A hostile request builder: returns the status gpa (or -1 when there is none) after publishing. */
type Hostile = (t: T) => number;

const IN = B.VIRTIO_BLK_T_IN, OUT = B.VIRTIO_BLK_T_OUT;
/** Header + one data buffer (raw lo/hi/len) + status, in descriptors 0, 1, 2. */
function rawData(t: T, type: number, lo: number, hi: number, len: number): number {
  const h = blkHeader(t.g, type, 0), s = blkStatus(t.g);
  t.v.desc(0, h, 16, VRING_DESC_F_NEXT, 1);
  t.v.descRaw(1, lo, hi, len, VRING_DESC_F_NEXT | (type === IN ? VRING_DESC_F_WRITE : 0), 2);
  t.v.desc(2, s, 1, VRING_DESC_F_WRITE);
  t.v.publish(0);
  return s;
}
/** Header + `n` data buffers of `len` bytes + status via an indirect table. */
function manySegs(t: T, n: number, len: number): number {
  const h = blkHeader(t.g, IN, 0), s = blkStatus(t.g), d = t.g.alloc(len, 512);
  const bufs: Buf[] = [{ addr: h, len: 16 }];
  for (let i = 0; i < n; i++) bufs.push({ addr: d, len, write: true });
  bufs.push({ addr: s, len: 1, write: true });
  t.v.publish(t.v.addIndirect(bufs));
  return s;
}

/** What the request must end in: 'ioerr' (status byte), or the queue broken for a reason matching. */
type Outcome = 'ioerr' | RegExp;

const HOSTILE: [string, Outcome, Hostile][] = [
  ['a descriptor loop', /loops/, (t) => {
    const h = blkHeader(t.g, IN, 0), d = t.g.alloc(512);
    t.v.desc(0, h, 16, VRING_DESC_F_NEXT, 1);
    t.v.desc(1, d, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    t.v.desc(2, d, 1, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    t.v.publish(0);
    return -1;
  }],
  ['a chain longer than the queue (every descriptor, cyclic)', /loops or is longer/, (t) => {
    const h = blkHeader(t.g, OUT, 0);
    for (let i = 0; i < t.v.size; i++) t.v.desc(i, h, 16, VRING_DESC_F_NEXT, (i + 1) % t.v.size);
    t.v.publish(0);
    return -1;
  }],
  ['a next index out of range', /next index/, (t) => {
    const h = blkHeader(t.g, IN, 0);
    t.v.desc(0, h, 16, VRING_DESC_F_NEXT, t.v.size + 3);
    t.v.publish(0);
    return -1;
  }],
  ['a header outside guest memory', /outside guest memory/, (t) => {
    const s = blkStatus(t.g);
    t.v.desc(0, 0x10, 16, VRING_DESC_F_NEXT, 1);
    t.v.desc(1, s, 1, VRING_DESC_F_WRITE);
    t.v.publish(0);
    return s;
  }],
  ['IN data just past a region end', /outside guest memory/, (t) => rawData(t, IN, R2 + 4 * MiB, 0, 512)],
  ['IN data overlapping a region end by one byte', /outside guest memory/, (t) => rawData(t, IN, R2 + 4 * MiB - 511, 0, 512)],
  ['IN data spanning the unmapped gap after R1', /outside guest memory/, (t) => rawData(t, IN, R1 + MiB - 256, 0, 512)],
  ['IN data at the end of R3 whose length overflows 2^32', /outside guest memory/, (t) => rawData(t, IN, 0xffff_fe00, 0, 0x0010_0200)],
  ['IN data with length 2^32 - 1', /outside guest memory/, (t) => rawData(t, IN, R0, 0, 0xffff_ffff)],
  ['IN data with address hi bits >= 2^21', /outside guest memory/, (t) => rawData(t, IN, R0, 0x20_0000, 512)],
  ['IN data with address hi word 0xffffffff', /outside guest memory/, (t) => rawData(t, IN, R0, 0xffff_ffff, 512)],
  ['OUT data just past a region end', /outside guest memory/, (t) => rawData(t, OUT, R2 + 4 * MiB, 0, 512)],
  ['a header shorter than 16 bytes', 'ioerr', (t) => {
    const h = blkHeader(t.g, IN, 0), d = t.g.alloc(512), s = blkStatus(t.g);
    t.v.publish(t.v.addChain([{ addr: h, len: 8 }, { addr: d, len: 512, write: true }, { addr: s, len: 1, write: true }]));
    return s;
  }],
  ['a device-writable header (wrong direction)', 'ioerr', (t) => {
    const h = blkHeader(t.g, IN, 0), d = t.g.alloc(512), s = blkStatus(t.g);
    t.v.publish(t.v.addChain([{ addr: h, len: 16, write: true }, { addr: d, len: 512, write: true }, { addr: s, len: 1, write: true }]));
    return s;
  }],
  ['a device-readable status byte (wrong direction) on OUT', /status byte/, (t) => {
    const h = blkHeader(t.g, OUT, 0), d = t.g.alloc(512), s = blkStatus(t.g);
    t.v.publish(t.v.addChain([{ addr: h, len: 16 }, { addr: d, len: 512 }, { addr: s, len: 1 }]));
    return -1;
  }],
  ['a device-readable status byte after writable data on IN', /readable descriptor follows a writable/, (t) => {
    const h = blkHeader(t.g, IN, 0), d = t.g.alloc(512), s = blkStatus(t.g);
    t.v.publish(t.v.addChain([{ addr: h, len: 16 }, { addr: d, len: 512, write: true }, { addr: s, len: 1 }]));
    return -1;
  }],
  ['no status descriptor at all', /status byte/, (t) => {
    const h = blkHeader(t.g, B.VIRTIO_BLK_T_FLUSH, 0);
    t.v.publish(t.v.addChain([{ addr: h, len: 16 }]));
    return -1;
  }],
  ['a zero-length status descriptor and no other writable byte', /status byte/, (t) => {
    const h = blkHeader(t.g, B.VIRTIO_BLK_T_FLUSH, 0), s = blkStatus(t.g);
    t.v.publish(t.v.addChain([{ addr: h, len: 16 }, { addr: s, len: 0, write: true }]));
    return -1;
  }],
  ['more data segments than seg_max', 'ioerr', (t) => manySegs(t, B.BLK_SEG_MAX + 1, 512)],
  ['more segments than the request table holds', /segments/, (t) => manySegs(t, B.BLK_CHAIN_SEGS + 10, 512)],
  ['a data segment larger than size_max', 'ioerr', (t) => rawData(t, IN, R2, 0, B.BLK_SIZE_MAX + 512)],
  ['an avail index jumping by more than the queue size', /avail index jumped/, (t) => {
    rw(t, IN, 0, 512);
    t.v.setAvailIdx(t.v.size + 1);
    return -1;
  }],
  ['an avail ring entry beyond the queue size', /beyond the queue size/, (t) => {
    t.v.setAvailRing(0, 0xffff);
    t.v.setAvailIdx(1);
    return -1;
  }],
  ['a malformed indirect table (length not a multiple of 16)', /indirect/, (t) => {
    const tab = t.g.alloc(48), s = blkStatus(t.g);
    writeTable(t.g, tab, [{ addr: blkHeader(t.g, IN, 0), len: 16 }, { addr: s, len: 1, write: true }]);
    t.v.desc(0, tab, 24, VRING_DESC_F_INDIRECT);
    t.v.publish(0);
    return -1;
  }],
  ['an indirect table pointing outside guest memory', /outside guest memory/, (t) => {
    t.v.desc(0, R2 + 4 * MiB + 16, 32, VRING_DESC_F_INDIRECT);
    t.v.publish(0);
    return -1;
  }],
  ['an indirect table entry pointing past a region end', /outside guest memory/, (t) => {
    const tab = t.g.alloc(48), s = blkStatus(t.g);
    writeTable(t.g, tab, [{ addr: blkHeader(t.g, IN, 0), len: 16 }, { addr: R2 + 4 * MiB - 100, len: 512, write: true },
      { addr: s, len: 1, write: true }]);
    t.v.desc(0, tab, 48, VRING_DESC_F_INDIRECT);
    t.v.publish(0);
    return s;
  }],
  ['a loop inside an indirect table', /loops/, (t) => {
    const tab = t.g.alloc(32), h = blkHeader(t.g, IN, 0);
    writeDesc(t.g, tab, h, 0, 16, VRING_DESC_F_NEXT, 1);
    writeDesc(t.g, tab + 16, h, 0, 16, VRING_DESC_F_NEXT, 0);
    t.v.desc(0, tab, 32, VRING_DESC_F_INDIRECT);
    t.v.publish(0);
    return -1;
  }],
  ['a nested indirect table', /indirect/, (t) => {
    const inner = t.g.alloc(32), outer = t.g.alloc(16), s = blkStatus(t.g);
    writeTable(t.g, inner, [{ addr: blkHeader(t.g, IN, 0), len: 16 }, { addr: s, len: 1, write: true }]);
    writeDesc(t.g, outer, inner, 0, 32, VRING_DESC_F_INDIRECT, 0);
    t.v.desc(0, outer, 16, VRING_DESC_F_INDIRECT);
    t.v.publish(0);
    return -1;
  }],
  ['a DISCARD range running past a region end', /outside guest memory/, (t) => {
    const h = blkHeader(t.g, B.VIRTIO_BLK_T_DISCARD, 0), s = blkStatus(t.g);
    t.v.publish(t.v.addChain([{ addr: h, len: 16 }, { addr: R2 + 4 * MiB - 8, len: 16 }, { addr: s, len: 1, write: true }]));
    return s;
  }],
];

describe('BlkQueue: hostile input (the guest is untrusted)', () => {
  for (const [what, outcome, build] of HOSTILE) {
    const how = outcome === 'ioerr' ? 'fails the request with IOERR' : 'breaks the queue (needs reset)';
    it(`${what}: ${how}; no throw, no stray writes, others keep serving`, () => {
      const t = blk();
      const other = blk();
      const diskBefore = t.disk!.slice();
      const s = build(t);
      let work = 0;
      expect(() => { work = t.q.poll(); }).not.toThrow();
      expect(work).toBeGreaterThanOrEqual(0);
      expect(() => t.q.poll()).not.toThrow();
      const status = s >= 0 ? t.g.u8At(s) : -1;
      const broken = t.q.vq.broken;
      if (outcome !== 'ioerr') {
        expect(broken).toMatch(outcome);
        expect(t.broken).toEqual([broken]);          // reported once
        expect(t.q.poll()).toBe(0);                  // the queue stopped
        expect(t.broken).toHaveLength(1);
      } else {
        expect(broken).toBeNull();
        expect(status).toBe(B.VIRTIO_BLK_S_IOERR);
        const used = t.v.takeUsed();
        expect(used).toHaveLength(1);
        expect(used[0].len).toBe(1);
        // and this queue keeps serving
        const ok = rw(t, IN, 0, 512);
        run(t, ok);
        expect(st(t, ok)).toBe(B.VIRTIO_BLK_S_OK);
      }
      expect(t.g.canariesIntact()).toBe(true);
      expect(same(t.disk!, diskBefore)).toBe(true);
      // another controller is unaffected
      const w = rw(other, OUT, 0, 512, { seed: 4 });
      const r = rw(other, IN, 0, 512);
      run(other, w, r);
      expect(st(other, w)).toBe(B.VIRTIO_BLK_S_OK);
      expect(st(other, r)).toBe(B.VIRTIO_BLK_S_OK);
      expect(other.g.read(r.d, 512)).toEqual(pattern(512, 4));
      expect(other.q.vq.broken).toBeNull();
    });
  }

  it('a head made available again while still in flight breaks the queue; the rest of that batch is not executed', () => {
    const t = blk({ backend: 'hold' });
    const ch = t.ch as HoldChannel;
    const a = rw(t, IN, 0, 512);
    run(t, a);
    expect(t.q.inFlight).toBe(1);
    expect(ch.submits).toBe(1);
    const b = rw(t, OUT, 8, 512);
    t.v.publish(a.head, b.head);
    expect(() => t.q.poll()).not.toThrow();
    expect(t.q.vq.broken).toMatch(/in flight/);
    expect(t.broken).toHaveLength(1);
    expect(ch.submits).toBe(1);      // b was not submitted after the queue broke
    expect(t.q.poll()).toBe(0);
    // the held I/O may still complete without harm
    expect(() => ch.release()).not.toThrow();
    expect(t.q.inFlight).toBe(0);
    expect(t.g.canariesIntact()).toBe(true);
  });

  it('a bad chain in the middle of a batch: earlier requests were executed, later ones are not', () => {
    const t = blk({ backend: 'hold' });
    const ch = t.ch as HoldChannel;
    const a = rw(t, IN, 0, 512);
    const bad = t.v.takeDesc();
    t.v.desc(bad, 0x10, 16, 0);
    const c = rw(t, IN, 0, 512);
    t.v.publish(a.head, bad, c.head);
    expect(() => t.q.poll()).not.toThrow();
    expect(t.q.vq.broken).not.toBeNull();
    expect(ch.submits).toBe(1);
  });

  it('a stopping queue drains in-flight requests and stops fetching', () => {
    const t = blk({ backend: 'hold' });
    const a = rw(t, IN, 0, 512);
    run(t, a);
    t.q.stopping = true;
    let drained = 0;
    t.q.onDrained = () => { drained++; };
    const b = rw(t, IN, 0, 512);
    t.v.publish(b.head);
    t.q.poll();
    expect(drained).toBe(0);
    (t.ch as HoldChannel).release();
    t.q.poll();
    t.q.poll();
    expect(drained).toBe(1);
    expect(t.v.takeUsed().map((u) => u.id)).toEqual([a.head]);
    expect(t.q.lastAvail).toBe(1);
  });
});
