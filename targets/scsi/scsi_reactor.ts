// Reactor-side control operations for virtio-scsi controllers: queues, targets (LUN 0 of
// each, with this reactor's bdev channel), events and the control queue's view of the
// request queues.
import { registerOp, Reactor } from '../../src/reactor/reactor.js';
import { closeBdevChannel, openBdevChannel } from '../../bdev/reactor_channels.js';
import { eventfdSignal } from '../../native/libc.js';
import { ScsiLun } from './scsi/index.js';
import { ScsiControlQueue, ScsiCtrlState, ScsiEventQueue, ScsiQueueSpec, ScsiRequestQueue,
  ScsiTargetSpec } from './scsi_queue.js';
import { CONTROLQ, EVENTQ } from './virtio_scsi.js';
import type { Coalescing } from '../../src/virtio/split_queue.js';

type AnyQueue = ScsiRequestQueue | ScsiControlQueue | ScsiEventQueue;

export interface ScsiStartSpec extends ScsiQueueSpec {
  targets: ScsiTargetSpec[];
  /** Request queues: the in-flight table shared with the control queue. */
  table?: SharedArrayBuffer;
  /** Control queue: the request queues' tables, by qid. */
  tables?: (SharedArrayBuffer | null)[];
  /** Event queue: an event was lost while it was not running. */
  missed?: boolean;
}

/** The operations below, checked on both sides (ReactorPool.call in scsi_controller.ts). */
declare module '../../src/reactor/mailbox.js' {
  interface ReactorOps {
    'scsi.startQueue': { args: ScsiStartSpec; result: { reactor: number; recovered: number } };
    'scsi.stopQueue': { args: { ctrlr: string; qid: number }; result: ScsiQueueStopped | null };
    'scsi.coalescing': { args: { ctrlr: string } & Coalescing; result: null };
    'scsi.addTarget': { args: { ctrlr: string; target: ScsiTargetSpec }; result: boolean };
    'scsi.removeTarget': { args: { ctrlr: string; target: number; gen: number }; result: boolean };
    'scsi.event': { args: { ctrlr: string; event: number; target: number; reason: number }; result: boolean };
    'scsi.tables': { args: { ctrlr: string; tables: (SharedArrayBuffer | null)[] }; result: boolean };
    'scsi.queueInfo': { args: { ctrlr: string }; result: ScsiQueueInfo[] };
  }
}

/** What a stopped queue reports: where the guest's ring is, its counters, TMFs (control queue). */
export interface ScsiQueueStopped {
  lastAvail: number; counters: ScsiQueueCounters; tmfs: { total: number; rejected: number; waited: number } | undefined;
}

/** One queue in scsi.queueInfo (vhost_get_controllers). */
export type ScsiQueueInfo = ScsiQueueCounters & {
  qid: number; lastAvail: number; inflight: number; notifications: number; recovered: number; resubmitted: number;
};
type ScsiQueueCounters = AnyQueue['counters'];

const queues = new Map<string, AnyQueue>();
const states = new Map<string, ScsiCtrlState>();
/** Per controller: callbacks waiting for a removed target to go idle, by target. */
const idleWaiters = new Map<string, (() => void)[][]>();
const key = (ctrlr: string, qid: number) => `${ctrlr}/${qid}`;

function addLun(r: Reactor, st: ScsiCtrlState, t: ScsiTargetSpec): void {
  const cur = st.luns[t.target];
  if (cur !== null && st.gens[t.target] === t.gen) return;
  if (cur !== null) dropLun(r, st, t.target);
  const ch = openBdevChannel(r, t.bdev);
  try {
    st.luns[t.target] = new ScsiLun(t.lun, ch);
  } catch (e) {
    closeBdevChannel(r, t.bdev.name);
    throw e;
  }
  st.gens[t.target] = t.gen;
}

function dropLun(r: Reactor, st: ScsiCtrlState, t: number): void {
  const lun = st.luns[t];
  if (lun === null) return;
  lun.remove();
  st.luns[t] = null;
  st.gens[t] = 0;
  closeBdevChannel(r, lun.info.bdevName);
}

function stateFor(r: Reactor, ctrlr: string, targets: ScsiTargetSpec[]): ScsiCtrlState {
  let st = states.get(ctrlr);
  if (!st) {
    const s = new ScsiCtrlState(ctrlr);
    const waiters: (() => void)[][] = Array.from({ length: s.luns.length }, () => []);
    idleWaiters.set(ctrlr, waiters);
    s.onTargetIdle = (t) => {
      dropLun(r, s, t);
      for (const f of waiters[t].splice(0)) f();
    };
    states.set(ctrlr, s);
    st = s;
  }
  for (const t of targets) addLun(r, st, t);
  return st;
}

function release(r: Reactor, st: ScsiCtrlState): void {
  if (--st.refs > 0) return;
  for (let t = 0; t < st.luns.length; t++) dropLun(r, st, t);
  states.delete(st.ctrlr);
  const w = idleWaiters.get(st.ctrlr);
  idleWaiters.delete(st.ctrlr);
  if (w) for (const l of w) for (const f of l.splice(0)) f();
}

