// ScsiRequestQueue (virtio-scsi request queue) on synthetic rings: layouts, SCSI answers
// and every kind of bad input the issue lists, each answered as the specs prescribe.
import { describe, expect, it } from 'vitest';
import * as V from '../../../targets/scsi/virtio_scsi.js';
import { INFLIGHT_WORDS } from '../../../targets/scsi/scsi_queue.js';
import { Buf, pattern } from './fake_driver.js';
import {
  be32, cmd, cmdReq, HoldChannel, inquiry, lunAddr, parseResp, R0, R1, read10, respBuf, rig, runOn, senseOf, write10,
  type Rig, type Cmd,
} from './scsi_driver.js';

const run = (t: Rig, ...cs: Cmd[]) => runOn(t.vr, t.q, cs.map((c) => c.head));
const ascii = (b: Uint8Array) => new TextDecoder().decode(b).trim();

describe('virtio-scsi config space and LUN addresses', () => {
  it('config space carries the limits and sizes', () => {
    const c = V.scsiConfigSpace(4), dv = new DataView(c.buffer);
    expect(c.length).toBe(36);
    expect(dv.getUint32(0, true)).toBe(4);
    expect(dv.getUint32(16, true)).toBe(16);
    expect(dv.getUint32(20, true)).toBe(96);
    expect(dv.getUint32(24, true)).toBe(32);
    expect(dv.getUint16(28, true)).toBe(0);
    expect(dv.getUint16(30, true)).toBe(7);
    expect(dv.getUint32(32, true)).toBe(0);
  });
  it('decodes flat and peripheral addresses, rejects malformed ones', () => {
    expect(V.decodeLun(1, 3, 0x40, 0)).toBe(3 << 16);
    expect(V.decodeLun(1, 3, 0x41, 2)).toBe((3 << 16) | 0x102);
    expect(V.decodeLun(1, 2, 0, 5)).toBe((2 << 16) | 5);
    expect(V.decodeLun(0, 0, 0, 0)).toBe(-1);
    expect(V.decodeLun(1, 0, 0x80, 0)).toBe(-1);
    expect(V.decodeLun(2, 0, 0x40, 0)).toBe(-1);
  });
});

