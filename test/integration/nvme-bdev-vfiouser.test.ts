// The NVMe bdev over vfio-user, against vhostd's own emulated NVMe controller: one vhostd
// (the target) exports a malloc bdev as an NVMe controller over vfio-user; a second vhostd
// (the initiator) attaches it with bdev_nvme_attach_controller -t vfiouser, exports
// Nvme0n1 as a vhost-user-blk controller, and vhost-load writes and verifies data through
// it (guest memory DMA-mapped to the target: zero copy). The data must also be in the
// target's malloc bdev. Then: detach refused while in use, reset under I/O, the target
// killed under I/O (I/O fails cleanly, the initiator survives), detach and save_config.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, rpc, Daemon } from './daemon.js';
import { vhostLoad, runVhostLoad } from '../lib/vhost_load.js';

const NQN = 'nqn.2019-07.io.spdk:nvmebdev';
const BS = 512, BLOCKS = 65536; // 32 MiB of 512-byte blocks (cut scatter lists need whole blocks per piece)

async function target(): Promise<{ d: Daemon; dir: string }> {
  const d = await startDaemon(['-m', '0x1']);
  const dir = join(d.dir, 'vfu');
  mkdirSync(dir);
  await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: BLOCKS, block_size: BS });
  await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER' });
  await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-BDEV', model_number: 'vhostd target' });
  await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0', nsid: 1 } });
  await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
  return { d, dir };
}

const vl = vhostLoad();
if (vl.why) console.warn(`skipping NVMe bdev data tests: ${vl.why}`);

