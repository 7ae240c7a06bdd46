// A vfio-user server socket: accepts one client at a time, frames its messages (with
// the fds passed alongside), runs them strictly in order (a reply may wait for a
// reactor) and hands device-specific work to a VfioUserDevice.
// The client is not trusted: replies never wait (a client that stops reading is dropped),
// a client that sends faster than its messages are handled is not read from until they
// are, and a client whose DMA memory loses its backing (SIGBUS guard) is dropped.
import { unlinkSync } from 'node:fs';
import { applySocketAccess, prepareSocketPath } from '../framework/socket_file.js';
import { FdLoop } from '../vhost/fd_loop.js';
import { unixListen, unixAccept, recvWithFds, sendWithFds, shutdownSocket } from '../../native/socket.js';
import { closeQuiet } from '../../native/libc.js';
import { NativeError } from '../../native/errors.js';
import { MAX_ADDR } from '../memory/guest_memory.js';
import { DmaTable, DmaWindow } from './dma.js';
import * as P from './protocol.js';
import { logger } from '../log.js';

const log = logger('vfio_user');

export interface RegionInfo {
  flags: number;
  size: number;
  /** mmap offset in `fd` (with FLAG_MMAP). */
  offset: number;
  /** fd the client may mmap; the server sends it, the device keeps ownership. */
  fd?: number;
  /** sparse mmap areas (offsets relative to the region). */
  sparse?: { offset: number; size: number }[];
}

/** The device side: what a vfio-user server serves. */
export interface VfioUserDevice {
  readonly numRegions: number;
  readonly numIrqs: number;
  regionInfo(index: number): RegionInfo;
  irqInfo(index: number): { flags: number; count: number };
  /** DATA_EVENTFD / DATA_NONE / DATA_BOOL for one irq index. Takes ownership of fds. */
  setIrqs(index: number, flags: number, start: number, count: number, fds: number[], data: Uint8Array): Promise<void> | void;
  regionRead(index: number, offset: number, count: number): Promise<Uint8Array> | Uint8Array;
  regionWrite(index: number, offset: number, data: Uint8Array): Promise<void> | void;
  /** The DMA windows changed; with `removing`, resolve only once nothing uses that window. */
  memoryChanged(dma: DmaTable, removing?: DmaWindow): Promise<void>;
  reset(): Promise<void>;
  /** The client went away: stop using its memory and irq fds (device state may stay). */
  disconnected(): Promise<void>;
}

export class VfioUserServer {
  private listenFd = -1;
  private connFd = -1;
  /** Counts accepted clients: a message is handled and answered only for the client it came from. */
  private connGen = 0;
  /** Clients accepted while one is served, not read from yet (the next is served when it goes). */
  private waiting: number[] = [];
  /** Messages (and their bytes) read and not handled yet; reading pauses at MAX_QUEUED or MAX_QUEUED_BYTES. */
  private queued = 0;
  private queuedBytes = 0;
  private paused = false;
  private closed = false;
  private buf = new Uint8Array(64 * 1024);
  private have = 0;
  private pendingFds: number[] = [];
  private chain: Promise<void> = Promise.resolve();
  readonly dma = new DmaTable((w) => this.memoryLost(w));
  /** The client (connGen) that mapped each window. */
  private readonly windowOwner = new WeakMap<DmaWindow, number>();
  negotiated = false;
  clientCaps: Record<string, unknown> = {};
  /** Messages handled, by command name (diagnostics). */
  readonly counts: Record<string, number> = {};

  constructor(readonly path: string, readonly device: VfioUserDevice, private readonly loop: FdLoop) {}

  get connected(): boolean { return this.connFd >= 0; }

  /** Refuses a file or a live socket at the path (SocketPathError); applies --socket-owner/--socket-mode. */
  listen(): void {
    prepareSocketPath(this.path);
    this.listenFd = unixListen(this.path);
    try { applySocketAccess(this.path); } catch (e) {
      closeQuiet(this.listenFd);
      this.listenFd = -1;
      try { unlinkSync(this.path); } catch { /* gone */ }
      throw e;
    }
    this.loop.watch(this.listenFd, () => this.onAccept());
    this.loop.watchSigbusGuard();
  }

