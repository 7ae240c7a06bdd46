// A fake virtio guest driver for unit tests: synthetic guest memory (anonymous mmaps
// with canary guard bytes around every region), split-ring layout, descriptor chains
// (direct and indirect), avail publishing, used reading, and virtio-blk helpers.
//
// Guest-physical, front-end virtual (uaddr) and host virtual (hva) addresses are all
// different, as they are under vhost-load/QEMU, so a mix-up between them shows.
import { readSync } from 'node:fs';
import * as libc from '../../../native/libc.js';
import type { MemRegionSpec } from '../../../src/memory/guest_memory.js';
import type { SplitQueueSpec } from '../../../src/virtio/split_queue.js';
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from '../../../src/virtio/constants.js';

export const PAGE = 4096;
export const TWO32 = 4294967296;
/** Bytes of canary before and after each region (host-adjacent to it). */
export const GUARD = PAGE;
export const CANARY = 0xa5;

export interface RegionLayout { gpa: number; size: number }

/** Front-end virtual bases: unrelated to both gpa and hva. */
const UADDR_BASE = 0x7f3a_0000_0000;
const UADDR_STRIDE = 0x1_0000_0000;

interface Mapping { addr: number; len: number }

export class FakeGuest {
  readonly regions: MemRegionSpec[] = [];
  readonly u8: Uint8Array[] = [];
  private readonly dv: DataView[] = [];
  private readonly maps: Mapping[] = [];
  private readonly guards: Uint8Array[] = [];
  private readonly bump: number[] = [];

  /** One anonymous mapping per region, with GUARD canary bytes on each side, plus a separate canary mapping. */
  constructor(layout: RegionLayout[]) {
    layout.forEach((l, i) => {
      const len = l.size + 2 * GUARD;
      const addr = libc.mmap(len);
      this.maps.push({ addr, len });
      const before = new Uint8Array(libc.view(addr, GUARD));
      const after = new Uint8Array(libc.view(addr + GUARD + l.size, GUARD));
      before.fill(CANARY); after.fill(CANARY);
      this.guards.push(before, after);
      const hva = addr + GUARD;
      this.regions.push({ gpa: l.gpa, size: l.size, uaddr: UADDR_BASE + i * UADDR_STRIDE, hva });
      const u8 = new Uint8Array(libc.view(hva, l.size));
      this.u8.push(u8);
      this.dv.push(new DataView(u8.buffer, u8.byteOffset, u8.byteLength));
      this.bump.push(0);
    });
    const extra = libc.mmap(PAGE);
    this.maps.push({ addr: extra, len: PAGE });
    const g = new Uint8Array(libc.view(extra, PAGE));
    g.fill(CANARY);
    this.guards.push(g);
  }

  /** True if no canary byte outside the regions was changed. */
  canariesIntact(): boolean {
    for (const g of this.guards) for (let i = 0; i < g.length; i++) if (g[i] !== CANARY) return false;
    return true;
  }

  destroy(): void {
    for (const m of this.maps) libc.munmap(m.addr, m.len);
    this.maps.length = 0;
  }

  gpaEnd(r: number): number { return this.regions[r].gpa + this.regions[r].size; }

  uaddrOf(gpa: number): number {
    const r = this.regionOf(gpa);
    return this.regions[r].uaddr + (gpa - this.regions[r].gpa);
  }

  regionOf(gpa: number): number {
    const r = this.regions.findIndex((x) => gpa >= x.gpa && gpa < x.gpa + x.size);
    if (r < 0) throw new Error(`fake guest: gpa 0x${gpa.toString(16)} is not in any region`);
    return r;
  }

  /** Bump-allocates `len` bytes in region r (aligned), returns the gpa. */
  alloc(len: number, align = 16, r = 0): number {
    const at = Math.ceil(this.bump[r] / align) * align;
    if (at + len > this.regions[r].size) throw new Error(`fake guest: region ${r} is full`);
    this.bump[r] = at + len;
    return this.regions[r].gpa + at;
  }

  /** Allocates at the very end of region r (for spanning tests). */
  allocAtEnd(len: number, r: number): number { return this.gpaEnd(r) - len; }

