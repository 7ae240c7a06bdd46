// File bdev data path: a FileChannel driven in the test thread over real files, for each
// engine (io_uring, linux-aio, sync), on an O_DIRECT-capable file system and on tmpfs.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileBdev } from '../../bdev/file/file.js';
import { IOV_PER_SLOT, FILE_CHANNEL_DEPTH } from '../../bdev/file/file_channel.js';
import type { FileChannel } from '../../bdev/file/file_channel.js';
import { EngineName, probeEngine } from '../../bdev/file/engine.js';
import { IoStatus, IoType } from '../../bdev/types.js';
import { setLogSink } from '../../src/log.js';
import {
  Guest, Sink, mkIo, run, pollUntil, openFileChannel, pattern, directDir, sparseFile, loopDevice, detachLoop,
} from './bdev_file_helpers.js';

const logs: string[] = [];
setLogSink((l) => logs.push(l));

const BS = 512;
const dir = directDir();
if (!dir) console.warn('no O_DIRECT-capable directory found: O_DIRECT cases skipped');
const shmDir = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/vhostd-file-') : undefined;

let g: Guest;
const open: { b: FileBdev; ch: FileChannel }[] = [];
beforeAll(() => { g = new Guest(); });
afterAll(() => {
  g.free();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  if (shmDir) fs.rmSync(shmDir, { recursive: true, force: true });
});
afterEach(() => {
  for (const { b, ch } of open.splice(0)) { ch.destroy(); b.destroy(); }
});

function make(file: string, engine: EngineName, extra: Partial<ConstructorParameters<typeof FileBdev>[0]> = {}) {
  const b = new FileBdev({ module: 'uring', name: `f${open.length}-${path.basename(file)}`, filename: file, engine, ...extra });
  const ch = openFileChannel(b);
  open.push({ b, ch });
  return { b, ch, sink: new Sink() };
}

const engines: EngineName[] = ['io_uring', 'linux-aio', 'sync'];

