// NVMe admin commands: Identify, queue creation and deletion, log pages, features,
// Asynchronous Event Requests, Abort, Keep Alive and Doorbell Buffer Config.
import { TWO32 } from '../../src/memory/guest_memory.js';
import * as D from './nvme_defs.js';
import { walkPrp, copySegs } from './prp.js';
import * as Id from './identify.js';
import { Cq, Sq, u32, K_ABORT } from './nvme_queues.js';
import { Ns, SEGS_PER_CMD, ERROR_LOG_BYTES, C_ADMIN_CMDS, C_READ_BYTES, C_WRITE_BYTES, C_READS, C_WRITES, C_ERRORS, C_ABORT_CMDS,
  C_ABORTED, C_SHADOW, LOC_NONE, LOC_FUSE, LOC_PSDT, LOC_CSI, LOC_CDW10, LOC_OPC, LOC_DPTR } from './nvme_ctrlr_state.js';
import { NvmeIoCommands } from './nvme_io.js';

/** A decoded admin command; a handler sets status (SCT<<8|SC) and dw0 of its completion. */
interface AdminCmd {
  sq: Sq; opc: number; cid: number; nsid: number; prp1: number; prp2: number;
  cdw10: number; cdw11: number; cdw12: number; cdw13: number;
  status: number; dw0: number;
}

/** Handles one admin command: true if it completes now (with cmd.status and cmd.dw0), false if later or already. */
type AdminHandler = (c: NvmeAdminCommands, cmd: AdminCmd) => boolean;

export abstract class NvmeAdminCommands extends NvmeIoCommands {
  /** Writes `data` to the command's PRPs; returns a status. */
  protected toHost(prp1: number, prp2: number, data: Uint8Array, len = data.length): number {
    const n = walkPrp(this.mem, prp1, prp2, len, this.admSegs, 0, SEGS_PER_CMD);
    if (n < 0) { this.eLoc = LOC_DPTR; return -n | D.SC.DNR; }
    copySegs(this.mem, this.admSegs, 0, n, data.subarray(0, len), 'out');
    return 0;
  }

  /** Fetched admin command at sq.u8[off]: decodes it into `cmd` and runs its handler. */
  protected admin(sq: Sq, off: number): void {
    const b = sq.u8, cmd = this.cmd;
    const opc = b[off], flags = b[off + 1];
    cmd.sq = sq; cmd.opc = opc; cmd.cid = b[off + 2] | (b[off + 3] << 8);
    cmd.nsid = u32(b, off + 4);
    cmd.prp1 = u32(b, off + 24) + u32(b, off + 28) * TWO32;
    cmd.prp2 = u32(b, off + 32) + u32(b, off + 36) * TWO32;
    cmd.cdw10 = u32(b, off + 40); cmd.cdw11 = u32(b, off + 44); cmd.cdw12 = u32(b, off + 48); cmd.cdw13 = u32(b, off + 52);
    cmd.status = 0; cmd.dw0 = 0;
    this.cnt[C_ADMIN_CMDS]++;
    this.eNsid = cmd.nsid; this.eLba = 0; this.eLoc = LOC_NONE;
    const h = ADMIN_HANDLERS[opc];
    // fused operations, and SGLs (for admin commands only over fabrics)
    if (flags & 0xc3) { this.eLoc = flags & 3 ? LOC_FUSE : LOC_PSDT; cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; }
    else if (h === undefined) { this.eLoc = LOC_OPC; cmd.status = D.SC.INVALID_OPCODE | D.SC.DNR; }
    else if (!h(this, cmd)) return;   // completes later, or has completed itself
    this.post(sq.cq, sq, cmd.cid, cmd.status, cmd.dw0);
  }

  /** The admin command being handled (admin commands run one at a time, so one per controller). */
  private readonly cmd: AdminCmd = { sq: null!, opc: 0, cid: 0, nsid: 0, prp1: 0, prp2: 0, cdw10: 0, cdw11: 0, cdw12: 0, cdw13: 0,
    status: 0, dw0: 0 };

