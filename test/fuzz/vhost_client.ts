// A small vhost-user front end for tests: raw messages with fds over the controller
// socket, guest memory in memfds, and a virtio-blk driver on split rings in that memory.
// Everything is synchronous; every read has a deadline (poll(2)), so a stuck target
// shows up as a Timeout, never as a hung test.
import { unixConnect, recvWithFds, sendWithFds } from '../../native/socket.js';
import { memfdCreate, mmap, munmap, view, closeQuiet, eventfd, eventfdSignal } from '../../native/libc.js';
import { libc } from '../../native/koffi.js';
import * as P from '../../src/vhost/protocol.js';

export { P };

const sysPoll = libc.func('poll', 'int', ['void *', 'unsigned long', 'int']);
const pollBuf = new Uint8Array(8);
const pollDv = new DataView(pollBuf.buffer);
const POLLIN = 1;

/** Waits up to `ms` for fd to become readable (or hung up); returns whether it did. */
export function waitReadable(fd: number, ms: number): boolean {
  pollDv.setInt32(0, fd, true);
  pollDv.setInt16(4, POLLIN, true);
  pollDv.setInt16(6, 0, true);
  return Number(sysPoll(pollBuf, 1, Math.max(0, Math.ceil(ms)))) > 0;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread for `ms` (fractions allowed). */
export function sleepSync(ms: number): void { Atomics.wait(sleepCell, 0, 0, ms); }

/** The target closed the connection. */
export class Closed extends Error {}
/** The target did not answer in time: a hang. */
export class Timeout extends Error {}
/** The target answered, but not as the protocol says. */
export class BadReply extends Error {}

export interface Msg { req: number; flags: number; payload: Uint8Array; fds: number[] }

export interface SendOpts {
  flags?: number;
  fds?: number[];
  /** Value of the size field (default: the payload length). */
  size?: number;
}

export const u64 = (v: bigint | number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
  return b;
};
export const u32pair = (a: number, b: number): Uint8Array => {
  const o = new Uint8Array(8), dv = new DataView(o.buffer);
  dv.setUint32(0, a >>> 0, true); dv.setUint32(4, b >>> 0, true);
  return o;
};

/** Requests the target answers with a message of their own (not a REPLY_ACK). */
export const HAS_REPLY = new Set<number>([P.REQ.GET_FEATURES, P.REQ.GET_PROTOCOL_FEATURES, P.REQ.GET_QUEUE_NUM,
  P.REQ.GET_MAX_MEM_SLOTS, P.REQ.GET_VRING_BASE, P.REQ.GET_CONFIG, P.REQ.GET_STATUS]);

export class VhostUserClient {
  readonly fd: number;
  private closed = false;
  private readonly hdr = new Uint8Array(P.HDR_SIZE);
  private readonly body = new Uint8Array(P.MAX_PAYLOAD + 64);
  /** REPLY_ACK negotiated: every message without its own reply may ask for an ack. */
  ack = false;

  constructor(readonly path: string, readonly timeoutMs = 5000) {
    this.fd = unixConnect(path);
  }

  get isClosed(): boolean { return this.closed; }

  /** Sends one message; `size` may lie about the payload. */
  send(req: number, payload: Uint8Array = new Uint8Array(0), o: SendOpts = {}): void {
    const out = new Uint8Array(P.HDR_SIZE + payload.length);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, req >>> 0, true);
    dv.setUint32(4, (o.flags ?? P.FLAG_VERSION) >>> 0, true);
    dv.setUint32(8, (o.size ?? payload.length) >>> 0, true);
    out.set(payload, P.HDR_SIZE);
    this.sendRaw(out, o.fds ?? []);
  }

  sendRaw(bytes: Uint8Array, fds: number[] = []): void {
    if (this.closed) throw new Closed('connection already closed');
    try { sendWithFds(this.fd, bytes, fds); } catch (e) {
      const m = (e as Error).message;
      if (/EPIPE|ECONNRESET|ENOTCONN/.test(m)) { this.closed = true; throw new Closed(`send: ${m}`); }
      if (/EAGAIN/.test(m)) throw new Timeout(`send: the target stopped reading (${m})`);
      throw e;
    }
  }

  private recvExact(dst: Uint8Array, n: number, deadline: number, fds: number[]): void {
    let got = 0;
    while (got < n) {
      let r;
      try { r = recvWithFds(this.fd, dst, got, n - got); } catch (e) {
        this.closed = true;
        throw new Closed(`recv: ${(e as Error).message}`);
      }
      for (const f of r.fds) fds.push(f);
      if (r.n === 0) { this.closed = true; throw new Closed('the target closed the connection'); }
      if (r.n > 0) { got += r.n; continue; }
      const left = deadline - performance.now();
      if (left <= 0 || !waitReadable(this.fd, left)) {
        throw new Timeout(`no reply within ${this.timeoutMs} ms (${got}/${n} bytes)`);
      }
    }
  }

  /** Hand received fds to the caller (who closes them) instead of closing them. */
  keepFds = false;

  /** Reads one message from the target (throws Closed or Timeout). */
  recv(timeoutMs = this.timeoutMs): Msg {
    const deadline = performance.now() + timeoutMs;
    const fds: number[] = [];
    try {
      this.recvExact(this.hdr, P.HDR_SIZE, deadline, fds);
      const dv = new DataView(this.hdr.buffer);
      const req = dv.getUint32(0, true), flags = dv.getUint32(4, true), size = dv.getUint32(8, true);
      if (size > this.body.length) throw new BadReply(`reply to request ${req} announces ${size} bytes`);
      this.recvExact(this.body, size, deadline, fds);
      return { req, flags, payload: this.body.slice(0, size), fds };
    } finally {
      if (!this.keepFds) for (const f of fds) closeQuiet(f);
    }
  }

  /** True if a message (or EOF) is waiting right now. */
  pending(ms = 0): boolean { return waitReadable(this.fd, ms); }

  /** Reads the reply to `req` and checks its header; returns it. */
  expectReply(req: number, timeoutMs = this.timeoutMs): Msg {
    const m = this.recv(timeoutMs);
    if (m.req !== req) throw new BadReply(`expected a reply to ${P.REQ_NAMES[req] ?? req}, got request ${m.req}`);
    if ((m.flags & 0x3) !== P.FLAG_VERSION || (m.flags & P.FLAG_REPLY) === 0) {
      throw new BadReply(`reply to ${P.REQ_NAMES[req] ?? req} has flags 0x${m.flags.toString(16)}`);
    }
    return m;
  }

  /**
   * A correct request: sends it and waits for its reply (or its REPLY_ACK when negotiated).
   * Throws BadReply on a refused ack.
   */
  call(req: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = []): Uint8Array | null {
    const own = HAS_REPLY.has(req);
    const wantAck = !own && this.ack;
    this.send(req, payload, { flags: P.FLAG_VERSION | (wantAck ? P.FLAG_NEED_REPLY : 0), fds });
    if (!own && !wantAck) return null;
    const m = this.expectReply(req);
    if (wantAck) {
      const v = m.payload.length === 8 ? new DataView(m.payload.buffer).getBigUint64(0, true) : -1n;
      if (v !== 0n) throw new BadReply(`${P.REQ_NAMES[req]} refused (ack ${v})`);
      return null;
    }
    return m.payload;
  }

  callU64(req: number, payload?: Uint8Array): bigint {
    const r = this.call(req, payload);
    if (!r || r.length < 8) throw new BadReply(`${P.REQ_NAMES[req]} reply is ${r?.length ?? 0} bytes`);
    return new DataView(r.buffer, r.byteOffset).getBigUint64(0, true);
  }

  private fdClosed = false;
  close(): void {
    if (!this.fdClosed) { this.fdClosed = true; closeQuiet(this.fd); }
    this.closed = true;
  }
}

