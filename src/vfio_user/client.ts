// A small vfio-user client (protocol 0.1, QEMU docs/interop/vfio-user.rst) of our own, for the
// NVMe bdev's vfio-user transport (src/vfio_user/nvme_transport.ts),
// the NVMe initiator in bench/ and the integration tests: version handshake, DMA_MAP of a
// memfd, device/region/irq info (with the sparse mmap capability and its fd), region
// reads and writes, and posted (no-reply) writes for trapped doorbells.
import { unixConnect, sendWithFds, recvWithFds } from "../../native/socket.js";
import { closeQuiet } from "../../native/libc.js";
import * as P from "./protocol.js";

export interface Reply { h: P.MsgHeader; p: Uint8Array; fds: number[] }

export interface RegionInfo {
  index: number;
  flags: number;
  size: number;
  offset: number;
  /** sparse mmap areas (offsets in the region) */
  sparse: { offset: number; size: number }[];
  /** the fd to mmap (FLAG_MMAP), owned by the caller; -1 if none came */
  fd: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class VfioUserError extends Error {
  constructor(readonly cmd: number, readonly errno: number) {
    super(`vfio-user ${P.cmdNames[cmd] ?? cmd} failed: errno ${errno}`);
  }
}

export class VfioUserClient {
  private nextId = 1;
  private rbuf = new Uint8Array(1 << 16);
  /** Error replies to posted (no-reply) messages, as [command, errno]. */
  readonly postedErrors: [number, number][] = [];
  /** Messages sent with FLAG_NO_REPLY (trapped doorbell writes, for instance). */
  posted = 0;
  private readonly wbuf = new Uint8Array(P.HDR_SIZE + 16 + 4);
  private readonly wdv = new DataView(this.wbuf.buffer);

  constructor(readonly fd: number) {}

  /**
   * A blocking socket: a posted write waits for room when the server lags (a unix socket
   * holds only a couple of hundred small messages). Reads never block (MSG_DONTWAIT).
   */
  static connect(path: string): VfioUserClient { return new VfioUserClient(unixConnect(path, false)); }

  close(): void { closeQuiet(this.fd); }

  /** Reads one whole message (waits up to timeoutMs); null on timeout. */
  private async readMessage(timeoutMs: number): Promise<Reply | null> {
    let have = 0;
    const fds: number[] = [];
    const end = Date.now() + timeoutMs;
    for (;;) {
      const want = have < P.HDR_SIZE ? P.HDR_SIZE - have : P.readHeader(this.rbuf).size - have;
      if (have >= P.HDR_SIZE && want === 0) break;
      if (have >= P.HDR_SIZE && (P.readHeader(this.rbuf).size > P.MAX_MSG_SIZE || P.readHeader(this.rbuf).size < P.HDR_SIZE)) {
        throw new Error(`vfio-user server sent a message of ${P.readHeader(this.rbuf).size} bytes (at most ${P.MAX_MSG_SIZE})`);
      }
      if (have >= P.HDR_SIZE && P.readHeader(this.rbuf).size > this.rbuf.length) {
        const nb = new Uint8Array(P.readHeader(this.rbuf).size);
        nb.set(this.rbuf.subarray(0, have));
        this.rbuf = nb;
      }
      const r = recvWithFds(this.fd, this.rbuf, have, want);
      fds.push(...r.fds);
      if (r.n === 0) throw new Error("vfio-user server closed the connection");
      if (r.n < 0) {
        if (have === 0 && Date.now() > end) return null;
        if (Date.now() > end + 10_000) throw new Error("vfio-user: a reply stopped half-way");
        await sleep(1);
        continue;
      }
      have += r.n;
    }
    const h = P.readHeader(this.rbuf);
    return { h, p: this.rbuf.slice(P.HDR_SIZE, h.size), fds };
  }