  /** The handler of each admin opcode (the table is built once, below the class). */
  static handlerTable(): AdminHandler[] {
    const h: AdminHandler[] = [];
    h[D.ADM.IDENTIFY] = (c, cmd) => c.identify(cmd);
    h[D.ADM.CREATE_CQ] = (c, cmd) => c.createCq(cmd);
    h[D.ADM.CREATE_SQ] = (c, cmd) => c.createSq(cmd);
    h[D.ADM.DELETE_SQ] = (c, cmd) => c.deleteSq(cmd);
    h[D.ADM.DELETE_CQ] = (c, cmd) => c.deleteCq(cmd);
    h[D.ADM.GET_LOG_PAGE] = (c, cmd) => c.getLogPage(cmd);
    h[D.ADM.GET_FEATURES] = (c, cmd) => c.getSetFeatures(cmd);
    h[D.ADM.SET_FEATURES] = (c, cmd) => c.getSetFeatures(cmd);
    h[D.ADM.ASYNC_EVENT] = (c, cmd) => c.asyncEventRequest(cmd);
    h[D.ADM.ABORT] = (c, cmd) => c.abortCmd(cmd);
    h[D.ADM.KEEP_ALIVE] = () => true;
    h[D.ADM.DBBUF_CONFIG] = (c, cmd) => c.dbbufConfig(cmd);
    return h;
  }

  private identify(cmd: AdminCmd): boolean {
    const { nsid, prp1, prp2, cdw10, cdw11 } = cmd;
    const cns = cdw10 & 0xff;
    let data: Uint8Array | null = null;
    const ns = this.ns.get(nsid);
    const nsId = (n: Ns): Id.NsIdentity => ({ nsid: n.nsid, blockSize: n.bs, numBlocks: n.nblocks, uuid: n.uuid });
    if (cns === 0x01) data = Id.identifyController(this.spec.identity);
    else if (cns === 0x00) {
      if (nsid === 0 || (nsid > D.MAX_NS && nsid !== 0xffffffff)) cmd.status = D.SC.INVALID_NS | D.SC.DNR;
      else data = Id.identifyNamespace(ns ? nsId(ns) : undefined);
    } else if (cns === 0x02) {
      if (nsid >= 0xfffffffe) cmd.status = D.SC.INVALID_NS | D.SC.DNR;
      else data = Id.activeNsList([...this.ns.keys()], nsid);
    } else if (cns === 0x03) {
      if (!ns) cmd.status = D.SC.INVALID_NS | D.SC.DNR; else data = Id.nsDescriptors(nsId(ns));
    } else if (cns === D.CNS.CTRLR_CSI || cns === D.CNS.NS_CSI) {
      // I/O Command Set specific structures: for the NVM command set only (CSI, CDW11 bits 31:24)
      if ((cdw11 >>> 24) !== D.CSI_NVM) { this.eLoc = LOC_CSI; cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; }
      else if (cns === D.CNS.CTRLR_CSI) data = Id.identifyControllerNvm();
      else if (nsid === 0 || (nsid > D.MAX_NS && nsid !== 0xffffffff)) cmd.status = D.SC.INVALID_NS | D.SC.DNR;
      else data = Id.identifyNamespaceNvm();
    } else { this.eLoc = LOC_CDW10; cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; }
    if (data) cmd.status = this.toHost(prp1, prp2, data);
    return true;
  }

