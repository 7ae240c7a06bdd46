// The reactor-side NVMe controller on synthetic guest memory: admin commands, queue
// creation rules, I/O through a malloc channel, shadow doorbells, and hostile input
// answered with NVMe status codes.
import { afterEach, describe, expect, it } from 'vitest';
import { NvmeCtrlr, NvmeCtrlrSpec, C_COUNT, C_BAD_DB, ERROR_LOG_BYTES } from '../../../targets/nvme/nvme_ctrlr.js';
import { ChangedNsList, CHANGED_NS_MAX } from '../../../targets/nvme/changed_ns.js';
import { BdevIo } from '../../../bdev/bdev_io.js';
import * as D from '../../../targets/nvme/nvme_defs.js';
import { MallocChannel } from '../../../bdev/malloc/malloc_channel.js';
import { createStats } from '../../../bdev/stats.js';
import { BdevChannelSpec } from '../../../bdev/types.js';
import * as libc from '../../../native/libc.js';
import { FakeGuest } from '../virtio/fake_driver.js';

const MiB = 1 << 20, PAGE = 4096;
const R = 0x10_0000;
const ASQ = R, ACQ = R + 0x1000, BUF = R + 0x10_0000, IOSQ = R + 0x4_0000, IOCQ = R + 0x6_0000;
const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });

/** A malloc channel that can hold I/Os in flight (as an asynchronous bdev would) until released. */
class HoldChannel extends MallocChannel {
  hold = false;
  readonly held: BdevIo[] = [];
  protected submitIo(io: BdevIo): void { if (this.hold) this.held.push(io); else super.submitIo(io); }
  release(): void { this.hold = false; for (const io of this.held.splice(0)) super.submitIo(io); }
}

/** `diskBlocks`: the RAM disk behind the namespace (room to grow it with resize()). */
function setup(o: { shadow?: boolean; blocks?: number; diskBlocks?: number } = {}) {
  const g = new FakeGuest([{ gpa: R, size: 4 * MiB }]);
  cleanup.push(() => g.destroy());
  const dbAddr = libc.mmap(PAGE);
  cleanup.push(() => libc.munmap(dbAddr, PAGE));
  const db = new Uint32Array(libc.view(dbAddr, PAGE));
  const blocks = o.blocks ?? 2048, bytes = (o.diskBlocks ?? blocks) * 512;
  const size = new Float64Array(new SharedArrayBuffer(8));
  size[0] = blocks;
  const fd = libc.memfdCreate('nvme-test-disk', bytes);
  const addr = libc.mmap(bytes, fd);
  cleanup.push(() => { libc.munmap(addr, bytes); libc.closeQuiet(fd); });
  const disk = new Uint8Array(libc.view(addr, bytes));
  const bdev: BdevChannelSpec = { name: 'Malloc0', module: 'malloc', blockSize: 512, numBlocks: blocks, stats: createStats(1),
    maxIoBlocks: 0, data: { addr, bytes }, size: size.buffer as SharedArrayBuffer };
  /** What Bdev.setNumBlocks does to every channel: the shared size cell changes. */
  const resize = (n: number) => { size[0] = n; };
  const irq = libc.eventfd();
  cleanup.push(() => libc.closeQuiet(irq));
  const wake = libc.eventfd();
  cleanup.push(() => libc.closeQuiet(wake));
  const counters = new SharedArrayBuffer(C_COUNT * 8);
  const spec: NvmeCtrlrSpec = {
    ctrlr: 't', mem: g.regions, dbHva: dbAddr, asq: ASQ, acq: ACQ, asqs: 16, acqs: 16, msix: [irq, irq, irq], wakeFd: wake,
    counters, shadowDoorbells: o.shadow ?? true, mappableDoorbells: false,
    identity: { serial: 'SN1', model: 'MODEL', firmware: '0.1', subnqn: 'nqn.2019-07.io.spdk:cnode0', cntlid: 1, dbbuf: o.shadow ?? true,
      vwc: true, compare: true, dsm: true, writeZeroes: true },
    namespaces: [{ nsid: 1, bdev, uuid: '12345678-1234-1234-1234-123456789abc' }],
    errorLog: new SharedArrayBuffer(ERROR_LOG_BYTES),
  };
  let ch: HoldChannel | null = null;
  const c = new NvmeCtrlr(spec, (s) => (ch = new HoldChannel(s, 0)));
  cleanup.push(() => c.destroy());
  const u8 = g.u8[0];
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const at = (gpa: number) => gpa - R;
  const q = { sqTail: 0, cqHead: 0, phase: 1 };
  const ioq = { sqTail: 0, cqHead: 0, phase: 1 };
  function sqe(base: number, slot: number, f: { opc: number; cid: number; nsid?: number; prp1?: number; prp2?: number; cdw?: number[]; flags?: number }) {
    const o = at(base) + slot * 64;
    u8.fill(0, o, o + 64);
    u8[o] = f.opc; u8[o + 1] = f.flags ?? 0; dv.setUint16(o + 2, f.cid, true); dv.setUint32(o + 4, f.nsid ?? 0, true);
    dv.setBigUint64(o + 24, BigInt(f.prp1 ?? 0), true); dv.setBigUint64(o + 32, BigInt(f.prp2 ?? 0), true);
    (f.cdw ?? []).forEach((v, i) => dv.setUint32(o + 40 + 4 * i, v >>> 0, true));
  }
  function reap(cqBase: number, st: typeof q, size: number) {
    const o = at(cqBase) + st.cqHead * 16;
    const dw3 = dv.getUint32(o + 12, true);
    if (((dw3 >>> 16) & 1) !== st.phase) return null;
    st.cqHead++; if (st.cqHead === size) { st.cqHead = 0; st.phase ^= 1; }
    const sf = dw3 >>> 17;
    return { dw0: dv.getUint32(o, true), sqhd: dv.getUint16(o + 8, true), sqid: dv.getUint16(o + 10, true), cid: dw3 & 0xffff,
      status: ((sf >> 8) & 7) << 8 | (sf & 0xff), dnr: (sf >> 14) & 1 };
  }
  function admin(f: Parameters<typeof sqe>[2]) {
    sqe(ASQ, q.sqTail, f);
    q.sqTail = (q.sqTail + 1) % 16; db[0] = q.sqTail;
    for (let i = 0; i < 3; i++) c.poll();
    const e = reap(ACQ, q, 16);
    db[1] = q.cqHead;
    return e;
  }
  return { g, c, db, u8, dv, disk, admin, sqe, reap, ioq, q, at, counters: new Float64Array(counters), ch: ch! as HoldChannel, spec, resize };
}

