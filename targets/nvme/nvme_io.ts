// NVMe I/O commands (Read, Write, Compare, Write Zeroes, Flush, Dataset Management) turned
// into bdev I/Os on the namespace's channel, and their completions. The hot path: every
// command uses its SQ slot's preallocated BdevIo and segment table.
import { TWO32 } from '../../src/memory/guest_memory.js';
import { BdevIo, SegmentTable } from '../../bdev/bdev_io.js';
import { IoStatus, IoType } from '../../bdev/types.js';
import * as D from './nvme_defs.js';
import { walkPrp, copySegs } from './prp.js';
import { walkSgl } from './sgl.js';
import { Sq, u32 } from './nvme_queues.js';
import { Ns, SEGS_PER_CMD, C_SGL_CMDS, C_SGL_LIST_CMDS, C_IO_CMDS, C_COMPARES, C_READS, C_READ_BYTES, C_WRITES, C_WRITE_BYTES,
  C_COMPARE_FAILS, LOC_NONE, LOC_FUSE, LOC_PSDT, LOC_NSID, LOC_OPC, LOC_CDW12, LOC_CDW10, LOC_DPTR, cmpOff } from './nvme_ctrlr_state.js';
import { NvmeCompletions } from './nvme_cq.js';

export abstract class NvmeIoCommands extends NvmeCompletions {

  protected allocSlot(sq: Sq, cid: number, nsid: number): number {
    const s = sq.free.pop()!;
    sq.cid[s] = cid; sq.nsid[s] = nsid;
    sq.inflight++; this.inflight++;
    return s;
  }

  protected releaseSlot(sq: Sq, s: number): void {
    sq.free.push(s);
    sq.inflight--; this.inflight--;
    if (sq.deleting && sq.inflight === 0) this.finishSqDelete(sq);
  }

  /** Completes a command that failed before reaching a bdev; `loc`: Parameter Error Location. */
  protected fail(sq: Sq, cid: number, status: number, loc: number): void {
    this.eLoc = loc;
    this.post(sq.cq, sq, cid, status, 0);
  }

  /**
   * Maps the data pointer of the I/O command at sq.u8[off] (PRPs or an SGL, by PSDT) for
   * `len` bytes into segs[base ..]; `read`: data flows to the host (Bit Buckets allowed).
   */
  protected mapData(b: Uint8Array, off: number, sgl: boolean, len: number, segs: SegmentTable, base: number, read: boolean): number {
    if (sgl) {
      this.cnt[C_SGL_CMDS]++;
      const t = b[off + 39] >>> 4;
      if (t === D.SGL.SEGMENT || t === D.SGL.LAST_SEGMENT) this.cnt[C_SGL_LIST_CMDS]++;
      return walkSgl(this.mem, b, off + 24, len, segs, base, SEGS_PER_CMD, read ? this.bitBucket : null);
    }
    const prp1 = u32(b, off + 24) + u32(b, off + 28) * TWO32;
    const prp2 = u32(b, off + 32) + u32(b, off + 36) * TWO32;
    return walkPrp(this.mem, prp1, prp2, len, segs, base, SEGS_PER_CMD);
  }

