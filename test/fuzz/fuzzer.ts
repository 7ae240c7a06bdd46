// The vhost-user fuzzer: seeded cases against one controller socket (the victim).
//
// Cases come in blocks of BLOCK; a block runs on one connection (or, for framing attacks,
// one connection per case) and its family (message mutation, memory tables, setup order,
// framing, rings) is drawn from the seed. Case n's input depends only on (seed, n), and
// every block starts on a fresh connection, so a failure reproduces with
// VHOSTD_FUZZ_SEED=<seed> VHOSTD_FUZZ_FIRST=<block start> VHOSTD_FUZZ_CASES=<n+1>.
//
// Checks: every message that must be answered is answered in time (a reply, an ack, or a
// closed connection — never silence); replies are well-formed; a ring kicked with hostile
// descriptors never stalls the reactor (a probe queue on the same reactor keeps completing)
// and never completes a request it was not given, or without writing its status.
import { Rng, INTERESTING_U32, INTERESTING_U64 } from './prng.js';
import {
  VhostUserClient, connectFresh, GuestMem, Ring, P, u64, u32pair, regionBytes, memTablePayload, vringAddrPayload,
  handshake, startRing, stopRing, blkRequest, Closed, Timeout, BadReply, HAS_REPLY, Msg, sleepSync,
  VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT, VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_RING_F_EVENT_IDX, VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
} from './vhost_client.js';
import { eventfd, closeQuiet, memfdCreate, open, O_RDONLY } from '../../native/libc.js';

export const BLOCK = 64;

export type Family = 'msg' | 'memtable' | 'order' | 'frame' | 'ring';
const FAMILIES: Family[] = ['msg', 'memtable', 'order', 'frame', 'ring'];
const FAMILY_WEIGHTS = [40, 14, 14, 10, 22];

export interface FuzzOptions {
  seed: number;
  cases: number;
  first?: number;
  socket: string;
  timeoutMs: number;
  /** Is the target process still there? Checked between blocks. */
  alive: () => boolean;
  progress?: (done: number, stats: FuzzStats) => void;
}

export interface FuzzStats {
  cases: number;
  byFamily: Record<Family, number>;
  messages: number;
  replies: number;
  acksOk: number;
  acksRefused: number;
  closedByTarget: number;
  connections: number;
  connectRetries: number;
  ringRequests: number;
  ringCompleted: number;
  ringStatusErr: number;
  ringRestarts: number;
  probes: number;
  queuesStartedBySetup: number;
  elapsedMs: number;
}

export class FuzzFailure extends Error {
  constructor(readonly caseNo: number, readonly seed: number, readonly blockStart: number, what: string, history: string[]) {
    super(`fuzz case ${caseNo} failed: ${what}\n  recent cases:\n    ${history.join('\n    ')}\n` +
      `  reproduce: VHOSTD_FUZZ_SEED=${seed} VHOSTD_FUZZ_FIRST=${blockStart} VHOSTD_FUZZ_CASES=${caseNo + 1} ` +
      'npx vitest run test/integration/fuzz-vhost-user.test.ts\n' +
      `  (or the whole run up to it: VHOSTD_FUZZ_SEED=${seed} VHOSTD_FUZZ_CASES=${caseNo + 1})`);
  }
}

// ------------------------------------------------------------------ fds of every kind

type FdKind = 'eventfd' | 'memfd' | 'memfd0' | 'devnull' | 'rofile' | 'dir';
/** An fd to pass: made fresh of a kind (and closed after sending), or an existing one. */
type FdSpec = FdKind | number;
const FD_KINDS: FdKind[] = ['eventfd', 'memfd', 'memfd0', 'devnull', 'rofile', 'dir'];

function makeFd(k: FdKind): number {
  switch (k) {
    case 'eventfd': return eventfd();
    case 'memfd': return memfdCreate('fuzz-x', 65536);
    case 'memfd0': return memfdCreate('fuzz-0', 0);
    case 'devnull': return open('/dev/null', 2 /* O_RDWR */);
    case 'rofile': return open('/proc/self/exe', O_RDONLY);
    case 'dir': return open('/', O_RDONLY);
  }
}

/** GET/SET_INFLIGHT_FD payload: mmap size, offset, queues, queue size (sane or not). */
function inflightPayload(rng: Rng, num: number): Uint8Array {
  const b = new Uint8Array(rng.chance(0.9) ? 24 : rng.pick([0, 8, 19, 20])), dv = new DataView(b.buffer);
  if (b.length < 20) return b;
  const nq = rng.chance(0.8) ? rng.range(1, 4) : rng.pick([0, 64, 65, 0xffff]);
  const qs = rng.chance(0.8) ? num : rng.pick([0, 3, 32768, 0xffff]);
  // per queue: 16-byte header + 16 bytes per descriptor (vhost-user.rst), give or take
  const size = rng.chance(0.7) ? nq * (64 + 16 * qs) : rng.pick([0, 4096, 65536, 1 << 20, 1 << 30, 2 ** 40]);
  dv.setBigUint64(0, BigInt(size), true);
  dv.setBigUint64(8, BigInt(rng.chance(0.8) ? 0 : rng.pick([1, 4096, 65536, 2 ** 40])), true);
  dv.setUint16(16, nq & 0xffff, true); dv.setUint16(18, qs & 0xffff, true);
  return b;
}

// ------------------------------------------------------------------ sessions

/** One connection to the victim with what the fuzzer knows of its state. */
interface Session {
  c: VhostUserClient;
  mem: GuestMem;
  offered: bigint;
  /** REPLY_ACK negotiated, as far as the client can tell. */
  ack: boolean;
}

const MEM_SIZE = 256 * 1024;

interface PendingMsg { caseNo: number; req: number; expect: boolean }

export class Fuzzer {
  readonly stats: FuzzStats;
  private history: string[] = [];
  private caseNo = 0;
  private blockStart = 0;
  private sess: Session | null = null;
  private ringSess: RingSession | null = null;

  constructor(private readonly o: FuzzOptions) {
    this.stats = { cases: 0, byFamily: { msg: 0, memtable: 0, order: 0, frame: 0, ring: 0 }, messages: 0, replies: 0,
      acksOk: 0, acksRefused: 0, closedByTarget: 0, connections: 0, connectRetries: 0, ringRequests: 0,
      ringCompleted: 0, ringStatusErr: 0, ringRestarts: 0, probes: 0, queuesStartedBySetup: 0, elapsedMs: 0 };
  }

  private note(s: string): void {
    this.history.push(`#${this.caseNo} ${s}`);
    if (this.history.length > 12) this.history.shift();
  }

  private fail(what: string): never {
    throw new FuzzFailure(this.caseNo, this.o.seed, this.blockStart, what, this.history);
  }