describe('NvmeCtrlr admin queue', () => {
  it('Identify controller, namespace, active NS list, NS descriptors; bad CNS and NSID', () => {
    const t = setup();
    let e = t.admin({ opc: D.ADM.IDENTIFY, cid: 1, prp1: BUF, cdw: [1] });
    expect(e).toMatchObject({ cid: 1, status: 0, sqid: 0 });
    const idc = t.u8.subarray(t.at(BUF), t.at(BUF) + 4096);
    expect(Buffer.from(idc.subarray(24, 29)).toString()).toBe('MODEL');
    expect(idc[76]).toBe(0);                      // CMIC
    expect(idc[77]).toBe(D.MDTS);
    expect(new DataView(idc.buffer, idc.byteOffset).getUint16(256, true) & 0x100).toBe(0x100); // OACS DBBUF
    e = t.admin({ opc: D.ADM.IDENTIFY, cid: 2, nsid: 1, prp1: BUF, cdw: [0] });
    expect(e!.status).toBe(0);
    expect(Number(t.dv.getBigUint64(t.at(BUF), true))).toBe(2048);
    expect((t.dv.getUint32(t.at(BUF) + 128, true) >> 16) & 0xff).toBe(9);
    e = t.admin({ opc: D.ADM.IDENTIFY, cid: 3, nsid: 0, prp1: BUF, cdw: [2] });
    expect(t.dv.getUint32(t.at(BUF), true)).toBe(1);
    expect(t.dv.getUint32(t.at(BUF) + 4, true)).toBe(0);
    e = t.admin({ opc: D.ADM.IDENTIFY, cid: 4, nsid: 1, prp1: BUF, cdw: [3] });
    expect(e!.status).toBe(0);
    expect(t.u8[t.at(BUF)]).toBe(3);
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 5, prp1: BUF, cdw: [0x55] })!.status).toBe(D.SC.INVALID_FIELD);
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 6, nsid: 7, prp1: BUF, cdw: [3] })!.status).toBe(D.SC.INVALID_NS);
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 7, prp1: 0x10, cdw: [1] })!.status).toBe(D.SC.DATA_XFER_ERROR);
    expect(t.admin({ opc: 0x99, cid: 8 })).toMatchObject({ status: D.SC.INVALID_OPCODE, dnr: 1 });
  });

  it('queue creation rules: ids, sizes, shared CQ, deletion order', () => {
    const t = setup();
    const createCq = (qid: number, size: number, cid: number, gpa = IOCQ) =>
      t.admin({ opc: D.ADM.CREATE_CQ, cid, prp1: gpa, cdw: [((size - 1) << 16) | qid, (1 << 16) | 3] })!.status;
    const createSq = (qid: number, size: number, cqid: number, cid: number, gpa = IOSQ) =>
      t.admin({ opc: D.ADM.CREATE_SQ, cid, prp1: gpa, cdw: [((size - 1) << 16) | qid, (cqid << 16) | 1] })!.status;
    expect(createCq(0, 64, 1)).toBe(D.SC.INVALID_QID);
    expect(createCq(1, 4096, 2)).toBe(D.SC.INVALID_QSIZE);
    expect(createCq(1, 64, 3, 0x7000_0000)).toBe(D.SC.DATA_XFER_ERROR);
    expect(createCq(1, 64, 4)).toBe(0);
    expect(createCq(1, 64, 5)).toBe(D.SC.INVALID_QID);
    expect(createSq(1, 64, 9, 6)).toBe(D.SC.CQ_INVALID);
    expect(createSq(1, 64, 1, 7)).toBe(0);
    expect(createSq(2, 64, 1, 8, IOSQ + 0x1000)).toBe(0);   // two SQs share CQ 1
    expect(createSq(2, 64, 1, 9)).toBe(D.SC.INVALID_QID);
    expect(t.admin({ opc: D.ADM.DELETE_CQ, cid: 10, cdw: [1] })!.status).toBe(D.SC.INVALID_QUEUE_DELETION);
    expect(t.admin({ opc: D.ADM.DELETE_SQ, cid: 11, cdw: [1] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.DELETE_SQ, cid: 12, cdw: [1] })!.status).toBe(D.SC.INVALID_QID);
    expect(t.admin({ opc: D.ADM.DELETE_SQ, cid: 13, cdw: [2] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.DELETE_CQ, cid: 14, cdw: [1] })!.status).toBe(0);
  });

  it('features and log pages', () => {
    const t = setup();
    expect(t.admin({ opc: D.ADM.SET_FEATURES, cid: 1, cdw: [D.FEAT.NUM_QUEUES, 0x00030003] })!.dw0).toBe(((D.MAX_IO_QUEUES - 1) << 16) | (D.MAX_IO_QUEUES - 1));
    expect(t.admin({ opc: D.ADM.SET_FEATURES, cid: 2, cdw: [D.FEAT.IRQ_COALESCE, 0x0a04] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.GET_FEATURES, cid: 3, cdw: [D.FEAT.IRQ_COALESCE] })!.dw0).toBe(0x0a04);
    expect(t.admin({ opc: D.ADM.GET_FEATURES, cid: 4, cdw: [0x77] })!.status).toBe(D.SC.INVALID_FIELD);
    expect(t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 5, prp1: BUF, cdw: [((512 / 4 - 1) << 16) | D.LOG.SMART] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 6, prp1: BUF, cdw: [((512 / 4 - 1) << 16) | D.LOG.FW_SLOT] })!.status).toBe(0);
    expect(t.u8[t.at(BUF)]).toBe(1);
    expect(t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 7, prp1: BUF, cdw: [(15 << 16) | 0x42] })!.status).toBe(D.SC.INVALID_LOG_PAGE);
    expect(t.admin({ opc: D.ADM.KEEP_ALIVE, cid: 8 })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.ABORT, cid: 9, cdw: [0x10001] })!.dw0 & 1).toBe(1);
  });

  it('I/O: write then read through the PRPs, shadow doorbells, bad doorbell values, hostile commands', () => {
    const t = setup();
    expect(t.admin({ opc: D.ADM.CREATE_CQ, cid: 1, prp1: IOCQ, cdw: [(63 << 16) | 1, (1 << 16) | 3] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.CREATE_SQ, cid: 2, prp1: IOSQ, cdw: [(63 << 16) | 1, (1 << 16) | 1] })!.status).toBe(0);
    const SHADOW = R + 0x20_0000, EVT = R + 0x20_1000;
    expect(t.admin({ opc: D.ADM.DBBUF_CONFIG, cid: 3, prp1: SHADOW, prp2: EVT })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.DBBUF_CONFIG, cid: 4, prp1: SHADOW + 8, prp2: EVT })!.status).toBe(D.SC.INVALID_FIELD);
    const shadow = (qid: number, v: number) => t.dv.setUint32(t.at(SHADOW) + 8 * qid, v, true);
    const io = (f: Parameters<typeof t.sqe>[2]) => {
      t.sqe(IOSQ, t.ioq.sqTail, f);
      t.ioq.sqTail = (t.ioq.sqTail + 1) % 64;
      shadow(1, t.ioq.sqTail);           // shadow doorbell only: no doorbell write
      for (let i = 0; i < 3; i++) t.c.poll();
      const e = t.reap(IOCQ, t.ioq, 64);
      t.dv.setUint32(t.at(SHADOW) + 12, t.ioq.cqHead, true);
      return e;
    };
    const DATA = R + 0x30_0000;
    for (let i = 0; i < 8192; i++) t.u8[t.at(DATA) + i] = (i * 7) & 0xff;
    expect(io({ opc: D.IO.WRITE, cid: 10, nsid: 1, prp1: DATA, prp2: DATA + PAGE, cdw: [8, 0, 15] })).toMatchObject({ status: 0, sqid: 1, cid: 10 });
    expect(t.disk[8 * 512 + 1]).toBe(7);
    t.u8.fill(0, t.at(DATA), t.at(DATA) + 8192);
    expect(io({ opc: D.IO.READ, cid: 11, nsid: 1, prp1: DATA, prp2: DATA + PAGE, cdw: [8, 0, 15] })!.status).toBe(0);
    expect(t.u8[t.at(DATA) + 8191]).toBe((8191 * 7) & 0xff);
    expect(io({ opc: D.IO.READ, cid: 12, nsid: 1, prp1: DATA, cdw: [2047, 0, 1] })!.status).toBe(D.SC.LBA_OUT_OF_RANGE);
    expect(io({ opc: D.IO.READ, cid: 13, nsid: 2, prp1: DATA, cdw: [0, 0, 0] })!.status).toBe(D.SC.INVALID_NS);
    expect(io({ opc: D.IO.READ, cid: 14, nsid: 1, prp1: DATA, cdw: [0, 0, 0xffff] })!.status).toBe(D.SC.INVALID_FIELD);
    expect(io({ opc: D.IO.READ, cid: 15, nsid: 1, prp1: 0x5000_0000, cdw: [0, 0, 0] })!.status).toBe(D.SC.DATA_XFER_ERROR);
    expect(io({ opc: D.IO.READ, cid: 16, nsid: 1, prp1: DATA, cdw: [0, 0, 0], flags: 0x40 })!.status).toBe(D.SC.DATA_SGL_LENGTH_INVALID); // SGL of 0 bytes
    expect(io({ opc: D.IO.READ, cid: 16, nsid: 1, prp1: DATA, cdw: [0, 0, 0], flags: 0x80 })!.status).toBe(D.SC.INVALID_FIELD); // metadata SGL
    expect(io({ opc: 0x7f, cid: 17, nsid: 1 })!.status).toBe(D.SC.INVALID_OPCODE);
    expect(io({ opc: D.IO.FLUSH, cid: 18, nsid: 1 })!.status).toBe(0);
    expect(io({ opc: D.IO.WRITE_ZEROES, cid: 19, nsid: 1, cdw: [8, 0, 0] })!.status).toBe(0);
    expect(t.disk[8 * 512 + 1]).toBe(0);
    // DSM deallocate of two ranges
    const RANGES = R + 0x31_0000;
    t.dv.setUint32(t.at(RANGES) + 4, 8, true); t.dv.setBigUint64(t.at(RANGES) + 8, 100n, true);
    t.dv.setUint32(t.at(RANGES) + 20, 8, true); t.dv.setBigUint64(t.at(RANGES) + 24, 200n, true);
    expect(io({ opc: D.IO.DSM, cid: 20, nsid: 1, prp1: RANGES, cdw: [1, 4] })!.status).toBe(0);
    expect(t.counters[4]).toBe(1); // shadow doorbells in use
    // a shadow tail beyond the queue: ignored, reported by an async event
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 30 })).toBeNull();
    shadow(1, 500);
    t.c.poll();
    expect(t.counters[C_BAD_DB]).toBe(1);
    const aer = t.reap(ACQ, (t as any).q ?? { cqHead: 0, phase: 1 }, 16);
    void aer;
    // the controller kept working
    shadow(1, t.ioq.sqTail);
    expect(io({ opc: D.IO.READ, cid: 21, nsid: 1, prp1: DATA, cdw: [0, 0, 0] })!.status).toBe(0);
    expect(t.g.canariesIntact()).toBe(true);
  });

  it('armInterrupt publishes EventIdx so the next shadow write traps', () => {
    const t = setup();
    t.admin({ opc: D.ADM.CREATE_CQ, cid: 1, prp1: IOCQ, cdw: [(63 << 16) | 1, (1 << 16) | 3] });
    t.admin({ opc: D.ADM.CREATE_SQ, cid: 2, prp1: IOSQ, cdw: [(63 << 16) | 1, (1 << 16) | 1] });
    const SHADOW = R + 0x20_0000, EVT = R + 0x20_1000;
    t.admin({ opc: D.ADM.DBBUF_CONFIG, cid: 3, prp1: SHADOW, prp2: EVT });
    t.dv.setUint32(t.at(SHADOW) + 8, 5, true);
    t.c.poll();
    expect(t.c.armInterrupt()).toBe(true);
    expect(t.dv.getUint32(t.at(EVT) + 8, true)).toBe(5);
    t.dv.setUint32(t.at(SHADOW) + 8, 6, true);
    expect(t.c.armInterrupt()).toBe(false);
  });
});