describe('bdev_nvme over vfio-user against vhostd\'s NVMe controller', () => {
  let t: { d: Daemon; dir: string };
  let h: Daemon;
  beforeAll(async () => {
    t = await target();
    h = await startDaemon(['-m', '0x1']);
  }, 30_000);
  afterAll(async () => { await h?.stop(); await t?.d.stop(); });

  it('attaches: one bdev per namespace, SPDK-shaped controller list', async () => {
    const names = await ok(h.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'vfiouser', traddr: t.dir,
      prchk_reftag: false, prchk_guard: false, hdgst: false, ddgst: false, allow_unrecognized_csi: false });
    expect(names).toEqual(['Nvme0n1']);
    const [b] = await ok(h.sock, 'bdev_get_bdevs', { name: 'Nvme0n1' });
    expect([b.block_size, b.num_blocks, b.supported_io_types.read, b.supported_io_types.write, b.supported_io_types.unmap, b.supported_io_types.write_zeroes])
      .toEqual([BS, BLOCKS, true, true, true, true]);
    expect(b.driver_specific.nvme[0].ctrlr_data).toMatchObject({ model_number: 'vhostd target', serial_number: 'SN-BDEV' });
    expect(await ok(h.sock, 'bdev_nvme_get_controllers')).toEqual([{ name: 'Nvme0',
      ctrlrs: [expect.objectContaining({ state: 'enabled', trid: { trtype: 'vfiouser', traddr: t.dir }, error_log: [] })] }]);
  });

  const span = ['--size', '16m'];
  const blk = () => join(h.dir, 'nv0');

  it.skipIf(!vl.bin)('vhost-load writes and verifies data through vhost-blk -> Nvme0n1 -> vfio-user -> malloc', async () => {
    await ok(h.sock, 'vhost_create_blk_controller', { ctrlr: 'nv0', dev_name: 'Nvme0n1' });
    const state = join(h.dir, 'vl-state');
    const w = await runVhostLoad(vl.bin!, ['-s', blk(), '--verify', '--rw', 'randwrite', '--bs', '16k', '--qd', '32',
      '--time', '1.5', '--seed', '3', '--state', state, ...span]);
    expect(w.code, w.stderr).toBe(0);
    expect(w.json.verify.mismatches).toBe(0);
    expect(w.json.errors ?? 0).toBe(0);
    // split descriptors (pieces that break page alignment: several NVMe commands per request)
    const s = await runVhostLoad(vl.bin!, ['-s', blk(), '--verify', '--rw', 'randrw', '--bs', '12k', '--segs', '5', '--qd', '16',
      '--time', '1', '--seed', '4', '--offset', '16m', '--size', '8m']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.json.verify.mismatches).toBe(0);
    const r = await runVhostLoad(vl.bin!, ['-s', blk(), '--verify-only', '--seed', '3', '--state', state, '--bs', '64k', '--qd', '8', ...span]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.verify.mismatches).toBe(0);
    const [st] = (await ok(h.sock, 'bdev_get_iostat', { name: 'Nvme0n1' })).bdevs;
    expect(st.num_write_ops).toBeGreaterThan(100);
    expect(st.num_read_ops).toBeGreaterThan(100);
  }, 60_000);

  it.skipIf(!vl.bin)('a controller reset under I/O: I/O waits and runs again, no error reaches the initiator', async () => {
    const run = runVhostLoad(vl.bin!, ['-s', blk(), '--verify', '--rw', 'randrw', '--bs', '8k', '--qd', '32',
      '--time', '2.5', '--seed', '5', '--offset', '24m', '--size', '8m']);
    await new Promise((r) => setTimeout(r, 800));
    await ok(h.sock, 'bdev_nvme_reset_controller', { name: 'Nvme0' });
    const w = await run;
    expect(w.code, w.stderr).toBe(0);
    expect(w.json.verify.mismatches).toBe(0);
    expect(h.stderr()).toMatch(/Nvme0: reset done/);
    expect((await ok(h.sock, 'bdev_nvme_get_controllers', { name: 'Nvme0' }))[0].ctrlrs[0].state).toBe('enabled');
  }, 60_000);

  it('save_config writes one bdev_nvme_attach_controller; detach is refused while a bdev is in use', async () => {
    const cfg = await ok(h.sock, 'save_config');
    const bdev = cfg.subsystems.find((x: { subsystem: string }) => x.subsystem === 'bdev').config;
    expect(bdev.filter((c: { method: string }) => c.method.startsWith('bdev_nvme'))).toEqual([
      { method: 'bdev_nvme_attach_controller', params: { name: 'Nvme0', trtype: 'vfiouser', traddr: t.dir } }]);
    if (!vl.bin) return;
    const r = await rpc(h.sock, 'bdev_nvme_detach_controller', { name: 'Nvme0' });
    expect(r.error?.message).toMatch(/Nvme0n1 is in use by .*nv0.*remove that first/);
  });

  it.skipIf(!vl.bin)('the data is in the target\'s malloc bdev', async () => {
    await ok(h.sock, 'vhost_delete_controller', { ctrlr: 'nv0' });
    await ok(h.sock, 'bdev_nvme_detach_controller', { name: 'Nvme0' });
    expect(await ok(h.sock, 'bdev_nvme_get_controllers')).toEqual([]);
    expect((await ok(h.sock, 'bdev_get_bdevs')).map((b: { name: string }) => b.name)).not.toContain('Nvme0n1');
    // the target serves its malloc bdev over vhost-blk instead: the first run's data must be there
    await ok(t.d.sock, 'nvmf_delete_subsystem', { nqn: NQN });
    await ok(t.d.sock, 'vhost_create_blk_controller', { ctrlr: 'm0', dev_name: 'M0' });
    const r = await runVhostLoad(vl.bin!, ['-s', join(t.d.dir, 'm0'), '--verify-only', '--seed', '3', '--state', join(h.dir, 'vl-state'),
      '--bs', '64k', '--qd', '8', ...span]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.verify.mismatches).toBe(0);
    expect(r.json.verify.sectors_checked).toBe((16 << 20) / 512);
    await ok(t.d.sock, 'vhost_delete_controller', { ctrlr: 'm0' });
  }, 60_000);

  it.skipIf(!vl.bin)('the target killed under I/O: I/O fails cleanly, the initiator lives on and detaches', async () => {
    await ok(t.d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-BDEV', model_number: 'vhostd target' });
    await ok(t.d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0', nsid: 1 } });
    await ok(t.d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: t.dir, trsvcid: '0' } });
    expect(await ok(h.sock, 'bdev_nvme_attach_controller', { name: 'Nvme1', trtype: 'VFIOUSER', traddr: t.dir })).toEqual(['Nvme1n1']);
    await ok(h.sock, 'vhost_create_blk_controller', { ctrlr: 'nv1', dev_name: 'Nvme1n1' });
    const run = runVhostLoad(vl.bin!, ['-s', join(h.dir, 'nv1'), '--rw', 'randrw', '--bs', '4k', '--qd', '32', '--time', '3',
      '--io-timeout', '20', ...span]);
    await new Promise((r) => setTimeout(r, 800));
    t.d.proc.kill('SIGKILL');
    await t.d.exited;
    const w = await run;
    expect(w.code, 'vhost-load sees I/O errors').not.toBe(0);
    expect(w.stderr + JSON.stringify(w.json)).toMatch(/error|status/i);
    expect(h.proc.exitCode).toBeNull();
    expect((await ok(h.sock, 'bdev_nvme_get_controllers', { name: 'Nvme1' }))[0].ctrlrs[0].state).toBe('failed');
    expect(h.stderr()).toMatch(/Nvme1: .*its I\/O fails from now on/);
    await ok(h.sock, 'vhost_delete_controller', { ctrlr: 'nv1' });
    await ok(h.sock, 'bdev_nvme_detach_controller', { name: 'Nvme1' });
    expect(await ok(h.sock, 'bdev_nvme_get_controllers')).toEqual([]);
    expect(h.proc.exitCode).toBeNull();
  }, 60_000);
});