describe('ScsiRequestQueue: commands', () => {
  it('INQUIRY returns standard data, residual and used length (request, response, data-in)', () => {
    const t = rig();
    const c = cmd(t, inquiry(96), { dataIn: 96 });
    const used = run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.response).toBe(V.VIRTIO_SCSI_S_OK);
    expect(r.status).toBe(0);
    expect(r.senseLen).toBe(0);
    const d = t.g.read(c.data, 96);
    expect(ascii(d.subarray(8, 16))).toBe('VHOSTD');
    expect(ascii(d.subarray(16, 32))).toBe('Malloc disk');
    expect(used.get(c.head)).toBe(V.CMD_RESP_SIZE + 74);
    expect(r.resid).toBe(96 - 74);
  });

  it('VPD 0x83 carries the NAA designator of the LUN', () => {
    const t = rig();
    const c = cmd(t, inquiry(255, 1, 0x83), { dataIn: 255 });
    run(t, c);
    const d = t.g.read(c.data, 24);
    expect(d[1]).toBe(0x83);
    expect(d[5] & 0xf).toBe(3);
    expect([...d.subarray(8, 24)]).toEqual([...t.lun.naa]);
  });

  it('WRITE(10) and READ(10) round-trip through the malloc bdev, direct and indirect', () => {
    const t = rig();
    const w = cmd(t, write10(16, 8), { dataOut: 4096, seed: 9 });
    const used = run(t, w);
    expect(parseResp(t.g, w.resp).response).toBe(0);
    expect(parseResp(t.g, w.resp).status).toBe(0);
    expect(used.get(w.head)).toBe(V.CMD_RESP_SIZE);
    expect(t.disk!.slice(16 * 512, 16 * 512 + 4096)).toEqual(pattern(4096, 9));
    const r = cmd(t, read10(16, 8), { dataIn: 4096, indirect: true });
    const used2 = run(t, r);
    expect(parseResp(t.g, r.resp).status).toBe(0);
    expect(used2.get(r.head)).toBe(V.CMD_RESP_SIZE + 4096);
    expect(t.g.read(r.data, 4096)).toEqual(pattern(4096, 9));
  });

  it('response and data-in in one descriptor, request split in three, data spanning two regions', () => {
    const t = rig();
    const req = cmdReq(t.g, read10(0, 8));
    // the request in 3 pieces: copy its bytes into three separate buffers
    const bytes = t.g.read(req, V.CMD_REQ_SIZE);
    const p1 = t.g.alloc(5), p2 = t.g.alloc(20), p3 = t.g.alloc(26);
    t.g.write(p1, bytes.subarray(0, 5)); t.g.write(p2, bytes.subarray(5, 25)); t.g.write(p3, bytes.subarray(25));
    const both = R1 - 108 - 1000; // response + first 1000 data bytes at the end of R0, rest in R1
    t.g.fill(both, 108 + 4096, 0xee);
    const bufs: Buf[] = [{ addr: p1, len: 5 }, { addr: p2, len: 20 }, { addr: p3, len: 26 },
      { addr: both, len: 108 + 4096, write: true }];
    const head = t.vr.addChain(bufs);
    const used = runOn(t.vr, t.q, [head]);
    expect(used.get(head)).toBe(108 + 4096);
    const r = parseResp(t.g, both);
    expect(r.response).toBe(0);
    expect(r.status).toBe(0);
    expect(t.g.read(both + 108, 4096)).toEqual(t.disk!.slice(0, 4096));
  });

  it('a response split over two descriptors (6 + 102 bytes) is written whole, with and without sense', () => {
    const t = rig();
    const one = (cdb: number[]) => {
      const req = cmdReq(t.g, cdb);
      const a = respBuf(t.g, 6), b = respBuf(t.g, 102), data = t.g.alloc(4096, 512);
      const head = t.vr.addChain([{ addr: req, len: V.CMD_REQ_SIZE }, { addr: a, len: 6, write: true },
        { addr: b, len: 102, write: true }, { addr: data, len: 4096, write: true }]);
      const used = runOn(t.vr, t.q, [head]);
      const r = new Uint8Array([...t.g.read(a, 6), ...t.g.read(b, 102)]), dv = new DataView(r.buffer);
      return { used: used.get(head), senseLen: dv.getUint32(0, true), resid: dv.getUint32(4, true), status: r[10], response: r[11],
        key: r[12 + 2] & 0xf, data };
    };
    const ok = one(read10(8, 8));
    expect(ok).toMatchObject({ used: 108 + 4096, senseLen: 0, resid: 0, status: 0, response: 0 });
    expect(t.g.read(ok.data, 4096)).toEqual(t.disk!.slice(8 * 512, 8 * 512 + 4096));
    const bad = one(read10(8192, 1)); // beyond the end: CHECK CONDITION, sense split over both descriptors
    expect(bad).toMatchObject({ used: 108, status: 2, response: 0, key: 5 });
    expect(bad.senseLen).toBeGreaterThanOrEqual(18);
  });

  it('READ CAPACITY(16), TEST UNIT READY and REPORT LUNS', () => {
    const t = rig();
    const rc = cmd(t, [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(32), 0, 0], { dataIn: 32 });
    const tur = cmd(t, [0, 0, 0, 0, 0, 0]);
    const rl = cmd(t, [0xa0, 0, 0, 0, 0, 0, ...be32(64), 0, 0], { dataIn: 64 });
    const used = run(t, rc, tur, rl);
    const cap = new DataView(t.g.read(rc.data, 12).buffer);
    expect(cap.getUint32(4)).toBe(8191);
    expect(cap.getUint32(8)).toBe(512);
    expect(parseResp(t.g, tur.resp).status).toBe(0);
    expect(used.get(tur.head)).toBe(V.CMD_RESP_SIZE);
    const l = t.g.read(rl.data, 16);
    expect(new DataView(l.buffer).getUint32(0)).toBe(8);
    expect([...l.subarray(8, 16)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('ScsiRequestQueue: bad input', () => {
  it('unknown opcode: CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE', () => {
    const t = rig();
    const c = cmd(t, [0xd9, 0, 0, 0, 0, 0], { dataIn: 512 });
    run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.response).toBe(V.VIRTIO_SCSI_S_OK);
    expect(r.status).toBe(2);
    expect(r.senseLen).toBe(18);
    expect(senseOf(r)).toEqual({ key: 5, asc: 0x20, ascq: 0 });
    expect(r.resid).toBe(512);
  });

  it('a CDB shorter than its opcode needs (request header cut short): INVALID FIELD IN CDB', () => {
    const t = rig();
    // READ(10) needs 10 CDB bytes: the request carries 6
    const c = cmd(t, read10(0, 1), { reqLen: V.CMD_REQ_FIXED + 6, dataIn: 512 });
    run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.status).toBe(2);
    expect(senseOf(r)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
  });

  it('request header with no CDB at all: INVALID FIELD IN CDB', () => {
    const t = rig();
    const c = cmd(t, [], { reqLen: V.CMD_REQ_FIXED });
    run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.status).toBe(2);
    expect(senseOf(r).asc).toBe(0x24);
  });

  it('transfer length larger than the data-in buffer: VIRTIO_SCSI_S_OVERRUN, no I/O', () => {
    const t = rig();
    const c = cmd(t, read10(0, 8), { dataIn: 512 });
    run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.response).toBe(V.VIRTIO_SCSI_S_OVERRUN);
    expect(r.status).toBe(2);
    expect(senseOf(r)).toEqual({ key: 0xb, asc: 0x4b, ascq: 0x08 });
  });

  it('WRITE with a data-in buffer (wrong direction): VIRTIO_SCSI_S_OVERRUN; disk untouched', () => {
    const t = rig();
    const before = t.disk!.slice(0, 512);
    const c = cmd(t, write10(0, 1), { dataIn: 512 });
    run(t, c);
    expect(parseResp(t.g, c.resp).response).toBe(V.VIRTIO_SCSI_S_OVERRUN);
    expect(t.disk!.slice(0, 512)).toEqual(before);
  });

  it('a longer buffer than the transfer is fine: residual reported', () => {
    const t = rig();
    const c = cmd(t, read10(0, 1), { dataIn: 4096 });
    const used = run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.status).toBe(0);
    expect(r.resid).toBe(4096 - 512);
    expect(used.get(c.head)).toBe(V.CMD_RESP_SIZE + 512);
  });

  it('LBA beyond the end: LOGICAL BLOCK ADDRESS OUT OF RANGE', () => {
    const t = rig();
    const c = cmd(t, read10(8190, 8), { dataIn: 4096 });
    run(t, c);
    const r = parseResp(t.g, c.resp);
    expect(r.status).toBe(2);
    expect(senseOf(r)).toEqual({ key: 5, asc: 0x21, ascq: 0 });
  });

  it('LUN addresses outside the controller: BAD_TARGET or INCORRECT_LUN', () => {
    const t = rig();
    const cases: [number[], number][] = [
      [[0, 0, 0x40, 0, 0, 0, 0, 0], V.VIRTIO_SCSI_S_BAD_TARGET],      // byte 0 must be 1
      [lunAddr(3, 0), V.VIRTIO_SCSI_S_BAD_TARGET],                   // empty target
      [lunAddr(9, 0), V.VIRTIO_SCSI_S_BAD_TARGET],                   // beyond max_target
      [lunAddr(255, 0), V.VIRTIO_SCSI_S_BAD_TARGET],
      [[1, 0, 0x80, 0, 0, 0, 0, 0], V.VIRTIO_SCSI_S_BAD_TARGET],     // unknown address method
      [lunAddr(0, 5), V.VIRTIO_SCSI_S_INCORRECT_LUN],                // LUN 5 of target 0
      [lunAddr(0, 16383), V.VIRTIO_SCSI_S_INCORRECT_LUN],
    ];
    for (const [addr, want] of cases) {
      const c = cmd(t, inquiry(36), { addr, dataIn: 36 });
      const used = run(t, c);
      const r = parseResp(t.g, c.resp);
      expect(r.response, `lun ${addr}`).toBe(want);
      expect(used.get(c.head)).toBe(V.CMD_RESP_SIZE);
      expect(t.g.read(c.data, 4)).toEqual(new Uint8Array(4).fill(0xdd)); // no data moved
    }
    expect(t.q.counters.badTargets).toBe(cases.length);
  });

  it('a removed LUN answers LOGICAL UNIT NOT SUPPORTED; INQUIRY says not connected', () => {
    const t = rig();
    t.lun.remove();
    const c = cmd(t, read10(0, 1), { dataIn: 512 });
    const i = cmd(t, inquiry(36), { dataIn: 36 });
    run(t, c, i);
    const r = parseResp(t.g, c.resp);
    expect(r.response).toBe(0);
    expect(senseOf(r)).toEqual({ key: 5, asc: 0x25, ascq: 0 });
    expect(t.g.u8At(i.data)).toBe(0x7f);
  });

  it('bidirectional buffers without VIRTIO_SCSI_F_INOUT: VIRTIO_SCSI_S_FAILURE', () => {
    const t = rig();
    const c = cmd(t, write10(0, 1), { dataOut: 512, dataIn: 512 });
    run(t, c);
    expect(parseResp(t.g, c.resp).response).toBe(V.VIRTIO_SCSI_S_FAILURE);
  });

  it('a response area shorter than 12 bytes or a request shorter than 19: returned unused', () => {
    const t = rig();
    const a = cmd(t, inquiry(36), { respLen: 8 });
    const b = cmd(t, inquiry(36), { reqLen: 10, dataIn: 36 });
    const ok = cmd(t, [0, 0, 0, 0, 0, 0]);
    const used = run(t, a, b, ok);
    expect(used.get(a.head)).toBe(0);
    expect(used.get(b.head)).toBe(0);
    expect(t.g.read(a.resp, 8)).toEqual(new Uint8Array(8).fill(0xee));
    expect(used.get(ok.head)).toBe(V.CMD_RESP_SIZE);
    expect(t.q.counters.badChains).toBe(2);
  });

  it('a short response area gets truncated sense; sense_len says what fit', () => {
    const t = rig();
    const c = cmd(t, [0xd9, 0, 0, 0, 0, 0], { respLen: 20 });
    const used = run(t, c);
    expect(used.get(c.head)).toBe(20);
    const r = t.g.read(c.resp, 20);
    expect(new DataView(r.buffer).getUint32(0, true)).toBe(8);
    expect(r[10]).toBe(2);
  });

  it('a looping chain and an out-of-range next index are returned unused; the queue goes on', () => {
    const t = rig();
    const d0 = t.vr.takeDesc(), d1 = t.vr.takeDesc();
    const req = cmdReq(t.g, inquiry(36)), resp = respBuf(t.g);
    t.vr.desc(d0, req, V.CMD_REQ_SIZE, 1, d1);
    t.vr.desc(d1, resp, V.CMD_RESP_SIZE, 1 | 2, d0); // loops back
    const d2 = t.vr.takeDesc();
    t.vr.desc(d2, req, V.CMD_REQ_SIZE, 1, 999);
    const ok = cmd(t, [0, 0, 0, 0, 0, 0]);
    t.vr.publish(d0, d2, ok.head);
    expect(() => t.q.poll()).not.toThrow();
    const used = new Map(t.vr.takeUsed().map((u) => [u.id, u.len]));
    expect(used.get(d0)).toBe(0);
    expect(used.get(d2)).toBe(0);
    expect(used.get(ok.head)).toBe(V.CMD_RESP_SIZE);
    expect(t.broken).toEqual([]);
  });

  it('a buffer outside guest memory: returned unused, canaries intact', () => {
    const t = rig();
    const req = cmdReq(t.g, read10(0, 8));
    const head = t.vr.addChain([{ addr: req, len: V.CMD_REQ_SIZE }, { addr: respBuf(t.g), len: 108, write: true },
      { addr: R0 + 2 * 1024 * 1024 + 1024 * 1024 - 100, len: 4096, write: true }]);
    const used = runOn(t.vr, t.q, [head]);
    expect(used.get(head)).toBe(0);
    expect(t.g.canariesIntact()).toBe(true);
  });

  it('a head made available twice while in flight breaks the queue (once), nothing throws', () => {
    const t = rig({ backend: 'hold' });
    const c = cmd(t, read10(0, 1), { dataIn: 512 });
    t.vr.publish(c.head, c.head);
    expect(() => t.q.poll()).not.toThrow();
    expect(t.broken.length).toBe(1);
    expect(() => t.q.poll()).not.toThrow();
  });

  it('avail index jumping beyond the queue size breaks the queue', () => {
    const t = rig();
    t.vr.setAvailIdx(1000);
    expect(() => t.q.poll()).not.toThrow();
    expect(t.broken[0]).toMatch(/avail index/);
  });

  it('publishes in-flight commands (target + tag) and clears them on completion', () => {
    const t = rig({ backend: 'hold' });
    const c = cmd(t, read10(0, 1), { dataIn: 512, tag: 0xaabbccdd00112233n });
    expect(run(t, c).size).toBe(0);
    const w = c.head * INFLIGHT_WORDS;
    expect(t.q.table[w]).toBe(1);
    expect(t.q.table[w + 1] >>> 0).toBe(0x00112233);
    expect(t.q.table[w + 2] >>> 0).toBe(0xaabbccdd);
    expect(t.st.inflight[0]).toBe(1);
    (t.ch as HoldChannel).release();
    t.q.poll();
    expect(t.vr.takeUsed()).toEqual([{ id: c.head, len: V.CMD_RESP_SIZE + 512 }]);
    expect(t.q.table[w]).toBe(0);
    expect(t.st.inflight[0]).toBe(0);
  });

  it('a bdev error maps to MEDIUM ERROR sense', () => {
    const t = rig({ backend: 'hold' });
    const c = cmd(t, read10(4, 1), { dataIn: 512 });
    run(t, c);
    (t.ch as HoldChannel).release(1);
    t.q.poll();
    const r = parseResp(t.g, c.resp);
    expect(r.status).toBe(2);
    expect(senseOf(r)).toEqual({ key: 3, asc: 0x11, ascq: 0 });
  });

  it('a full queue of random garbage chains: nothing throws, every head is answered', () => {
    const t = rig({ size: 128 });
    let seed = 12345;
    const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed; };
    const heads: number[] = [];
    for (let i = 0; i < 100; i++) {
      const req = t.g.alloc(64, 8);
      const b = new Uint8Array(64);
      for (let k = 0; k < 64; k++) b[k] = rnd() & 0xff;
      b[0] = 1; b[1] = rnd() & 1 ? 0 : rnd() & 0xff; b[2] = 0x40; b[3] = 0;
      t.g.write(req, b);
      const reqLen = 19 + (rnd() % 40);
      const bufs: Buf[] = [{ addr: req, len: reqLen }];
      if (rnd() & 1) bufs.push({ addr: t.g.alloc(4096, 512), len: (rnd() % 8 + 1) * 512 });
      bufs.push({ addr: respBuf(t.g), len: 108, write: true });
      if (rnd() & 1) bufs.push({ addr: t.g.alloc(4096, 512), len: (rnd() % 8 + 1) * 512, write: true });
      heads.push(t.vr.addIndirect(bufs));
    }
    const used = runOn(t.vr, t.q, heads);
    expect(used.size).toBe(100);
    expect(t.broken).toEqual([]);
    expect(t.g.canariesIntact()).toBe(true);
  });
});
