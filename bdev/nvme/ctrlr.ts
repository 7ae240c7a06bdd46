// An attached NVMe controller, on the control plane: bring-up over BAR0, Identify, one
// I/O queue pair per reactor (created here, used by the reactors' channels), a health
// check (CSTS, hot removal, I/O timeouts), reset, and detach.
import { closeQuiet, eventfd, eventfdSignal, view } from '../../native/libc.js';
import { logger } from '../../src/log.js';
import { dmaRegistry, DmaRegion, DmaSubscriber } from '../../src/memory/dma_registry.js';
import { AdminQueue } from './admin.js';
import { C_GEN, C_STATE, MAX_QPAIRS, Q_ACK, Q_ACTIVE, Q_INFLIGHT, Q_PROGRESS, Q_TIMEOUT, ST, createState, qpCell, stateNames } from './ctrlr_state.js';
import {
  ADM, ADMIN_DEPTH, CC_EN, CC_IOQES, CC_SHN_NORMAL, CNS, CQE_BYTES, CSTS_CFS, CSTS_RDY, CSTS_SHST_COMPLETE, CSTS_SHST_MASK,
  DOORBELL_BASE, FEAT_NUM_QUEUES, LOG_ERROR, MAX_NLB, ONCS_DSM, ONCS_WRITE_ZEROES, PAGE, REG, SQE_BYTES, TWO32,
} from './nvme_spec.js';
import { MAX_PRP_BYTES } from './prp.js';
import type { QpairSpec } from './qpair.js';
import type { NvmeTransport } from './transport.js';

const log = logger('bdev_nvme');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** I/O queue entries (capped by CAP.MQES). */
export const IO_QUEUE_DEPTH = 256;
export const HEALTH_MS = 200;
export const DEFAULT_IO_TIMEOUT_MS = 30_000;

export interface NsInfo {
  nsid: number;
  blockSize: number;
  numBlocks: number;
  nguid: string;
  eui64: string;
}

export interface CtrlrIdentity {
  vid: number; ssvid: number; sn: string; mn: string; fr: string; cntlid: number; ver: number;
  mdts: number; oncs: number; vwc: number; nn: number; subnqn: string;
}

let nextSerial = 1;

const ascii = (b: Uint8Array) => Buffer.from(b).toString('latin1').replace(/\0.*$/s, '').trim();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

export class NvmeController implements DmaSubscriber {
  readonly serial = nextSerial++;
  readonly state = createState();
  id!: CtrlrIdentity;
  namespaces: NsInfo[] = [];
  /** Indexed by reactor. */
  qpairs: (QpairSpec | null)[] = [];
  maxXferBytes = MAX_PRP_BYTES;
  private admin!: AdminQueue;
  private adminMem = { hva: 0, size: 0, fd: -1 };
  private qMem: { hva: number; size: number }[] = [];
  private wakeFds: number[] = [];
  private regs: Uint32Array | null = null;
  private dstrd = 0;
  private timeoutMs = 5000;
  private mqes = 0;
  private health: NodeJS.Timeout | null = null;
  private busy = false;
  private removed: string | null = null;
  private closed = false;
  resets = 0;

  /** Per qpair: completions seen at the last health check, and when they last moved. */
  private progress: { count: number; since: number }[] = [];

  /**
   * ioTimeoutMs: a command without completion for this long (0: never) is a timeout;
   * resetOnTimeout: then reset the controller (else only log it, SPDK's action "none").
   */
  constructor(readonly name: string, readonly transport: NvmeTransport, private readonly reactors: number,
    readonly ioTimeoutMs = DEFAULT_IO_TIMEOUT_MS, readonly resetOnTimeout = true) {
    if (!transport.readReg32) this.regs = new Uint32Array(view(transport.bar0Hva, DOORBELL_BASE));
    transport.onRemoved?.((why) => this.fail(`device removed: ${why}`));
  }

  get stateName(): string { return this.removed ? 'failed' : stateNames[Atomics.load(this.state, C_STATE)]; }

  // ---- registers
  private async r32(off: number): Promise<number> {
    const t = this.transport;
    return t.readReg32 ? t.readReg32(off) : Atomics.load(this.regs!, off / 4) >>> 0;
  }
  private async w32(off: number, v: number): Promise<void> {
    const t = this.transport;
    if (t.writeReg32) await t.writeReg32(off, v >>> 0); else Atomics.store(this.regs!, off / 4, v >>> 0);
  }
  private async w64(off: number, v: number): Promise<void> {
    await this.w32(off, v >>> 0);
    await this.w32(off + 4, (v / TWO32) >>> 0);
  }
  private doorbell(qid: number, cq: 0 | 1): { hva: number; view: Uint32Array } {
    const hva = this.transport.bar0Hva + DOORBELL_BASE + (2 * qid + cq) * (4 << this.dstrd);
    return { hva, view: new Uint32Array(view(hva, 4)) };
  }

