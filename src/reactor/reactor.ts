// A reactor: a worker thread pinned to one CPU that runs pollers in a loop and sleeps
// in epoll when idle (interrupt mode). Control messages arrive on a MessagePort that is
// read only when the shared counter says something is there.
import { receiveMessageOnPort, MessagePort } from 'node:worker_threads';
import { setAffinity, gettid, eventfdDrain } from '../../native/libc.js';
import { Epoll } from '../../native/epoll.js';
import { Poller, TimedPoller } from './poller.js';
import * as M from './mailbox.js';

const MAX_SLEEP_MS = 250;
/** Rounds per clock read: while idle, and while work is flowing. */
const WINDOW_IDLE = 1024;
const WINDOW_BUSY = 256;
/** Rounds between two polls of a rare poller (a power of two dividing the windows). */
const SLOW_EVERY = 16;

/** Serves one operation: `reply` once with its result (at once or later), or throw to fail it. */
export type OpHandler<K extends M.OpName> = (r: Reactor, args: M.OpArgs<K>, reply: (result: M.OpResult<K>) => void) => void;
/** Filled once while the worker loads its modules (src/reactor_modules.ts), read-only after. */
const ops = new Map<string, OpHandler<M.OpName>>();
/** Modules loaded into the reactor register the control operations they serve (typed by M.ReactorOps). */
export function registerOp<K extends M.OpName>(op: K, h: OpHandler<K>): void { ops.set(op, h as unknown as OpHandler<M.OpName>); }

/**
 * A per-reactor object shared by everything on the reactor that uses the same device
 * (SPDK's io_channel): e.g. a bdev channel (bdev/reactor_channels.ts).
 */
export interface ReactorChannel {
  /** Polled with the reactor's pollers while the channel is open (completions), or null. */
  readonly poller: Poller | null;
  destroy(): void;
}

export class Reactor {
  readonly index: number;
  readonly cpu: number;
  readonly tid: number;
  private pollers: Poller[] = [];
  /** Polled every round / every SLOW_EVERY rounds (both also in `pollers`). */
  private fast: Poller[] = [];
  private slow: Poller[] = [];
  private readonly timed: { p: TimedPoller; next: number }[] = [];
  private readonly mbox: Int32Array;
  private readonly st: Float64Array;
  private seen = 0;
  private running = true;
  private readonly epoll = new Epoll(64);
  private readonly channels = new Map<string, { ch: ReactorChannel; refs: number }>();

  constructor(readonly init: M.ReactorInit, private readonly port: MessagePort) {
    this.index = init.index;
    this.cpu = init.cpu;
    this.tid = gettid();
    setAffinity(0, [init.cpu]);
    this.mbox = new Int32Array(init.mailbox);
    this.st = new Float64Array(init.stats);
    this.epoll.add(init.wakeFd);
  }

  /**
   * `rare`: polled every SLOW_EVERY rounds only (control and event queues, whose work is
   * rare and not latency critical); interrupts are armed for every poller alike.
   */
  addPoller(p: Poller, rare = false): void {
    this.pollers = [...this.pollers, p];
    if (rare) this.slow = [...this.slow, p];
    else this.fast = [...this.fast, p];
    for (const fd of p.wakeFds()) this.epoll.add(fd);
    this.st[M.ST_POLLERS] = this.pollers.length;
  }

  removePoller(p: Poller): void {
    this.pollers = this.pollers.filter((x) => x !== p);
    this.fast = this.fast.filter((x) => x !== p);
    this.slow = this.slow.filter((x) => x !== p);
    for (const fd of p.wakeFds()) this.epoll.remove(fd);
    this.st[M.ST_POLLERS] = this.pollers.length;
  }

  addTimedPoller(p: TimedPoller): void { this.timed.push({ p, next: performance.now() + p.periodMs }); }

  /** This reactor's channel `key`, created by `create` on first use; shared and counted after that. */
  getChannel<T extends ReactorChannel>(key: string, create: () => T): T {
    const e = this.channels.get(key);
    if (e) { e.refs++; return e.ch as T; }
    const ch = create();
    this.channels.set(key, { ch, refs: 1 });
    if (ch.poller) this.addPoller(ch.poller);
    return ch;
  }

  /** Drops one use of channel `key`; the last one removes its poller and destroys it. */
  putChannel(key: string): void {
    const e = this.channels.get(key);
    if (!e || --e.refs > 0) return;
    this.channels.delete(key);
    if (e.ch.poller) this.removePoller(e.ch.poller);
    e.ch.destroy();
  }