  /** Runs cases [first, cases); yields to the event loop between blocks. */
  async run(): Promise<FuzzStats> {
    const t0 = performance.now();
    const first = this.o.first ?? 0;
    try {
      for (let b = Math.floor(first / BLOCK) * BLOCK; b < this.o.cases; b += BLOCK) {
        this.blockStart = Math.max(b, first);
        const end = Math.min(b + BLOCK, this.o.cases);
        const fam = FAMILIES[new Rng(this.o.seed ^ Math.imul(b / BLOCK + 1, 0x2545f491)).weighted(FAMILY_WEIGHTS)];
        this.runBlock(fam, this.blockStart, end);
        this.dropSessions();
        if (!this.o.alive()) { this.caseNo = end - 1; this.fail('the daemon process is gone'); }
        this.stats.elapsedMs = performance.now() - t0;
        this.o.progress?.(end - first, this.stats);
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.dropSessions();
      this.stats.elapsedMs = performance.now() - t0;
    }
    return this.stats;
  }

  private dropSessions(): void {
    if (this.sess) { this.sess.c.close(); this.sess.mem.close(); this.sess = null; }
    if (this.ringSess) { this.ringSess.close(); this.ringSess = null; }
  }

  private runBlock(fam: Family, from: number, to: number): void {
    try {
      if (fam === 'ring') { this.ringBlock(from, to); return; }
      for (let n = from; n < to;) {
        this.caseNo = n;
        const rng = Rng.forCase(this.o.seed, n);
        if (fam === 'frame') { this.frameCase(rng); n++; continue; }
        // message families pipeline a few cases, then read what they must answer
        const batch = Math.min(to - n, rng.chance(0.5) ? 1 : rng.range(2, 8));
        const sent: PendingMsg[] = [];
        const s = this.session();
        let closed = false, k = 0;
        for (; k < batch && !closed; k++) {
          this.caseNo = n + k;
          const r = k === 0 ? rng : Rng.forCase(this.o.seed, n + k);
          try {
            if (fam === 'msg') this.msgCase(r, s, sent);
            else if (fam === 'memtable') this.memtableCase(r, s, sent);
            else this.orderCase(r, s, sent);
          } catch (e) { if (e instanceof Closed) closed = true; else throw e; }
          this.stats.cases++; this.stats.byFamily[fam]++;
        }
        if (!closed) closed = this.collect(s, sent);
        if (closed) { this.stats.closedByTarget++; this.dropSessions(); }
        n += k; // cases after a close are run on the next connection
      }
    } catch (e) {
      if (e instanceof FuzzFailure) throw e;
      if (e instanceof Timeout) this.fail(`hang: ${e.message}`);
      if (e instanceof BadReply) this.fail(`protocol violation: ${e.message}`);
      this.fail(`client error: ${(e as Error).stack ?? e}`);
    }
  }

  /** Reads the answers to pipelined messages; returns true if the target closed the connection. */
  private collect(s: Session, sent: PendingMsg[]): boolean {
    // a sentinel makes silence observable: it must be answered after everything before it
    const sentinel: PendingMsg = { caseNo: this.caseNo, req: P.REQ.GET_FEATURES, expect: true };
    try {
      s.c.send(P.REQ.GET_FEATURES);
      sent.push(sentinel);
    } catch (e) { if (e instanceof Closed) return true; throw e; }
    for (const m of sent) {
      if (!m.expect) continue;
      let r: Msg;
      try { r = s.c.recv(); } catch (e) {
        if (e instanceof Closed) return true;
        if (e instanceof Timeout) { this.caseNo = m.caseNo; throw new Timeout(`${P.REQ_NAMES[m.req] ?? `request ${m.req}`} not answered: ${e.message}`); }
        throw e;
      }
      this.stats.replies++;
      if (r.req !== m.req || (r.flags & 0x3) !== P.FLAG_VERSION || (r.flags & P.FLAG_REPLY) === 0) {
        this.caseNo = m.caseNo;
        throw new BadReply(`expected the answer to ${P.REQ_NAMES[m.req] ?? m.req}, got request ${r.req} flags 0x${r.flags.toString(16)} ` +
          `(${r.payload.length} bytes)`);
      }
      // GET_INFLIGHT_FD: a reply of its own (with an fd, closed by recv) or a refusing ack
      if (!HAS_REPLY.has(m.req) && !(m.req === P.REQ.GET_INFLIGHT_FD && r.payload.length !== 8)) {
        if (r.payload.length !== 8) { this.caseNo = m.caseNo; throw new BadReply(`REPLY_ACK of ${r.payload.length} bytes`); }
        if (r.payload.some((x) => x !== 0)) this.stats.acksRefused++; else this.stats.acksOk++;
      }
      if (m === sentinel && r.payload.length === 8) s.offered = new DataView(r.payload.buffer).getBigUint64(0, true);
    }
    return false;
  }

  private session(): Session {
    if (this.sess && !this.sess.c.isClosed) return this.sess;
    this.dropSessions();
    const c = this.connect();
    const mem = new GuestMem(MEM_SIZE, 0x100000000, 'fuzz-session');
    const rng = Rng.forCase(this.o.seed ^ 0x5e55, this.caseNo);
    // guest memory full of junk: rings that start on it read garbage
    for (let i = 0; i < MEM_SIZE; i += 4) mem.dv.setUint32(i, rng.chance(0.5) ? 0 : rng.u32(), true);
    const s: Session = { c, mem, offered: 0n, ack: false };
    s.offered = c.callU64(P.REQ.GET_FEATURES);
    this.negotiateAck(s);
    this.sess = s;
    return s;
  }

  private connect(): VhostUserClient {
    const t = performance.now();
    const c = connectFresh(this.o.socket, this.o.timeoutMs);
    this.stats.connections++;
    if (performance.now() - t > 1) this.stats.connectRetries++;
    return c;
  }

  private negotiateAck(s: Session): void {
    const pf = s.c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
    s.c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf & ((1n << BigInt(P.PF.REPLY_ACK)) | (1n << BigInt(P.PF.CONFIG)) | (1n << BigInt(P.PF.MQ)))));
    s.ack = s.c.ack = (pf & (1n << BigInt(P.PF.REPLY_ACK))) !== 0n;
  }

  /** Sends one (possibly mutated) message and records whether it must be answered. */
  private emit(s: Session, sent: PendingMsg[], req: number, payload: Uint8Array, fds: FdSpec[],
    o: { flags?: number; size?: number; desc: string }): void {
    fds = fds.slice(0, 32); // SCM_RIGHTS limit of the socket helper
    const own = fds.map((f) => (typeof f === 'number' ? -1 : makeFd(f)));
    const pass = fds.map((f, i) => (typeof f === 'number' ? f : own[i]));
    let flags = o.flags ?? (P.FLAG_VERSION | P.FLAG_NEED_REPLY);
    // answered with a message of its own by a vhostd that does inflight tracking: always ask, so exactly one answer comes
    if (req === P.REQ.GET_INFLIGHT_FD || req === P.REQ.IOTLB_MSG || req === P.REQ.CREATE_CRYPTO_SESSION) flags |= P.FLAG_NEED_REPLY;
    this.note(`${P.REQ_NAMES[req] ?? `req ${req}`} flags=0x${(flags >>> 0).toString(16)} size=${o.size ?? payload.length}/${payload.length} ` +
      `fds=${fds.length} ${o.desc}`);
    this.stats.messages++;
    try {
      s.c.send(req, payload, { flags, fds: pass, size: o.size });
    } finally {
      for (const f of own) closeQuiet(f);
    }
    const expect = HAS_REPLY.has(req) || ((flags & P.FLAG_NEED_REPLY) !== 0 && s.ack);
    sent.push({ caseNo: this.caseNo, req, expect });
    // the client's model of the target: these change what must be answered next
    // RESET_OWNER / RESET_DEVICE reset the rings only: negotiated protocol features stay
    if (req === P.REQ.SET_PROTOCOL_FEATURES && payload.length >= 8 && (flags & 3) === P.FLAG_VERSION) {
      s.ack = (new DataView(payload.buffer, payload.byteOffset).getBigUint64(0, true) & (1n << BigInt(P.PF.REPLY_ACK))) !== 0n;
    }
  }

  // ---------------------------------------------------------------- family: msg

  /** A message of any type built for the session's state, then mutated (or not). */
  private msgCase(rng: Rng, s: Session, sent: PendingMsg[]): void {
    if (!s.ack && rng.chance(0.8)) this.reAck(s, sent);
    const t = this.template(rng, s);
    const muts: string[] = [];
    let { req, payload, fds } = t;
    let flags = P.FLAG_VERSION | P.FLAG_NEED_REPLY;
    const nm = rng.chance(0.3) ? 0 : rng.range(1, 3);
    for (let i = 0; i < nm; i++) {
      switch (rng.int(9)) {
        case 0: { const l = rng.int(payload.length + 1); payload = payload.slice(0, l); muts.push(`truncate:${l}`); break; }
        case 1: {
          const add = rng.chance(0.1) ? rng.range(1, Math.max(1, P.MAX_PAYLOAD + 64 - payload.length)) : rng.range(1, 64);
          const b = new Uint8Array(payload.length + add); b.set(payload); b.set(rng.bytes(add), payload.length);
          payload = b; muts.push(`extend:+${add}`); break;
        }
        case 2: case 3: {
          if (payload.length === 0) break;
          const b = payload.slice(), dv = new DataView(b.buffer);
          const w = rng.pick([1, 2, 4, 8]);
          const off = rng.int(Math.max(1, b.length - w + 1));
          if (off + w > b.length) { b[off % b.length] = rng.u32() & 0xff; muts.push(`byte@${off}`); }
          else if (w === 8) { const v = rng.chance(0.7) ? rng.pick(INTERESTING_U64) : rng.u64(); dv.setBigUint64(off, v, true); muts.push(`u64@${off}=0x${v.toString(16)}`); }
          else if (w === 4) { const v = rng.chance(0.7) ? rng.pick(INTERESTING_U32) : rng.u32(); dv.setUint32(off, v, true); muts.push(`u32@${off}=0x${v.toString(16)}`); }
          else if (w === 2) { const v = rng.u32() & 0xffff; dv.setUint16(off, v, true); muts.push(`u16@${off}`); }
          else { b[off] = rng.u32() & 0xff; muts.push(`u8@${off}`); }
          payload = b; break;
        }
        case 4: {
          const k = rng.int(4);
          if (k === 0) { fds = []; muts.push('no-fds'); }
          else if (k === 1) { const x = rng.range(1, rng.chance(0.1) ? 32 - fds.length : 3); fds = [...fds, ...Array.from({ length: x }, () => rng.pick(FD_KINDS))]; muts.push(`extra-fds:${x}`); }
          else { fds = fds.map(() => rng.pick(FD_KINDS)); if (fds.length === 0) fds = [rng.pick(FD_KINDS)]; muts.push(`fd-kinds:${fds.join(',')}`); }
          break;
        }
        case 5: flags &= ~P.FLAG_NEED_REPLY; muts.push('no-need-reply'); break;
        case 6: { const f = rng.pick([P.FLAG_REPLY, 0x10, 0x80000000, rng.u32() & ~3]); flags |= f; muts.push(`flags|0x${(f >>> 0).toString(16)}`); break; }
        case 7: {
          if (rng.chance(0.3)) { flags = (flags & ~3) | rng.pick([0, 2, 3]); muts.push(`version:${flags & 3}`); }
          else { req = rng.pick([0, 41, 42, 63, 64, 100, 255, 256, 0x7fffffff, 0xffffffff, rng.u32(), rng.range(1, 45)]); muts.push(`req=${req}`); }
          break;
        }
        case 8: if (payload.length > P.MAX_PAYLOAD || rng.chance(0.5)) break;
          { const b = new Uint8Array(Math.max(payload.length, rng.range(P.MAX_PAYLOAD + 1, P.MAX_PAYLOAD + 512))); b.set(payload); payload = b; muts.push(`oversize:${b.length}`); }
          break;
      }
    }
    this.emit(s, sent, req, payload, fds, { flags, desc: `${t.desc}${muts.length ? ` mut[${muts.join(' ')}]` : ''}` });
  }

  private reAck(s: Session, sent: PendingMsg[]): void {
    const pf = (1n << BigInt(P.PF.REPLY_ACK)) | (1n << BigInt(P.PF.CONFIG)) | (1n << BigInt(P.PF.MQ));
    this.emit(s, sent, P.REQ.SET_PROTOCOL_FEATURES, u64(pf), [], { flags: P.FLAG_VERSION, desc: 're-enable REPLY_ACK' });
  }

  private vringIndex(rng: Rng): number {
    return rng.chance(0.8) ? rng.int(3) : rng.pick([3, 63, 64, 65, 127, 128, 255, 256, 0x1ff, 0xffff, 0xffffffff]);
  }

  private ringNum(rng: Rng): number {
    return rng.chance(0.6) ? rng.pick([1, 2, 4, 8, 16, 64, 128, 256, 1024, 32768]) : rng.pick([0, 3, 5, 255, 65535, 65536, 0x10000000, 0xffffffff]);
  }

  /** A ring address: inside session memory (aligned or not), or anywhere. */
  private ringAddr(rng: Rng, s: Session): number {
    const k = rng.int(6);
    if (k <= 2) return s.mem.addr + (rng.int(MEM_SIZE / 16) * 16);
    if (k === 3) return s.mem.addr + rng.int(MEM_SIZE + 4096);
    if (k === 4) return s.mem.addr + MEM_SIZE - rng.range(1, 64);
    return rng.pick([0, 1, 0x1000, 0x100000000, 2 ** 52, 2 ** 53 - 1, 0x7fffffff0000]);
  }

  private template(rng: Rng, s: Session): { req: number; payload: Uint8Array; fds: FdSpec[]; desc: string } {
    const R = P.REQ;
    const which = rng.weighted([3, 4, 2, 2, 1, 1, 2, 3, 2, 6, 6, 4, 4, 5, 5, 2, 5, 3, 2, 2, 2, 2, 1, 4]);
    switch (which) {
      case 0: return { req: rng.pick([R.GET_FEATURES, R.GET_PROTOCOL_FEATURES, R.GET_QUEUE_NUM, R.GET_MAX_MEM_SLOTS, R.GET_STATUS]),
        payload: rng.chance(0.8) ? new Uint8Array(0) : rng.bytes(rng.range(1, 16)), fds: [], desc: 'get' };
      case 1: {
        const f = rng.chance(0.7) ? (s.offered & ~(rng.chance(0.5) ? 0n : rng.u64())) | (1n << VHOST_USER_F_PROTOCOL_FEATURES) : rng.u64();
        return { req: R.SET_FEATURES, payload: u64(f), fds: [], desc: `features=0x${f.toString(16)}` };
      }
      case 2: return { req: R.SET_PROTOCOL_FEATURES, payload: u64(rng.chance(0.7) ? (1n << 3n) | rng.u64() & 0x1ffffn : rng.u64()), fds: [], desc: 'pf' };
      case 3: return { req: R.SET_OWNER, payload: new Uint8Array(rng.chance(0.8) ? 0 : 8), fds: [], desc: '' };
      case 4: return { req: rng.pick([R.RESET_OWNER, R.RESET_DEVICE]), payload: new Uint8Array(0), fds: [], desc: 'reset' };
      case 5: return { req: rng.pick([R.SET_STATUS]), payload: u64(rng.pick([0n, 1n, 3n, 7n, 0xfn, 0x40n, 0x80n, rng.u64()])), fds: [], desc: 'status' };
      case 6: return this.memTableTemplate(rng, s);
      case 7: return { req: R.SET_VRING_NUM, payload: u32pair(this.vringIndex(rng), this.ringNum(rng)), fds: [], desc: '' };
      case 8: return { req: R.SET_VRING_BASE, payload: u32pair(this.vringIndex(rng), rng.pick([0, 1, 0xffff, 0x10000, rng.u32()])), fds: [], desc: '' };
      case 9: {
        const i = this.vringIndex(rng);
        return { req: R.SET_VRING_ADDR, payload: vringAddrPayload(i, this.ringAddr(rng, s), this.ringAddr(rng, s), this.ringAddr(rng, s),
          rng.chance(0.9) ? 0 : rng.u32(), rng.chance(0.9) ? 0 : rng.u32()), fds: [], desc: `ring ${i}` };
      }
      case 10: case 11: case 12: {
        const req = [R.SET_VRING_KICK, R.SET_VRING_CALL, R.SET_VRING_ERR][which - 10];
        const nofd = rng.chance(0.15);
        let v = this.vringIndex(rng) & (rng.chance(0.9) ? 0xff : 0xffffffff);
        if (nofd) v |= P.VRING_NOFD_MASK;
        if (rng.chance(0.05)) v |= rng.u32() << 9;
        return { req, payload: u64(v), fds: nofd ? [] : ['eventfd'], desc: `ring 0x${v.toString(16)}${nofd ? ' nofd' : ''}` };
      }
      case 13: return { req: R.SET_VRING_ENABLE, payload: u32pair(this.vringIndex(rng), rng.chance(0.8) ? 1 : rng.pick([0, 2, 0xffffffff])), fds: [], desc: '' };
      case 14: return { req: R.GET_VRING_BASE, payload: u32pair(this.vringIndex(rng), 0), fds: [], desc: '' };
      case 15: return { req: R.VRING_KICK, payload: u32pair(this.vringIndex(rng), 0), fds: [], desc: 'inband kick' };
      case 16: {
        const off = rng.chance(0.7) ? 0 : rng.pick([1, 32, 59, 60, 255, 256, 0xffffffff]);
        const size = rng.chance(0.6) ? rng.pick([60, 36, 24, 8, 1]) : rng.pick([0, 61, 196, 256, 257, 4084, 4085, 0xffffffff]);
        const len = rng.chance(0.8) ? 12 + Math.min(size, 4084) : rng.int(300);
        const b = new Uint8Array(Math.min(len, 4096)), dv = new DataView(b.buffer);
        if (b.length >= 12) { dv.setUint32(0, off, true); dv.setUint32(4, size, true); dv.setUint32(8, rng.chance(0.8) ? 0 : rng.u32(), true); }
        return { req: R.GET_CONFIG, payload: b, fds: [], desc: `cfg ${off}+${size}` };
      }
      case 17: {
        const off = rng.pick([32, 0, 8, 60, 255, 256, rng.u32()]), size = rng.pick([1, 0, 2, 8, 256, rng.u32()]);
        const b = new Uint8Array(12 + (size <= 256 ? size : rng.int(64))), dv = new DataView(b.buffer);
        dv.setUint32(0, off, true); dv.setUint32(4, size, true);
        for (let i = 12; i < b.length; i++) b[i] = rng.u32() & 1;
        return { req: R.SET_CONFIG, payload: b, fds: [], desc: `setcfg ${off}+${size}` };
      }
      case 18: case 19: {
        // ADD_MEM_REG / REM_MEM_REG: padding u64 + one region
        const reg = this.region(rng, s);
        const b = new Uint8Array(40); b.set(reg.bytes, 8);
        const add = which === 18;
        return { req: add ? R.ADD_MEM_REG : R.REM_MEM_REG, payload: b, fds: add || rng.chance(0.2) ? [s.mem.fd] : [], desc: reg.desc };
      }
      case 20: return { req: rng.pick([R.SET_LOG_BASE, R.SET_LOG_FD, R.SET_BACKEND_REQ_FD, R.SET_INFLIGHT_FD, R.GPU_SET_SOCKET]),
        payload: rng.bytes(rng.pick([0, 8, 16, 40])), fds: rng.chance(0.7) ? [rng.pick(FD_KINDS)] : [], desc: 'unsupported with fd' };
      case 21: return { req: rng.pick([R.SEND_RARP, R.NET_SET_MTU, R.IOTLB_MSG, R.SET_VRING_ENDIAN, R.CREATE_CRYPTO_SESSION,
        R.CLOSE_CRYPTO_SESSION, R.POSTCOPY_ADVISE, R.POSTCOPY_LISTEN, R.POSTCOPY_END, R.GET_INFLIGHT_FD]),
      payload: rng.bytes(rng.pick([0, 8, 16, 64])), fds: [], desc: 'unsupported' };
      case 22: return { req: rng.pick([0, 41, 42, 99, 255, 1000, 0xffffffff]), payload: rng.bytes(rng.int(24)), fds: [], desc: 'unknown' };
      default: {
        // a correct setup step, so deeper states (running queues) are reached
        const i = rng.int(2);
        const steps = [
          () => ({ req: R.SET_FEATURES, payload: u64(s.offered & ((1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_RING_F_INDIRECT_DESC) |
            (1n << VIRTIO_RING_F_EVENT_IDX) | (1n << VHOST_USER_F_PROTOCOL_FEATURES))), fds: [] as FdSpec[], desc: 'good features' }),
          () => ({ req: R.SET_MEM_TABLE, payload: memTablePayload(1, [regionBytes(s.mem.gpa, MEM_SIZE, s.mem.addr, 0)]), fds: [s.mem.fd], desc: 'good mem table' }),
          () => ({ req: R.SET_VRING_NUM, payload: u32pair(i, 64), fds: [], desc: 'good num' }),
          () => ({ req: R.SET_VRING_ADDR, payload: vringAddrPayload(i, s.mem.addr + 0x1000 * i * 4, s.mem.addr + 0x1000 * (i * 4 + 2), s.mem.addr + 0x1000 * (i * 4 + 1)), fds: [], desc: 'good addr' }),
          () => ({ req: R.SET_VRING_KICK, payload: u64(i), fds: ['eventfd'] as FdKind[], desc: 'good kick' }),
          () => ({ req: R.SET_VRING_ENABLE, payload: u32pair(i, 1), fds: [], desc: 'good enable' }),
        ];
        return rng.pick(steps)();
      }
    }
  }

  /** One region entry: sane, or broken in one of the ways a table can be. */
  private region(rng: Rng, s: Session): { bytes: Uint8Array; desc: string } {
    const m = s.mem;
    let gpa: bigint | number = m.gpa + rng.pick([0, 0, 0x40000, 0x100000, 0x1000]);
    let size: bigint | number = MEM_SIZE, ua: bigint | number = m.addr, off: bigint | number = 0;
    const k = rng.int(12);
    let desc = 'ok';
    switch (k) {
      case 0: size = 0; desc = 'size0'; break;
      case 1: size = rng.pick([MEM_SIZE + 1, MEM_SIZE + 4096, 2 * MEM_SIZE, 1 << 30, 2 ** 40, 2 ** 52]); desc = `size>${MEM_SIZE}:${size}`; break;
      case 2: off = rng.pick([4096, MEM_SIZE - 4096, MEM_SIZE, MEM_SIZE + 4096, 2 ** 40]); size = rng.chance(0.5) ? MEM_SIZE - 4096 : MEM_SIZE; desc = `offset ${off}`; break;
      case 3: off = rng.pick([1, 17, 4095]); size = 4096; desc = `unaligned offset ${off}`; break;
      case 4: gpa = rng.pick([0xfffffffffffff000n, 2n ** 53n - 4096n, 2n ** 53n, 2n ** 64n - 1n]); desc = `gpa ${gpa}`; break;
      case 5: ua = rng.pick([0n, 2n ** 53n - 4096n, 2n ** 53n, 2n ** 64n - 4096n]); desc = `uaddr ${ua}`; break;
      case 6: size = rng.pick([2n ** 53n, 2n ** 64n - 1n, 2n ** 63n]); desc = `size ${size}`; break;
      case 7: off = rng.pick([2n ** 53n, 2n ** 64n - 4096n]); desc = `offset ${off}`; break;
      case 8: size = rng.pick([1, 15, 4097, 65535]); desc = `small size ${size}`; break;
      default: break;
    }
    return { bytes: regionBytes(gpa, size, ua, off), desc };
  }

  private memTableTemplate(rng: Rng, s: Session): { req: number; payload: Uint8Array; fds: FdSpec[]; desc: string } {
    const n = rng.chance(0.85) ? rng.range(1, 4) : rng.pick([0, 8, 9, 10, 32, 255]);
    const regs: Uint8Array[] = [];
    const descs: string[] = [];
    const kind = rng.int(5);
    for (let i = 0; i < Math.min(n, 40); i++) {
      if (kind === 0) {
        // disjoint slices of the one memfd, each a valid region
        const slice = MEM_SIZE / 4;
        regs.push(regionBytes(s.mem.gpa + i * 0x100000, slice, s.mem.addr + (i % 4) * slice, (i % 4) * slice)); descs.push('slice');
      } else if (kind === 1) {
        // overlapping guest-physical ranges
        regs.push(regionBytes(s.mem.gpa + i * rng.pick([0, 4096, MEM_SIZE - 1, MEM_SIZE]), MEM_SIZE, s.mem.addr, 0)); descs.push('overlap?');
      } else {
        const r = this.region(rng, s);
        regs.push(r.bytes); descs.push(r.desc);
      }
    }
    const nField = rng.chance(0.85) ? n : rng.pick([0, n + 1, n - 1, 9, 0xffffffff]);
    const nfds = Math.min(32, rng.chance(0.85) ? n : rng.pick([0, Math.max(0, n - 1), n + 1, 32]));
    const fds: number[] = Array.from({ length: nfds }, () => s.mem.fd);
    return { req: P.REQ.SET_MEM_TABLE, payload: memTablePayload(nField, regs), fds, desc: `n=${nField}/${n} [${descs.join(',')}]` };
  }

  // ---------------------------------------------------------------- family: memtable

  private memtableCase(rng: Rng, s: Session, sent: PendingMsg[]): void {
    if (!s.ack) this.reAck(s, sent);
    const t = rng.chance(0.75) ? this.memTableTemplate(rng, s) : this.template(rng, s);
    const flags = P.FLAG_VERSION | (rng.chance(0.9) ? P.FLAG_NEED_REPLY : 0);
    this.emit(s, sent, t.req, t.payload, t.fds, { flags, desc: t.desc });
  }

  // ---------------------------------------------------------------- family: order

  /** Correct setup messages in a wrong order (some dropped, some repeated), then maybe a kick. */
  private orderCase(rng: Rng, s: Session, sent: PendingMsg[]): void {
    if (!s.ack) this.reAck(s, sent);
    const R = P.REQ, i = rng.chance(0.8) ? 0 : rng.range(1, 3);
    const num = rng.pick([16, 64, 128]);
    // a table that claims more memory than the fd has, with the rings past the end of the fd
    const lie = rng.chance(0.15);
    const base = s.mem.addr + (lie ? MEM_SIZE : 0);
    const desc = base + 0x10000, avail = desc + 16 * num, used = base + 0x20000;
    const steps: [number, Uint8Array, FdSpec[], string][] = [
      [R.SET_FEATURES, u64(s.offered & ((1n << VIRTIO_F_VERSION_1) | (1n << VHOST_USER_F_PROTOCOL_FEATURES) |
        (rng.chance(0.5) ? 1n << VIRTIO_RING_F_EVENT_IDX : 0n) | (rng.chance(0.5) ? 1n << VIRTIO_RING_F_INDIRECT_DESC : 0n))), [], 'features'],
      [R.SET_MEM_TABLE, memTablePayload(1, [regionBytes(s.mem.gpa, lie ? 4 * MEM_SIZE : MEM_SIZE, s.mem.addr, 0)]), [s.mem.fd],
        lie ? 'mem (beyond the fd)' : 'mem'],
      [R.SET_VRING_NUM, u32pair(i, num), [], 'num'],
      [R.SET_VRING_BASE, u32pair(i, rng.chance(0.7) ? 0 : rng.int(0x10000)), [], 'base'],
      [R.SET_VRING_ADDR, vringAddrPayload(i, desc, used, avail), [], 'addr'],
      [R.SET_VRING_CALL, u64(i), ['eventfd'], 'call'],
      [R.SET_VRING_KICK, u64(i), ['eventfd'], 'kick'],
      [R.SET_VRING_ENABLE, u32pair(i, 1), [], 'enable'],
      [R.GET_VRING_BASE, u32pair(i, 0), [], 'get-base'],
      [R.SET_VRING_ENABLE, u32pair(i, 0), [], 'disable'],
      [R.RESET_DEVICE, new Uint8Array(0), [], 'reset'],
      [R.SET_INFLIGHT_FD, inflightPayload(rng, num), [rng.pick(['memfd', 'memfd0', 'memfd', 'eventfd'] as FdKind[])], 'inflight fd'],
      [R.GET_INFLIGHT_FD, inflightPayload(rng, num), [], 'get inflight fd'],
      [R.REM_MEM_REG, (() => { const b = new Uint8Array(40); b.set(regionBytes(s.mem.gpa, MEM_SIZE, s.mem.addr, 0), 8); return b; })(), [], 'rem-mem'],
    ];
    const k = rng.range(1, 4);
    for (let j = 0; j < k; j++) {
      const w = rng.chance(0.8) ? rng.int(8) : rng.int(steps.length);
      const [req, payload, fds, d] = steps[w];
      this.emit(s, sent, req, payload, fds, { flags: P.FLAG_VERSION | P.FLAG_NEED_REPLY, desc: `order:${d} ring ${i}` });
      if (req === R.RESET_DEVICE) this.reAck(s, sent);
    }
    if (!lie && rng.chance(0.3)) {
      // junk on the avail ring of a queue that may just have started
      const m = s.mem, ao = avail - m.addr;
      m.dv.setUint16(ao + 2, rng.u32() & 0xffff, true);
    }
  }

  // ---------------------------------------------------------------- family: frame

  /** Framing attacks; each ends its connection. */
  private frameCase(rng: Rng): void {
    this.dropSessions();
    const c = this.connect();
    this.stats.cases++; this.stats.byFamily.frame++;
    const own: number[] = [];
    try {
      const k = rng.int(8);
      const req = rng.pick([P.REQ.SET_MEM_TABLE, P.REQ.SET_VRING_KICK, P.REQ.GET_CONFIG, P.REQ.SET_FEATURES, P.REQ.SET_OWNER]);
      const hdr = new Uint8Array(12), dv = new DataView(hdr.buffer);
      dv.setUint32(0, req, true); dv.setUint32(4, P.FLAG_VERSION, true);
      const fds = rng.chance(0.5) ? Array.from({ length: rng.range(1, 8) }, () => makeFd(rng.pick(FD_KINDS))) : [];
      own.push(...fds);
      switch (k) {
        case 0: { // a partial header, then close
          const n = rng.range(1, 11);
          this.note(`frame: ${n}-byte partial header fds=${fds.length}, close`);
          dv.setUint32(8, 8, true);
          c.sendRaw(hdr.subarray(0, n), fds);
          break;
        }
        case 1: { // size says more than is sent, then close mid-message
          const size = rng.range(1, P.MAX_PAYLOAD), n = rng.int(size);
          this.note(`frame: size ${size}, ${n} payload bytes fds=${fds.length}, close`);
          dv.setUint32(8, size, true);
          const b = new Uint8Array(12 + n); b.set(hdr); b.set(rng.bytes(n), 12);
          c.sendRaw(b, fds);
          break;
        }
        case 2: { // size says less than is sent: the rest is read as the next header
          const real = rng.range(8, 64), size = rng.int(real);
          this.note(`frame: size ${size} with ${real} payload bytes`);
          dv.setUint32(8, size, true);
          const b = new Uint8Array(12 + real); b.set(hdr); b.set(rng.bytes(real), 12);
          c.sendRaw(b, fds);
          if (c.pending(2)) { try { c.recv(200); } catch { /* closed or nothing */ } }
          break;
        }
        case 3: { // announced payload beyond the limit: the target must close, not wait
          const size = rng.pick([P.MAX_PAYLOAD + 1, 65536, 0x7fffffff, 0xffffffff]);
          this.note(`frame: size ${size} beyond the limit`);
          dv.setUint32(8, size, true);
          c.sendRaw(hdr, fds);
          this.expectClose(c, 'an oversized message');
          break;
        }
        case 4: { // bad version bits: the target must close
          const v = rng.pick([0, 2, 3]);
          this.note(`frame: version bits ${v}`);
          dv.setUint32(4, v | (rng.chance(0.5) ? P.FLAG_NEED_REPLY : 0), true); dv.setUint32(8, 0, true);
          c.sendRaw(hdr, fds);
          this.expectClose(c, 'a message with bad version bits');
          break;
        }
        case 5: { // a valid message dribbled a byte at a time, then answered
          this.note('frame: GET_FEATURES one byte at a time');
          dv.setUint32(0, P.REQ.GET_FEATURES, true); dv.setUint32(8, 0, true);
          for (let i = 0; i < 12; i++) { c.sendRaw(hdr.subarray(i, i + 1)); if (rng.chance(0.3)) sleepSync(0.2); }
          c.expectReply(P.REQ.GET_FEATURES);
          break;
        }
        case 6: { // many messages in one write, some with fds on them
          const n = rng.range(2, 40);
          this.note(`frame: ${n} GET_FEATURES in one write fds=${fds.length}`);
          const b = new Uint8Array(12 * n);
          for (let i = 0; i < n; i++) { const d = new DataView(b.buffer, 12 * i, 12); d.setUint32(0, P.REQ.GET_FEATURES, true); d.setUint32(4, P.FLAG_VERSION, true); }
          c.sendRaw(b, fds);
          for (let i = 0; i < n; i++) c.expectReply(P.REQ.GET_FEATURES);
          break;
        }
        default: { // close mid-setup with queues possibly running
          this.note('frame: setup half done, close');
          const mem = new GuestMem(65536, 0x200000, 'fuzz-frame');
          try {
            c.call(P.REQ.SET_FEATURES, u64(1n << VIRTIO_F_VERSION_1));
            c.call(P.REQ.SET_MEM_TABLE, memTablePayload(1, [regionBytes(mem.gpa, 65536, mem.addr, 0)]), [mem.fd]);
            c.call(P.REQ.SET_VRING_NUM, u32pair(0, 16));
            c.call(P.REQ.SET_VRING_ADDR, vringAddrPayload(0, mem.addr, mem.addr + 0x2000, mem.addr + 0x1000));
            const kick = eventfd();
            c.send(P.REQ.SET_VRING_KICK, u64(0), { fds: [kick] }); // starts the queue (no protocol features)
            closeQuiet(kick);
            if (rng.chance(0.5)) c.send(P.REQ.GET_VRING_BASE, u32pair(0, 0), { size: 8 + rng.range(1, 16) });
          } finally { mem.close(); }
        }
      }
    } catch (e) {
      if (!(e instanceof Closed)) throw e;
      this.stats.closedByTarget++;
    } finally {
      for (const f of own) closeQuiet(f);
      c.close();
    }
  }

  private expectClose(c: VhostUserClient, what: string): void {
    try {
      const m = c.recv();
      throw new BadReply(`after ${what} the target answered request ${m.req} instead of closing`);
    } catch (e) {
      if (e instanceof Timeout) throw new Timeout(`after ${what} the target neither closed the connection nor answered`);
      throw e;
    }
  }

  // ---------------------------------------------------------------- family: ring

  private ringBlock(from: number, to: number): void {
    this.caseNo = from;
    const brng = Rng.forCase(this.o.seed ^ 0x41ac, from);
    const rs = new RingSession(this.connect(), brng, this.o.timeoutMs);
    this.ringSess = rs;
    this.note(`ring session: num ${rs.q.num} event_idx ${rs.eventIdx} indirect ${rs.indirect}`);
    for (let n = from; n < to; n++) {
      this.caseNo = n;
      const rng = Rng.forCase(this.o.seed, n);
      const r = rs.runCase(rng, (s) => this.note(s));
      this.stats.cases++; this.stats.byFamily.ring++;
      this.stats.ringRequests += r.posted; this.stats.ringCompleted += r.completed; this.stats.ringStatusErr += r.statusErr;
      this.stats.probes += 2;
      if (r.restarted) this.stats.ringRestarts++;
    }
  }
}

