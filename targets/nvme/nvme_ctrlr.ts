// The reactor side of an emulated NVMe controller: the admin queue and all I/O queues
// of one controller, polled on one reactor (so a CQ shared by several SQs never needs a
// cross-reactor message). Commands are read from SQs in guest memory, turned into bdev
// I/Os, and completed into CQs in guest memory with phase bits; MSI-X eventfds are
// signalled once per poll round per CQ that got entries. Nothing here may throw into
// the reactor: hostile values end as NVMe status codes or controller fatal status.
//
// Data pointers of I/O commands may be PRPs or SGLs (prp.ts, sgl.ts); admin commands take
// PRPs only (SGLs for admin commands are for fabrics). Every command that completes with
// an error status is recorded in the Error Information log (a ring shared with the
// control plane, so it outlives controller resets).
//
// The layers: nvme_queues.ts (queue structures), nvme_ctrlr_state.ts (state, memory),
// nvme_cq.ts (completions, events), nvme_io.ts (I/O commands), nvme_admin.ts (admin
// commands); this file is the poller that fetches commands and signals interrupts.
import { Poller } from '../../src/reactor/poller.js';
import { eventfdDrain, eventfdSignal } from '../../native/libc.js';
import * as D from './nvme_defs.js';
import { Sq, FENCE, OVF, u32 } from './nvme_queues.js';
import { NsNotice, C_BAD_DB, C_IRQS, LOC_NONE } from './nvme_ctrlr_state.js';
import { NvmeAdminCommands } from './nvme_admin.js';

export {
  NvmeNsSpec, NvmeCtrlrSpec, NsNotice, C_TRAPPED_DB, C_IO_CMDS, C_ADMIN_CMDS, C_IRQS, C_SHADOW, C_ERRORS, C_READ_BYTES,
  C_WRITE_BYTES, C_READS, C_WRITES, C_BAD_DB, C_SGL_CMDS, C_SGL_LIST_CMDS, C_COMPARES, C_COMPARE_FAILS, C_ABORT_CMDS,
  C_ABORTED, C_COUNT, ERROR_LOG_BYTES, SEGS_PER_CMD,
} from './nvme_ctrlr_state.js';

export class NvmeCtrlr extends NvmeAdminCommands implements Poller {

  /**
   * The bdev behind namespace `nsid` changed size (the channel sees the new size already):
   * the namespace goes into the Changed Namespace List log, and a Namespace Attribute Changed
   * notice is queued if the host enabled them (Asynchronous Event Configuration bit 8) and the
   * notice type is not masked by an earlier one the host has not cleared yet. poll() reports it.
   */
  nsResized(nsid: number): NsNotice {
    if (!this.ns.has(nsid)) return 'no-namespace';
    this.changedNs.add(nsid);
    if (!(this.features.get(D.FEAT.ASYNC_EVENT)! & D.AEC_NS_ATTR)) return 'disabled';
    return this.asyncEvent(D.AER_TYPE_NOTICE, D.AER_INFO_NS_ATTR_CHANGED, D.LOG.CHANGED_NS) ? 'queued' : 'masked';
  }


  wakeFds(): number[] { return [this.spec.wakeFd]; }