  private onAccept(): void {
    for (;;) {
      const fd = unixAccept(this.listenFd);
      if (fd < 0) return;
      if (this.connFd < 0 && !this.closed) { this.adopt(fd); continue; }
      // one client at a time; the next waits (unread) until this one has gone, as the
      // previous one may just have closed without us having seen it yet
      if (this.waiting.length >= MAX_WAITING || this.closed) {
        log.warn(`${this.path}: refusing a client: one is connected and ${MAX_WAITING} more wait; ` +
          'close the connections that are not in use');
        closeQuiet(fd);
        continue;
      }
      this.waiting.push(fd);
      log.info(`${this.path}: a client waits until the connected one disconnects`);
    }
  }

  private adopt(fd: number): void {
    this.connFd = fd;
    this.connGen++;
    this.have = 0;
    this.queued = 0;
    this.queuedBytes = 0;
    this.paused = false;
    this.negotiated = false;
    log.info(`${this.path}: client connected`);
    this.loop.watch(fd, () => this.onReadable());
  }

  /**
   * Reads exactly one message at a time (header, then the rest): fds passed with a
   * message arrive with the read that takes its first bytes, so reading past a message
   * boundary could hand one message's fds to the one before it.
   */
  private onReadable(): void {
    const fd = this.connFd;
    if (fd < 0) return;
    for (;;) {
      if (this.connFd !== fd) return;
      if (this.queued >= MAX_QUEUED || this.queuedBytes >= MAX_QUEUED_BYTES) {
        // the client sends faster than its messages are handled: stop reading (its sends
        // block, not us) until the backlog is gone
        this.paused = true;
        this.loop.unwatch(fd);
        return;
      }
      let want = P.HDR_SIZE - this.have;
      if (want <= 0) {
        const h = P.readHeader(this.buf, 0);
        if (h.size < P.HDR_SIZE || h.size > P.MAX_MSG_SIZE) {
          this.dropClient(`a message of ${h.size} bytes (command ${h.cmd}) is a protocol error`);
          return;
        }
        if (this.have >= h.size) { this.deliver(h); continue; }
        want = h.size - this.have;
        if (this.buf.length < h.size) {
          const nb = new Uint8Array(Math.max(h.size, this.buf.length * 2));
          nb.set(this.buf.subarray(0, this.have));
          this.buf = nb;
        }
      }
      let r;
      try { r = recvWithFds(fd, this.buf, this.have, want); } catch (e) {
        this.dropClient((e as Error).message);
        return;
      }
      for (const x of r.fds) this.pendingFds.push(x);
      if (r.n < 0) return;
      if (r.n === 0) { this.dropClient(); return; }
      this.have += r.n;
    }
  }

  private deliver(h: P.MsgHeader): void {
    const payload = this.buf.slice(P.HDR_SIZE, h.size);
    const fds = this.pendingFds;
    this.pendingFds = [];
    this.have = 0;
    const gen = this.connGen;
    this.queued++;
    this.queuedBytes += h.size;
    this.chain = this.chain.then(() => this.handle(gen, h, payload, fds)).catch((e) => {
      log.error(`${this.path}: ${(e as Error).stack ?? e}`);
    }).then(() => this.handled(gen, h.size));
  }

  /** One message of client `gen` is done: resume reading a paused client once its backlog is gone. */
  private handled(gen: number, size: number): void {
    if (gen !== this.connGen || this.connFd < 0) return;
    this.queued--;
    this.queuedBytes -= size;
    if (this.paused && this.queued === 0) {
      this.paused = false;
      this.loop.watch(this.connFd, () => this.onReadable());
    }
  }

  /** Sends a reply without ever waiting: a client whose socket is full does not read its replies and is dropped. */
  private send(gen: number, msg: Uint8Array, fds: number[] = []): void {
    if (gen !== this.connGen || this.connFd < 0) return;
    try { sendWithFds(this.connFd, msg, fds, 0); } catch (e) {
      if (e instanceof NativeError && e.code === 'EAGAIN') this.dropClient(`reply failed (${e.message}): the client does not read its replies`);
      else this.dropClient();   // it closed before its reply
    }
  }

  private reply(gen: number, h: P.MsgHeader, payload?: Uint8Array, fds: number[] = []): void {
    if (h.flags & P.FLAG_NO_REPLY) return;
    this.send(gen, P.message({ id: h.id, cmd: h.cmd, flags: P.TYPE_REPLY, error: 0 }, payload), fds);
  }

  private replyError(gen: number, h: P.MsgHeader, errno: number): void {
    // an error is always reported, even for no_reply commands (the client must learn of it)
    this.send(gen, P.message({ id: h.id, cmd: h.cmd, flags: P.TYPE_REPLY | P.FLAG_ERROR, error: errno }));
  }