// ------------------------------------------------------------------ ring sessions

/** Guest layout: region A holds the fuzzed queue and its buffers; region B, adjacent in guest-physical space, the probe queue. */
const A_SIZE = 4 << 20, B_SIZE = 256 * 1024, A_GPA = 0x100000000, B_GPA = A_GPA + A_SIZE;
const INDIRECT_OFF = 0x20000, INDIRECT_END = 0x40000, DATA_OFF = 0x40000;
const B_SPILL = 0x10000, PROBE_RING_OFF = 0x10000, PROBE_SCRATCH = 0x20000;

interface Req { head: number; status: number /* offset in A of the status byte, or -1 */ }

class RingSession {
  readonly a: GuestMem;
  readonly b: GuestMem;
  readonly q: Ring;
  readonly probe: Ring;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  private readonly capacity: bigint;

  constructor(readonly c: VhostUserClient, rng: Rng, readonly timeoutMs: number) {
    this.a = new GuestMem(A_SIZE, A_GPA, 'fuzz-ring-a');
    this.b = new GuestMem(B_SIZE, B_GPA, 'fuzz-ring-b');
    this.q = new Ring(this.a, 0, rng.pick([16, 64, 128, 256]), 0);
    this.probe = new Ring(this.b, 1, 16, PROBE_RING_OFF);
    this.eventIdx = rng.chance(0.5);
    this.indirect = rng.chance(0.8);
    const want = (1n << VIRTIO_F_VERSION_1) | (this.indirect ? 1n << VIRTIO_RING_F_INDIRECT_DESC : 0n) |
      (this.eventIdx ? 1n << VIRTIO_RING_F_EVENT_IDX : 0n);
    this.capacity = handshake(c, { regions: [this.a, this.b], rings: [this.q, this.probe], want }).capacity;
  }