  private createCq(cmd: AdminCmd): boolean {
    const { prp1, cdw10, cdw11 } = cmd;
    const qid = cdw10 & 0xffff, qsize = (cdw10 >>> 16) + 1, pc = cdw11 & 1, ien = (cdw11 & 2) !== 0, iv = cdw11 >>> 16;
    if (qid === 0 || qid > D.MAX_IO_QUEUES || this.cqs[qid]) cmd.status = D.SC.INVALID_QID | D.SC.DNR;
    else if (qsize < 2 || qsize > D.MQES + 1) cmd.status = D.SC.INVALID_QSIZE | D.SC.DNR;
    else if (!pc) cmd.status = D.SC.INVALID_FIELD | D.SC.DNR;
    else if (ien && iv >= D.NUM_MSIX) cmd.status = D.SC.INVALID_IRQ_VECTOR | D.SC.DNR;
    else if (prp1 % D.PAGE !== 0) cmd.status = D.SC.PRP_OFFSET_INVALID | D.SC.DNR;
    else {
      const cq = new Cq(qid, prp1, qsize, ien, iv);
      const r = this.mem.regionOfRange(prp1, qsize * D.CQE);
      if (r < 0) cmd.status = D.SC.DATA_XFER_ERROR | D.SC.DNR;
      else {
        const o = prp1 - this.mem.gpa[r];
        cq.u8 = this.mem.u8[r].subarray(o, o + qsize * D.CQE);
        this.cqs[qid] = cq;
        // a fresh queue starts at 0 (the doorbell/shadow value may be stale from a previous one)
        this.db[2 * qid + 1] = 0;
      }
    }
    return true;
  }

  private createSq(cmd: AdminCmd): boolean {
    const { prp1, cdw10, cdw11 } = cmd;
    const qid = cdw10 & 0xffff, qsize = (cdw10 >>> 16) + 1, pc = cdw11 & 1, cqid = cdw11 >>> 16;
    const cq = cqid > 0 && cqid <= D.MAX_IO_QUEUES ? this.cqs[cqid] : null;
    if (!cq) cmd.status = D.SC.CQ_INVALID | D.SC.DNR;
    else if (qid === 0 || qid > D.MAX_IO_QUEUES || this.sqs[qid]) cmd.status = D.SC.INVALID_QID | D.SC.DNR;
    else if (qsize < 2 || qsize > D.MQES + 1) cmd.status = D.SC.INVALID_QSIZE | D.SC.DNR;
    else if (!pc) cmd.status = D.SC.INVALID_FIELD | D.SC.DNR;
    else if (prp1 % D.PAGE !== 0) cmd.status = D.SC.PRP_OFFSET_INVALID | D.SC.DNR;
    else {
      const r = this.mem.regionOfRange(prp1, qsize * D.SQE);
      if (r < 0) cmd.status = D.SC.DATA_XFER_ERROR | D.SC.DNR;
      else {
        const sq = this.newSq(qid, prp1, qsize, cq);
        const o = prp1 - this.mem.gpa[r];
        sq.u8 = this.mem.u8[r].subarray(o, o + qsize * D.SQE);
        this.db[2 * qid] = 0;
        this.sqs[qid] = sq;
        cq.sqs++;
      }
    }
    return true;
  }

  private deleteSq(cmd: AdminCmd): boolean {
    const { cid, cdw10 } = cmd;
    const qid = cdw10 & 0xffff;
    const q = qid > 0 && qid <= D.MAX_IO_QUEUES ? this.sqs[qid] : null;
    if (!q || q.deleting) { cmd.status = D.SC.INVALID_QID | D.SC.DNR; return true; }
    q.deleting = true;
    q.deleteCid = cid;
    if (q.inflight === 0) this.finishSqDelete(q);
    return false; // completed when its commands are done
  }

  private deleteCq(cmd: AdminCmd): boolean {
    const { cdw10 } = cmd;
    const qid = cdw10 & 0xffff;
    const q = qid > 0 && qid <= D.MAX_IO_QUEUES ? this.cqs[qid] : null;
    if (!q) cmd.status = D.SC.INVALID_QID | D.SC.DNR;
    else if (q.sqs > 0) cmd.status = D.SC.INVALID_QUEUE_DELETION | D.SC.DNR;
    else this.cqs[qid] = null;
    return true;
  }

