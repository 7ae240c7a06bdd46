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

export abstract class NvmeAdminCommands extends NvmeIoCommands {
  /** Writes `data` to the command's PRPs; returns a status. */
  protected toHost(prp1: number, prp2: number, data: Uint8Array, len = data.length): number {
    const n = walkPrp(this.mem, prp1, prp2, len, this.admSegs, 0, SEGS_PER_CMD);
    if (n < 0) { this.eLoc = LOC_DPTR; return -n | D.SC.DNR; }
    copySegs(this.mem, this.admSegs, 0, n, data.subarray(0, len), 'out');
    return 0;
  }

  protected admin(sq: Sq, off: number): void {
    const b = sq.u8;
    const opc = b[off], flags = b[off + 1], cid = b[off + 2] | (b[off + 3] << 8);
    const nsid = u32(b, off + 4);
    const prp1 = u32(b, off + 24) + u32(b, off + 28) * TWO32;
    const prp2 = u32(b, off + 32) + u32(b, off + 36) * TWO32;
    const cdw10 = u32(b, off + 40), cdw11 = u32(b, off + 44), cdw12 = u32(b, off + 48), cdw13 = u32(b, off + 52);
    this.cnt[C_ADMIN_CMDS]++;
    let status = 0, dw0 = 0;
    this.eNsid = nsid; this.eLba = 0; this.eLoc = LOC_NONE;
    const done = () => this.post(sq.cq, sq, cid, status, dw0);
    // fused operations, and SGLs (for admin commands only over fabrics)
    if (flags & 0xc3) { this.eLoc = flags & 3 ? LOC_FUSE : LOC_PSDT; status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
    switch (opc) {
      case D.ADM.IDENTIFY: {
        const cns = cdw10 & 0xff;
        let data: Uint8Array | null = null;
        const ns = this.ns.get(nsid);
        const nsId = (n: Ns): Id.NsIdentity => ({ nsid: n.nsid, blockSize: n.bs, numBlocks: n.nblocks, uuid: n.uuid });
        if (cns === 0x01) data = Id.identifyController(this.spec.identity);
        else if (cns === 0x00) {
          if (nsid === 0 || (nsid > D.MAX_NS && nsid !== 0xffffffff)) status = D.SC.INVALID_NS | D.SC.DNR;
          else data = Id.identifyNamespace(ns ? nsId(ns) : undefined);
        } else if (cns === 0x02) {
          if (nsid >= 0xfffffffe) status = D.SC.INVALID_NS | D.SC.DNR;
          else data = Id.activeNsList([...this.ns.keys()], nsid);
        } else if (cns === 0x03) {
          if (!ns) status = D.SC.INVALID_NS | D.SC.DNR; else data = Id.nsDescriptors(nsId(ns));
        } else if (cns === D.CNS.CTRLR_CSI || cns === D.CNS.NS_CSI) {
          // I/O Command Set specific structures: for the NVM command set only (CSI, CDW11 bits 31:24)
          if ((cdw11 >>> 24) !== D.CSI_NVM) { this.eLoc = LOC_CSI; status = D.SC.INVALID_FIELD | D.SC.DNR; }
          else if (cns === D.CNS.CTRLR_CSI) data = Id.identifyControllerNvm();
          else if (nsid === 0 || (nsid > D.MAX_NS && nsid !== 0xffffffff)) status = D.SC.INVALID_NS | D.SC.DNR;
          else data = Id.identifyNamespaceNvm();
        } else { this.eLoc = LOC_CDW10; status = D.SC.INVALID_FIELD | D.SC.DNR; }
        if (data) status = this.toHost(prp1, prp2, data);
        done(); return;
      }
      case D.ADM.CREATE_CQ: {
        const qid = cdw10 & 0xffff, qsize = (cdw10 >>> 16) + 1, pc = cdw11 & 1, ien = (cdw11 & 2) !== 0, iv = cdw11 >>> 16;
        if (qid === 0 || qid > D.MAX_IO_QUEUES || this.cqs[qid]) status = D.SC.INVALID_QID | D.SC.DNR;
        else if (qsize < 2 || qsize > D.MQES + 1) status = D.SC.INVALID_QSIZE | D.SC.DNR;
        else if (!pc) status = D.SC.INVALID_FIELD | D.SC.DNR;
        else if (ien && iv >= D.NUM_MSIX) status = D.SC.INVALID_IRQ_VECTOR | D.SC.DNR;
        else if (prp1 % D.PAGE !== 0) status = D.SC.PRP_OFFSET_INVALID | D.SC.DNR;
        else {
          const cq = new Cq(qid, prp1, qsize, ien, iv);
          const r = this.mem.regionOfRange(prp1, qsize * D.CQE);
          if (r < 0) status = D.SC.DATA_XFER_ERROR | D.SC.DNR;
          else {
            const o = prp1 - this.mem.gpa[r];
            cq.u8 = this.mem.u8[r].subarray(o, o + qsize * D.CQE);
            this.cqs[qid] = cq;
            // a fresh queue starts at 0 (the doorbell/shadow value may be stale from a previous one)
            this.db[2 * qid + 1] = 0;
          }
        }
        done(); return;
      }
      case D.ADM.CREATE_SQ: {
        const qid = cdw10 & 0xffff, qsize = (cdw10 >>> 16) + 1, pc = cdw11 & 1, cqid = cdw11 >>> 16;
        const cq = cqid > 0 && cqid <= D.MAX_IO_QUEUES ? this.cqs[cqid] : null;
        if (!cq) status = D.SC.CQ_INVALID | D.SC.DNR;
        else if (qid === 0 || qid > D.MAX_IO_QUEUES || this.sqs[qid]) status = D.SC.INVALID_QID | D.SC.DNR;
        else if (qsize < 2 || qsize > D.MQES + 1) status = D.SC.INVALID_QSIZE | D.SC.DNR;
        else if (!pc) status = D.SC.INVALID_FIELD | D.SC.DNR;
        else if (prp1 % D.PAGE !== 0) status = D.SC.PRP_OFFSET_INVALID | D.SC.DNR;
        else {
          const r = this.mem.regionOfRange(prp1, qsize * D.SQE);
          if (r < 0) status = D.SC.DATA_XFER_ERROR | D.SC.DNR;
          else {
            const sq = this.newSq(qid, prp1, qsize, cq);
            const o = prp1 - this.mem.gpa[r];
            sq.u8 = this.mem.u8[r].subarray(o, o + qsize * D.SQE);
            this.db[2 * qid] = 0;
            this.sqs[qid] = sq;
            cq.sqs++;
          }
        }
        done(); return;
      }
      case D.ADM.DELETE_SQ: {
        const qid = cdw10 & 0xffff;
        const q = qid > 0 && qid <= D.MAX_IO_QUEUES ? this.sqs[qid] : null;
        if (!q || q.deleting) { status = D.SC.INVALID_QID | D.SC.DNR; done(); return; }
        q.deleting = true;
        q.deleteCid = cid;
        if (q.inflight === 0) this.finishSqDelete(q);
        return; // completed when its commands are done
      }
      case D.ADM.DELETE_CQ: {
        const qid = cdw10 & 0xffff;
        const q = qid > 0 && qid <= D.MAX_IO_QUEUES ? this.cqs[qid] : null;
        if (!q) status = D.SC.INVALID_QID | D.SC.DNR;
        else if (q.sqs > 0) status = D.SC.INVALID_QUEUE_DELETION | D.SC.DNR;
        else this.cqs[qid] = null;
        done(); return;
      }
      case D.ADM.GET_LOG_PAGE: {
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
        if (!page) { status = D.SC.INVALID_LOG_PAGE | D.SC.DNR; done(); return; }
        if (offset % 4 !== 0 || offset >= page.length) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        const len = numd * 4;
        if (len > D.MAX_XFER) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        const out = new Uint8Array(len);
        out.set(page.subarray(offset, Math.min(page.length, offset + len)));
        status = this.toHost(prp1, prp2, out);
        if (status === 0) {
          // the Changed Namespace List is cleared by every read (as SPDK does); the event of a
          // log page is cleared, and its type unmasked, unless the host asked to retain it
          if (lid === D.LOG.CHANGED_NS) this.changedNs.clear();
          if (!(cdw10 & D.LOG_RAE)) this.aenMasked.delete(lid);
        }
        done(); return;
      }
      case D.ADM.GET_FEATURES: case D.ADM.SET_FEATURES: {
        const fid = cdw10 & 0xff, set = opc === D.ADM.SET_FEATURES;
        const sel = (cdw10 >>> 8) & 7;
        if (set && (cdw10 & 0x80000000)) { status = D.SC.FEATURE_NOT_SAVEABLE | D.SC.DNR; done(); return; }
        if (!this.features.has(fid) && fid !== D.FEAT.IRQ_CONFIG) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        if (fid === D.FEAT.VWC && !this.spec.identity.vwc) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        if (!set && sel === 3) { dw0 = fid === D.FEAT.NUM_QUEUES ? 0 : 0x4; done(); return; } // supported capabilities: changeable
        if (fid === D.FEAT.NUM_QUEUES) {
          if (set) {
            if ((cdw11 & 0xffff) === 0xffff || (cdw11 >>> 16) === 0xffff) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
          }
          dw0 = this.features.get(fid)!;
          done(); return;
        }
        if (fid === D.FEAT.IRQ_CONFIG) {
          const iv = cdw11 & 0xffff;
          if (iv >= D.NUM_MSIX) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
          dw0 = set ? cdw11 : iv;
          done(); return;
        }
        if (set) this.features.set(fid, fid === D.FEAT.VWC ? cdw11 & 1 : cdw11);
        dw0 = this.features.get(fid)!;
        done(); return;
      }
      case D.ADM.ASYNC_EVENT:
        if (this.aers.length >= 4) { status = D.SC.AER_LIMIT | D.SC.DNR; done(); return; }
        this.aers.push(cid);
        this.deliverEvents();
        return;
      case D.ADM.ABORT: {
        this.cnt[C_ABORT_CMDS]++;
        // Aborts complete at once, so only completions the full admin CQ holds back are outstanding
        if (this.abortsQueued > D.ACL) { status = D.SC.ABORT_LIMIT; done(); return; }
        dw0 = this.abort(cdw10 & 0xffff, cdw10 >>> 16) ? 0 : 1;
        this.post(sq.cq, sq, cid, 0, dw0, K_ABORT);
        return;
      }
      case D.ADM.KEEP_ALIVE:
        done(); return;
      case D.ADM.DBBUF_CONFIG: {
        if (!this.spec.shadowDoorbells) { status = D.SC.INVALID_OPCODE | D.SC.DNR; done(); return; }
        if (prp1 % D.PAGE !== 0 || prp2 % D.PAGE !== 0 || prp1 === 0 || prp2 === 0) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        if (this.mem.regionOfRange(prp1, D.PAGE) < 0 || this.mem.regionOfRange(prp2, D.PAGE) < 0) { status = D.SC.INVALID_FIELD | D.SC.DNR; done(); return; }
        this.shadowGpa = prp1; this.eventGpa = prp2;
        this.mapQueues();
        // queues that exist already continue from their last doorbell values
        for (const q of this.sqs) if (q && q.id > 0) { this.shadow![2 * q.id] = q.tail; this.eventIdx![2 * q.id] = q.tail; }
        for (const q of this.cqs) if (q && q.id > 0) { this.shadow![2 * q.id + 1] = this.db[2 * q.id + 1]; }
        this.cnt[C_SHADOW] = 1;
        done(); return;
      }
      default:
        this.eLoc = LOC_OPC;
        status = D.SC.INVALID_OPCODE | D.SC.DNR;
        done();
    }
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