describe('NvmeCtrlr SGLs, Compare, Abort, Error Information log', () => {
  const LIST = R + 0x28_0000, DATA = R + 0x30_0000, DATA2 = R + 0x34_0000, DATA3 = R + 0x38_0000;

  function ioSetup() {
    const t = setup();
    expect(t.admin({ opc: D.ADM.CREATE_CQ, cid: 1, prp1: IOCQ, cdw: [(63 << 16) | 1, (1 << 16) | 3] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.CREATE_SQ, cid: 2, prp1: IOSQ, cdw: [(63 << 16) | 1, (1 << 16) | 1] })!.status).toBe(0);
    type Sqe = Parameters<typeof t.sqe>[2] & { sgl?: { addr: number; len: number; type: number } };
    const put = (gpa: number, addr: number, len: number, type: number) => {
      const o = t.at(gpa);
      t.dv.setBigUint64(o, BigInt(addr), true); t.dv.setUint32(o + 8, len, true);
      t.u8.fill(0, o + 12, o + 15); t.u8[o + 15] = type << 4;
    };
    const submit = (f: Sqe) => {
      t.sqe(IOSQ, t.ioq.sqTail, f);
      if (f.sgl) { put(IOSQ + t.ioq.sqTail * 64 + 24, f.sgl.addr, f.sgl.len, f.sgl.type); t.u8[t.at(IOSQ) + t.ioq.sqTail * 64 + 1] |= 0x40; }
      t.ioq.sqTail = (t.ioq.sqTail + 1) % 64; t.db[2] = t.ioq.sqTail;
    };
    const reapIo = () => { const e = t.reap(IOCQ, t.ioq, 64); t.db[3] = t.ioq.cqHead; return e; };
    const io = (f: Sqe) => { submit(f); for (let i = 0; i < 3; i++) t.c.poll(); return reapIo(); };
    /** Writes a descriptor list at gpa: [addr, len, type] each; returns a Last Segment descriptor for it. */
    const list = (gpa: number, ds: [number, number, number][]) => {
      ds.forEach(([a, l, ty], i) => put(gpa + 16 * i, a, l, ty));
      return { addr: gpa, len: 16 * ds.length, type: D.SGL.LAST_SEGMENT };
    };
    const logPage = (lid: number, bytes: number) => {
      expect(t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 0x77, prp1: BUF, prp2: BUF + PAGE, cdw: [((bytes / 4 - 1) << 16) | lid] })!.status).toBe(0);
      return new DataView(t.u8.buffer, t.u8.byteOffset + t.at(BUF), bytes);
    };
    return { ...t, submit, reapIo, io, list, logPage };
  }

  it('Identify advertises SGLs (byte aligned + Bit Bucket), ELPE, ACL and Compare', () => {
    const t = ioSetup();
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 9, prp1: BUF, cdw: [1] })!.status).toBe(0);
    const id = new DataView(t.u8.buffer, t.u8.byteOffset + t.at(BUF), 4096);
    expect(id.getUint32(536, true)).toBe(0x10001);
    expect(id.getUint8(262)).toBe(D.LOG_ERROR_ENTRIES - 1);
    expect(id.getUint8(258)).toBe(D.ACL);
    expect(id.getUint16(520, true) & 1).toBe(1);
  });

  it('SGL write from a Last Segment list, read back through one Data Block and through a Bit Bucket', () => {
    const t = ioSetup();
    for (let i = 0; i < 0x4000; i++) t.u8[t.at(DATA) + i] = (i * 13 + 5) & 0xff;
    // 2 KiB (4 blocks) from three byte-granular pieces
    const l = t.list(LIST, [[DATA + 0x100, 0x300, 0], [DATA + 0x2000, 0x480, 0], [DATA + 0x3001, 0x80, 0]]);
    expect(t.io({ opc: D.IO.WRITE, cid: 1, nsid: 1, sgl: l, cdw: [40, 0, 3] })).toMatchObject({ status: 0, cid: 1 });
    const want = Buffer.concat([t.u8.subarray(t.at(DATA) + 0x100, t.at(DATA) + 0x400), t.u8.subarray(t.at(DATA) + 0x2000, t.at(DATA) + 0x2480),
      t.u8.subarray(t.at(DATA) + 0x3001, t.at(DATA) + 0x3081)]);
    expect(Buffer.from(t.disk.subarray(40 * 512, 44 * 512)).equals(want)).toBe(true);
    // one Data Block at an odd address
    expect(t.io({ opc: D.IO.READ, cid: 2, nsid: 1, sgl: { addr: DATA2 + 3, len: 2048, type: D.SGL.DATA_BLOCK }, cdw: [40, 0, 3] })!.status).toBe(0);
    expect(Buffer.from(t.u8.subarray(t.at(DATA2) + 3, t.at(DATA2) + 3 + 2048)).equals(want)).toBe(true);
    // blocks 0 and 3 only: the middle goes to the bit bucket
    t.u8.fill(0xee, t.at(DATA3), t.at(DATA3) + 2048);
    const bb = t.list(LIST + 0x100, [[DATA3, 512, 0], [0, 1024, D.SGL.BIT_BUCKET], [DATA3 + 512, 512, 0]]);
    expect(t.io({ opc: D.IO.READ, cid: 3, nsid: 1, sgl: bb, cdw: [40, 0, 3] })!.status).toBe(0);
    expect(Buffer.from(t.u8.subarray(t.at(DATA3), t.at(DATA3) + 512)).equals(want.subarray(0, 512))).toBe(true);
    expect(Buffer.from(t.u8.subarray(t.at(DATA3) + 512, t.at(DATA3) + 1024)).equals(want.subarray(1536))).toBe(true);
    expect(t.u8[t.at(DATA3) + 1024]).toBe(0xee);
    // a Bit Bucket where data flows from the host; an SGL one block short
    expect(t.io({ opc: D.IO.WRITE, cid: 4, nsid: 1, sgl: bb, cdw: [40, 0, 3] })).toMatchObject({ status: D.SC.SGL_DESCRIPTOR_TYPE_INVALID, dnr: 1 });
    expect(t.io({ opc: D.IO.READ, cid: 5, nsid: 1, sgl: { addr: DATA2, len: 1536, type: 0 }, cdw: [40, 0, 3] })!.status).toBe(D.SC.DATA_SGL_LENGTH_INVALID);
    // DSM deallocate with its range list behind an SGL
    t.dv.setUint32(t.at(DATA) + 4, 4, true); t.dv.setBigUint64(t.at(DATA) + 8, 40n, true);
    expect(t.io({ opc: D.IO.DSM, cid: 6, nsid: 1, sgl: { addr: DATA, len: 16, type: 0 }, cdw: [0, 4] })!.status).toBe(0);
    expect(t.disk.subarray(40 * 512, 44 * 512).every((x) => x === 0)).toBe(true);
    expect(t.counters[11]).toBe(6); // SGL commands
    expect(t.counters[12]).toBe(3); // of them with a segment list
    expect(t.g.canariesIntact()).toBe(true);
  });

  it('Compare: a match, a miscompare (media error 85h, its LBA in the error log), SMART counts reads', () => {
    const t = ioSetup();
    for (let i = 0; i < 4096; i++) t.u8[t.at(DATA) + i] = (i * 7) & 0xff;
    expect(t.io({ opc: D.IO.WRITE, cid: 1, nsid: 1, prp1: DATA, cdw: [100, 0, 7] })!.status).toBe(0);
    expect(t.io({ opc: D.IO.COMPARE, cid: 2, nsid: 1, prp1: DATA, cdw: [100, 0, 7] })).toMatchObject({ status: 0, cid: 2 });
    expect(t.io({ opc: D.IO.COMPARE, cid: 3, nsid: 1, sgl: { addr: DATA + 1024, len: 1024, type: 0 }, cdw: [102, 0, 1] })!.status).toBe(0);
    t.u8[t.at(DATA) + 3 * 512 + 17] ^= 1;   // block 103 differs
    expect(t.io({ opc: D.IO.COMPARE, cid: 4, nsid: 1, prp1: DATA, cdw: [100, 0, 7] })).toMatchObject({ status: D.SC.COMPARE_FAILURE, dnr: 1, cid: 4 });
    expect(t.io({ opc: D.IO.COMPARE, cid: 5, nsid: 1, prp1: DATA, cdw: [2047, 0, 1] })!.status).toBe(D.SC.LBA_OUT_OF_RANGE);
    // the newest error first: the LBA-range error, then the miscompare
    const log = t.logPage(D.LOG.ERROR, 128);
    const errs = t.counters[5];
    expect(Number(log.getBigUint64(0, true))).toBe(errs);
    expect(log.getUint16(8, true)).toBe(1);      // SQID
    expect(log.getUint16(10, true)).toBe(5);     // CID
    expect(log.getUint16(14, true)).toBe(40);    // parameter error location: SLBA (CDW10)
    expect(Number(log.getBigUint64(16, true))).toBe(2047);
    expect(Number(log.getBigUint64(64, true))).toBe(errs - 1);
    expect(log.getUint16(64 + 10, true)).toBe(4);
    const sf = log.getUint16(64 + 12, true);
    expect([(sf >> 9) & 7, (sf >> 1) & 0xff, sf >> 15]).toEqual([2, 0x85, 1]); // SCT 2h, SC 85h, DNR
    expect(Number(log.getBigUint64(64 + 16, true))).toBe(103); // the first LBA that miscompared
    expect(log.getUint32(64 + 24, true)).toBe(1);               // NSID
    const smart = t.logPage(D.LOG.SMART, 512);
    expect(Number(smart.getBigUint64(64, true))).toBe(3);       // host read commands: the compares that read
    expect(Number(smart.getBigUint64(80, true))).toBe(1);       // host write commands
    expect(Number(smart.getBigUint64(32, true))).toBe(1);       // data units read: 20 blocks -> 1 (thousands, rounded up)
    expect(Number(smart.getBigUint64(48, true))).toBe(1);
    expect(Number(smart.getBigUint64(176, true))).toBe(errs);   // error log entries
    expect(t.c.info().compares_in_progress).toBe(0);
  });

  it('Compare turned off (disable_compare): ONCS bit 0 clear, the opcode answers Invalid Opcode', () => {
    const t = ioSetup();
    t.spec.identity.compare = false;
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 9, prp1: BUF, cdw: [1] })!.status).toBe(0);
    expect(t.dv.getUint16(t.at(BUF) + 520, true) & 1).toBe(0);
    expect(t.io({ opc: D.IO.COMPARE, cid: 2, nsid: 1, prp1: DATA, cdw: [100, 0, 7] })).toMatchObject({ status: D.SC.INVALID_OPCODE, dnr: 1 });
  });

  it('Compare waits in the SQ for a bounce buffer, and is fetched when one frees', () => {
    const t = ioSetup();
    t.ch.hold = true;
    for (let i = 0; i < D.COMPARE_BUFFERS + 1; i++) t.submit({ opc: D.IO.COMPARE, cid: 10 + i, nsid: 1, prp1: DATA, cdw: [0, 0, 0] });
    t.c.poll();
    expect(t.ch.held.length).toBe(D.COMPARE_BUFFERS);
    expect((t.c.info().sqs as { head: number }[])[1].head).toBe(D.COMPARE_BUFFERS); // the last one is still in the SQ
    expect(t.c.armInterrupt()).toBe(true);  // nothing it could fetch: may sleep
    t.c.disarmInterrupt();
    t.ch.release();
    expect(t.c.armInterrupt()).toBe(false); // a buffer is free: the waiting Compare can go
    t.c.disarmInterrupt();
    for (let i = 0; i < 3; i++) t.c.poll();
    const cids = [];
    for (let e = t.reapIo(); e; e = t.reapIo()) { expect(e.status).toBe(0); cids.push(e.cid); }
    expect(cids.sort()).toEqual([10, 11, 12, 13, 14]);
  });

  it('Abort: an unfetched command is aborted, an in-flight one is not, an AER is; unknown CIDs are not', () => {
    const t = ioSetup();
    t.ch.hold = true;
    t.submit({ opc: D.IO.WRITE, cid: 40, nsid: 1, prp1: DATA, cdw: [0, 0, 0] });
    t.c.poll();
    expect(t.ch.held.length).toBe(1);
    expect(t.admin({ opc: D.ADM.ABORT, cid: 20, cdw: [(40 << 16) | 1] })).toMatchObject({ status: 0, dw0: 1 }); // in flight
    // a write submitted (doorbell rung) but not fetched when the Abort is processed
    t.disk.fill(0, 512, 1024);
    t.u8.fill(0x5a, t.at(DATA2), t.at(DATA2) + 512);
    t.sqe(IOSQ, t.ioq.sqTail, { opc: D.IO.WRITE, cid: 41, nsid: 1, prp1: DATA2, cdw: [1, 0, 0] });
    t.ioq.sqTail++; t.db[2] = t.ioq.sqTail;
    expect(t.admin({ opc: D.ADM.ABORT, cid: 21, cdw: [(41 << 16) | 1] })).toMatchObject({ status: 0, dw0: 0 });
    expect(t.reapIo()).toMatchObject({ cid: 41, status: D.SC.ABORT_REQ, dnr: 0 });
    expect(t.disk[512]).toBe(0);       // never written
    expect(t.ch.held.length).toBe(1);
    // not found: a CID nobody used, an SQ that does not exist
    expect(t.admin({ opc: D.ADM.ABORT, cid: 22, cdw: [(99 << 16) | 1] })!.dw0).toBe(1);
    expect(t.admin({ opc: D.ADM.ABORT, cid: 23, cdw: [(40 << 16) | 9] })!.dw0).toBe(1);
    // an outstanding Asynchronous Event Request
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 30 })).toBeNull();
    expect(t.admin({ opc: D.ADM.ABORT, cid: 24, cdw: [30 << 16] })).toMatchObject({ cid: 30, status: D.SC.ABORT_REQ });
    expect(t.reap(ACQ, t.q, 16)).toMatchObject({ cid: 24, status: 0, dw0: 0 });
    t.db[1] = t.q.cqHead;
    t.ch.release();
    t.c.poll();
    expect(t.reapIo()).toMatchObject({ cid: 40, status: 0 });
    expect(t.counters[15]).toBe(5); // Abort commands
    expect(t.counters[16]).toBe(2); // commands aborted
  });

  it('Abort Command Limit: Abort completions the full admin CQ holds back count as outstanding', () => {
    const t = ioSetup();
    const sub = (f: Parameters<typeof t.sqe>[2]) => { t.sqe(ASQ, t.q.sqTail, f); t.q.sqTail = (t.q.sqTail + 1) % 16; t.db[0] = t.q.sqTail; };
    for (let i = 0; i < 15; i++) sub({ opc: D.ADM.KEEP_ALIVE, cid: 100 + i }); // fills the 16-entry admin CQ
    t.c.poll();
    for (let i = 0; i < D.ACL + 2; i++) sub({ opc: D.ADM.ABORT, cid: 200 + i, cdw: [(7 << 16) | 1] });
    t.c.poll();
    for (let i = 0; i < 15; i++) expect(t.reap(ACQ, t.q, 16)!.cid).toBe(100 + i);
    t.db[1] = t.q.cqHead;
    t.c.poll();
    const got = [];
    for (let e = t.reap(ACQ, t.q, 16); e; e = t.reap(ACQ, t.q, 16)) got.push([e.cid, e.status, e.dw0]);
    expect(got).toEqual([[200, 0, 1], [201, 0, 1], [202, 0, 1], [203, 0, 1], [204, D.SC.ABORT_LIMIT, 0]]);
  });

  it('Error Information log: a ring of the newest entries, newest first; status, location, NSID per command', () => {
    const t = ioSetup();
    const before = t.counters[5];
    expect(t.io({ opc: 0x7e, cid: 1, nsid: 1 })!.status).toBe(D.SC.INVALID_OPCODE);
    expect(t.io({ opc: D.IO.READ, cid: 2, nsid: 9, prp1: DATA })!.status).toBe(D.SC.INVALID_NS);
    let log = t.logPage(D.LOG.ERROR, 128);
    expect(Number(log.getBigUint64(0, true))).toBe(before + 2);
    expect([log.getUint16(10, true), log.getUint16(14, true), log.getUint32(24, true)]).toEqual([2, 4, 9]);       // NSID field
    expect([log.getUint16(64 + 10, true), log.getUint16(64 + 14, true)]).toEqual([1, 0]);                       // opcode
    for (let i = 0; i < 70; i++) t.io({ opc: 0x7e, cid: 1000 + i, nsid: 1 });
    log = t.logPage(D.LOG.ERROR, D.LOG_ERROR_ENTRIES * 64);
    const total = t.counters[5];
    expect(total).toBe(before + 72);
    for (let k = 0; k < D.LOG_ERROR_ENTRIES; k++) expect(Number(log.getBigUint64(64 * k, true))).toBe(total - k);
    expect(log.getUint16(10, true)).toBe(1069);
    // a controller reset: a new controller on the device's ring and counters keeps the entries
    t.c.destroy();
    t.db.fill(0);
    t.u8.fill(0, t.at(ACQ), t.at(ACQ) + 16 * 16);
    const c2 = new NvmeCtrlr(t.spec, (s) => new MallocChannel(s, 0));
    cleanup.push(() => c2.destroy());
    t.sqe(ASQ, 0, { opc: D.ADM.GET_LOG_PAGE, cid: 5, prp1: BUF, cdw: [(15 << 16) | D.LOG.ERROR] });
    t.db[0] = 1;
    c2.poll();
    expect(t.reap(ACQ, { sqTail: 0, cqHead: 0, phase: 1 }, 16)).toMatchObject({ cid: 5, status: 0 });
    expect(Number(t.dv.getBigUint64(t.at(BUF), true))).toBe(total);
    expect(t.dv.getUint16(t.at(BUF) + 10, true)).toBe(1069);
  });
});

