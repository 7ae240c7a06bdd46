// A vhost-user-scsi controller: one socket, up to 8 targets (LUN 0 each, a bdev), the
// control and event queues on the first reactor of its cpumask and the request queues
// spread over all of them. Targets come and go while a guest runs: every reactor running
// a queue of the controller gets the change, then the guest gets a transport-reset event.
import { VhostTarget, QueueStart, VringState } from '../../src/vhost/target.js';
import { ReactorPool } from '../../src/reactor/pool.js';
import { Bdev } from '../../bdev/bdev.js';
import { bit, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from '../../src/virtio/constants.js';
import type { LunInfo } from './scsi/index.js';
import { INFLIGHT_WORDS, ScsiTargetSpec } from './scsi_queue.js';
import type { ScsiStartSpec } from './scsi_reactor.js';
import * as V from './virtio_scsi.js';
import { logger } from '../../src/log.js';
import { Coalescing } from '../../src/virtio/split_queue.js';

const log = logger('vhost_scsi');

const PRODUCT: Record<string, string> = { malloc: 'Malloc disk', null: 'Null disk', delay: 'delay' };

/** INQUIRY product identification of a bdev: its bdev_get_bdevs product_name, as SPDK. */
export function productName(b: Bdev): string { return PRODUCT[b.module] ?? `${b.module} disk`; }

export interface ScsiTargetSlot {
  bdev: Bdev;
  gen: number;
  /** 'removing' while the reactors finish the target's commands. */
  state: 'present' | 'removing';
  /** Stops following the bdev's size. */
  unwatch: () => void;
}

export class ScsiController implements VhostTarget {
  readonly maxQueues = V.SCSI_MAX_QUEUES;
  readonly slots: (ScsiTargetSlot | null)[] = new Array<ScsiTargetSlot | null>(V.SCSI_MAX_TARGETS).fill(null);
  private nextGen = 1;
  /** Queues of this controller per reactor, counted before the start is posted (ordering of later ops). */
  private readonly reactorRefs = new Map<number, number>();
  /** In-flight tables of running request queues, by qid. */
  private readonly tables = new Map<number, SharedArrayBuffer>();
  /** Features of the current front end (from the last queue start). */
  private negotiated = 0n;
  private eventRunning = false;
  /** Interrupt coalescing of the request queues (vhost_controller_set_coalescing). */
  private coalescing: Coalescing = { delayBaseUs: 0, iopsThreshold: 0 };
  private eventMissed = false;
  /** Requests found in flight in the front end's inflight region at queue starts (re-run or reused). */
  recovered = 0;

  constructor(readonly ctrlr: string, readonly reactors: number[], private readonly pool: ReactorPool) {}

  features(): bigint { return V.scsiFeatures(); }

  configSpace(): Uint8Array { return V.scsiConfigSpace(V.SCSI_MAX_REQUEST_QUEUES); }

  /** Drivers write sense_size and cdb_size: only the values in use are accepted. */
  writeConfig(offset: number, data: Uint8Array): boolean {
    const cur = this.configSpace();
    if ((offset === 20 || offset === 24) && data.length === 4) {
      for (let i = 0; i < 4; i++) if (cur[offset + i] !== data[i]) return false;
      return true;
    }
    return false;
  }

  reactorFor(qid: number): number {
    return qid < V.FIRST_REQUESTQ ? this.reactors[0] : this.reactors[(qid - V.FIRST_REQUESTQ) % this.reactors.length];
  }

  get hotplug(): boolean { return (this.negotiated & bit(V.VIRTIO_SCSI_F_HOTPLUG)) !== 0n; }

  targetSpecs(): ScsiTargetSpec[] {
    const out: ScsiTargetSpec[] = [];
    this.slots.forEach((s, target) => { if (s && s.state === 'present') out.push(this.targetSpec(target, s)); });
    return out;
  }

  private targetSpec(target: number, s: ScsiTargetSlot): ScsiTargetSpec {
    const b = s.bdev;
    const lun: LunInfo = {
      bdevName: b.name, blockSize: b.blockSize, numBlocks: b.numBlocks, uuid: b.uuid, productName: productName(b),
      supportsUnmap: b.ioTypes.has('unmap'), supportsWriteZeroes: b.ioTypes.has('write_zeroes'),
    };
    return { target, gen: s.gen, lun, bdev: b.channelSpec() };
  }

  private ref(r: number, d: number): void {
    const n = (this.reactorRefs.get(r) ?? 0) + d;
    if (n > 0) this.reactorRefs.set(r, n); else this.reactorRefs.delete(r);
  }

  private activeReactors(): number[] { return [...this.reactorRefs.keys()]; }

  /** Applies to running request queues at once and to queues started later. */
  async setCoalescing(c: Coalescing): Promise<void> {
    this.coalescing = c;
    for (const r of this.activeReactors()) await this.pool.call(r, 'scsi.coalescing', { ctrlr: this.ctrlr, ...c });
  }

  async startQueue(q: QueueStart): Promise<number> {
    const v = q.vring;
    const reactor = this.reactorFor(v.index);
    this.negotiated = q.features;
    const spec: ScsiStartSpec = {
      ctrlr: this.ctrlr, qid: v.index, mem: q.mem, kickFd: v.kickFd, targets: this.targetSpecs(), inflight: q.inflight,
      ring: {
        size: v.num, descUaddr: v.descUaddr, availUaddr: v.availUaddr, usedUaddr: v.usedUaddr, lastAvail: v.lastAvail,
        eventIdx: (q.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n,
        indirect: (q.features & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n, callFd: v.callFd,
        coalescing: v.index >= V.FIRST_REQUESTQ ? this.coalescing : undefined,
      },
    };
    let table: SharedArrayBuffer | null = null;
    if (v.index === V.CONTROLQ) spec.tables = this.tableList();
    else if (v.index === V.EVENTQ) { spec.missed = this.eventMissed; this.eventMissed = false; }
    else { table = new SharedArrayBuffer(v.num * INFLIGHT_WORDS * 4); spec.table = table; }
    this.ref(reactor, 1);
    let r: { recovered: number };
    try {
      r = await this.pool.call(reactor, 'scsi.startQueue', spec);
    } catch (e) {
      this.ref(reactor, -1);
      throw e;
    }
    if (r.recovered > 0) {
      this.recovered += r.recovered;
      const what = v.index === V.EVENTQ ? `reusing ${r.recovered} event buffer(s)`
        : v.index === V.CONTROLQ ? `answering ${r.recovered} TMF(s), once the request queues are back,`
          : `re-running ${r.recovered} command(s)`;
      log.notice(`${this.ctrlr}: queue ${v.index}: ${what} left in flight by the previous connection`);
    }
    if (v.index === V.EVENTQ) this.eventRunning = true;
    if (table) { this.tables.set(v.index, table); await this.publishTables(); }
    return reactor;
  }

  async stopQueue(v: VringState): Promise<number> {
    if (v.index === V.EVENTQ) this.eventRunning = false;
    type Stopped = { lastAvail: number; tmfs?: { total: number; rejected: number; waited: number } } | null;
    let r: Stopped = null;
    try {
      r = await this.pool.call(v.reactor, 'scsi.stopQueue', { ctrlr: this.ctrlr, qid: v.index });
      const t = r?.tmfs;
      if (t && t.total > 0) {
        log.info(`${this.ctrlr}: the control queue answered ${t.total} task management function(s): ` +
          `${t.waited} waited for commands to finish, ${t.rejected} rejected`);
      }
    } finally {
      this.ref(v.reactor, -1);
      if (this.tables.delete(v.index)) await this.publishTables();
    }
    return r ? r.lastAvail : v.lastAvail;
  }

  private tableList(): (SharedArrayBuffer | null)[] {
    const out: (SharedArrayBuffer | null)[] = [];
    for (const [qid, t] of this.tables) { while (out.length <= qid) out.push(null); out[qid] = t; }
    return out;
  }

  /** Gives the control queue the current set of request-queue tables. */
  private async publishTables(): Promise<void> {
    const r = this.reactorFor(V.CONTROLQ);
    if (!this.reactorRefs.has(r)) return;
    await this.pool.call(r, 'scsi.tables', { ctrlr: this.ctrlr, tables: this.tableList() });
  }

  /** First free target number, or -1. */
  freeSlot(): number { return this.slots.findIndex((s) => s === null); }

  /** Puts a bdev at target `num` (checked and claimed by the caller) and tells a running guest. */
  async addTarget(num: number, bdev: Bdev): Promise<void> {
    const slot: ScsiTargetSlot = { bdev, gen: this.nextGen++, state: 'present', unwatch: () => {} };
    this.slots[num] = slot;
    slot.unwatch = bdev.onResize((b, old) => { void this.resized(num, slot, old); });
    const spec = this.targetSpec(num, slot);
    const rs = this.activeReactors();
    try {
      await Promise.all(rs.map((r) => this.pool.call(r, 'scsi.addTarget', { ctrlr: this.ctrlr, target: spec })));
    } catch (e) {
      this.slots[num] = null;
      slot.unwatch();
      await Promise.allSettled(rs.map((r) => this.pool.call(r, 'scsi.removeTarget', { ctrlr: this.ctrlr, target: num, gen: slot.gen })));
      throw e;
    }
    if (rs.length > 0) await this.sendEvent(num, V.VIRTIO_SCSI_EVT_RESET_RESCAN);
  }

  /** Removes target `num`: new commands fail, running ones finish, then the guest is told. */
  async removeTarget(num: number): Promise<Bdev> {
    const slot = this.slots[num];
    if (!slot) throw new Error(`target ${num} is empty`);
    slot.state = 'removing';
    slot.unwatch();
    const rs = this.activeReactors();
    try {
      await Promise.all(rs.map((r) => this.pool.call(r, 'scsi.removeTarget', { ctrlr: this.ctrlr, target: num, gen: slot.gen })));
    } finally {
      this.slots[num] = null;
    }
    if (rs.length > 0) await this.sendEvent(num, V.VIRTIO_SCSI_EVT_RESET_REMOVED);
    return slot.bdev;
  }

  /** The bdev of a target changed size: the guest is told (PARAM_CHANGE, CAPACITY DATA HAS CHANGED) and rescans it. */
  private async resized(num: number, slot: ScsiTargetSlot, old: number): Promise<void> {
    if (this.slots[num] !== slot) return;
    const what = `${this.ctrlr}: SCSI target ${num} (bdev ${slot.bdev.name}) resized from ${old} to ${slot.bdev.numBlocks} blocks`;
    if (this.activeReactors().length === 0) { log.notice(`${what}; no guest is attached`); return; }
    if ((this.negotiated & bit(V.VIRTIO_SCSI_F_CHANGE)) === 0n) {
      log.notice(`${what}; the driver did not negotiate VIRTIO_SCSI_F_CHANGE: rescan the disk in the guest to see it`);
      return;
    }
    log.notice(`${what}; the guest was told`);
    await this.sendEvent(num, V.PARAM_CAPACITY_CHANGED, V.VIRTIO_SCSI_T_PARAM_CHANGE);
  }

  private async sendEvent(target: number, reason: number, event: number = V.VIRTIO_SCSI_T_TRANSPORT_RESET): Promise<void> {
    if (event === V.VIRTIO_SCSI_T_TRANSPORT_RESET && !this.hotplug) {
      log.notice(`${this.ctrlr}: the driver did not negotiate hotplug: rescan the SCSI host in the guest to see target ${target} change`);
      return;
    }
    let sent = false;
    if (this.eventRunning) {
      try {
        sent = await this.pool.call(this.reactorFor(V.EVENTQ), 'scsi.event', { ctrlr: this.ctrlr, event, target, reason });
      } catch { sent = false; }
    }
    if (!sent) this.eventMissed = true;
  }

  async queueInfo(): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const r of new Set(this.reactors)) out.push(...await this.pool.call(r, 'scsi.queueInfo', { ctrlr: this.ctrlr }));
    return out;
  }
}
