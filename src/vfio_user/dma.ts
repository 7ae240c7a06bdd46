// The client's DMA windows (VFIO_USER_DMA_MAP/UNMAP): each window with an fd is mapped
// once in this process, like a vhost-user memory region, and described to reactors
// as MemRegionSpec data (gpa = DMA address = uaddr). Windows without an fd are kept
// (for overlap checks and reporting) but are not accessible: a command that points
// into them fails with a data transfer error.
// The client's memory fds get the same rules as vhost-user guest memory: a window larger
// than its file is refused, a memfd that allows sealing is sealed against shrinking, and
// every mapping is put under the SIGBUS guard (native/sigbus.ts), so a file truncated
// under it fails that client (onLost), not the process.
import { mmap, munmap, closeQuiet } from '../../native/libc.js';
import { GuardSlot, guardMapping, installSigbusGuard, unguardMapping } from '../../native/sigbus.js';
import { checkBacked, guardShrink } from '../vhost/memory_table.js';
import { MemRegionSpec, MAX_ADDR } from '../memory/guest_memory.js';
import { E, VfioUserError } from './protocol.js';

export interface DmaWindow {
  iova: number;
  size: number;
  flags: number;
  /** Where this process mapped the window (0: not mappable, no fd). */
  hva: number;
  mapAddr: number;
  mapLen: number;
  /** Its slot in the SIGBUS guard (null: not guarded, the fd cannot shrink). */
  guard: GuardSlot | null;
}

export const MAX_DMA_WINDOWS = 1024;

export class DmaTable {
  private readonly wins: DmaWindow[] = [];

  /** `onLost` runs on the main thread after a guarded window took a SIGBUS (it now reads zeros). */
  constructor(private readonly onLost: (w: DmaWindow) => void = () => {}) {}

  get windows(): readonly DmaWindow[] { return this.wins; }

  /** Maps a window; closes fd (if any) whether or not this succeeds. */
  map(iova: number, size: number, offset: number, flags: number, fd: number): DmaWindow {
    try {
      if (size === 0) throw new VfioUserError(E.EINVAL, 'DMA_MAP of size 0');
      if (iova + size > MAX_ADDR || offset + size > MAX_ADDR || iova % 4096 !== 0 || size % 4096 !== 0) {
        throw new VfioUserError(E.EINVAL, `DMA_MAP iova 0x${iova.toString(16)} size 0x${size.toString(16)} is unaligned or too large`);
      }
      if (this.wins.length >= MAX_DMA_WINDOWS) throw new VfioUserError(E.ENOSPC, `more than ${MAX_DMA_WINDOWS} DMA windows`);
      for (const w of this.wins) {
        if (iova < w.iova + w.size && w.iova < iova + size) {
          throw new VfioUserError(E.EEXIST, `DMA_MAP 0x${iova.toString(16)}+0x${size.toString(16)} overlaps the window at 0x${w.iova.toString(16)}`);
        }
      }
      const w: DmaWindow = { iova, size, flags, hva: 0, mapAddr: 0, mapLen: 0, guard: null };
      if (fd >= 0) {
        const mapLen = offset + size;
        let mapAddr: number;
        const shrinkProof = guardShrink(fd);
        try { checkBacked(fd, mapLen, 'DMA window'); } catch (e) { throw new VfioUserError(E.EINVAL, (e as Error).message); }
        try { mapAddr = mmap(mapLen, fd); } catch (e) { throw new VfioUserError(E.ENOMEM, `cannot map DMA window: ${(e as Error).message}`); }
        const why = installSigbusGuard();
        const guard = why ? null : guardMapping(mapAddr, mapLen, () => this.onLost(w));
        if (!guard && !shrinkProof) {
          try { munmap(mapAddr, mapLen); } catch { /* gone */ }
          throw new VfioUserError(E.EINVAL, `DMA window at 0x${iova.toString(16)} is a file that is not sealed against shrinking, ` +
            `and ${why ?? 'the SIGBUS guard has no free slot'}: map a memfd that allows sealing (QEMU: memory-backend-memfd)`);
        }
        w.hva = mapAddr + offset; w.mapAddr = mapAddr; w.mapLen = mapLen; w.guard = guard;
      }
      this.wins.push(w);
      this.wins.sort((a, b) => a.iova - b.iova);
      return w;
    } finally {
      closeQuiet(fd);
    }
  }

  /** Finds the window an unmap names (address and size must match exactly). */
  find(iova: number, size: number): DmaWindow | undefined {
    return this.wins.find((w) => w.iova === iova && w.size === size);
  }

  /** Removes a window from the table (call unmapWindow once no reactor uses it). */
  remove(w: DmaWindow): void {
    const i = this.wins.indexOf(w);
    if (i >= 0) this.wins.splice(i, 1);
  }

  static unmapWindow(w: DmaWindow): void {
    unguardMapping(w.guard);
    w.guard = null;
    if (w.mapAddr) { try { munmap(w.mapAddr, w.mapLen); } catch { /* gone */ } }
    w.mapAddr = 0;
  }

  /** The mappable windows, as reactors see guest memory. */
  specs(except?: DmaWindow): MemRegionSpec[] {
    return this.wins.filter((w) => w.hva !== 0 && w !== except).map((w) => ({ gpa: w.iova, size: w.size, uaddr: w.iova, hva: w.hva }));
  }

  clear(): void {
    for (const w of this.wins) DmaTable.unmapWindow(w);
    this.wins.length = 0;
  }
}
