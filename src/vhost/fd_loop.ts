// Readiness of the control plane's raw fds (vhost-user sockets), delivered on the main
// thread: one epoll_wait runs on the thread pool at a time, its results come back here.
import { Epoll, EPOLLIN } from '../../native/epoll.js';
import { eventfd, eventfdSignal, eventfdDrain } from '../../native/libc.js';
import { checkLostMappings, installSigbusGuard, sigbusEventFd } from '../../native/sigbus.js';

export type FdHandler = (events: number) => void;

export class FdLoop {
  private readonly ep = new Epoll(64);
  private readonly handlers = new Map<number, FdHandler>();
  private readonly wake = eventfd();
  private waiting = false;
  private sigbusWatched = false;
  private closed = false;

  constructor() { this.ep.add(this.wake); }

  watch(fd: number, h: FdHandler, events = EPOLLIN): void {
    this.handlers.set(fd, h);
    this.ep.add(fd, events);
    this.arm();
  }

  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    this.ep.remove(fd);
  }

  private arm(): void {
    if (this.waiting || this.closed) return;
    this.waiting = true;
    this.ep.waitAsync(-1, (err, n) => {
      this.waiting = false;
      if (this.closed) return;
      if (err) n = 0;
      // copy out first: handlers may add fds, and the next wait reuses the buffer
      const ready: [number, number][] = [];
      for (let i = 0; i < n; i++) ready.push([this.ep.readyFd(i), this.ep.readyEvents(i)]);
      for (const [fd, ev] of ready) {
        if (fd === this.wake) { eventfdDrain(this.wake); continue; }
        const h = this.handlers.get(fd);
        if (h) {
          try { h(ev); } catch (e) { process.emitWarning(`fd ${fd} handler failed: ${(e as Error).message}`); }
        }
      }
      if (this.handlers.size > 0) this.arm();
    });
  }

  /** Stops waiting; the thread-pool wait returns at once. */
  close(): void {
    this.closed = true;
    eventfdSignal(this.wake);
  }

  /**
   * Calls checkLostMappings when the SIGBUS guard reports a lost guest mapping (once per loop;
   * nothing where the guard cannot be installed), so the owner drops that front end.
   */
  watchSigbusGuard(): void {
    if (this.sigbusWatched || installSigbusGuard() !== null) return;
    this.sigbusWatched = true;
    this.watch(sigbusEventFd(), () => checkLostMappings());
  }
}
