// PRP walking over synthetic guest memory: layouts Linux produces, and hostile values.
import { afterEach, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import { SegmentTable } from '../../../bdev/bdev_io.js';
import { walkPrp, copySegs } from '../../../targets/nvme/prp.js';
import { SC } from '../../../targets/nvme/nvme_defs.js';
import { FakeGuest } from '../virtio/fake_driver.js';

const MiB = 1 << 20, PAGE = 4096;
const R0 = 0x10_0000, R1 = 0x30_0000;
let g: FakeGuest;
afterEach(() => g?.destroy());

function setup() {
  g = new FakeGuest([{ gpa: R0, size: 2 * MiB }, { gpa: R1, size: MiB }]);
  const mem = new GuestMemory(g.regions);
  const segs = new SegmentTable(64);
  const u64 = (gpa: number, v: number) => {
    const r = mem.regionOf(gpa), o = gpa - mem.gpa[r];
    new DataView(mem.u8[r].buffer, mem.u8[r].byteOffset).setBigUint64(o, BigInt(v), true);
  };
  return { mem, segs, u64 };
}

const total = (s: SegmentTable, n: number) => { let t = 0; for (let i = 0; i < n; i++) t += s.len[i]; return t; };

describe('walkPrp', () => {
  it('one page with an offset: PRP1 only', () => {
    const { mem, segs } = setup();
    const n = walkPrp(mem, R0 + 0x200, 0, 512, segs, 0, 64);
    expect(n).toBe(1);
    expect(segs.region[0]).toBe(0); expect(segs.off[0]).toBe(0x200); expect(segs.len[0]).toBe(512);
  });

  it('two pages: PRP2 is a data pointer; adjacent pages merge into one segment', () => {
    const { mem, segs } = setup();
    expect(walkPrp(mem, R0 + 0x1000, R0 + 0x2000, 8192, segs, 0, 64)).toBe(1);
    expect(segs.len[0]).toBe(8192);
    expect(walkPrp(mem, R0 + 0x1800, R0 + 0x8000, 4096, segs, 0, 64)).toBe(2);
    expect(segs.len[0]).toBe(0x800); expect(segs.off[1]).toBe(0x8000); expect(segs.len[1]).toBe(0x800);
  });

  it('a PRP list (128 KiB, scattered pages) and a list chained over a page boundary', () => {
    const { mem, segs, u64 } = setup();
    const list = R0 + 0x10_0000;
    for (let i = 0; i < 31; i++) u64(list + 8 * i, R0 + 0x4_0000 + 2 * i * PAGE);
    expect(walkPrp(mem, R0 + 0x2_0000, list, 32 * PAGE, segs, 0, 64)).toBe(32);
    expect(total(segs, 32)).toBe(32 * PAGE);
    // list starting at the last entry of a page: that entry chains to the next list page
    const l2 = R0 + 0x11_0000 + PAGE - 8, next = R0 + 0x12_0000;
    u64(l2, next);
    u64(next, R1); u64(next + 8, R1 + 2 * PAGE);
    const n = walkPrp(mem, R0, l2, 3 * PAGE, segs, 0, 64);
    expect(n).toBe(3);
    expect(segs.region[1]).toBe(1);
  });

  it('hostile: unmapped pages, bad offsets, self-looping lists, too many segments', () => {
    const { mem, segs, u64 } = setup();
    expect(walkPrp(mem, 0x1000, 0, 512, segs, 0, 64)).toBe(-SC.DATA_XFER_ERROR);
    expect(walkPrp(mem, R0 + 2, 0, 512, segs, 0, 64)).toBe(-SC.PRP_OFFSET_INVALID);
    expect(walkPrp(mem, R0, R0 + 0x1010, 8192, segs, 0, 64)).toBe(-SC.PRP_OFFSET_INVALID);
    expect(walkPrp(mem, R0, 2 ** 60, 8192, segs, 0, 64)).toBe(-SC.DATA_XFER_ERROR);
    // a data page that straddles the end of guest memory
    expect(walkPrp(mem, R1 + MiB - PAGE, R1 + MiB, 8192, segs, 0, 64)).toBe(-SC.DATA_XFER_ERROR);
    // a list page whose chain pointer points at itself
    const l = R0 + 0x13_0000;
    u64(l + PAGE - 8, l);
    for (let i = 0; i < 511; i++) u64(l + 8 * i, R0 + (i % 16) * 2 * PAGE);
    expect(walkPrp(mem, R0, l, 2000 * PAGE, segs, 0, 2048)).toBeLessThan(0);
    // entries pointing outside memory, and a data entry with an offset
    u64(l, 0x7000_0000);
    expect(walkPrp(mem, R0, l, 3 * PAGE, segs, 0, 64)).toBe(-SC.DATA_XFER_ERROR);
    u64(l, R0 + 0x10);
    expect(walkPrp(mem, R0, l, 3 * PAGE, segs, 0, 64)).toBe(-SC.PRP_OFFSET_INVALID);
    // more segments than the table holds
    for (let i = 0; i < 8; i++) u64(l + 8 * i, R0 + 2 * i * PAGE + 0x8000);
    expect(walkPrp(mem, R0 + 0x100_000, l, 9 * PAGE, segs, 0, 4)).toBe(-SC.INVALID_FIELD);
    expect(g.canariesIntact()).toBe(true);
  });

  it('copySegs moves data both ways', () => {
    const { mem, segs } = setup();
    const n = walkPrp(mem, R0 + 0xff0, R0 + 0x3000, 0x20, segs, 0, 64);
    expect(n).toBe(2);
    const src = Uint8Array.from({ length: 0x20 }, (_, i) => i + 1);
    copySegs(mem, segs, 0, n, src, 'out');
    const back = new Uint8Array(0x20);
    copySegs(mem, segs, 0, n, back, 'in');
    expect([...back]).toEqual([...src]);
    expect(mem.u8[0][0x3000]).toBe(0x11);
  });
});
