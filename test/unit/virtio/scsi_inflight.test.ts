// virtio-scsi inflight tracking (INFLIGHT_SHMFD) across a back-end restart: request
// queues re-run the commands left in flight, oldest first, and none that completed; the
// control queue answers unanswered TMFs once the request queues are back; the event queue
// reuses the buffer it held and says events were missed.
import { afterEach, describe, expect, it } from 'vitest';
import * as libc from '../../../native/libc.js';
import { ScsiLun } from '../../../targets/scsi/scsi/index.js';
import {
  RECOVER_WAIT_MS, ScsiControlQueue, ScsiCtrlState, ScsiEventQueue, ScsiQueueSpec, ScsiRequestQueue,
} from '../../../targets/scsi/scsi_queue.js';
import * as V from '../../../targets/scsi/virtio_scsi.js';
import { InflightRegion, inflightQueueBytes } from '../../../src/virtio/inflight.js';
import { IoStatus } from '../../../bdev/types.js';
import { FakeVring, pattern } from './fake_driver.js';
import { cmd, eventBuf, HoldChannel, parseEvent, parseResp, rig, tmf, write10, type Rig } from './scsi_driver.js';

const SIZE = 64;
const QB = inflightQueueBytes(SIZE);
const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0).reverse()) f(); });

/** The front end's inflight region for control, event and one request queue (as QEMU: 2 + num_queues). */
function region() {
  const addr = libc.mmap(3 * QB);
  const kick = libc.eventfd();
  cleanup.push(() => { libc.munmap(addr, 3 * QB); libc.closeQuiet(kick); });
  /** A queue's spec as the device hands it over after a reconnect: last_avail = used idx (QEMU's guess). */
  const spec = (v: FakeVring, qid: number): ScsiQueueSpec => ({
    ctrlr: 'scsi0', qid, mem: v.g.regions, ring: { ...v.spec(), lastAvail: v.usedIdx }, kickFd: kick,
    inflight: { addr: addr + qid * QB, numQueues: 3 },
  });
  return { addr, spec };
}

/** A controller state whose target 0 holds every I/O in `hold` (the rig's malloc LUN info, another channel). */
function holdState(t: Rig): { st: ScsiCtrlState; hold: HoldChannel } {
  const hold = new HoldChannel(t.ch.spec, 0);
  const st = new ScsiCtrlState('scsi0');
  st.luns[0] = new ScsiLun(t.lun.info, hold);
  st.gens[0] = 1;
  return { st, hold };
}

const LBA = [0, 8, 16, 24];
const at = (t: Rig, lba: number) => t.disk!.subarray(lba * 512, lba * 512 + 4096);

describe('vhost-user-scsi request queue across a back-end restart', () => {
  it('re-runs exactly the commands left in flight, oldest first; completed ones are not run again', () => {
    const t = rig({ size: SIZE });
    const ifr = region();
    const before = pattern(8192 * 512, 5);
    const a = holdState(t);
    const q1 = new ScsiRequestQueue(ifr.spec(t.vr, 2), a.st);
    const cs = LBA.map((lba, i) => cmd(t, write10(lba, 8), { dataOut: 4096, seed: i + 1, tag: BigInt(i + 1) }));
    t.vr.publish(...cs.map((c) => c.head));
    q1.poll();
    expect(a.hold.held).toHaveLength(4);
    // the 2nd completes and is published; then the back end dies with 3 commands in flight
    const second = a.hold.held.splice(1, 1)[0];
    a.hold.complete(second, IoStatus.SUCCESS);
    q1.poll();
    expect(t.vr.takeUsed().map((u) => u.id)).toEqual([cs[1].head]);

    const q2 = new ScsiRequestQueue(ifr.spec(t.vr, 2), t.st);
    expect(q2.recovered).toBe(3);
    expect(q2.lastAvail).toBe(4);
    expect(q2.runRecovered()).toBe(3);
    q2.poll();
    expect(q2.resubmitted).toBe(3);
    expect(t.vr.takeUsed().map((u) => u.id)).toEqual([cs[0].head, cs[2].head, cs[3].head]);
    for (const i of [0, 2, 3]) {
      expect(at(t, LBA[i])).toEqual(pattern(4096, i + 1));
      const r = parseResp(t.g, cs[i].resp);
      expect([r.response, r.status]).toEqual([V.VIRTIO_SCSI_S_OK, 0]);
    }
    // the 2nd ran only on the first back end's (holding) channel: the disk never saw it
    expect(at(t, LBA[1])).toEqual(before.subarray(LBA[1] * 512, LBA[1] * 512 + 4096));
    // new commands follow the recovered ones
    const c5 = cmd(t, write10(40, 8), { dataOut: 4096, seed: 9 });
    t.vr.publish(c5.head);
    q2.poll();
    expect(t.vr.takeUsed().map((u) => u.id)).toEqual([c5.head]);
    expect(at(t, 40)).toEqual(pattern(4096, 9));
    // and a third back end finds nothing left
    expect(new ScsiRequestQueue(ifr.spec(t.vr, 2), t.st).recovered).toBe(0);
  });

  it('repairs a batch whose used index was published before its heads were cleared', () => {
    const t = rig({ size: SIZE });
    const ifr = region();
    const q1 = new ScsiRequestQueue(ifr.spec(t.vr, 2), t.st);
    const cs = [0, 8].map((lba, i) => cmd(t, write10(lba, 8), { dataOut: 4096, seed: i + 1 }));
    t.vr.publish(...cs.map((c) => c.head));
    q1.poll();
    expect(t.vr.takeUsed()).toHaveLength(2);
    // as if the back end died after publishing used->idx but before clearing the batch's
    // heads: the region's used_idx still 0, both heads still marked (the batch links stay)
    new Uint16Array(libc.view(ifr.addr + 2 * QB, QB))[7] = 0;
    for (const c of cs) new Uint8Array(libc.view(ifr.addr + 2 * QB, QB))[16 + 16 * c.head] = 1;
    const q2 = new ScsiRequestQueue(ifr.spec(t.vr, 2), t.st);
    expect(q2.recovered).toBe(0);
    expect(q2.lastAvail).toBe(2);
  });
});

