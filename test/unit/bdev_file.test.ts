// File bdev control side and RPC methods: opening and validating the backing file,
// geometry, save_config, driver_specific, rescan, engine choice, and the SPDK-named RPCs.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { FileBdev, FileBdevError } from '../../bdev/file/file.js';
import { chooseEngine, createEngine, ENGINE_ENV } from '../../bdev/file/engine.js';
import { BdevRegistry, BdevError } from '../../bdev/registry.js';
import { ERRNO } from '../../native/errors.js';
import { IoStatus, IoType } from '../../bdev/types.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import '../../src/modules.js';
import { registerModuleMethods } from '../../src/framework/module.js';
import { toRpcError } from '../../src/rpc/errors.js';
import type { AppContext } from '../../src/framework/app_context.js';
import { setLogSink } from '../../src/log.js';
import { Guest, Sink, mkIo, run, openFileChannel, pattern, directDir, sparseFile, loopDevice, detachLoop } from './bdev_file_helpers.js';

const logs: string[] = [];
setLogSink((l) => logs.push(l));

const dir = directDir() ?? fs.mkdtempSync('/tmp/vhostd-file-');
const made: FileBdev[] = [];
afterEach(() => { for (const b of made.splice(0)) b.destroy(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function mk(p: Partial<ConstructorParameters<typeof FileBdev>[0]> & { filename: string }): FileBdev {
  const b = new FileBdev({ module: 'uring', name: `b${made.length}`, ...p });
  made.push(b);
  return b;
}

function errOf(f: () => unknown): FileBdevError | BdevError {
  try { f(); } catch (e) { return e as FileBdevError; }
  throw new Error('expected an error');
}

describe('FileBdev: opening and validation', () => {
  it('detects size and a block size for a regular file', () => {
    const b = mk({ filename: sparseFile(dir, 'geo', (1 << 20) + 100) });
    expect(b.blockSize).toBe(512);
    expect(b.numBlocks).toBe(2048); // the 100-byte tail is not used
    expect(logs.some((l) => l.includes('not a multiple of block_size'))).toBe(true);
    expect(b.blockDevice).toBe(false);
    expect([...b.ioTypes].sort()).toEqual(['flush', 'read', 'reset', 'unmap', 'write', 'write_zeroes']);
  });

  it('honours an explicit block size', () => {
    const b = mk({ filename: sparseFile(dir, 'bs4k', 1 << 20), block_size: 4096 });
    expect(b.blockSize).toBe(4096);
    expect(b.numBlocks).toBe(256);
  });

  it('refuses a missing file with ENOENT', () => {
    const e = errOf(() => mk({ filename: path.join(dir, 'nope') })) as FileBdevError;
    expect(e).toBeInstanceOf(FileBdevError);
    expect(e.errno).toBe(ERRNO.ENOENT);
    expect(e.message).toMatch(/nope.*no such file or directory/);
  });

  it('refuses a directory', () => {
    const e = errOf(() => mk({ filename: dir })) as FileBdevError;
    expect(e.errno).toBe(ERRNO.EISDIR);
    expect(e.message).toMatch(/is a directory/);
  });

  it('refuses something that is neither a file nor a block device', () => {
    expect(() => mk({ filename: '/dev/null' })).toThrow(/neither a regular file nor a block device/);
  });

  it('refuses a file it may not write, with a hint', (ctx) => {
    const f = sparseFile(dir, 'immutable', 1 << 20);
    try { execFileSync('chattr', ['+i', f], { stdio: 'ignore' }); } catch { ctx.skip(); }
    try {
      const e = errOf(() => mk({ filename: f })) as FileBdevError;
      expect([ERRNO.EPERM, ERRNO.EACCES]).toContain(e.errno);
      expect(e.message).toMatch(/not permitted|permission denied/);
      expect(e.message).toMatch(/read and write access/);
      // read-only aio works on it
      const b = mk({ module: 'aio', filename: f, readonly: true });
      expect(b.readonly).toBe(true);
    } finally {
      execFileSync('chattr', ['-i', f], { stdio: 'ignore' });
    }
  });

  it('refuses a file smaller than one block', () => {
    const f = sparseFile(dir, 'tiny', 511);
    expect(() => mk({ filename: f })).toThrow(/511 bytes, smaller than one 512-byte block/);
    const f2 = sparseFile(dir, 'small', 4095);
    expect(() => mk({ filename: f2, block_size: 4096 })).toThrow(/smaller than one 4096-byte block/);
    expect(() => mk({ filename: sparseFile(dir, 'empty', 0) })).toThrow(/0 bytes/);
  });

  it('refuses block sizes that are not powers of two or below 512', () => {
    const f = sparseFile(dir, 'bs', 1 << 20);
    expect(() => mk({ filename: f, block_size: 1000 })).toThrow(/block_size 1000 is invalid: use a power of two/);
    expect(() => mk({ filename: f, block_size: 256 })).toThrow(/block_size 256 is invalid/);
    expect(() => mk({ filename: f, block_size: 131072 })).toThrow(/block_size 131072 is invalid/);
  });

  it('refuses a bad uuid', () => {
    expect(() => mk({ filename: sparseFile(dir, 'u', 1 << 20), uuid: 'xyz' })).toThrow(/not a UUID/);
  });

  it('refuses the same file twice for writing, naming the other bdev; read-only openers are fine', () => {
    const f = sparseFile(dir, 'twice', 1 << 20);
    const a = mk({ filename: f, name: 'first' });
    // via another path (a symlink) too: identity is device + inode
    const link = path.join(dir, 'twice-link');
    fs.symlinkSync(f, link);
    const e = errOf(() => mk({ filename: link, name: 'second', module: 'aio' })) as FileBdevError;
    expect(e.errno).toBe(ERRNO.EBUSY);
    expect(e.message).toMatch(/already open for writing by bdev 'first'/);
    mk({ filename: f, name: 'ro', module: 'aio', readonly: true });
    a.destroy();
    made.splice(made.indexOf(a), 1);
    mk({ filename: link, name: 'second' }); // free again once the first is gone
  });

  it('O_DIRECT when the file system allows it, with the reason when buffered', () => {
    const f = sparseFile(dir, 'modes', 1 << 20);
    const b = mk({ filename: f });
    const ds = b.driverSpecific().uring as Record<string, unknown>;
    if (b.direct) {
      expect(ds.io_mode).toBe('O_DIRECT');
      expect(ds.direct_io_alignment_source).toMatch(/statx|probe/);
    }
    b.destroy(); made.pop();
    const nb = mk({ filename: f, direct: false });
    expect(nb.direct).toBe(false);
    const nds = nb.driverSpecific().uring as Record<string, unknown>;
    expect(nds.io_mode).toBe('buffered');
    expect(nds.buffered_reason).toMatch(/disabled/);
  });

  it('buffered I/O through the channel when O_DIRECT is off', () => {
    const f = sparseFile(dir, 'buffered', 1 << 20);
    const b = mk({ filename: f, direct: false });
    const ch = openFileChannel(b);
    const g = new Guest(1 << 20), sink = new Sink();
    try {
      g.u8.set(pattern(4096, 2), 0);
      expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 8, 8, [[0, 4096]]))).toBe(IoStatus.SUCCESS);
      expect(run(ch, sink, mkIo(sink, g, IoType.FLUSH, 0, 0))).toBe(IoStatus.SUCCESS);
      expect(ch.directIos).toBe(0);
      expect(ch.bufferedIos).toBe(1);
      expect(Buffer.compare(fs.readFileSync(f).subarray(4096, 8192), Buffer.from(pattern(4096, 2)))).toBe(0);
    } finally {
      ch.destroy();
      g.free();
    }
  });
});

