// rbd bdevs against a real one-node Ceph cluster (test/ceph/start-cluster.sh: one monitor,
// one memstore OSD) and the real daemon: SPDK's bdev_rbd_* methods and error codes,
// vhost-load --verify through a vhost-user-blk controller, the data read back from the
// cluster with `rbd export`, WRITE_ZEROES and DISCARD as seen in the image, resize,
// save_config/restart, delete, and the cluster dying under I/O.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { startDaemon, Daemon, tmpDir } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';
import { cephUnavailable, okSlow as ok, rbdCli, rpcSlow as rpc, startCeph, stopCeph } from '../lib/ceph.js';

const MiB = 1 << 20;
const why = cephUnavailable() ?? vhostLoad().why;

describe.skipIf(why !== undefined)('rbd bdevs on a one-node Ceph cluster', () => {
  let d: Daemon;
  let conf: string;
  let work: string;
  const cephDir = '/tmp/vhostd-ceph-it';
  const vl = vhostLoad().bin!;

  beforeAll(async () => {
    conf = await startCeph(cephDir);
    work = mkdtempSync('/var/tmp/vhostd-rbd-it-');
    d = await startDaemon(['-m', '0x1']);
  });
  afterAll(async () => {
    await d?.stop();
    stopCeph(cephDir);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('registers a cluster and serves an existing image; refuses bad requests with -errno and what to do', async () => {
    expect(await ok(d.sock, 'bdev_rbd_register_cluster', { name: 'c1', config_file: conf })).toBe('c1');
    expect(await ok(d.sock, 'bdev_rbd_get_clusters_info')).toEqual([{ cluster_name: 'c1', config_file: conf }]);
    expect(await ok(d.sock, 'bdev_rbd_get_clusters_info', { name: 'c1' })).toEqual({ cluster_name: 'c1', config_file: conf });
    await rbdCli(conf, ['create', '--size', '32', 'rbd/img1']);
    expect(await ok(d.sock, 'bdev_rbd_create', { name: 'R0', pool_name: 'rbd', rbd_name: 'img1', block_size: 512, cluster_name: 'c1' }))
      .toBe('R0');
    const [b] = await ok(d.sock, 'bdev_get_bdevs', { name: 'R0' });
    expect(b).toMatchObject({ product_name: 'Ceph Rbd Disk', block_size: 512, num_blocks: 32 * MiB / 512,
      supported_io_types: { read: true, write: true, flush: true, unmap: true, write_zeroes: true },
      driver_specific: { rbd: { pool_name: 'rbd', rbd_name: 'img1', config_file: conf } } });
    // a second bdev without a name gets SPDK's Ceph<N>; read_only offers no writes
    const name = await ok(d.sock, 'bdev_rbd_create', { pool_name: 'rbd', rbd_name: 'img1', block_size: 4096, cluster_name: 'c1', read_only: true });
    expect(name).toMatch(/^Ceph\d+$/);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name }))[0].supported_io_types).toMatchObject({ read: true, write: false, unmap: false });
    expect(await ok(d.sock, 'bdev_rbd_delete', { name })).toBe(true);

    const cases: Array<[string, Record<string, unknown>, number, RegExp]> = [
      ['bdev_rbd_register_cluster', { name: 'c1', config_file: conf }, -17, /already registered/],
      ['bdev_rbd_register_cluster', { name: 'cx', config_file: conf, core_mask: '0x1' }, -22, /core_mask is not supported by vhostd yet/],
      ['bdev_rbd_register_cluster', { name: 'cx', config_file: '/nonexistent/ceph.conf' }, -2, /ceph\.conf.*give config_file/],
      ['bdev_rbd_create', { name: 'X', pool_name: 'rbd', rbd_name: 'nope', block_size: 512, cluster_name: 'c1' }, -2,
        /RBD image 'rbd\/nope' cannot be opened: ENOENT.*rbd create --size SIZE_MiB rbd\/nope/],
      ['bdev_rbd_create', { name: 'X', pool_name: 'nopool', rbd_name: 'img1', block_size: 512, cluster_name: 'c1' }, -2,
        /pool 'nopool' cannot be opened.*ceph osd pool create nopool/],
      ['bdev_rbd_create', { name: 'X', pool_name: 'rbd', rbd_name: 'img1', block_size: 512, cluster_name: 'nocluster' }, -2,
        /not registered: register it first/],
      ['bdev_rbd_create', { name: 'X', pool_name: 'rbd', rbd_name: 'img1', block_size: 1000, cluster_name: 'c1' }, -22, /power of two/],
      ['bdev_rbd_create', { name: 'R0', pool_name: 'rbd', rbd_name: 'img1', block_size: 512, cluster_name: 'c1' }, -17, /already exists/],
      ['bdev_rbd_create', { name: 'X', pool_name: 'rbd', rbd_name: 'img1', block_size: 512, config: { mon_host: 1 } }, -32602, /must be a string/],
      ['bdev_rbd_unregister_cluster', { name: 'c1' }, -16, /used by 1 rbd bdev.*bdev_rbd_delete/],
      ['bdev_rbd_unregister_cluster', { name: 'nope' }, -2, /not registered/],
      ['bdev_rbd_get_clusters_info', { name: 'nope' }, -2, /not registered/],
      ['bdev_rbd_resize', { name: 'nope', new_size: 64 }, -19, /does not exist/],
    ];
    for (const [m, p, code, msg] of cases) {
      const r = await rpc(d.sock, m, p);
      expect(r.error, `${m} ${JSON.stringify(p)}`).toMatchObject({ code, message: expect.stringMatching(msg) });
    }
  }, 120_000);

  it('vhost-blk on rbd: vhost-load verifies; the cluster holds the data (rbd export); WRITE_ZEROES and DISCARD reach the image', async () => {
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vr', dev_name: 'R0' });
    const sock = join(d.dir, 'vr'), state = join(work, 'state');
    const args = ['-s', sock, '--irq', '--io-timeout', '60'];
    const r = await runVhostLoad(vl, [...args, '-w', 'randrw', '-q', '16', '-T', '3', '--size', '8M', '--segs', '3', '--verify',
      '--state', state], 180_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.errors).toBe(0);
    expect(r.json.verify).toMatchObject({ mismatches: 0 });
    expect(r.json.verify.sectors_checked).toBeGreaterThan(0);
    // zeros over [9M, 10M) (sub-object, so librbd writes zeros), discard of the whole object [12M, 16M)
    const fill = await runVhostLoad(vl, [...args, '-w', 'write', '-b', '64k', '-q', '4', '-T', '1', '--offset', '8M', '--size', '8M'], 120_000);
    expect(fill.code, fill.stderr).toBe(0);
    const wz = await runVhostLoad(vl, [...args, '-w', 'writezeroes', '-b', '64k', '-q', '4', '-T', '1', '--offset', '9M', '--size', '1M'], 120_000);
    expect(wz.code, wz.stderr).toBe(0);
    const trim = await runVhostLoad(vl, [...args, '-w', 'trim', '-b', '1M', '-q', '1', '-T', '1', '--offset', '12M', '--size', '4M'], 120_000);
    expect(trim.code, trim.stderr).toBe(0);
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'vr' });

    const img = join(work, 'img1.raw');
    await rbdCli(conf, ['export', '--no-progress', 'rbd/img1', img]);
    const data = readFileSync(img);
    expect(data.length).toBe(32 * MiB);
    const allZero = (a: number, b: number) => data.subarray(a, b).every((x) => x === 0);
    expect(allZero(0, 8 * MiB)).toBe(false);
    expect(allZero(8 * MiB, 9 * MiB)).toBe(false);
    expect(allZero(9 * MiB, 10 * MiB)).toBe(true);
    expect(allZero(10 * MiB, 11 * MiB)).toBe(false);
    expect(allZero(12 * MiB, 16 * MiB)).toBe(true);

    // the exported bytes are exactly what vhost-load wrote: verify them through a file bdev
    await ok(d.sock, 'bdev_aio_create', { name: 'Exported', filename: img, block_size: 512 });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vx', dev_name: 'Exported' });
    const v = await runVhostLoad(vl, ['-s', join(d.dir, 'vx'), '--verify-only', '--state', state, '--size', '8M'], 120_000);
    expect(v.code, v.stderr).toBe(0);
    expect(v.json.verify).toMatchObject({ mismatches: 0, sectors_checked: 8 * MiB / 512 });
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'vx' });
    await ok(d.sock, 'bdev_aio_delete', { name: 'Exported' });

    const st = (await ok(d.sock, 'bdev_get_iostat', { name: 'R0' })).bdevs[0];
    expect(st.num_write_ops).toBeGreaterThan(100);
    expect(st.num_unmap_ops).toBeGreaterThan(0);
    expect(st.io_error ? Object.values(st.io_error).reduce((a: number, x) => a + Number(x), 0) : 0).toBe(0);
  }, 600_000);

  it('bdev_rbd_resize grows the bdev and the image; shrinking is refused', async () => {
    expect(await ok(d.sock, 'bdev_rbd_resize', { name: 'R0', new_size: 64 })).toBe(true);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'R0' }))[0].num_blocks).toBe(64 * MiB / 512);
    expect(JSON.parse(await rbdCli(conf, ['info', '--format', 'json', 'rbd/img1'])).size).toBe(64 * MiB);
    expect((await rpc(d.sock, 'bdev_rbd_resize', { name: 'R0', new_size: 16 })).error)
      .toMatchObject({ code: -22, message: expect.stringMatching(/can only grow/) });
  }, 120_000);

  it('save_config registers the cluster before bdev_rbd_create, and a restarted vhostd gets the bdev back', async () => {
    const cfg = await ok(d.sock, 'save_config');
    const calls = cfg.subsystems.find((s: { subsystem: string }) => s.subsystem === 'bdev').config as { method: string; params: any }[];
    const reg = calls.findIndex((c) => c.method === 'bdev_rbd_register_cluster');
    const cr = calls.findIndex((c) => c.method === 'bdev_rbd_create');
    expect(reg).toBeGreaterThanOrEqual(0);
    expect(reg).toBeLessThan(cr);
    expect(calls[reg].params).toEqual({ name: 'c1', config_file: conf });
    expect(calls[cr].params).toMatchObject({ name: 'R0', pool_name: 'rbd', rbd_name: 'img1', block_size: 512, cluster_name: 'c1' });
    const dir = tmpDir();
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify(cfg));
    const d2 = await startDaemon(['-c', join(dir, 'cfg.json')], dir);
    try {
      const [b] = await ok(d2.sock, 'bdev_get_bdevs', { name: 'R0' });
      expect(b).toMatchObject({ num_blocks: 64 * MiB / 512, uuid: calls[cr].params.uuid });
    } finally {
      await d2.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('an rbd bdev in use cannot be deleted; unused, it is, the image stays, and the cluster can be unregistered', async () => {
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vr', dev_name: 'R0' });
    expect((await rpc(d.sock, 'bdev_rbd_delete', { name: 'R0' })).error).toMatchObject({ code: -16, message: expect.stringMatching(/in use by/) });
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'vr' });
    expect(await ok(d.sock, 'bdev_rbd_delete', { name: 'R0' })).toBe(true);
    expect((await rpc(d.sock, 'bdev_get_bdevs', { name: 'R0' })).error?.code).toBe(-19);
    expect(await rbdCli(conf, ['ls', 'rbd'])).toMatch(/img1/);
    expect(await ok(d.sock, 'bdev_rbd_unregister_cluster', { name: 'c1' })).toBe(true);
    expect(await ok(d.sock, 'bdev_rbd_get_clusters_info')).toEqual([]);
  }, 120_000);

  // SPDK's own client (v25.05.1 scripts/rpc.py, as in spdk-rpcpy.test.ts), when SPDK_RPC_PY points at one
  it.skipIf(!process.env.SPDK_RPC_PY)('SPDK rpc.py drives the bdev_rbd_* methods', async () => {
    const py = (...args: string[]) => new Promise<string>((res, rej) => {
      execFile('python3', [process.env.SPDK_RPC_PY!, '-s', d.sock, '-t', '60', ...args], { timeout: 90_000 },
        (e, out, err) => (e ? rej(new Error(`rpc.py ${args.join(' ')}: ${err}`)) : res(out.trim())));
    });
    await rbdCli(conf, ['create', '--size', '8', 'rbd/img2']);
    expect(await py('bdev_rbd_register_cluster', 'cpy', '--config-file', conf, '--config-param', 'rbd_cache=false')).toBe('cpy');
    expect(JSON.parse(await py('bdev_rbd_get_clusters_info', '-b', 'cpy')))
      .toEqual({ cluster_name: 'cpy', config_file: conf, config_param: { rbd_cache: 'false' } });
    expect(await py('bdev_rbd_create', '-b', 'Rpy', '-c', 'cpy', 'rbd', 'img2', '4096')).toBe('Rpy');
    await py('bdev_rbd_resize', 'Rpy', '16');
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', 'Rpy'))[0]).toMatchObject({ num_blocks: 4096, product_name: 'Ceph Rbd Disk' });
    await py('bdev_rbd_delete', 'Rpy');
    await py('bdev_rbd_unregister_cluster', 'cpy');
    expect(JSON.parse(await py('bdev_rbd_get_clusters_info'))).toEqual([]);
  }, 180_000);

  // last: the cluster's data is gone once its memstore OSD stops
  it('the cluster dies under I/O: requests fail after rados_osd_op_timeout, vhostd keeps serving, and exits in bounded time', async () => {
    await ok(d.sock, 'bdev_rbd_register_cluster', { name: 'c2', config_file: conf, config_param: { rados_osd_op_timeout: '3' } });
    await rbdCli(conf, ['create', '--size', '16', 'rbd/img3']);
    await ok(d.sock, 'bdev_rbd_create', { name: 'R3', pool_name: 'rbd', rbd_name: 'img3', block_size: 4096, cluster_name: 'c2' });
    // R4 holds the exclusive lock of its own image (it wrote), so closing it needs the cluster,
    // which vhostd's default rados_osd_op_timeout (30 s) lets it wait for longer than a shutdown may take
    await ok(d.sock, 'bdev_rbd_register_cluster', { name: 'c3', config_file: conf });
    await rbdCli(conf, ['create', '--size', '16', 'rbd/img4']);
    await ok(d.sock, 'bdev_rbd_create', { name: 'R4', pool_name: 'rbd', rbd_name: 'img4', block_size: 4096, cluster_name: 'c3' });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vr4', dev_name: 'R4' });
    const w4 = await runVhostLoad(vl, ['-s', join(d.dir, 'vr4'), '--irq', '-w', 'randwrite', '-q', '4', '-T', '1'], 60_000);
    expect(w4.code, w4.stderr).toBe(0);
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'vr4' });
    await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'vr3', dev_name: 'R3' });
    const load = runVhostLoad(vl, ['-s', join(d.dir, 'vr3'), '--irq', '-w', 'randwrite', '-q', '8', '-T', '15', '--io-timeout', '30'], 120_000);
    await new Promise((r) => setTimeout(r, 4000));
    const t0 = Date.now();
    stopCeph(cephDir);
    const r = await load;
    expect(r.code).not.toBe(0);
    expect(r.stderr + JSON.stringify(r.json)).toMatch(/IOERR|status 1/);
    expect(Date.now() - t0).toBeLessThan(30_000);
    // still serving: RPC answers, the errors are counted, the bdev can be removed
    expect((await ok(d.sock, 'spdk_get_version')).version).toBeTruthy();
    const st = (await ok(d.sock, 'bdev_get_iostat', { name: 'R3' })).bdevs[0];
    expect(st.num_write_ops).toBeGreaterThan(0);
    expect(d.stderr()).toMatch(/bdev 'R3': librbd failed for a write .*ETIMEDOUT.*rados_osd_op_timeout/);
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'vr3' });
    expect(await ok(d.sock, 'bdev_rbd_delete', { name: 'R3' }, 120_000)).toBe(true);
    expect(await ok(d.sock, 'bdev_rbd_unregister_cluster', { name: 'c2' }, 60_000)).toBe(true);
    expect((await rpc(d.sock, 'bdev_rbd_unregister_cluster', { name: 'c3' })).error?.code).toBe(-16);
    expect(d.proc.exitCode).toBeNull();
    // SIGTERM with R4's image still open on the dead cluster: librbd's close cannot finish, vhostd
    // leaves after its 15 s shutdown limit instead of waiting for it (and librados' threads do not crash the exit)
    const t1 = Date.now();
    const code = await d.stop();
    expect(Date.now() - t1).toBeLessThan(40_000);
    expect(code).toBe(1);
    expect(d.stderr()).toMatch(/shutdown did not finish in 15 s/);
  }, 300_000);
});