  private async waitCsts(ok: (s: number) => boolean, what: string): Promise<void> {
    const end = Date.now() + this.timeoutMs;
    for (;;) {
      const s = await this.r32(REG.CSTS);
      if (s === 0xffffffff) throw new Error(`waiting for ${what}: the device is gone (CSTS reads all ones)`);
      if (ok(s)) return;
      if (s & CSTS_CFS) throw new Error(`waiting for ${what}: controller fatal status (CSTS 0x${s.toString(16)})`);
      if (Date.now() > end) throw new Error(`waiting for ${what}: not within CAP.TO (${this.timeoutMs} ms; CSTS 0x${s.toString(16)})`);
      await sleep(1);
    }
  }

  // ---- bring-up
  /** Enables the controller, identifies it and its namespaces, creates the I/O queues. */
  async init(): Promise<void> {
    const t = this.transport;
    const capLo = await this.r32(REG.CAP), capHi = await this.r32(REG.CAP + 4);
    this.mqes = (capLo & 0xffff) + 1;
    this.timeoutMs = Math.max(500, ((capLo >>> 24) & 0xff) * 500);
    this.dstrd = capHi & 0xf;
    const mpsmin = (capHi >>> 16) & 0xf, css = (capHi >>> 5) & 0xff;
    if (mpsmin !== 0) throw new Error(`controller's smallest memory page is ${4096 << mpsmin} bytes: vhostd needs 4 KiB pages`);
    if (!(css & 1)) throw new Error('controller does not support the NVM command set');
    if (this.mqes < 2) throw new Error(`controller's queues hold ${this.mqes} entries (CAP.MQES): too few`);
    this.adminMem = await t.allocDma(4 * PAGE);
    const a = this.adminMem.hva;
    this.admin = new AdminQueue(a, a + PAGE, this.doorbell(0, 0).view, this.doorbell(0, 1).view, this.timeoutMs + 5000,
      () => this.removed);
    await this.enable();
    await this.identify();
    await this.createIoQueues(true);
    this.health = setInterval(() => void this.checkHealth(), HEALTH_MS);
    this.health.unref();
    log.notice(`${this.name}: ${this.id.mn} (serial ${this.id.sn}, firmware ${this.id.fr}) at ${t.trtype} ${t.traddr}: ` +
      `${this.namespaces.length} namespace(s), ${this.qpairs.filter(Boolean).length} I/O queue(s)`);
  }

  private async enable(): Promise<void> {
    if ((await this.r32(REG.CC)) & CC_EN) {
      await this.w32(REG.CC, 0);
      await this.waitCsts((s) => (s & CSTS_RDY) === 0, 'the controller to disable (CSTS.RDY=0)');
    }
    this.admin.restart();
    const a = this.adminMem.hva;
    await this.w32(REG.AQA, ((ADMIN_DEPTH - 1) << 16) | (ADMIN_DEPTH - 1));
    await this.w64(REG.ASQ, a);
    await this.w64(REG.ACQ, a + PAGE);
    await this.w32(REG.CC, CC_IOQES | CC_EN);
    await this.waitCsts((s) => (s & CSTS_RDY) !== 0, 'the controller to enable (CSTS.RDY=1)');
  }