  private async handle(gen: number, h: P.MsgHeader, p: Uint8Array, fds: number[]): Promise<void> {
    if (gen !== this.connGen || this.connFd < 0) { fds.forEach(closeQuiet); return; }
    const name = P.cmdNames[h.cmd] ?? `cmd${h.cmd}`;
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    if ((h.flags & P.FLAG_TYPE_MASK) !== P.TYPE_COMMAND) {
      fds.forEach(closeQuiet);
      log.warn(`${this.path}: unexpected ${name} message of type ${h.flags & P.FLAG_TYPE_MASK}: ignored`);
      return;
    }
    try {
      const r = await this.dispatch(h, p, fds);
      this.reply(gen, h, r?.payload, r?.fds);
    } catch (e) {
      const errno = e instanceof P.VfioUserError ? e.errno : P.E.EIO;
      if (e instanceof P.VfioUserError) log.warn(`${this.path}: ${name}: ${e.message}`);
      else log.error(`${this.path}: ${name} failed: ${(e as Error).stack ?? e}`);
      this.replyError(gen, h, errno);
    }
  }

  private async dispatch(h: P.MsgHeader, p: Uint8Array, fds: number[]): Promise<{ payload?: Uint8Array; fds?: number[] } | void> {
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const need = (n: number) => {
      if (p.length < n) { fds.forEach(closeQuiet); throw new P.VfioUserError(P.E.EINVAL, `payload of ${p.length} bytes, at least ${n} needed`); }
    };
    const u64 = (o: number) => {
      const v = dv.getBigUint64(o, true);
      if (v >= BigInt(MAX_ADDR)) throw new P.VfioUserError(P.E.EINVAL, `value 0x${v.toString(16)} is beyond 2^53`);
      return Number(v);
    };
    const noFds = () => { if (fds.length) { fds.forEach(closeQuiet); throw new P.VfioUserError(P.E.EINVAL, 'unexpected file descriptors'); } };
    if (h.cmd !== P.Cmd.VERSION && !this.negotiated) {
      fds.forEach(closeQuiet);
      throw new P.VfioUserError(P.E.EINVAL, 'a VERSION handshake must come first');
    }
    switch (h.cmd) {
      case P.Cmd.VERSION: {
        noFds();
        const v = P.parseVersion(p);
        if (v.major !== P.VERSION_MAJOR) throw new P.VfioUserError(P.E.ENOTSUP, `protocol version ${v.major}.${v.minor} is not supported (0.x only)`);
        this.clientCaps = v.caps;
        this.negotiated = true;
        const caps: Record<string, unknown> = { max_msg_fds: P.MAX_MSG_FDS, max_data_xfer_size: P.MAX_DATA_XFER, pgsizes: 4096 };
        if (typeof v.caps.max_dma_maps === 'number') caps.max_dma_maps = Math.min(v.caps.max_dma_maps, 1024);
        return { payload: P.versionPayload(P.VERSION_MAJOR, Math.min(v.minor, P.VERSION_MINOR), { capabilities: caps }) };
      }
      case P.Cmd.DMA_MAP: {
        need(32);
        if (fds.length > 1) { fds.slice(1).forEach(closeQuiet); }
        const flags = dv.getUint32(4, true);
        let iova, size, offset;
        try { offset = u64(8); iova = u64(16); size = u64(24); } catch (e) { fds.forEach(closeQuiet); throw e; }
        this.windowOwner.set(this.dma.map(iova, size, offset, flags, fds.length ? fds[0] : -1), this.connGen);
        await this.device.memoryChanged(this.dma);
        return;
      }
      case P.Cmd.DMA_UNMAP: {
        need(24); noFds();
        const flags = dv.getUint32(4, true);
        const iova = Number(dv.getBigUint64(8, true) >= BigInt(MAX_ADDR) ? MAX_ADDR : dv.getBigUint64(8, true));
        const size = Number(dv.getBigUint64(16, true) >= BigInt(MAX_ADDR) ? MAX_ADDR : dv.getBigUint64(16, true));
        // like the kernel's type1 IOMMU: every window inside the range goes (flag bit 1: all of them);
        // a window only partly inside cannot be split
        const all = (flags & 2) !== 0;
        const gone = this.dma.windows.filter((w) => all || (w.iova >= iova && w.iova + w.size <= iova + size));
        const partial = all ? undefined : this.dma.windows.find((w) => !gone.includes(w) && w.iova < iova + size && iova < w.iova + w.size);
        if (partial) throw new P.VfioUserError(P.E.EINVAL, `DMA_UNMAP 0x${iova.toString(16)}+0x${size.toString(16)} would split the window at 0x${partial.iova.toString(16)}`);
        for (const w of gone) {
          await this.device.memoryChanged(this.dma, w);
          this.dma.remove(w);
          DmaTable.unmapWindow(w);
        }
        const out = new Uint8Array(24);
        out.set(p.subarray(0, 24));
        new DataView(out.buffer).setUint32(0, 24, true);
        return { payload: out };
      }
      case P.Cmd.DEVICE_GET_INFO: {
        noFds();
        const out = new Uint8Array(16), o = new DataView(out.buffer);
        o.setUint32(0, 16, true);
        o.setUint32(4, P.DEVICE_FLAGS_PCI | P.DEVICE_FLAGS_RESET, true);
        o.setUint32(8, this.device.numRegions, true);
        o.setUint32(12, this.device.numIrqs, true);
        return { payload: out };
      }
      case P.Cmd.DEVICE_GET_REGION_INFO: {
        need(12); noFds();
        const argsz = dv.getUint32(0, true), index = dv.getUint32(8, true);
        if (index >= this.device.numRegions) throw new P.VfioUserError(P.E.EINVAL, `region ${index} does not exist`);
        return encodeRegionInfo(index, this.device.regionInfo(index), argsz);
      }
      case P.Cmd.DEVICE_GET_IRQ_INFO: {
        need(12); noFds();
        const index = dv.getUint32(8, true);
        if (index >= this.device.numIrqs) throw new P.VfioUserError(P.E.EINVAL, `irq index ${index} does not exist`);
        const i = this.device.irqInfo(index);
        const out = new Uint8Array(16), o = new DataView(out.buffer);
        o.setUint32(0, 16, true); o.setUint32(4, i.flags, true); o.setUint32(8, index, true); o.setUint32(12, i.count, true);
        return { payload: out };
      }
      case P.Cmd.DEVICE_SET_IRQS: {
        need(20);
        const flags = dv.getUint32(4, true), index = dv.getUint32(8, true), start = dv.getUint32(12, true), count = dv.getUint32(16, true);
        if (index >= this.device.numIrqs) { fds.forEach(closeQuiet); throw new P.VfioUserError(P.E.EINVAL, `irq index ${index} does not exist`); }
        await this.device.setIrqs(index, flags, start, count, fds, p.subarray(20));
        return;
      }
      case P.Cmd.REGION_READ: {
        need(16); noFds();
        const offset = u64(0), region = dv.getUint32(8, true), count = dv.getUint32(12, true);
        if (count > P.MAX_DATA_XFER) throw new P.VfioUserError(P.E.EINVAL, `REGION_READ of ${count} bytes exceeds max_data_xfer_size`);
        if (region >= this.device.numRegions) throw new P.VfioUserError(P.E.EINVAL, `region ${region} does not exist`);
        const data = await this.device.regionRead(region, offset, count);
        const out = new Uint8Array(16 + data.length);
        out.set(p.subarray(0, 16));
        new DataView(out.buffer).setUint32(12, data.length, true);
        out.set(data, 16);
        return { payload: out };
      }
      case P.Cmd.REGION_WRITE: {
        need(16); noFds();
        const offset = u64(0), region = dv.getUint32(8, true), count = dv.getUint32(12, true);
        if (p.length < 16 + count) throw new P.VfioUserError(P.E.EINVAL, `REGION_WRITE says ${count} bytes but carries ${p.length - 16}`);
        if (region >= this.device.numRegions) throw new P.VfioUserError(P.E.EINVAL, `region ${region} does not exist`);
        await this.device.regionWrite(region, offset, p.subarray(16, 16 + count));
        return { payload: p.slice(0, 16) };
      }
      case P.Cmd.DEVICE_RESET:
        noFds();
        await this.device.reset();
        return;
      default:
        fds.forEach(closeQuiet);
        throw new P.VfioUserError(P.E.ENOTSUP, `command ${h.cmd} (${P.cmdNames[h.cmd] ?? 'unknown'}) is not supported`);
    }
  }

