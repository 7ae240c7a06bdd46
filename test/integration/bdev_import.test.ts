// Image import against the real daemon: qcow2 images made by qemu-img (v3 with data and holes,
// compressed with -c, v2 = compat 0.10) and a raw image are imported with bdev_import_image
// into a file bdev and compared byte for byte with the raw source; vhostctl's progress bar
// reaches 100%; corrupt, oversized, backed and encrypted images and a bdev in use fail with
// clear errors and the daemon keeps serving. Then, with real reactors in this process, into
// a malloc bdev read back through ctrl_io.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, truncateSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startDaemon, rpc, ok, Daemon, VHOSTCTL, ROOT } from './daemon.js';

const hasQemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const MIB = 1 << 20;

/** A 24 MiB raw image: compressible text and random islands with holes between them. */
function makeRaw(path: string): Buffer {
  const b = Buffer.alloc(24 * MIB);
  let x = 12345;
  for (let n = 0, off = 0; off < b.length; n++, off += 3 * MIB + 4096 * (n % 5)) {
    const len = Math.min(300_000, b.length - off - 7);
    if (n % 2) for (let i = 0; i < len; i++) { x = (x * 1103515245 + 12345) >>> 0; b[off + 7 + i] = x >>> 24; }
    else b.write(`vhostd import ${n} `.repeat(len / 20), off + 7);
  }
  writeFileSync(path, b);
  return b;
}

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { stdio: 'pipe' });

