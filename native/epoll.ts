// epoll: a blocking wait for reactors (sync) and an async wait for the control plane.
import { koffi, libc } from './koffi.js';
import { check, ERRNO } from './errors.js';

const sys = {
  create: libc.func('int epoll_create1(int flags)'),
  ctl: libc.func('epoll_ctl', 'int', ['int', 'int', 'int', 'void *']),
  wait: libc.func('epoll_wait', 'int', ['int', 'void *', 'int', 'int']),
};

export const EPOLLIN = 0x1, EPOLLOUT = 0x4, EPOLLERR = 0x8, EPOLLHUP = 0x10, EPOLLRDHUP = 0x2000;
const EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3, EPOLL_CLOEXEC = 0o2000000;
const EVENT_SIZE = 12; // packed struct epoll_event on x86_64

/** An epoll set whose event data is the fd itself. */
export class Epoll {
  readonly fd: number;
  private readonly ctlBuf = new Uint8Array(EVENT_SIZE);
  private readonly ctlView = new DataView(this.ctlBuf.buffer);
  readonly events: Uint8Array;
  private readonly eventsView: DataView;

  constructor(readonly maxEvents = 64) {
    this.fd = check('epoll_create1', sys.create(EPOLL_CLOEXEC));
    this.events = new Uint8Array(EVENT_SIZE * maxEvents);
    this.eventsView = new DataView(this.events.buffer);
  }

  private ctl(op: number, fd: number, events: number): number {
    this.ctlView.setUint32(0, events, true);
    this.ctlView.setUint32(4, fd, true);
    this.ctlView.setUint32(8, 0, true);
    return sys.ctl(this.fd, op, fd, this.ctlBuf);
  }

  add(fd: number, events = EPOLLIN): void {
    if (this.ctl(EPOLL_CTL_ADD, fd, events) < 0) {
      if (koffi.errno() === ERRNO.EEXIST) { check('epoll_ctl(MOD)', this.ctl(EPOLL_CTL_MOD, fd, events)); return; }
      check('epoll_ctl(ADD)', -1, `fd ${fd}`);
    }
  }

  remove(fd: number): void { this.ctl(EPOLL_CTL_DEL, fd, 0); }

  /** Blocks up to timeoutMs (-1 = forever); returns the number of ready events. */
  wait(timeoutMs: number): number {
    const n = sys.wait(this.fd, this.events, this.maxEvents, timeoutMs);
    if (n < 0) { if (koffi.errno() === ERRNO.EINTR) return 0; check('epoll_wait', -1); }
    return n;
  }

  /** Waits on the libuv thread pool, so the calling thread keeps running. */
  waitAsync(timeoutMs: number, cb: (err: unknown, n: number) => void): void {
    (sys.wait as unknown as { async: Function }).async(this.fd, this.events, this.maxEvents, timeoutMs, cb);
  }

  readyFd(i: number): number { return this.eventsView.getUint32(i * EVENT_SIZE + 4, true); }
  readyEvents(i: number): number { return this.eventsView.getUint32(i * EVENT_SIZE, true); }

  close(): void { libc.func('int close(int)')(this.fd); }
}