  armInterrupt(): boolean {
    if (this.fatal || this.stopping) return this.inflight === 0;
    // queues not in guest memory are not polled (nor touched: their views may be stale); the DMA map message wakes us
    if (this.unmapped) return true;
    // a doorbell page the client maps is written without a trap: nothing could wake us
    if (this.spec.mappableDoorbells) return false;
    // an asynchronous event to report (queued by a control operation)
    if (this.events.length && this.aers.length) return false;
    for (const cq of this.cqs) if (cq && cq.overflow.length) return false;
    // fetched up to the tail but stopped for a free slot or bounce buffer that is free now
    for (const sq of this.sqs) if (sq && !sq.deleting && sq.head !== sq.tail && this.canFetch(sq)) return false;
    // with shadow doorbells, ask the guest to trap its next doorbell write (EventIdx = what we have seen)
    const ev = this.eventIdx;
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (!sq || sq.deleting) continue;
      if (q > 0 && ev) ev[2 * q] = sq.tail;
    }
    // full fence: our EventIdx store must be visible before we read the tails again
    // (the guest does the mirror image: store tail, fence, read EventIdx)
    Atomics.add(FENCE, 0, 0);
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (sq && !sq.deleting && this.readTail(sq) !== sq.tail) return false;
    }
    return true;
  }

  disarmInterrupt(): void { eventfdDrain(this.spec.wakeFd); }


  /** Whether the entry at sq.head can be fetched now (a command slot, and for a Compare a bounce buffer, are free). */
  private canFetch(sq: Sq): boolean {
    if (sq.free.length === 0) return false;
    return sq.id === 0 || this.cmpFree.length > 0 || sq.u8[sq.head * D.SQE] !== D.IO.COMPARE || sq.abortMark[sq.head] === 1;
  }

  poll(): number {
    if (this.fatal || this.unmapped) return this.drainCheck();
    let work = 0;
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (sq === null || sq.deleting) continue;
      if (this.stopping) continue;
      const tail = this.readTail(sq);
      if (tail !== sq.tail) {
        if (tail >= sq.size) {
          // doorbell value beyond the queue: ignore it and tell the host (async event, error type)
          this.cnt[C_BAD_DB]++;
          sq.tail = sq.head;
          if (q > 0 && this.shadow) this.shadow[2 * q] = sq.tail;
          else this.db[2 * q] = sq.tail;
          this.eNsid = 0; this.eLba = 0; this.eLoc = LOC_NONE;
          this.logError(q, 0xffff, 0, 0);   // not specific to a command: CID FFFFh
          this.asyncEvent(D.AER_TYPE_ERROR, D.AER_INFO_INVALID_DB_VALUE, D.LOG.ERROR);
          continue;
        }
        sq.tail = tail;
        // while we poll, keep the guest from trapping: EventIdx one behind what we have seen
        // makes Linux's need_event false for normal advances and for a wrap of the queue
        if (q > 0 && this.eventIdx !== null) this.eventIdx[2 * q] = (tail - 1) & 0xffff;
      } else if (sq.head === sq.tail) continue;
      // entries the last round left in the queue (no free slot or bounce buffer then) are fetched now
      while (sq.head !== sq.tail) {
        if (!this.canFetch(sq)) break; // the rest waits for completions
        const pos = sq.head, off = pos * D.SQE;
        sq.head = sq.head + 1 === sq.size ? 0 : sq.head + 1;
        work++;
        if (sq.marks > 0 && sq.abortMark[pos] === 1) {
          // aborted by an Abort command before we fetched it
          sq.abortMark[pos] = 0; sq.marks--;
          this.eNsid = u32(sq.u8, off + 4); this.eLba = 0; this.eLoc = LOC_NONE;
          this.post(sq.cq, sq, sq.u8[off + 2] | (sq.u8[off + 3] << 8), D.SC.ABORT_REQ, 0);
          continue;
        }
        if (q === 0) this.admin(sq, off); else this.io(sq, off);
      }
    }
    if (this.events.length && this.aers.length && !this.stopping) work += this.deliverEvents();
    for (let c = 0; c < this.cqs.length; c++) {
      const cq = this.cqs[c];
      if (cq === null) continue;
      if (cq.overflow.length) work += this.retryOverflow(cq);
      if (cq.irqPending) {
        cq.irqPending = false;
        const fd = this.msix[cq.iv] ?? -1;
        if (fd >= 0) { eventfdSignal(fd); this.cnt[C_IRQS]++; }
      }
    }
    if (this.stopping) work += this.drainCheck();
    return work;
  }

  private drainCheck(): number {
    if (this.inflight === 0 && this.onDrained) { const f = this.onDrained; this.onDrained = null; f(); return 1; }
    return 0;
  }


  info(): Record<string, unknown> {
    return {
      sqs: this.sqs.filter((q) => q).map((q) => ({ qid: q!.id, size: q!.size, cqid: q!.cq.id, head: q!.head, inflight: q!.inflight })),
      cqs: this.cqs.filter((q) => q).map((q) => ({ qid: q!.id, size: q!.size, iv: q!.iv, ien: q!.ien, sqs: q!.sqs, overflow: q!.overflow.length / OVF })),
      shadow_doorbells: this.shadow !== null,
      inflight: this.inflight,
      fatal: this.fatal,
      features: Object.fromEntries(this.features),
      compares_in_progress: D.COMPARE_BUFFERS - this.cmpFree.length,
      namespaces: [...this.ns.values()].map((n) => ({ nsid: n.nsid, blocks: n.nblocks, block_size: n.bs })),
      async_events: {
        config: this.features.get(D.FEAT.ASYNC_EVENT),
        outstanding_requests: this.aers.length,
        pending: this.events.length,
        masked_log_pages: [...this.aenMasked].sort((a, b) => a - b),
        changed_ns_list: this.changedNs.list(),
      },
    };
  }
}
