// A guest's memory as seen by one thread: regions mapped by the control plane,
// viewed here without copy. Translates guest-physical and front-end virtual
// addresses with bounds checks.
import { view } from '../../native/libc.js';

/** One region as plain data (structured-clone safe). `hva` is where this process mapped it. */
export interface MemRegionSpec {
  gpa: number;
  size: number;
  /** The front end's (QEMU's) virtual address of the region, for ring addresses. */
  uaddr: number;
  hva: number;
}

export const TWO32 = 4294967296;
/** Largest address we accept from a guest (JS numbers are exact below 2^53). */
export const MAX_ADDR = 2 ** 53;

export class GuestMemory {
  /** Number of regions, private ones included (arrays below have this length). */
  readonly n: number;
  /** Index of the first guest region: regions before it are private to the device (see constructor). */
  readonly first: number;
  readonly gpa: Float64Array;
  readonly end: Float64Array;
  readonly uaddr: Float64Array;
  readonly hva: Float64Array;
  readonly u8: Uint8Array[];

  /**
   * `extra`: device-private buffers (bounce buffers, a bit bucket) that I/O segments may
   * point into like guest memory (index 0 .. extra.length-1), but that no guest address
   * ever resolves to: the lookups below only search the guest regions after them.
   */
  constructor(readonly regions: MemRegionSpec[], extra: MemRegionSpec[] = []) {
    const all = extra.length ? [...extra, ...regions] : regions;
    this.first = extra.length;
    this.n = all.length;
    this.gpa = new Float64Array(all.map((r) => r.gpa));
    this.end = new Float64Array(all.map((r) => r.gpa + r.size));
    this.uaddr = new Float64Array(all.map((r) => r.uaddr));
    this.hva = new Float64Array(all.map((r) => r.hva));
    this.u8 = all.map((r) => new Uint8Array(r.size === 0 ? new ArrayBuffer(0) : view(r.hva, r.size)));
  }

  /** Region holding guest-physical address `gpa`, or -1. */
  regionOf(gpa: number): number {
    const g = this.gpa, e = this.end;
    for (let i = this.first; i < this.n; i++) if (gpa >= g[i] && gpa < e[i]) return i;
    return -1;
  }

  /** Region holding [gpa, gpa+len) entirely, or -1. */
  regionOfRange(gpa: number, len: number): number {
    const r = this.regionOf(gpa);
    return r >= 0 && gpa + len <= this.end[r] ? r : -1;
  }

  /** Region holding front-end virtual range [ua, ua+len), or -1. */
  regionOfUaddr(ua: number, len: number): number {
    for (let i = this.first; i < this.n; i++) {
      const lo = this.uaddr[i], hi = lo + (this.end[i] - this.gpa[i]);
      if (ua >= lo && ua + len <= hi) return i;
    }
    return -1;
  }
}