describe('NvmeCtrlr namespace resize: Changed Namespace List, Namespace Attribute Changed events', () => {
  const NS_NOTICE = D.AER_TYPE_NOTICE | (D.AER_INFO_NS_ATTR_CHANGED << 8) | (D.LOG.CHANGED_NS << 16); // 0x00040002

  function rsSetup() {
    const t = setup({ blocks: 2048, diskBlocks: 4096 });
    const nsze = () => {
      expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 0x60, nsid: 1, prp1: BUF, cdw: [D.CNS.NS] })!.status).toBe(0);
      const o = t.at(BUF);
      return [0, 8, 16].map((k) => Number(t.dv.getBigUint64(o + k, true))); // NSZE, NCAP, NUSE
    };
    /** Get Log Page 04h (4 KiB); `rae`: Retain Asynchronous Event. Returns the NSIDs up to the first zero. */
    const changed = (rae = false) => {
      t.u8.fill(0xa5, t.at(BUF), t.at(BUF) + 4096);
      const e = t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 0x61, prp1: BUF, cdw: [(1023 << 16) | (rae ? D.LOG_RAE : 0) | D.LOG.CHANGED_NS] });
      expect(e!.status).toBe(0);
      const ids = [];
      for (let i = 0; i < 1024; i++) { const v = t.dv.getUint32(t.at(BUF) + 4 * i, true); if (v === 0) break; ids.push(v); }
      for (let i = ids.length; i < 1024; i++) expect(t.dv.getUint32(t.at(BUF) + 4 * i, true)).toBe(0);
      return ids;
    };
    /** Polls, then returns the admin completions that came out. */
    const drain = () => {
      for (let i = 0; i < 3; i++) t.c.poll();
      const out = [];
      for (let e = t.reap(ACQ, t.q, 16); e; e = t.reap(ACQ, t.q, 16)) out.push(e);
      t.db[1] = t.q.cqHead;
      return out;
    };
    return { ...t, nsze, changed, drain };
  }

  it('Identify Controller advertises Namespace Attribute Notices (OAES bit 8); the host enables them with feature 0Bh bit 8', () => {
    const t = rsSetup();
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 1, prp1: BUF, cdw: [D.CNS.CTRLR] })!.status).toBe(0);
    expect(t.dv.getUint32(t.at(BUF) + 92, true)).toBe(D.OAES_NS_ATTR);
    expect(t.admin({ opc: D.ADM.GET_FEATURES, cid: 2, cdw: [D.FEAT.ASYNC_EVENT] })!.dw0).toBe(0);
    expect(t.admin({ opc: D.ADM.SET_FEATURES, cid: 3, cdw: [D.FEAT.ASYNC_EVENT, D.AEC_NS_ATTR] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.GET_FEATURES, cid: 4, cdw: [D.FEAT.ASYNC_EVENT] })!.dw0).toBe(D.AEC_NS_ATTR);
  });

  it('a grown bdev: Identify Namespace and I/O see the new size at once; without AEC bit 8 only the log records it', () => {
    const t = rsSetup();
    expect(t.admin({ opc: D.ADM.CREATE_CQ, cid: 1, prp1: IOCQ, cdw: [(63 << 16) | 1, (1 << 16) | 3] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.CREATE_SQ, cid: 2, prp1: IOSQ, cdw: [(63 << 16) | 1, (1 << 16) | 1] })!.status).toBe(0);
    const io = (f: Parameters<typeof t.sqe>[2]) => {
      t.sqe(IOSQ, t.ioq.sqTail, f); t.ioq.sqTail++; t.db[2] = t.ioq.sqTail;
      for (let i = 0; i < 3; i++) t.c.poll();
      const e = t.reap(IOCQ, t.ioq, 64); t.db[3] = t.ioq.cqHead; return e;
    };
    const DATA = R + 0x30_0000;
    t.u8.fill(0x3c, t.at(DATA), t.at(DATA) + 512);
    expect(t.nsze()).toEqual([2048, 2048, 2048]);
    expect(io({ opc: D.IO.WRITE, cid: 10, nsid: 1, prp1: DATA, cdw: [3000, 0, 0] })!.status).toBe(D.SC.LBA_OUT_OF_RANGE);
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 30 })).toBeNull();
    t.resize(4096);
    expect(t.c.nsResized(1)).toBe('disabled');
    expect(t.c.nsResized(7)).toBe('no-namespace');
    expect(t.nsze()).toEqual([4096, 4096, 4096]);
    expect(io({ opc: D.IO.WRITE, cid: 11, nsid: 1, prp1: DATA, cdw: [3000, 0, 0] })!.status).toBe(0);
    expect(t.disk[3000 * 512 + 7]).toBe(0x3c);
    expect(t.drain()).toEqual([]);               // no event: the host did not enable them
    expect(t.changed()).toEqual([1]);
    expect(t.changed()).toEqual([]);             // cleared by the read
    expect(t.c.info().namespaces).toEqual([{ nsid: 1, blocks: 4096, block_size: 512 }]);
  });

  it('the notice goes to an outstanding AER; further ones are masked until the log is read with RAE cleared', () => {
    const t = rsSetup();
    expect(t.admin({ opc: D.ADM.SET_FEATURES, cid: 1, cdw: [D.FEAT.ASYNC_EVENT, D.AEC_NS_ATTR] })!.status).toBe(0);
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 40 })).toBeNull();
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 41 })).toBeNull();
    expect(t.c.armInterrupt()).toBe(true);
    t.c.disarmInterrupt();
    t.resize(3000);
    expect(t.c.nsResized(1)).toBe('queued');
    expect(t.c.armInterrupt()).toBe(false);        // an event to report: the reactor must not sleep
    t.c.disarmInterrupt();
    expect(t.drain()).toEqual([expect.objectContaining({ cid: 40, status: 0, dw0: NS_NOTICE })]);
    // masked: the second change only goes into the list; AER 41 stays outstanding
    t.resize(3500);
    expect(t.c.nsResized(1)).toBe('masked');
    expect(t.drain()).toEqual([]);
    expect(t.c.info().async_events).toMatchObject({ outstanding_requests: 1, pending: 0, masked_log_pages: [4], changed_ns_list: [1] });
    // read with Retain Asynchronous Event: the list is read (and cleared), the event stays uncleared
    expect(t.changed(true)).toEqual([1]);
    t.resize(3600);
    expect(t.c.nsResized(1)).toBe('masked');
    expect(t.drain()).toEqual([]);
    // read with RAE cleared: the event is cleared, the next change is reported again
    expect(t.changed()).toEqual([1]);
    expect(t.nsze()).toEqual([3600, 3600, 3600]);
    t.resize(4096);
    expect(t.c.nsResized(1)).toBe('queued');
    expect(t.drain()).toEqual([expect.objectContaining({ cid: 41, status: 0, dw0: NS_NOTICE })]);
    expect(t.nsze()).toEqual([4096, 4096, 4096]);
    expect(t.c.info().async_events).toMatchObject({ config: D.AEC_NS_ATTR, outstanding_requests: 0, pending: 0 });
  });

  it('an event with no AER outstanding waits for the next one; Error Information log reads clear the error type', () => {
    const t = rsSetup();
    expect(t.admin({ opc: D.ADM.SET_FEATURES, cid: 1, cdw: [D.FEAT.ASYNC_EVENT, D.AEC_NS_ATTR] })!.status).toBe(0);
    t.resize(4000);
    expect(t.c.nsResized(1)).toBe('queued');
    expect(t.drain()).toEqual([]);
    expect(t.c.info().async_events).toMatchObject({ pending: 1, masked_log_pages: [4] });
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 50 })).toMatchObject({ cid: 50, status: 0, dw0: NS_NOTICE });
    // an invalid doorbell value: one error event, the next one masked until the Error log is read
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 51 })).toBeNull();
    expect(t.admin({ opc: D.ADM.ASYNC_EVENT, cid: 52 })).toBeNull();
    t.admin({ opc: D.ADM.CREATE_CQ, cid: 2, prp1: IOCQ, cdw: [(63 << 16) | 1, (1 << 16) | 3] });
    t.admin({ opc: D.ADM.CREATE_SQ, cid: 3, prp1: IOSQ, cdw: [(63 << 16) | 1, (1 << 16) | 1] });
    const badIoDb = () => { t.db[2] = 500; for (let i = 0; i < 2; i++) t.c.poll(); };  // beyond the 64-entry SQ
    badIoDb();
    const errEvent = D.AER_TYPE_ERROR | (D.AER_INFO_INVALID_DB_VALUE << 8) | (D.LOG.ERROR << 16);
    expect(t.drain()).toEqual([expect.objectContaining({ cid: 51, dw0: errEvent })]);
    badIoDb();
    expect(t.drain()).toEqual([]);
    expect(t.counters[C_BAD_DB]).toBe(2);
    expect(t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 4, prp1: BUF, cdw: [(15 << 16) | D.LOG.ERROR] })!.status).toBe(0);
    badIoDb();
    expect(t.drain()).toEqual([expect.objectContaining({ cid: 52, dw0: errEvent })]);
  });

  it('a controller reset (a new controller) starts with events disabled and an empty list', () => {
    const t = rsSetup();
    expect(t.admin({ opc: D.ADM.SET_FEATURES, cid: 1, cdw: [D.FEAT.ASYNC_EVENT, D.AEC_NS_ATTR] })!.status).toBe(0);
    t.resize(2500);
    expect(t.c.nsResized(1)).toBe('queued');
    t.c.destroy();
    t.db.fill(0);
    t.u8.fill(0, t.at(ACQ), t.at(ACQ) + 16 * 16);
    const c2 = new NvmeCtrlr(t.spec, (s) => new MallocChannel(s, 0));
    cleanup.push(() => c2.destroy());
    expect(c2.nsResized(1)).toBe('disabled');
    expect(c2.info().async_events).toMatchObject({ config: 0, pending: 0, masked_log_pages: [], changed_ns_list: [1] });
    expect(c2.namespaces()[0].nblocks).toBe(2500);
  });

  it('Identify CNS 06h/05h (NVM command set specific controller and namespace) for CSI 0; other CSIs are refused', () => {
    const t = rsSetup();
    t.u8.fill(0xee, t.at(BUF), t.at(BUF) + 4096);
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 1, prp1: BUF, cdw: [D.CNS.CTRLR_CSI, 0] })).toMatchObject({ status: 0 });
    expect(t.u8.subarray(t.at(BUF), t.at(BUF) + 4096).every((x) => x === 0)).toBe(true);
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 2, prp1: BUF, cdw: [D.CNS.CTRLR_CSI, 2 << 24] })).toMatchObject({ status: D.SC.INVALID_FIELD, dnr: 1 });
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 3, nsid: 1, prp1: BUF, cdw: [D.CNS.NS_CSI, 0] })).toMatchObject({ status: 0 });
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 4, nsid: 0, prp1: BUF, cdw: [D.CNS.NS_CSI, 0] })).toMatchObject({ status: D.SC.INVALID_NS });
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 5, nsid: 1, prp1: BUF, cdw: [D.CNS.NS_CSI, 2 << 24] })).toMatchObject({ status: D.SC.INVALID_FIELD });
    expect(t.admin({ opc: D.ADM.IDENTIFY, cid: 6, prp1: BUF, cdw: [0x1c] })).toMatchObject({ status: D.SC.INVALID_FIELD });
    // the error log entry of the refused CSI points at CDW11 bits 31:24 (byte 47)
    expect(t.admin({ opc: D.ADM.GET_LOG_PAGE, cid: 7, prp1: BUF, cdw: [(31 << 16) | D.LOG.ERROR] })!.status).toBe(0);
    expect([t.dv.getUint16(t.at(BUF) + 10, true), t.dv.getUint16(t.at(BUF) + 14, true)]).toEqual([6, 40]);
    expect([t.dv.getUint16(t.at(BUF) + 64 + 10, true), t.dv.getUint16(t.at(BUF) + 64 + 14, true)]).toEqual([5, 47]);
  });
});

