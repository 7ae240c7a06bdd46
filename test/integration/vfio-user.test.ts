// The daemon's emulated NVMe controller driven over its real vfio-user socket by a small
// client of our own (src/vfio_user/client.ts, shared with the benchmark's initiator and the NVMe bdev's vfio-user transport): version negotiation, DMA map (a memfd as "guest memory"), device,
// region and irq info, config space and register reads, controller enable, and an
// Identify through an admin queue that lives in the client's shared memory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, Daemon } from './daemon.js';
import { VfioUserClient } from '../../src/vfio_user/client.js';
import * as libc from '../../native/libc.js';
import * as P from '../../src/vfio_user/protocol.js';

const NQN = 'nqn.2019-07.io.spdk:cnode9';
const MiB = 1 << 20, IOVA = 0x10_0000, MEM = 4 * MiB;
const ASQ = IOVA, ACQ = IOVA + 0x1000, BUF = IOVA + 0x2000;

describe('vfio-user NVMe controller (own client)', () => {
  let d: Daemon;
  let c: VfioUserClient;
  let memFd = -1, memAddr = 0;
  let mem: Uint8Array;

  beforeAll(async () => {
    d = await startDaemon(['-m', '0x1']);
    const dir = join(d.dir, 'vfu');
    mkdirSync(dir);
    await ok(d.sock, 'bdev_malloc_create', { name: 'M0', num_blocks: 8192, block_size: 512 });
    await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER', disable_mappable_bar0: true });
    await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN, serial_number: 'SN-INT', model_number: 'vhostd int' });
    expect(await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0', nsid: 1 } })).toBe(1);
    await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
    c = VfioUserClient.connect(join(dir, 'cntrl'));
    memFd = libc.memfdCreate('vfu-guest', MEM);
    memAddr = libc.mmap(MEM, memFd);
    mem = new Uint8Array(libc.view(memAddr, MEM));
  }, 30_000);

  afterAll(async () => {
    c?.close();
    if (memAddr) libc.munmap(memAddr, MEM);
    libc.closeQuiet(memFd);
    // an orderly SIGTERM shutdown with a vfio-user controller in use: exit 0 (SIGKILL only so
    // that a regression fails this assertion instead of hanging the suite)
    const stopped = d?.stop();
    const t = setTimeout(() => d?.proc.kill('SIGKILL'), 10_000);
    const code = await stopped;
    clearTimeout(t);
    expect(code).toBe(0);
  });

  it('refuses commands before VERSION, then negotiates 0.1 with capabilities', async () => {
    const early = await c.call(P.Cmd.DEVICE_GET_INFO, new Uint8Array(16));
    expect(early.h.flags & P.FLAG_ERROR).toBeTruthy();
    const r = await c.call(P.Cmd.VERSION, P.versionPayload(0, 1, { capabilities: { max_msg_fds: 8 } }));
    const v = P.parseVersion(r.p);
    expect([v.major, v.minor]).toEqual([0, 1]);
    expect(v.caps.max_msg_fds).toBeGreaterThan(0);
    expect(v.caps.max_data_xfer_size).toBeGreaterThan(0);
    expect(v.caps.migration).toBeUndefined();
  });

  it('maps guest memory; device, region and irq info; config space', async () => {
    const m = new Uint8Array(32), dv = new DataView(m.buffer);
    dv.setUint32(0, 32, true); dv.setUint32(4, 3, true); dv.setBigUint64(8, 0n, true);
    dv.setBigUint64(16, BigInt(IOVA), true); dv.setBigUint64(24, BigInt(MEM), true);
    const dup = libc.memfdCreate('x', 1); libc.closeQuiet(dup);
    expect((await c.call(P.Cmd.DMA_MAP, m, [memFd])).h.flags & P.FLAG_ERROR).toBe(0);
    // overlapping map: EEXIST
    const again = await c.call(P.Cmd.DMA_MAP, m, [memFd]);
    expect(again.h.error).toBe(P.E.EEXIST);
    const info = await c.call(P.Cmd.DEVICE_GET_INFO, Uint8Array.from([16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    const idv = new DataView(info.p.buffer, info.p.byteOffset);
    expect(idv.getUint32(4, true) & P.DEVICE_FLAGS_PCI).toBeTruthy();
    expect(idv.getUint32(8, true)).toBe(9);
    const ri = new Uint8Array(32), rdv = new DataView(ri.buffer);
    rdv.setUint32(0, 32, true); rdv.setUint32(8, P.PCI_BAR0, true);
    const bar0 = await c.call(P.Cmd.DEVICE_GET_REGION_INFO, ri);
    const b0 = new DataView(bar0.p.buffer, bar0.p.byteOffset);
    expect(Number(b0.getBigUint64(16, true))).toBe(0x4000);
    expect(b0.getUint32(4, true) & P.REGION_FLAG_MMAP).toBe(0); // disable_mappable_bar0
    const ii = new Uint8Array(16); new DataView(ii.buffer).setUint32(0, 16, true); new DataView(ii.buffer).setUint32(8, P.IRQ_MSIX, true);
    const irq = await c.call(P.Cmd.DEVICE_GET_IRQ_INFO, ii);
    expect(new DataView(irq.p.buffer, irq.p.byteOffset).getUint32(12, true)).toBeGreaterThan(1);
    const cfg = await c.read(P.PCI_CONFIG, 0, 64);
    expect(cfg.getUint16(0, true)).toBe(0x4e58);
    expect([cfg.getUint8(0x0b), cfg.getUint8(0x0a), cfg.getUint8(0x09)]).toEqual([1, 8, 2]);
    expect(cfg.getUint32(0x10, true) & 0x6).toBe(0x4); // 64-bit BAR0
  });

  it('registers, enable, Identify through the admin queue in our memory', async () => {
    const cap = await c.read(P.PCI_BAR0, 0, 8);
    expect(cap.getUint16(0, true)).toBe(1023);           // MQES
    expect((cap.getUint32(4, true) >> 5) & 1).toBe(1);   // CSS: NVM
    expect((await c.read(P.PCI_BAR0, 8, 4)).getUint32(0, true)).toBe(0x10400);
    await c.w32(P.PCI_BAR0, 0x24, (15 << 16) | 15);      // AQA: 16/16
    await c.w32(P.PCI_BAR0, 0x28, ASQ); await c.w32(P.PCI_BAR0, 0x2c, 0);
    await c.w32(P.PCI_BAR0, 0x30, ACQ); await c.w32(P.PCI_BAR0, 0x34, 0);
    await c.w32(P.PCI_BAR0, 0x14, (4 << 20) | (6 << 16) | 1);
    expect((await c.read(P.PCI_BAR0, 0x1c, 4)).getUint32(0, true) & 3).toBe(1); // RDY, no CFS
    // Identify controller: SQE at ASQ slot 0, then the (trapped) SQ 0 tail doorbell
    const dv = new DataView(mem.buffer, mem.byteOffset);
    const o = ASQ - IOVA;
    mem[o] = 0x06; dv.setUint16(o + 2, 0x42, true); dv.setBigUint64(o + 24, BigInt(BUF), true); dv.setUint32(o + 40, 1, true);
    await c.w32(P.PCI_BAR0, 0x1000, 1);
    const cqe = ACQ - IOVA;
    const end = Date.now() + 5000;
    while (((dv.getUint32(cqe + 12, true) >>> 16) & 1) !== 1) {
      if (Date.now() > end) throw new Error('no completion');
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(dv.getUint32(cqe + 12, true) & 0xffff).toBe(0x42);
    expect((dv.getUint32(cqe + 12, true) >>> 17) & 0x7fff).toBe(0);
    expect(Buffer.from(mem.subarray(BUF - IOVA + 24, BUF - IOVA + 34)).toString()).toBe('vhostd int');
    const [s] = await ok(d.sock, 'nvmf_get_subsystems', { nqn: NQN });
    expect(s.vfio_user_controllers[0].enabled).toBe(true);
    expect(s.vfio_user_controllers[0].trapped_doorbell_writes).toBe(1);
    // disable: RDY drops
    await c.w32(P.PCI_BAR0, 0x14, 0);
    expect((await c.read(P.PCI_BAR0, 0x1c, 4)).getUint32(0, true) & 1).toBe(0);
  });

  it('re-enabled: I/O queues, SGL write (segment list) and read (one data block), Compare that matches and one that fails', async () => {
    const dv = new DataView(mem.buffer, mem.byteOffset);
    const IOSQ = IOVA + 0x1_0000, IOCQ = IOVA + 0x2_0000, LIST = IOVA + 0x3_0000, DATA = IOVA + 0x4_0000, DATA2 = IOVA + 0x6_0000;
    mem.fill(0, ACQ - IOVA, ACQ - IOVA + 16 * 16);  // the old admin completions (phase 1) must not look new
    await c.w32(P.PCI_BAR0, 0x14, (4 << 20) | (6 << 16) | 1);
    expect((await c.read(P.PCI_BAR0, 0x1c, 4)).getUint32(0, true) & 3).toBe(1);
    // queue state of our little driver: admin and one I/O queue pair (16 entries each, no interrupts)
    const qs = [{ sq: ASQ, cq: ACQ, tail: 0, head: 0, phase: 1 }, { sq: IOSQ, cq: IOCQ, tail: 0, head: 0, phase: 1 }];
    type Cmd = { opc: number; cid: number; nsid?: number; flags?: number; dptr?: [number, number]; sgl?: [number, number, number]; cdw?: number[] };
    const desc = (o: number, addr: number, len: number, type: number) => {
      dv.setBigUint64(o, BigInt(addr), true); dv.setUint32(o + 8, len, true); mem.fill(0, o + 12, o + 15); mem[o + 15] = type << 4;
    };
    const run = async (qid: number, f: Cmd) => {
      const q = qs[qid], o = q.sq - IOVA + q.tail * 64;
      mem.fill(0, o, o + 64);
      mem[o] = f.opc; mem[o + 1] = f.flags ?? 0; dv.setUint16(o + 2, f.cid, true); dv.setUint32(o + 4, f.nsid ?? 0, true);
      if (f.dptr) { dv.setBigUint64(o + 24, BigInt(f.dptr[0]), true); dv.setBigUint64(o + 32, BigInt(f.dptr[1]), true); }
      if (f.sgl) { desc(o + 24, ...f.sgl); mem[o + 1] |= 0x40; }
      (f.cdw ?? []).forEach((v, i) => dv.setUint32(o + 40 + 4 * i, v >>> 0, true));
      q.tail = (q.tail + 1) % 16;
      await c.w32(P.PCI_BAR0, 0x1000 + 8 * qid, q.tail);
      const e = q.cq - IOVA + q.head * 16, end = Date.now() + 5000;
      while (((dv.getUint32(e + 12, true) >>> 16) & 1) !== q.phase) {
        if (Date.now() > end) throw new Error(`no completion for cid ${f.cid} on queue ${qid}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      const dw3 = dv.getUint32(e + 12, true), sf = dw3 >>> 17;
      q.head = (q.head + 1) % 16; if (q.head === 0) q.phase ^= 1;
      await c.w32(P.PCI_BAR0, 0x1004 + 8 * qid, q.head);
      expect(dw3 & 0xffff).toBe(f.cid);
      return { status: (((sf >> 8) & 7) << 8) | (sf & 0xff), dnr: sf >> 14, dw0: dv.getUint32(e, true) };
    };
    expect((await run(0, { opc: 0x05, cid: 1, dptr: [IOCQ, 0], cdw: [(15 << 16) | 1, 1] })).status).toBe(0);           // Create I/O CQ, no IRQ
    expect((await run(0, { opc: 0x01, cid: 2, dptr: [IOSQ, 0], cdw: [(15 << 16) | 1, (1 << 16) | 1] })).status).toBe(0); // Create I/O SQ
    // Identify: SGLs advertised
    expect((await run(0, { opc: 0x06, cid: 3, dptr: [BUF, 0], cdw: [1] })).status).toBe(0);
    expect(dv.getUint32(BUF - IOVA + 536, true) & 3).toBe(1);
    // write 4 KiB at LBA 16 from three pieces behind a Last Segment descriptor
    for (let i = 0; i < 0x8000; i++) mem[DATA - IOVA + i] = (i * 31 + 7) & 0xff;
    desc(LIST - IOVA, DATA + 0x10, 0x600, 0); desc(LIST - IOVA + 16, DATA + 0x2000, 0x900, 0); desc(LIST - IOVA + 32, DATA + 0x5003, 0x100, 0);
    expect((await run(1, { opc: 0x01, cid: 10, nsid: 1, sgl: [LIST, 48, 3], cdw: [16, 0, 7] })).status).toBe(0);
    const sent = Buffer.concat([mem.subarray(DATA - IOVA + 0x10, DATA - IOVA + 0x610), mem.subarray(DATA - IOVA + 0x2000, DATA - IOVA + 0x2900),
      mem.subarray(DATA - IOVA + 0x5003, DATA - IOVA + 0x5103)]);
    // read it back through one Data Block
    expect((await run(1, { opc: 0x02, cid: 11, nsid: 1, sgl: [DATA2, 4096, 0], cdw: [16, 0, 7] })).status).toBe(0);
    expect(Buffer.from(mem.subarray(DATA2 - IOVA, DATA2 - IOVA + 4096)).equals(sent)).toBe(true);
    // Compare: the same data matches; one flipped bit in block 18 does not
    expect((await run(1, { opc: 0x05, cid: 12, nsid: 1, dptr: [DATA2, DATA2 + 4096], cdw: [16, 0, 7] })).status).toBe(0);
    expect((await run(1, { opc: 0x05, cid: 13, nsid: 1, sgl: [LIST, 48, 3], cdw: [16, 0, 7] })).status).toBe(0);
    mem[DATA2 - IOVA + 2 * 512 + 100] ^= 0x10;
    expect(await run(1, { opc: 0x05, cid: 14, nsid: 1, dptr: [DATA2, DATA2 + 4096], cdw: [16, 0, 7] })).toMatchObject({ status: 0x285, dnr: 1 });
    // the Error Information log has it, newest first
    expect((await run(0, { opc: 0x02, cid: 4, dptr: [BUF, 0], cdw: [(15 << 16) | 1] })).status).toBe(0);
    const e0 = BUF - IOVA;
    expect([dv.getUint16(e0 + 8, true), dv.getUint16(e0 + 10, true), (dv.getUint16(e0 + 12, true) >> 1) & 0x7ff]).toEqual([1, 14, 0x285]);
    expect(Number(dv.getBigUint64(e0 + 16, true))).toBe(18);
    const [s] = await ok(d.sock, 'nvmf_get_subsystems', { nqn: NQN });
    const ctl = s.vfio_user_controllers[0];
    expect(ctl).toMatchObject({ sgl_commands: 3, sgl_segment_list_commands: 2, compare_commands: 3, compare_failures: 1 });
    expect(ctl.errors).toBeGreaterThanOrEqual(1);
    expect(ctl.recent_errors[0]).toMatchObject({ sqid: 1, cid: 14, sct: 2, sc: 0x85, dnr: 1, lba: 18, nsid: 1 });
    await c.w32(P.PCI_BAR0, 0x14, 0);
  });
});
