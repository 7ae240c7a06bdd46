// The control-plane bdev I/O service (bdev/ctrl_io.ts) against real reactors (worker threads
// started from dist/) on malloc and file bdevs: data written through it is read back through
// it and found in the file itself; flush, write-zeroes, bad ranges, deleting and recreating a
// bdev under the same name (its reactor channel must not be reused).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const DIST = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist');
const load = (p: string) => import(pathToFileURL(join(DIST, p)).href);

describe('control-plane bdev I/O on reactors', () => {
  let pool: any, reg: any, io: any, M: any, F: any;
  let dir = '';
  beforeAll(async () => {
    const { ReactorPool } = await load('src/reactor/pool.js');
    const { BdevRegistry } = await load('bdev/registry.js');
    const { CtrlIo } = await load('bdev/ctrl_io.js');
    M = (await load('bdev/malloc/malloc.js')).MallocBdev;
    F = (await load('bdev/file/file.js')).FileBdev;
    pool = await ReactorPool.start([0], { idleSleepMs: 1, worker: pathToFileURL(join(DIST, 'src/reactor_main.js')) });
    reg = new BdevRegistry();
    io = new CtrlIo();
    io.attach(pool, reg);
    dir = mkdtempSync('/var/tmp/vhostd-ctrlio-');
  });
  afterAll(async () => {
    try {
      for (const b of reg?.list() ?? []) await reg.unregister(b.name);
      await pool?.stop();
    } finally { if (dir) rmSync(dir, { recursive: true, force: true }); }
  });

  const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

  it('reads back what it wrote on a malloc bdev; write-zeroes and flush work; bad ranges are refused', async () => {
    const m = new M({ name: 'm0', num_blocks: 4096, block_size: 512 });
    await m.prepare(); reg.register(m);
    const data = pattern(64 * 1024, 3);
    await io.write(m, 8192, data);
    expect(Buffer.from(await io.read(m, 8192, data.length)).equals(Buffer.from(data))).toBe(true);
    await io.writeZeroes(m, 8192 + 4096, 4096);
    const back = await io.read(m, 8192, 12288);
    expect(back.subarray(4096, 8192).every((x: number) => x === 0)).toBe(true);
    expect(Buffer.from(back.subarray(8192)).equals(Buffer.from(data.subarray(8192, 12288)))).toBe(true);
    await io.flush(m);
    await expect(io.read(m, 100, 512)).rejects.toThrow(/whole 512-byte blocks/);
    await expect(io.read(m, 4096 * 512 - 512, 1024)).rejects.toThrow(/end past its 2097152 bytes/);
    // deleted and recreated under the same name: the new bdev's memory is read, not the old one's
    await reg.unregister('m0');
    const m2 = new M({ name: 'm0', num_blocks: 2048, block_size: 512 });
    await m2.prepare(); reg.register(m2);
    expect((await io.read(m2, 8192, 512)).every((x: number) => x === 0)).toBe(true);
    await reg.unregister('m0');
  });

  it('writes reach the file of a file bdev (O_DIRECT where possible) and are read back', async () => {
    const f = join(dir, 'f.img');
    writeFileSync(f, ''); truncateSync(f, 4 << 20);
    const b = new F({ module: 'uring', name: 'f0', filename: f, block_size: 512 });
    reg.register(b);
    const data = pattern(3 * 1024 * 1024 + 512, 9);   // several pieces and an odd tail
    await io.write(b, 512, data);
    await io.flush(b);
    const disk = readFileSync(f);
    expect(disk.subarray(512, 512 + data.length).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(await io.read(b, 512, data.length)).equals(Buffer.from(data))).toBe(true);
    await io.writeZeroes(b, 0, 1024);
    expect(readFileSync(f).subarray(0, 1024).every((x) => x === 0)).toBe(true);
    // a release while a write is in flight on the file's io_uring waits for it (the write completes)
    const w = io.write(b, 0, data.subarray(0, 1 << 20));
    const rel = io.release(b);
    await Promise.all([w, rel]);
    expect(readFileSync(f).subarray(0, 1 << 20).equals(Buffer.from(data.subarray(0, 1 << 20)))).toBe(true);
    await reg.unregister('f0');
  });
});