describe.each(engines)('file channel on %s', (engine) => {
  const avail = probeEngine(engine);
  const d = dir ?? shmDir!;
  it.skipIf(!avail.ok)('uses the requested engine', () => {
    const { b, ch } = make(sparseFile(d, `eng-${engine}`, 1 << 20), engine);
    expect(ch.engine.name).toBe(engine);
    expect(b.engine).toBe(engine);
    const ds = b.driverSpecific().uring as Record<string, unknown>;
    expect(ds.engine).toBe(engine);
    expect(ds.reactor_engines).toEqual([{ reactor: 0, engine }]);
  });

  it.skipIf(!avail.ok)('writes a multi-segment scatter list and reads it back with another one (zero copy)', () => {
    const file = sparseFile(d, `rw-${engine}`, 1 << 20);
    const { ch, sink } = make(file, engine);
    const data = pattern(8192, 1);
    // guest buffers: 512 + 3584 + 4096 at scattered guest offsets
    g.u8.set(data.subarray(0, 512), 0x10000);
    g.u8.set(data.subarray(512, 4096), 0x20000);
    g.u8.set(data.subarray(4096), 0x30000);
    const w = mkIo(sink, g, IoType.WRITE, 16, 16, [[0x10000, 512], [0x20000, 3584], [0x30000, 4096]]);
    expect(run(ch, sink, w)).toBe(IoStatus.SUCCESS);
    const onDisk = fs.readFileSync(file).subarray(16 * BS, 32 * BS);
    expect(Buffer.compare(onDisk, Buffer.from(data))).toBe(0);
    // read with a different segmentation into other buffers
    g.u8.fill(0xee, 0x40000, 0x50000);
    const r = mkIo(sink, g, IoType.READ, 16, 16, [[0x40000, 4096], [0x48000, 1024], [0x4c000, 3072]]);
    expect(run(ch, sink, r)).toBe(IoStatus.SUCCESS);
    const back = new Uint8Array(8192);
    back.set(g.u8.subarray(0x40000, 0x41000), 0);
    back.set(g.u8.subarray(0x48000, 0x48400), 4096);
    back.set(g.u8.subarray(0x4c000, 0x4cc00), 5120);
    expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
  });

  it.skipIf(!avail.ok)('flush succeeds', () => {
    const { ch, sink } = make(sparseFile(d, `fl-${engine}`, 1 << 20), engine);
    expect(run(ch, sink, mkIo(sink, g, IoType.FLUSH, 0, 0))).toBe(IoStatus.SUCCESS);
  });

  it.skipIf(!avail.ok)('unmap punches a hole that reads back as zeros', () => {
    const file = sparseFile(d, `um-${engine}`, 4 << 20);
    const { ch, sink } = make(file, engine);
    g.u8.set(pattern(1 << 20, 3), 0);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 0, 2048, [[0, 1 << 20]]))).toBe(IoStatus.SUCCESS);
    expect(run(ch, sink, mkIo(sink, g, IoType.FLUSH, 0, 0))).toBe(IoStatus.SUCCESS);
    const before = fs.statSync(file).blocks;
    expect(run(ch, sink, mkIo(sink, g, IoType.UNMAP, 256, 1024))).toBe(IoStatus.SUCCESS);
    const after = fs.statSync(file).blocks;
    expect(after).toBeLessThan(before); // space given back: a real hole
    expect(fs.statSync(file).size).toBe(4 << 20); // KEEP_SIZE
    g.u8.fill(0xaa, 0x200000, 0x300000);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 0, 2048, [[0x200000, 1 << 20]]))).toBe(IoStatus.SUCCESS);
    const got = g.u8.subarray(0x200000, 0x300000);
    const want = pattern(1 << 20, 3);
    want.fill(0, 256 * BS, 1280 * BS);
    expect(Buffer.compare(Buffer.from(got), Buffer.from(want))).toBe(0);
  });

  it.skipIf(!avail.ok)('write_zeroes zeroes the range', () => {
    const file = sparseFile(d, `wz-${engine}`, 1 << 20);
    const { ch, sink } = make(file, engine);
    g.u8.set(pattern(65536, 4), 0);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 0, 128, [[0, 65536]]))).toBe(IoStatus.SUCCESS);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE_ZEROES, 8, 16))).toBe(IoStatus.SUCCESS);
    const disk = fs.readFileSync(file).subarray(0, 65536);
    const want = pattern(65536, 4);
    want.fill(0, 8 * BS, 24 * BS);
    expect(Buffer.compare(disk, Buffer.from(want))).toBe(0);
  });

  it.skipIf(!avail.ok)('reads from the sparse end of a file return zeros', () => {
    const file = sparseFile(d, `sp-${engine}`, 8 << 20);
    const { b, ch, sink } = make(file, engine);
    g.u8.fill(0x5a, 0, 8192);
    const last = b.numBlocks - 16;
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, last, 16, [[0, 8192]]))).toBe(IoStatus.SUCCESS);
    expect(g.u8.subarray(0, 8192).every((x) => x === 0)).toBe(true);
  });

  it.skipIf(!avail.ok)('splits scatter lists longer than one op and queues more I/Os than slots', () => {
    const file = sparseFile(d, `big-${engine}`, 8 << 20);
    const { ch, sink } = make(file, engine);
    // one write with 2.5x the iovecs a slot holds
    const nseg = Math.floor(IOV_PER_SLOT * 2.5);
    const data = pattern(nseg * BS, 5);
    g.u8.set(data, 0);
    const segs: Array<[number, number]> = [];
    for (let i = 0; i < nseg; i++) segs.push([i * BS, BS]);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 0, nseg, segs))).toBe(IoStatus.SUCCESS);
    expect(Buffer.compare(fs.readFileSync(file).subarray(0, nseg * BS), Buffer.from(data))).toBe(0);
    // more concurrent single-block reads than the channel has slots
    const n = FILE_CHANNEL_DEPTH * 2 + 7;
    const reads = [];
    for (let i = 0; i < n; i++) reads.push(mkIo(sink, g, IoType.READ, i % nseg, 1, [[0x400000 + i * BS, BS]]));
    for (const r of reads) ch.submit(r);
    expect(ch.inflight()).toBeGreaterThan(0);
    pollUntil(ch, sink, reads);
    expect(ch.inflight()).toBe(0);
    for (let i = 0; i < n; i++) {
      expect(reads[i].status).toBe(IoStatus.SUCCESS);
      const k = i % nseg;
      expect(Buffer.compare(Buffer.from(g.u8.subarray(0x400000 + i * BS, 0x400000 + (i + 1) * BS)),
        Buffer.from(data.subarray(k * BS, (k + 1) * BS)))).toBe(0);
    }
  });

  it.skipIf(!avail.ok)('refuses I/O out of range, and fails I/O past the end of a file truncated underneath', () => {
    const file = sparseFile(d, `tr-${engine}`, 1 << 20);
    const { b, ch, sink } = make(file, engine);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, b.numBlocks, 1, [[0, BS]]))).toBe(IoStatus.OUT_OF_RANGE);
    fs.truncateSync(file, 512 * 1024);
    // before the size watcher noticed: the read hits EOF and fails (not a short success)
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 1500, 8, [[0, 8 * BS]]))).toBe(IoStatus.FAILED);
    expect(b.limitBlocks()).toBeLessThanOrEqual(1500);
    b.checkSize(); // what the watcher does every second
    expect(b.limitBlocks()).toBe(1024);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 1900, 8, [[0, 8 * BS]]))).toBe(IoStatus.FAILED);
    expect(fs.statSync(file).size).toBe(512 * 1024); // the write did not re-grow the file
    expect(run(ch, sink, mkIo(sink, g, IoType.UNMAP, 1000, 100))).toBe(IoStatus.FAILED);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 1000, 24, [[0, 24 * BS]]))).toBe(IoStatus.SUCCESS);
    expect((b.driverSpecific().uring as Record<string, unknown>).backing_blocks).toBe(1024);
    // rescan takes the new size: now it is out of range
    expect(b.rescan()).toEqual({ oldBlocks: 2048, newBlocks: 1024 });
    ch.poll();
    expect(ch.numBlocks).toBe(1024);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 1500, 8, [[0, 8 * BS]]))).toBe(IoStatus.OUT_OF_RANGE);
  });

  it.skipIf(!avail.ok)('rescan picks up a grown file and the channel serves the new blocks', () => {
    const file = sparseFile(d, `gr-${engine}`, 1 << 20);
    const { b, ch, sink } = make(file, engine);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 3000, 1, [[0, BS]]))).toBe(IoStatus.OUT_OF_RANGE);
    fs.truncateSync(file, 2 << 20);
    expect(b.rescan()).toEqual({ oldBlocks: 2048, newBlocks: 4096 });
    expect(b.numBlocks).toBe(4096);
    ch.poll();
    g.u8.set(pattern(BS, 9), 0);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 3000, 1, [[0, BS]]))).toBe(IoStatus.SUCCESS);
    expect(Buffer.compare(fs.readFileSync(file).subarray(3000 * BS, 3001 * BS), Buffer.from(pattern(BS, 9)))).toBe(0);
  });

  it.skipIf(!avail.ok || !dir)('O_DIRECT for aligned requests, the buffered fd for unaligned ones', () => {
    const file = sparseFile(dir!, `dio-${engine}`, 1 << 20);
    const { b, ch, sink } = make(file, engine);
    expect(b.direct).toBe(true);
    const ds = b.driverSpecific().uring as Record<string, unknown>;
    expect(ds.io_mode).toBe('O_DIRECT');
    expect(ds.direct_io_alignment).toBeGreaterThanOrEqual(512);
    const data = pattern(4096, 6);
    g.u8.set(data, 0x1000);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 8, 8, [[0x1000, 4096]]))).toBe(IoStatus.SUCCESS);
    expect(ch.directIos).toBe(1);
    // a buffer at an odd guest address cannot go O_DIRECT: same data via the buffered fd
    g.u8.set(data, 0x2001);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 16, 8, [[0x2001, 4096]]))).toBe(IoStatus.SUCCESS);
    expect(ch.bufferedIos).toBe(1);
    g.u8.fill(0, 0x8000, 0x8000 + 8192);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 8, 16, [[0x8000, 8192]]))).toBe(IoStatus.SUCCESS);
    expect(ch.directIos).toBe(2);
    expect(Buffer.compare(Buffer.from(g.u8.subarray(0x8000, 0x9000)), Buffer.from(data))).toBe(0);
    expect(Buffer.compare(Buffer.from(g.u8.subarray(0x9000, 0xa000)), Buffer.from(data))).toBe(0);
    const disk = fs.readFileSync(file);
    expect(Buffer.compare(disk.subarray(16 * BS, 24 * BS), Buffer.from(data))).toBe(0);
  });

  it.skipIf(!avail.ok || !dir)('recovers when the kernel refuses an O_DIRECT op: buffered redo, stricter alignment', () => {
    const file = sparseFile(dir!, `einval-${engine}`, 1 << 20);
    const { ch, sink } = make(file, engine);
    expect(ch.memAlign).toBeGreaterThan(1);
    ch.memAlign = 1; // pretend any buffer address will do
    const data = pattern(4096, 11);
    g.u8.set(data, 0x3001);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 0, 8, [[0x3001, 4096]]))).toBe(IoStatus.SUCCESS);
    expect(ch.directIos).toBe(1); // tried direct, the kernel said EINVAL, redone buffered
    expect(ch.memAlign).toBe(ch.align);
    expect(logs.some((l) => /O_DIRECT refused at alignment \d+\/1: now/.test(l))).toBe(true);
    expect(Buffer.compare(fs.readFileSync(file).subarray(0, 4096), Buffer.from(data))).toBe(0);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 8, 8, [[0x3001, 4096]]))).toBe(IoStatus.SUCCESS);
    expect(ch.bufferedIos).toBe(1); // now known to be unaligned up front
  });

  it.skipIf(!avail.ok)('a read short at a truncated end continues for the remainder, then fails', () => {
    const file = sparseFile(d, `short-${engine}`, 1 << 20);
    const { ch, sink } = make(file, engine, { direct: false });
    fs.truncateSync(file, 1024 * BS + 100);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 1020, 8, [[0, 8 * BS]]))).toBe(IoStatus.FAILED);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 1016, 8, [[0, 8 * BS]]))).toBe(IoStatus.SUCCESS);
  });

  it.skipIf(!avail.ok || !shmDir)('serves a tmpfs file (O_DIRECT or buffered, whichever it allows)', () => {
    const file = sparseFile(shmDir!, `shm-${engine}`, 1 << 20);
    const { b, ch, sink } = make(file, engine);
    const ds = b.driverSpecific().uring as Record<string, unknown>;
    if (!b.direct) expect(String(ds.buffered_reason)).toMatch(/O_DIRECT/);
    g.u8.set(pattern(4096, 7), 0);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 0, 8, [[0, 4096]]))).toBe(IoStatus.SUCCESS);
    // tmpfs has no FALLOC_FL_ZERO_RANGE: write_zeroes falls back to writing zeros...
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE_ZEROES, 2, 2))).toBe(IoStatus.SUCCESS);
    expect(ch.zeroWrites).toBe(1);
    // ...unless the caller allows deallocation: then a punched hole does it
    const wz = mkIo(sink, g, IoType.WRITE_ZEROES, 6, 1);
    wz.mayUnmap = true;
    expect(run(ch, sink, wz)).toBe(IoStatus.SUCCESS);
    expect(run(ch, sink, mkIo(sink, g, IoType.UNMAP, 4, 2))).toBe(IoStatus.SUCCESS);
    expect(ch.zeroWrites).toBe(1);
    const want = pattern(4096, 7);
    want.fill(0, 2 * BS, 7 * BS);
    expect(Buffer.compare(fs.readFileSync(file).subarray(0, 4096), Buffer.from(want))).toBe(0);
  });

  it.skipIf(!avail.ok)('a read-only aio bdev reads and refuses writes', () => {
    const file = sparseFile(d, `ro-${engine}`, 1 << 20);
    fs.writeFileSync(file, Buffer.from(pattern(4096, 8)), { flag: 'r+' });
    const b = new FileBdev({ module: 'aio', name: `ro-${engine}`, filename: file, readonly: true, engine });
    const ch = openFileChannel(b);
    open.push({ b, ch });
    const sink = new Sink();
    expect([...b.ioTypes].sort()).toEqual(['flush', 'read', 'reset']);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 0, 1, [[0, BS]]))).toBe(IoStatus.FAILED);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 0, 8, [[0, 4096]]))).toBe(IoStatus.SUCCESS);
    expect(Buffer.compare(Buffer.from(g.u8.subarray(0, 4096)), Buffer.from(pattern(4096, 8)))).toBe(0);
  });
});