  private async identify(): Promise<void> {
    const buf = this.adminMem.hva + 2 * PAGE;
    const b = new Uint8Array(view(buf, PAGE)), dv = new DataView(b.buffer);
    await this.admin.run({ opc: ADM.IDENTIFY, prp1: buf, cdw10: CNS.CTRLR }, 'Identify Controller');
    this.id = {
      vid: dv.getUint16(0, true), ssvid: dv.getUint16(2, true), sn: ascii(b.subarray(4, 24)), mn: ascii(b.subarray(24, 64)),
      fr: ascii(b.subarray(64, 72)), mdts: b[77], cntlid: dv.getUint16(78, true), ver: dv.getUint32(80, true),
      nn: dv.getUint32(516, true), oncs: dv.getUint16(520, true), vwc: b[525], subnqn: ascii(b.subarray(768, 1024)),
    };
    if (this.id.mdts) this.maxXferBytes = Math.min(MAX_PRP_BYTES, PAGE << this.id.mdts);
    // active namespaces (CNS 02h), each identified
    await this.admin.run({ opc: ADM.IDENTIFY, prp1: buf, cdw10: CNS.ACTIVE_NS_LIST }, 'Identify Active Namespace List');
    const nsids: number[] = [];
    for (let i = 0; i < 1024; i++) { const n = dv.getUint32(4 * i, true); if (!n) break; nsids.push(n); }
    this.namespaces = [];
    for (const nsid of nsids) {
      await this.admin.run({ opc: ADM.IDENTIFY, nsid, prp1: buf, cdw10: CNS.NS }, `Identify Namespace ${nsid}`);
      const nsze = dv.getUint32(0, true) + dv.getUint32(4, true) * TWO32;
      if (!nsze) continue;
      const lbaf = dv.getUint32(128 + 4 * (b[26] & 0xf), true);
      const ms = lbaf & 0xffff, lbads = (lbaf >>> 16) & 0xff;
      if (ms !== 0) {
        log.warn(`${this.name}: namespace ${nsid} has ${ms} bytes of metadata per block: not yet supported, skipped`);
        continue;
      }
      if (lbads < 9 || lbads > 12) {
        log.warn(`${this.name}: namespace ${nsid} has ${2 ** lbads}-byte blocks: vhostd supports 512 to 4096, skipped`);
        continue;
      }
      this.namespaces.push({ nsid, blockSize: 2 ** lbads, numBlocks: nsze, nguid: hex(b.subarray(104, 120)), eui64: hex(b.subarray(120, 128)) });
    }
  }

  /** Which io types the controller's commands give (flush only with a volatile write cache). */
  ioTypes(): ('read' | 'write' | 'flush' | 'unmap' | 'write_zeroes')[] {
    const t: ('read' | 'write' | 'flush' | 'unmap' | 'write_zeroes')[] = ['read', 'write'];
    if (this.id.vwc & 1) t.push('flush');
    if (this.id.oncs & ONCS_DSM) t.push('unmap');
    if (this.id.oncs & ONCS_WRITE_ZEROES) t.push('write_zeroes');
    return t;
  }

  maxIoBlocks(blockSize: number): number { return Math.min(MAX_NLB, this.maxXferBytes / blockSize); }

  /**
   * Asks for one I/O queue pair per reactor and creates them (first: allocates their memory
   * and wake eventfds; after a reset: the same memory, the same qids).
   */
  private async createIoQueues(first: boolean): Promise<void> {
    const want = Math.min(this.reactors, MAX_QPAIRS);
    const dw0 = await this.admin.run({ opc: ADM.SET_FEATURES, cdw10: FEAT_NUM_QUEUES, cdw11: ((want - 1) << 16) | (want - 1) },
      'Set Features (Number of Queues)');
    const granted = Math.min(want, (dw0 & 0xffff) + 1, (dw0 >>> 16) + 1);
    if (granted < want && first) {
      log.warn(`${this.name}: the controller grants ${granted} I/O queue pair(s) for ${want} reactor(s): ` +
        `reactors ${granted} and above cannot use its namespaces`);
    }
    const depth = Math.min(IO_QUEUE_DEPTH, this.mqes);
    const sqBytes = align(depth * SQE_BYTES, PAGE), cqBytes = align(depth * CQE_BYTES, PAGE);
    if (first) {
      // one MSI-X vector per I/O queue (vector 0 = admin, not used: admin completions are polled)
      let irqs: number[] = [];
      try { irqs = await this.transport.enableInterrupts(granted + 1); } catch (e) {
        log.warn(`${this.name}: no completion interrupts (${(e as Error).message}): reactors poll while I/O is in flight`);
      }
      this.qpairs = new Array(this.reactors).fill(null);
      for (let i = 0; i < granted; i++) {
        const m = await this.transport.allocDma(sqBytes + cqBytes + (depth - 1) * PAGE);
        this.qMem.push(m);
        const fd = eventfd();
        this.wakeFds.push(fd);
        const qid = i + 1;
        this.qpairs[i] = {
          ctrlr: this.name, serial: this.serial, index: i, qid, depth,
          sqHva: m.hva, cqHva: m.hva + sqBytes, listHva: m.hva + sqBytes + cqBytes,
          sqDbHva: this.doorbell(qid, 0).hva, cqDbHva: this.doorbell(qid, 1).hva,
          wakeFd: fd, irqFd: irqs[qid] ?? -1, state: this.state.buffer as SharedArrayBuffer, maxXferBytes: this.maxXferBytes, timeoutMs: this.ioTimeoutMs,
        };
      }
    }
    for (const q of this.qpairs) {
      if (!q) continue;
      if (!first) new Uint8Array(view(q.cqHva, cqBytes)).fill(0);
      // PC=1, and interrupts (IEN, vector = qid) where there is an eventfd to sleep on
      const ien = q.irqFd >= 0 ? 2 | (q.qid << 16) : 0;
      await this.admin.run({ opc: ADM.CREATE_CQ, prp1: q.cqHva, cdw10: q.qid | ((q.depth - 1) << 16), cdw11: 1 | ien },
        `Create I/O Completion Queue ${q.qid}`);
      await this.admin.run({ opc: ADM.CREATE_SQ, prp1: q.sqHva, cdw10: q.qid | ((q.depth - 1) << 16), cdw11: 1 | (q.qid << 16) },
        `Create I/O Submission Queue ${q.qid}`);
    }
  }

