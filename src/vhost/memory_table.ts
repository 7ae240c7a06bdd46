// Guest memory regions received over vhost-user: validated, mapped once in this
// process, described to reactors as plain MemRegionSpec data.
import { fstatSync } from 'node:fs';
import { mmap, munmap, closeQuiet, getSeals, addSeals, F_SEAL_SHRINK } from '../../native/libc.js';
import { MemRegionSpec, MAX_ADDR } from '../memory/guest_memory.js';
import { dmaRegistry } from '../memory/dma_registry.js';
import { GuardSlot, guardMapping, installSigbusGuard, unguardMapping } from '../../native/sigbus.js';

export interface MappedRegion extends MemRegionSpec {
  mmapOffset: number;
  mapAddr: number;
  mapLen: number;
  /** The fd cannot shrink under the mapping (see guardShrink). */
  shrinkProof: boolean;
  /** A dup of the region's fd kept for DMA mapping (src/memory/dma_registry.ts), or -1. */
  dmaFd: number;
  /** Its slot in the SIGBUS guard (native/sigbus.ts), once guarded. */
  guard?: GuardSlot | null;
}

export class MemoryError extends Error {}

export function parseRegion(dv: DataView, off: number): { gpa: number; size: number; uaddr: number; mmapOffset: number } {
  const u64 = (o: number) => {
    const v = dv.getBigUint64(off + o, true);
    if (v >= BigInt(MAX_ADDR)) throw new MemoryError(`memory region field 0x${v.toString(16)} is beyond 2^53`);
    return Number(v);
  };
  return { gpa: u64(0), size: u64(8), uaddr: u64(16), mmapOffset: u64(24) };
}

/** Maps one region from its fd; the fd is closed whether or not this succeeds. */
export function mapRegion(r: { gpa: number; size: number; uaddr: number; mmapOffset: number }, fd: number): MappedRegion {
  try {
    if (r.size === 0) throw new MemoryError('memory region of size 0');
    if (r.gpa + r.size > MAX_ADDR || r.uaddr + r.size > MAX_ADDR || r.mmapOffset + r.size > MAX_ADDR) {
      throw new MemoryError(`memory region gpa 0x${r.gpa.toString(16)} size 0x${r.size.toString(16)} overflows`);
    }
    const mapLen = r.mmapOffset + r.size;
    const shrinkProof = guardShrink(fd);
    checkBacked(fd, mapLen, 'guest memory region');
    let mapAddr: number;
    try { mapAddr = mmap(mapLen, fd); } catch (e) { throw new MemoryError(`cannot map guest memory region: ${(e as Error).message}`); }
    return { ...r, mapAddr, mapLen, hva: mapAddr + r.mmapOffset, shrinkProof, dmaFd: dmaRegistry.keepFd(fd) };
  } finally {
    closeQuiet(fd);
  }
}

/**
 * A file truncated under a mapping of it turns accesses past its new end into SIGBUS,
 * which kills the process. A memfd sealed with F_SEAL_SHRINK cannot shrink (QEMU's
 * memory-backend-memfd seals by default); one that still allows sealing is sealed here.
 * Returns whether the fd is safe from shrinking: false for an unsealable memfd and for
 * regular files (memory-backend-file, hugetlbfs), true for non-files.
 */
export function guardShrink(fd: number): boolean {
  let seals = getSeals(fd);
  if (seals >= 0 && (seals & F_SEAL_SHRINK) === 0 && addSeals(fd, F_SEAL_SHRINK)) seals = getSeals(fd);
  if (seals >= 0 && (seals & F_SEAL_SHRINK) !== 0) return true;
  try { return !fstatSync(fd).isFile(); } catch { return false; }
}

/**
 * Refuses a mapping of `len` bytes that reaches past the end of the file behind `fd`: mmap
 * accepts it, but the first access past the end raises SIGBUS and kills the whole process.
 * (Only regular files, memfds and hugetlbfs files have a size to check against.)
 */
export function checkBacked(fd: number, len: number, what: string): void {
  let size: number;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return;
    size = st.size;
  } catch (e) { throw new MemoryError(`cannot stat the fd of the ${what}: ${(e as Error).message}`); }
  if (len > size) throw new MemoryError(`${what} of ${len} bytes (offset included) is larger than its fd (${size} bytes)`);
}

/**
 * Puts a region under the SIGBUS guard: if its file loses pages under the mapping, the region
 * turns into zeroed memory and `onLost` runs on the main thread, instead of the process dying.
 * Throws if the region is not sealed against shrinking and cannot be guarded.
 */
export function guardRegion(r: MappedRegion, onLost: () => void): void {
  if (r.guard) return;
  const why = installSigbusGuard();
  r.guard = why ? null : guardMapping(r.mapAddr, r.mapLen, onLost);
  if (!r.guard && !r.shrinkProof) {
    throw new MemoryError(`guest memory region at gpa 0x${r.gpa.toString(16)} is a file that is not sealed against ` +
      `shrinking, and ${why ?? 'the SIGBUS guard has no free slot'}: use memory-backend-memfd (sealed by default)`);
  }
}

export function unmapRegion(r: MappedRegion): void {
  unguardMapping(r.guard ?? null);
  r.guard = null;
  try { munmap(r.mapAddr, r.mapLen); } catch { /* already gone */ }
  dmaRegistry.release(r.dmaFd);
}

/** Rejects overlapping guest-physical ranges. */
export function checkOverlap(regions: MappedRegion[]): void {
  const s = [...regions].sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < s.length; i++) {
    if (s[i].gpa < s[i - 1].gpa + s[i - 1].size) {
      throw new MemoryError(`memory regions at gpa 0x${s[i - 1].gpa.toString(16)} and 0x${s[i].gpa.toString(16)} overlap`);
    }
  }
}

export function toSpecs(regions: MappedRegion[]): MemRegionSpec[] {
  return regions.map((r) => ({ gpa: r.gpa, size: r.size, uaddr: r.uaddr, hva: r.hva }));
}
