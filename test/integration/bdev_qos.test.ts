// bdev_set_qos_limit against the real daemon: SPDK params, rounding, errors, bdev_get_bdevs
// and save_config; then rates measured with vhost-load through vhost-user-blk controllers
// on null bdevs: an I/O cap and a byte cap (with I/Os bigger than a slice's budget) hold over
// ~2 s while an uncapped neighbour on the same reactor runs far faster, and a reactor that
// sleeps whenever it is idle (--idle-sleep-ms 0) still releases waiting I/O every slice.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, rpc, ok, Daemon, tmpDir } from './daemon.js';
import { vhostLoad, runVhostLoad, VlResult } from '../lib/vhost_load.js';

const vl = vhostLoad();
const MIB = 1 << 20;

describe('bdev_set_qos_limit over RPC', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await d?.stop(); });

  it('sets, rounds, shows and clears limits; save_config writes them after the bdev and they load back', async () => {
    await ok(d.sock, 'bdev_null_create', { name: 'Q0', num_blocks: 8192, block_size: 512 });
    expect(await ok(d.sock, 'bdev_set_qos_limit', { name: 'Q0', rw_ios_per_sec: 2500, r_mbytes_per_sec: 40 })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'Q0' }))[0].assigned_rate_limits)
      .toEqual({ rw_ios_per_sec: 3000, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 40, w_mbytes_per_sec: 0 });
    expect(d.stderr()).toMatch(/rw_ios_per_sec 2500 is not a multiple of 1000: rounded up to 3000/);
    await ok(d.sock, 'bdev_set_qos_limit', { name: 'Q0', w_mbytes_per_sec: 12 });   // others stay
    const cfg = await ok(d.sock, 'save_config');
    const calls = cfg.subsystems.find((s: { subsystem: string }) => s.subsystem === 'bdev').config as { method: string; params: any }[];
    const i = calls.findIndex((c) => c.method === 'bdev_set_qos_limit');
    expect(calls[i].params).toEqual({ name: 'Q0', rw_ios_per_sec: 3000, r_mbytes_per_sec: 40, w_mbytes_per_sec: 12 });
    expect(calls[i - 1]).toMatchObject({ method: 'bdev_null_create', params: { name: 'Q0' } });
    const dir = tmpDir();
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify(cfg));
    const d2 = await startDaemon(['-c', join(dir, 'cfg.json')], dir);
    try {
      expect((await ok(d2.sock, 'bdev_get_bdevs', { name: 'Q0' }))[0].assigned_rate_limits)
        .toEqual({ rw_ios_per_sec: 3000, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 40, w_mbytes_per_sec: 12 });
    } finally {
      await d2.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    await ok(d.sock, 'bdev_set_qos_limit', { name: 'Q0', rw_ios_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 0 });
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'Q0' }))[0].assigned_rate_limits)
      .toEqual({ rw_ios_per_sec: 0, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 0 });
    const cfg2 = await ok(d.sock, 'save_config');
    expect(JSON.stringify(cfg2)).not.toMatch(/bdev_set_qos_limit/);
  });

  it('refuses bad input with SPDK codes and messages that say what to do', async () => {
    const cases: Array<[Record<string, unknown>, number, RegExp]> = [
      [{ name: 'nope', rw_ios_per_sec: 1000 }, -19, /bdev 'nope' does not exist/],
      [{ name: 'Q0' }, -22, /No rate limits specified: give at least one of rw_ios_per_sec/],
      [{ name: 'Q0', rw_ios_per_sec: -1 }, -32602, /rw_ios_per_sec/],
      [{ name: 'Q0', rw_mbytes_per_sec: 1.5 }, -32602, /rw_mbytes_per_sec' must be an integer/],
      [{ name: 'Q0', iops: 5 }, -32602, /iops/],
    ];
    for (const [p, code, msg] of cases) {
      const r = await rpc(d.sock, 'bdev_set_qos_limit', p);
      expect(r.error, JSON.stringify(p)).toMatchObject({ code, message: expect.stringMatching(msg) });
    }
  });
});

/** IOPS and MiB/s of a vhost-load run, or a failure that names its stderr. */
function rate(r: VlResult): { iops: number; mibS: number } {
  expect(r.code, r.stderr).toBe(0);
  return { iops: r.json.total.iops, mibS: r.json.total.mib_s };
}

