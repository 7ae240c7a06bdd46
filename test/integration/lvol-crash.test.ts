// lvols across vhostd restarts and crashes (file base bdev in the config, lvstore found by
// examine): a clean restart brings the lvstore, its lvols and the controller back, and
// save_config holds only the base bdev; acknowledged and flushed writes survive a SIGKILL
// exactly (vhost-load --state); a SIGKILL in the middle of copy-on-write allocations leaves
// only valid data; a SIGKILL during a loop of metadata RPCs leaves the old or the new state.
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, rpc, type Daemon } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const vl = vhostLoad();
const MiB = 1 << 20;
const BASE = '/var/tmp';   // O_DIRECT needs a real file system

describe.skipIf(!vl.bin)(`lvols across restarts and crashes${vl.why ? ` (skipped: ${vl.why})` : ''}`, () => {
  let dir = '';
  let persisted = '';
  beforeAll(() => {
    dir = mkdtempSync(join(BASE, 'vhostd-lvol-crash-'));
    const fd = openSync(join(dir, 'base.img'), 'w'); ftruncateSync(fd, 64 * MiB); closeSync(fd);
    persisted = join(dir, 'running.json');
    return () => rmSync(dir, { recursive: true, force: true });
  });
  const live = new Set<Daemon>();
  const start = async (): Promise<Daemon> => {
    const d = await startDaemon(['--config-file', persisted], dir);
    live.add(d);
    d.exited.then(() => live.delete(d));
    return d;
  };
  afterEach(async (c) => {   // a failed test leaves no daemon behind, and shows its log
    for (const d of live) {
      if (c.task.result?.state === 'fail') console.error(`vhostd log:\n${d.stderr()}`);
      d.proc.kill('SIGKILL');
      await d.exited;
    }
  });
  const load = (args: string[]) => runVhostLoad(vl.bin!, ['-s', join(dir, 'v0'), '--yield', ...args]);

  it('a restart finds the lvstore and lvols again; save_config has only the base bdev and waits for examine', async () => {
    let d = await start();
    await ok(d.sock, 'bdev_uring_create', { name: 'F0', filename: join(dir, 'base.img'), block_size: 512 });
    const lvs = await ok(d.sock, 'bdev_lvol_create_lvstore', { bdev_name: 'F0', lvs_name: 'lvs0', cluster_sz: MiB });
    const vol = await ok(d.sock, 'bdev_lvol_create', { lvs_name: 'lvs0', lvol_name: 'vol', size_in_mib: 16, thin_provision: true });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'v0', dev_name: 'lvs0/vol' });
    const w = await load(['--verify', '--rw', 'randwrite', '--bs', '4k', '--qd', '16', '--time', '0.5', '--seed', '21', '--size', '8m',
      '--state', join(dir, 'st21')]);
    expect(w.code, w.stderr).toBe(0);
    const cfg = await ok(d.sock, 'save_config');
    const bdevCfg = cfg.subsystems.find((s: any) => s.subsystem === 'bdev').config.map((c: any) => c.method);
    expect(bdevCfg).toEqual(['bdev_uring_create', 'bdev_wait_for_examine']);
    expect(JSON.parse(readFileSync(persisted, 'utf8'))).toEqual(cfg);
    await d.stop();
    d = await start();
    try {
      expect(await ok(d.sock, 'bdev_wait_for_examine')).toBe(true);
      expect((await ok(d.sock, 'bdev_lvol_get_lvstores'))).toMatchObject([{ uuid: lvs, name: 'lvs0', base_bdev: 'F0' }]);
      const [b] = await ok(d.sock, 'bdev_get_bdevs', { name: 'lvs0/vol' });
      expect(b).toMatchObject({ name: vol, num_blocks: 16 * 2048, claimed: true, driver_specific: { lvol: { num_allocated_clusters: 8 } } });
      const r = await load(['--verify-only', '--seed', '21', '--bs', '64k', '--qd', '8', '--size', '8m', '--state', join(dir, 'st21')]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.verify.mismatches).toBe(0);
    } finally { await d.stop(); }
  }, 60_000);

  it('acknowledged writes survive SIGKILL exactly; a SIGKILL amid copy-on-write allocations leaves only valid data', async () => {
    let d = await start();
    await ok(d.sock, 'bdev_wait_for_examine');
    // every cluster of the span is shared with a snapshot: each first write copies on write
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'v0' });
    await ok(d.sock, 'bdev_lvol_snapshot', { lvol_name: 'lvs0/vol', snapshot_name: 's1' });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'v0', dev_name: 'lvs0/vol' });
    const st = join(dir, 'st21');
    const w = await load(['--verify', '--rw', 'randwrite', '--bs', '4k', '--qd', '16', '--time', '0.5', '--seed', '21', '--size', '8m', '--state', st]);
    expect(w.code, w.stderr).toBe(0);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'lvs0/vol' }))[0].driver_specific.lvol.num_allocated_clusters).toBe(8);
    d.proc.kill('SIGKILL');
    await d.exited;
    d = await start();
    await ok(d.sock, 'bdev_wait_for_examine');
    const r = await load(['--verify-only', '--seed', '21', '--bs', '64k', '--qd', '8', '--size', '8m', '--state', st]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.verify.mismatches).toBe(0);
    // again, killed while the writes allocate: snapshot again, then random 16k writes cut short
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'v0' });
    await ok(d.sock, 'bdev_lvol_snapshot', { lvol_name: 'lvs0/vol', snapshot_name: 's2' });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'v0', dev_name: 'lvs0/vol' });
    const run = load(['--verify', '--rw', 'randwrite', '--bs', '16k', '--qd', '32', '--time', '10', '--seed', '21', '--no-prefill', '--size', '8m']);
    await new Promise((res) => setTimeout(res, 700));
    const mid = (await ok(d.sock, 'bdev_get_bdevs', { name: 'lvs0/vol' }))[0].driver_specific.lvol.num_allocated_clusters;
    d.proc.kill('SIGKILL');
    await d.exited;
    expect((await run).code).toBe(3);   // vhost-load: target disconnected
    d = await start();
    try {
      await ok(d.sock, 'bdev_wait_for_examine');
      const after = (await ok(d.sock, 'bdev_get_bdevs', { name: 'lvs0/vol' }))[0].driver_specific.lvol.num_allocated_clusters;
      expect(after).toBeGreaterThanOrEqual(mid);
      const r2 = await load(['--verify-only', '--seed', '21', '--bs', '64k', '--qd', '8', '--size', '8m']);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.json.verify.mismatches).toBe(0);
      // the lvstore's free count agrees with what the maps reference (clusters cut off by the crash are free again)
      const lvols = await ok(d.sock, 'bdev_lvol_get_lvols', { lvs_name: 'lvs0' });
      const used = lvols.reduce((n: number, l: any) => n + l.num_allocated_clusters, 0);
      const [s] = await ok(d.sock, 'bdev_lvol_get_lvstores', { lvs_name: 'lvs0' });
      expect(s.free_clusters).toBe(s.total_data_clusters - used);
    } finally { await d.stop(); }
  }, 90_000);

  it('a SIGKILL during a loop of metadata updates leaves the old or the new state', async () => {
    type Model = Record<string, { size: number; parent: string | null; snapshot: boolean }>;
    const snapshotOf = (m: Model) => JSON.stringify(Object.keys(m).sort().map((k) => [k, m[k]]));
    const found = async (sock: string): Promise<string> => {
      const lvols = await ok(sock, 'bdev_lvol_get_lvols', { lvs_name: 'lvs0' });
      const byUuid = new Map(lvols.map((l: any) => [l.uuid, l.name]));
      const m: Model = {};
      for (const l of lvols) {
        const [b] = await ok(sock, 'bdev_get_bdevs', { name: l.uuid });
        const parent = b.driver_specific.lvol.base_snapshot ?? null;
        m[l.name] = { size: b.num_blocks / 2048, parent: parent && [...byUuid.values()].includes(parent) ? parent : null, snapshot: l.is_snapshot };
      }
      return snapshotOf(m);
    };
    for (let round = 0; round < 3; round++) {
      const d = await start();
      await ok(d.sock, 'bdev_wait_for_examine');
      // the model starts from what is there, then follows each acknowledged call
      const lvols = await ok(d.sock, 'bdev_lvol_get_lvols', { lvs_name: 'lvs0' });
      const model: Model = {};
      for (const l of lvols) {
        const [b] = await ok(d.sock, 'bdev_get_bdevs', { name: l.uuid });
        model[l.name] = { size: b.num_blocks / 2048, parent: b.driver_specific.lvol.base_snapshot ?? null, snapshot: l.is_snapshot };
      }
      let pendingNext: string | null = null;
      let stop = false;
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          const n = `r${round}x${i}`;
          const steps: Array<[string, Record<string, unknown>, (m: Model) => void]> = [
            ['bdev_lvol_create', { lvs_name: 'lvs0', lvol_name: n, size_in_mib: 2, thin_provision: true },
              (m) => { m[n] = { size: 2, parent: null, snapshot: false }; }],
            ['bdev_lvol_resize', { name: `lvs0/${n}`, size_in_mib: 3 }, (m) => { m[n].size = 3; }],
            ['bdev_lvol_snapshot', { lvol_name: `lvs0/${n}`, snapshot_name: `${n}s` },
              (m) => { m[`${n}s`] = { size: 3, parent: null, snapshot: true }; m[n].parent = `${n}s`; }],
            ['bdev_lvol_clone', { snapshot_name: `lvs0/${n}s`, clone_name: `${n}c` },
              (m) => { m[`${n}c`] = { size: 3, parent: `${n}s`, snapshot: false }; }],
            ['bdev_lvol_rename', { old_name: `lvs0/${n}c`, new_name: `${n}k` }, (m) => { m[`${n}k`] = m[`${n}c`]; delete m[`${n}c`]; }],
            ['bdev_lvol_delete', { name: `lvs0/${n}k` }, (m) => { delete m[`${n}k`]; }],
            ['bdev_lvol_inflate', { name: `lvs0/${n}` }, (m) => { m[n].parent = null; }],
            ['bdev_lvol_delete', { name: `lvs0/${n}s` }, (m) => { delete m[`${n}s`]; }],
            ['bdev_lvol_delete', { name: `lvs0/${n}` }, (m) => { delete m[n]; }],
          ];
          for (const [method, params, apply] of steps) {
            if (stop) return;
            const next: Model = JSON.parse(JSON.stringify(model));
            apply(next);
            pendingNext = snapshotOf(next);
            const r = await rpc(d.sock, method, params).catch(() => null);
            if (!r) return;                          // the daemon is gone
            if (r.error) throw new Error(`${method}: ${r.error.message}`);
            apply(model);
            pendingNext = null;
          }
        }
      })();
      await new Promise((res) => setTimeout(res, 400 + round * 350));
      const before = snapshotOf(model), next = pendingNext;
      d.proc.kill('SIGKILL');
      stop = true;
      await d.exited;
      await loop;
      const d2 = await start();
      try {
        await ok(d2.sock, 'bdev_wait_for_examine');
        const now = await found(d2.sock);
        expect([before, next].filter(Boolean)).toContain(now);
      } finally { await d2.stop(); }
    }
  }, 90_000);
});