async function waitJob(sock: string, id: number): Promise<any> {
  for (;;) {
    const [j] = await ok(sock, 'bdev_get_import_jobs', { operation_id: id });
    if (j.state !== 'in progress') return j;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!hasQemuImg)('bdev_import_image through the daemon', () => {
  let d: Daemon;
  let dir = '';
  let raw: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/vhostd-import-it-');
    raw = makeRaw(join(dir, 'src.raw'));
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, 'v3.qcow2'));
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, 'comp.qcow2'));
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=0.10,cluster_size=4096', join(dir, 'src.raw'), join(dir, 'v2.qcow2'));
    d = await startDaemon();
  });
  afterAll(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh sparse file bdev of `mib` MiB. */
  async function target(name: string, mib = 24): Promise<string> {
    const f = join(dir, `${name}.img`);
    writeFileSync(f, ''); truncateSync(f, mib * MIB);
    await ok(d.sock, 'bdev_uring_create', { name, filename: f, block_size: 512 });
    return f;
  }

  it('imports raw, qcow2 v3, compressed qcow2 and qcow2 v2 byte for byte; progress reaches 100%', async () => {
    for (const img of ['src.raw', 'v3.qcow2', 'comp.qcow2', 'v2.qcow2']) {
      const name = `T_${img.replace('.', '_')}`;
      const f = await target(name);
      writeFileSync(f, Buffer.alloc(MIB, 0xee), { flag: 'r+' });   // old contents must be overwritten, holes too
      const { operation_id } = await ok(d.sock, 'bdev_import_image', { name, filename: join(dir, img) });
      const j = await waitJob(d.sock, operation_id);
      expect(j, img).toMatchObject({ state: 'complete', progress: 100, total_bytes: 24 * MIB, format: img.endsWith('raw') ? 'raw' : 'qcow2' });
      expect(j.copied_bytes + j.zero_bytes).toBe(24 * MIB);
      expect(j.zero_bytes).toBeGreaterThan(12 * MIB);                  // the holes were not copied as data
      await ok(d.sock, 'bdev_uring_delete', { name });
      expect(readFileSync(f).equals(raw), `${img} differs from the raw source`).toBe(true);
    }
  }, 180_000);

  it('vhostctl shows progress and ends at 100%; the bdev is claimed while the import runs', async () => {
    await target('Tcli', 32);
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((res) => execFile(process.execPath,
      [VHOSTCTL, '-s', d.sock, 'bdev_import_image', '-b', 'Tcli', '-f', join(dir, 'comp.qcow2')], { timeout: 100_000 },
      (e, stdout, stderr) => res({ code: e ? 1 : 0, stdout, stderr })));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[#{30}\] 100\.0% 24\/24 MiB/);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: 'complete', progress: 100 });
    // while a job runs the bdev is claimed: a second import into it is refused
    const { operation_id } = await ok(d.sock, 'bdev_import_image', { name: 'Tcli', filename: join(dir, 'src.raw') });
    const again = await rpc(d.sock, 'bdev_import_image', { name: 'Tcli', filename: join(dir, 'src.raw') });
    const first = await waitJob(d.sock, operation_id);
    if (again.error) expect(again.error).toMatchObject({ code: -16, message: expect.stringMatching(/in use by image import/) });
    expect(first.state).toBe('complete');
    await ok(d.sock, 'bdev_uring_delete', { name: 'Tcli' });
  }, 120_000);

  it('imports into a thin lvol; with skip_zeroes the holes allocate no clusters', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'LvBase', num_blocks: 64 * 2048, block_size: 512 });
    await ok(d.sock, 'bdev_lvol_create_lvstore', { bdev_name: 'LvBase', lvs_name: 'imp', cluster_sz: MIB });
    await ok(d.sock, 'bdev_lvol_create', { lvs_name: 'imp', lvol_name: 'disk', size_in_mib: 24, thin_provision: true });
    const { operation_id } = await ok(d.sock, 'bdev_import_image', { name: 'imp/disk', filename: join(dir, 'comp.qcow2'), skip_zeroes: true });
    const j = await waitJob(d.sock, operation_id);
    expect(j).toMatchObject({ state: 'complete', progress: 100, total_bytes: 24 * MIB });
    const [lv] = await ok(d.sock, 'bdev_lvol_get_lvols', { lvs_name: 'imp' });
    // 8 data islands of ~300 KB, each in at most 2 of the 24 one-MiB clusters
    expect(lv.num_allocated_clusters).toBeGreaterThanOrEqual(8);
    expect(lv.num_allocated_clusters).toBeLessThanOrEqual(16);
  }, 120_000);

  it('refuses bad images and targets with clear errors; the daemon keeps serving', async () => {
    await target('Tbad', 24);
    await ok(d.sock, 'bdev_malloc_create', { name: 'Small', num_blocks: 2048, block_size: 512 });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vc.used', dev_name: 'Small' });
    // corrupt: an L1 entry pointing past the end of the file
    const l1bad = join(dir, 'l1bad.qcow2');
    writeFileSync(l1bad, readFileSync(join(dir, 'v3.qcow2')));
    const hdr = readFileSync(l1bad).subarray(0, 72);
    const l1off = Number(hdr.readBigUInt64BE(40));
    const fd = openSync(l1bad, 'r+');
    const e = Buffer.alloc(8); e.writeBigUInt64BE(BigInt(statSync(l1bad).size + 65536 * 16));
    writeSync(fd, e, 0, 8, l1off); closeSync(fd);
    // corrupt: a compressed image cut short (clusters past the end)
    const cut = join(dir, 'cut.qcow2');
    writeFileSync(cut, readFileSync(join(dir, 'comp.qcow2')).subarray(0, statSync(join(dir, 'comp.qcow2')).size >> 1));
    // a backing file, encryption, too big for the bdev
    qemuImg('create', '-f', 'qcow2', '-b', join(dir, 'v3.qcow2'), '-F', 'qcow2', join(dir, 'backed.qcow2'));
    qemuImg('create', '-f', 'qcow2', '--object', 'secret,id=s0,data=pw', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10',
      join(dir, 'enc.qcow2'), '4M');
    qemuImg('create', '-f', 'qcow2', join(dir, 'big.qcow2'), '1G');
    writeFileSync(join(dir, 'junk.img'), Buffer.from('not an image at all'));

    const failing: Array<[string, Record<string, unknown>, RegExp]> = [
      ['L1 past EOF', { name: 'Tbad', filename: l1bad }, /is corrupt: L1 entry 0 points to an L2 table at \d+, past the end of the file/],
      ['cut short', { name: 'Tbad', filename: cut }, /is corrupt: .*(past the end of the file|cut off)/],
      ['backing file', { name: 'Tbad', filename: join(dir, 'backed.qcow2') }, /has a backing file .*v3\.qcow2.*flatten it first/],
      ['encrypted', { name: 'Tbad', filename: join(dir, 'enc.qcow2') }, /is encrypted \(method LUKS\)/],
      ['too big', { name: 'Tbad', filename: join(dir, 'big.qcow2') }, /is 1073741824 bytes \(virtual size\) but bdev 'Tbad' has only 25165824/],
      ['not qcow2', { name: 'Tbad', filename: join(dir, 'junk.img'), format: 'qcow2' }, /is not a qcow2 image .*format 'raw'/],
    ];
    for (const [what, p, msg] of failing) {
      const { operation_id } = await ok(d.sock, 'bdev_import_image', p);
      const j = await waitJob(d.sock, operation_id);
      expect(j.state, what).toBe('error');
      expect(j.error, what).toMatch(msg);
    }
    // refused at once
    const refused: Array<[Record<string, unknown>, number, RegExp]> = [
      [{ name: 'Small', filename: join(dir, 'src.raw') }, -16, /in use by vhost|in use by .*vc\.used/],
      [{ name: 'nope', filename: join(dir, 'src.raw') }, -19, /bdev 'nope' does not exist/],
      [{ name: 'Tbad', filename: join(dir, 'missing.qcow2') }, -22, /cannot open image .*missing\.qcow2: ENOENT/],
      [{ name: 'Tbad', filename: join(dir, 'src.raw'), format: 'vmdk' }, -32602, /use one of raw, qcow2/],
    ];
    for (const [p, code, msg] of refused) {
      const r = await rpc(d.sock, 'bdev_import_image', p);
      expect(r.error, JSON.stringify(p)).toMatchObject({ code, message: expect.stringMatching(msg) });
    }
    expect((await rpc(d.sock, 'bdev_get_import_jobs', { operation_id: 9999 })).error?.code).toBe(-19);
    // the failed jobs released the bdev: a good image goes in afterwards
    const { operation_id } = await ok(d.sock, 'bdev_import_image', { name: 'Tbad', filename: join(dir, 'v3.qcow2') });
    expect((await waitJob(d.sock, operation_id)).state).toBe('complete');
    expect(await ok(d.sock, 'spdk_get_version')).toBeTruthy();
  }, 180_000);
});