describe('FileBdev: save_config, driver_specific, rescan', () => {
  it('bdev_uring_create config has name, block_size, filename and uuid', () => {
    const f = sparseFile(dir, 'cfg-u', 1 << 20);
    const b = mk({ filename: f, name: 'u0', uuid: '0a1b2c3d-0000-4000-8000-000000000001' });
    expect(b.configCall()).toEqual({ method: 'bdev_uring_create',
      params: { name: 'u0', block_size: 512, filename: f, uuid: '0a1b2c3d-0000-4000-8000-000000000001' } });
    const ds = b.driverSpecific();
    expect(Object.keys(ds)).toEqual(['uring']);
    expect(ds.uring).toMatchObject({ filename: f, file_type: 'regular_file' });
    expect(['io_uring', 'linux-aio', 'sync']).toContain((ds.uring as Record<string, unknown>).engine);
  });

  it('bdev_aio_create config has block_size only when it was given, plus readonly and fallocate', () => {
    const f = sparseFile(dir, 'cfg-a', 1 << 20);
    const a = mk({ module: 'aio', filename: f, name: 'a0' });
    expect(a.configCall()).toEqual({ method: 'bdev_aio_create',
      params: { name: 'a0', filename: f, readonly: false, fallocate: false, uuid: a.uuid } });
    expect([...a.ioTypes].sort()).toEqual(['flush', 'read', 'reset', 'write']); // no fallocate: no unmap
    expect(a.driverSpecific().aio).toMatchObject({ filename: f, block_size_override: false, readonly: false, fallocate: false });
    a.destroy(); made.pop();
    const b = mk({ module: 'aio', filename: f, name: 'a1', block_size: 4096, fallocate: true });
    expect(b.configCall().params).toMatchObject({ block_size: 4096, fallocate: true });
    expect(b.ioTypes.has('unmap')).toBe(true);
  });

  it('rescan refuses to shrink a claimed bdev and below one block', () => {
    const f = sparseFile(dir, 'rs', 1 << 20);
    const b = mk({ filename: f });
    b.claimedBy = 'vhost.0';
    fs.truncateSync(f, 1 << 19);
    expect(() => b.rescan()).toThrow(/in use by vhost.0: cannot shrink it from 2048 to 1024 blocks/);
    fs.truncateSync(f, 2 << 20);
    expect(b.rescan()).toEqual({ oldBlocks: 2048, newBlocks: 4096 }); // growing is fine
    b.claimedBy = null;
    fs.truncateSync(f, 100);
    const e = errOf(() => b.rescan()) as FileBdevError;
    expect(e.message).toMatch(/smaller than one 512-byte block/);
    expect(b.numBlocks).toBe(4096);
  });

  it('the size watcher notices a truncation', async () => {
    const f = sparseFile(dir, 'watch', 1 << 20);
    const b = mk({ filename: f });
    fs.truncateSync(f, 1 << 19);
    await new Promise((r) => setTimeout(r, 1300));
    expect(b.limitBlocks()).toBe(1024);
    expect(logs.some((l) => l.includes('shrank to 524288 bytes'))).toBe(true);
  });
});

