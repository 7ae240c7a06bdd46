// bdev_uring_* / bdev_aio_* against the real daemon over its RPC socket: SPDK result
// shapes, error codes, driver_specific, rescan, and save_config → restart with -c.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync, truncateSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, rpc, ok, Daemon } from './daemon.js';

describe('file bdevs over RPC', () => {
  let d: Daemon;
  let files: string;
  beforeAll(async () => {
    d = await startDaemon();
    files = mkdtempSync('/var/tmp/vhostd-file-it-');
  });
  afterAll(async () => {
    await d?.stop();
    rmSync(files, { recursive: true, force: true });
  });

  const file = (name: string, bytes: number) => {
    const p = join(files, name);
    writeFileSync(p, '');
    truncateSync(p, bytes);
    return p;
  };

  it('lists the SPDK method names', async () => {
    const methods: string[] = await ok(d.sock, 'rpc_get_methods');
    for (const m of ['bdev_uring_create', 'bdev_uring_delete', 'bdev_uring_rescan', 'bdev_aio_create', 'bdev_aio_delete', 'bdev_aio_rescan']) {
      expect(methods).toContain(m);
    }
  });

  it('creates uring and aio bdevs, shows them, rescans, and deletes them', async () => {
    const fu = file('u.img', 4 << 20), fa = file('a.img', 1 << 20);
    expect(await ok(d.sock, 'bdev_uring_create', { name: 'U0', filename: fu })).toBe('U0');
    expect(await ok(d.sock, 'bdev_aio_create', { name: 'A0', filename: fa, block_size: 4096, fallocate: true })).toBe('A0');
    const [u] = await ok(d.sock, 'bdev_get_bdevs', { name: 'U0' });
    expect(u).toMatchObject({ name: 'U0', block_size: 512, num_blocks: 8192, claimed: false,
      supported_io_types: { read: true, write: true, flush: true, unmap: true, write_zeroes: true, reset: true } });
    expect(u.driver_specific.uring).toMatchObject({ filename: fu, file_type: 'regular_file', io_mode: 'O_DIRECT' });
    expect(['io_uring', 'linux-aio', 'sync']).toContain(u.driver_specific.uring.engine);
    const [a] = await ok(d.sock, 'bdev_get_bdevs', { name: 'A0' });
    expect(a).toMatchObject({ block_size: 4096, num_blocks: 256 });
    expect(a.driver_specific.aio).toMatchObject({ filename: fa, block_size_override: true, readonly: false, fallocate: true });

    truncateSync(fa, 2 << 20);
    expect(await ok(d.sock, 'bdev_aio_rescan', { name: 'A0' })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'A0' }))[0].num_blocks).toBe(512);

    expect(await ok(d.sock, 'bdev_uring_delete', { name: 'U0' })).toBe(true);
    expect(await ok(d.sock, 'bdev_aio_delete', { name: 'A0' })).toBe(true);
    expect((await rpc(d.sock, 'bdev_get_bdevs', { name: 'U0' })).error?.code).toBe(-19);
  });

  it('refuses bad input with SPDK-style codes and clear messages', async () => {
    const f = file('e.img', 1 << 20);
    const cases: Array<[string, Record<string, unknown>, number, RegExp]> = [
      ['bdev_aio_create', { name: 'X', filename: join(files, 'missing.img') }, -2, /missing\.img.*no such file/],
      ['bdev_aio_create', { name: 'X', filename: files }, -21, /is a directory/],
      ['bdev_uring_create', { name: 'X', filename: file('tiny.img', 100) }, -22, /smaller than one 512-byte block/],
      ['bdev_uring_create', { name: 'X', filename: f, block_size: 3000 }, -22, /power of two/],
      ['bdev_uring_create', { name: 'X' }, -32602, /missing required parameter 'filename'/],
      ['bdev_uring_delete', { name: 'nope' }, -19, /does not exist/],
      ['bdev_uring_rescan', { name: 'nope' }, -19, /does not exist/],
    ];
    for (const [m, p, code, msg] of cases) {
      const r = await rpc(d.sock, m, p);
      expect(r.error, `${m} ${JSON.stringify(p)}`).toBeDefined();
      expect(r.error!.code, `${m}: ${r.error!.message}`).toBe(code);
      expect(r.error!.message).toMatch(msg);
    }
    await ok(d.sock, 'bdev_uring_create', { name: 'W0', filename: f });
    const twice = await rpc(d.sock, 'bdev_aio_create', { name: 'W1', filename: f });
    expect(twice.error).toMatchObject({ code: -16, message: expect.stringMatching(/already open for writing by bdev 'W0'/) });
    const dup = await rpc(d.sock, 'bdev_uring_create', { name: 'W0', filename: file('other.img', 1 << 20) });
    expect(dup.error?.code).toBe(-17);
    await ok(d.sock, 'bdev_uring_delete', { name: 'W0' });
  });

  it('save_config writes the create calls; a restart with -c recreates identical bdevs', async () => {
    const fu = file('s-u.img', 1 << 20), fa = file('s-a.img', 2 << 20);
    await ok(d.sock, 'bdev_uring_create', { name: 'S0', filename: fu, uuid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee' });
    await ok(d.sock, 'bdev_aio_create', { name: 'S1', filename: fa, readonly: true });
    const saved = await ok(d.sock, 'save_config');
    const bdev = saved.subsystems.find((s: { subsystem: string }) => s.subsystem === 'bdev');
    expect(bdev.config).toEqual(expect.arrayContaining([
      { method: 'bdev_uring_create', params: { name: 'S0', block_size: 512, filename: fu, uuid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee' } },
      { method: 'bdev_aio_create', params: expect.objectContaining({ name: 'S1', filename: fa, readonly: true, fallocate: false }) },
    ]));
    const cfg = join(d.dir, 'file-config.json');
    writeFileSync(cfg, JSON.stringify(saved));
    const d2 = await startDaemon(['-c', cfg]);
    try {
      expect(await ok(d2.sock, 'save_config')).toEqual(saved);
      const [s1] = await ok(d2.sock, 'bdev_get_bdevs', { name: 'S1' });
      expect(s1.supported_io_types.write).toBe(false);
    } finally {
      await d2.stop();
    }
    await ok(d.sock, 'bdev_uring_delete', { name: 'S0' });
    await ok(d.sock, 'bdev_aio_delete', { name: 'S1' });
  });
});