  protected io(sq: Sq, off: number): void {
    const b = sq.u8;
    const opc = b[off], flags = b[off + 1], cid = b[off + 2] | (b[off + 3] << 8);
    const nsid = u32(b, off + 4);
    const cdw10 = u32(b, off + 40), cdw11 = u32(b, off + 44), cdw12 = u32(b, off + 48);
    this.cnt[C_IO_CMDS]++;
    this.eNsid = nsid; this.eLba = 0;
    if (flags & 0x03) { this.fail(sq, cid, D.SC.INVALID_FIELD | D.SC.DNR, LOC_FUSE); return; } // fused
    const psdt = (flags >> 6) & 3;
    // SGLs for data (MPTR, if any, a plain address: namespaces have no metadata); no metadata SGLs
    if (psdt > D.PSDT_SGL) { this.fail(sq, cid, D.SC.INVALID_FIELD | D.SC.DNR, LOC_PSDT); return; }
    const sgl = psdt === D.PSDT_SGL;
    const ns = this.ns.get(nsid);
    if (opc === D.IO.FLUSH && (nsid === 0xffffffff || ns)) {
      const target = ns ?? this.ns.values().next().value;
      if (!target || !target.flush) { this.post(sq.cq, sq, cid, 0, 0); return; }
      const s = this.allocSlot(sq, cid, target.nsid);
      const io = sq.ios[s];
      io.type = IoType.FLUSH; io.offsetBlocks = 0; io.numBlocks = target.nblocks; io.nseg = 0; io.bytes = 0;
      target.ch.submit(io);
      return;
    }
    if (!ns) { this.fail(sq, cid, D.SC.INVALID_NS | D.SC.DNR, LOC_NSID); return; }
    // a switch, not a table: three cases on a small integer per I/O stay a jump in one monomorphic function
    switch (opc) {
      case D.IO.READ: case D.IO.WRITE: case D.IO.COMPARE: {
        // Compare turned off (nvmf_create_transport disable_compare): ONCS says so, the opcode is refused
        if (opc === D.IO.COMPARE && !this.spec.identity.compare) { this.fail(sq, cid, D.SC.INVALID_OPCODE | D.SC.DNR, LOC_OPC); return; }
        const slba = cdw10 + cdw11 * TWO32, nlb = (cdw12 & 0xffff) + 1;
        const len = nlb * ns.bs;
        this.eLba = slba;
        if (len > D.MAX_XFER) { this.fail(sq, cid, D.SC.INVALID_FIELD | D.SC.DNR, LOC_CDW12); return; }
        if (slba + nlb > ns.nblocks) { this.fail(sq, cid, D.SC.LBA_OUT_OF_RANGE | D.SC.DNR, LOC_CDW10); return; }
        const s = this.allocSlot(sq, cid, nsid);
        const io = sq.ios[s];
        const n = this.mapData(b, off, sgl, len, io.segs, io.segBase, opc === D.IO.READ);
        if (n < 0) { this.releaseSlot(sq, s); this.fail(sq, cid, -n | D.SC.DNR, LOC_DPTR); return; }
        io.offsetBlocks = slba; io.numBlocks = nlb; io.bytes = len;
        if (opc === D.IO.COMPARE) {
          // read the range into a bounce buffer; onBdevIoDone compares it with the host's data
          const k = this.cmpFree.pop();
          if (k === undefined) { this.releaseSlot(sq, s); this.fail(sq, cid, D.SC.INTERNAL, LOC_NONE); return; } // poll() waits for one
          this.cnt[C_COMPARES]++;
          sq.cmpBuf[s] = k; sq.nseg[s] = n;
          this.cmpSegs.len[k] = len;
          io.segs = this.cmpSegs; io.segBase = k; io.nseg = 1;
          io.type = IoType.READ;
        } else {
          io.nseg = n;
          io.type = opc === D.IO.READ ? IoType.READ : IoType.WRITE;
        }
        ns.ch.submit(io);
        return;
      }
      case D.IO.WRITE_ZEROES: {
        const slba = cdw10 + cdw11 * TWO32, nlb = (cdw12 & 0xffff) + 1;
        this.eLba = slba;
        if (slba + nlb > ns.nblocks) { this.fail(sq, cid, D.SC.LBA_OUT_OF_RANGE | D.SC.DNR, LOC_CDW10); return; }
        const s = this.allocSlot(sq, cid, nsid);
        const io = sq.ios[s];
        io.type = IoType.WRITE_ZEROES; io.offsetBlocks = slba; io.numBlocks = nlb; io.nseg = 0; io.bytes = 0;
        io.mayUnmap = (cdw12 & (1 << 25)) !== 0;
        ns.ch.submit(io);
        return;
      }
      case D.IO.DSM: {
        const nr = (cdw10 & 0xff) + 1, ad = (cdw11 & 4) !== 0;
        if (!ad || !ns.unmap) { this.post(sq.cq, sq, cid, 0, 0); return; }  // hints only: nothing to do
        const s = this.allocSlot(sq, cid, nsid);
        const io = sq.ios[s];
        const n = this.mapData(b, off, sgl, nr * 16, io.segs, io.segBase, false);
        if (n < 0) { this.releaseSlot(sq, s); this.fail(sq, cid, -n | D.SC.DNR, LOC_DPTR); return; }
        // copy the range list out of guest memory (the guest may reuse it once we complete)
        const list = this.dsmList(sq, s);
        copySegs(this.mem, io.segs, io.segBase, n, list.subarray(0, nr * 16), 'in');
        sq.dsmLeft[s] = nr; sq.status[s] = 0;
        this.nextDsm(sq, s, ns);
        return;
      }
      default:
        this.fail(sq, cid, D.SC.INVALID_OPCODE | D.SC.DNR, LOC_OPC);
    }
  }

  protected readonly dsmLists = new Map<number, Uint8Array>();
  protected dsmList(sq: Sq, s: number): Uint8Array {
    const k = (sq.id << 16) | s;
    let l = this.dsmLists.get(k);
    if (!l) { l = new Uint8Array(256 * 16); this.dsmLists.set(k, l); }
    return l;
  }

