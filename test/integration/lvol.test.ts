// Logical volumes against the real daemon: lvstores on malloc and file bdevs, a thin lvol
// served by a vhost-user-blk controller and checked by vhost-load --verify, snapshot and
// clone (the clone reads the snapshot's data and diverges after writes; the snapshot stays),
// resize, inflate, SPDK's delete rules, and a restart that finds the lvstore and lvols again.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, rpc, ok, Daemon } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const vl = vhostLoad();
const MiB = 1 << 20;

describe('logical volumes over RPC', () => {
  let d: Daemon;
  let dir = '';
  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/vhostd-lvol-it-');
    d = await startDaemon(['--disable-cpumask-locks'], dir);   // a second daemon below shares CPU 0
  });
  afterEach((c) => { if (c.task.result?.state === 'fail') console.error(`vhostd log:\n${d?.stderr()}`); });
  afterAll(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const blk = async (ctrlr: string, bdev: string) => ok(d.sock, 'vhost_create_blk_controller', { ctrlr, dev_name: bdev });
  // --yield: the client shares a loaded machine with vhostd's reactor
  const load = (ctrlr: string, args: string[]) => runVhostLoad(vl.bin!, ['-s', join(dir, ctrlr), '--yield', ...args]);

  it('creates an lvstore on a malloc bdev; lvols have UUID names and lvs/lvol aliases; thick and thin allocation', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 64 * 2048, block_size: 512 });
    const lvs = await ok(d.sock, 'bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'lvsm', cluster_sz: MiB });
    expect(lvs).toMatch(/^[0-9a-f-]{36}$/);
    const [st] = await ok(d.sock, 'bdev_lvol_get_lvstores', { lvs_name: 'lvsm' });
    expect(st).toMatchObject({ uuid: lvs, name: 'lvsm', base_bdev: 'M0', block_size: 512, cluster_size: MiB });
    const total = st.total_data_clusters;
    expect(st.free_clusters).toBe(total);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'M0' }))[0].claimed).toBe(true);
    const thick = await ok(d.sock, 'bdev_lvol_create', { lvs_name: 'lvsm', lvol_name: 'thick', size_in_mib: 8 });
    const thin = await ok(d.sock, 'bdev_lvol_create', { uuid: lvs, lvol_name: 'thin', size_in_mib: 16, thin_provision: true });
    const [b] = await ok(d.sock, 'bdev_get_bdevs', { name: 'lvsm/thin' });
    expect(b).toMatchObject({ name: thin, aliases: ['lvsm/thin'], product_name: 'Logical Volume', num_blocks: 16 * 2048, block_size: 512,
      driver_specific: { lvol: { lvol_store_uuid: lvs, base_bdev: 'M0', thin_provision: true, num_allocated_clusters: 0, snapshot: false, clone: false } } });
    expect((await ok(d.sock, 'bdev_lvol_get_lvstores', { uuid: lvs }))[0].free_clusters).toBe(total - 8);
    const lvols = await ok(d.sock, 'bdev_lvol_get_lvols', { lvs_name: 'lvsm' });
    expect(lvols.map((l: any) => [l.alias, l.uuid, l.is_thin_provisioned])).toEqual([['lvsm/thick', thick, false], ['lvsm/thin', thin, true]]);
    // errors say what to do
    const e1 = await rpc(d.sock, 'bdev_lvol_create', { lvs_name: 'lvsm', lvol_name: 'thin', size_in_mib: 1 });
    expect(e1.error).toMatchObject({ code: -17, message: /already exists/ });
    const e2 = await rpc(d.sock, 'bdev_lvol_create', { lvs_name: 'lvsm', lvol_name: 'big', size_in_mib: 4096 });
    expect(e2.error?.message).toMatch(/free clusters.*thin_provision/);
    const e3 = await rpc(d.sock, 'bdev_lvol_create', { lvs_name: 'nope', lvol_name: 'x', size_in_mib: 1 });
    expect(e3.error).toMatchObject({ code: -19, message: /lvstore 'nope' does not exist/ });
    expect((await rpc(d.sock, 'bdev_lvol_clone', { snapshot_name: 'lvsm/thin', clone_name: 'c' })).error?.message).toMatch(/only snapshots can be cloned/);
    expect(await ok(d.sock, 'bdev_lvol_set_read_only', { name: 'lvsm/thin' })).toBe(true);
    const c = await ok(d.sock, 'bdev_lvol_clone', { snapshot_name: 'lvsm/thin', clone_name: 'c' });   // a read-only lvol clones like a snapshot
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: c }))[0].driver_specific.lvol).toMatchObject({ clone: true, base_snapshot: 'thin' });
    expect((await rpc(d.sock, 'bdev_malloc_delete', { name: 'M0' })).error?.code).toBe(-16);
    expect(await ok(d.sock, 'bdev_lvol_delete_lvstore', { lvs_name: 'lvsm' })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'M0' }))[0].claimed).toBe(false);
    expect((await rpc(d.sock, 'bdev_get_bdevs', { name: thin })).error?.code).toBe(-19);
    expect(await ok(d.sock, 'bdev_malloc_delete', { name: 'M0' })).toBe(true);
  });

  it.skipIf(!vl.bin)('thin lvol on a file bdev under vhost-load --verify; snapshot, clone, divergence, inflate, resize, delete rules', async () => {
    const f = join(dir, 'base.img');
    writeFileSync(f, ''); truncateSync(f, 96 * MiB);
    await ok(d.sock, 'bdev_uring_create', { name: 'F0', filename: f, block_size: 512 });
    await ok(d.sock, 'bdev_lvol_create_lvstore', { bdev_name: 'F0', lvs_name: 'lvs0', cluster_sz: MiB });
    const vol = await ok(d.sock, 'bdev_lvol_create', { lvs_name: 'lvs0', lvol_name: 'vol', size_in_mib: 24, thin_provision: true });
    await blk('v0', 'lvs0/vol');
    // random 4k writes into unallocated clusters: copy-on-write of zeroes, map updates, read-back
    const w = await load('v0', ['--verify', '--rw', 'randwrite', '--bs', '4k', '--qd', '16', '--time', '0.5', '--seed', '11', '--size', '8m']);
    expect(w.code, w.stderr).toBe(0);
    expect(w.json.verify.mismatches).toBe(0);
    const allocated = (await ok(d.sock, 'bdev_get_bdevs', { name: vol }))[0].driver_specific.lvol.num_allocated_clusters;
    expect(allocated).toBe(8);
    // unwritten space past the span reads zeroes (thin): verify-only of the span still passes after re-attach
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'v0' });
    const snap = await ok(d.sock, 'bdev_lvol_snapshot', { lvol_name: 'lvs0/vol', snapshot_name: 'snap' });
    const [sb] = await ok(d.sock, 'bdev_get_bdevs', { name: 'lvs0/snap' });
    expect(sb).toMatchObject({ name: snap, driver_specific: { lvol: { snapshot: true, clones: ['vol'] } } });
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: vol }))[0].driver_specific.lvol).toMatchObject({ clone: true, base_snapshot: 'snap', num_allocated_clusters: 0 });
    const clone = await ok(d.sock, 'bdev_lvol_clone', { snapshot_name: 'lvs0/snap', clone_name: 'cl' });
    expect((await rpc(d.sock, 'bdev_lvol_clone', { snapshot_name: 'lvs0/vol', clone_name: 'x' })).error?.message).toMatch(/only snapshots can be cloned/);
    // the clone reads the snapshot's data
    await blk('c0', 'lvs0/cl');
    const r = await load('c0', ['--verify-only', '--seed', '11', '--bs', '64k', '--qd', '8', '--size', '8m']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.verify.mismatches).toBe(0);
    // ... and diverges after writes: seed 12 over the first 4 MiB of the clone
    const w2 = await load('c0', ['--verify', '--rw', 'write', '--bs', '64k', '--qd', '8', '--time', '0.3', '--seed', '12', '--size', '4m', '--no-readback']);
    expect(w2.code, w2.stderr).toBe(0);
    const r2 = await load('c0', ['--verify-only', '--seed', '12', '--bs', '64k', '--qd', '8', '--size', '4m']);
    expect(r2.json.verify.mismatches).toBe(0);
    // the snapshot still holds seed 11 (through the original lvol, which reads through it)
    await blk('v1', 'lvs0/vol');
    const r3 = await load('v1', ['--verify-only', '--seed', '11', '--bs', '64k', '--qd', '8', '--size', '8m']);
    expect(r3.code, r3.stderr).toBe(0);
    expect(r3.json.verify.mismatches).toBe(0);
    // the snapshot has two clones: it cannot be deleted; a clone in use cannot be deleted
    expect((await rpc(d.sock, 'bdev_lvol_delete', { name: 'lvs0/snap' })).error).toMatchObject({ code: -16, message: /has 2 clones/ });
    expect((await rpc(d.sock, 'bdev_lvol_delete', { name: 'lvs0/cl' })).error).toMatchObject({ code: -16, message: /in use/ });
    // inflate the lvol while attached: it owns every cluster afterwards and still reads seed 11
    expect(await ok(d.sock, 'bdev_lvol_inflate', { name: 'lvs0/vol' })).toBe(true);
    const [vi] = await ok(d.sock, 'bdev_get_bdevs', { name: vol });
    expect(vi.driver_specific.lvol).toMatchObject({ clone: false, thin_provision: false, num_allocated_clusters: 24 });
    const r4 = await load('v1', ['--verify-only', '--seed', '11', '--bs', '64k', '--qd', '8', '--size', '8m']);
    expect(r4.json.verify.mismatches).toBe(0);
    // grow while attached (the guest sees the new size), shrink refused while attached
    expect(await ok(d.sock, 'bdev_lvol_resize', { name: 'lvs0/vol', size_in_mib: 32 })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: vol }))[0].num_blocks).toBe(32 * 2048);
    expect((await rpc(d.sock, 'bdev_lvol_resize', { name: 'lvs0/vol', size_in_mib: 8 })).error?.message).toMatch(/can grow, but not shrink/);
    const w5 = await load('v1', ['--verify', '--rw', 'randwrite', '--bs', '4k', '--qd', '8', '--time', '0.3', '--seed', '13', '--offset', '24m', '--size', '4m']);
    expect(w5.code, w5.stderr).toBe(0);
    expect(w5.json.verify.mismatches).toBe(0);
    // grow past the capacity of its cluster map while attached: the map moves (I/O held meanwhile)
    expect(await ok(d.sock, 'bdev_lvol_resize', { name: 'lvs0/vol', size_in_mib: 1100 })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: vol }))[0].num_blocks).toBe(1100 * 2048);
    const w6 = await load('v1', ['--verify', '--rw', 'randwrite', '--bs', '4k', '--qd', '8', '--time', '0.3', '--seed', '14', '--offset', '1090m', '--size', '2m']);
    expect(w6.code, w6.stderr).toBe(0);
    const r8 = await load('v1', ['--verify-only', '--seed', '11', '--bs', '64k', '--qd', '8', '--size', '8m']);
    expect(r8.json.verify.mismatches).toBe(0);
    // the snapshot has one clone left (vol was inflated): deleting it hands its clusters to the clone
    // (as SPDK), here while the clone is attached
    expect(await ok(d.sock, 'bdev_lvol_delete', { name: 'lvs0/snap' })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: clone }))[0].driver_specific.lvol).toMatchObject({ clone: false, num_allocated_clusters: 8 });
    const r6 = await load('c0', ['--verify-only', '--seed', '12', '--bs', '64k', '--qd', '8', '--size', '4m']);
    expect(r6.code, r6.stderr).toBe(0);
    const r7 = await load('c0', ['--verify-only', '--seed', '11', '--bs', '64k', '--qd', '8', '--offset', '4m', '--size', '4m']);
    expect(r7.code, r7.stderr).toBe(0);
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'c0' });
    expect(await ok(d.sock, 'bdev_lvol_delete', { name: clone })).toBe(true);
    expect((await ok(d.sock, 'bdev_lvol_get_lvols', { lvs_name: 'lvs0' })).map((l: any) => l.name)).toEqual(['vol']);
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'v1' });
  }, 90_000);

  it.skipIf(!vl.bin)('two reactors allocate clusters of one lvol at once (shared allocator, map and map-block locks)', async () => {
    const d2 = await startDaemon(['-m', '0x3', '--disable-cpumask-locks'], mkdtempSync(join(dir, 'mq-')));
    try {
      await ok(d2.sock, 'bdev_malloc_create', { name: 'M2', num_blocks: 48 * 2048, block_size: 512 });
      await ok(d2.sock, 'bdev_lvol_create_lvstore', { bdev_name: 'M2', lvs_name: 'lvs2', cluster_sz: 256 * 1024 });
      await ok(d2.sock, 'bdev_lvol_create', { lvs_name: 'lvs2', lvol_name: 'v', size_in_mib: 16, thin_provision: true });
      await ok(d2.sock, 'vhost_create_blk_controller', { ctrlr: 'q2', dev_name: 'lvs2/v', cpumask: '0x3' });
      // 2 queues (one per reactor) own the two halves of a 5 MiB span: the middle cluster is
      // first-written from both reactors, and every map entry sits in the same few map blocks
      const args = ['-s', join(d2.dir, 'q2'), '--yield', '--queues', '2', '--bs', '4k', '--qd', '16', '--size', '5m', '--seed', '31'];
      const st = join(d2.dir, 'state');
      const w = await runVhostLoad(vl.bin!, [...args, '--verify', '--rw', 'randwrite', '--time', '0.5', '--state', st]);
      expect(w.code, w.stderr).toBe(0);
      expect(w.json.verify.mismatches).toBe(0);
      const [b] = await ok(d2.sock, 'bdev_get_bdevs', { name: 'lvs2/v' });
      expect(b.driver_specific.lvol.num_allocated_clusters).toBe(20);
      const [s] = await ok(d2.sock, 'bdev_lvol_get_lvstores', { lvs_name: 'lvs2' });
      expect(s.free_clusters).toBe(s.total_data_clusters - 20);
      const per = await ok(d2.sock, 'bdev_get_iostat', { name: 'lvs2/v', per_channel: true });
      expect(per.channels.filter((c: any) => c.num_write_ops > 0).length).toBe(2);
      // a snapshot while both reactors write: I/O is held around the switch; the lvol stays exact
      // (read-back against the generation map) and a clone of the snapshot holds valid data only
      const run = runVhostLoad(vl.bin!, [...args, '--verify', '--rw', 'randwrite', '--time', '2', '--state', st]);
      await new Promise((r) => setTimeout(r, 1000));
      const snap = await ok(d2.sock, 'bdev_lvol_snapshot', { lvol_name: 'lvs2/v', snapshot_name: 'live' });
      const w2 = await run;
      expect(w2.code, w2.stderr).toBe(0);
      expect(w2.json.verify.mismatches).toBe(0);
      await ok(d2.sock, 'bdev_lvol_clone', { snapshot_name: snap, clone_name: 'lc' });
      await ok(d2.sock, 'vhost_create_blk_controller', { ctrlr: 'lc', dev_name: 'lvs2/lc' });
      const r = await runVhostLoad(vl.bin!, ['-s', join(d2.dir, 'lc'), '--yield', '--verify-only', '--bs', '64k', '--qd', '8', '--size', '5m', '--seed', '31']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.verify.mismatches).toBe(0);
      // 96 KiB I/Os in 3 descriptors each cross cluster boundaries: split pieces, copy-on-write overlays from scattered buffers
      const x = await runVhostLoad(vl.bin!, ['-s', join(d2.dir, 'q2'), '--yield', '--bs', '96k', '--segs', '3', '--qd', '8',
        '--offset', '6m', '--size', '3m', '--seed', '32', '--verify', '--rw', 'randwrite', '--time', '0.3']);
      expect(x.code, x.stderr).toBe(0);
      expect(x.json.verify.mismatches).toBe(0);
    } finally { await d2.stop(); }
  }, 60_000);
});