  /** Writes bytes at gpa, crossing into gpa-adjacent regions as needed. */
  write(gpa: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      const r = this.regionOf(gpa + done);
      const off = gpa + done - this.regions[r].gpa;
      const n = Math.min(bytes.length - done, this.regions[r].size - off);
      this.u8[r].set(bytes.subarray(done, done + n), off);
      done += n;
    }
  }

  read(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const r = this.regionOf(gpa + done);
      const off = gpa + done - this.regions[r].gpa;
      const n = Math.min(len - done, this.regions[r].size - off);
      out.set(this.u8[r].subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  fill(gpa: number, len: number, v: number): void { this.write(gpa, new Uint8Array(len).fill(v)); }

  private at(gpa: number): [DataView, number] {
    const r = this.regionOf(gpa);
    return [this.dv[r], gpa - this.regions[r].gpa];
  }
  u8At(gpa: number): number { const [d, o] = this.at(gpa); return d.getUint8(o); }
  setU8(gpa: number, v: number): void { const [d, o] = this.at(gpa); d.setUint8(o, v); }
  u16(gpa: number): number { const [d, o] = this.at(gpa); return d.getUint16(o, true); }
  setU16(gpa: number, v: number): void { const [d, o] = this.at(gpa); d.setUint16(o, v, true); }
  u32(gpa: number): number { const [d, o] = this.at(gpa); return d.getUint32(o, true); }
  setU32(gpa: number, v: number): void { const [d, o] = this.at(gpa); d.setUint32(o, v >>> 0, true); }
}

/** One buffer of a chain: guest address (may be ≥ 2^32), length, device-writable or not. */
export interface Buf { addr: number; len: number; write?: boolean }

export interface VringOptions {
  size?: number;
  /** Region holding the rings. */
  region?: number;
  /** Initial avail idx (= the device's lastAvail) and used idx: for wrap-around tests. */
  startIdx?: number;
  eventIdx?: boolean;
  indirect?: boolean;
  callFd?: number;
}

/** The driver side of one split virtqueue. */
export class FakeVring {
  readonly size: number;
  readonly descGpa: number;
  readonly availGpa: number;
  readonly usedGpa: number;
  availIdx: number;
  lastUsed: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly callFd: number;
  private freeDesc: number[] = [];
  /** Descriptor indices of each outstanding chain, by head (given back when its used entry is read). */
  private readonly chains = new Map<number, number[]>();

  constructor(readonly g: FakeGuest, o: VringOptions = {}) {
    const n = this.size = o.size ?? 64;
    const r = o.region ?? 0;
    this.descGpa = g.alloc(16 * n, PAGE, r);
    this.availGpa = g.alloc(6 + 2 * n, PAGE, r);
    this.usedGpa = g.alloc(6 + 8 * n, PAGE, r);
    this.availIdx = this.lastUsed = (o.startIdx ?? 0) & 0xffff;
    g.setU16(this.availGpa + 2, this.availIdx);
    g.setU16(this.usedGpa + 2, this.lastUsed);
    this.eventIdx = o.eventIdx ?? false;
    this.indirect = o.indirect ?? true;
    this.callFd = o.callFd ?? -1;
    for (let i = 0; i < n; i++) this.freeDesc.push(i);
  }

  /** What SET_VRING_ADDR / SET_VRING_BASE would hand the back end. */
  spec(): SplitQueueSpec {
    return {
      size: this.size, descUaddr: this.g.uaddrOf(this.descGpa), availUaddr: this.g.uaddrOf(this.availGpa),
      usedUaddr: this.g.uaddrOf(this.usedGpa), lastAvail: this.availIdx, eventIdx: this.eventIdx,
      indirect: this.indirect, callFd: this.callFd,
    };
  }

  /** Writes descriptor i of the ring's table raw (addr split into lo/hi words by the caller). */
  descRaw(i: number, lo: number, hi: number, len: number, flags: number, next: number): void {
    writeDesc(this.g, this.descGpa + 16 * i, lo, hi, len, flags, next);
  }
  desc(i: number, addr: number, len: number, flags: number, next = 0): void {
    this.descRaw(i, addr % TWO32, Math.floor(addr / TWO32), len, flags, next);
  }

  /** Takes a free descriptor index. */
  takeDesc(): number {
    const d = this.freeDesc.shift();
    if (d === undefined) throw new Error('fake vring: out of descriptors');
    return d;
  }
  /** Gives descriptor indices back (for hand-built chains; addChain/addIndirect chains come back via takeUsed). */
  freeDescs(...ids: number[]): void { this.freeDesc.push(...ids); }

  /** Builds a direct chain from free descriptors; returns the head. */
  addChain(bufs: Buf[]): number {
    const ids = bufs.map(() => this.takeDesc());
    this.chains.set(ids[0], ids);
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.desc(ids[k], b.addr, b.len, (b.write ? VRING_DESC_F_WRITE : 0) | (last ? 0 : VRING_DESC_F_NEXT),
        last ? 0 : ids[k + 1]);
    });
    return ids[0];
  }

  /** Builds an indirect table in guest memory (region r) and one ring descriptor pointing at it. */
  addIndirect(bufs: Buf[], r = 0): number {
    const table = this.g.alloc(16 * bufs.length, 16, r);
    writeTable(this.g, table, bufs);
    const head = this.takeDesc();
    this.chains.set(head, [head]);
    this.desc(head, table, 16 * bufs.length, VRING_DESC_F_INDIRECT);
    return head;
  }

  /** Makes heads available and publishes the new avail idx. */
  publish(...heads: number[]): void {
    for (const h of heads) {
      this.g.setU16(this.availGpa + 4 + 2 * (this.availIdx & (this.size - 1)), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.g.setU16(this.availGpa + 2, this.availIdx);
  }
  /** Publishes an arbitrary avail idx (hostile). */
  setAvailIdx(v: number): void { this.availIdx = v & 0xffff; this.g.setU16(this.availGpa + 2, this.availIdx); }
  /** Writes avail ring slot k directly (hostile). */
  setAvailRing(k: number, head: number): void { this.g.setU16(this.availGpa + 4 + 2 * (k & (this.size - 1)), head); }

  set availFlags(v: number) { this.g.setU16(this.availGpa, v); }
  set usedEvent(v: number) { this.g.setU16(this.availGpa + 4 + 2 * this.size, v & 0xffff); }
  get usedFlags(): number { return this.g.u16(this.usedGpa); }
  get usedIdx(): number { return this.g.u16(this.usedGpa + 2); }
  get availEvent(): number { return this.g.u16(this.usedGpa + 4 + 8 * this.size); }

  /** Used entries published since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.usedIdx;
    while (this.lastUsed !== idx) {
      const e = this.usedGpa + 4 + 8 * (this.lastUsed & (this.size - 1));
      const id = this.g.u32(e);
      out.push({ id, len: this.g.u32(e + 4) });
      const ids = this.chains.get(id);
      if (ids) { this.chains.delete(id); this.freeDesc.push(...ids); }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}

export function writeDesc(g: FakeGuest, gpa: number, lo: number, hi: number, len: number, flags: number, next: number): void {
  g.setU32(gpa, lo); g.setU32(gpa + 4, hi); g.setU32(gpa + 8, len); g.setU16(gpa + 12, flags); g.setU16(gpa + 14, next);
}

/** Writes an indirect table of chained descriptors at gpa. */
export function writeTable(g: FakeGuest, gpa: number, bufs: Buf[]): void {
  bufs.forEach((b, k) => {
    const last = k === bufs.length - 1;
    writeDesc(g, gpa + 16 * k, b.addr % TWO32, Math.floor(b.addr / TWO32), b.len,
      (b.write ? VRING_DESC_F_WRITE : 0) | (last ? 0 : VRING_DESC_F_NEXT), last ? 0 : k + 1);
  });
}

/** Value of an eventfd counter (read and cleared); 0 if it was not signalled. */
export function eventfdCount(fd: number): number {
  const b = new Uint8Array(8);
  try {
    if (readSync(fd, b, 0, 8, null) !== 8) return 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
    throw e;
  }
  return Number(new DataView(b.buffer).getBigUint64(0, true));
}

// ---- virtio-blk helpers ----

export const STATUS_UNTOUCHED = 0xff;

/** Allocates and writes a struct virtio_blk_outhdr {type, ioprio, sector}. */
export function blkHeader(g: FakeGuest, type: number, sector: number, r = 0): number {
  const h = g.alloc(16, 16, r);
  writeBlkHeader(g, h, type, sector);
  return h;
}
export function writeBlkHeader(g: FakeGuest, gpa: number, type: number, sector: number): void {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(4, 0, true);
  dv.setUint32(8, sector % TWO32, true);
  dv.setUint32(12, Math.floor(sector / TWO32), true);
  g.write(gpa, b);
}

/** struct virtio_blk_discard_write_zeroes {sector, num_sectors, flags}. */
export function blkRange(sector: number, num: number, flags: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, sector % TWO32, true);
  dv.setUint32(4, Math.floor(sector / TWO32), true);
  dv.setUint32(8, num, true);
  dv.setUint32(12, flags, true);
  return b;
}

/** Allocates one status byte preset to STATUS_UNTOUCHED. */
export function blkStatus(g: FakeGuest, r = 0): number {
  const s = g.alloc(1, 1, r);
  g.setU8(s, STATUS_UNTOUCHED);
  return s;
}

/** Deterministic test pattern. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[i] = x & 0xff; }
  return b;
}