registerOp('scsi.startQueue', (r: Reactor, spec: ScsiStartSpec, reply) => {
  const k = key(spec.ctrlr, spec.qid);
  if (queues.has(k)) throw new Error(`queue ${spec.qid} of ${spec.ctrlr} is already running on reactor ${r.index}`);
  const st = stateFor(r, spec.ctrlr, spec.targets);
  st.refs++;
  let q: AnyQueue;
  try {
    if (spec.qid === CONTROLQ) {
      const cq = new ScsiControlQueue(spec, st, performance.now());
      cq.setTables(spec.tables ?? []);
      q = cq;
    } else if (spec.qid === EVENTQ) {
      q = new ScsiEventQueue(spec, spec.missed ?? false);
    } else {
      q = new ScsiRequestQueue(spec, st, spec.table ?? null);
    }
  } catch (e) {
    release(r, st);
    throw e;
  }
  q.onBroken = (bq: { lastAvail: number }, why: string) => r.emit('queueBroken', { ctrlr: spec.ctrlr, qid: spec.qid, why, lastAvail: bq.lastAvail });
  queues.set(k, q);
  r.addPoller(q, spec.qid === CONTROLQ || spec.qid === EVENTQ);
  // commands left in flight by a previous back end run now, so that they are in the
  // in-flight table before the control queue is told about this queue
  if (q instanceof ScsiRequestQueue) q.runRecovered();
  // A completion signalled on the call fd this one replaces may be lost (QEMU's
  // vhost-user-scsi re-sends SET_VRING_CALL right after starting the rings and does not
  // carry pending interrupts over): one spurious interrupt is harmless, a lost one hangs
  // the guest's command. libvhost-user does the same on SET_VRING_CALL.
  if (spec.ring.callFd >= 0) eventfdSignal(spec.ring.callFd);
  reply({ reactor: r.index, recovered: q.recovered });
});

registerOp('scsi.coalescing', (_r: Reactor, a: { ctrlr: string; delayBaseUs: number; iopsThreshold: number }, reply) => {
  for (const q of queues.values()) if (q.spec.ctrlr === a.ctrlr && q instanceof ScsiRequestQueue) q.vq.setCoalescing(a);
  reply(null);
});

registerOp('scsi.stopQueue', (r: Reactor, a: { ctrlr: string; qid: number }, reply) => {
  const k = key(a.ctrlr, a.qid);
  const q = queues.get(k);
  if (!q) { reply(null); return; }
  const done = () => {
    if (q.vq.signalPending) q.vq.signalNow(); // an interrupt coalescing held back: the guest gets it
    queues.delete(k);
    r.removePoller(q);
    const st = states.get(a.ctrlr);
    if (st) release(r, st);
    reply({ lastAvail: q.lastAvail, counters: q.counters, tmfs: q instanceof ScsiControlQueue ? q.tmfs : undefined });
  };
  if (q.vq.broken !== null || q.inFlight === 0) { q.flushUsed(); done(); return; }
  q.stopping = true;
  q.onDrained = done;
});

registerOp('scsi.addTarget', (r: Reactor, a: { ctrlr: string; target: ScsiTargetSpec }, reply) => {
  const st = states.get(a.ctrlr);
  if (st) addLun(r, st, a.target);
  reply(st !== undefined);
});

/** Marks a target removed (new commands: LOGICAL UNIT NOT SUPPORTED) and replies once its commands finished. */
registerOp('scsi.removeTarget', (r: Reactor, a: { ctrlr: string; target: number; gen: number }, reply) => {
  const st = states.get(a.ctrlr);
  if (!st || st.luns[a.target] === null || st.gens[a.target] !== a.gen) { reply(false); return; }
  st.luns[a.target]!.remove();
  if (st.inflight[a.target] === 0) { dropLun(r, st, a.target); reply(true); return; }
  idleWaiters.get(a.ctrlr)![a.target].push(() => reply(true));
});

registerOp('scsi.event', (_r: Reactor, a: { ctrlr: string; event: number; target: number; reason: number }, reply) => {
  const q = queues.get(key(a.ctrlr, EVENTQ));
  if (!(q instanceof ScsiEventQueue) || q.stopping) { reply(false); return; }
  q.post(a.event, a.target, a.reason);
  reply(true);
});

registerOp('scsi.tables', (_r: Reactor, a: { ctrlr: string; tables: (SharedArrayBuffer | null)[] }, reply) => {
  const q = queues.get(key(a.ctrlr, CONTROLQ));
  if (q instanceof ScsiControlQueue) q.setTables(a.tables);
  reply(q !== undefined);
});

registerOp('scsi.queueInfo', (_r: Reactor, a: { ctrlr: string }, reply) => {
  const out: ScsiQueueInfo[] = [];
  for (const q of queues.values()) {
    if (q.spec.ctrlr === a.ctrlr) {
      out.push({ qid: q.spec.qid, lastAvail: q.lastAvail, inflight: q.inFlight, notifications: q.vq.notifications,
        recovered: q.recovered, resubmitted: q.resubmitted, ...q.counters });
    }
  }
  reply(out);
});