  /** Closes the connection (with `why`: the server drops the client, logged as a warning). */
  private dropClient(why?: string): void {
    const fd = this.connFd;
    if (fd < 0) return;
    this.loop.unwatch(fd);
    this.connFd = -1;
    this.pendingFds.forEach(closeQuiet);
    this.pendingFds = [];
    shutdownSocket(fd);
    closeQuiet(fd);
    if (why) log.warn(`${this.path}: client dropped: ${why}`);
    else log.info(`${this.path}: client disconnected`);
    this.chain = this.chain.then(async () => {
      try { await this.device.disconnected(); } catch (e) { log.error(`${this.path}: disconnect: ${(e as Error).message}`); }
      // all windows go: tell the device first, then unmap
      for (const w of [...this.dma.windows]) this.dma.remove(w);
      try { await this.device.memoryChanged(this.dma); } catch { /* device stopped */ }
      this.dma.clear();
    });
    // the next waiting client goes on now; its messages wait for the cleanup above
    const next = this.closed ? undefined : this.waiting.shift();
    if (next !== undefined) this.adopt(next);
  }

  /** A guarded DMA window took a SIGBUS: it now reads zeros, and its client is dropped. */
  private memoryLost(w: DmaWindow): void {
    if (this.windowOwner.get(w) !== this.connGen || this.connFd < 0) return;   // its client is gone already
    log.error(`${this.path}: DMA window at 0x${w.iova.toString(16)} (${w.size} bytes) lost its backing under vhostd's mapping ` +
      '(the client truncated the file, or its filesystem ran out of space): it now reads as zeros; the client is dropped. ' +
      'Do not shrink memory files while a vfio-user server uses them.');
    this.dropClient('its DMA memory lost its backing (SIGBUS)');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const fd of this.waiting) closeQuiet(fd);
    this.waiting = [];
    this.dropClient();
    await this.chain;
    if (this.listenFd >= 0) { this.loop.unwatch(this.listenFd); closeQuiet(this.listenFd); this.listenFd = -1; }
    try { unlinkSync(this.path); } catch { /* gone */ }
  }
}