/** Connects, retrying while the target still holds the previous front end (it accepts one at a time). */
export function connectFresh(path: string, timeoutMs: number): VhostUserClient {
  const end = performance.now() + timeoutMs;
  let last = '';
  for (let i = 0; ; i++) {
    let c: VhostUserClient | null = null;
    try {
      c = new VhostUserClient(path, timeoutMs);
      // GET_FEATURES proves the target took this connection (a second front end waits for the first to go)
      c.callU64(P.REQ.GET_FEATURES);
      return c;
    } catch (e) {
      c?.close();
      if (e instanceof Timeout) throw e;
      last = (e as Error).message;
    }
    if (performance.now() > end) throw new Timeout(`cannot get a connection to ${path} within ${timeoutMs} ms: ${last}`);
    sleepSync(Math.min(20, 0.2 * (i + 1)));
  }
}

// ------------------------------------------------------------------ guest memory

/** A memfd shared with the target: guest-physical base `gpa`, mapped here at `addr` (the "uaddr"). */
export class GuestMem {
  readonly fd: number;
  readonly addr: number;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  constructor(readonly size: number, readonly gpa: number, name = 'fuzz-guest') {
    this.fd = memfdCreate(name, size);
    this.addr = mmap(size, this.fd);
    this.u8 = new Uint8Array(view(this.addr, size));
    this.dv = new DataView(this.u8.buffer);
  }
  close(): void { munmap(this.addr, this.size); closeQuiet(this.fd); }
}