describe('engine choice', () => {
  const saved = process.env[ENGINE_ENV];
  afterEach(() => { if (saved === undefined) delete process.env[ENGINE_ENV]; else process.env[ENGINE_ENV] = saved; });

  it('io_uring → linux-aio → sync, capped by VHOSTD_FILE_ENGINE, with the reason recorded', () => {
    delete process.env[ENGINE_ENV];
    const auto = chooseEngine();
    expect(['io_uring', 'linux-aio', 'sync']).toContain(auto.engine);
    process.env[ENGINE_ENV] = 'sync';
    const s = chooseEngine();
    expect(s.engine).toBe('sync');
    expect(s.fallbacks[0]).toMatch(/VHOSTD_FILE_ENGINE=sync/);
    const b = mk({ filename: sparseFile(dir, 'env', 1 << 20) });
    expect(b.engine).toBe('sync');
    expect((b.driverSpecific().uring as Record<string, unknown>).engine_fallback_reason).toMatch(/VHOSTD_FILE_ENGINE=sync/);
    process.env[ENGINE_ENV] = 'bogus';
    expect(() => chooseEngine()).toThrow(/VHOSTD_FILE_ENGINE='bogus' is not an engine/);
  });

  it('a reactor that cannot create io_uring walks down the chain', () => {
    // depth 0 makes io_uring_setup fail (EINVAL) and io_setup too: the sync engine remains
    const { engine, fallbacks } = createEngine('io_uring', 0);
    expect(engine.name).toBe('sync');
    expect(fallbacks).toHaveLength(2);
    expect(fallbacks[0]).toMatch(/^io_uring: io_uring_setup failed/);
    engine.close();
  });
});

describe('a 4K-sector file system', () => {
  let img: string | undefined, dev: string | undefined, mnt: string | undefined;
  beforeAll(() => {
    try {
      img = sparseFile(dir, 'fs4k.img', 64 << 20);
      dev = loopDevice(img, 4096);
      if (!dev) return;
      execFileSync('mkfs.ext4', ['-q', '-b', '4096', dev], { stdio: 'ignore' });
      mnt = fs.mkdtempSync(path.join(dir, 'mnt-'));
      execFileSync('mount', [dev, mnt], { stdio: 'ignore' });
    } catch {
      mnt = undefined;
    }
  });
  afterAll(() => {
    if (mnt) try { execFileSync('umount', [mnt], { stdio: 'ignore' }); } catch { /* ignore */ }
    if (dev) detachLoop(dev);
  });

  it('defaults to the O_DIRECT alignment and goes buffered for smaller blocks', (ctx) => {
    if (!mnt) ctx.skip();
    const f = sparseFile(mnt!, 'f', 1 << 20);
    const b = mk({ filename: f });
    expect(b.direct).toBe(true);
    expect(b.blockSize).toBe(4096);
    b.destroy(); made.pop();
    const s = mk({ filename: f, block_size: 512 });
    expect(s.direct).toBe(false);
    expect((s.driverSpecific().uring as Record<string, unknown>).buffered_reason)
      .toMatch(/block_size 512 is smaller than the O_DIRECT alignment 4096/);
    // and it serves I/O
    const ch = openFileChannel(s);
    const g = new Guest(1 << 20), sink = new Sink();
    try {
      g.u8.set(pattern(512, 3), 0);
      expect(run(ch, sink, mkIo(sink, g, IoType.WRITE, 3, 1, [[0, 512]]))).toBe(IoStatus.SUCCESS);
      expect(Buffer.compare(fs.readFileSync(f).subarray(1536, 2048), Buffer.from(pattern(512, 3)))).toBe(0);
    } finally {
      ch.destroy();
      g.free();
    }
  });
});