describe('file channel on a block device (loop)', () => {
  let img: string | undefined, dev: string | undefined, dev4k: string | undefined;
  beforeAll(() => {
    if (!dir) return;
    img = sparseFile(dir, 'loop.img', 8 << 20);
    dev = loopDevice(img);
    dev4k = dev ? loopDevice(img, 4096) : undefined;
  });
  afterAll(() => { if (dev) detachLoop(dev); if (dev4k) detachLoop(dev4k); });

  it('detects size and logical block size, and serves read/write/unmap/write_zeroes/flush', (ctx) => {
    if (!dev) ctx.skip();
    const { b, ch, sink } = make(dev!, 'io_uring');
    expect(b.blockDevice).toBe(true);
    expect(b.blockSize).toBe(512);
    expect(b.numBlocks).toBe((8 << 20) / 512);
    expect((b.driverSpecific().uring as Record<string, unknown>).file_type).toBe('block_device');
    const data = pattern(65536, 10);
    g.u8.set(data, 0);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 64, 128, [[0, 65536]]))).toBe(IoStatus.SUCCESS);
    expect(run(ch, sink, mkIo(sink, g, IoType.FLUSH, 0, 0))).toBe(IoStatus.SUCCESS);
    expect(run(ch, sink, mkIo(sink, g, IoType.UNMAP, 64, 16))).toBe(IoStatus.SUCCESS);
    expect(run(ch, sink, mkIo(sink, g, IoType.WRITE_ZEROES, 96, 16))).toBe(IoStatus.SUCCESS);
    g.u8.fill(0x77, 0x100000, 0x110000);
    expect(run(ch, sink, mkIo(sink, g, IoType.READ, 64, 128, [[0x100000, 65536]]))).toBe(IoStatus.SUCCESS);
    const want = Buffer.from(data);
    want.fill(0, 0, 16 * 512);
    want.fill(0, 32 * 512, 48 * 512);
    expect(Buffer.compare(Buffer.from(g.u8.subarray(0x100000, 0x110000)), want)).toBe(0);
  });

  it('refuses a block size below the device logical block size', (ctx) => {
    if (!dev4k) ctx.skip();
    expect(() => new FileBdev({ module: 'uring', name: 'lo4k', filename: dev4k!, block_size: 512 }))
      .toThrow(/block_size 512 is below the logical block size 4096/);
    const b = new FileBdev({ module: 'uring', name: 'lo4k', filename: dev4k! });
    expect(b.blockSize).toBe(4096);
    b.destroy();
  });
});

