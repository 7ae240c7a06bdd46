// Online namespace resize through the daemon's real vfio-user socket: a small NVMe driver of
// our own (admin queue in a memfd mapped with DMA_MAP, trapped doorbells, no interrupts)
// enables Namespace Attribute Notices and leaves an Asynchronous Event Request outstanding;
// bdev_null_resize grows the namespace's bdev; the AER completes with the Namespace Attribute
// Changed notice, the Changed Namespace List names the namespace, and Identify Namespace
// reports the new size. (The vfio-user message helpers are the same as in vfio-user.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, rpc, Daemon } from './daemon.js';
import { unixConnect, sendWithFds, recvWithFds } from '../../native/socket.js';
import * as libc from '../../native/libc.js';
import * as P from '../../src/vfio_user/protocol.js';

const NQN = 'nqn.2019-07.io.spdk:cnode-resize';
const MiB = 1 << 20, IOVA = 0x10_0000, MEM = 2 * MiB;
const ASQ = IOVA, ACQ = IOVA + 0x1000, BUF = IOVA + 0x2000;
const QS = 16;

class Client {
  private id = 1;
  constructor(readonly fd: number) {}
  async call(cmd: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = []): Promise<{ h: P.MsgHeader; p: Uint8Array }> {
    const id = this.id++;
    sendWithFds(this.fd, P.message({ id, cmd, flags: P.TYPE_COMMAND, error: 0 }, payload), fds);
    const buf = new Uint8Array(1 << 16);
    let have = 0;
    const end = Date.now() + 10_000;
    for (;;) {
      const want = have < 16 ? 16 - have : P.readHeader(buf).size - have;
      if (have >= 16 && want === 0) break;
      const r = recvWithFds(this.fd, buf, have, want);
      if (r.n === 0) throw new Error('server closed the connection');
      if (r.n < 0) { if (Date.now() > end) throw new Error('no reply'); await new Promise((res) => setTimeout(res, 2)); continue; }
      have += r.n;
    }
    const h = P.readHeader(buf);
    expect(h.id).toBe(id);
    expect(h.flags & P.FLAG_ERROR).toBe(0);
    return { h, p: buf.slice(16, h.size) };
  }
  async w32(off: number, v: number): Promise<void> {
    const q = new Uint8Array(20), dv = new DataView(q.buffer);
    dv.setBigUint64(0, BigInt(off), true); dv.setUint32(8, P.PCI_BAR0, true); dv.setUint32(12, 4, true); dv.setUint32(16, v >>> 0, true);
    await this.call(P.Cmd.REGION_WRITE, q);
  }
  async r32(off: number): Promise<number> {
    const q = new Uint8Array(16), dv = new DataView(q.buffer);
    dv.setBigUint64(0, BigInt(off), true); dv.setUint32(8, P.PCI_BAR0, true); dv.setUint32(12, 4, true);
    const r = await this.call(P.Cmd.REGION_READ, q);
    return new DataView(r.p.buffer, r.p.byteOffset + 16, 4).getUint32(0, true);
  }
}

