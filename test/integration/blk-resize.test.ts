// A bdev under a vhost-user-blk controller grows (bdev_null_resize): the front end gets a
// CONFIG_CHANGE_MSG on its backend channel and reads the new capacity with GET_CONFIG.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { closeQuiet } from '../../native/libc.js';
import { recvWithFds, unixAccept, unixConnect, unixListen } from '../../native/socket.js';
import { P, u64, VhostUserClient, waitReadable } from '../fuzz/vhost_client.js';
import { startDaemon, rpc, Daemon, tmpDir } from './daemon.js';

const pf = (b: number) => 1n << BigInt(b);

/** A connected pair of Unix sockets (no socketpair binding: listen, connect, accept). */
function socketPair(): [number, number] {
  const path = join(tmpDir(), 'pair.sock');
  const l = unixListen(path);
  try {
    const a = unixConnect(path, false);
    return [a, unixAccept(l)];
  } finally { closeQuiet(l); }
}

function capacity(c: VhostUserClient): bigint {
  const req = new Uint8Array(12 + 8), dv = new DataView(req.buffer);
  dv.setUint32(0, 0, true); dv.setUint32(4, 8, true);
  const r = c.call(P.REQ.GET_CONFIG, req)!;
  return new DataView(r.buffer, r.byteOffset + 12, 8).getBigUint64(0, true);
}

describe('blk: a resized bdev reaches the front end', () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await startDaemon(['-m', '0x1']);
    await rpc(d.sock, 'bdev_null_create', { name: 'N0', num_blocks: 2048, block_size: 512 });
    await rpc(d.sock, 'vhost_create_blk_controller', { ctrlr: 'blk0', dev_name: 'N0' });
  });
  afterAll(async () => { expect(await d.stop()).toBe(0); });

  it('bdev_null_resize grows the disk: CONFIG_CHANGE_MSG, then GET_CONFIG shows the new capacity; shrinking in use is refused', async () => {
    const c = new VhostUserClient(join(d.dir, 'blk0'));
    const [mine, theirs] = socketPair();
    try {
      c.call(P.REQ.SET_FEATURES, u64(c.callU64(P.REQ.GET_FEATURES)));
      const offered = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
      expect(offered & pf(P.PF.BACKEND_REQ)).not.toBe(0n);
      c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf(P.PF.CONFIG) | pf(P.PF.BACKEND_REQ)));
      c.call(P.REQ.SET_OWNER);
      c.call(P.REQ.SET_BACKEND_REQ_FD, new Uint8Array(0), [theirs]);
      expect(capacity(c)).toBe(2048n);

      const r = await rpc(d.sock, 'bdev_null_resize', { name: 'N0', new_size: 4 });
      expect(r.result).toBe(true);
      expect(waitReadable(mine, 5000)).toBe(true);
      const hdr = new Uint8Array(P.HDR_SIZE);
      const got = recvWithFds(mine, hdr, 0, P.HDR_SIZE);
      expect(got.n).toBe(P.HDR_SIZE);
      const hv = new DataView(hdr.buffer);
      expect(hv.getUint32(0, true)).toBe(P.BACKEND_REQ.CONFIG_CHANGE_MSG);
      expect(hv.getUint32(8, true)).toBe(0);
      expect(capacity(c)).toBe(8192n);

      const shrink = await rpc(d.sock, 'bdev_null_resize', { name: 'N0', new_size: 1 });
      expect(shrink.error?.code).toBe(-16);
      expect(shrink.error?.message).toMatch(/in use by vhost controller blk0/);
      const info = await rpc(d.sock, 'bdev_get_bdevs', { name: 'N0' });
      expect((info.result as { num_blocks: number }[])[0].num_blocks).toBe(8192);
      expect(capacity(c)).toBe(8192n);
    } finally {
      c.close();
      closeQuiet(mine); closeQuiet(theirs);
    }
  });

  it('bdev_null_resize errors: unknown bdev, not a null bdev, size not a multiple of the block size', async () => {
    await rpc(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 256, block_size: 4096 });
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'ghost', new_size: 4 })).error?.code).toBe(-19);
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'M0', new_size: 4 })).error?.message).toMatch(/malloc bdev, not a null bdev/);
    await rpc(d.sock, 'bdev_null_create', { name: 'N1', num_blocks: 100, block_size: 4096 });
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'N1', new_size: 0 })).error?.code).toBe(-32602);
    // an unused null bdev may shrink
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'N1', new_size: 1 })).result).toBe(true);
    const info = await rpc(d.sock, 'bdev_get_bdevs', { name: 'N1' });
    expect((info.result as { num_blocks: number }[])[0].num_blocks).toBe(256);
  });
});