describe('vhost-user-scsi control queue across a back-end restart', () => {
  it('an unanswered ABORT TASK is answered after the re-run command completes, once the request queues are back', () => {
    const t = rig({ size: SIZE });
    const ifr = region();
    const a = holdState(t);
    const q1 = new ScsiRequestQueue(ifr.spec(t.vr, 2), a.st);
    const cq1 = new ScsiControlQueue(ifr.spec(t.vc, 0), a.st);
    cq1.tables = [null, null, q1.table];
    const c = cmd(t, write10(0, 8), { dataOut: 4096, seed: 7, tag: 77n });
    t.vr.publish(c.head);
    q1.poll();
    const ab = tmf(t, V.VIRTIO_SCSI_T_TMF_ABORT_TASK, { tag: 77n });
    t.vc.publish(ab.head);
    cq1.poll();
    expect(cq1.inFlight).toBe(1);                      // waits for the command: then the back end dies

    // QEMU starts the control queue first: its TMF waits for the request queue
    const b = holdState(t);
    const now = 1000;
    const cq2 = new ScsiControlQueue(ifr.spec(t.vc, 0), b.st, now);
    expect(cq2.recovered).toBe(1);
    expect(cq2.resume(now)).toBe(false);
    expect(cq2.runRecovered()).toBe(0);
    expect(cq2.armInterrupt()).toBe(false);
    const q2 = new ScsiRequestQueue(ifr.spec(t.vr, 2), b.st);
    expect(q2.runRecovered()).toBe(1);
    expect(b.hold.held).toHaveLength(1);
    cq2.setTables([null, null, q2.table.buffer as SharedArrayBuffer]);
    expect(cq2.resume(now)).toBe(true);
    expect(cq2.runRecovered()).toBe(1);
    cq2.poll();
    expect(t.vc.takeUsed()).toEqual([]);              // the re-run command is still in flight
    b.hold.release();
    q2.poll();
    expect(t.vr.takeUsed().map((u) => u.id)).toEqual([c.head]);
    cq2.poll();
    expect(t.vc.takeUsed()).toEqual([{ id: ab.head, len: 1 }]);
    expect(t.g.u8At(ab.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    expect([q2.resubmitted, cq2.resubmitted]).toEqual([1, 1]);
  });

  it('a TMF posted while the back end was away waits for the request queues: ABORT TASK sees the re-run command', () => {
    const t = rig({ size: SIZE });
    const ifr = region();
    const a = holdState(t);
    const q1 = new ScsiRequestQueue(ifr.spec(t.vr, 2), a.st);
    new ScsiControlQueue(ifr.spec(t.vc, 0), a.st);
    const c = cmd(t, write10(8, 8), { dataOut: 4096, seed: 3, tag: 33n });
    t.vr.publish(c.head);
    q1.poll();
    expect(a.hold.held).toHaveLength(1);
    // the back end dies; the guest times the command out and sends ABORT TASK meanwhile
    const ab = tmf(t, V.VIRTIO_SCSI_T_TMF_ABORT_TASK, { tag: 33n });
    t.vc.publish(ab.head);
    const b = holdState(t);
    const cq2 = new ScsiControlQueue(ifr.spec(t.vc, 0), b.st, performance.now());
    expect(cq2.holding).toBe(true);
    cq2.poll();
    expect(t.vc.takeUsed()).toEqual([]);              // held: the request queue is not back yet
    expect(cq2.lastAvail).toBe(0);
    const q2 = new ScsiRequestQueue(ifr.spec(t.vr, 2), b.st);
    q2.runRecovered();
    cq2.setTables([null, null, q2.table.buffer as SharedArrayBuffer]);
    cq2.poll();
    expect(cq2.holding).toBe(false);
    expect(t.vc.takeUsed()).toEqual([]);              // the abort waits for the re-run command
    b.hold.release();
    q2.poll();
    cq2.poll();
    expect(t.vr.takeUsed().map((u) => u.id)).toEqual([c.head]);
    expect(t.vc.takeUsed()).toEqual([{ id: ab.head, len: 1 }]);
    expect(t.g.u8At(ab.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
  });

  it('recovered TMFs run after RECOVER_WAIT_MS even if request queues never come back', () => {
    const t = rig({ size: SIZE });
    const ifr = region();
    const cq1 = new ScsiControlQueue(ifr.spec(t.vc, 0), t.st);
    // a LUN reset in flight: fake it by marking the fetched head in the region only
    const rs = tmf(t, V.VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET);
    t.vc.publish(rs.head);
    const r = new InflightRegion(libc.view(ifr.addr, QB), 0, SIZE);
    r.fetched(rs.head);
    expect(cq1.lastAvail).toBe(0);
    const cq2 = new ScsiControlQueue(ifr.spec(t.vc, 0), t.st, 0);
    expect(cq2.recovered).toBe(1);
    expect(cq2.lastAvail).toBe(1);
    // stopped before they ran, they stay in the region for the next start
    expect(cq2.inFlight).toBe(0);
    const cq3 = new ScsiControlQueue(ifr.spec(t.vc, 0), t.st, 0);
    expect(cq3.recovered).toBe(1);
    expect(cq2.resume(RECOVER_WAIT_MS - 1)).toBe(false);
    expect(cq2.runRecovered()).toBe(0);
    expect(cq2.resume(RECOVER_WAIT_MS)).toBe(true);
    expect(cq2.runRecovered()).toBe(1);
    cq2.poll();
    expect(t.vc.takeUsed()).toEqual([{ id: rs.head, len: 1 }]);
    expect(t.g.u8At(rs.resp)).toBe(V.VIRTIO_SCSI_S_FUNCTION_COMPLETE);
  });
});

describe('vhost-user-scsi event queue across a back-end restart', () => {
  it('a buffer fetched but not used is used first, with VIRTIO_SCSI_T_EVENTS_MISSED; later buffers follow', () => {
    const t = rig({ size: SIZE });
    const ifr = region();
    const eq1 = new ScsiEventQueue(ifr.spec(t.ve, 1));
    const b1 = eventBuf(t), b2 = eventBuf(t);
    t.ve.publish(b1.head, b2.head);
    eq1.poll();
    expect(t.ve.takeUsed()).toEqual([]);               // buffers stay on the ring until there is an event
    // the back end took b1 to write an event into and died
    new InflightRegion(libc.view(ifr.addr + QB, QB), 0, SIZE).fetched(b1.head);
    const eq2 = new ScsiEventQueue(ifr.spec(t.ve, 1));
    expect(eq2.recovered).toBe(1);
    expect(eq2.lastAvail).toBe(1);
    expect(eq2.missed).toBe(true);
    expect(eq2.armInterrupt()).toBe(false);
    eq2.poll();
    expect(t.ve.takeUsed()).toEqual([{ id: b1.head, len: V.EVENT_SIZE }]);
    expect(parseEvent(t.g, b1.gpa).event).toBe(V.VIRTIO_SCSI_T_EVENTS_MISSED);   // NO_EVENT (0) | EVENTS_MISSED
    eq2.post(V.VIRTIO_SCSI_T_TRANSPORT_RESET, 2, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
    eq2.poll();
    expect(t.ve.takeUsed()).toEqual([{ id: b2.head, len: V.EVENT_SIZE }]);
    expect(parseEvent(t.g, b2.gpa)).toMatchObject({ event: V.VIRTIO_SCSI_T_TRANSPORT_RESET, reason: V.VIRTIO_SCSI_EVT_RESET_RESCAN });
    expect(eq2.resubmitted).toBe(1);
    // events delivered normally leave nothing in flight
    const eq3 = new ScsiEventQueue(ifr.spec(t.ve, 1));
    expect([eq3.recovered, eq3.missed]).toEqual([0, false]);
  });
});
