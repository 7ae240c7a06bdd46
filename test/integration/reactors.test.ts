// Reactors: one pinned thread per CPU of -m, queues of a controller spread over its
// cpumask, idle reactors asleep in epoll (interrupt mode) and woken by the guest.
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, type Daemon } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const vl = vhostLoad();

describe('reactors', () => {
  let d: Daemon;
  afterAll(async () => { await d?.stop(); });

  it('runs one thread per CPU of the mask, each pinned to its CPU', async () => {
    d = await startDaemon(['-m', '[0,1]', '--log-level', 'INFO']);
    const r = await ok(d.sock, 'framework_get_reactors');
    expect(r.reactors.map((x: { lcore: number }) => x.lcore)).toEqual([0, 1]);
    for (const x of r.reactors) {
      expect(x.tid).not.toBe(r.pid);
      const status = readFileSync(`/proc/${r.pid}/task/${x.tid}/status`, 'utf8');
      expect(status).toMatch(new RegExp(`Cpus_allowed_list:\\s+${x.lcore}\\n`));
    }
  });

  it('sleeps in epoll when idle (interrupt mode); the next test wakes it with guest I/O', async () => {
    // idle for a while: both reactors asleep in epoll_wait
    await new Promise((res) => setTimeout(res, 300));
    const r = await ok(d.sock, 'framework_get_reactors');
    expect(r.reactors.every((x: { in_interrupt: boolean }) => x.in_interrupt)).toBe(true);
  });

  it.skipIf(!vl.bin)('spreads a controller\'s queues over its cpumask; data stays correct', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 65536, block_size: 512 });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'mq0', dev_name: 'M0', cpumask: '0x3' });
    const res = await runVhostLoad(vl.bin!, ['-s', join(d.dir, 'mq0'), '--verify', '--rw', 'randrw', '--queues', '2',
      '--qd', '8', '--time', '1', '--yield', '--irq']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.verify.mismatches).toBe(0);
    expect(d.stderr()).toMatch(/mq0: queue 0 started on reactor 0/);
    expect(d.stderr()).toMatch(/mq0: queue 1 started on reactor 1/);
    await expect(ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'bad', dev_name: 'M0', cpumask: '0x4' }))
      .rejects.toThrow(/cpu 2 where no reactor runs/);
  });
});