  /** Sends a command and waits for its reply (error replies to posted writes are collected on the way). */
  async call(cmd: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], timeoutMs = 10_000): Promise<Reply> {
    const id = this.nextId++ & 0xffff;
    sendWithFds(this.fd, P.message({ id, cmd, flags: P.TYPE_COMMAND, error: 0 }, payload), fds);
    for (;;) {
      const r = await this.readMessage(timeoutMs);
      if (!r) throw new Error(`vfio-user ${P.cmdNames[cmd]}: no reply within ${timeoutMs} ms`);
      if (r.h.id === id && r.h.cmd === cmd) return r;
      if (r.h.flags & P.FLAG_ERROR) this.postedErrors.push([r.h.cmd, r.h.error]);
      r.fds.forEach(closeQuiet);
    }
  }

  /** call() that throws on an error reply. */
  async ok(cmd: number, payload?: Uint8Array, fds?: number[]): Promise<Reply> {
    const r = await this.call(cmd, payload, fds);
    if (r.h.flags & P.FLAG_ERROR) { r.fds.forEach(closeQuiet); throw new VfioUserError(cmd, r.h.error); }
    return r;
  }

  async version(caps: Record<string, unknown> = { max_msg_fds: 8 }): Promise<{ major: number; minor: number; caps: Record<string, unknown> }> {
    const r = await this.ok(P.Cmd.VERSION, P.versionPayload(P.VERSION_MAJOR, P.VERSION_MINOR, { capabilities: caps }));
    return P.parseVersion(r.p);
  }

  async dmaMap(fd: number, iova: number, size: number, offset = 0, flags = P.DMA_FLAG_READ | P.DMA_FLAG_WRITE): Promise<void> {
    const m = new Uint8Array(32), dv = new DataView(m.buffer);
    dv.setUint32(0, 32, true); dv.setUint32(4, flags, true);
    dv.setBigUint64(8, BigInt(offset), true); dv.setBigUint64(16, BigInt(iova), true); dv.setBigUint64(24, BigInt(size), true);
    await this.ok(P.Cmd.DMA_MAP, m, [fd]);
  }

  /** DMA_UNMAP of exactly one window mapped before. */
  async dmaUnmap(iova: number, size: number): Promise<void> {
    const m = new Uint8Array(24), dv = new DataView(m.buffer);
    dv.setUint32(0, 24, true);
    dv.setBigUint64(8, BigInt(iova), true); dv.setBigUint64(16, BigInt(size), true);
    await this.ok(P.Cmd.DMA_UNMAP, m);
  }

  /** DEVICE_RESET: the server resets the device (for NVMe: as a controller reset). */
  async deviceReset(): Promise<void> { await this.ok(P.Cmd.DEVICE_RESET); }

  async deviceInfo(): Promise<{ flags: number; numRegions: number; numIrqs: number }> {
    const q = new Uint8Array(16); new DataView(q.buffer).setUint32(0, 16, true);
    const r = await this.ok(P.Cmd.DEVICE_GET_INFO, q);
    const dv = new DataView(r.p.buffer, r.p.byteOffset, r.p.byteLength);
    return { flags: dv.getUint32(4, true), numRegions: dv.getUint32(8, true), numIrqs: dv.getUint32(12, true) };
  }

