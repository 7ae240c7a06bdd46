// The benchmark's NVMe initiator (bench/lib/nvme_initiator.ts) against the daemon's emulated
// controller, in each doorbell mode of the VFIOUSER transport: it picks the mode the
// controller offers, data written reads back (4 KiB, and 128 KiB through a PRP list), a
// short random read/write run has no errors, and the daemon's trapped doorbell counter
// matches the mode: none with the mappable page, a few with shadow doorbells, and at least
// every doorbell message the initiator sent when all of them trap.
import { describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, Daemon } from './daemon.js';
import { NvmeInitiator, needEvent, type DoorbellMode } from '../../bench/lib/nvme_initiator.js';

const NQN = 'nqn.2019-07.io.spdk:init0';
const BLOCKS = 8192; // 32 MiB of 4 KiB blocks

async function target(transport: Record<string, boolean>): Promise<{ d: Daemon; socket: string }> {
  const d = await startDaemon(['-m', '0x1']);
  const dir = join(d.dir, 'vfu');
  mkdirSync(dir);
  await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: BLOCKS, block_size: 4096 });
  await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER', ...transport });
  await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-INIT', model_number: 'vhostd init' });
  await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0', nsid: 1 } });
  await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
  return { d, socket: join(dir, 'cntrl') };
}

async function counters(d: Daemon): Promise<Record<string, any>> {
  const [s] = await ok(d.sock, 'nvmf_get_subsystems', { nqn: NQN });
  return s.vfio_user_controllers[0];
}

describe('needEvent (shadow doorbell EventIdx rule)', () => {
  it('is true when moving from old to new passes EventIdx, with 16-bit wrap-around', () => {
    expect(needEvent(5, 6, 5)).toBe(true);
    expect(needEvent(5, 5, 4)).toBe(false);
    expect(needEvent(5, 10, 6)).toBe(false);
    expect(needEvent(60, 2, 50)).toBe(true);  // a queue index wrapping at its size passes 60
    expect(needEvent(0xffff, 3, 1)).toBe(false);
  });
});

const MODES: { mode: DoorbellMode; transport: Record<string, boolean> }[] = [
  { mode: 'mmap', transport: {} },
  { mode: 'shadow', transport: { disable_mappable_bar0: true } },
  { mode: 'trap', transport: { disable_mappable_bar0: true, disable_shadow_doorbells: true } },
];

describe('NVMe initiator against vhostd, per doorbell mode', () => {
  for (const m of MODES) {
    it(`${m.mode}: picks it, data reads back, random I/O without errors, trapped doorbells as expected`, async () => {
      const { d, socket } = await target(m.transport);
      try {
        const ini = new NvmeInitiator({ socket, doorbells: 'auto', queues: 2, qd: 8, bs: 4096 });
        await ini.setup();
        expect(ini.mode).toBe(m.mode);
        expect([ini.model, ini.serial, ini.nsze, ini.blockSize]).toEqual(['vhostd init', 'SN-INIT', BLOCKS, 4096]);
        await ini.check(0);
        await ini.check(BLOCKS - 1);
        const r = ini.run(50, 0.3, 0.05, 200);
        expect(r.errors).toBe(0);
        expect(r.drainTimedOut).toBe(false);
        expect(r.ios).toBeGreaterThanOrEqual(200);
        expect(r.reads).toBeGreaterThan(0);
        expect(r.writes).toBeGreaterThan(0);
        expect(r.lat.p50).toBeGreaterThan(0);
        expect(await ini.c.drainPosted()).toEqual([]);
        const c = await counters(d);
        const sent = ini.c.posted;
        await ini.close();
        expect(c.fatal).toBeNull();
        expect(c.io_commands).toBeGreaterThanOrEqual(r.ios);
        if (m.mode === 'mmap') {
          expect(c.trapped_doorbell_writes).toBe(0);
          expect(sent).toBe(0);
        } else if (m.mode === 'shadow') {
          expect(c.shadow_doorbells_in_use).toBe(true);
          expect(c.trapped_doorbell_writes_per_io).toBeLessThan(0.25);
        } else {
          expect(c.shadow_doorbells_in_use).toBe(false);
          expect(sent).toBeGreaterThan(0);
          expect(c.trapped_doorbell_writes).toBeGreaterThanOrEqual(sent);
          expect(r.trapsPerIo).toBeGreaterThan(0.1);
        }
        if (m.mode === 'mmap') {
          // 128 KiB I/Os: PRP lists, on a second connection to the same controller
          const big = new NvmeInitiator({ socket, doorbells: 'auto', queues: 1, qd: 4, bs: 128 * 1024 });
          await big.setup();
          await big.check(0);
          await big.check(BLOCKS - 32);
          const rb = big.run(50, 0.2, 0, 20);
          expect(rb.errors).toBe(0);
          expect(rb.ios).toBeGreaterThanOrEqual(20);
          await big.close();
        }
      } finally {
        expect(await d.stop()).toBe(0);
      }
    }, 30_000);
  }
});
