// virtio-scsi helpers for unit tests on synthetic rings (on top of fake_driver.ts): a
// controller state with malloc-backed LUNs, the three queue kinds, and builders/parsers
// for command, control and event buffers.
import { afterEach } from 'vitest';
import * as libc from '../../../native/libc.js';
import { BdevChannel } from '../../../bdev/channel.js';
import { BdevIo } from '../../../bdev/bdev_io.js';
import { MallocChannel } from '../../../bdev/malloc/malloc_channel.js';
import { createStats } from '../../../bdev/stats.js';
import { BdevChannelSpec, IoStatus } from '../../../bdev/types.js';
import { ScsiLun } from '../../../targets/scsi/scsi/index.js';
import { ScsiControlQueue, ScsiCtrlState, ScsiEventQueue, ScsiRequestQueue } from '../../../targets/scsi/scsi_queue.js';
import * as V from '../../../targets/scsi/virtio_scsi.js';
import { Buf, FakeGuest, FakeVring, pattern, RegionLayout } from './fake_driver.js';

export const MiB = 1 << 20;
export const R0 = 0x0010_0000, R1 = 0x0030_0000, R2 = 0x1_0000_0000;
/** R0/R1 gpa-adjacent (for buffers that span regions); R2 above 4 GiB. */
export const LAYOUT: RegionLayout[] = [{ gpa: R0, size: 2 * MiB }, { gpa: R1, size: MiB }, { gpa: R2, size: 2 * MiB }];

/** A bdev channel that holds I/Os until released: commands stay in flight. */
export class HoldChannel extends BdevChannel {
  readonly held: BdevIo[] = [];
  protected submitIo(io: BdevIo): void { this.held.push(io); }
  release(status: number = IoStatus.SUCCESS): void { for (const io of this.held.splice(0)) this.complete(io, status); }
}

const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });

export interface RigOptions { size?: number; backend?: 'malloc' | 'hold'; numBlocks?: number; eventIdx?: boolean }

/** Guest memory, a controller state with target 0 (LUN 0, 4 MiB malloc or held), and a ring per queue kind. */
export function rig(o: RigOptions = {}) {
  const g = new FakeGuest(LAYOUT);
  cleanup.push(() => g.destroy());
  const fds = [libc.eventfd(), libc.eventfd(), libc.eventfd(), libc.eventfd(), libc.eventfd(), libc.eventfd()];
  cleanup.push(() => { for (const fd of fds) libc.closeQuiet(fd); });
  const numBlocks = o.numBlocks ?? 8192, bytes = numBlocks * 512;
  const data: Record<string, unknown> = {};
  let disk: Uint8Array | null = null;
  if ((o.backend ?? 'malloc') === 'malloc') {
    const fd = libc.memfdCreate('scsi-test-disk', bytes);
    const addr = libc.mmap(bytes, fd);
    cleanup.push(() => { libc.munmap(addr, bytes); libc.closeQuiet(fd); });
    data.addr = addr; data.bytes = bytes;
    disk = new Uint8Array(libc.view(addr, bytes));
    disk.set(pattern(bytes, 5));
  }
  const spec: BdevChannelSpec = { name: 'Malloc0', module: o.backend === 'hold' ? 'hold' : 'malloc', blockSize: 512, numBlocks,
    stats: createStats(1), maxIoBlocks: 0, data };
  const ch = o.backend === 'hold' ? new HoldChannel(spec, 0) : new MallocChannel(spec, 0);
  const st = new ScsiCtrlState('scsi0');
  const lun = new ScsiLun({ bdevName: 'Malloc0', blockSize: 512, numBlocks, uuid: '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0',
    productName: 'Malloc disk', supportsUnmap: true, supportsWriteZeroes: true }, ch);
  st.luns[0] = lun;
  st.gens[0] = 1;
  const size = o.size ?? 64;
  const vr = new FakeVring(g, { size, callFd: fds[0], eventIdx: o.eventIdx ?? false });
  const vc = new FakeVring(g, { size, callFd: fds[1] });
  const ve = new FakeVring(g, { size, callFd: fds[2] });
  const q = new ScsiRequestQueue({ ctrlr: 'scsi0', qid: 2, mem: g.regions, ring: vr.spec(), kickFd: fds[3] }, st);
  const cq = new ScsiControlQueue({ ctrlr: 'scsi0', qid: 0, mem: g.regions, ring: vc.spec(), kickFd: fds[4] }, st);
  cq.tables = [null, null, q.table];
  const eq = new ScsiEventQueue({ ctrlr: 'scsi0', qid: 1, mem: g.regions, ring: ve.spec(), kickFd: fds[5] });
  const broken: string[] = [];
  q.onBroken = (_q, why) => broken.push(why);
  return { g, vr, vc, ve, q, cq, eq, st, lun, ch, disk, broken };
}
export type Rig = ReturnType<typeof rig>;

/** The 8-byte virtio-scsi LUN address of target/lun (flat space, as Linux). */
export function lunAddr(target: number, lun: number): number[] {
  return [1, target, 0x40 | (lun >> 8), lun & 0xff, 0, 0, 0, 0];
}

/** struct virtio_scsi_cmd_req (cut to `len` bytes) at fresh guest memory. */
export function cmdReq(g: FakeGuest, cdb: number[], o: { addr?: number[]; tag?: bigint; len?: number } = {}): number {
  const b = new Uint8Array(V.CMD_REQ_SIZE);
  b.set(o.addr ?? lunAddr(0, 0), 0);
  new DataView(b.buffer).setBigUint64(8, o.tag ?? 0x1122334455667788n, true);
  b.set(cdb, V.CMD_REQ_FIXED);
  const len = o.len ?? V.CMD_REQ_SIZE;
  const gpa = g.alloc(Math.max(len, 1), 8);
  g.write(gpa, b.subarray(0, len));
  return gpa;
}

