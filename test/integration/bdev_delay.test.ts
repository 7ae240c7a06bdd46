// bdev_delay_* against the real daemon: SPDK names, results and error codes, the base
// claimed while the delay bdev exists, save_config → restart with -c, and I/O from
// vhost-load through a blk controller taking at least the configured latency.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync, truncateSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, rpc, ok, Daemon, tmpDir } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const LAT = { avg_read_latency: 2000, p99_read_latency: 5000, avg_write_latency: 20_000, p99_write_latency: 30_000 };
const vl = vhostLoad();

describe('delay bdevs over RPC', () => {
  let d: Daemon;
  let files: string;
  beforeAll(async () => {
    d = await startDaemon();
    files = mkdtempSync('/var/tmp/vhostd-delay-it-');
  });
  afterAll(async () => {
    await d?.stop();
    rmSync(files, { recursive: true, force: true });
  });

  it('creates a delay bdev on a file bdev, claims the base, updates latencies, deletes and releases it', async () => {
    const f = join(files, 'f.img');
    writeFileSync(f, '');
    truncateSync(f, 8 << 20);
    expect(await ok(d.sock, 'bdev_uring_create', { name: 'F0', filename: f })).toBe('F0');
    expect(await ok(d.sock, 'bdev_delay_create', { base_bdev_name: 'F0', name: 'D0', ...LAT })).toBe('D0');
    const [b] = await ok(d.sock, 'bdev_get_bdevs', { name: 'D0' });
    expect(b).toMatchObject({ name: 'D0', product_name: 'delay', block_size: 512, num_blocks: 16384, claimed: false,
      driver_specific: { delay: { name: 'D0', base_bdev_name: 'F0', ...LAT } } });
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'F0' }))[0].claimed).toBe(true);
    // a claimed base cannot be deleted or used twice
    expect((await rpc(d.sock, 'bdev_uring_delete', { name: 'F0' })).error?.code).toBe(-16);
    expect((await rpc(d.sock, 'bdev_delay_create', { base_bdev_name: 'F0', name: 'D1', ...LAT })).error).toMatchObject(
      { code: -16, message: /already claimed by delay bdev D0/ });
    expect(await ok(d.sock, 'bdev_delay_update_latency', { delay_bdev_name: 'D0', latency_type: 'avg_write', latency_us: 25_000 })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'D0' }))[0].driver_specific.delay.avg_write_latency).toBe(25_000);
    expect(await ok(d.sock, 'bdev_delay_delete', { name: 'D0' })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'F0' }))[0].claimed).toBe(false);
    expect(await ok(d.sock, 'bdev_uring_delete', { name: 'F0' })).toBe(true);
  });

  it('refuses bad input with SPDK-style codes and messages that say what to do', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 2048, block_size: 512 });
    await ok(d.sock, 'bdev_delay_create', { base_bdev_name: 'M0', name: 'DM', ...LAT });
    const cases: Array<[string, Record<string, unknown>, number, RegExp]> = [
      ['bdev_delay_create', { base_bdev_name: 'nope', name: 'X', ...LAT }, -19, /base bdev 'nope' does not exist: create it first/],
      ['bdev_delay_create', { base_bdev_name: 'M0', name: 'DM', ...LAT }, -17, /'DM' already exists/],
      ['bdev_delay_create', { base_bdev_name: 'DM', name: 'X', ...LAT, p99_write_latency: 1 }, -22, /make p99 at least the average/],
      ['bdev_delay_create', { base_bdev_name: 'DM', name: 'X', ...LAT, avg_read_latency: -5 }, -32602, /avg_read_latency/],
      ['bdev_delay_create', { base_bdev_name: 'DM', name: 'X' }, -32602, /avg_read_latency/],
      ['bdev_delay_delete', { name: 'M0' }, -19, /is a malloc bdev, not a delay bdev/],
      ['bdev_delay_delete', { name: 'nope' }, -19, /does not exist/],
      ['bdev_delay_update_latency', { delay_bdev_name: 'nope', latency_type: 'avg_read', latency_us: 1 }, -32602, /does not exist/],
      ['bdev_delay_update_latency', { delay_bdev_name: 'M0', latency_type: 'avg_read', latency_us: 1 }, -32600, /not a delay bdev/],
      ['bdev_delay_update_latency', { delay_bdev_name: 'DM', latency_type: 'p50_read', latency_us: 1 }, -32602, /use one of avg_read, p99_read/],
    ];
    for (const [m, p, code, msg] of cases) {
      const r = await rpc(d.sock, m, p);
      expect(r.error, `${m} ${JSON.stringify(p)}`).toMatchObject({ code, message: expect.stringMatching(msg) });
    }
    // a failed create leaves the base unclaimed by the failed bdev
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'DM' }))[0].claimed).toBe(false);
    expect(await ok(d.sock, 'bdev_delay_delete', { name: 'DM' })).toBe(true);
    expect(await ok(d.sock, 'bdev_malloc_delete', { name: 'M0' })).toBe(true);
  });

  it('save_config writes bdev_delay_create after its base, and it loads back', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'M1', num_blocks: 2048, block_size: 4096 });
    await ok(d.sock, 'bdev_delay_create', { base_bdev_name: 'M1', name: 'D1', ...LAT });
    const cfg = await ok(d.sock, 'save_config');
    const bdevs = cfg.subsystems.find((s: { subsystem: string }) => s.subsystem === 'bdev').config as { method: string; params: any }[];
    const i = bdevs.findIndex((c) => c.method === 'bdev_delay_create');
    expect(bdevs[i].params).toMatchObject({ name: 'D1', base_bdev_name: 'M1', ...LAT });
    expect(bdevs.findIndex((c) => c.params?.name === 'M1')).toBeLessThan(i);
    const dir = tmpDir();
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify(cfg));
    const d2 = await startDaemon(['-c', join(dir, 'cfg.json')], dir);
    try {
      const [b] = await ok(d2.sock, 'bdev_get_bdevs', { name: 'D1' });
      expect(b).toMatchObject({ block_size: 4096, num_blocks: 2048, uuid: bdevs[i].params.uuid, driver_specific: { delay: LAT } });
    } finally {
      await d2.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!vl.bin)('delay bdev under a vhost-user-blk controller', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(['-m', '0x1']); });
  afterAll(async () => { await d?.stop(); });

  it('writes take the write latency, reads the read latency; data verifies', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'M', num_blocks: 8192, block_size: 512 });
    await ok(d.sock, 'bdev_delay_create', { base_bdev_name: 'M', name: 'D', avg_read_latency: 2000, p99_read_latency: 2000,
      avg_write_latency: 20_000, p99_write_latency: 20_000 });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vd', dev_name: 'D' });
    const r = await runVhostLoad(vl.bin!, ['-s', join(d.dir, 'vd'), '-w', 'randrw', '-q', '8', '-T', '2', '--size', '1M',
      '--verify', '--io-timeout', '5'], 60_000);
    expect(r.code, r.stderr).toBe(0);
    const st = (await ok(d.sock, 'bdev_get_iostat', { name: 'D' })).bdevs[0];
    expect(st.num_write_ops).toBeGreaterThan(10);
    expect(st.num_read_ops).toBeGreaterThan(10);
    // latencies are timed on 1 I/O in 16: none of those is faster than its latency
    expect(st.min_write_latency_ticks).toBeGreaterThanOrEqual(20e6);
    expect(st.min_read_latency_ticks).toBeGreaterThanOrEqual(2e6);
    expect(st.read_latency_ticks / st.num_read_ops).toBeLessThan(st.write_latency_ticks / st.num_write_ops);
  }, 90_000);
});
