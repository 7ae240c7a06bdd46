// Just enough of a vhost-user front end to hand a backend a guest memory table and time
// it: handshake, SET_MEM_TABLE with REPLY_ACK (the ack comes once the backend mapped the
// memory, and DMA-mapped it for its NVMe controllers). Closing the connection makes the
// backend drop (and DMA-unmap) it.
import { unixConnect, sendWithFds, recvWithFds } from "../../native/socket.js";
import { closeQuiet } from "../../native/libc.js";
import * as P from "../../src/vhost/protocol.js";

export class VhostMemClient {
  private readonly fd: number;
  private readonly rbuf = new Uint8Array(P.HDR_SIZE + P.MAX_PAYLOAD);

  constructor(path: string) { this.fd = unixConnect(path); }

  private send(req: number, payload: Uint8Array, flags = P.FLAG_VERSION, fds: number[] = []): void {
    const out = new Uint8Array(P.HDR_SIZE + payload.length), dv = new DataView(out.buffer);
    dv.setUint32(0, req, true); dv.setUint32(4, flags, true); dv.setUint32(8, payload.length, true);
    out.set(payload, P.HDR_SIZE);
    sendWithFds(this.fd, out, fds);
  }

  private async reply(timeoutMs = 30_000): Promise<DataView> {
    const end = Date.now() + timeoutMs;
    let have = 0, want = P.HDR_SIZE;
    for (;;) {
      const r = recvWithFds(this.fd, this.rbuf, have, want - have);
      r.fds.forEach(closeQuiet);
      if (r.n === 0) throw new Error("the backend closed the connection");
      if (r.n > 0) {
        have += r.n;
        if (have === P.HDR_SIZE) want += new DataView(this.rbuf.buffer).getUint32(8, true);
        if (have === want && want >= P.HDR_SIZE) return new DataView(this.rbuf.buffer, P.HDR_SIZE, want - P.HDR_SIZE);
        continue;
      }
      if (Date.now() > end) throw new Error("no reply from the backend");
      await new Promise((res) => setImmediate(res));
    }
  }

  private async u64(req: number): Promise<bigint> {
    this.send(req, new Uint8Array(0));
    return (await this.reply()).getBigUint64(0, true);
  }

  private static u64(v: bigint): Uint8Array { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, v, true); return b; }

  async handshake(): Promise<void> {
    const f = await this.u64(P.REQ.GET_FEATURES);
    this.send(P.REQ.SET_FEATURES, VhostMemClient.u64(f));
    const pf = await this.u64(P.REQ.GET_PROTOCOL_FEATURES);
    const ack = 1n << BigInt(P.PF.REPLY_ACK);
    if (!(pf & ack)) throw new Error("the backend does not offer REPLY_ACK");
    this.send(P.REQ.SET_PROTOCOL_FEATURES, VhostMemClient.u64(ack));
    this.send(P.REQ.SET_OWNER, new Uint8Array(0));
  }

  /** SET_MEM_TABLE of one region (gpa 0) backed by fd; resolves when the backend acked it. */
  async setMemTable(fd: number, size: number, uaddr: number): Promise<void> {
    const p = new Uint8Array(8 + 32), dv = new DataView(p.buffer);
    dv.setUint32(0, 1, true);
    dv.setBigUint64(8, 0n, true); dv.setBigUint64(16, BigInt(size), true);
    dv.setBigUint64(24, BigInt(uaddr), true); dv.setBigUint64(32, 0n, true);
    this.send(P.REQ.SET_MEM_TABLE, p, P.FLAG_VERSION | P.FLAG_NEED_REPLY, [fd]);
    const st = (await this.reply()).getBigUint64(0, true);
    if (st !== 0n) throw new Error(`SET_MEM_TABLE failed (status ${st})`);
  }

  close(): void { closeQuiet(this.fd); }
}