/** One region entry of SET_MEM_TABLE / ADD_MEM_REG (32 bytes). */
export function regionBytes(gpa: bigint | number, size: bigint | number, uaddr: bigint | number, mmapOffset: bigint | number): Uint8Array {
  const b = new Uint8Array(32), dv = new DataView(b.buffer);
  dv.setBigUint64(0, BigInt.asUintN(64, BigInt(gpa)), true);
  dv.setBigUint64(8, BigInt.asUintN(64, BigInt(size)), true);
  dv.setBigUint64(16, BigInt.asUintN(64, BigInt(uaddr)), true);
  dv.setBigUint64(24, BigInt.asUintN(64, BigInt(mmapOffset)), true);
  return b;
}

export function memTablePayload(nField: number, regions: Uint8Array[]): Uint8Array {
  const b = new Uint8Array(8 + 32 * regions.length);
  new DataView(b.buffer).setUint32(0, nField >>> 0, true);
  regions.forEach((r, i) => b.set(r, 8 + 32 * i));
  return b;
}

export function vringAddrPayload(index: number, desc: number, used: number, avail: number, flags = 0, log = 0): Uint8Array {
  const b = new Uint8Array(40), dv = new DataView(b.buffer);
  dv.setUint32(0, index >>> 0, true); dv.setUint32(4, flags >>> 0, true);
  dv.setBigUint64(8, BigInt(desc), true); dv.setBigUint64(16, BigInt(used), true);
  dv.setBigUint64(24, BigInt(avail), true); dv.setBigUint64(32, BigInt(log), true);
  return b;
}

// ------------------------------------------------------------------ split ring driver

export const VRING_DESC_F_NEXT = 1, VRING_DESC_F_WRITE = 2, VRING_DESC_F_INDIRECT = 4;
export const VIRTIO_F_VERSION_1 = 32n, VIRTIO_RING_F_INDIRECT_DESC = 28n, VIRTIO_RING_F_EVENT_IDX = 29n;
export const VHOST_USER_F_PROTOCOL_FEATURES = 30n;
export const VIRTIO_BLK_T_IN = 0, VIRTIO_BLK_T_OUT = 1, VIRTIO_BLK_T_FLUSH = 4, VIRTIO_BLK_T_GET_ID = 8;

