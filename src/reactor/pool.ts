// Control-plane side of the reactors: starts one pinned worker per CPU of the cpumask,
// sends them operations and reports their busy/idle time.
import { Worker, MessageChannel, MessagePort } from 'node:worker_threads';
import { eventfd, eventfdSignal, closeQuiet, getpid } from '../../native/libc.js';
import * as M from './mailbox.js';
import { ReactorsView } from '../framework/app_context.js';
import { formatCpumask } from '../cpumask.js';
import { logger } from '../log.js';

const log = logger('reactor');

interface Handle {
  index: number;
  cpu: number;
  worker: Worker;
  port: MessagePort;
  mbox: Int32Array;
  st: Float64Array;
  wakeFd: number;
  tid: number;
  pending: Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>;
}

export type ReactorEventListener = (reactor: number, e: M.ReactorEvent) => void;

export class ReactorPool implements ReactorsView {
  private readonly reactors: Handle[] = [];
  private nextId = 1;
  private readonly listeners: ReactorEventListener[] = [];
  private readonly startedAt = performance.now();

  private constructor(readonly cpus: number[]) {}

  /** `worker`: the thread's entry module, which loads the modules' reactor sides (src/reactor_main.ts). */
  static async start(cpus: number[], opts: { worker: URL; idleSleepMs?: number }): Promise<ReactorPool> {
    const pool = new ReactorPool(cpus);
    const url = opts.worker;
    await Promise.all(cpus.map((cpu, index) => new Promise<void>((resolve, reject) => {
      const mailbox = new SharedArrayBuffer(M.MB_WORDS * 4);
      const stats = new SharedArrayBuffer(M.ST_DOUBLES * 8);
      const wakeFd = eventfd();
      const ch = new MessageChannel();
      const init: M.ReactorInit = { index, cpu, mailbox, stats, wakeFd, idleSleepMs: opts.idleSleepMs ?? 2 };
      const worker = new Worker(url, { workerData: { init, port: ch.port2 }, transferList: [ch.port2], name: `reactor_${cpu}` });
      const h: Handle = { index, cpu, worker, port: ch.port1, mbox: new Int32Array(mailbox), st: new Float64Array(stats),
        wakeFd, tid: 0, pending: new Map() };
      pool.reactors[index] = h;
      worker.once('error', (e) => { log.error(`reactor ${index} (cpu ${cpu}) failed: ${e.message}`); reject(e); });
      worker.once('exit', (code) => {
        for (const p of h.pending.values()) p.reject(new Error(`reactor ${index} exited (code ${code})`));
        h.pending.clear();
      });
      ch.port1.on('message', (m: M.ReactorReply | M.ReactorEvent) => {
        if ('event' in m) {
          if (m.event === 'ready') { h.tid = m.data.tid; resolve(); return; }
          for (const l of pool.listeners) l(index, m);
          return;
        }
        const p = h.pending.get(m.id);
        if (!p) return;
        h.pending.delete(m.id);
        if (m.ok) p.resolve(m.result); else p.reject(new Error(m.error));
      });
      ch.port1.unref();
    })));
    log.notice(`${cpus.length} reactor(s) started on cpu ${cpus.join(',')}`);
    return pool;
  }

  get count(): number { return this.reactors.length; }
  /** Index of the reactor running on `cpu`, or -1. */
  indexOfCpu(cpu: number): number { return this.reactors.findIndex((r) => r.cpu === cpu); }
  tids(): number[] { return this.reactors.map((r) => r.tid); }

  onEvent(l: ReactorEventListener): void { this.listeners.push(l); }

  /** Runs an operation on reactor `index` and resolves with its result (both typed by M.ReactorOps). */
  call<K extends M.OpName>(index: number, op: K, args: M.OpArgs<K>): Promise<M.OpResult<K>>;
  /**
   * Legacy form with the result type given by the caller, for the two calls in
   * targets/nvme/nvme_device.ts that still pass type arguments; to be removed with them.
   */
  call<T>(index: number, op: 'nvme.nsResized' | 'nvme.info', args: unknown): Promise<T>;
  call(index: number, op: M.OpName, args: unknown): Promise<unknown> {
    const h = this.reactors[index];
    if (!h) return Promise.reject(new Error(`no reactor ${index}`));
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      h.pending.set(id, { resolve, reject });
      h.port.postMessage({ id, op, args } satisfies M.ReactorRequest);
      Atomics.add(h.mbox, M.MB_SEQ, 1);
      if (Atomics.load(h.mbox, M.MB_SLEEPING) !== 0) eventfdSignal(h.wakeFd);
    });
  }

  busyIdle(index: number): { busyNs: number; idleNs: number; sleeping: boolean; sleeps: number; rounds: number } {
    const h = this.reactors[index];
    return { busyNs: h.st[M.ST_BUSY_NS], idleNs: h.st[M.ST_IDLE_NS], sleeping: Atomics.load(h.mbox, M.MB_SLEEPING) !== 0,
      sleeps: h.st[M.ST_SLEEPS], rounds: h.st[M.ST_ROUNDS] };
  }

  /** framework_get_reactors, in SPDK's shape (ticks are nanoseconds: tick_rate 1e9). */
  describe(): Record<string, unknown> {
    return {
      tick_rate: 1e9,
      pid: getpid(),
      reactors: this.reactors.map((h) => {
        const s = this.busyIdle(h.index);
        return {
          lcore: h.cpu, tid: h.tid, busy: Math.round(s.busyNs), idle: Math.round(s.idleNs),
          irq: 0, sys: 0, in_interrupt: s.sleeping, core_freq: 0,
          lw_threads: [{ name: `reactor_${h.cpu}`, id: h.index + 1, cpumask: formatCpumask([h.cpu]).slice(2),
            elapsed: Math.round((performance.now() - this.startedAt) * 1e6) }],
        };
      }),
    };
  }

  /**
   * Stops every reactor cooperatively: it leaves its loop, closes its channels and exits.
   * A worker is never terminated while it may be inside a native (koffi) call: that can
   * abort the whole process (seen with koffi when workers are terminated mid-call).
   */
  async stop(): Promise<void> {
    await Promise.all(this.reactors.map(async (h) => {
      const exited = new Promise<void>((r) => { if (h.worker.threadId < 0) r(); else h.worker.once('exit', () => r()); });
      this.call(h.index, 'stop', null).catch(() => { /* already gone */ });
      const t = await Promise.race([exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('late'), 5000))]);
      if (t === 'late') {
        log.warn(`reactor ${h.index} did not stop within 5 s: terminating its thread`);
        await h.worker.terminate();
      }
      closeQuiet(h.wakeFd);
    }));
  }
}