  /** Submits the next range of a DSM deallocate, or completes it. */
  protected nextDsm(sq: Sq, s: number, ns: Ns): void {
    const list = this.dsmList(sq, s);
    const io = sq.ios[s];
    while (sq.dsmLeft[s] > 0) {
      const nrTotal = sq.dsmLeft[s];
      sq.dsmLeft[s]--;
      // ranges are consumed from the end (order does not matter for deallocate)
      const o = (nrTotal - 1) * 16;
      const len = u32(list, o + 4), slba = u32(list, o + 8) + u32(list, o + 12) * TWO32;
      if (len === 0) continue;
      if (slba + len > ns.nblocks) {
        if (!sq.status[s]) { sq.status[s] = D.SC.LBA_OUT_OF_RANGE | D.SC.DNR; sq.dsmBuf[2 * s] = slba; }
        continue;
      }
      io.type = IoType.UNMAP; io.offsetBlocks = slba; io.numBlocks = len; io.nseg = 0; io.bytes = 0;
      io.status = -1;
      ns.ch.submit(io);
      return;
    }
    const cid = sq.cid[s], st = sq.status[s];
    this.eNsid = sq.nsid[s]; this.eLba = st ? sq.dsmBuf[2 * s] : 0; this.eLoc = LOC_NONE;
    if (this.sqs[sq.id] === sq) this.post(sq.cq, sq, cid, st, 0);
    this.releaseSlot(sq, s);
  }

  /** Compares a Compare's bounce buffer with the host's data: -1 if equal, else the offset of the first difference. */
  protected compareData(sq: Sq, s: number, k: number, len: number): number {
    const mem = this.mem, segs = sq.segs, base = s * SEGS_PER_CMD, end = base + sq.nseg[s];
    const p = this.privBuf, start = cmpOff(k);
    let pos = start;
    for (let i = base; i < end && pos - start < len; i++) {
      const g = mem.u8[segs.region[i]], o = segs.off[i], l = segs.len[i];
      if (p.compare(g, o, o + l, pos, pos + l) !== 0) {
        for (let j = 0; j < l; j++) if (g[o + j] !== p[pos + j]) return pos - start + j;
        return pos - start; // the host changed its buffer meanwhile
      }
      pos += l;
    }
    return -1;
  }

  onBdevIoDone(io: BdevIo): void {
    const sq = this.sqs[io.tag >>> 16];
    if (!sq) return;
    const s = io.tag & 0xffff;
    let st = 0;
    switch (io.status) {
      case IoStatus.SUCCESS: st = 0; break;
      case IoStatus.OUT_OF_RANGE: st = D.SC.LBA_OUT_OF_RANGE | D.SC.DNR; break;
      case IoStatus.UNSUPPORTED: st = io.type === IoType.UNMAP ? 0 : D.SC.INVALID_OPCODE | D.SC.DNR; break;
      case IoStatus.ABORTED: st = D.SC.ABORT_REQ; break;
      default: st = D.SC.INTERNAL; break;
    }
    if (io.type === IoType.UNMAP) {
      if (st && !sq.status[s]) { sq.status[s] = st; sq.dsmBuf[2 * s] = io.offsetBlocks; }
      const ns = this.ns.get(sq.nsid[s]);
      if (ns) { this.nextDsm(sq, s, ns); return; }
      st = sq.status[s];
    }
    this.eNsid = sq.nsid[s]; this.eLba = io.offsetBlocks; this.eLoc = LOC_NONE;
    const k = sq.cmpBuf[s];
    if (k >= 0) {
      // a Compare: back to the command's own segments, then compare
      sq.cmpBuf[s] = -1;
      io.segs = sq.segs; io.segBase = s * SEGS_PER_CMD;
      if (st === 0) {
        this.cnt[C_READS]++; this.cnt[C_READ_BYTES] += io.bytes;
        const at = this.compareData(sq, s, k, io.bytes);
        if (at >= 0) {
          st = D.SC.COMPARE_FAILURE | D.SC.DNR;
          this.cnt[C_COMPARE_FAILS]++;
          const ns = this.ns.get(sq.nsid[s]);
          if (ns) this.eLba = io.offsetBlocks + Math.floor(at / ns.bs); // the first LBA that miscompared
        }
      }
      this.cmpFree.push(k);
    } else if (st === 0) {
      if (io.type === IoType.READ) { this.cnt[C_READS]++; this.cnt[C_READ_BYTES] += io.bytes; }
      else if (io.type === IoType.WRITE) { this.cnt[C_WRITES]++; this.cnt[C_WRITE_BYTES] += io.bytes; }
    }
    const cid = sq.cid[s];
    // complete first: releasing the last slot of a deleting SQ finishes its deletion
    if (this.sqs[sq.id] === sq) this.post(sq.cq, sq, cid, st, 0);
    this.releaseSlot(sq, s);
  }

}
