// The DMA registry: announced regions reach every subscriber before setRegions resolves,
// removed ones are unmapped, a late subscriber maps what exists, a failing subscriber does
// not stop the others.
import { describe, expect, it } from 'vitest';
import { DmaRegistry, DmaRegion, DmaSubscriber } from '../../../src/memory/dma_registry.js';

class Sub implements DmaSubscriber {
  readonly events: string[] = [];
  constructor(readonly name: string, private readonly delayMs = 0, private readonly fail = false) {}
  async map(r: DmaRegion): Promise<void> {
    await new Promise((res) => setTimeout(res, this.delayMs));
    if (this.fail) throw new Error('device gone');
    this.events.push(`map ${r.hva.toString(16)}`);
  }
  async unmap(r: DmaRegion): Promise<void> { this.events.push(`unmap ${r.hva.toString(16)}`); }
}

const R = (hva: number, size = 0x100000): DmaRegion => ({ hva, size, fd: 7, offset: 0 });

describe('DmaRegistry', () => {
  it('maps new regions on every subscriber before resolving; unmaps gone ones; late subscribers catch up', async () => {
    const reg = new DmaRegistry();
    const a = new Sub('a', 20), b = new Sub('b', 0, true);
    await reg.subscribe(a);
    await reg.subscribe(b);
    const guest1 = {}, guest2 = {};
    await reg.setRegions(guest1, [R(0x10000), R(0x20000)]);
    expect(a.events).toEqual(['map 10000', 'map 20000']);        // awaited: done when setRegions resolved
    await reg.setRegions(guest2, [R(0x90000)]);
    await reg.setRegions(guest1, [R(0x20000), R(0x30000)]);     // one stays, one goes, one comes
    expect(a.events.slice(3)).toEqual(['unmap 10000', 'map 30000']);
    const c = new Sub('c');
    await reg.subscribe(c);
    expect(c.events.sort()).toEqual(['map 20000', 'map 30000', 'map 90000']);
    await reg.setRegions(guest1, []);
    expect(c.events.slice(3).sort()).toEqual(['unmap 20000', 'unmap 30000']);
    expect(reg.all().map((r) => r.hva)).toEqual([0x90000]);
    expect(reg.stats.regions).toBe(1);
  });

  it('regions without an fd are not offered for DMA', async () => {
    const reg = new DmaRegistry();
    const a = new Sub('a');
    await reg.subscribe(a);
    await reg.setRegions({}, [{ hva: 0x5000, size: 4096, fd: -1, offset: 0 }]);
    expect(a.events).toEqual([]);
  });
});
