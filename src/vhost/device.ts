// The vhost-user back end for one controller socket: one front end (QEMU) at a time,
// messages handled strictly in order, guest memory mapped here and handed to reactors.
import { recvWithFds, sendWithFds, unixAccept, unixListen } from '../../native/socket.js';
import { addSeals, closeQuiet, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, MFD_ALLOW_SEALING, MFD_CLOEXEC, memfdCreate, mmap,
  munmap } from '../../native/libc.js';
import { inflightQueueBytes } from '../virtio/inflight.js';
import { FdLoop } from './fd_loop.js';
import * as P from './protocol.js';
import { dmaRegistry } from '../memory/dma_registry.js';
import { MappedRegion, mapRegion, unmapRegion, checkOverlap, parseRegion, toSpecs, MemoryError, checkBacked, guardShrink, guardRegion }
  from './memory_table.js';
import { GuardSlot, guardMapping, unguardMapping } from '../../native/sigbus.js';
import { QueueInflight, VhostTarget, VringState } from './target.js';
import { VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_RING_F_EVENT_IDX, bit } from '../virtio/constants.js';
import { logger } from '../log.js';
import { requireEventfd, requireSocket } from './fd_kind.js';
import { unlinkSync, existsSync } from 'node:fs';

const log = logger('vhost');

export class ProtocolError extends Error {}

interface Message { req: number; flags: number; payload: Uint8Array; fds: number[] }

/** A message as its handler sees it; useFds() says the handler took ownership of the fds. */
interface Msg { req: number; p: Uint8Array; dv: DataView; fds: number[]; useFds: () => void }
type Handler = (d: VhostUserDevice, m: Msg) => Promise<Uint8Array | null> | Uint8Array | null;

