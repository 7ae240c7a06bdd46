// --metrics: Prometheus text with per-bdev counters and latency histogram, reactor time.
import { describe, it, expect, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, ok, type Daemon } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const vl = vhostLoad();
const PORT = 19464 + (process.pid % 500);

describe.skipIf(!vl.bin)('metrics endpoint', () => {
  let d: Daemon;
  afterAll(async () => { await d?.stop(); });

  it('counts the I/O a client did, per bdev, and reactor busy time', async () => {
    d = await startDaemon(['--metrics', `127.0.0.1:${PORT}`]);
    await ok(d.sock, 'bdev_malloc_create', { name: 'Mx', num_blocks: 32768, block_size: 512 });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'm0', dev_name: 'Mx' });
    // examine (lvol superblock reads) already read from the new bdev: count from here on
    await ok(d.sock, 'bdev_wait_for_examine');
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${PORT}/metrics`)).text();
      const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
      return { text, reads: num(/vhostd_bdev_ops_total\{bdev="Mx",type="read"\} (\d+)/),
        bytes: num(/vhostd_bdev_bytes_total\{bdev="Mx",type="read"\} (\d+)/) };
    };
    const before = await scrape();
    const res = await runVhostLoad(vl.bin!, ['-s', join(d.dir, 'm0'), '--rw', 'randread', '--qd', '4', '--time', '0.5']);
    expect(res.code, res.stderr).toBe(0);
    const after = await scrape();
    const text = after.text;
    const reads = after.reads - before.reads;
    // vhost-load counts only the measured window; the bdev saw at least that many
    expect(reads).toBeGreaterThanOrEqual(res.json.read.ios);
    expect(after.bytes - before.bytes).toBe(reads * 4096);
    const count = Number(/vhostd_bdev_latency_seconds_count\{bdev="Mx"\} (\d+)/.exec(text)?.[1]);
    expect(count).toBeGreaterThan(reads / 2);   // sampled 1 in 16 and scaled back
    expect(Number(/vhostd_reactor_busy_seconds_total\{lcore="0"\} ([\d.e-]+)/.exec(text)?.[1])).toBeGreaterThan(0);
  });
});