  emit<K extends keyof M.ReactorEvents>(event: K, data: M.ReactorEvents[K]): void { this.port.postMessage({ event, data }); }

  private drainMessages(): void {
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (!m) return;
      const req = m.message as M.ReactorRequest;
      const reply = (result: unknown) => this.port.postMessage({ id: req.id, ok: true, result } satisfies M.ReactorReply);
      try {
        if (req.op === 'stop') { this.running = false; reply(null); continue; }
        const h = ops.get(req.op);
        if (!h) throw new Error(`reactor ${this.index}: unknown operation '${req.op}'`);
        h(this, req.args as M.OpArgs<M.OpName>, reply);
      } catch (e) {
        this.port.postMessage({ id: req.id, ok: false, error: (e as Error).message } satisfies M.ReactorReply);
      }
    }
  }

  /**
   * The poll loop. Clocks are expensive here (performance.now() costs ~80 ns and allocates),
   * so time is read once per window of rounds: busy/idle time is split between the window's
   * busy and idle rounds, and idle sleep and timed pollers are checked at window ends.
   */
  run(): void {
    const mbox = this.mbox, st = this.st, idleSleepMs = this.init.idleSleepMs;
    let windowStart = performance.now(), lastWork = windowStart;
    let rounds = 0, busyRounds = 0;
    while (this.running) {
      const seq = Atomics.load(mbox, M.MB_SEQ);
      if (seq !== this.seen) { this.seen = seq; this.drainMessages(); busyRounds++; }
      const pollers = this.fast;
      let work = 0;
      for (let i = 0; i < pollers.length; i++) work += pollers[i].poll();
      if ((rounds & (SLOW_EVERY - 1)) === 0) {
        const slow = this.slow;
        for (let i = 0; i < slow.length; i++) work += slow[i].poll();
      }
      if (work > 0) busyRounds++;
      // a busy window ends early so that timed pollers and accounting stay fresh under load
      if (++rounds < (busyRounds > 0 ? WINDOW_BUSY : WINDOW_IDLE)) continue;
      const now = performance.now();
      const dt = (now - windowStart) * 1e6;
      const busyShare = busyRounds >= rounds ? 1 : busyRounds / rounds;
      st[M.ST_BUSY_NS] += dt * busyShare;
      st[M.ST_IDLE_NS] += dt * (1 - busyShare);
      st[M.ST_ROUNDS] += rounds;
      if (busyRounds > 0) lastWork = now;
      windowStart = now;
      rounds = 0; busyRounds = 0;
      if (this.timed.length > 0) this.runTimed(now);
      if (idleSleepMs >= 0 && now - lastWork >= idleSleepMs) {
        const woken = this.sleep();
        windowStart = performance.now();
        // a wake-up by an fd means work is likely: poll a while; a timeout means sleep again soon
        if (woken) lastWork = windowStart;
      }
    }
    for (const { ch } of this.channels.values()) ch.destroy();
  }

  private runTimed(now: number): void {
    for (const t of this.timed) if (now >= t.next) { t.next = now + t.p.periodMs; t.p.run(now); }
  }

  /** Interrupt mode: arm every poller, then block in epoll until an fd or the wake eventfd fires. */
  /** Returns whether an fd (not the timeout) ended the sleep. */
  private sleep(): boolean {
    const mbox = this.mbox;
    Atomics.store(mbox, M.MB_SLEEPING, 1);
    let armed = 0, ok = Atomics.load(mbox, M.MB_SEQ) === this.seen;
    for (; ok && armed < this.pollers.length; armed++) ok = this.pollers[armed].armInterrupt();
    if (ok) {
      // bounded, so that a terminating process never waits on a reactor stuck in epoll_wait
      let timeout = MAX_SLEEP_MS;
      if (this.timed.length > 0) {
        const now = performance.now();
        timeout = Math.min(MAX_SLEEP_MS, Math.max(0, Math.ceil(Math.min(...this.timed.map((t) => t.next)) - now)));
      }
      this.st[M.ST_SLEEPS]++;
      const n = this.epoll.wait(timeout);
      eventfdDrain(this.init.wakeFd);
      if (n > 0) this.st[M.ST_WAKEUPS]++;
      for (let i = 0; i < armed; i++) this.pollers[i].disarmInterrupt();
      Atomics.store(mbox, M.MB_SLEEPING, 0);
      return n > 0;
    }
    for (let i = 0; i < armed; i++) this.pollers[i].disarmInterrupt();
    Atomics.store(mbox, M.MB_SLEEPING, 0);
    return true;
  }
}