function need(m: Msg, n: number): void {
  if (m.p.length < n) throw new FatalError(`payload is ${m.p.length} bytes, expected ${n}`);
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

export const SUPPORTED_PROTOCOL_FEATURES = (1n << BigInt(P.PF.MQ)) | (1n << BigInt(P.PF.REPLY_ACK)) |
  (1n << BigInt(P.PF.CONFIG)) | (1n << BigInt(P.PF.RESET_DEVICE)) | (1n << BigInt(P.PF.CONFIGURE_MEM_SLOTS)) |
  (1n << BigInt(P.PF.STATUS)) | (1n << BigInt(P.PF.INFLIGHT_SHMFD)) | (1n << BigInt(P.PF.BACKEND_REQ));

function newVring(index: number): VringState {
  return { index, num: 0, descUaddr: 0, availUaddr: 0, usedUaddr: 0, addrSet: false, lastAvail: 0,
    kickFd: -1, callFd: -1, errFd: -1, enabled: false, started: false, reactor: -1 };
}

export class VhostUserDevice {
  private listenFd = -1;
  private connFd = -1;
  private rbuf = new Uint8Array(P.HDR_SIZE + P.MAX_PAYLOAD);
  private rlen = 0;
  private rfds: number[] = [];
  private queue: Message[] = [];
  /** A message (or a cleanup) is being handled; others wait in order. */
  private busy = false;
  /** Cleanups waiting for the message in hand to finish (woken one at a time by idle()). */
  private idleWaiters: (() => void)[] = [];
  features = 0n;
  protocolFeatures = 0n;
  private featuresSet = false;
  status = 0;
  regions: MappedRegion[] = [];
  private warnedShrink = false;
  /** The backend channel (SET_BACKEND_REQ_FD): requests from us to the front end. */
  private backendFd = -1;
  vrings: VringState[];
  messages = 0;
  private closed = false;
  /** Accepted front ends waiting for the connected one to go (not read from yet). */
  private waiting: number[] = [];
  /** Counts accepted front ends: a reply goes only to the connection its request came from. */
  private connGen = 0;
  /** Resets of dropped front ends not done yet: a new front end's messages wait for them. */
  private pendingResets = 0;
  /** The inflight-tracking region shared with the front end (INFLIGHT_SHMFD). */
  private inflight: { addr: number; size: number; numQueues: number; queueSize: number; guard: GuardSlot | null } | null = null;

  constructor(readonly target: VhostTarget, readonly socketPath: string, private readonly loop: FdLoop) {
    this.vrings = Array.from({ length: target.maxQueues }, (_, i) => newVring(i));
  }

  listen(): void {
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    this.listenFd = unixListen(this.socketPath);
    this.loop.watch(this.listenFd, () => this.onAccept());
    this.loop.watchSigbusGuard();
  }

  get connected(): boolean { return this.connFd >= 0; }

  private onAccept(): void {
    for (;;) {
      const fd = unixAccept(this.listenFd);
      if (fd < 0) return;
      if (this.connFd < 0) { this.adopt(fd); continue; }
      // one front end at a time; the next waits (unread) until this one has gone, as the
      // previous one may just have closed without us having seen it yet
      if (this.waiting.length >= MAX_WAITING) {
        log.warn(`${this.target.ctrlr}: refusing a front end: one is connected and ${MAX_WAITING} more wait; ` +
          'close the connections that are not in use');
        closeQuiet(fd);
        continue;
      }
      this.waiting.push(fd);
      log.info(`${this.target.ctrlr}: a front end waits until the connected one disconnects`);
    }
  }

  private adopt(fd: number): void {
    this.connFd = fd;
    this.connGen++;
    this.rlen = 0;
    log.notice(`${this.target.ctrlr}: front end connected`);
    this.loop.watch(fd, () => this.onReadable());
  }

  private onReadable(): void {
    const fd = this.connFd;
    while (fd === this.connFd && fd >= 0) {
      const want = this.rlen < P.HDR_SIZE ? P.HDR_SIZE - this.rlen : P.HDR_SIZE + this.payloadSize() - this.rlen;
      let r;
      try { r = recvWithFds(fd, this.rbuf, this.rlen, want); } catch (e) { this.disconnect(`read failed: ${(e as Error).message}`); return; }
      for (const f of r.fds) this.rfds.push(f);
      if (r.n === 0) { this.disconnect('front end closed the connection'); return; }
      if (r.n < 0) return;
      this.rlen += r.n;
      if (this.rlen === P.HDR_SIZE) {
        const size = this.payloadSize();
        if (size > P.MAX_PAYLOAD) { this.disconnect(`message ${this.reqName()} announces a ${size}-byte payload (limit ${P.MAX_PAYLOAD})`); return; }
        if ((this.hdrView().getUint32(4, true) & 0x3) !== P.FLAG_VERSION) { this.disconnect('message has an unsupported protocol version'); return; }
      }
      if (this.rlen >= P.HDR_SIZE && this.rlen === P.HDR_SIZE + this.payloadSize()) {
        const dv = this.hdrView();
        this.queue.push({ req: dv.getUint32(0, true), flags: dv.getUint32(4, true),
          payload: this.rbuf.slice(P.HDR_SIZE, this.rlen), fds: this.rfds });
        this.rfds = [];
        this.rlen = 0;
        void this.pump();
      }
    }
  }

  private hdrView(): DataView { return new DataView(this.rbuf.buffer, 0, P.HDR_SIZE); }
  private payloadSize(): number { return this.hdrView().getUint32(8, true); }
  private reqName(): string { return P.REQ_NAMES[this.hdrView().getUint32(0, true)] ?? `request ${this.hdrView().getUint32(0, true)}`; }

  private async pump(): Promise<void> {
    if (this.busy || this.pendingResets > 0) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && this.connFd >= 0 && this.pendingResets === 0) {
        const m = this.queue.shift()!;
        await this.handle(m);
      }
    } finally {
      this.idle();
    }
  }

  private hasPF(f: number): boolean { return (this.protocolFeatures & (1n << BigInt(f))) !== 0n; }

  private async handle(m: Message): Promise<void> {
    this.messages++;
    const name = P.REQ_NAMES[m.req] ?? `unknown request ${m.req}`;
    log.debug(`${this.target.ctrlr}: ${name} size=${m.payload.length} fds=${m.fds.length}`);
    const wantAck = (m.flags & P.FLAG_NEED_REPLY) !== 0 && this.hasPF(P.PF.REPLY_ACK);
    const gen = this.connGen;
    let fdsUsed = false;
    try {
      const reply = await this.dispatch(m, () => { fdsUsed = true; });
      // the front end may have gone (and another come) while this message was handled
      if (gen !== this.connGen || this.connFd < 0) return;
      if (reply) { if (reply.length > 0) this.send(m.req, reply); }
      else if (wantAck) this.sendU64(m.req, 0n);
    } catch (e) {
      const why = (e as Error).message;
      if (gen !== this.connGen || this.connFd < 0) {
        log.error(`${this.target.ctrlr}: ${name} of a front end that has gone failed: ${why}`);
      } else if (wantAck && !(e instanceof FatalError)) {
        log.error(`${this.target.ctrlr}: ${name} refused: ${why}`);
        this.sendU64(m.req, 1n);
      } else {
        this.disconnect(`${name}: ${why}`);
      }
    } finally {
      if (!fdsUsed) for (const fd of m.fds) closeQuiet(fd);
    }
  }

  private send(req: number, payload: Uint8Array, fds: number[] = []): void {
    const out = new Uint8Array(P.HDR_SIZE + payload.length);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, req, true);
    dv.setUint32(4, P.FLAG_VERSION | P.FLAG_REPLY, true);
    dv.setUint32(8, payload.length, true);
    out.set(payload, P.HDR_SIZE);
    // never waits: a front end that stops reading its replies must not stall the control plane
    try { sendWithFds(this.connFd, out, fds, 0); } catch (e) {
      this.disconnect(`reply failed (${(e as Error).message}): the front end does not read its replies`);
    }
  }

  private sendU64(req: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    this.send(req, b);
  }

  private vring(index: number): VringState {
    if (index >= this.vrings.length) throw new ProtocolError(`vring ${index} does not exist (the device has ${this.vrings.length})`);
    return this.vrings[index];
  }

  /** Handles one message through the handler table; returns a reply payload for requests that have one. */
  private async dispatch(m: Message, useFds: () => void): Promise<Uint8Array | null> {
    const h = VhostUserDevice.handlers.get(m.req);
    if (!h) throw new ProtocolError(`${P.REQ_NAMES[m.req] ?? `request ${m.req}`} is not supported by vhostd`);
    const p = m.payload;
    return h(this, { req: m.req, p, dv: new DataView(p.buffer, p.byteOffset, p.byteLength), fds: m.fds, useFds });
  }

  /** One handler per front-end request (vhost-user.rst "Front-end message types"). */
  private static readonly handlers = new Map<number, Handler>([
    [P.REQ.GET_FEATURES, (d) => u64(d.target.features() | bit(VHOST_USER_F_PROTOCOL_FEATURES))],
    [P.REQ.SET_FEATURES, (d, m) => d.setFeatures(m)],
    [P.REQ.GET_PROTOCOL_FEATURES, () => u64(SUPPORTED_PROTOCOL_FEATURES)],
    [P.REQ.SET_PROTOCOL_FEATURES, (d, m) => {
      need(m, 8);
      d.protocolFeatures = m.dv.getBigUint64(0, true) & SUPPORTED_PROTOCOL_FEATURES;
      return null;
    }],
    [P.REQ.SET_OWNER, () => null],
    [P.REQ.SET_BACKEND_REQ_FD, (d, m) => d.setBackendReqFd(m)],
    // a device reset (QEMU's vhost-user-scsi sends it whenever the guest resets the
    // device): rings only. Memory, features and protocol features stay, as in
    // libvhost-user: QEMU renegotiates none of them and sends only memory-table changes.
    [P.REQ.RESET_OWNER, async (d) => { await d.resetRings(); return null; }],
    [P.REQ.RESET_DEVICE, async (d) => { await d.resetRings(); return null; }],
    [P.REQ.GET_QUEUE_NUM, (d) => u64(BigInt(d.target.maxQueues))],
    [P.REQ.GET_MAX_MEM_SLOTS, () => u64(BigInt(P.MAX_MEM_SLOTS))],
    [P.REQ.SET_MEM_TABLE, (d, m) => d.setMemTable(m)],
    [P.REQ.ADD_MEM_REG, (d, m) => d.addMemReg(m)],
    [P.REQ.REM_MEM_REG, (d, m) => d.remMemReg(m)],
    [P.REQ.SET_VRING_NUM, (d, m) => d.setVringNum(m)],
    [P.REQ.SET_VRING_ADDR, (d, m) => d.setVringAddr(m)],
    [P.REQ.SET_VRING_BASE, (d, m) => d.setVringBase(m)],
    [P.REQ.GET_VRING_BASE, (d, m) => d.getVringBase(m)],
    [P.REQ.SET_VRING_KICK, (d, m) => d.setVringFd(m)],
    [P.REQ.SET_VRING_CALL, (d, m) => d.setVringFd(m)],
    [P.REQ.SET_VRING_ERR, (d, m) => d.setVringFd(m)],
    [P.REQ.SET_VRING_ENABLE, (d, m) => d.setVringEnable(m)],
    [P.REQ.GET_CONFIG, (d, m) => d.getConfig(m)],
    [P.REQ.SET_CONFIG, (d, m) => d.setConfig(m)],
    [P.REQ.SET_STATUS, (d, m) => { need(m, 8); d.status = Number(m.dv.getBigUint64(0, true) & 0xffn); return null; }],
    [P.REQ.GET_STATUS, (d) => u64(BigInt(d.status))],
    [P.REQ.GET_INFLIGHT_FD, (d, m) => d.getInflightFd(m)],
    [P.REQ.SET_INFLIGHT_FD, (d, m) => d.setInflightFd(m)],
  ]);

  private setFeatures(m: Msg): null {
    need(m, 8);
    const f = m.dv.getBigUint64(0, true);
    const offered = this.target.features() | bit(VHOST_USER_F_PROTOCOL_FEATURES);
    if ((f & ~offered) !== 0n) throw new ProtocolError(`features 0x${(f & ~offered).toString(16)} were not offered`);
    if (this.vrings.some((v) => v.started) && f !== this.features) {
      throw new ProtocolError('features cannot change while queues run');
    }
    this.features = f;
    this.featuresSet = true;
    return null;
  }

  private setBackendReqFd(m: Msg): null {
    if (m.fds.length !== 1) throw new ProtocolError(`SET_BACKEND_REQ_FD carries ${m.fds.length} fds, expected 1`);
    checkFd(() => requireSocket(m.fds[0], 'the backend request fd'));
    m.useFds();
    closeQuiet(this.backendFd);
    this.backendFd = m.fds[0];
    return null;
  }

  private async setMemTable(m: Msg): Promise<null> {
    const dv = m.dv;
    need(m, 8);
    const n = dv.getUint32(0, true);
    if (n < 1 || n > P.MAX_MEM_REGIONS) throw new ProtocolError(`memory table has ${n} regions (1..${P.MAX_MEM_REGIONS} allowed)`);
    need(m, 8 + 32 * n);
    if (m.fds.length !== n) throw new ProtocolError(`memory table has ${n} regions but ${m.fds.length} fds`);
    m.useFds();
    const parsed = [];
    for (let i = 0; i < n; i++) {
      try { parsed.push(parseRegion(dv, 8 + 32 * i)); } catch (e) { for (const fd of m.fds) closeQuiet(fd); throw e; }
    }
    const mapped: MappedRegion[] = [];
    try {
      for (let i = 0; i < n; i++) mapped.push(mapRegion(parsed[i], m.fds[i]));
      checkOverlap(mapped);
    } catch (e) {
      for (const r of mapped) unmapRegion(r);
      for (let i = mapped.length + 1; i < n; i++) closeQuiet(m.fds[i]);
      throw e;
    }
    await this.replaceMemory(mapped);
    return null;
  }

  private async addMemReg(m: Msg): Promise<null> {
    need(m, 40);
    if (m.fds.length !== 1) throw new ProtocolError(`ADD_MEM_REG carries ${m.fds.length} fds, expected 1`);
    m.useFds();
    if (this.regions.length >= P.MAX_MEM_SLOTS) { closeQuiet(m.fds[0]); throw new ProtocolError('all memory slots are in use'); }
    let spec: ReturnType<typeof parseRegion>;
    // parse before mapRegion takes the fd: a bad field must not leak it
    try { spec = parseRegion(m.dv, 8); } catch (e) { closeQuiet(m.fds[0]); throw new ProtocolError((e as Error).message); }
    let r: MappedRegion;
    try { r = mapRegion(spec, m.fds[0]); } catch (e) { throw new ProtocolError((e as Error).message); }
    try { checkOverlap([...this.regions, r]); } catch (e) { unmapRegion(r); throw e; }
    await this.replaceMemory([...this.regions, r]);
    return null;
  }

  private async remMemReg(m: Msg): Promise<null> {
    need(m, 40);
    const x = parseRegion(m.dv, 8);
    const keep = this.regions.filter((r) => !(r.gpa === x.gpa && r.size === x.size && r.uaddr === x.uaddr));
    if (keep.length === this.regions.length) throw new ProtocolError(`no memory region at gpa 0x${x.gpa.toString(16)}`);
    await this.replaceMemory(keep);
    return null;
  }

  private setVringNum(m: Msg): null {
    need(m, 8);
    const v = this.vring(m.dv.getUint32(0, true)), num = m.dv.getUint32(4, true);
    if (num < 1 || num > 32768 || (num & (num - 1)) !== 0) throw new ProtocolError(`vring size ${num} is not a power of two up to 32768`);
    if (v.started) throw new ProtocolError(`vring ${v.index} is running`);
    v.num = num;
    return null;
  }

  private setVringAddr(m: Msg): null {
    need(m, 40);
    const dv = m.dv;
    const v = this.vring(dv.getUint32(0, true));
    const a = (o: number) => { const x = dv.getBigUint64(o, true); if (x >= 1n << 53n) throw new ProtocolError('vring address beyond 2^53'); return Number(x); };
    if (v.started) throw new ProtocolError(`vring ${v.index} is running`);
    v.descUaddr = a(8); v.usedUaddr = a(16); v.availUaddr = a(24);
    v.addrSet = true;
    return null;
  }

  private setVringBase(m: Msg): null {
    need(m, 8);
    const v = this.vring(m.dv.getUint32(0, true));
    if (v.started) throw new ProtocolError(`vring ${v.index} is running`);
    v.lastAvail = m.dv.getUint32(4, true) & 0xffff;
    return null;
  }

  private async getVringBase(m: Msg): Promise<Uint8Array> {
    need(m, 8);
    const v = this.vring(m.dv.getUint32(0, true));
    await this.stopVring(v);
    // the ring is stopped: it starts again only after a new kick fd
    closeQuiet(v.kickFd); v.kickFd = -1;
    const b = new Uint8Array(8), o = new DataView(b.buffer);
    o.setUint32(0, v.index, true); o.setUint32(4, v.lastAvail, true);
    return b;
  }

  /** SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR. */
  private async setVringFd(m: Msg): Promise<null> {
    need(m, 8);
    const x = m.dv.getUint32(0, true);
    const v = this.vring(x & P.VRING_IDX_MASK);
    const nofd = (x & P.VRING_NOFD_MASK) !== 0;
    if (!nofd && m.fds.length !== 1) throw new ProtocolError(`expected one fd, got ${m.fds.length}`);
    if (nofd && m.fds.length !== 0) throw new ProtocolError('fds sent with the no-fd flag');
    // only eventfds, made non-blocking: a signal to the guest must never block a reactor
    if (!nofd) checkFd(() => requireEventfd(m.fds[0], `the ${P.REQ_NAMES[m.req].slice(10).toLowerCase()} fd of vring ${v.index}`));
    m.useFds();
    const fd = nofd ? -1 : m.fds[0];
    if (m.req === P.REQ.SET_VRING_ERR) { closeQuiet(v.errFd); v.errFd = fd; return null; }
    const running = v.started;
    if (running) await this.stopVring(v);
    if (m.req === P.REQ.SET_VRING_KICK) { closeQuiet(v.kickFd); v.kickFd = fd; }
    else { closeQuiet(v.callFd); v.callFd = fd; }
    if (m.req === P.REQ.SET_VRING_KICK && !this.hasFeature(VHOST_USER_F_PROTOCOL_FEATURES)) v.enabled = true;
    await this.maybeStart(v);
    return null;
  }

  private async setVringEnable(m: Msg): Promise<null> {
    need(m, 8);
    const v = this.vring(m.dv.getUint32(0, true));
    v.enabled = m.dv.getUint32(4, true) !== 0;
    if (v.enabled) await this.maybeStart(v); else await this.stopVring(v);
    return null;
  }

  private getConfig(m: Msg): Uint8Array {
    need(m, 12);
    const p = m.p, off = m.dv.getUint32(0, true), size = m.dv.getUint32(4, true);
    if (p.length !== 12 + size) throw new FatalError(`GET_CONFIG payload is ${p.length} bytes for a ${size}-byte read`);
    const cfg = this.target.configSpace();
    if (off + size > 256) throw new FatalError(`config read ${off}+${size} is beyond the 256-byte config space`);
    const out = new Uint8Array(12 + size);
    out.set(p.subarray(0, 12));
    out.set(cfg.subarray(Math.min(off, cfg.length), Math.min(off + size, cfg.length)), 12);
    return out;
  }

  private setConfig(m: Msg): null {
    need(m, 12);
    const p = m.p, off = m.dv.getUint32(0, true), size = m.dv.getUint32(4, true);
    if (p.length < 12 + size || off + size > 256) throw new ProtocolError(`config write ${off}+${size} is malformed`);
    if (!this.target.writeConfig(off, p.subarray(12, 12 + size))) throw new ProtocolError(`config write at ${off} refused`);
    return null;
  }

  private getInflightFd(m: Msg): Uint8Array {
    need(m, 20);
    const nq = m.dv.getUint16(16, true), qs = m.dv.getUint16(18, true);
    checkInflightGeometry(nq, qs, this.vrings.length);
    const size = nq * inflightQueueBytes(qs);
    const fd = memfdCreate(`vhostd-inflight-${this.target.ctrlr}`, size, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    try {
      // the front end keeps this fd: it must not be able to shrink it under our mapping
      addSeals(fd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
      this.setInflight(mmap(size, fd), size, nq, qs);
      const out = new Uint8Array(m.p.length);
      const o = new DataView(out.buffer);
      o.setBigUint64(0, BigInt(size), true);
      o.setBigUint64(8, 0n, true);
      o.setUint16(16, nq, true);
      o.setUint16(18, qs, true);
      this.send(m.req, out, [fd]);
    } finally {
      closeQuiet(fd);
    }
    return new Uint8Array(0);   // already replied (with the fd)
  }

  private setInflightFd(m: Msg): null {
    need(m, 20);
    if (m.fds.length !== 1) throw new ProtocolError(`SET_INFLIGHT_FD carries ${m.fds.length} fds, expected 1`);
    m.useFds();
    const dv = m.dv;
    try {
      const size = Number(dv.getBigUint64(0, true)), off = Number(dv.getBigUint64(8, true));
      const nq = dv.getUint16(16, true), qs = dv.getUint16(18, true);
      checkInflightGeometry(nq, qs, this.vrings.length);
      if (size < nq * inflightQueueBytes(qs) || off % 4096 !== 0 || size > 1 << 30) {
        throw new ProtocolError(`inflight region of ${size} bytes at offset ${off} does not fit ${nq} queues of ${qs}`);
      }
      guardShrink(m.fds[0]);
      checkBacked(m.fds[0], off + size, 'inflight region');
      let addr: number;
      try { addr = mmap(size, m.fds[0], off); } catch (e) { throw new ProtocolError(`cannot map the inflight region: ${(e as Error).message}`); }
      this.setInflight(addr, size, nq, qs);
    } finally {
      closeQuiet(m.fds[0]);
    }
    return null;
  }

  private setInflight(addr: number, size: number, numQueues: number, queueSize: number): void {
    this.dropInflight();
    const guard = guardMapping(addr, size, () => this.memoryLost(`the inflight region (${size} bytes)`));
    this.inflight = { addr, size, numQueues, queueSize, guard };
    log.info(`${this.target.ctrlr}: requests are tracked in the front end's inflight region (${numQueues} queues of ${queueSize})`);
  }

  private dropInflight(): void {
    unguardMapping(this.inflight?.guard ?? null);
    if (this.inflight) { try { munmap(this.inflight.addr, this.inflight.size); } catch { /* gone */ } }
    this.inflight = null;
  }

  private inflightFor(v: VringState): QueueInflight | undefined {
    const f = this.inflight;
    if (!f || v.index >= f.numQueues) return undefined;
    if (f.queueSize !== v.num) {
      log.warn(`${this.target.ctrlr}: queue ${v.index} has size ${v.num} but the inflight region was made for ` +
        `${f.queueSize}: its requests are not tracked across reconnects`);
      return undefined;
    }
    return { addr: f.addr + v.index * inflightQueueBytes(f.queueSize), numQueues: f.numQueues };
  }

  private hasFeature(b: number): boolean { return (this.features & bit(b)) !== 0n; }

  private ready(v: VringState): boolean {
    return !v.started && v.enabled && v.kickFd >= 0 && v.addrSet && v.num > 0 && this.regions.length > 0 && this.featuresSet;
  }

  private async maybeStart(v: VringState): Promise<void> {
    if (!this.ready(v)) return;
    try {
      v.reactor = await this.target.startQueue({ vring: v, mem: toSpecs(this.regions), features: this.features,
        inflight: this.inflightFor(v) });
      v.started = true;
      log.info(`${this.target.ctrlr}: queue ${v.index} started on reactor ${v.reactor} (size ${v.num}, avail ${v.lastAvail}` +
        `${this.hasFeature(VIRTIO_RING_F_EVENT_IDX) ? ', event_idx' : ''})`);
    } catch (e) {
      throw new ProtocolError(`queue ${v.index} cannot start: ${(e as Error).message}`);
    }
  }

  private async stopVring(v: VringState): Promise<void> {
    if (!v.started) return;
    v.lastAvail = await this.target.stopQueue(v);
    v.started = false;
    v.reactor = -1;
  }

  /** Swaps guest memory: running queues stop on the old mapping and restart on the new one. */
  private async replaceMemory(next: MappedRegion[]): Promise<void> {
    const running = this.vrings.filter((v) => v.started);
    for (const v of running) await this.stopVring(v);
    const old = this.regions;
    try {
      for (const r of next) {
        guardRegion(r, () => this.memoryLost(`guest memory region at gpa 0x${r.gpa.toString(16)} (${r.size} bytes)`));
      }
    } catch (e) {
      for (const r of next) if (!old.includes(r)) unmapRegion(r);
      throw e;
    }
    this.regions = next;
    await dmaRegistry.setRegions(this, next.map((r) => ({ hva: r.hva, size: r.size, fd: r.dmaFd, offset: r.mmapOffset })));
    for (const r of old) if (!next.includes(r)) unmapRegion(r);
    if (!this.warnedShrink && next.some((r) => !r.shrinkProof)) {
      this.warnedShrink = true;
      log.warn(`${this.target.ctrlr}: guest memory is a file that is not sealed against shrinking (memory-backend-file, ` +
        'hugetlbfs, or an unsealed memfd): if the front end truncates it, this device fails (the process survives). ' +
        'Use memory-backend-memfd (sealed by default) where you can.');
    }
    for (const v of running) await this.maybeStart(v);
  }

  private async resetRings(): Promise<void> {
    for (const v of this.vrings) {
      await this.stopVring(v);
      closeQuiet(v.kickFd); closeQuiet(v.callFd); closeQuiet(v.errFd);
    }
    this.vrings = this.vrings.map((v) => newVring(v.index));
    this.status = 0;
  }

  private async reset(): Promise<void> {
    for (const v of this.vrings) {
      await this.stopVring(v);
      closeQuiet(v.kickFd); closeQuiet(v.callFd); closeQuiet(v.errFd);
    }
    this.vrings = this.vrings.map((v) => newVring(v.index));
    await dmaRegistry.setRegions(this, []);
    for (const r of this.regions) unmapRegion(r);
    this.regions = [];
    this.dropInflight();
    this.features = 0n;
    this.featuresSet = false;
    this.protocolFeatures = 0n;
    this.status = 0;
    closeQuiet(this.backendFd);
    this.backendFd = -1;
  }

  /**
   * Tells the front end that the config space changed (e.g. the disk was resized): QEMU
   * re-reads it with GET_CONFIG and interrupts the guest. False if the front end did not
   * set up the backend channel (it then sees the change only when it reads the config).
   */
  notifyConfigChange(): boolean {
    if (this.connFd < 0 || this.backendFd < 0 || !this.hasPF(P.PF.BACKEND_REQ) || !this.hasPF(P.PF.CONFIG)) return false;
    const out = new Uint8Array(P.HDR_SIZE), dv = new DataView(out.buffer);
    dv.setUint32(0, P.BACKEND_REQ.CONFIG_CHANGE_MSG, true);
    dv.setUint32(4, P.FLAG_VERSION, true);
    try {
      sendWithFds(this.backendFd, out, [], 0);
      return true;
    } catch (e) {
      log.warn(`${this.target.ctrlr}: cannot tell the front end about a config change: ${(e as Error).message}`);
      return false;
    }
  }

  /** A guarded mapping took a SIGBUS: it now reads zeros, and this front end is dropped. */
  private memoryLost(what: string): void {
    log.error(`${this.target.ctrlr}: ${what} lost its backing under vhostd's mapping (the front end truncated the file, ` +
      'or its filesystem ran out of space): the region now reads as zeros; the front end is dropped. ' +
      'Do not shrink guest memory files while a vhost-user back end uses them.');
    this.disconnect('guest memory lost its backing (SIGBUS)');
  }

  /** Drops the front end: queues stop, memory is unmapped; the socket listens again. */
  disconnect(why: string): void {
    if (this.connFd < 0) return;
    log.notice(`${this.target.ctrlr}: front end disconnected: ${why}`);
    this.loop.unwatch(this.connFd);
    closeQuiet(this.connFd);
    this.connFd = -1;
    for (const fd of this.rfds) closeQuiet(fd);
    this.rfds = [];
    for (const m of this.queue) for (const fd of m.fds) closeQuiet(fd);
    this.queue = [];
    // the reset runs once the message in hand is done; until then a new front end's messages
    // wait, or the reset would wipe what they negotiate
    this.pendingResets++;
    void this.afterIdle(async () => { try { await this.reset(); } finally { this.pendingResets--; } });
    // the next waiting front end goes on now; its messages wait for the reset above
    const next = this.closed ? undefined : this.waiting.shift();
    if (next !== undefined) this.adopt(next);
  }

  private async afterIdle(f: () => Promise<void>): Promise<void> {
    while (this.busy) await new Promise<void>((r) => this.idleWaiters.push(r));
    this.busy = true;
    try { await f(); } catch (e) { log.error(`${this.target.ctrlr}: cleanup failed: ${(e as Error).message}`); } finally { this.idle(); }
    if (this.queue.length > 0) void this.pump();
  }

  /** The message or cleanup in hand is done: the next waiting cleanup runs. */
  private idle(): void {
    this.busy = false;
    const w = this.idleWaiters.shift();
    if (w) w();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.disconnect('controller removed');
    for (const fd of this.waiting) closeQuiet(fd);
    this.waiting = [];
    if (this.listenFd >= 0) { this.loop.unwatch(this.listenFd); closeQuiet(this.listenFd); this.listenFd = -1; }
    try { unlinkSync(this.socketPath); } catch { /* gone */ }
    await this.afterIdle(async () => {});
  }
}

/**
 * The inflight region covers every queue of the front end: for vhost-user-scsi that is the
 * control and event queues plus the request queues (QEMU: 2 + num_queues).
 */
export function checkInflightGeometry(numQueues: number, queueSize: number, maxQueues: number): void {
  if (numQueues < 1 || numQueues > maxQueues) {
    throw new ProtocolError(`inflight region asked for ${numQueues} queues, but this controller has 1 to ${maxQueues}: ` +
      `configure the front end with fewer queues`);
  }
  if (queueSize < 1 || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0) {
    throw new ProtocolError(`inflight region asked for queues of ${queueSize} entries: the size must be a power of two up to 32768`);
  }
}

function checkFd(f: () => void): void {
  try { f(); } catch (e) { throw new ProtocolError((e as Error).message); }
}

/** The SIGBUS guard's eventfd is watched once per loop (one per process, but tests make more). */
/** Front ends accepted while another is connected, kept waiting (more are refused). */
const MAX_WAITING = 8;

/** An error after which the connection cannot continue (malformed framing). */
class FatalError extends ProtocolError {}
