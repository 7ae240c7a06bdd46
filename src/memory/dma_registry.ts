// The process-wide registry of memory that devices may DMA to, at IOVA = hva: guest memory
// regions the vhost-user code mapped are announced here (with a dup of their fd, which
// vfio-user passes on), and NVMe controllers subscribe to map and unmap them.
//
// Ordering is what keeps I/O safe, not a per-I/O check: a vhost-user device awaits
// setRegions() before it starts (or restarts) its queues, so no I/O can name a region
// before every subscriber mapped it; and it stops its queues (which waits for their I/O in
// flight) before it announces a region's removal, so no unmap happens under I/O. Only the
// announcing device waits: other devices' I/O never does (mapping runs on the control
// plane while the reactors go on). A region whose mapping failed stays usable by other
// backends; NVMe I/O on it fails with the device's data transfer error. Subscribers report
// their own failures (this layer has no logger).
import { raw, closeQuiet } from '../../native/libc.js';
const F_DUPFD_CLOEXEC = 1030;

export interface DmaRegion { hva: number; size: number; fd: number; offset: number }

/** A device that DMAs to guest memory; it logs its own failures (and may reject). */
export interface DmaSubscriber {
  readonly name: string;
  map(r: DmaRegion): Promise<void>;
  unmap(r: DmaRegion): Promise<void>;
}

export interface DmaStats { regions: number; bytes: number; lastMapMs: number; lastMapBytes: number }

export class DmaRegistry {
  private readonly owners = new Map<object, DmaRegion[]>();
  private readonly subs = new Set<DmaSubscriber>();
  readonly stats: DmaStats = { regions: 0, bytes: 0, lastMapMs: 0, lastMapBytes: 0 };

  /** A dup of a region's fd for the registry to keep (closed by release()); -1 if it cannot be had. */
  keepFd(fd: number): number { return fd >= 0 ? raw.fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1; }
  release(fd: number): void { closeQuiet(fd); }

  /**
   * The complete set of regions `owner` has mapped now (an empty list when it unmaps them
   * all): new regions are mapped by every subscriber, gone ones unmapped, before this resolves.
   */
  async setRegions(owner: object, regions: DmaRegion[]): Promise<void> {
    const old = this.owners.get(owner) ?? [];
    const same = (a: DmaRegion, b: DmaRegion) => a.hva === b.hva && a.size === b.size;
    const gone = old.filter((o) => !regions.some((r) => same(o, r)));
    const added = regions.filter((r) => r.fd >= 0 && !old.some((o) => same(o, r)));
    if (regions.length) this.owners.set(owner, regions.filter((r) => r.fd >= 0)); else this.owners.delete(owner);
    for (const r of gone) await this.each((s) => s.unmap(r));
    const t0 = performance.now();
    for (const r of added) await this.each((s) => s.map(r));
    if (added.length && this.subs.size) {
      this.stats.lastMapMs = performance.now() - t0;
      this.stats.lastMapBytes = added.reduce((n, r) => n + r.size, 0);
    }
    this.stats.regions = this.all().length;
    this.stats.bytes = this.all().reduce((n, r) => n + r.size, 0);
  }

  /** Every region announced now. */
  all(): DmaRegion[] { return [...this.owners.values()].flat(); }

  /** Adds a subscriber once it has mapped every region announced so far. */
  async subscribe(s: DmaSubscriber): Promise<void> {
    for (const r of this.all()) await s.map(r);
    this.subs.add(s);
  }

  async unsubscribe(s: DmaSubscriber): Promise<void> { this.subs.delete(s); }

  /** Runs op on every subscriber at once (controllers map in parallel); a failure stops none of the others. */
  private async each(op: (s: DmaSubscriber) => Promise<void>): Promise<void> {
    await Promise.allSettled([...this.subs].map(op));
  }
}

export const dmaRegistry = new DmaRegistry();
