// A lean NVMe initiator over vfio-user, in TypeScript: what a guest's NVMe driver does,
// without a guest. It maps its own memfd as "guest memory" (DMA_MAP), enables the
// controller through BAR0 register writes, creates I/O queue pairs without interrupts and
// drives them by writing SQ entries and polling the CQs' phase bits, from one thread.
//
// Doorbells, in the order `auto` picks them:
//   mmap    BAR0's doorbell page is a sparse mmap area: the initiator maps it and writes
//           doorbells as plain stores (no message to the server);
//   shadow  Doorbell Buffer Config (when the controller offers it): tails and heads go to a
//           shadow page in our memory, and a REGION_WRITE is sent only when the EventIdx
//           the controller keeps says it wants one (it is about to sleep);
//   trap    every doorbell write is a posted REGION_WRITE message.
// The admin queue always uses BAR0 (mapped or trapped): shadow doorbells are for I/O queues.
//
// SQ tail doorbells are written once per batch of submissions; CQ head doorbells once a
// quarter of the CQ has been consumed (a host may delay head updates while the CQ cannot
// fill up), so trapped mode costs about one message per I/O, not two.
import * as libc from "../../native/libc.js";
import * as P from "../../src/vfio_user/protocol.js";
import { VfioUserClient, type RegionInfo } from "../../src/vfio_user/client.js";

export type DoorbellMode = "mmap" | "shadow" | "trap";

const PAGE = 4096;
const IOVA = 0x1000_0000;
const REG = { CAP: 0x00, VS: 0x08, CC: 0x14, CSTS: 0x1c, AQA: 0x24, ASQ: 0x28, ACQ: 0x30 } as const;
const DB_BASE = 0x1000;
const ADMIN_Q = 32;
const OFF_ASQ = 0x0000, OFF_ACQ = 0x1000, OFF_IDENT = 0x2000, OFF_SHADOW = 0x3000, OFF_EVENT = 0x4000, OFF_QUEUES = 0x10000;
const ADM = { DELETE_SQ: 0x00, CREATE_SQ: 0x01, DELETE_CQ: 0x04, CREATE_CQ: 0x05, IDENTIFY: 0x06, SET_FEATURES: 0x09, DBBUF: 0x7c } as const;
const IO_WRITE = 0x01, IO_READ = 0x02;
const TWO32 = 4294967296;

/** A full fence (locked RMW on x86): store shadow doorbell, fence, load EventIdx. */
const FENCE = new Int32Array(new SharedArrayBuffer(4));