  close(): void { this.c.close(); this.q.close(); this.probe.close(); this.a.close(); this.b.close(); }

  private restart(): void {
    stopRing(this.c, this.q.index);
    this.q.reset();
    startRing(this.c, this.q, 0);
  }

  /** A guest-physical address for a hostile buffer. */
  private addr(rng: Rng, len: number): { gpa: number | bigint; wild: boolean } {
    const r = this.addr0(rng, len);
    // a buffer the device may really write (up to size_max) stays clear of the probe queue in region B
    if (!r.wild && len <= 0x100010 && (r.gpa as number) + len > B_GPA + B_SPILL) r.gpa = B_GPA + B_SPILL - len;
    return r;
  }

  private addr0(rng: Rng, len: number): { gpa: number | bigint; wild: boolean } {
    switch (rng.int(10)) {
      case 0: return { gpa: rng.pick([0, 0x1000, A_GPA - 1, A_GPA - 16, B_GPA + B_SIZE, B_GPA + B_SIZE - 1, 2 ** 52, 2 ** 53 - 16,
        0xffffffffffff0000n, 0xfffffffffffffff0n]), wild: true };
      case 1: return { gpa: B_GPA - rng.range(1, Math.max(1, Math.min(len, 4096))), wild: false }; // spans into region B
      case 2: return { gpa: A_GPA + A_SIZE - rng.range(1, 64), wild: false };
      default: return { gpa: A_GPA + DATA_OFF + rng.int(A_SIZE - DATA_OFF - 0x1000), wild: false };
    }
  }

