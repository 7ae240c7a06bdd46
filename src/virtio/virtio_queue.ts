// What every virtqueue of a vhost-user device does on its reactor, whatever the device
// type (blk, scsi): guest memory and the split ring, the segment table its chains decode
// into, inflight tracking across back-end restarts (INFLIGHT_SHMFD), used-ring publishing,
// interrupt mode, stopping with a drain, and reporting a ring the guest broke. A device
// queue extends it with handle(head): the pull loop below hands it each head, nothing else
// calls back into the device.
import { Chain, SplitQueue, SplitQueueSpec } from './split_queue.js';
import { InflightRegion, inflightQueueBytes } from './inflight.js';
import { GuestMemory, MemRegionSpec } from '../memory/guest_memory.js';
import { SegmentTable } from '../../bdev/bdev_io.js';
import { Poller } from '../reactor/poller.js';
import { eventfdDrain, view } from '../../native/libc.js';

export interface VirtioQueueSpec {
  mem: MemRegionSpec[];
  ring: SplitQueueSpec;
  kickFd: number;
  /** This queue's part of the front end's inflight-tracking region (INFLIGHT_SHMFD), if any. */
  inflight?: { addr: number };
}

/** Counters every queue keeps for diagnosis (read by the control plane on request). */
export interface VirtioQueueCounters { requests: number; errors: number; badChains: number; lastError: string }

export abstract class VirtioQueue<C extends VirtioQueueCounters = VirtioQueueCounters> implements Poller {
  readonly vq: SplitQueue;
  protected readonly mem: GuestMemory;
  protected readonly segs: SegmentTable;
  protected readonly chain = new Chain();
  stopping = false;
  /** Called once when a stopping queue has nothing left in flight. */
  onDrained: ((q: this) => void) | null = null;
  /** Called once (not per request) when the guest breaks the ring protocol. */
  onBroken: ((q: this, why: string) => void) | null = null;
  protected readonly ifl: InflightRegion | null = null;
  /** Heads the previous back end left in flight, oldest first (null when none are left to run). */
  protected recoveredHeads: number[] | null = null;
  /** Heads found in flight in the inflight region at start. */
  recovered = 0;
  /** Of those, heads run again (or, on an event queue, buffers reused). */
  resubmitted = 0;

  private readonly kickFd: number;

  constructor(readonly name: string, spec: VirtioQueueSpec, segsPerHead: number, readonly counters: C) {
    this.kickFd = spec.kickFd;
    this.mem = new GuestMemory(spec.mem);
    this.vq = new SplitQueue(this.mem, spec.ring);
    const n = this.vq.size;
    this.segs = new SegmentTable(n * segsPerHead);
    if (spec.inflight) {
      this.ifl = new InflightRegion(view(spec.inflight.addr, inflightQueueBytes(n)), 0, n);
      const rec = this.ifl.recover(this.vq.usedIndex);
      if (rec) {
        // a previous back end died with these heads in flight: they run again, in order
        this.vq.lastAvail = rec.lastAvail;
        if (rec.resubmit.length > 0) { this.recoveredHeads = rec.resubmit; this.recovered = rec.resubmit.length; }
      }
    }
  }

  /** Runs one head taken off the avail ring (or recovered): the device's request handler. */
  abstract handle(head: number): void;
  abstract get inFlight(): number;
  abstract poll(): number;

  get lastAvail(): number { return this.vq.lastAvail; }

  /**
   * Takes the heads the guest made available since the last round and hands each to
   * handle(), in a plain loop; stops at a broken ring. Returns how many were available.
   */
  protected fetchHeads(): number {
    const vq = this.vq, n = vq.pending();
    for (let k = 0; k < n; k++) {
      const head = vq.nextHead();
      if (head < 0) break;
      this.handle(head);
      if (vq.broken !== null) break;
    }
    return n;
  }

  /**
   * One poller round of a request queue: publish completions, re-run recovered heads,
   * drain when stopping, else fetch a batch and publish what completed at once.
   */
  protected pollRequests(): number {
    const vq = this.vq;
    if (vq.broken !== null) return 0;
    let work = this.flushUsed();
    if (this.recoveredHeads !== null) work += this.runRecovered();
    if (this.stopping) {
      if (this.inFlight === 0 && this.onDrained) { const f = this.onDrained; this.onDrained = null; f(this); }
      return work;
    }
    const n = this.fetchHeads();
    if (vq.broken !== null) { this.fail(vq.broken); return work + n; }
    if (n > 0) vq.keepKicksSuppressed();
    work += n + this.flushUsed();
    return work;
  }

  /** Runs the heads the previous back end left in flight, oldest first, once; returns how many. */
  runRecovered(): number {
    const list = this.recoveredHeads;
    if (list === null) return 0;
    this.recoveredHeads = null;
    return this.rerun(list);
  }

  /** Runs `list` (recovered heads, oldest first) through handle() until the ring breaks; returns its length. */
  protected rerun(list: number[]): number {
    for (let i = 0; i < list.length; i++) {
      this.handle(list[i]);
      this.resubmitted++;
      if (this.vq.broken !== null) { this.fail(this.vq.broken); break; }
    }
    return list.length;
  }

  /** A head was taken off the avail ring (tracked in the inflight region). */
  protected fetched(head: number): void { if (this.ifl !== null) this.ifl.fetched(head); }

  /** Puts a head on the used ring (published by flushUsed). */
  protected used(head: number, len: number): void {
    this.vq.pushUsed(head, len);
    if (this.ifl !== null) this.ifl.completed(head);
  }

  /** Publishes used entries (one index update, at most one notification); the inflight region follows. */
  flushUsed(): number {
    const n = this.vq.flush();
    if (n > 0 && this.ifl !== null) this.ifl.published(this.vq.usedIndex);
    return n;
  }

  wakeFds(): number[] { return [this.kickFd]; }
  armInterrupt(): boolean { eventfdDrain(this.kickFd); return this.vq.enableKicks(); }
  disarmInterrupt(): void { this.vq.suppressKicks(); }

  /** The guest broke the ring: recorded, and reported once. */
  protected fail(why: string): void {
    this.counters.lastError = why;
    if (this.onBroken) { const f = this.onBroken; this.onBroken = null; f(this, why); }
  }
}
