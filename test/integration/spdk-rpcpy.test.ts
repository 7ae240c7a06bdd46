// SPDK's own scripts/rpc.py (v25.05.1) against vhostd. Needs a checkout: SPDK_RPC_PY=/path/to/scripts/rpc.py
// (with python/spdk/ beside scripts/, as in the SPDK tree). Skipped otherwise.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, Daemon, ok } from './daemon.js';

const RPC_PY = process.env.SPDK_RPC_PY;
const reason = !RPC_PY ? 'SPDK_RPC_PY is not set (point it at an SPDK v25.05.1 scripts/rpc.py)'
  : !existsSync(RPC_PY) ? `SPDK_RPC_PY=${RPC_PY} does not exist` : '';
if (reason) console.warn(`skipping spdk-rpcpy tests: ${reason}`);

function rpcpy(sock: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('python3', [RPC_PY!, '-s', sock, ...args], { timeout: 30_000 }, (e, stdout, stderr) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr }));
  });
}

describe.skipIf(!!reason)('SPDK rpc.py against vhostd', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await d?.stop(); });

  const py = async (...args: string[]) => {
    const r = await rpcpy(d.sock, ...args);
    expect(r.code, `rpc.py ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  it('queries version, methods and reactors', async () => {
    expect(JSON.parse(await py('spdk_get_version')).version).toMatch(/^vhostd v/);
    expect(JSON.parse(await py('rpc_get_methods'))).toEqual(expect.arrayContaining(['bdev_malloc_create', 'framework_get_config']));
    expect(JSON.parse(await py('framework_get_reactors')).reactors[0].lcore).toBe(0);
  });

  it('creates bdevs, reads them back, saves, deletes and reloads the config', async () => {
    expect((await py('bdev_malloc_create', '-b', 'M0', '64', '512')).trim()).toBe('M0');
    expect((await py('bdev_null_create', 'N0', '128', '4096')).trim()).toBe('N0');
    const bdevs = JSON.parse(await py('bdev_get_bdevs'));
    expect(bdevs.map((b: { name: string; num_blocks: number }) => [b.name, b.num_blocks])).toEqual([['M0', 131072], ['N0', 32768]]);
    const stat = JSON.parse(await py('bdev_get_iostat'));
    expect(stat.bdevs.map((b: { name: string }) => b.name)).toEqual(['M0', 'N0']);
    // rpc.py builds this on the client from framework_get_subsystems + framework_get_config
    const saved = await py('save_config');
    expect(JSON.parse(saved)).toEqual(await ok(d.sock, 'save_config'));
    const file = join(d.dir, 'rpcpy.json');
    writeFileSync(file, saved);
    expect(await py('bdev_malloc_delete', 'M0')).toBe('');
    await py('bdev_null_delete', 'N0');
    expect(JSON.parse(await py('bdev_get_bdevs'))).toEqual([]);
    await py('load_config', '-j', file);
    expect(JSON.parse(await py('bdev_get_bdevs'))).toEqual(bdevs);
  });

  it('resizes a null bdev under a blk controller, stacks a delay bdev, sets coalescing (methods added later)', async () => {
    expect((await py('bdev_null_create', 'N1', '8', '512')).trim()).toBe('N1');
    await py('vhost_create_blk_controller', 'vhost.rpcpy', 'N1');
    expect((await py('bdev_null_resize', 'N1', '16')).trim()).toBe('true');
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', 'N1'))[0].num_blocks).toBe(16 * 2048);
    await py('vhost_controller_set_coalescing', 'vhost.rpcpy', '50', '60000');
    const c = JSON.parse(await py('vhost_get_controllers', '-n', 'vhost.rpcpy'))[0];
    expect([c.delay_base_us, c.iops_threshold]).toEqual([50, 60000]);
    await py('bdev_malloc_create', '-b', 'M9', '8', '512');
    expect((await py('bdev_delay_create', '-b', 'M9', '-d', 'D9', '-r', '100', '-t', '200', '-w', '300', '-n', '400')).trim()).toBe('D9');
    await py('bdev_delay_update_latency', 'D9', 'avg_read', '150');
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', 'D9'))[0].driver_specific.delay.avg_read_latency).toBe(150);
    await py('bdev_delay_delete', 'D9');
    await py('vhost_delete_controller', 'vhost.rpcpy');
    await py('bdev_malloc_delete', 'M9');
    await py('bdev_null_delete', 'N1');
  });

  it('sets QoS limits with rpc.py bdev_set_qos_limit and shows them in bdev_get_bdevs', async () => {
    await py('bdev_malloc_create', '-b', 'MQ', '8', '512');
    await py('bdev_set_qos_limit', 'MQ', '--rw_ios_per_sec', '1500', '--w_mbytes_per_sec', '20');   // rpc.py prints nothing
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', 'MQ'))[0].assigned_rate_limits)
      .toEqual({ rw_ios_per_sec: 2000, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 20 });
    await py('bdev_set_qos_limit', 'MQ', '--rw_ios_per_sec', '0', '--w_mbytes_per_sec', '0');
    await py('bdev_malloc_delete', 'MQ');
  }, 90_000);

  it('sets up an NVMe-over-vfio-user subsystem the way SPDK documents it', async () => {
    await py('bdev_malloc_create', '-b', 'NV0', '16', '512');
    await py('nvmf_create_transport', '-t', 'VFIOUSER');
    await py('nvmf_create_subsystem', 'nqn.2019-07.io.spdk:cnode9', '-a', '-s', 'SPDK9');
    await py('nvmf_subsystem_add_ns', 'nqn.2019-07.io.spdk:cnode9', 'NV0');
    const dir = mkdtempSync(join(tmpdir(), 'vfu-'));
    await py('nvmf_subsystem_add_listener', 'nqn.2019-07.io.spdk:cnode9', '-t', 'VFIOUSER', '-a', dir, '-s', '0');
    const [sub] = JSON.parse(await py('nvmf_get_subsystems', 'nqn.2019-07.io.spdk:cnode9'));
    expect(sub.namespaces[0].bdev_name).toBe('NV0');
    expect(sub.listen_addresses[0].traddr).toBe(dir);
    await py('nvmf_delete_subsystem', 'nqn.2019-07.io.spdk:cnode9');
  });

  it('attaches an NVMe controller over vfio-user with bdev_nvme_attach_controller (here: vhostd\'s own)', async () => {
    await py('bdev_malloc_create', '-b', 'NV1', '16', '4096');
    // the transport exists when the test above ran in this daemon (a second create is refused, as in SPDK)
    const t = await rpcpy(d.sock, 'nvmf_create_transport', '-t', 'VFIOUSER');
    if (t.code !== 0) expect(t.stdout + t.stderr).toMatch(/already exists/);
    await py('nvmf_create_subsystem', 'nqn.2019-07.io.spdk:cnode10', '-a', '-s', 'SPDK10');
    await py('nvmf_subsystem_add_ns', 'nqn.2019-07.io.spdk:cnode10', 'NV1');
    const dir = mkdtempSync(join(tmpdir(), 'vfu-'));
    await py('nvmf_subsystem_add_listener', 'nqn.2019-07.io.spdk:cnode10', '-t', 'VFIOUSER', '-a', dir, '-s', '0');
    expect((await py('bdev_nvme_attach_controller', '-b', 'NvmeR', '-t', 'vfiouser', '-a', dir)).trim()).toBe('NvmeRn1');
    const [c] = JSON.parse(await py('bdev_nvme_get_controllers', '-n', 'NvmeR'));
    expect(c).toMatchObject({ name: 'NvmeR', ctrlrs: [{ state: 'enabled', trid: { trtype: 'vfiouser', traddr: dir } }] });
    const [b] = JSON.parse(await py('bdev_get_bdevs', '-b', 'NvmeRn1'));
    expect([b.block_size, b.num_blocks, b.driver_specific.nvme[0].ctrlr_data.serial_number]).toEqual([4096, 4096, 'SPDK10']);
    await py('bdev_nvme_reset_controller', 'NvmeR');
    const saved = JSON.parse(await py('save_config'));
    expect(saved.subsystems.find((x: { subsystem: string }) => x.subsystem === 'bdev').config)
      .toContainEqual({ method: 'bdev_nvme_attach_controller', params: { name: 'NvmeR', trtype: 'vfiouser', traddr: dir } });
    const r = await rpcpy(d.sock, 'bdev_nvme_attach_controller', '-b', 'NvmeX', '-t', 'vfiouser', '-a', dir, '-r');
    expect(r.stdout + r.stderr).toMatch(/prchk_reftag=true is not supported/);
    await py('bdev_nvme_detach_controller', 'NvmeR');
    expect(JSON.parse(await py('bdev_nvme_get_controllers'))).toEqual([]);
    await py('nvmf_delete_subsystem', 'nqn.2019-07.io.spdk:cnode10');
  }, 120_000);   // rpc.py starts a Python interpreter per call: seconds each on a loaded machine

  it('builds a vhost-user-scsi controller with a target and takes it apart', async () => {
    await py('bdev_malloc_create', '-b', 'S0', '16', '512');
    await py('vhost_create_scsi_controller', '--cpumask', '0x1', 'scsi.rpcpy');
    expect((await py('vhost_scsi_controller_add_target', 'scsi.rpcpy', '-1', 'S0')).trim()).toBe('0');
    const [c] = JSON.parse(await py('vhost_get_controllers', '-n', 'scsi.rpcpy'));
    expect(c.backend_specific.scsi[0].luns[0].bdev_name).toBe('S0');
    await py('vhost_scsi_controller_remove_target', 'scsi.rpcpy', '0');
    await py('vhost_delete_controller', 'scsi.rpcpy');
    await py('bdev_malloc_delete', 'S0');
  });

  it('shows vhostd errors through rpc.py', async () => {
    const r = await rpcpy(d.sock, 'bdev_malloc_delete', 'ghost');
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/"code": -19[\s\S]*'ghost' does not exist/);
  });
});
