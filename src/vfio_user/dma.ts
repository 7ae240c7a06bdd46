// The client's DMA windows (VFIO_USER_DMA_MAP/UNMAP): each window with an fd is mapped
// once in this process, like a vhost-user memory region, and described to reactors
// as MemRegionSpec data (gpa = DMA address = uaddr). Windows without an fd are kept
// (for overlap checks and reporting) but are not accessible: a command that points
// into them fails with a data transfer error.
import { mmap, munmap, closeQuiet } from '../../native/libc.js';
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
}

export const MAX_DMA_WINDOWS = 1024;

export class DmaTable {
  private readonly wins: DmaWindow[] = [];

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
      let mapAddr = 0, mapLen = 0, hva = 0;
      if (fd >= 0) {
        mapLen = offset + size;
        guardShrink(fd);
        try { checkBacked(fd, mapLen, 'DMA window'); } catch (e) { throw new VfioUserError(E.EINVAL, (e as Error).message); }
        try { mapAddr = mmap(mapLen, fd); } catch (e) { throw new VfioUserError(E.ENOMEM, `cannot map DMA window: ${(e as Error).message}`); }
        hva = mapAddr + offset;
      }
      const w: DmaWindow = { iova, size, flags, hva, mapAddr, mapLen };
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
    if (w.mapAddr) { try { munmap(w.mapAddr, w.mapLen); } catch { /* gone */ } }
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