/** Clients accepted while another is connected, kept waiting (more are refused). */
const MAX_WAITING = 8;
/** Messages (bytes) read ahead of the one being handled before the server stops reading a client. */
const MAX_QUEUED = 64, MAX_QUEUED_BYTES = 4 << 20;

/** The SIGBUS guard's eventfd is watched once per loop (one per process; vhost-user watches it on its own loop). */
/**
 * DEVICE_GET_REGION_INFO reply: struct + sparse mmap cap (if it fits in argsz).
 *
 * A reply too short for the caps says only how big the full one is (argsz): it has
 * neither FLAG_CAPS nor the fd. QEMU's vfio-user client rejects FLAG_CAPS with a
 * cap_offset outside the reply (EINVAL, "failed to get region 0 info"), unlike the
 * kernel's VFIO ioctl, which sets the flag with cap_offset 0; libvfio-user does the
 * same as we do. QEMU then asks again with the full argsz and closes an fd it got
 * with the short reply, so sending it there would only cost a descriptor round trip.
 */
export function encodeRegionInfo(index: number, r: RegionInfo, argsz: number): { payload: Uint8Array; fds: number[] } {
  const sparse = r.sparse ?? [];
  const capLen = sparse.length ? 16 + 16 * sparse.length : 0;
  const full = 32 + capLen;
  const withCaps = capLen > 0 && argsz >= full;
  const out = new Uint8Array(withCaps ? full : 32), o = new DataView(out.buffer);
  let flags = r.flags;
  if (withCaps) flags |= P.REGION_FLAG_CAPS;
  o.setUint32(0, full, true);
  o.setUint32(4, flags, true);
  o.setUint32(8, index, true);
  o.setUint32(12, withCaps ? 32 : 0, true);
  o.setBigUint64(16, BigInt(r.size), true);
  o.setBigUint64(24, BigInt(r.offset), true);
  if (withCaps) {
    o.setUint16(32, P.REGION_INFO_CAP_SPARSE_MMAP, true);
    o.setUint16(34, 1, true);
    o.setUint32(36, 0, true);
    o.setUint32(40, sparse.length, true);
    sparse.forEach((a, i) => {
      o.setBigUint64(48 + 16 * i, BigInt(a.offset), true);
      o.setBigUint64(56 + 16 * i, BigInt(a.size), true);
    });
  }
  const mappable = (flags & P.REGION_FLAG_MMAP) !== 0 && r.fd !== undefined && r.fd >= 0 && (capLen === 0 || withCaps);
  return { payload: out, fds: mappable ? [r.fd!] : [] };
}