describe('NVMe over vfio-user: a growing namespace reaches the host as a Namespace Attribute Changed event', () => {
  let d: Daemon;
  let c: Client;
  let memFd = -1, memAddr = 0;
  let mem: Uint8Array, dv: DataView;
  const adm = { tail: 0, head: 0, phase: 1 };

  beforeAll(async () => {
    d = await startDaemon(['-m', '0x1']);
    const dir = join(d.dir, 'vfu');
    mkdirSync(dir);
    await ok(d.sock, 'bdev_null_create', { name: 'N0', num_blocks: 8192, block_size: 512 });
    await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER', disable_mappable_bar0: true });
    await ok(d.sock, 'nvmf_create_subsystem', { nqn: NQN });
    await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'N0', nsid: 1 } });
    await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'VFIOUSER', traddr: dir, trsvcid: '0' } });
    c = new Client(unixConnect(join(dir, 'cntrl')));
    memFd = libc.memfdCreate('vfu-guest', MEM);
    memAddr = libc.mmap(MEM, memFd);
    mem = new Uint8Array(libc.view(memAddr, MEM));
    dv = new DataView(mem.buffer, mem.byteOffset);
    await c.call(P.Cmd.VERSION, P.versionPayload(0, 1, { capabilities: { max_msg_fds: 8 } }));
    const m = new Uint8Array(32), mdv = new DataView(m.buffer);
    mdv.setUint32(0, 32, true); mdv.setUint32(4, 3, true);
    mdv.setBigUint64(16, BigInt(IOVA), true); mdv.setBigUint64(24, BigInt(MEM), true);
    await c.call(P.Cmd.DMA_MAP, m, [memFd]);
    await c.w32(0x24, ((QS - 1) << 16) | (QS - 1));
    await c.w32(0x28, ASQ); await c.w32(0x2c, 0);
    await c.w32(0x30, ACQ); await c.w32(0x34, 0);
    await c.w32(0x14, (4 << 20) | (6 << 16) | 1);
    expect((await c.r32(0x1c)) & 3).toBe(1);
  }, 30_000);

  afterAll(async () => {
    if (c) libc.closeQuiet(c.fd);
    if (memAddr) libc.munmap(memAddr, MEM);
    libc.closeQuiet(memFd);
    const stopped = d?.stop();
    const t = setTimeout(() => d?.proc.kill('SIGKILL'), 10_000);
    expect(await stopped).toBe(0);
    clearTimeout(t);
  });

  type Cmd = { opc: number; cid: number; nsid?: number; prp1?: number; cdw?: number[] };
  async function submit(f: Cmd): Promise<void> {
    const o = ASQ - IOVA + adm.tail * 64;
    mem.fill(0, o, o + 64);
    mem[o] = f.opc; dv.setUint16(o + 2, f.cid, true); dv.setUint32(o + 4, f.nsid ?? 0, true);
    dv.setBigUint64(o + 24, BigInt(f.prp1 ?? 0), true);
    (f.cdw ?? []).forEach((v, i) => dv.setUint32(o + 40 + 4 * i, v >>> 0, true));
    adm.tail = (adm.tail + 1) % QS;
    await c.w32(0x1000, adm.tail);
  }
  async function reap(ms = 5000): Promise<{ cid: number; status: number; dw0: number } | null> {
    const e = ACQ - IOVA + adm.head * 16, end = Date.now() + ms;
    while (((dv.getUint32(e + 12, true) >>> 16) & 1) !== adm.phase) {
      if (Date.now() > end) return null;
      await new Promise((r) => setTimeout(r, 2));
    }
    const dw3 = dv.getUint32(e + 12, true), sf = dw3 >>> 17;
    adm.head = (adm.head + 1) % QS; if (adm.head === 0) adm.phase ^= 1;
    await c.w32(0x1004, adm.head);
    return { cid: dw3 & 0xffff, status: (((sf >> 8) & 7) << 8) | (sf & 0xff), dw0: dv.getUint32(e, true) };
  }
  const run = async (f: Cmd) => { await submit(f); const e = await reap(); expect(e?.cid).toBe(f.cid); return e!; };
  const nsze = async () => {
    expect((await run({ opc: 0x06, cid: 0x70, nsid: 1, prp1: BUF, cdw: [0] })).status).toBe(0);
    return Number(dv.getBigUint64(BUF - IOVA, true));
  };

  it('bdev_null_resize: the AER completes with type 2h / info 00h / log 04h; the log names nsid 1; Identify shows the new size', async () => {
    expect((await run({ opc: 0x06, cid: 1, prp1: BUF, cdw: [1] })).status).toBe(0);
    expect(dv.getUint32(BUF - IOVA + 92, true) & 0x100).toBe(0x100);   // OAES: Namespace Attribute Notices
    expect((await run({ opc: 0x06, cid: 2, prp1: BUF, cdw: [6, 0] })).status).toBe(0); // CNS 06h, CSI NVM (Linux asks at boot)
    expect(await nsze()).toBe(8192);
    expect((await run({ opc: 0x09, cid: 3, cdw: [0x0b, 0x100] })).status).toBe(0);       // Set Features AEC: bit 8
    await submit({ opc: 0x0c, cid: 0x50 });                                              // AER, outstanding
    expect(await reap(200)).toBeNull();

    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'N0', new_size: 8 })).result).toBe(true);
    const aen = await reap();
    expect(aen).toEqual({ cid: 0x50, status: 0, dw0: 0x00040002 });
    expect(await nsze()).toBe(16384);
    // a second resize before the host read the log: no event (masked), but the list has it
    await submit({ opc: 0x0c, cid: 0x51 });
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'N0', new_size: 12 })).result).toBe(true);
    expect(await reap(300)).toBeNull();
    const [s] = await ok(d.sock, 'nvmf_get_subsystems', { nqn: NQN });
    expect(s.vfio_user_controllers[0].queues.async_events).toMatchObject({ config: 0x100, outstanding_requests: 1, masked_log_pages: [4], changed_ns_list: [1] });
    expect(s.vfio_user_controllers[0].queues.namespaces).toEqual([{ nsid: 1, blocks: 24576, block_size: 512 }]);
    // Get Log Page 04h (RAE cleared): [1], then zeros; the event is cleared
    mem.fill(0xff, BUF - IOVA, BUF - IOVA + 4096);
    expect((await run({ opc: 0x02, cid: 4, prp1: BUF, cdw: [(1023 << 16) | 0x04] })).status).toBe(0);
    expect([dv.getUint32(BUF - IOVA, true), dv.getUint32(BUF - IOVA + 4, true)]).toEqual([1, 0]);
    expect(mem.subarray(BUF - IOVA + 4, BUF - IOVA + 4096).every((x) => x === 0)).toBe(true);
    expect(await nsze()).toBe(24576);
    // unmasked: the next resize completes AER 0x51
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'N0', new_size: 16 })).result).toBe(true);
    expect(await reap()).toEqual({ cid: 0x51, status: 0, dw0: 0x00040002 });
    expect(await nsze()).toBe(32768);
    const log = d.stderr();
    expect(log).toMatch(/namespace 1 \(bdev N0\) resized from 8192 to 16384 blocks; controller \S+: Namespace Attribute Changed event queued/);
    expect(log).toMatch(/resized from 16384 to 24576 blocks; controller \S+: added to the Changed Namespace List; no new event/);
  });

  it('nvmf_delete_subsystem stops watching the bdev: a later resize reaches no controller', async () => {
    await c.w32(0x14, 0);
    await ok(d.sock, 'nvmf_delete_subsystem', { nqn: NQN });
    const before = d.stderr().length;
    expect((await rpc(d.sock, 'bdev_null_resize', { name: 'N0', new_size: 20 })).result).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(d.stderr().slice(before)).not.toMatch(/subsystem .*resized/);
  });
});