  // ---- DMA of guest memory (dma_registry subscriber)
  async map(r: DmaRegion): Promise<void> {
    if (this.removed) return;
    try { await this.transport.mapDma(r.hva, r.size, r.fd, r.offset); } catch (e) {
      log.error(`${this.name}: cannot map guest memory 0x${r.hva.toString(16)}+0x${r.size.toString(16)} for DMA: ` +
        `${(e as Error).message} (its NVMe I/O on that memory will fail)`);
      throw e;
    }
  }

  async unmap(r: DmaRegion): Promise<void> {
    if (this.removed) return;
    try { await this.transport.unmapDma(r.hva, r.size); } catch (e) {
      log.warn(`${this.name}: cannot unmap guest memory 0x${r.hva.toString(16)}+0x${r.size.toString(16)}: ${(e as Error).message}`);
    }
  }

  // ---- failure, reset
  private wakeAll(): void { for (const fd of this.wakeFds) eventfdSignal(fd); }

  /** The controller is lost: every I/O fails from now on (no DMA can happen any more). */
  fail(why: string): void {
    if (this.closed || Atomics.load(this.state, C_STATE) === ST.FAILED) return;
    this.removed ??= why;
    log.error(`${this.name}: ${why}: its I/O fails from now on (bdev_nvme_detach_controller removes it)`);
    Atomics.store(this.state, C_STATE, ST.FAILED);
    Atomics.add(this.state, C_GEN, 1);
    this.wakeAll();
  }