describe('bdev_nvme interrupt mode', () => {
  it.skipIf(!vl.bin)('with commands in flight on a slow device, the reactor sleeps on the CQ\'s MSI-X eventfd', async () => {
    const d = await startDaemon(['-m', '0x1']);
    const h2 = await startDaemon(['-m', '0x1']);
    try {
      const dir = join(d.dir, 'vfu');
      mkdirSync(dir);
      await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 8192, block_size: 4096 });
      await ok(d.sock, 'bdev_delay_create', { base_bdev_name: 'M0', name: 'D0', avg_read_latency: 100000, p99_read_latency: 100000,
        avg_write_latency: 100000, p99_write_latency: 100000 });
      await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER' });
      await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-IRQ' });
      await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'D0', nsid: 1 } });
      await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
      await ok(h2.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'vfiouser', traddr: dir });
      await ok(h2.sock, 'vhost_create_blk_controller', { ctrlr: 'slow', dev_name: 'Nvme0n1' });
      // the reactor accounts busy + idle (polling) time, not the time it sleeps
      const awake = async () => { const [x] = (await ok(h2.sock, 'framework_get_reactors')).reactors; return (x.busy + x.idle) / 1e9; };
      const a0 = await awake(), t0 = performance.now();
      const r = await runVhostLoad(vl.bin!, ['-s', join(h2.dir, 'slow'), '--rw', 'randread', '--bs', '4k', '--qd', '1', '--time', '2', '--irq']);
      const polled = (await awake()) - a0, wall = (performance.now() - t0) / 1000;
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.total?.ios ?? r.json.ios).toBeGreaterThan(8);           // ~20 reads of 100 ms each
      // polling through 100 ms completions would keep the reactor awake all along
      expect(polled / wall, `the reactor polled ${polled.toFixed(2)} s of ${wall.toFixed(2)} s`).toBeLessThan(0.5);
    } finally {
      await h2.stop();
      await d.stop();
    }
  }, 60_000);
});

describe('bdev_nvme I/O timeouts', () => {
  it.skipIf(!vl.bin)('a command without completion in time resets the controller (the target finishes it while disabling)', async () => {
    const d = await startDaemon(['-m', '0x1']);
    const h3 = await startDaemon(['-m', '0x1']);
    try {
      const dir = join(d.dir, 'vfu');
      mkdirSync(dir);
      await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 8192, block_size: 4096 });
      await ok(d.sock, 'bdev_delay_create', { base_bdev_name: 'M0', name: 'D0', avg_read_latency: 1500000, p99_read_latency: 1500000,
        avg_write_latency: 0, p99_write_latency: 0 });
      await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER' });
      await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-TMO' });
      await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'D0', nsid: 1 } });
      await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
      expect((await rpc(h3.sock, 'bdev_nvme_set_options', { action_on_timeout: 'abort' })).error?.message).toMatch(/not yet supported: use reset/);
      await ok(h3.sock, 'bdev_nvme_set_options', { timeout_us: 300_000, action_on_timeout: 'reset', delay_cmd_submit: true });
      await ok(h3.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'vfiouser', traddr: dir });
      await ok(h3.sock, 'vhost_create_blk_controller', { ctrlr: 'tmo', dev_name: 'Nvme0n1' });
      // each read takes 1.5 s: each one times out; vhostd's target completes it before it reports
      // the controller disabled, so the reset reaps it and no error reaches vhost-load
      const r = await runVhostLoad(vl.bin!, ['-s', join(h3.dir, 'tmo'), '--rw', 'randread', '--bs', '4k', '--qd', '1', '--time', '2',
        '--io-timeout', '30']);
      expect(r.code, r.stderr + h3.stderr()).toBe(0);
      // a reset may still be under way for the last read: it ends enabled
      let state = '';
      for (let i = 0; i < 200 && (state !== 'enabled' || !/Nvme0: reset done/.test(h3.stderr())); i++) {
        state = (await ok(h3.sock, 'bdev_nvme_get_controllers', { name: 'Nvme0' }))[0].ctrlrs[0].state;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(state).toBe('enabled');
      const log = h3.stderr();
      expect(log).toMatch(/Nvme0: resetting the controller: .*(had no completion within 300 ms|completed nothing for)/);
      expect(log).toMatch(/Nvme0: reset done/);
      expect(h3.proc.exitCode).toBeNull();
    } finally {
      await h3.stop();
      await d.stop();
    }
  }, 60_000);
});