describe('ChangedNsList', () => {
  it('NSIDs in increasing order, each once; more than 1024 changes: FFFFFFFFh then zeros; clear', () => {
    const l = new ChangedNsList();
    for (const id of [9, 3, 9, 0xfffffffe]) l.add(id);
    expect(l.list()).toEqual([3, 9, 0xfffffffe]);
    let dv = new DataView(l.page().buffer);
    expect([dv.getUint32(0, true), dv.getUint32(4, true), dv.getUint32(8, true), dv.getUint32(12, true)]).toEqual([3, 9, 0xfffffffe, 0]);
    l.clear();
    for (let i = 1; i <= CHANGED_NS_MAX; i++) l.add(i);
    expect(l.list().length).toBe(1024);
    l.add(1);                                    // already there: still fits
    expect(new DataView(l.page().buffer).getUint32(4092, true)).toBe(1024);
    l.add(5000);
    const p = l.page();
    dv = new DataView(p.buffer);
    expect(dv.getUint32(0, true)).toBe(0xffffffff);
    expect(p.subarray(4).every((x) => x === 0)).toBe(true);
    l.add(7);                                    // stays overflowed until read
    expect(l.list()).toEqual([0xffffffff]);
    l.clear();
    expect(l.list()).toEqual([]);
    expect(l.page().every((x) => x === 0)).toBe(true);
  });
});