describe.skipIf(!hasQemuImg)('image import into a malloc bdev, read back through ctrl_io (reactors in this process)', () => {
  const load = (p: string) => import(pathToFileURL(join(ROOT, 'dist', p)).href);
  let pool: any, reg: any, io: any, dir = '';
  beforeAll(async () => {
    const { ReactorPool } = await load('src/reactor/pool.js');
    const { BdevRegistry } = await load('bdev/registry.js');
    const { CtrlIo } = await load('bdev/ctrl_io.js');
    pool = await ReactorPool.start([0], { worker: pathToFileURL(join(ROOT, 'dist/src/reactor_main.js')), idleSleepMs: 1 });
    reg = new BdevRegistry();
    io = new CtrlIo();
    io.attach(pool, reg);
    dir = mkdtempSync('/var/tmp/vhostd-import-m-');
  });
  afterAll(async () => {
    for (const b of reg?.list() ?? []) { b.claimedBy = null; await reg.unregister(b.name); }
    await pool?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a compressed qcow2 with holes lands byte for byte in a 4096-byte-block malloc bdev', async () => {
    const { MallocBdev } = await load('bdev/malloc/malloc.js');
    const { ImageImporter } = await load('bdev/image/import.js');
    const raw = makeRaw(join(dir, 'src.raw'));
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, 'c.qcow2'));
    const m = new MallocBdev({ name: 'M', num_blocks: 8192, block_size: 4096 });   // 32 MiB: bigger than the image
    await m.prepare(); reg.register(m);
    await io.write(m, 0, Buffer.alloc(32 * MIB, 0x5a));                         // old contents everywhere
    const imp = new ImageImporter(io);
    const id = imp.start(reg, 'M', join(dir, 'c.qcow2'));
    let j: any;
    for (;;) { [j] = imp.list(id); if (j.state !== 'in progress') break; await new Promise((r) => setTimeout(r, 50)); }
    expect(j).toMatchObject({ state: 'complete', progress: 100 });
    const back = Buffer.from(await io.read(m, 0, 32 * MIB));
    expect(back.subarray(0, raw.length).equals(raw)).toBe(true);
    expect(back.subarray(raw.length).every((x) => x === 0x5a)).toBe(true);   // past the image: untouched
    expect(m.claimedBy).toBe(null);
  }, 120_000);
});
