// SPDK's own scripts/rpc.py (v25.05.1) driving vhostd's logical volumes. Needs
// SPDK_RPC_PY=/path/to/scripts/rpc.py (with python/spdk/ beside scripts/). Skipped otherwise.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { startDaemon, Daemon } from './daemon.js';

const RPC_PY = process.env.SPDK_RPC_PY;
const reason = !RPC_PY ? 'SPDK_RPC_PY is not set' : !existsSync(RPC_PY) ? `SPDK_RPC_PY=${RPC_PY} does not exist` : '';

describe.skipIf(!!reason)('SPDK rpc.py: logical volumes', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await d?.stop(); });

  const py = (...args: string[]) => new Promise<string>((resolve, reject) => {
    execFile('python3', [RPC_PY!, '-s', d.sock, ...args], { timeout: 30_000 }, (e, stdout, stderr) =>
      (e ? reject(new Error(`rpc.py ${args.join(' ')}: ${stderr}`)) : resolve(stdout)));
  });

  it('lvstore, thin lvol, snapshot, clone, resize, inflate, rename, delete', async () => {
    await py('bdev_malloc_create', '-b', 'M0', '64', '512');
    const lvs = (await py('bdev_lvol_create_lvstore', 'M0', 'lvs0', '-c', '1048576', '--clear-method', 'none')).trim();
    expect(JSON.parse(await py('bdev_lvol_get_lvstores', '-l', 'lvs0'))[0]).toMatchObject({ uuid: lvs, base_bdev: 'M0', cluster_size: 1048576 });
    const vol = (await py('bdev_lvol_create', '-l', 'lvs0', '-t', 'vol', '8')).trim();
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', 'lvs0/vol'))[0]).toMatchObject({ name: vol, aliases: ['lvs0/vol'] });
    const snap = (await py('bdev_lvol_snapshot', 'lvs0/vol', 'snap')).trim();
    const clone = (await py('bdev_lvol_clone', 'lvs0/snap', 'cl')).trim();
    expect(JSON.parse(await py('bdev_lvol_get_lvols', '-l', 'lvs0')).map((l: any) => [l.name, l.uuid, l.is_snapshot, l.is_clone]))
      .toEqual([['vol', vol, false, true], ['snap', snap, true, false], ['cl', clone, false, true]]);
    await py('bdev_lvol_resize', 'lvs0/vol', '12');
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', vol))[0].num_blocks).toBe(12 * 2048);
    await py('bdev_lvol_inflate', 'lvs0/cl');
    await py('bdev_lvol_decouple_parent', 'lvs0/vol');
    await py('bdev_lvol_rename', 'lvs0/cl', 'cl2');
    await py('bdev_lvol_rename_lvstore', 'lvs0', 'lvs1');
    expect(JSON.parse(await py('bdev_get_bdevs', '-b', clone))[0].aliases).toEqual(['lvs1/cl2']);
    await py('bdev_lvol_delete', 'lvs1/snap');
    await py('bdev_lvol_delete_lvstore', '-l', 'lvs1');
    expect(JSON.parse(await py('bdev_lvol_get_lvstores'))).toEqual([]);
  }, 120_000);   // rpc.py takes 1-3 s per call on a loaded machine
});
