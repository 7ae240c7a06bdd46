// Reactor-side control operations for virtio-blk queues.
import { registerOp, Reactor } from '../../src/reactor/reactor.js';
import { closeBdevChannel, openBdevChannel } from '../../bdev/reactor_channels.js';
import { BlkQueue, BlkQueueCounters, BlkQueueSpec } from './blk_queue.js';
import type { Coalescing } from '../../src/virtio/split_queue.js';
import { eventfdSignal } from '../../native/libc.js';

/** The operations below, checked on both sides (ReactorPool.call in blk_controller.ts). */
declare module '../../src/reactor/mailbox.js' {
  interface ReactorOps {
    'blk.startQueue': { args: BlkQueueSpec; result: { reactor: number; recovered: number } };
    'blk.stopQueue': { args: { ctrlr: string; qid: number }; result: { lastAvail: number; counters: BlkQueueCounters } | null };
    'blk.coalescing': { args: { ctrlr: string } & Coalescing; result: null };
    'blk.queueInfo': { args: { ctrlr: string }; result: BlkQueueInfo[] };
  }
}

/** One queue in blk.queueInfo (vhost_get_controllers). */
export interface BlkQueueInfo extends BlkQueueCounters {
  qid: number; lastAvail: number; inflight: number; notifications: number; resubmitted: number;
}

const queues = new Map<string, BlkQueue>();
const key = (ctrlr: string, qid: number) => `${ctrlr}/${qid}`;

registerOp('blk.startQueue', (r: Reactor, spec: BlkQueueSpec, reply) => {
  const k = key(spec.ctrlr, spec.qid);
  if (queues.has(k)) throw new Error(`queue ${spec.qid} of ${spec.ctrlr} is already running on reactor ${r.index}`);
  const ch = openBdevChannel(r, spec.bdev);
  let q: BlkQueue;
  try {
    q = new BlkQueue(spec, ch);
  } catch (e) {
    closeBdevChannel(r, spec.bdev.name);
    throw e;
  }
  q.onBroken = (bq, why) => r.emit('queueBroken', { ctrlr: spec.ctrlr, qid: spec.qid, why, lastAvail: bq.lastAvail });
  queues.set(k, q);
  r.addPoller(q);
  // A used entry published just before a reconnect may have been signalled on a call fd the
  // front end no longer listens to; one spurious interrupt lets the guest find it (as
  // libvhost-user does).
  if (spec.ring.callFd >= 0) eventfdSignal(spec.ring.callFd);
  reply({ reactor: r.index, recovered: q.recovered });
});

registerOp('blk.stopQueue', (r: Reactor, a: { ctrlr: string; qid: number }, reply) => {
  const k = key(a.ctrlr, a.qid);
  const q = queues.get(k);
  if (!q) { reply(null); return; }
  const done = () => {
    if (q.vq.signalPending) q.vq.signalNow(); // an interrupt coalescing held back: the guest gets it
    queues.delete(k);
    r.removePoller(q);
    closeBdevChannel(r, q.spec.bdev.name);
    reply({ lastAvail: q.lastAvail, counters: q.counters });
  };
  if (q.vq.broken !== null || q.inFlight === 0) { q.flushUsed(); done(); return; }
  q.stopping = true;
  q.onDrained = done;
});

registerOp('blk.coalescing', (_r: Reactor, a: { ctrlr: string; delayBaseUs: number; iopsThreshold: number }, reply) => {
  for (const q of queues.values()) if (q.spec.ctrlr === a.ctrlr) q.vq.setCoalescing(a);
  reply(null);
});

registerOp('blk.queueInfo', (_r: Reactor, a: { ctrlr: string }, reply) => {
  const out: BlkQueueInfo[] = [];
  for (const q of queues.values()) {
    if (q.spec.ctrlr === a.ctrlr) {
      out.push({ qid: q.spec.qid, lastAvail: q.lastAvail, inflight: q.inFlight, notifications: q.vq.notifications, resubmitted: q.resubmitted, ...q.counters });
    }
  }
  reply(out);
});