describe('file channel in a worker thread (as on a reactor)', () => {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
  const built = path.join(root, 'dist/bdev/file/file_channel.js');
  it.skipIf(!fs.existsSync(built))('opens its engine in the worker, shares the fds and the size cell', async () => {
    const { Worker } = await import('node:worker_threads');
    const file = sparseFile(dir ?? shmDir!, 'worker', 1 << 20);
    const b = new FileBdev({ module: 'aio', name: 'w0', filename: file, fallocate: true });
    try {
      const src = `
        import { workerData, parentPort } from 'node:worker_threads';
        const d = ${JSON.stringify(pathToFileURL(path.join(root, 'dist')).href)};
        await import(d + '/bdev/file/file_channel.js');
        const { openChannel } = await import(d + '/bdev/channel.js');
        const { BdevIo, SegmentTable } = await import(d + '/bdev/bdev_io.js');
        const { GuestMemory } = await import(d + '/src/memory/guest_memory.js');
        const { mmap } = await import(d + '/native/libc.js');
        const ch = openChannel(workerData.spec, 3);
        const addr = mmap(65536);
        const mem = new GuestMemory([{ gpa: 0, size: 65536, uaddr: 0, hva: addr }]);
        for (let i = 0; i < 4096; i++) mem.u8[0][i] = (i * 7) & 0xff;
        let done = 0;
        const sink = { onBdevIoDone() { done++; } };
        const t = new SegmentTable(1); t.len[0] = 4096;
        const io = new BdevIo(sink, 0, t);
        io.type = 2; io.offsetBlocks = 8; io.numBlocks = 8; io.mem = mem; io.nseg = 1; io.bytes = 4096;
        ch.submit(io);
        const end = Date.now() + 5000;
        while (done < 1 && Date.now() < end) ch.poll();
        parentPort.postMessage({ status: io.status, done, engine: ch.engine.name });
        parentPort.once('message', () => { ch.destroy(); parentPort.postMessage('closed'); });
      `;
      const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(src)}`), { workerData: { spec: b.channelSpec() } });
      const msg = await new Promise<{ status: number; done: number; engine: string }>((res, rej) => {
        w.once('message', res); w.once('error', rej);
      });
      expect(msg).toEqual({ status: IoStatus.SUCCESS, done: 1, engine: b.engine });
      const want = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
      expect(Buffer.compare(fs.readFileSync(file).subarray(4096, 8192), Buffer.from(want))).toBe(0);
      expect((b.driverSpecific().aio as Record<string, unknown>).reactor_engines).toEqual([{ reactor: 3, engine: b.engine }]);
      const closed = new Promise((res) => w.once('message', res));
      w.postMessage('close');
      expect(await closed).toBe('closed');
      expect((b.driverSpecific().aio as Record<string, unknown>).reactor_engines).toEqual([]);
      await w.terminate();
    } finally {
      b.destroy();
    }
  });
});