describe('RPC: bdev_uring_* and bdev_aio_*', () => {
  const reg = new MethodRegistry();
  registerModuleMethods(reg);   // includes the file methods
  const bdevs = new BdevRegistry();
  const ctx = { bdevs, state: 'running', reactors: { cpus: [0], describe: () => ({}) }, subsystems: [] } as unknown as AppContext;
  const call = (m: string, p?: unknown) => reg.invoke(m, p, ctx);
  const code = async (m: string, p?: unknown) => {
    try { await call(m, p); } catch (e) { const r = toRpcError(e); return { code: r.code, message: r.message }; }
    throw new Error(`${m} succeeded`);
  };
  afterAll(async () => { for (const b of bdevs.list()) await bdevs.unregister(b.name); });

  it('bdev_uring_create returns the name; get_bdevs shows driver_specific; delete returns true', async () => {
    const f = sparseFile(dir, 'rpc-u', 1 << 20);
    expect(await call('bdev_uring_create', { name: 'U0', filename: f })).toBe('U0');
    const [info] = await call('bdev_get_bdevs', { name: 'U0' }) as Record<string, any>[];
    expect(info.num_blocks).toBe(2048);
    expect(info.driver_specific.uring.filename).toBe(f);
    expect(info.driver_specific.uring.engine).toBeTypeOf('string');
    expect(info.supported_io_types.unmap).toBe(true);
    expect(await code('bdev_aio_delete', { name: 'U0' })).toMatchObject({ code: -22 }); // wrong module
    expect(await call('bdev_uring_delete', { name: 'U0' })).toBe(true);
    expect(await code('bdev_uring_delete', { name: 'U0' })).toMatchObject({ code: -19 });
  });

  it('bdev_aio_create with SPDK params, rescan after growth', async () => {
    const f = sparseFile(dir, 'rpc-a', 1 << 20);
    expect(await call('bdev_aio_create', { name: 'A0', filename: f, block_size: 4096, readonly: false, fallocate: true,
      uuid: '11111111-2222-4333-8444-555555555555' })).toBe('A0');
    fs.truncateSync(f, 2 << 20);
    expect(await call('bdev_aio_rescan', { name: 'A0' })).toBe(true);
    const [info] = await call('bdev_get_bdevs', { name: 'A0' }) as Record<string, any>[];
    expect(info.num_blocks).toBe(512);
    expect(info.uuid).toBe('11111111-2222-4333-8444-555555555555');
    expect(info.driver_specific.aio).toMatchObject({ block_size_override: true, fallocate: true, readonly: false });
    expect(await code('bdev_uring_rescan', { name: 'A0' })).toMatchObject({ code: -19, message: /is a aio bdev, not a uring bdev/ });
    expect(await call('bdev_aio_delete', { name: 'A0' })).toBe(true);
  });

  it('maps failures to SPDK-style error codes with clear messages', async () => {
    const f = sparseFile(dir, 'rpc-e', 1 << 20);
    expect(await code('bdev_aio_create', { name: 'E0', filename: path.join(dir, 'missing') }))
      .toMatchObject({ code: -ERRNO.ENOENT, message: /missing.*no such file/ });
    expect(await code('bdev_aio_create', { name: 'E0', filename: dir })).toMatchObject({ code: -ERRNO.EISDIR });
    expect(await code('bdev_uring_create', { name: 'E0', filename: f, block_size: 1000 })).toMatchObject({ code: -22, message: /power of two/ });
    expect(await code('bdev_uring_create', { name: 'E0' })).toMatchObject({ code: -32602, message: /filename/ });
    expect(await code('bdev_uring_create', { name: 'E0', filename: f, readonly: true })).toMatchObject({ code: -32602, message: /unknown parameter 'readonly'/ });
    expect(await code('bdev_uring_create', { name: '', filename: f })).toMatchObject({ code: -32602 });
    await call('bdev_uring_create', { name: 'E1', filename: f });
    expect(await code('bdev_uring_create', { name: 'E1', filename: f })).toMatchObject({ code: -17, message: /already exists/ });
    expect(await code('bdev_aio_create', { name: 'E2', filename: f })).toMatchObject({ code: -ERRNO.EBUSY, message: /by bdev 'E1'/ });
    expect(await code('bdev_aio_rescan', { name: 'nope' })).toMatchObject({ code: -19 });
    expect(await call('bdev_uring_delete', { name: 'E1' })).toBe(true);
    expect(await call('bdev_aio_create', { name: 'E2', filename: f })).toBe('E2'); // free after delete
    expect(await call('bdev_aio_delete', { name: 'E2' })).toBe(true);
  });
});