  private len(rng: Rng): number {
    return rng.chance(0.7) ? rng.pick([512, 1024, 4096, 8192, 16, 1, 0]) : rng.pick([0xffffffff, 0x80000000, 0x7fffffff, 0x100000, 0x100001, 511, 513, rng.u32()]);
  }

  /** Writes one request's descriptors starting at `d` in table `t`; returns its head and status location. */
  private buildRequest(rng: Rng, d: number, descs: (i: number, addr: number | bigint, len: number, flags: number, next: number) => void,
    tableSize: number, scratch: number, kind: number): { head: number; status: number; used: number; unverifiable: boolean } {
    const A = this.a;
    const hdr = scratch, st = scratch + 32;
    const type = rng.pick([VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, 11, 13, 5, 0xffffffff]);
    A.dv.setUint32(hdr, type >>> 0, true); A.dv.setUint32(hdr + 4, 0, true);
    const cap = Number(this.capacity);
    const sector = rng.chance(0.7) ? rng.int(cap) : rng.pick([cap, cap - 1, 2 ** 53, 0, 0xffffffffffffffffn]);
    A.dv.setBigUint64(hdr + 8, BigInt(sector), true);
    // discard/write-zeroes range after the header
    A.dv.setBigUint64(hdr + 16, BigInt(rng.int(cap)), true); A.dv.setUint32(hdr + 24, rng.pick([0, 1, 8, 0xffffffff]), true); A.dv.setUint32(hdr + 28, rng.pick([0, 1, 2]), true);
    A.u8[st] = 0xff;
    const ndata = rng.chance(0.8) ? rng.range(0, 3) : rng.pick([126, 127, 200]);
    const chainLen = 2 + ndata;
    let unverifiable = false;
    const idx = (j: number) => (d + j) % tableSize;
    const write = type !== VIRTIO_BLK_T_OUT && type !== 11 && type !== 13;
    let j = 0;
    descs(idx(j), A_GPA + hdr, rng.chance(0.9) ? (type === 11 || type === 13 ? 32 : 16) : rng.pick([0, 8, 15, 17]), VRING_DESC_F_NEXT, idx(j + 1)); j++;
    for (let k = 0; k < ndata; k++, j++) {
      const len = this.len(rng);
      const ad = this.addr(rng, len);
      // a writable buffer that could land on the rings themselves would make the outcome unknowable
      if (write && !ad.wild && typeof ad.gpa === 'number' && ad.gpa < A_GPA + DATA_OFF) unverifiable = true;
      descs(idx(j), ad.gpa, len, VRING_DESC_F_NEXT | (write ? VRING_DESC_F_WRITE : 0), idx(j + 1));
    }
    descs(idx(j), A_GPA + st, 1, VRING_DESC_F_WRITE, 0);
    // a chain longer than its table overwrites itself: no telling where its status goes
    if (chainLen > tableSize) unverifiable = true;
    // one hostile twist (kind) on top
    switch (kind) {
      case 1: descs(idx(j), A_GPA + st, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, d); break; // loop back to the head
      case 2: descs(idx(j), A_GPA + st, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, rng.pick([tableSize, tableSize + 1, 0xffff])); break;
      case 3: descs(idx(0), A_GPA + hdr, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, idx(1)); break; // readable after writable
      // no writable status / a zero-length one: the status is then the last byte of a writable data buffer, if any
      case 4: descs(idx(j), A_GPA + st, 1, 0, 0); unverifiable = true; break;
      case 5: descs(idx(j), A_GPA + st, 0, VRING_DESC_F_WRITE, 0); unverifiable = true; break;
      case 6: descs(idx(rng.int(chainLen)), rng.pick([0xffffffffffffffffn, 2n ** 53n, BigInt(B_GPA + B_SIZE)]), rng.pick([1, 16, 0xffffffff]),
        VRING_DESC_F_NEXT, idx(rng.int(chainLen))); unverifiable = true; break; // a wild descriptor anywhere, maybe a loop
      default: break;
    }
    return { head: idx(0), status: st, used: j + 1, unverifiable };
  }