  private async checkHealth(): Promise<void> {
    if (this.busy || this.closed || this.removed) return;
    this.busy = true;
    try {
      const s = await this.r32(REG.CSTS);
      if (s === 0xffffffff) { this.fail('the device is gone (CSTS reads all ones)'); return; }
      let why = s & CSTS_CFS ? `controller fatal status (CSTS 0x${s.toString(16)})` : '';
      why ||= this.timedOut();
      if (why && (this.resetOnTimeout || s & CSTS_CFS)) await this.resetLocked(why);
    } catch (e) {
      if (!this.closed) this.fail(`health check failed: ${(e as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  /**
   * I/O timeouts: a reactor flagged a command older than the timeout (it checks while it
   * polls), or a queue with requests in flight has completed nothing for that long (this
   * also covers a reactor asleep on an interrupt that never comes).
   */
  private timedOut(): string {
    const t = this.ioTimeoutMs, st = this.state, now = Date.now();
    if (t <= 0) return '';
    let why = '';
    for (const q of this.qpairs) {
      if (!q) continue;
      const p = (this.progress[q.index] ??= { count: 0, since: now });
      const count = st[qpCell(q.index, Q_PROGRESS)], busy = st[qpCell(q.index, Q_INFLIGHT)] > 0;
      if (count !== p.count || !busy) { p.count = count; p.since = now; }
      if (Atomics.load(st, qpCell(q.index, Q_TIMEOUT))) why ||= `an I/O command on queue ${q.qid} had no completion within ${t} ms`;
      else if (now - p.since > t) why ||= `queue ${q.qid} completed nothing for ${now - p.since} ms with I/O in flight`;
    }
    if (why && !this.resetOnTimeout) {
      log.warn(`${this.name}: ${why} (action_on_timeout is none)`);
      for (const q of this.qpairs) if (q) { Atomics.store(st, qpCell(q.index, Q_TIMEOUT), 0); this.progress[q.index] = { count: st[qpCell(q.index, Q_PROGRESS)], since: now }; }
    }
    return why;
  }

  /** bdev_nvme_reset_controller: disable, fail what was in flight, enable, recreate the queues. */
  async reset(why = 'reset requested'): Promise<void> {
    while (this.busy) await sleep(5);
    if (this.removed) throw new Error(`${this.name} cannot be reset: ${this.removed}`);
    this.busy = true;
    try { await this.resetLocked(why); } finally { this.busy = false; }
    if (this.removed) throw new Error(`${this.name}: reset failed: ${this.removed}`);
  }

  private async resetLocked(why: string): Promise<void> {
    log.warn(`${this.name}: resetting the controller: ${why}`);
    this.resets++;
    const st = this.state;
    Atomics.store(st, C_STATE, ST.RESETTING);
    this.wakeAll();
    try {
      await this.w32(REG.CC, 0);
      await this.waitCsts((s) => (s & CSTS_RDY) === 0, 'the controller to disable (CSTS.RDY=0)');
      // the device does no more DMA: the reactors fail what was in flight and start their rings over
      const gen = Atomics.add(st, C_GEN, 1) + 1;
      Atomics.store(st, C_STATE, ST.DISABLED);
      this.wakeAll();
      const end = Date.now() + 5000;
      for (;;) {
        const waiting = this.qpairs.filter((q) => q && Atomics.load(st, qpCell(q.index, Q_ACTIVE)) && Atomics.load(st, qpCell(q.index, Q_ACK)) !== gen);
        if (waiting.length === 0) break;
        if (Date.now() > end) throw new Error(`reactor queue(s) ${waiting.map((q) => q!.qid).join(', ')} did not acknowledge the reset`);
        this.wakeAll();
        await sleep(2);
      }
      for (const q of this.qpairs) if (q) Atomics.store(st, qpCell(q.index, Q_TIMEOUT), 0);
      this.progress = [];
      await this.enable();
      await this.createIoQueues(false);
      Atomics.store(st, C_STATE, ST.OK);
      log.notice(`${this.name}: reset done`);
    } catch (e) {
      this.fail(`reset failed: ${(e as Error).message}`);
    }
  }

  /** The last entries of the Error Information log (for bdev_nvme_get_controllers and logs). */
  async errorLog(entries = 4): Promise<{ error_count: number; sqid: number; cid: number; status: number; lba: number; nsid: number }[]> {
    const buf = this.adminMem.hva + 3 * PAGE, dv = new DataView(view(buf, PAGE));
    const numd = (entries * 64) / 4 - 1;
    await this.admin.run({ opc: ADM.GET_LOG_PAGE, prp1: buf, cdw10: LOG_ERROR | (numd << 16) }, 'Get Log Page (Error Information)');
    const out = [];
    for (let i = 0; i < entries; i++) {
      const o = i * 64;
      const count = Number(dv.getBigUint64(o, true));
      if (!count) continue;
      out.push({ error_count: count, sqid: dv.getUint16(o + 8, true), cid: dv.getUint16(o + 10, true),
        status: dv.getUint16(o + 12, true) >> 1, lba: Number(dv.getBigUint64(o + 16, true)), nsid: dv.getUint32(o + 24, true) });
    }
    return out;
  }

  // ---- detach
  /** Deletes the I/O queues, shuts the controller down (best effort), frees everything. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.health) clearInterval(this.health);
    while (this.busy) await sleep(5);
    this.busy = true;
    try {
      if (!this.removed) {
        for (const q of this.qpairs) {
          if (!q) continue;
          await this.admin.run({ opc: ADM.DELETE_SQ, cdw10: q.qid }, `Delete I/O Submission Queue ${q.qid}`);
          await this.admin.run({ opc: ADM.DELETE_CQ, cdw10: q.qid }, `Delete I/O Completion Queue ${q.qid}`);
        }
        await this.w32(REG.CC, CC_IOQES | CC_EN | CC_SHN_NORMAL);
        const end = Date.now() + Math.min(this.timeoutMs, 2000);
        while ((((await this.r32(REG.CSTS)) & CSTS_SHST_MASK) !== CSTS_SHST_COMPLETE) && Date.now() < end) await sleep(1);
      }
    } catch (e) {
      log.warn(`${this.name}: orderly shutdown failed (${(e as Error).message}); detaching anyway`);
    }
    this.closed = true;
    Atomics.store(this.state, C_STATE, ST.FAILED);
    Atomics.add(this.state, C_GEN, 1);
    this.wakeAll();
    await dmaRegistry.unsubscribe(this);
    for (const m of this.qMem) await this.transport.freeDma(m.hva).catch(() => undefined);
    if (this.adminMem.hva) await this.transport.freeDma(this.adminMem.hva).catch(() => undefined);
    await this.transport.close().catch(() => undefined);
    for (const fd of this.wakeFds) closeQuiet(fd);
    this.busy = false;
  }
}
