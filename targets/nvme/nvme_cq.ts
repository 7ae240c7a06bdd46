// Completion queues of the emulated NVMe controller: posting entries with phase bits,
// holding them back while a CQ is full, the Error Information log entry of every error
// status, asynchronous events, and the completion of a deferred SQ deletion.
import * as D from './nvme_defs.js';
import { Cq, Sq, OVF, K_PLAIN, K_ABORT, w32, w64 } from './nvme_queues.js';
import { NvmeCtrlrState, C_ERRORS, LOC_NONE } from './nvme_ctrlr_state.js';

export abstract class NvmeCompletions extends NvmeCtrlrState {
  /**
   * Posts a completion; status = SCT<<8|SC (| DNR). An error status makes an Error
   * Information log entry from the context in eNsid/eLba/eLoc.
   */
  protected post(cq: Cq, sq: Sq, cid: number, status: number, dw0: number, kind = K_PLAIN): void {
    if (status & D.SC_MASK) this.logError(sq.id, cid, status, cq.phase);
    if (cq.overflow.length || this.cqFull(cq)) {
      cq.overflow.push(sq.id, cid, status, dw0, sq.head, kind);
      if (kind === K_ABORT) this.abortsQueued++;
      return;
    }
    this.write(cq, sq.id, sq.head, cid, status, dw0);
  }

  /** Appends an Error Information log entry (the ring keeps the newest LOG_ERROR_ENTRIES). */
  protected logError(sqid: number, cid: number, status: number, phase: number): void {
    const count = ++this.cnt[C_ERRORS];
    const b = this.errLog, o = ((count - 1) % D.LOG_ERROR_ENTRIES) * D.ERROR_ENTRY;
    b.fill(0, o, o + D.ERROR_ENTRY);
    w64(b, o, count);                              // Error Count (starts at 1)
    b[o + 8] = sqid; b[o + 9] = sqid >>> 8;
    b[o + 10] = cid; b[o + 11] = cid >>> 8;
    const sf = status ? D.statusField(status, phase) : 0;
    b[o + 12] = sf; b[o + 13] = sf >>> 8;          // Status Field (and the phase tag it was posted with)
    b[o + 14] = this.eLoc; b[o + 15] = this.eLoc >>> 8;
    w64(b, o + 16, this.eLba);
    w32(b, o + 24, this.eNsid);
  }

  protected cqFull(cq: Cq): boolean {
    const next = cq.tail + 1 === cq.size ? 0 : cq.tail + 1;
    if (next !== cq.head) return false;
    const h = this.readHead(cq);
    if (h < cq.size) cq.head = h;
    return next === cq.head;
  }

  protected write(cq: Cq, sqid: number, sqhd: number, cid: number, status: number, dw0: number): void {
    const b = cq.u8, o = cq.tail * D.CQE;
    w32(b, o, dw0);
    w32(b, o + 4, 0);
    w32(b, o + 8, (sqhd & 0xffff) | (sqid << 16));
    // DW3 last: the phase bit makes the entry visible
    w32(b, o + 12, (cid & 0xffff) | (D.statusField(status, cq.phase) << 16));
    cq.tail++;
    if (cq.tail === cq.size) { cq.tail = 0; cq.phase ^= 1; }
    if (cq.ien) cq.irqPending = true;
  }

  protected retryOverflow(cq: Cq): number {
    let n = 0;
    const o = cq.overflow;
    while (n * OVF < o.length && !this.cqFull(cq)) {
      const i = n * OVF;
      this.write(cq, o[i], o[i + 4], o[i + 1], o[i + 2], o[i + 3]);
      if (o[i + 5] === K_ABORT) this.abortsQueued--;
      n++;
    }
    if (n) o.splice(0, n * OVF);
    return n;
  }

  protected finishSqDelete(sq: Sq): void {
    if (this.sqs[sq.id] !== sq) return;
    this.sqs[sq.id] = null;
    sq.cq.sqs--;
    const asq = this.sqs[0]!;
    if (sq.deleteCid >= 0) this.post(asq.cq, asq, sq.deleteCid, 0, 0);
  }

  /**
   * Queues an asynchronous event (reported by the next poll round with an outstanding AER),
   * unless an event for the same log page is still uncleared: then it is masked (false).
   */
  protected asyncEvent(type: number, info: number, log: number): boolean {
    if (this.aenMasked.has(log)) return false;
    this.aenMasked.add(log);
    this.events.push(type | (info << 8) | (log << 16));
    return true;
  }

  protected deliverEvents(): number {
    const asq = this.sqs[0]!;
    let n = 0;
    while (this.aers.length && this.events.length) {
      this.eLoc = LOC_NONE;
      this.post(asq.cq, asq, this.aers.shift()!, 0, this.events.shift()!);
      n++;
    }
    return n;
  }
}