  /** Writes hostile requests, kicks, syncs on the probe queue, checks what came back. */
  runCase(rng: Rng, note: (s: string) => void): { posted: number; completed: number; statusErr: number; restarted: boolean } {
    const q = this.q, A = this.a, num = q.num;
    const reqs: Req[] = [];
    let unverifiable = false;
    const scenario = rng.weighted([20, 6, 6, 5, 5, 5, 6, 10, 5, 5, 4, 4, 4, 3]);
    const setDesc = (i: number, addr: number | bigint, len: number, flags: number, next: number) => q.setDesc(i % num, addr, len, flags, next);
    let descNext = rng.int(num), usedDescs = 0;
    let headsToPush: number[] = [];
    let desc = '';
    const build = (kind: number) => {
      const scratch = 0x8000 + 64 * ((reqs.length + rng.int(64)) % 384);
      const r = this.buildRequest(rng, descNext, setDesc, num, scratch, kind);
      descNext = (descNext + r.used) % num;
      usedDescs += r.used;
      if (usedDescs > num) unverifiable = true;
      unverifiable ||= r.unverifiable;
      reqs.push({ head: r.head, status: r.status });
      headsToPush.push(r.head);
    };
    switch (scenario) {
      case 0: { const k = rng.range(1, Math.min(4, num / 4)); for (let i = 0; i < k; i++) build(0); desc = `${k} requests`; break; }
      case 1: build(1); desc = 'chain loops to its head'; break;
      case 2: build(2); desc = 'next index out of range'; break;
      case 3: build(3); desc = 'readable after writable'; break;
      case 4: build(4); desc = 'no writable status'; break;
      case 5: build(5); desc = 'zero-length status'; break;
      case 6: build(6); desc = 'wild descriptor'; break;
      case 7: desc = this.indirectCase(rng, reqs, headsToPush); break;
      case 8: { // head out of range on the avail ring
        build(0); headsToPush = [rng.pick([num, num + 1, 0xffff, 0x8000])]; reqs.length = 0; desc = `avail head ${headsToPush[0]}`;
        break;
      }
      case 9: { // avail index jumps beyond the queue size
        build(0);
        const jump = rng.pick([num + 1, 0x8000, 0xffff, num * 2]);
        desc = `avail idx +${jump}`;
        q.setAvailIdx(q.availIdx + jump);
        q.kick();
        headsToPush = []; reqs.length = 0;
        break;
      }
      case 10: { // the same head twice in one batch
        build(0); headsToPush.push(headsToPush[0]); desc = 'same head twice'; unverifiable = true; break;
      }
      case 11: { // a chain as long as the whole table
        for (let i = 0; i < num; i++) setDesc(i, A_GPA + DATA_OFF + 512 * i, 512, VRING_DESC_F_NEXT | (i > 0 ? VRING_DESC_F_WRITE : 0), (i + 1) % num);
        const loop = rng.chance(0.5);
        if (!loop) setDesc(num - 1, A_GPA + 0x8000, 1, VRING_DESC_F_WRITE, 0);
        A.dv.setUint32(DATA_OFF, 0, true);
        headsToPush = [0]; reqs.push({ head: 0, status: -1 }); desc = `chain of ${num}${loop ? ' looping' : ''}`; unverifiable = true;
        break;
      }
      case 12: { // random bytes in the descriptor table and on the avail ring
        const n = rng.range(1, 8);
        for (let i = 0; i < n; i++) {
          const o = q.descOff + 16 * rng.int(num);
          A.u8.set(rng.bytes(16), o);
        }
        headsToPush = Array.from({ length: rng.range(1, 4) }, () => rng.chance(0.8) ? rng.int(num) : rng.u32() & 0xffff);
        for (const h of headsToPush) if (h < num) reqs.push({ head: h, status: -1 });
        desc = `random descriptors, heads ${headsToPush.join(',')}`; unverifiable = true;
        break;
      }
      default: { // used_event / flags junk (event idx), then valid requests
        A.dv.setUint16(q.availOff, rng.u32() & 0xffff, true);
        A.dv.setUint16(q.availOff + 4 + 2 * num, rng.u32() & 0xffff, true);
        build(0); desc = 'avail flags/used_event junk';
      }
    }
    note(`ring: ${desc} (heads ${headsToPush.join(',')}; avail ${q.availIdx})`);
    for (const h of headsToPush) q.push(h);
    if (headsToPush.length) { q.publish(); q.kick(); }
    const postedAt = q.usedSeen;
    // sync: two probe round trips on the other queue of the same reactor mean the fuzzed queue was polled after our writes
    for (let i = 0; i < 2; i++) {
      const p = blkRequest(this.probe, PROBE_SCRATCH, VIRTIO_BLK_T_GET_ID, 0, 20, this.timeoutMs);
      if (p.status === -1) throw new Timeout(`probe request on queue ${this.probe.index} not completed within ${this.timeoutMs} ms: reactor stuck?`);
      if (p.status !== 0) throw new BadReply(`probe GET_ID failed with status ${p.status}`);
    }
    // what came back on the fuzzed queue
    const usedNow = q.usedIdx();
    const got = (usedNow - postedAt) & 0xffff;
    let statusErr = 0;
    if (!unverifiable) {
      if (got > headsToPush.length) throw new BadReply(`used index moved by ${got} for ${headsToPush.length} requests`);
      const heads = new Map(reqs.map((r) => [r.head, r]));
      for (let k = 0; k < got; k++) {
        const e = q.usedElem((postedAt + k) & 0xffff);
        const r = heads.get(e.id);
        if (!r) throw new BadReply(`used entry ${k} names head ${e.id}, which was not made available (heads ${headsToPush.join(',')})`);
        if (r.status >= 0) {
          const sb = A.u8[r.status];
          if (sb > 2) throw new BadReply(`request ${e.id} completed with status byte 0x${sb.toString(16)} (not written?)`);
          if (sb !== 0) statusErr++;
        }
      }
    }
    q.usedSeen = usedNow;
    // anything not returned means the queue stopped (needs reset) or holds requests: restart it
    const restarted = unverifiable || got < headsToPush.length || scenario === 9;
    if (restarted) this.restart();
    return { posted: headsToPush.length, completed: got, statusErr, restarted };
  }