const align = (n: number, a: number) => Math.ceil(n / a) * a;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** NVMe shadow doorbell rule (as Linux's nvme_dbbuf_need_event): does moving old→new pass EventIdx? */
export function needEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

export interface InitiatorOptions {
  socket: string;
  doorbells: DoorbellMode | "auto";
  queues: number;
  qd: number;
  /** bytes per I/O: a multiple of the namespace block size, at most 128 KiB */
  bs: number;
  /** I/O queue entries (default 1024 as Linux's nvme driver, capped by CAP.MQES) */
  queueSize?: number;
  nsid?: number;
}

class Queue {
  sqTail = 0;
  cqHead = 0;
  phase = 1;
  /** CQ head value last written to the doorbell */
  headWritten = 0;
  sinceHead = 0;
  inflight = 0;
  readonly submitT: Float64Array;
  readonly batch: Int32Array;
  constructor(readonly qid: number, readonly size: number, readonly sq: Uint32Array, readonly cq: Uint32Array,
    readonly sqGpa: number, readonly cqGpa: number, readonly bufGpa: number[], readonly prp2: number[], qd: number) {
    this.submitT = new Float64Array(qd);
    this.batch = new Int32Array(qd);
  }
}

export interface RunResult {
  ios: number;
  reads: number;
  writes: number;
  bytes: number;
  secs: number;
  iops: number;
  mibS: number;
  errors: number;
  lat: { min: number; avg: number; p50: number; p99: number; p999: number; max: number };
  /** doorbell writes sent to the server as messages, per I/O (SQ + CQ) */
  trapsPerIo: number;
  /** doorbell updates (tail/head values written, any mode), per I/O */
  doorbellsPerIo: number;
  iosPerBatch: number;
  /** client time per I/O spent handling completions and submitting (not polling an empty CQ) */
  busyNsPerIo: number;
  /** share of CQ polls that found nothing */
  emptyPollPct: number;
  cpuS: number;
  drainTimedOut: boolean;
}

/** Latency histogram: 20 ns linear buckets to 200 µs, then 1/32 octave log buckets. */
class Hist {
  static readonly LIN_NS = 20;
  static readonly LIN = 10000;
  readonly b = new Float64Array(Hist.LIN + 32 * 24);
  n = 0; sum = 0; min = Infinity; max = 0;
  add(ns: number): void {
    this.n++; this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
    let i = (ns / Hist.LIN_NS) | 0;
    if (i >= Hist.LIN) i = Math.min(this.b.length - 1, Hist.LIN + Math.floor(Math.log2(ns / (Hist.LIN * Hist.LIN_NS)) * 32));
    this.b[i]++;
  }
  pct(p: number): number {
    if (!this.n) return 0;
    const want = p * this.n;
    let acc = 0;
    for (let i = 0; i < this.b.length; i++) {
      acc += this.b[i];
      if (acc >= want) {
        if (i < Hist.LIN) return (i + 0.5) * Hist.LIN_NS;
        return Hist.LIN * Hist.LIN_NS * 2 ** ((i - Hist.LIN + 0.5) / 32);
      }
    }
    return this.max;
  }
}

export class NvmeInitiator {
  readonly c: VfioUserClient;
  private memFd = -1;
  private memAddr = 0;
  private memLen = 0;
  private mem!: Uint8Array;
  private dv!: DataView;
  private dbMapAddr = 0;
  private db: Uint32Array | null = null;
  private shadow: Uint32Array | null = null;
  private eventIdx: Uint32Array | null = null;
  private dstrd = 1; // doorbell stride in dwords
  private asqTail = 0;
  private acqHead = 0;
  private acqPhase = 1;
  private cid = 0;
  readonly queues: Queue[] = [];
  mode: DoorbellMode = "trap";
  bar0!: RegionInfo;
  mqes = 0;
  oacs = 0;
  mdtsBytes = 0;
  nsze = 0;
  blockSize = 0;
  model = "";
  serial = "";
  /** doorbell messages sent on the I/O path */
  private traps = 0;
  private doorbells = 0;

  constructor(readonly o: InitiatorOptions) {
    this.c = VfioUserClient.connect(o.socket);
  }

  // ---------------------------------------------------------------- setup

  private layout(qsize: number): { size: number } {
    const perQ = align(qsize * 64, PAGE) + align(qsize * 16, PAGE) + (this.o.bs > 2 * PAGE ? this.o.qd * PAGE : 0) +
      this.o.qd * align(this.o.bs, PAGE);
    return { size: align(OFF_QUEUES + this.o.queues * perQ, 2 << 20) };
  }

  private u32(off: number): number { return this.dv.getUint32(off, true); }

  /** Connects, maps memory and BAR0, enables the controller, identifies, creates the I/O queues. */
  async setup(): Promise<void> {
    const o = this.o;
    if (o.queues < 1 || o.queues > 31) throw new Error(`--queues ${o.queues}: 1-31`);
    if (o.bs % 512 || o.bs < 512 || o.bs > 128 * 1024) throw new Error(`--bs ${o.bs}: a multiple of 512 up to 128 KiB`);
    const v = await this.c.version();
    if (v.major !== 0) throw new Error(`server speaks vfio-user ${v.major}.${v.minor}`);
    const dev = await this.c.deviceInfo();
    if (!(dev.flags & P.DEVICE_FLAGS_PCI)) throw new Error("not a PCI device");
    this.bar0 = await this.c.regionInfo(P.PCI_BAR0);
    // memory: sized for the largest queues we may ask for
    const qsizeMax = o.queueSize ?? 1024;
    this.memLen = this.layout(Math.min(qsizeMax, 4096)).size;
    this.memFd = libc.memfdCreate("nvme-initiator-mem", this.memLen);
    this.memAddr = libc.mmap(this.memLen, this.memFd);
    this.mem = new Uint8Array(libc.view(this.memAddr, this.memLen));
    this.mem.fill(0); // fault every page in now, not during the run
    this.dv = new DataView(this.mem.buffer);
    await this.c.dmaMap(this.memFd, IOVA, this.memLen);

    const cap = await this.c.r64(P.PCI_BAR0, REG.CAP);
    this.mqes = Number(cap & 0xffffn) + 1;
    this.dstrd = 1 << Number((cap >> 32n) & 0xfn);
    const mappable = (this.bar0.flags & P.REGION_FLAG_MMAP) !== 0 && this.bar0.fd >= 0 &&
      this.bar0.sparse.some((a) => a.offset <= DB_BASE && a.offset + a.size >= DB_BASE + PAGE);
    if (mappable) {
      this.dbMapAddr = libc.mmap(PAGE, this.bar0.fd, this.bar0.offset + DB_BASE);
      this.db = new Uint32Array(libc.view(this.dbMapAddr, PAGE));
    }
    if (this.bar0.fd >= 0) libc.closeQuiet(this.bar0.fd);
    if (o.doorbells === "mmap" && !this.db) throw new Error("the controller does not offer a mappable doorbell page (disable_mappable_bar0?)");

    // disable, admin queues, enable
    if ((await this.c.r32(P.PCI_BAR0, REG.CC)) & 1) {
      await this.c.w32(P.PCI_BAR0, REG.CC, 0);
      await this.waitCsts((s) => (s & 1) === 0, "CSTS.RDY=0");
    }
    await this.c.w32(P.PCI_BAR0, REG.AQA, ((ADMIN_Q - 1) << 16) | (ADMIN_Q - 1));
    await this.c.w32(P.PCI_BAR0, REG.ASQ, IOVA + OFF_ASQ); await this.c.w32(P.PCI_BAR0, REG.ASQ + 4, 0);
    await this.c.w32(P.PCI_BAR0, REG.ACQ, IOVA + OFF_ACQ); await this.c.w32(P.PCI_BAR0, REG.ACQ + 4, 0);
    await this.c.w32(P.PCI_BAR0, REG.CC, (4 << 20) | (6 << 16) | 1);
    await this.waitCsts((s) => (s & 3) === 1, "CSTS.RDY=1");

    // identify controller and namespace
    const nsid = o.nsid ?? 1;
    await this.admin(ADM.IDENTIFY, 0, 1, 0, IOVA + OFF_IDENT);
    const id = this.mem.subarray(OFF_IDENT, OFF_IDENT + PAGE);
    this.serial = Buffer.from(id.subarray(4, 24)).toString().trim();
    this.model = Buffer.from(id.subarray(24, 64)).toString().trim();
    const mdts = id[77];
    this.mdtsBytes = mdts ? PAGE << mdts : Infinity;
    this.oacs = id[256] | (id[257] << 8);
    await this.admin(ADM.IDENTIFY, nsid, 0, 0, IOVA + OFF_IDENT);
    this.nsze = this.u32(OFF_IDENT) + this.u32(OFF_IDENT + 4) * TWO32;
    const flbas = id[26] & 0xf;
    this.blockSize = 2 ** ((this.u32(OFF_IDENT + 128 + 4 * flbas) >>> 16) & 0xff);
    if (!this.nsze) throw new Error(`namespace ${nsid} is not active`);
    if (o.bs % this.blockSize) throw new Error(`--bs ${o.bs} is not a multiple of the namespace's ${this.blockSize}-byte blocks`);
    if (o.bs > this.mdtsBytes) throw new Error(`--bs ${o.bs} exceeds the controller's MDTS (${this.mdtsBytes} bytes)`);

    // doorbell mode
    const shadowOffered = (this.oacs & 0x100) !== 0;
    if (o.doorbells === "auto") this.mode = this.db ? "mmap" : shadowOffered ? "shadow" : "trap";
    else this.mode = o.doorbells;
    if (this.mode === "shadow") {
      if (!shadowOffered) throw new Error("the controller does not offer Doorbell Buffer Config (shadow doorbells)");
      await this.admin(ADM.DBBUF, 0, 0, 0, IOVA + OFF_SHADOW, IOVA + OFF_EVENT);
      this.shadow = new Uint32Array(this.mem.buffer, OFF_SHADOW, PAGE / 4);
      this.eventIdx = new Uint32Array(this.mem.buffer, OFF_EVENT, PAGE / 4);
    }

    // I/O queues: no interrupts (IEN=0), polled
    const qsize = Math.min(o.queueSize ?? 1024, this.mqes);
    if (qsize <= o.qd) throw new Error(`--qd ${o.qd} needs queues of more than ${o.qd} entries (controller: at most ${this.mqes})`);
    await this.admin(ADM.SET_FEATURES, 0, 0x07, ((o.queues - 1) << 16) | (o.queues - 1), 0);
    let off = OFF_QUEUES;
    const take = (n: number) => { const a = off; off += align(n, PAGE); return a; };
    for (let i = 0; i < o.queues; i++) {
      const qid = i + 1;
      const sqOff = take(qsize * 64), cqOff = take(qsize * 16);
      const bufs: number[] = [], prp2: number[] = [];
      for (let s = 0; s < o.qd; s++) {
        const b = take(o.bs);
        bufs.push(IOVA + b);
        if (o.bs <= PAGE) prp2.push(0);
        else if (o.bs <= 2 * PAGE) prp2.push(IOVA + b + PAGE);
        else {
          const list = take(PAGE);
          for (let p = 1; p < o.bs / PAGE; p++) this.dv.setBigUint64(list + 8 * (p - 1), BigInt(IOVA + b + p * PAGE), true);
          prp2.push(IOVA + list);
        }
      }
      await this.admin(ADM.CREATE_CQ, 0, qid | ((qsize - 1) << 16), 1 /* PC, IEN=0 */, IOVA + cqOff);
      await this.admin(ADM.CREATE_SQ, 0, qid | ((qsize - 1) << 16), 1 | (qid << 16), IOVA + sqOff);
      this.queues.push(new Queue(qid, qsize, new Uint32Array(this.mem.buffer, sqOff, qsize * 16),
        new Uint32Array(this.mem.buffer, cqOff, qsize * 4), IOVA + sqOff, IOVA + cqOff, bufs, prp2, o.qd));
    }
    if (off > this.memLen) throw new Error("internal: memory layout overflow");
  }

  private async waitCsts(ok: (csts: number) => boolean, what: string): Promise<void> {
    const end = Date.now() + 5000;
    for (;;) {
      const s = await this.c.r32(P.PCI_BAR0, REG.CSTS);
      if (s & 2) throw new Error(`controller fatal status (CSTS 0x${s.toString(16)}) waiting for ${what}`);
      if (ok(s)) return;
      if (Date.now() > end) throw new Error(`timeout waiting for ${what} (CSTS 0x${s.toString(16)})`);
      await sleep(1);
    }
  }

  /** One admin command, waited for; throws on an error status. */
  async admin(opc: number, nsid: number, cdw10: number, cdw11: number, prp1: number, prp2 = 0): Promise<number> {
    const o = OFF_ASQ + this.asqTail * 64;
    const cid = (this.cid = (this.cid + 1) & 0xffff);
    this.mem.fill(0, o, o + 64);
    this.dv.setUint32(o, opc | (cid << 16), true);
    this.dv.setUint32(o + 4, nsid, true);
    this.dv.setBigUint64(o + 24, BigInt(prp1), true);
    this.dv.setBigUint64(o + 32, BigInt(prp2), true);
    this.dv.setUint32(o + 40, cdw10 >>> 0, true);
    this.dv.setUint32(o + 44, cdw11 >>> 0, true);
    this.asqTail = (this.asqTail + 1) % ADMIN_Q;
    await this.adminDoorbell(0, this.asqTail);
    const end = Date.now() + 5000;
    const e = OFF_ACQ + this.acqHead * 16;
    while (((this.u32(e + 12) >>> 16) & 1) !== this.acqPhase) {
      if (Date.now() > end) throw new Error(`admin command 0x${opc.toString(16)}: no completion in 5 s`);
      await sleep(0);
    }
    const dw0 = this.u32(e), dw3 = this.u32(e + 12);
    this.acqHead = (this.acqHead + 1) % ADMIN_Q;
    if (this.acqHead === 0) this.acqPhase ^= 1;
    await this.adminDoorbell(1, this.acqHead);
    const status = (dw3 >>> 17) & 0x7fff;
    if ((dw3 & 0xffff) !== cid) throw new Error(`admin completion for cid ${dw3 & 0xffff}, expected ${cid}`);
    if (status) throw new Error(`admin command 0x${opc.toString(16)} failed: SCT ${(status >> 8) & 7} SC 0x${(status & 0xff).toString(16)}`);
    return dw0;
  }

  private async adminDoorbell(cq: 0 | 1, v: number): Promise<void> {
    if (this.db && this.o.doorbells !== "trap") { this.db[cq * this.dstrd] = v; return; }
    await this.c.w32(P.PCI_BAR0, DB_BASE + cq * 4 * this.dstrd, v);
  }

  // ---------------------------------------------------------------- I/O path

  private ringSq(q: Queue, old: number): void {
    const i = 2 * q.qid * this.dstrd, v = q.sqTail;
    this.doorbells++;
    if (this.mode === "mmap") { this.db![i] = v; return; }
    if (this.mode === "shadow") {
      this.shadow![2 * q.qid] = v;
      Atomics.add(FENCE, 0, 0);
      if (!needEvent(this.eventIdx![2 * q.qid], v, old)) return;
    }
    this.traps++;
    this.c.post32(P.PCI_BAR0, DB_BASE + i * 4, v);
  }

  private ringCq(q: Queue): void {
    const i = (2 * q.qid + 1) * this.dstrd, v = q.cqHead, old = q.headWritten;
    q.headWritten = v;
    q.sinceHead = 0;
    this.doorbells++;
    if (this.mode === "mmap") { this.db![i] = v; return; }
    if (this.mode === "shadow") {
      this.shadow![2 * q.qid + 1] = v;
      Atomics.add(FENCE, 0, 0);
      if (!needEvent(this.eventIdx![2 * q.qid + 1], v, old)) return;
    }
    this.traps++;
    this.c.post32(P.PCI_BAR0, DB_BASE + i * 4, v);
  }

  /** Writes the SQ entry for `slot` at the tail (does not ring). */
  private put(q: Queue, slot: number, opc: number, lba: number, nlb: number): void {
    const s = q.sq, o = q.sqTail * 16;
    const buf = q.bufGpa[slot], prp2 = q.prp2[slot];
    s[o] = opc | (slot << 16); s[o + 1] = this.o.nsid ?? 1; s[o + 2] = 0; s[o + 3] = 0; s[o + 4] = 0; s[o + 5] = 0;
    s[o + 6] = buf >>> 0; s[o + 7] = (buf / TWO32) >>> 0; s[o + 8] = prp2 >>> 0; s[o + 9] = (prp2 / TWO32) >>> 0;
    s[o + 10] = lba >>> 0; s[o + 11] = (lba / TWO32) >>> 0; s[o + 12] = nlb - 1; s[o + 13] = 0; s[o + 14] = 0; s[o + 15] = 0;
    q.sqTail = q.sqTail + 1 === q.size ? 0 : q.sqTail + 1;
  }

  /** Buffer of a slot, as bytes in our memory. */
  buffer(q: number, slot: number): Uint8Array {
    const g = this.queues[q].bufGpa[slot] - IOVA;
    return this.mem.subarray(g, g + this.o.bs);
  }

  /** One command on queue 0 slot 0, waited for by polling; returns the NVMe status. */
  async sync(opc: number, lba: number): Promise<number> {
    const q = this.queues[0], nlb = this.o.bs / this.blockSize;
    const old = q.sqTail;
    this.put(q, 0, opc, lba, nlb);
    this.ringSq(q, old);
    const end = Date.now() + 5000;
    let dw3 = Atomics.load(q.cq, q.cqHead * 4 + 3);
    while (((dw3 >>> 16) & 1) !== q.phase) {
      if (Date.now() > end) throw new Error("I/O timeout (5 s)");
      await sleep(0);
      dw3 = Atomics.load(q.cq, q.cqHead * 4 + 3);
    }
    q.cqHead = q.cqHead + 1 === q.size ? 0 : q.cqHead + 1;
    if (q.cqHead === 0) q.phase ^= 1;
    this.ringCq(q);
    return (dw3 >>> 17) & 0x7fff;
  }

  /** Writes a pattern at `lba` (one I/O of bs bytes), reads it back, compares. Throws on a mismatch. */
  async check(lba: number): Promise<void> {
    const b = this.buffer(0, 0);
    const pat = new Uint8Array(b.length);
    for (let i = 0; i < pat.length; i++) pat[i] = (i * 7 + lba) & 0xff;
    b.set(pat);
    let st = await this.sync(IO_WRITE, lba);
    if (st) throw new Error(`check: write failed, status 0x${st.toString(16)}`);
    b.fill(0);
    st = await this.sync(IO_READ, lba);
    if (st) throw new Error(`check: read failed, status 0x${st.toString(16)}`);
    for (let i = 0; i < pat.length; i++) if (b[i] !== pat[i]) throw new Error(`check: byte ${i} read back 0x${b[i].toString(16)}, wrote 0x${pat[i].toString(16)}`);
  }

  /**
   * Random I/O at QD `qd` per queue for warmupS + timeS seconds (only the last timeS are
   * measured), then waits for the commands in flight. `readPct`: 100 randread, 0 randwrite.
   * With minIos, the measured part goes on (up to 30 s more) until that many I/Os completed
   * (for tests on a loaded machine). Synchronous: it owns the thread until done.
   */
  run(readPct: number, timeS: number, warmupS: number, minIos = 0): RunResult {
    const o = this.o, nlb = o.bs / this.blockSize;
    const units = Math.floor(this.nsze / nlb);
    if (units < 1) throw new Error("namespace smaller than one I/O");
    let rnd = 0x9e3779b9 ^ (Date.now() & 0xffff);
    const next = () => { rnd ^= rnd << 13; rnd ^= rnd >>> 17; rnd ^= rnd << 5; return rnd >>> 0; };
    const opcOf = readPct >= 100 ? () => IO_READ : readPct <= 0 ? () => IO_WRITE : () => (next() % 100 < readPct ? IO_READ : IO_WRITE);
    const hist = new Hist();
    let ios = 0, reads = 0, writes = 0, errors = 0, busy = 0, batches = 0, polls = 0, empty = 0;
    const opcs = this.queues.map(() => new Uint8Array(o.qd));
    const now = () => performance.now();
    // the first commands
    for (let qi = 0; qi < this.queues.length; qi++) {
      const q = this.queues[qi], old = q.sqTail;
      for (let s = 0; s < o.qd; s++) { const opc = opcOf(); opcs[qi][s] = opc; this.put(q, s, opc, (next() % units) * nlb, nlb); }
      q.inflight = o.qd;
      this.ringSq(q, old);
      const t = now();
      q.submitT.fill(t);
    }
    const t0 = now();
    const tMeasure = t0 + warmupS * 1000, tEnd = tMeasure + timeS * 1000;
    let measuring = warmupS <= 0, stopping = false, tStart = measuring ? t0 : 0, tStop = 0;
    let traps0 = this.traps, dbs0 = this.doorbells;
    const cpu0 = process.cpuUsage();
    let drainTimedOut = false;
    const queues = this.queues, nq = queues.length;
    for (let iter = 0; ; iter++) {
      if ((iter & 15) === 0) {
        const t = now();
        if (!measuring && t >= tMeasure) {
          measuring = true; tStart = t;
          ios = reads = writes = errors = busy = batches = polls = empty = 0;
          traps0 = this.traps; dbs0 = this.doorbells;
        }
        if (!stopping && measuring && t >= tEnd && (ios >= minIos || t >= tEnd + 30_000)) { stopping = true; tStop = t; }
        if (stopping) {
          let left = 0;
          for (let qi = 0; qi < nq; qi++) left += queues[qi].inflight;
          if (left === 0) break;
          if (t > tStop + 10_000) { drainTimedOut = true; break; }
        }
      }
      for (let qi = 0; qi < nq; qi++) {
        const q = queues[qi], cq = q.cq;
        polls++;
        let dw3 = Atomics.load(cq, q.cqHead * 4 + 3);
        if (((dw3 >>> 16) & 1) !== q.phase) { empty++; continue; }
        const tc = now();
        const oldTail = q.sqTail;
        let n = 0, sub = 0;
        const opq = opcs[qi];
        do {
          const slot = dw3 & 0xffff, status = (dw3 >>> 17) & 0x7fff;
          if (status) errors++;
          if (measuring && !stopping) {
            hist.add((tc - q.submitT[slot]) * 1e6);
            ios++;
            if (opq[slot] === IO_READ) reads++; else writes++;
          }
          q.cqHead = q.cqHead + 1 === q.size ? 0 : q.cqHead + 1;
          if (q.cqHead === 0) q.phase ^= 1;
          q.sinceHead++;
          if (stopping) q.inflight--;
          else {
            const opc = opcOf();
            opq[slot] = opc;
            this.put(q, slot, opc, (next() % units) * nlb, nlb);
            q.batch[sub++] = slot;
          }
          n++;
          dw3 = Atomics.load(cq, q.cqHead * 4 + 3);
        } while (((dw3 >>> 16) & 1) === q.phase);
        if (q.sinceHead >= q.size >> 2 || (stopping && q.inflight === 0)) this.ringCq(q);
        if (sub) this.ringSq(q, oldTail);
        const ts = now();
        for (let i = 0; i < sub; i++) q.submitT[q.batch[i]] = ts;
        if (measuring) { busy += ts - tc; batches++; }
      }
    }
    const cpu = process.cpuUsage(cpu0);
    const secs = ((stopping ? tStop : now()) - tStart) / 1000;
    const bytes = ios * o.bs;
    return {
      ios, reads, writes, bytes, secs, iops: secs > 0 ? ios / secs : 0, mibS: secs > 0 ? bytes / secs / 1048576 : 0, errors,
      lat: { min: hist.n ? hist.min / 1e3 : 0, avg: hist.n ? hist.sum / hist.n / 1e3 : 0, p50: hist.pct(0.5) / 1e3,
        p99: hist.pct(0.99) / 1e3, p999: hist.pct(0.999) / 1e3, max: hist.max / 1e3 },
      trapsPerIo: ios ? (this.traps - traps0) / ios : 0,
      doorbellsPerIo: ios ? (this.doorbells - dbs0) / ios : 0,
      iosPerBatch: batches ? ios / batches : 0,
      busyNsPerIo: ios ? (busy * 1e6) / ios : 0,
      emptyPollPct: polls ? (100 * empty) / polls : 0,
      cpuS: (cpu.user + cpu.system) / 1e6,
      drainTimedOut,
    };
  }

  /** Deletes the I/O queues, disables the controller, disconnects. Best effort. */
  async close(): Promise<void> {
    try {
      for (const q of this.queues) {
        await this.admin(ADM.DELETE_SQ, 0, q.qid, 0, 0);
        await this.admin(ADM.DELETE_CQ, 0, q.qid, 0, 0);
      }
      await this.c.w32(P.PCI_BAR0, REG.CC, 0);
    } catch { /* the connection may be gone */ }
    this.c.close();
    if (this.dbMapAddr) libc.munmap(this.dbMapAddr, PAGE);
    if (this.memAddr) libc.munmap(this.memAddr, this.memLen);
    libc.closeQuiet(this.memFd);
  }
}
