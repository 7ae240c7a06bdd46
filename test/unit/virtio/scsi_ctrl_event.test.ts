// virtio-scsi control queue (task management, asynchronous notification, malformed
// requests) and event queue (hot-plug events, events missed) on synthetic rings.
import { describe, expect, it } from 'vitest';
import * as V from '../../../targets/scsi/virtio_scsi.js';
import {
  an, cmd, cmdReq, eventBuf, HoldChannel, lunAddr, parseEvent, read10, respBuf, rig, runOn, tmf, type Rig,
} from './scsi_driver.js';

const runCtrl = (t: Rig, ...heads: number[]) => runOn(t.vc, t.cq, heads);
const TAG = 0x0102030405060708n;

describe('ScsiControlQueue: task management', () => {
  it('ABORT TASK for a tag that is not in flight: FUNCTION COMPLETE', () => {
    const t = rig();
    const a = tmf(t, V.VIRTIO_SCSI_T_TMF_ABORT_TASK, { tag: 0xdeadn });
    const used = runCtrl(t, a.head);
    expect(used.get(a.head)).toBe(1);
    expect(t.g.u8At(a.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
  });

  it('ABORT TASK for an in-flight command completes after the command', () => {
    const t = rig({ backend: 'hold' });
    const c = cmd(t, read10(0, 1), { dataIn: 512, tag: TAG });
    runOn(t.vr, t.q, [c.head]);
    const a = tmf(t, V.VIRTIO_SCSI_T_TMF_ABORT_TASK, { tag: TAG });
    expect(runCtrl(t, a.head).size).toBe(0);
    expect(t.cq.poll()).toBe(0);
    expect(t.vc.takeUsed()).toEqual([]);
    expect(t.cq.armInterrupt()).toBe(false); // keeps polling while a TMF waits
    (t.ch as HoldChannel).release();
    t.q.poll();
    expect(t.vr.takeUsed().length).toBe(1);
    t.cq.poll();
    expect(t.vc.takeUsed()).toEqual([{ id: a.head, len: 1 }]);
    expect(t.g.u8At(a.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
  });

  it('LOGICAL UNIT RESET and I_T NEXUS RESET wait for the target\'s commands', () => {
    const t = rig({ backend: 'hold' });
    const c1 = cmd(t, read10(0, 1), { dataIn: 512, tag: 1n });
    const c2 = cmd(t, read10(8, 1), { dataIn: 512, tag: 2n });
    runOn(t.vr, t.q, [c1.head, c2.head]);
    const lr = tmf(t, V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET);
    const nr = tmf(t, V.VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET);
    expect(runCtrl(t, lr.head, nr.head).size).toBe(0);
    (t.ch as HoldChannel).release();
    t.q.poll();
    t.cq.poll();
    const used = new Map(t.vc.takeUsed().map((u) => [u.id, u.len]));
    expect(used.get(lr.head)).toBe(1);
    expect(used.get(nr.head)).toBe(1);
    expect(t.g.u8At(lr.resp)).toBe(0);
    expect(t.g.u8At(nr.resp)).toBe(0);
  });

  it('ABORT TASK SET / CLEAR TASK SET on an idle LUN complete at once', () => {
    const t = rig();
    const a = tmf(t, V.VIRTIO_SCSI_T_TMF_ABORT_TASK_SET), b = tmf(t, V.VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET);
    const used = runCtrl(t, a.head, b.head);
    expect(used.size).toBe(2);
    expect(t.g.u8At(a.resp)).toBe(0);
    expect(t.g.u8At(b.resp)).toBe(0);
  });

  it('QUERY TASK and QUERY TASK SET: FUNCTION SUCCEEDED while in flight, COMPLETE otherwise', () => {
    const t = rig({ backend: 'hold' });
    const c = cmd(t, read10(0, 1), { dataIn: 512, tag: TAG });
    runOn(t.vr, t.q, [c.head]);
    const q1 = tmf(t, V.VIRTIO_SCSI_T_TMF_QUERY_TASK, { tag: TAG });
    const q2 = tmf(t, V.VIRTIO_SCSI_T_TMF_QUERY_TASK, { tag: 77n });
    const q3 = tmf(t, V.VIRTIO_SCSI_T_TMF_QUERY_TASK_SET);
    runCtrl(t, q1.head, q2.head, q3.head);
    expect(t.g.u8At(q1.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_SUCCEEDED);
    expect(t.g.u8At(q2.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    expect(t.g.u8At(q3.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_SUCCEEDED);
    (t.ch as HoldChannel).release();
    t.q.poll();
    const q4 = tmf(t, V.VIRTIO_SCSI_T_TMF_QUERY_TASK_SET);
    runCtrl(t, q4.head);
    expect(t.g.u8At(q4.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
  });

  it('CLEAR ACA and unknown subtypes: FUNCTION REJECTED', () => {
    const t = rig();
    const a = tmf(t, V.VIRTIO_SCSI_T_TMF_CLEAR_ACA), b = tmf(t, 99);
    runCtrl(t, a.head, b.head);
    expect(t.g.u8At(a.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_REJECTED);
    expect(t.g.u8At(b.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_REJECTED);
  });

  it('TMF addressed outside the controller: BAD_TARGET / INCORRECT_LUN (not for I_T NEXUS RESET)', () => {
    const t = rig();
    const a = tmf(t, V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, { addr: lunAddr(5, 0) });
    const b = tmf(t, V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, { addr: lunAddr(0, 3) });
    const c = tmf(t, V.VIRTIO_SCSI_T_TMF_ABORT_TASK, { addr: [7, 0, 0, 0, 0, 0, 0, 0] });
    const d = tmf(t, V.VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET, { addr: lunAddr(0, 3) });
    runCtrl(t, a.head, b.head, c.head, d.head);
    expect(t.g.u8At(a.resp)).toBe(V.VIRTIO_SCSI_S_BAD_TARGET);
    expect(t.g.u8At(b.resp)).toBe(V.VIRTIO_SCSI_S_INCORRECT_LUN);
    expect(t.g.u8At(c.resp)).toBe(V.VIRTIO_SCSI_S_BAD_TARGET);
    expect(t.g.u8At(d.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
  });

  it('AN query and subscribe: no events supported (event_actual 0), response OK', () => {
    const t = rig();
    const a = an(t, V.VIRTIO_SCSI_T_AN_QUERY, 0xff), b = an(t, V.VIRTIO_SCSI_T_AN_SUBSCRIBE, 0x10);
    const used = runCtrl(t, a.head, b.head);
    expect(used.get(a.head)).toBe(5);
    expect([...t.g.read(a.resp, 5)]).toEqual([0, 0, 0, 0, 0]);
    expect([...t.g.read(b.resp, 5)]).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('ScsiControlQueue: requests shaped like something else', () => {
  it('TMF with a short request or no response byte: returned unused', () => {
    const t = rig();
    const a = tmf(t, V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, { reqLen: 12 });
    const b = tmf(t, V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, { respLen: 0 });
    const used = runCtrl(t, a.head, b.head);
    expect(used.get(a.head)).toBe(0);
    expect(used.get(b.head)).toBe(0);
    expect(t.g.u8At(a.resp)).toBe(0xee);
  });

  it('unknown type, a 2-byte request, a SCSI command on the control queue: returned unused or answered as what the type says', () => {
    const t = rig();
    const bad = t.g.alloc(24);
    t.g.write(bad, new Uint8Array([7, 0, 0, 0]));
    const r1 = respBuf(t.g, 8);
    const h1 = t.vc.addChain([{ addr: bad, len: 24 }, { addr: r1, len: 8, write: true }]);
    const tiny = t.g.alloc(2);
    const h2 = t.vc.addChain([{ addr: tiny, len: 2 }, { addr: respBuf(t.g, 8), len: 8, write: true }]);
    // a command request: LUN 01 00 40 00 reads as type 0x00400001 (reserved)
    const creq = cmdReq(t.g, read10(0, 1));
    const cr = respBuf(t.g);
    const h3 = t.vc.addChain([{ addr: creq, len: V.CMD_REQ_SIZE }, { addr: cr, len: V.CMD_RESP_SIZE, write: true }]);
    // peripheral-addressed LUN 01 00 00 00 reads as type 1: an AN query, answered as one
    const preq = cmdReq(t.g, read10(0, 1), { addr: [1, 0, 0, 0, 0, 0, 0, 0] });
    const pr = respBuf(t.g);
    const h4 = t.vc.addChain([{ addr: preq, len: V.CMD_REQ_SIZE }, { addr: pr, len: V.CMD_RESP_SIZE, write: true }]);
    const used = runCtrl(t, h1, h2, h3, h4);
    expect(used.get(h1)).toBe(0);
    expect(used.get(h2)).toBe(0);
    expect(used.get(h3)).toBe(0);
    expect(t.g.read(cr, 12)).toEqual(new Uint8Array(12).fill(0xee));
    expect(used.get(h4)).toBe(5);
    expect(t.cq.counters.badChains).toBe(3);
  });

  it('a looping control chain is returned unused', () => {
    const t = rig();
    const d0 = t.vc.takeDesc(), d1 = t.vc.takeDesc();
    t.vc.desc(d0, t.g.alloc(24), 24, 1, d1);
    t.vc.desc(d1, t.g.alloc(8), 8, 1 | 2, d0);
    const used = runCtrl(t, d0);
    expect(used.get(d0)).toBe(0);
  });
});

describe('ScsiEventQueue', () => {
  it('sends a posted event into the next buffer the guest made available', () => {
    const t = rig();
    const b = eventBuf(t);
    t.ve.publish(b.head);
    t.eq.poll();
    expect(t.ve.takeUsed()).toEqual([]); // buffers are kept until there is an event
    expect(t.eq.armInterrupt()).toBe(true);
    t.eq.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, 3, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
    t.eq.poll();
    expect(t.ve.takeUsed()).toEqual([{ id: b.head, len: 16 }]);
    expect(parseEvent(t.g, b.gpa)).toEqual({ event: 1, lun: [1, 3, 0, 0, 0, 0, 0, 0], reason: 1 });
  });

  it('no buffer: the event is dropped and the next one carries EVENTS_MISSED', () => {
    const t = rig();
    t.eq.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, 1, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
    t.eq.poll();
    expect(t.eq.missed).toBe(true);
    t.eq.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, 2, V.VIRTIO_SCSI_EVT_RESET_REMOVED);
    const b = eventBuf(t);
    t.ve.publish(b.head);
    t.eq.poll();
    const e = parseEvent(t.g, b.gpa);
    expect(e.event >>> 0).toBe((V.VIRTIO_SCSI_T_EVENTS_MISSED | V.VIRTIO_SCSI_T_TRANSPORT_RESET) >>> 0);
    expect(e.lun[1]).toBe(2);
    expect(e.reason).toBe(2);
    expect(t.eq.missed).toBe(false);
  });

  it('missed events with no new event: NO_EVENT | EVENTS_MISSED as soon as a buffer arrives', () => {
    const t = rig();
    t.eq.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, 1, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
    t.eq.poll();
    expect(t.eq.armInterrupt()).toBe(true); // asks for a kick: enableKicks with no buffers pending
    const b = eventBuf(t);
    t.ve.publish(b.head);
    t.eq.poll();
    expect(parseEvent(t.g, b.gpa).event >>> 0).toBe(V.VIRTIO_SCSI_T_EVENTS_MISSED >>> 0);
  });

  it('an event buffer too small or read-only is returned unused; the next one is used', () => {
    const t = rig();
    const small = eventBuf(t, 8);
    const ro = t.g.alloc(16);
    const h2 = t.ve.addChain([{ addr: ro, len: 16 }]);
    const good = eventBuf(t);
    t.ve.publish(small.head, h2, good.head);
    t.eq.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, 4, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
    expect(() => t.eq.poll()).not.toThrow();
    const used = new Map(t.ve.takeUsed().map((u) => [u.id, u.len]));
    expect(used.get(small.head)).toBe(0);
    expect(used.get(h2)).toBe(0);
    expect(used.get(good.head)).toBe(16);
    expect(parseEvent(t.g, good.gpa).lun[1]).toBe(4);
  });

  it('more events than buffers: the surplus is lost and flagged on the next one', () => {
    const t = rig();
    const b1 = eventBuf(t);
    t.ve.publish(b1.head);
    for (let i = 0; i < 3; i++) t.eq.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, i, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
    t.eq.poll();
    expect(parseEvent(t.g, b1.gpa).lun[1]).toBe(0);
    expect(t.eq.sent.dropped).toBe(2);
    const b2 = eventBuf(t);
    t.ve.publish(b2.head);
    t.eq.poll();
    expect(parseEvent(t.g, b2.gpa).event >>> 0).toBe(V.VIRTIO_SCSI_T_EVENTS_MISSED >>> 0);
  });
});

describe('ScsiCtrlState: target removal while commands run', () => {
  it('a removed target with commands in flight goes idle only after they finish', () => {
    const t = rig({ backend: 'hold' });
    const idle: number[] = [];
    t.st.onTargetIdle = (x) => idle.push(x);
    const c = cmd(t, read10(0, 1), { dataIn: 512 });
    runOn(t.vr, t.q, [c.head]);
    t.lun.remove();
    const c2 = cmd(t, read10(0, 1), { dataIn: 512 });
    runOn(t.vr, t.q, [c2.head]);
    expect(idle).toEqual([]);
    (t.ch as HoldChannel).release();
    t.q.poll();
    expect(idle).toEqual([0]);
  });
});