  private getLogPage(cmd: AdminCmd): boolean {
    const { prp1, prp2, cdw10, cdw11, cdw12, cdw13 } = cmd;
    const lid = cdw10 & 0xff;
    const numd = ((cdw10 >>> 16) | ((cdw11 & 0xffff) << 16)) + 1;
    const offset = cdw12 + cdw13 * TWO32;
    let page: Uint8Array | null = null;
    if (lid === D.LOG.ERROR) page = this.errorLogPage();
    else if (lid === D.LOG.SMART) {
      page = Id.smartLog({ dataUnitsRead: Id.dataUnits(this.cnt[C_READ_BYTES]), dataUnitsWritten: Id.dataUnits(this.cnt[C_WRITE_BYTES]),
        readCmds: this.cnt[C_READS], writeCmds: this.cnt[C_WRITES], powerOnHours: (performance.now() - this.started) / 3.6e6,
        errorLogEntries: this.cnt[C_ERRORS] });
    } else if (lid === D.LOG.FW_SLOT) page = Id.firmwareSlotLog(this.spec.identity.firmware);
    else if (lid === D.LOG.CHANGED_NS) page = this.changedNs.page();
    if (!page) { cmd.status = D.SC.INVALID_LOG_PAGE | D.SC.DNR; return true; }
    if (offset % 4 !== 0 || offset >= page.length) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
    const len = numd * 4;
    if (len > D.MAX_XFER) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
    const out = new Uint8Array(len);
    out.set(page.subarray(offset, Math.min(page.length, offset + len)));
    cmd.status = this.toHost(prp1, prp2, out);
    if (cmd.status === 0) {
      // the Changed Namespace List is cleared by every read (as SPDK does); the event of a
      // log page is cleared, and its type unmasked, unless the host asked to retain it
      if (lid === D.LOG.CHANGED_NS) this.changedNs.clear();
      if (!(cdw10 & D.LOG_RAE)) this.aenMasked.delete(lid);
    }
    return true;
  }

  private getSetFeatures(cmd: AdminCmd): boolean {
    const { opc, cdw10, cdw11 } = cmd;
    const fid = cdw10 & 0xff, set = opc === D.ADM.SET_FEATURES;
    const sel = (cdw10 >>> 8) & 7;
    if (set && (cdw10 & 0x80000000)) { cmd.status = D.SC.FEATURE_NOT_SAVEABLE | D.SC.DNR; return true; }
    if (!this.features.has(fid) && fid !== D.FEAT.IRQ_CONFIG) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
    if (fid === D.FEAT.VWC && !this.spec.identity.vwc) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
    if (!set && sel === 3) { cmd.dw0 = fid === D.FEAT.NUM_QUEUES ? 0 : 0x4; return true; } // supported capabilities: changeable
    if (fid === D.FEAT.NUM_QUEUES) {
      if (set) {
        if ((cdw11 & 0xffff) === 0xffff || (cdw11 >>> 16) === 0xffff) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
      }
      cmd.dw0 = this.features.get(fid)!;
      return true;
    }
    if (fid === D.FEAT.IRQ_CONFIG) {
      const iv = cdw11 & 0xffff;
      if (iv >= D.NUM_MSIX) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
      cmd.dw0 = set ? cdw11 : iv;
      return true;
    }
    if (set) this.features.set(fid, fid === D.FEAT.VWC ? cdw11 & 1 : cdw11);
    cmd.dw0 = this.features.get(fid)!;
    return true;
  }

  private asyncEventRequest(cmd: AdminCmd): boolean {
    const { cid } = cmd;
    if (this.aers.length >= 4) { cmd.status = D.SC.AER_LIMIT | D.SC.DNR; return true; }
    this.aers.push(cid);
    this.deliverEvents();
    return false;
  }

