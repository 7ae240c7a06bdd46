// A file-backed blk disk keeps every write vhost-load saw completed and flushed across
// SIGKILL and SIGTERM restarts of vhostd; a SIGKILL in the middle of a write run leaves
// only whole, valid sectors.
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const vl = vhostLoad();
// O_DIRECT needs a real file system: /var/tmp (tmpfs in /tmp would fall back to buffered)
const BASE = '/var/tmp';

function config(file: string) {
  return { subsystems: [
    { subsystem: 'bdev', config: [{ method: 'bdev_uring_create', params: { name: 'F0', filename: file, block_size: 512 } }] },
    { subsystem: 'vhost_blk', config: [{ method: 'vhost_create_blk_controller', params: { ctrlr: 'f0', dev_name: 'F0' } }] },
  ] };
}

describe.skipIf(!vl.bin)(`file bdev durability across vhostd restarts${vl.why ? ` (skipped: ${vl.why})` : ''}`, () => {
  let dir = '';
  let cfg = '';
  const span = ['--size', '32m'];
  beforeAll(() => {
    dir = mkdtempSync(join(BASE, 'vhostd-crash-'));
    const img = join(dir, 'disk.img');
    const fd = openSync(img, 'w'); ftruncateSync(fd, 64 << 20); closeSync(fd);
    cfg = join(dir, 'cfg.json');
    writeFileSync(cfg, JSON.stringify(config(img)));
    return () => rmSync(dir, { recursive: true, force: true });
  });
  const start = (): Promise<Daemon> => startDaemon(['-c', cfg], dir);
  const sock = () => join(dir, 'f0');

  for (const sig of ['SIGKILL', 'SIGTERM'] as const) {
    it(`completed writes survive a ${sig} restart (vhost-load --verify-only with the generation map)`, async () => {
      const state = join(dir, `state-${sig}`);
      let d = await start();
      const w = await runVhostLoad(vl.bin!, ['-s', sock(), '--verify', '--rw', 'randwrite', '--bs', '4k', '--qd', '16',
        '--time', '1', '--seed', '7', '--state', state, ...span]);
      expect(w.code, w.stderr).toBe(0);
      expect(w.json.verify.mismatches).toBe(0);
      d.proc.kill(sig);
      expect(await d.exited).toBe(sig === 'SIGTERM' ? 0 : null);
      d = await start();
      try {
        const r = await runVhostLoad(vl.bin!, ['-s', sock(), '--verify-only', '--seed', '7', '--state', state,
          '--bs', '64k', '--qd', '8', ...span]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.json.verify.mismatches).toBe(0);
        expect(r.json.verify.sectors_checked).toBe((32 << 20) / 512);
      } finally { await d.stop(); }
    }, 60_000);
  }

  it('a SIGKILL in the middle of a write run leaves only whole sectors of valid data', async () => {
    let d = await start();
    // every sector gets a valid pattern first, then a long write run is cut short
    const pre = await runVhostLoad(vl.bin!, ['-s', sock(), '--verify', '--rw', 'write', '--bs', '64k', '--qd', '8',
      '--time', '0.2', '--seed', '9', '--no-readback', ...span]);
    expect(pre.code, pre.stderr).toBe(0);
    const run = runVhostLoad(vl.bin!, ['-s', sock(), '--verify', '--rw', 'randwrite', '--bs', '16k', '--qd', '32',
      '--time', '10', '--seed', '9', '--no-prefill', ...span]);
    await new Promise((r) => setTimeout(r, 1000));   // writes under way
    d.proc.kill('SIGKILL');
    await d.exited;
    const w = await run;
    expect(w.code).toBe(3);                           // vhost-load: target disconnected
    d = await start();
    try {
      const r = await runVhostLoad(vl.bin!, ['-s', sock(), '--verify-only', '--seed', '9', '--bs', '64k', '--qd', '8', ...span]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.verify.mismatches).toBe(0);
    } finally { await d.stop(); }
  }, 60_000);
});