/** A split virtqueue laid out in `mem` at byte offset `off` (desc, avail, then used 4 KiB-aligned). */
export class Ring {
  readonly descOff: number;
  readonly availOff: number;
  readonly usedOff: number;
  readonly end: number;
  availIdx = 0;
  usedSeen = 0;
  readonly kickFd: number;
  readonly callFd: number;
  constructor(readonly mem: GuestMem, readonly index: number, readonly num: number, off: number) {
    this.descOff = off;
    this.availOff = off + 16 * num;
    this.usedOff = (this.availOff + 6 + 2 * num + 4095) & ~4095;
    this.end = this.usedOff + 6 + 8 * num;
    if (this.end > mem.size) throw new Error('ring does not fit');
    this.kickFd = eventfd();
    this.callFd = eventfd();
  }
  /** Zeroes the rings and the driver's indexes (for a restart at base 0). */
  reset(): void {
    this.mem.u8.fill(0, this.descOff, this.end);
    this.availIdx = 0; this.usedSeen = 0;
  }
  get descUaddr(): number { return this.mem.addr + this.descOff; }
  get availUaddr(): number { return this.mem.addr + this.availOff; }
  get usedUaddr(): number { return this.mem.addr + this.usedOff; }
  setDesc(i: number, addr: number | bigint, len: number, flags: number, next: number): void {
    const dv = this.mem.dv, o = this.descOff + 16 * i;
    dv.setBigUint64(o, BigInt.asUintN(64, BigInt(addr)), true);
    dv.setUint32(o + 8, len >>> 0, true);
    dv.setUint16(o + 12, flags & 0xffff, true);
    dv.setUint16(o + 14, next & 0xffff, true);
  }
  /** Puts `head` on the avail ring and publishes the new index. */
  push(head: number): void {
    const dv = this.mem.dv;
    dv.setUint16(this.availOff + 4 + 2 * (this.availIdx % this.num), head & 0xffff, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }
  publish(): void { Atomics.store(new Uint16Array(this.mem.u8.buffer, this.availOff, 2), 1, this.availIdx); }
  setAvailIdx(v: number): void { this.availIdx = v & 0xffff; this.publish(); }
  kick(): void { eventfdSignal(this.kickFd); }
  usedIdx(): number { return Atomics.load(new Uint16Array(this.mem.u8.buffer, this.usedOff, 2), 1); }
  usedElem(k: number): { id: number; len: number } {
    const o = this.usedOff + 4 + 8 * (k % this.num);
    return { id: this.mem.dv.getUint32(o, true), len: this.mem.dv.getUint32(o + 4, true) };
  }
  /** Waits until the used index reaches `target`; false on timeout. */
  waitUsed(target: number, timeoutMs: number): boolean {
    const end = performance.now() + timeoutMs;
    let spins = 0;
    while (this.usedIdx() !== (target & 0xffff)) {
      if (performance.now() > end) return false;
      if (++spins > 200) sleepSync(0.05);
    }
    return true;
  }
  close(): void { closeQuiet(this.kickFd); closeQuiet(this.callFd); }
}

export interface HandshakeOpts {
  regions: GuestMem[];
  rings: Ring[];
  /** Extra virtio feature bits to ask for if offered (default: VERSION_1, INDIRECT_DESC). */
  want?: bigint;
  ack?: boolean;
}

/** The sequence QEMU sends for a vhost-user-blk device, done correctly. Returns negotiated features. */
export function handshake(c: VhostUserClient, o: HandshakeOpts): { features: bigint; capacity: bigint } {
  const offered = c.callU64(P.REQ.GET_FEATURES);
  if ((offered & (1n << VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) throw new BadReply('PROTOCOL_FEATURES not offered');
  const pf = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
  let want = 0n;
  for (const b of [P.PF.MQ, P.PF.CONFIG, ...(o.ack === false ? [] : [P.PF.REPLY_ACK])]) want |= 1n << BigInt(b);
  c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf & want));
  c.ack = (pf & want & (1n << BigInt(P.PF.REPLY_ACK))) !== 0n;
  c.call(P.REQ.SET_OWNER);
  const cfgReq = new Uint8Array(12 + 60);
  new DataView(cfgReq.buffer).setUint32(4, 60, true);
  const cfg = c.call(P.REQ.GET_CONFIG, cfgReq)!;
  const capacity = new DataView(cfg.buffer, cfg.byteOffset).getBigUint64(12, true);
  const features = offered & ((o.want ?? ((1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_RING_F_INDIRECT_DESC))) |
    (1n << VHOST_USER_F_PROTOCOL_FEATURES));
  c.call(P.REQ.SET_FEATURES, u64(features));
  c.call(P.REQ.SET_MEM_TABLE, memTablePayload(o.regions.length,
    o.regions.map((m) => regionBytes(m.gpa, m.size, m.addr, 0))), o.regions.map((m) => m.fd));
  for (const r of o.rings) startRing(c, r);
  return { features, capacity };
}

/** SET_VRING_NUM/BASE/ADDR/CALL/KICK/ENABLE for one ring, from base `base`. */
export function startRing(c: VhostUserClient, r: Ring, base = 0): void {
  c.call(P.REQ.SET_VRING_NUM, u32pair(r.index, r.num));
  c.call(P.REQ.SET_VRING_BASE, u32pair(r.index, base));
  c.call(P.REQ.SET_VRING_ADDR, vringAddrPayload(r.index, r.descUaddr, r.usedUaddr, r.availUaddr));
  c.call(P.REQ.SET_VRING_CALL, u64(r.index), [r.callFd]);
  c.call(P.REQ.SET_VRING_KICK, u64(r.index), [r.kickFd]);
  c.call(P.REQ.SET_VRING_ENABLE, u32pair(r.index, 1));
}

/** GET_VRING_BASE: stops the ring; returns the index the target would resume at. */
export function stopRing(c: VhostUserClient, index: number): number {
  const r = c.call(P.REQ.GET_VRING_BASE, u32pair(index, 0))!;
  const dv = new DataView(r.buffer, r.byteOffset);
  if (r.length !== 8 || dv.getUint32(0, true) !== index) throw new BadReply(`GET_VRING_BASE reply for ring ${index} is malformed`);
  return dv.getUint32(4, true);
}

/**
 * Correct virtio-blk requests on `ring`, with their buffers at `scratch` in the ring's memory:
 * header, data, status. Returns the status byte (or -1 on timeout).
 */
export function blkRequest(ring: Ring, scratch: number, type: number, sector: number, data: Uint8Array | number,
  timeoutMs: number, descBase = 0): { status: number; usedLen: number; data: Uint8Array } {
  const m = ring.mem, gpa = m.gpa;
  const hdr = scratch, buf = scratch + 64;
  const len = typeof data === 'number' ? data : data.length;
  const st = buf + len;
  m.dv.setUint32(hdr, type, true); m.dv.setUint32(hdr + 4, 0, true);
  m.dv.setBigUint64(hdr + 8, BigInt(sector), true);
  if (typeof data !== 'number') m.u8.set(data, buf); else m.u8.fill(0xa5, buf, buf + len);
  m.u8[st] = 0xff;
  const write = type !== VIRTIO_BLK_T_OUT;
  const d0 = descBase, d1 = (descBase + 1) % ring.num, d2 = (descBase + 2) % ring.num;
  if (len > 0) {
    ring.setDesc(d0, gpa + hdr, 16, VRING_DESC_F_NEXT, d1);
    ring.setDesc(d1, gpa + buf, len, VRING_DESC_F_NEXT | (write ? VRING_DESC_F_WRITE : 0), d2);
    ring.setDesc(d2, gpa + st, 1, VRING_DESC_F_WRITE, 0);
  } else {
    ring.setDesc(d0, gpa + hdr, 16, VRING_DESC_F_NEXT, d1);
    ring.setDesc(d1, gpa + st, 1, VRING_DESC_F_WRITE, 0);
  }
  ring.push(d0);
  ring.publish();
  ring.kick();
  const target = ring.availIdx;
  if (!ring.waitUsed(target, timeoutMs)) return { status: -1, usedLen: 0, data: new Uint8Array(0) };
  const e = ring.usedElem((target - 1) & 0xffff);
  ring.usedSeen = target;
  if (e.id !== d0) throw new BadReply(`used ring returned id ${e.id}, expected ${d0}`);
  return { status: m.u8[st], usedLen: e.len, data: m.u8.slice(buf, buf + len) };
}