  private abortCmd(cmd: AdminCmd): boolean {
    const { sq, cid, cdw10 } = cmd;
    this.cnt[C_ABORT_CMDS]++;
    // Aborts complete at once, so only completions the full admin CQ holds back are outstanding
    if (this.abortsQueued > D.ACL) { cmd.status = D.SC.ABORT_LIMIT; return true; }
    cmd.dw0 = this.abort(cdw10 & 0xffff, cdw10 >>> 16) ? 0 : 1;
    this.post(sq.cq, sq, cid, 0, cmd.dw0, K_ABORT);
    return false;
  }

  private dbbufConfig(cmd: AdminCmd): boolean {
    const { prp1, prp2 } = cmd;
    if (!this.spec.shadowDoorbells) { cmd.status = D.SC.INVALID_OPCODE | D.SC.DNR; return true; }
    if (prp1 % D.PAGE !== 0 || prp2 % D.PAGE !== 0 || prp1 === 0 || prp2 === 0) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
    if (this.mem.regionOfRange(prp1, D.PAGE) < 0 || this.mem.regionOfRange(prp2, D.PAGE) < 0) { cmd.status = D.SC.INVALID_FIELD | D.SC.DNR; return true; }
    this.shadowGpa = prp1; this.eventGpa = prp2;
    this.mapQueues();
    // queues that exist already continue from their last doorbell values
    for (const q of this.sqs) if (q && q.id > 0) { this.shadow![2 * q.id] = q.tail; this.eventIdx![2 * q.id] = q.tail; }
    for (const q of this.cqs) if (q && q.id > 0) { this.shadow![2 * q.id + 1] = this.db[2 * q.id + 1]; }
    this.cnt[C_SHADOW] = 1;
    return true;
  }


  /**
   * Abort of command `cid` on SQ `sqid`; true if it was aborted. Possible for a command still
   * in its SQ (fetched later, it completes with Command Abort Requested) and for an outstanding
   * Asynchronous Event Request. A command already fetched runs to completion on its bdev (no
   * bdev I/O can be recalled): dw0 bit 0 = 1, not aborted - as for a CID that is not found.
   */
  protected abort(sqid: number, cid: number): boolean {
    const t = sqid <= D.MAX_IO_QUEUES ? this.sqs[sqid] : null;
    if (!t || t.deleting) return false;
    if (sqid === 0) {
      const i = this.aers.indexOf(cid);
      if (i >= 0) {
        this.aers.splice(i, 1);
        this.eLoc = LOC_NONE;
        this.post(t.cq, t, cid, D.SC.ABORT_REQ, 0);
        this.cnt[C_ABORTED]++;
        return true;
      }
    }
    // submitted (up to the newest tail doorbell value) but not fetched yet
    let tail = this.readTail(t);
    if (tail >= t.size) tail = t.tail;
    for (let p = t.head; p !== tail; p = p + 1 === t.size ? 0 : p + 1) {
      const o = p * D.SQE;
      if (t.abortMark[p] === 0 && (t.u8[o + 2] | (t.u8[o + 3] << 8)) === cid) {
        t.abortMark[p] = 1; t.marks++;
        this.cnt[C_ABORTED]++;
        return true;
      }
    }
    return false;
  }

  /** The Error Information log page: the newest entry first, unused entries zero. */
  protected errorLogPage(): Uint8Array {
    const page = new Uint8Array(ERROR_LOG_BYTES), count = this.cnt[C_ERRORS];
    for (let k = 0; k < D.LOG_ERROR_ENTRIES && k < count; k++) {
      const o = ((count - 1 - k) % D.LOG_ERROR_ENTRIES) * D.ERROR_ENTRY;
      page.set(this.errLog.subarray(o, o + D.ERROR_ENTRY), k * D.ERROR_ENTRY);
    }
    return page;
  }
}

const ADMIN_HANDLERS = NvmeAdminCommands.handlerTable();
