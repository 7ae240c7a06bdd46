// virtio-blk requests (BlkQueue on a fake guest's split ring) served by the file bdev:
// the whole reactor-side path, with the reactor's poll loop played by the test.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { BlkQueue } from '../../targets/blk/blk_queue.js';
import * as B from '../../targets/blk/virtio_blk.js';
import { FileBdev } from '../../bdev/file/file.js';
import { EngineName, probeEngine } from '../../bdev/file/engine.js';
import * as libc from '../../native/libc.js';
import { setLogSink } from '../../src/log.js';
import { blkHeader, blkRange, blkStatus, Buf, FakeGuest, FakeVring, pattern } from './virtio/fake_driver.js';
import { directDir, openFileChannel, sparseFile } from './bdev_file_helpers.js';

setLogSink(() => {});
const MiB = 1 << 20;
const dir = directDir() ?? fs.mkdtempSync('/tmp/vhostd-file-');
const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function setup(engine: EngineName) {
  const file = sparseFile(dir, `blk-${engine}`, 8 * MiB);
  const b = new FileBdev({ module: 'uring', name: `blk-${engine}`, filename: file, engine });
  cleanup.push(() => b.destroy());
  const ch = openFileChannel(b);
  cleanup.push(() => ch.destroy());
  const g = new FakeGuest([{ gpa: 0x100000, size: 4 * MiB }]);
  cleanup.push(() => g.destroy());
  const callFd = libc.eventfd(), kickFd = libc.eventfd();
  cleanup.push(() => { libc.closeQuiet(callFd); libc.closeQuiet(kickFd); });
  const v = new FakeVring(g, { size: 64, eventIdx: false, indirect: true, callFd });
  const q = new BlkQueue({ ctrlr: 'vhost.0', qid: 0, mem: g.regions, ring: v.spec(), kickFd, bdev: b.channelSpec(),
    readOnly: false, serial: 'SN-FILE' }, ch);
  return { file, b, ch, g, v, q };
}

type S = ReturnType<typeof setup>;

/** Publishes the chains and runs queue + channel pollers (a reactor's rounds) until all are used. */
function serve(t: S, heads: number[]): Map<number, number> {
  t.v.publish(...heads);
  const used = new Map<number, number>();
  const end = Date.now() + 10_000;
  while (used.size < heads.length) {
    t.q.poll();
    t.ch.poll();
    for (const u of t.v.takeUsed()) used.set(u.id, u.len);
    if (Date.now() > end) throw new Error(`timed out: ${used.size}/${heads.length} used`);
  }
  return used;
}

function chain(t: S, type: number, sector: number, data: number, bytes: number, pieces: number) {
  const h = blkHeader(t.g, type, sector), s = blkStatus(t.g);
  const bufs: Buf[] = [{ addr: h, len: 16 }];
  const piece = bytes / pieces;
  for (let k = 0; k < pieces; k++) bufs.push({ addr: data + k * piece, len: piece, write: type === B.VIRTIO_BLK_T_IN });
  bufs.push({ addr: s, len: 1, write: true });
  return { head: t.v.addChain(bufs), s };
}

describe.each(['io_uring', 'linux-aio', 'sync'] as EngineName[])('virtio-blk over a file bdev (%s)', (engine) => {
  it.skipIf(!probeEngine(engine).ok)('OUT, IN, FLUSH, DISCARD and WRITE_ZEROES reach the file', () => {
    const t = setup(engine);
    const out = t.g.alloc(64 * 1024, 4096), back = t.g.alloc(64 * 1024, 4096);
    const data = pattern(64 * 1024, 3);
    t.g.write(out, data);
    const w = chain(t, B.VIRTIO_BLK_T_OUT, 128, out, 64 * 1024, 4);
    serve(t, [w.head]);
    expect(t.g.u8At(w.s)).toBe(B.VIRTIO_BLK_S_OK);
    expect(fs.readFileSync(t.file).subarray(128 * 512, 128 * 512 + 64 * 1024).equals(Buffer.from(data))).toBe(true);

    const f = chain(t, B.VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0);
    const dh = blkHeader(t.g, B.VIRTIO_BLK_T_DISCARD, 0), dr = t.g.alloc(16), ds = blkStatus(t.g);
    t.g.write(dr, blkRange(128, 16, 0));
    const d = t.v.addChain([{ addr: dh, len: 16 }, { addr: dr, len: 16 }, { addr: ds, len: 1, write: true }]);
    const zh = blkHeader(t.g, B.VIRTIO_BLK_T_WRITE_ZEROES, 0), zr = t.g.alloc(16), zs = blkStatus(t.g);
    t.g.write(zr, blkRange(160, 8, 0));
    const z = t.v.addChain([{ addr: zh, len: 16 }, { addr: zr, len: 16 }, { addr: zs, len: 1, write: true }]);
    serve(t, [f.head, d, z]);
    expect([t.g.u8At(f.s), t.g.u8At(ds), t.g.u8At(zs)]).toEqual([B.VIRTIO_BLK_S_OK, B.VIRTIO_BLK_S_OK, B.VIRTIO_BLK_S_OK]);

    const r = chain(t, B.VIRTIO_BLK_T_IN, 128, back, 64 * 1024, 8);
    const used = serve(t, [r.head]);
    expect(t.g.u8At(r.s)).toBe(B.VIRTIO_BLK_S_OK);
    expect(used.get(r.head)).toBe(64 * 1024 + 1);
    const want = Buffer.from(data);
    want.fill(0, 0, 16 * 512);
    want.fill(0, 32 * 512, 40 * 512);
    expect(Buffer.from(t.g.read(back, 64 * 1024)).equals(want)).toBe(true);
  });

  it.skipIf(!probeEngine(engine).ok)('a read past the end of a file truncated underneath gets IOERR', () => {
    const t = setup(engine);
    fs.truncateSync(t.file, 4 * MiB);
    const buf = t.g.alloc(4096, 4096);
    const r = chain(t, B.VIRTIO_BLK_T_IN, (6 * MiB) / 512, buf, 4096, 1);
    serve(t, [r.head]);
    expect(t.g.u8At(r.s)).toBe(B.VIRTIO_BLK_S_IOERR);
  });
});