  private indirectCase(rng: Rng, reqs: Req[], heads: number[]): string {
    const q = this.q, A = this.a, num = q.num;
    const tOff = INDIRECT_OFF + 16 * rng.int((INDIRECT_END - INDIRECT_OFF) / 16 - 64);
    const tSize = rng.range(1, 40);
    const setT = (i: number, addr: number | bigint, len: number, flags: number, next: number) => {
      const o = tOff + 16 * i;
      if (o + 16 > INDIRECT_END) return;
      A.dv.setBigUint64(o, BigInt.asUintN(64, BigInt(addr)), true); A.dv.setUint32(o + 8, len >>> 0, true);
      A.dv.setUint16(o + 12, flags, true); A.dv.setUint16(o + 14, next & 0xffff, true);
    };
    const scratch = 0x8000 + 64 * rng.int(384);
    const kind = rng.int(10);
    const r = this.buildRequest(rng, 0, setT, tSize, scratch, kind < 5 ? kind : 0);
    const head = rng.int(num);
    let tLen = 16 * tSize, tAddr: number | bigint = A_GPA + tOff, flags = VRING_DESC_F_INDIRECT;
    let what = `indirect table of ${tSize}`;
    switch (kind) {
      case 5: setT(rng.int(tSize), A_GPA + tOff, 16 * tSize, VRING_DESC_F_INDIRECT, 0); what += ', nested indirect'; break;
      case 6: tLen = rng.pick([0, 8, 17, 16 * 32769, 0xfffffff0]); what += `, len ${tLen}`; break;
      case 7: tAddr = rng.pick([A_GPA + A_SIZE - 16, B_GPA + B_SIZE, 0xfffffffffffffff0n, A_GPA + tOff + 2]); what += ` at 0x${tAddr.toString(16)}`; break;
      case 8: flags |= VRING_DESC_F_NEXT; what += ' with NEXT'; break;
      case 9: { // an indirect descriptor after a direct one
        const h2 = (head + 1) % num;
        q.setDesc(head, A_GPA + scratch, 16, VRING_DESC_F_NEXT, h2);
        q.setDesc(h2, A_GPA + tOff, tLen, VRING_DESC_F_INDIRECT, 0);
        heads.push(head); reqs.push({ head, status: r.status });
        return `${what} after a direct descriptor`;
      }
      default: what += kind ? ` kind ${kind}` : ''; break;
    }
    q.setDesc(head, tAddr, tLen, flags, (head + 1) % num);
    heads.push(head); reqs.push({ head, status: r.unverifiable ? -1 : r.status });
    return what;
  }
}
