// A front end that truncates a memory fd under vhostd's mapping would kill it with SIGBUS.
// vhostd seals sealable memfds against shrinking when it maps them, and hands out its own
// inflight memfd sealed.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { addSeals, closeQuiet, F_SEAL_SEAL, F_SEAL_SHRINK, getSeals, memfdCreate, MFD_ALLOW_SEALING, MFD_CLOEXEC, mmap, munmap }
  from '../../native/libc.js';
import { memTablePayload, P, regionBytes, u64, VhostUserClient } from '../fuzz/vhost_client.js';
import { startDaemon, rpc, Daemon } from './daemon.js';
import { guardShrink } from '../../src/vhost/memory_table.js';

const MEM = 4 << 20;
const pf = (b: number) => 1n << BigInt(b);

describe('guest memory fds cannot shrink under vhostd', () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await startDaemon(['-m', '0x1']);
    await rpc(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 2048, block_size: 512 });
    await rpc(d.sock, 'vhost_create_blk_controller', { ctrlr: 'blk0', dev_name: 'M0' });
  });
  afterAll(async () => { expect(await d.stop()).toBe(0); });

  it('guardShrink: seals a sealable memfd, accepts a sealed one, reports an unsealable one', () => {
    const a = memfdCreate('sealable', MEM, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    const b = memfdCreate('unsealable', MEM);
    try {
      expect(getSeals(a) & F_SEAL_SHRINK).toBe(0);
      expect(guardShrink(a)).toBe(true);
      expect(getSeals(a) & F_SEAL_SHRINK).toBe(F_SEAL_SHRINK);
      expect(() => ftruncateSync(a, 4096)).toThrow(/EPERM/);
      expect(guardShrink(a)).toBe(true);
      expect(getSeals(b) & F_SEAL_SEAL).toBe(F_SEAL_SEAL);
      expect(guardShrink(b)).toBe(false);
      expect(addSeals(b, F_SEAL_SHRINK)).toBe(false);
    } finally { closeQuiet(a); closeQuiet(b); }
  });

  it('SET_MEM_TABLE seals the memfd; the front end can no longer shrink it; GET_INFLIGHT_FD hands out a sealed fd', () => {
    const c = new VhostUserClient(join(d.dir, 'blk0'));
    const fd = memfdCreate('front-end-memory', MEM, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    const addr = mmap(MEM, fd);
    try {
      const features = c.callU64(P.REQ.GET_FEATURES);
      c.call(P.REQ.SET_FEATURES, u64(features));
      const proto = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
      expect(proto & pf(P.PF.INFLIGHT_SHMFD)).not.toBe(0n);
      c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf(P.PF.INFLIGHT_SHMFD) | pf(P.PF.MQ)));
      c.call(P.REQ.SET_OWNER);
      c.call(P.REQ.SET_MEM_TABLE, memTablePayload(1, [regionBytes(0, MEM, addr, 0)]), [fd]);
      // a message with a reply: once it is answered, the table was processed
      c.callU64(P.REQ.GET_FEATURES);
      expect(getSeals(fd) & F_SEAL_SHRINK).toBe(F_SEAL_SHRINK);
      expect(() => ftruncateSync(fd, 4096)).toThrow(/EPERM/);

      const req = new Uint8Array(24), dv = new DataView(req.buffer);
      dv.setUint16(16, 1, true); dv.setUint16(18, 128, true);
      c.keepFds = true;
      c.send(P.REQ.GET_INFLIGHT_FD, req, { flags: P.FLAG_VERSION });
      const m = c.expectReply(P.REQ.GET_INFLIGHT_FD);
      expect(m.fds.length).toBe(1);
      try {
        expect(getSeals(m.fds[0]) & (F_SEAL_SHRINK | F_SEAL_SEAL)).toBe(F_SEAL_SHRINK | F_SEAL_SEAL);
        expect(() => ftruncateSync(m.fds[0], 0)).toThrow(/EPERM/);
      } finally { for (const f of m.fds) closeQuiet(f); }
    } finally {
      c.close();
      munmap(addr, MEM);
      closeQuiet(fd);
    }
  });
});
