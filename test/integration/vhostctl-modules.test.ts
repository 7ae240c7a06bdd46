// vhostctl's bdev_lvol_*, bdev_nvme_* and bdev_rbd_* subcommands against the real daemon:
// an lvstore on a malloc bdev driven only through vhostctl, an NVMe controller of a second
// vhostd attached over vfio-user, and the rbd error paths (no cluster needed). With
// SPDK_RPC_PY set, the same command lines given to SPDK's rpc.py and to vhostctl must send
// the same requests.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { startDaemon, Daemon, ok, run, tmpDir, VHOSTCTL } from './daemon.js';

describe('vhostctl: logical volumes and rbd against vhostd', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await d?.stop(); });
  const ctl = (...args: string[]) => run(VHOSTCTL, ['-s', d.sock, ...args]);
  const out = async (...args: string[]) => {
    const r = await ctl(...args);
    expect(r.code, `vhostctl ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout.trim();
  };
  const fails = async (code: number, re: RegExp, ...args: string[]) => {
    const r = await ctl(...args);
    expect(r.code, `vhostctl ${args.join(' ')}: ${r.stdout}`).toBe(code);
    expect(r.stderr).toMatch(re);
  };

  it('lvstore, thin lvol, snapshot, clone, resize, inflate, decouple, read-only, rename, delete', async () => {
    await out('bdev_malloc_create', '-b', 'M0', '64', '512');
    const lvs = await out('bdev_lvol_create_lvstore', 'M0', 'lvs0', '-c', '1048576', '--clear-method', 'none');
    expect(JSON.parse(await out('bdev_lvol_get_lvstores', '-l', 'lvs0'))).toEqual([
      expect.objectContaining({ uuid: lvs, name: 'lvs0', base_bdev: 'M0', cluster_size: 1048576 })]);
    expect(JSON.parse(await out('bdev_lvol_get_lvstores', '-u', lvs))[0].name).toBe('lvs0');
    await fails(2, /exactly one|give the lvol store with -u UUID or -l NAME/, 'bdev_lvol_create', 'v', '4');
    await fails(2, /give -u or -l, not both/, 'bdev_lvol_create', '-u', lvs, '-l', 'lvs0', 'v', '4');
    await fails(2, /size_in_mib must be an integer, got '4.5'/, 'bdev_lvol_create', '-l', 'lvs0', 'v', '4.5');

    const vol = await out('bdev_lvol_create', '-l', 'lvs0', '-t', 'vol', '8');
    const [b] = await ok(d.sock, 'bdev_get_bdevs', { name: 'lvs0/vol' });
    expect([b.name, b.aliases, b.num_blocks, b.driver_specific.lvol.thin_provision]).toEqual([vol, ['lvs0/vol'], 8 * 2048, true]);
    const thick = await out('bdev_lvol_create', '-u', lvs, 'thick', '2');
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: thick }))[0].driver_specific.lvol.thin_provision).toBe(false);

    const snap = await out('bdev_lvol_snapshot', 'lvs0/vol', 'snap');
    const clone = await out('bdev_lvol_clone', 'lvs0/snap', 'cl');
    const lvols = () => out('bdev_lvol_get_lvols', '-l', 'lvs0').then((s) => JSON.parse(s)
      .map((l: any) => [l.name, l.uuid, l.is_snapshot, l.is_clone]));
    expect(await lvols()).toEqual([['vol', vol, false, true], ['thick', thick, false, false], ['snap', snap, true, false], ['cl', clone, false, true]]);
    expect(JSON.parse(await out('bdev_lvol_get_lvols', '-u', lvs))).toHaveLength(4);

    expect(await out('bdev_lvol_resize', 'lvs0/vol', '12')).toBe('true');
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: vol }))[0].num_blocks).toBe(12 * 2048);
    await out('bdev_lvol_inflate', 'lvs0/cl');
    await out('bdev_lvol_decouple_parent', 'lvs0/vol');
    expect(await lvols()).toEqual([['vol', vol, false, false], ['thick', thick, false, false], ['snap', snap, true, false], ['cl', clone, false, false]]);
    // only a read-only lvol can be cloned
    await fails(1, /bdev_lvol_clone failed: 'thick' is not a snapshot/, 'bdev_lvol_clone', 'lvs0/thick', 'tc');
    await out('bdev_lvol_set_read_only', 'lvs0/thick');
    await out('bdev_lvol_clone', 'lvs0/thick', 'tc');
    await out('bdev_lvol_delete', 'lvs0/tc');
    await out('bdev_lvol_rename', 'lvs0/cl', 'cl2');
    await out('bdev_lvol_rename_lvstore', 'lvs0', 'lvs1');
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: clone }))[0].aliases).toEqual(['lvs1/cl2']);

    await fails(1, /bdev_lvol_delete failed: .*ghost/, 'bdev_lvol_delete', 'lvs1/ghost');
    await out('bdev_lvol_delete', 'lvs1/snap');
    await fails(1, /bdev_lvol_get_lvols failed: .*lvs0/, 'bdev_lvol_get_lvols', '-l', 'lvs0');   // renamed: the daemon says so
    expect(JSON.parse(await out('bdev_lvol_get_lvols', '-l', 'lvs1')).map((l: any) => l.name)).toEqual(['vol', 'thick', 'cl2']);
    await fails(2, /give the lvol store with -u UUID or -l NAME/, 'bdev_lvol_delete_lvstore');
    await out('bdev_lvol_delete_lvstore', '-u', lvs);
    expect(JSON.parse(await out('bdev_lvol_get_lvstores'))).toEqual([]);
    expect(await ok(d.sock, 'bdev_get_bdevs').then((l: any[]) => l.map((x) => x.name))).toEqual(['M0']);
    await out('bdev_malloc_delete', 'M0');
  }, 60_000);

  const librados = ['/usr/lib/x86_64-linux-gnu/librados.so.2', '/usr/lib64/librados.so.2', '/usr/lib/librados.so.2'].some(existsSync);
  it.skipIf(!librados)('rbd: an unreachable cluster, a missing cluster or bdev, bad key=value options', async () => {
    const t0 = Date.now();
    await fails(1, /bdev_rbd_register_cluster failed: connecting to Ceph cluster 'c0' failed: .*check mon_host/, 'bdev_rbd_register_cluster', 'c0',
      '--config-param', 'mon_host=127.0.0.1:1', '--config-param', 'client_mount_timeout=2', '--user', 'admin');
    expect(Date.now() - t0).toBeLessThan(20_000);
    await fails(2, /--config-param 'mon_host' is not in key=value form/, 'bdev_rbd_register_cluster', 'c0', '--config-param', 'mon_host');
    await fails(1, /core_mask is not supported by vhostd yet/, 'bdev_rbd_register_cluster', 'c0', '--core-mask', '0x1');
    expect(JSON.parse(await out('bdev_rbd_get_clusters_info'))).toEqual([]);
    await fails(1, /cluster 'c0' is not registered/, 'bdev_rbd_get_clusters_info', '-b', 'c0');
    await fails(1, /bdev_rbd_create failed: cluster 'c0' is not registered: register it first/, 'bdev_rbd_create', '-c', 'c0', 'rbd', 'img', '512');
    const r = await ctl('bdev_rbd_create', '--config', 'mon_host', 'rbd', 'img', '512');
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/--config 'mon_host' is not in key=value form/)]);
    await fails(1, /bdev 'ghost' does not exist/, 'bdev_rbd_resize', 'ghost', '16');
    await fails(2, /new_size must be an integer, got '1.5'/, 'bdev_rbd_resize', 'ghost', '1.5');
    await fails(1, /bdev 'ghost' does not exist/, 'bdev_rbd_delete', 'ghost');
    await fails(1, /bdev_rbd_unregister_cluster failed/, 'bdev_rbd_unregister_cluster', 'c0');
  }, 40_000);
});

describe('vhostctl: NVMe bdev over vfio-user (a second vhostd as the controller)', () => {
  const NQN = 'nqn.2019-07.io.spdk:vhostctl';
  let t: Daemon, h: Daemon, dir: string;
  beforeAll(async () => {
    t = await startDaemon();
    dir = join(t.dir, 'vfu');
    mkdirSync(dir);
    await ok(t.sock, 'bdev_malloc_create', { name: 'T0', num_blocks: 16384, block_size: 512 });
    await ok(t.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER' });
    await ok(t.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-CTL', model_number: 'vhostctl target' });
    await ok(t.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'T0', nsid: 1 } });
    await ok(t.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
    h = await startDaemon();
  }, 30_000);
  afterAll(async () => { await h?.stop(); await t?.stop(); });
  const ctl = (...args: string[]) => run(VHOSTCTL, ['-s', h.sock, ...args]);

  it('set_options, attach, get_controllers, reset, detach; refused options say why', async () => {
    expect(await ctl('bdev_nvme_set_options', '-t', '0', '-a', 'none')).toMatchObject({ code: 0, stdout: 'true\n' });
    let r = await ctl('bdev_nvme_set_options', '-a', 'abort');
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/action_on_timeout=abort is not yet supported: use reset/)]);
    r = await ctl('bdev_nvme_attach_controller', '-b', 'Nvme0', '-t', 'vfiouser', '-a', dir, '-l', '5');
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/ctrlr_loss_timeout_sec=5 is not supported/)]);
    r = await ctl('bdev_nvme_attach_controller', '-b', 'Nvme0', '-t', 'vfiouser');
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/missing -a\/--traddr/)]);
    r = await ctl('bdev_nvme_attach_controller', '-b', 'Nvme0', '-t', 'vfiouser', '-a', dir, '--num-io-queues', '1');
    expect(r, r.stderr).toMatchObject({ code: 0, stdout: 'Nvme0n1\n' });   // rpc.py's print_array
    const [b] = await ok(h.sock, 'bdev_get_bdevs', { name: 'Nvme0n1' });
    expect([b.num_blocks, b.driver_specific.nvme[0].ctrlr_data.model_number]).toEqual([16384, 'vhostctl target']);
    r = await ctl('bdev_nvme_get_controllers', '-n', 'Nvme0');
    expect(JSON.parse(r.stdout)).toEqual([{ name: 'Nvme0', ctrlrs: [expect.objectContaining({ trid: { trtype: 'vfiouser', traddr: dir } })] }]);
    expect(JSON.parse((await ctl('bdev_nvme_get_controllers')).stdout)).toHaveLength(1);
    r = await ctl('bdev_nvme_get_controllers', '-n', 'ghost');
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/NVMe controller 'ghost' does not exist/)]);
    expect((await ctl('bdev_nvme_reset_controller', 'Nvme0')).stdout).toBe('true\n');
    expect(JSON.parse((await ctl('bdev_nvme_get_controllers')).stdout)[0].ctrlrs[0].state).toBe('enabled');
    r = await ctl('bdev_nvme_detach_controller', 'Nvme0', '-a', '/nowhere');
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/controller 'Nvme0' has no path \/nowhere/)]);
    expect((await ctl('bdev_nvme_detach_controller', 'Nvme0', '-t', 'vfiouser', '-a', dir)).stdout).toBe('true\n');
    expect(await ok(h.sock, 'bdev_get_bdevs')).toEqual([]);
    expect(JSON.parse((await ctl('bdev_nvme_get_controllers')).stdout)).toEqual([]);
  }, 40_000);
});

// The same command lines through SPDK's rpc.py (one `rpc.py --server` process) and vhostctl,
// each against a socket that records the request and answers it: the requests must be equal.
const RPC_PY = process.env.SPDK_RPC_PY;
const skipPy = !RPC_PY ? 'SPDK_RPC_PY is not set' : !existsSync(RPC_PY) ? `SPDK_RPC_PY=${RPC_PY} does not exist` : '';
describe.skipIf(!!skipPy)('vhostctl sends what SPDK rpc.py sends', () => {
  const LINES = [
    'bdev_lvol_create_lvstore M0 lvs0', 'bdev_lvol_create_lvstore -c 1048576 --clear-method none -m 2 -s 4096 M0 lvs0',
    'bdev_lvol_create_lvstore M0 lvs0 -c 0', 'bdev_lvol_delete_lvstore -l lvs0', 'bdev_lvol_delete_lvstore -u U1',
    'bdev_lvol_rename_lvstore a b', 'bdev_lvol_get_lvstores', 'bdev_lvol_get_lvstores -u U1', 'bdev_lvol_get_lvstores --lvs-name x',
    'bdev_lvol_create -l lvs0 v 8', 'bdev_lvol_create -u U1 -t -c write_zeroes v 8', 'bdev_lvol_snapshot lvs0/v s',
    'bdev_lvol_clone lvs0/s c', 'bdev_lvol_resize lvs0/v 16', 'bdev_lvol_inflate lvs0/c', 'bdev_lvol_decouple_parent lvs0/c',
    'bdev_lvol_rename lvs0/c c2', 'bdev_lvol_set_read_only lvs0/c', 'bdev_lvol_delete lvs0/c', 'bdev_lvol_get_lvols',
    'bdev_lvol_get_lvols -u U1', 'bdev_lvol_get_lvols -l lvs0',
    'bdev_nvme_set_options', 'bdev_nvme_set_options -a reset -t 5000 -d -f --dhchap-digests sha256,sha384 --disable-rdma-umr-per-io -l -1',
    'bdev_nvme_attach_controller -b N0 -t vfiouser -a /x', 'bdev_nvme_attach_controller -b N0 -t PCIe -a 0000:01:00.0 -p 2 -n nqn.x -x failover --num-io-queues 2 -l 0 -m 4 -r -U --fabrics-timeout 9',
    'bdev_nvme_get_controllers', 'bdev_nvme_get_controllers -n N0', 'bdev_nvme_detach_controller N0', 'bdev_nvme_detach_controller N0 -t vfiouser -a /x -n nqn.y',
    'bdev_nvme_reset_controller N0', 'bdev_nvme_reset_controller N0 -c 3',
    'bdev_rbd_register_cluster c0', 'bdev_rbd_register_cluster c0 --user admin --config-param mon_host=1.2.3.4 --config-param a=b=c --config-file /f --key-file /k --core-mask 0x3',
    'bdev_rbd_unregister_cluster c0', 'bdev_rbd_get_clusters_info', 'bdev_rbd_get_clusters_info -b c0',
    'bdev_rbd_create rbd img 512 -c c0', 'bdev_rbd_create -b R0 --user u --config mon_host=h -u 11111111-2222-3333-4444-555555555555 rbd img 4096',
    'bdev_rbd_delete R0', 'bdev_rbd_resize R0 100',
  ];
  let dir = '';
  const got = new Map<string, unknown[]>();
  const servers: net.Server[] = [];
  /** A socket that records each request and answers it (a list for attach, which rpc.py prints as an array). */
  const recorder = (path: string) => new Promise<void>((resolve) => {
    got.set(path, []);
    const s = net.createServer((c) => {
      let buf = '';
      c.on('data', (d) => {
        buf += d;
        try {
          const req = JSON.parse(buf);
          buf = '';
          got.get(path)!.push({ method: req.method, params: req.params ?? null });
          c.write(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: req.method === 'bdev_nvme_attach_controller' ? ['N0n1'] : true }));
        } catch { /* incomplete: wait for more */ }
      });
    });
    servers.push(s);
    s.listen(path, resolve);
  });
  afterAll(() => { for (const s of servers) s.close(); });

  it('for every command line of the table', async () => {
    dir = tmpDir();
    await Promise.all(LINES.flatMap((_, i) => [recorder(join(dir, `py${i}`)), recorder(join(dir, `ctl${i}`))]));
    const input = LINES.map((l, i) => `-s ${join(dir, `py${i}`)} ${l}\n`).join('');
    const py = await new Promise<string>((resolve, reject) => {
      const p = execFile('python3', [RPC_PY!, '--server'], { timeout: 60_000 }, (e, stdout, stderr) =>
        (e ? reject(new Error(`rpc.py --server: ${stderr}`)) : resolve(stdout)));
      p.stdin!.end(input);
    });
    expect(py.match(/\*\*STATUS=0/g)).toHaveLength(LINES.length);
    for (let i = 0; i < LINES.length; i += 4) {
      await Promise.all(LINES.slice(i, i + 4).map(async (l, j) => {
        const r = await run(VHOSTCTL, ['-s', join(dir, `ctl${i + j}`), ...l.split(' ')]);
        expect(r.code, `vhostctl ${l}: ${r.stderr}`).toBe(0);
      }));
    }
    LINES.forEach((l, i) => expect(got.get(join(dir, `ctl${i}`)), l).toEqual(got.get(join(dir, `py${i}`))));
  }, 90_000);
});