/** A response buffer preset to 0xee. */
export function respBuf(g: FakeGuest, len: number = V.CMD_RESP_SIZE): number {
  const gpa = g.alloc(len, 8);
  g.fill(gpa, len, 0xee);
  return gpa;
}

export interface CmdResp { senseLen: number; resid: number; statusQualifier: number; status: number; response: number; sense: Uint8Array }

export function parseResp(g: FakeGuest, gpa: number): CmdResp {
  const r = g.read(gpa, V.CMD_RESP_SIZE), dv = new DataView(r.buffer);
  return { senseLen: dv.getUint32(0, true), resid: dv.getUint32(4, true), statusQualifier: dv.getUint16(8, true),
    status: r[10], response: r[11], sense: r.slice(12, 12 + Math.min(dv.getUint32(0, true), 96)) };
}

/** Sense key, ASC and ASCQ of fixed-format sense. */
export function senseOf(r: CmdResp): { key: number; asc: number; ascq: number } {
  return { key: r.sense[2] & 0xf, asc: r.sense[12], ascq: r.sense[13] };
}

export interface Cmd { head: number; req: number; resp: number; data: number }

/**
 * A Linux-shaped command: request, data-out, response, data-in. `dataIn`/`dataOut` are
 * byte counts (data-out is filled with pattern(seed)).
 */
export function cmd(t: Rig, cdb: number[], o: { dataIn?: number; dataOut?: number; seed?: number; addr?: number[];
  tag?: bigint; reqLen?: number; respLen?: number; indirect?: boolean } = {}): Cmd {
  const req = cmdReq(t.g, cdb, { addr: o.addr, tag: o.tag, len: o.reqLen });
  const bufs: Buf[] = [{ addr: req, len: o.reqLen ?? V.CMD_REQ_SIZE }];
  let data = 0;
  if (o.dataOut) {
    data = t.g.alloc(o.dataOut, 512);
    t.g.write(data, pattern(o.dataOut, o.seed ?? 1));
    bufs.push({ addr: data, len: o.dataOut });
  }
  const resp = respBuf(t.g, o.respLen ?? V.CMD_RESP_SIZE);
  bufs.push({ addr: resp, len: o.respLen ?? V.CMD_RESP_SIZE, write: true });
  if (o.dataIn) {
    data = t.g.alloc(o.dataIn, 512);
    t.g.fill(data, o.dataIn, 0xdd);
    bufs.push({ addr: data, len: o.dataIn, write: true });
  }
  const head = o.indirect ? t.vr.addIndirect(bufs) : t.vr.addChain(bufs);
  return { head, req, resp, data };
}

/** Publishes heads on a ring, polls a queue once, returns used entries (id -> len). */
export function runOn(v: FakeVring, q: { poll(): number }, heads: number[]): Map<number, number> {
  v.publish(...heads);
  q.poll();
  return new Map(v.takeUsed().map((u) => [u.id, u.len]));
}

export const be32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
export const be16 = (n: number) => [(n >>> 8) & 0xff, n & 0xff];
export function read10(lba: number, blocks: number): number[] { return [0x28, 0, ...be32(lba), 0, ...be16(blocks), 0]; }
export function write10(lba: number, blocks: number): number[] { return [0x2a, 0, ...be32(lba), 0, ...be16(blocks), 0]; }
export function inquiry(alloc: number, evpd = 0, page = 0): number[] { return [0x12, evpd, page, ...be16(alloc), 0]; }

// ---- control queue ----

/** A TMF request + 1-byte response (preset 0xee). */
export function tmf(t: Rig, subtype: number, o: { addr?: number[]; tag?: bigint; reqLen?: number; respLen?: number } = {}) {
  const b = new Uint8Array(V.TMF_REQ_SIZE), dv = new DataView(b.buffer);
  dv.setUint32(0, V.VIRTIO_SCSI_T_TMF, true);
  dv.setUint32(4, subtype, true);
  b.set(o.addr ?? lunAddr(0, 0), 8);
  dv.setBigUint64(16, o.tag ?? 0x1122334455667788n, true);
  const rl = o.reqLen ?? V.TMF_REQ_SIZE, wl = o.respLen ?? V.TMF_RESP_SIZE;
  const req = t.g.alloc(Math.max(rl, 1), 8);
  t.g.write(req, b.subarray(0, rl));
  const resp = respBuf(t.g, Math.max(wl, 1));
  const bufs: Buf[] = [{ addr: req, len: rl }];
  if (wl > 0) bufs.push({ addr: resp, len: wl, write: true });
  return { head: t.vc.addChain(bufs), resp };
}

/** An AN query/subscribe + 5-byte response. */
export function an(t: Rig, type: number, events: number) {
  const b = new Uint8Array(V.AN_REQ_SIZE), dv = new DataView(b.buffer);
  dv.setUint32(0, type, true);
  b.set(lunAddr(0, 0), 4);
  dv.setUint32(12, events, true);
  const req = t.g.alloc(16, 8);
  t.g.write(req, b);
  const resp = respBuf(t.g, 8);
  return { head: t.vc.addChain([{ addr: req, len: 16 }, { addr: resp, len: 5, write: true }]), resp };
}

// ---- event queue ----

export function eventBuf(t: Rig, len: number = V.EVENT_SIZE) {
  const gpa = respBuf(t.g, len);
  return { head: t.ve.addChain([{ addr: gpa, len, write: true }]), gpa };
}

export function parseEvent(g: FakeGuest, gpa: number) {
  const b = g.read(gpa, 16), dv = new DataView(b.buffer);
  return { event: dv.getUint32(0, true), lun: [...b.subarray(4, 12)], reason: dv.getUint32(12, true) };
}