describe('bdev_nvme: two namespaces used from two reactors', () => {
  it.skipIf(!vl.bin)('each reactor drives its own I/O queue pair; both namespaces verify', async () => {
    const d = await startDaemon(['-m', '0x1']);
    const h4 = await startDaemon(['-m', '0x3']);
    try {
      const dir = join(d.dir, 'vfu');
      mkdirSync(dir);
      for (const n of ['M1', 'M2']) await ok(d.sock, 'bdev_malloc_create', { name: n, num_blocks: 32768, block_size: 512 });
      await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER' });
      await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-2NS' });
      await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M1', nsid: 1 } });
      await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M2', nsid: 2 } });
      await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
      expect(await ok(h4.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'vfiouser', traddr: dir })).toEqual(['Nvme0n1', 'Nvme0n2']);
      await ok(h4.sock, 'vhost_create_blk_controller', { ctrlr: 'a', dev_name: 'Nvme0n1', cpumask: '0x1' });
      await ok(h4.sock, 'vhost_create_blk_controller', { ctrlr: 'b', dev_name: 'Nvme0n2', cpumask: '0x2' });
      const run = (c: string, seed: string) => runVhostLoad(vl.bin!, ['-s', join(h4.dir, c), '--verify', '--rw', 'randrw', '--bs', '8k',
        '--qd', '16', '--time', '1', '--seed', seed, '--size', '2m']);
      const [ra, rb] = await Promise.all([run('a', '11'), run('b', '12')]);
      for (const r of [ra, rb]) { expect(r.code, r.stderr).toBe(0); expect(r.json.verify.mismatches).toBe(0); }
      const [sub] = await ok(d.sock, 'nvmf_get_subsystems', { nqn: NQN });
      // one I/O queue pair per initiator reactor (and the admin queue)
      expect(sub.vfio_user_controllers[0].queues.cqs.map((q: { qid: number }) => q.qid).sort()).toEqual([0, 1, 2]);
      const cfg = await ok(h4.sock, 'save_config');
      const calls = cfg.subsystems.find((x: { subsystem: string }) => x.subsystem === 'bdev').config
        .filter((c: { method: string }) => c.method === 'bdev_nvme_attach_controller');
      expect(calls.length).toBe(1);
    } finally {
      await h4.stop();
      await d.stop();
    }
  }, 60_000);
});

describe('bdev_nvme_attach_controller errors', () => {
  it('refuses a controller without a mappable doorbell page (not yet), a missing socket and an unsupported trtype', async () => {
    const d = await startDaemon(['-m', '0x1']);
    const h5 = await startDaemon(['-m', '0x1']);
    try {
      const dir = join(d.dir, 'vfu');
      mkdirSync(dir);
      await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 1024, block_size: 4096 });
      await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER', disable_mappable_bar0: true });
      await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-TRAP' });
      await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0', nsid: 1 } });
      await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
      const trap = await rpc(h5.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'vfiouser', traddr: dir });
      expect(trap.error?.message).toMatch(/mappable BAR0 doorbell page.*not yet supported.*disable_mappable_bar0/);
      const missing = await rpc(h5.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'vfiouser', traddr: join(d.dir, 'nowhere') });
      expect(missing.error?.message).toMatch(/cannot connect to the vfio-user controller at .*nowhere\/cntrl.*traddr is the directory/);
      const tcp = await rpc(h5.sock, 'bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'TCP', traddr: '127.0.0.1', trsvcid: '4420' });
      expect(tcp.error?.message).toMatch(/trtype 'TCP' is not supported by vhostd: use PCIe or vfiouser/);
      expect(await ok(h5.sock, 'bdev_nvme_get_controllers')).toEqual([]);
      expect(await ok(h5.sock, 'bdev_get_bdevs')).toEqual([]);
      expect(h5.proc.exitCode).toBeNull();
    } finally {
      await h5.stop();
      await d.stop();
    }
  });
});