describe.skipIf(!vl.bin)('QoS rates through vhost-user-blk (vhost-load)', () => {
  let d: Daemon;
  // each test starts its own daemon; a failed one is stopped here before the next starts
  afterEach(async () => { await d?.stop(); });

  it('an I/O cap and a byte cap hold over ~2 s; an uncapped neighbour on the same reactor runs far faster', async () => {
    d = await startDaemon(['-m', '0x1']);
    for (const n of ['Capped', 'Bytes', 'Free']) {
      await ok(d.sock, 'bdev_null_create', { name: n, num_blocks: 1 << 21, block_size: 512 });
      await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: `vq.${n}`, dev_name: n });
    }
    await ok(d.sock, 'bdev_set_qos_limit', { name: 'Capped', rw_ios_per_sec: 1000 });
    // 64 KiB I/Os under 8 MiB/s: a slice's budget (8388 bytes) is an eighth of one I/O
    await ok(d.sock, 'bdev_set_qos_limit', { name: 'Bytes', rw_mbytes_per_sec: 8 });
    // --irq: clients sleep on their interrupt instead of spinning (2 cores are shared here)
    const run = (n: string, bs: string) => runVhostLoad(vl.bin!, ['-s', join(d.dir, `vq.${n}`), '-w', 'randrw', '-b', bs,
      '-q', '16', '-T', '2', '--warmup', '0.3', '--irq', '--io-timeout', '5'], 60_000);
    const [c, b, f] = (await Promise.all([run('Capped', '4k'), run('Bytes', '64k'), run('Free', '64k')])).map(rate);
    console.log(`QoS: capped 1000 IOPS -> ${c.iops.toFixed(0)} IOPS; capped 8 MiB/s -> ${b.mibS.toFixed(2)} MiB/s ` +
      `while the uncapped neighbour ran ${f.mibS.toFixed(1)} MiB/s`);
    // the caps are tight above; below, three clients and the reactor on a loaded machine can stall
    // for whole seconds (seen: 255 of 1000 IOPS at load average 15), so only starvation fails
    expect(c.iops).toBeLessThan(1000 * 1.05);
    expect(c.iops).toBeGreaterThan(1000 * 0.2);
    expect(b.mibS).toBeLessThan(8 * 1.05);
    expect(b.mibS).toBeGreaterThan(8 * 0.2);
    expect(f.mibS).toBeGreaterThan(b.mibS * 3);
    // bdev_get_iostat agrees: the byte-capped bdev moved no more than its limit allows (2.3 s + the first slices)
    const st = (await ok(d.sock, 'bdev_get_iostat', { name: 'Bytes' })).bdevs[0];
    expect((st.bytes_read + st.bytes_written) / MIB).toBeLessThan(8 * 2.3 * 1.05 + 1);
  }, 90_000);

  it('a reactor that sleeps as soon as it is idle wakes at the next slice for waiting I/O', async () => {
    d = await startDaemon(['-m', '0x1', '--idle-sleep-ms', '0']);
    await ok(d.sock, 'bdev_null_create', { name: 'Slow', num_blocks: 1 << 16, block_size: 512 });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vq.slow', dev_name: 'Slow' });
    await ok(d.sock, 'bdev_set_qos_limit', { name: 'Slow', rw_ios_per_sec: 2000 });
    // --irq: the client sleeps too, so nothing but the reactor's own timer releases waiting I/O
    const r = rate(await runVhostLoad(vl.bin!, ['-s', join(d.dir, 'vq.slow'), '-w', 'randread', '-q', '8', '-T', '2',
      '--irq', '--io-timeout', '5'], 60_000));
    console.log(`QoS in interrupt mode: capped 2000 IOPS -> ${r.iops.toFixed(0)} IOPS`);
    expect(r.iops).toBeLessThan(2000 * 1.05);
    expect(r.iops).toBeGreaterThan(2000 * 0.7);
    const reactors = await ok(d.sock, 'framework_get_reactors');
    expect(reactors.reactors[0].idle).toBeGreaterThan(0);
  }, 60_000);
});