  /** DEVICE_GET_REGION_INFO the way QEMU asks: argsz 32 first, then the size the server wants. */
  async regionInfo(index: number): Promise<RegionInfo> {
    let argsz = 32;
    for (let attempt = 0; ; attempt++) {
      const q = new Uint8Array(argsz), dv = new DataView(q.buffer);
      dv.setUint32(0, argsz, true); dv.setUint32(8, index, true);
      const r = await this.ok(P.Cmd.DEVICE_GET_REGION_INFO, q);
      const o = new DataView(r.p.buffer, r.p.byteOffset, r.p.byteLength);
      const want = o.getUint32(0, true);
      if (want > argsz && attempt === 0) { r.fds.forEach(closeQuiet); argsz = want; continue; }
      const info: RegionInfo = { index, flags: o.getUint32(4, true), size: Number(o.getBigUint64(16, true)),
        offset: Number(o.getBigUint64(24, true)), sparse: [], fd: r.fds[0] ?? -1 };
      r.fds.slice(1).forEach(closeQuiet);
      const capOff = o.getUint32(12, true);
      if ((info.flags & P.REGION_FLAG_CAPS) && capOff >= 32 && capOff + 16 <= r.p.length) {
        let c = capOff;
        for (let n = 0; c && n < 16; n++) {
          const id = o.getUint16(c, true), next = o.getUint32(c + 4, true);
          if (id === P.REGION_INFO_CAP_SPARSE_MMAP) {
            const areas = o.getUint32(c + 8, true);
            for (let i = 0; i < areas && c + 16 + 16 * i + 16 <= r.p.length; i++) {
              info.sparse.push({ offset: Number(o.getBigUint64(c + 16 + 16 * i, true)), size: Number(o.getBigUint64(c + 24 + 16 * i, true)) });
            }
          }
          c = next;
        }
      }
      return info;
    }
  }

  async read(region: number, off: number, count: number): Promise<DataView> {
    const q = new Uint8Array(16), dv = new DataView(q.buffer);
    dv.setBigUint64(0, BigInt(off), true); dv.setUint32(8, region, true); dv.setUint32(12, count, true);
    const r = await this.ok(P.Cmd.REGION_READ, q);
    return new DataView(r.p.buffer, r.p.byteOffset + 16, count);
  }

  async write(region: number, off: number, data: Uint8Array | number[]): Promise<Reply> {
    const q = new Uint8Array(16 + data.length), dv = new DataView(q.buffer);
    dv.setBigUint64(0, BigInt(off), true); dv.setUint32(8, region, true); dv.setUint32(12, data.length, true);
    q.set(data, 16);
    return this.call(P.Cmd.REGION_WRITE, q);
  }

  async r32(region: number, off: number): Promise<number> { return (await this.read(region, off, 4)).getUint32(0, true); }
  async r64(region: number, off: number): Promise<bigint> { return (await this.read(region, off, 8)).getBigUint64(0, true); }

  async w32(region: number, off: number, v: number): Promise<void> {
    const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v >>> 0, true);
    const r = await this.write(region, off, b);
    if (r.h.flags & P.FLAG_ERROR) throw new VfioUserError(P.Cmd.REGION_WRITE, r.h.error);
  }

  /**
   * A posted 4-byte REGION_WRITE (FLAG_NO_REPLY), sent at once without waiting, as QEMU
   * sends trapped doorbell writes. The server answers only if it fails (see postedErrors,
   * filled by the next call(), or drainPosted()).
   */
  post32(region: number, off: number, v: number): void {
    const b = this.wbuf, dv = this.wdv;
    dv.setUint16(0, this.nextId++ & 0xffff, true);
    dv.setUint16(2, P.Cmd.REGION_WRITE, true);
    dv.setUint32(4, b.length, true);
    dv.setUint32(8, P.TYPE_COMMAND | P.FLAG_NO_REPLY, true);
    dv.setUint32(12, 0, true);
    dv.setUint32(16, off, true); dv.setUint32(20, 0, true);
    dv.setUint32(24, region, true); dv.setUint32(28, 4, true);
    dv.setUint32(32, v >>> 0, true);
    sendWithFds(this.fd, b);
    this.posted++;
  }

  /** Collects error replies to posted writes that have arrived (does not wait). */
  async drainPosted(): Promise<[number, number][]> {
    for (;;) {
      const r = await this.readMessage(0);
      if (!r) return this.postedErrors;
      if (r.h.flags & P.FLAG_ERROR) this.postedErrors.push([r.h.cmd, r.h.error]);
      r.fds.forEach(closeQuiet);
    }
  }
}
