// SGL walking over synthetic guest memory: the layouts Linux produces (one data block;
// a Last Segment list), chained segments, bit buckets, and hostile SGLs answered with
// the status codes the NVMe base spec names.
import { afterEach, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import { SegmentTable } from '../../../bdev/bdev_io.js';
import { walkSgl } from '../../../targets/nvme/sgl.js';
import { MAX_SGL_DESCRIPTORS, SC, SGL } from '../../../targets/nvme/nvme_defs.js';
import * as libc from '../../../native/libc.js';
import { FakeGuest } from '../virtio/fake_driver.js';

const MiB = 1 << 20, PAGE = 4096;
const R0 = 0x10_0000, R1 = 0x30_0000;
let g: FakeGuest;
const unmaps: (() => void)[] = [];
afterEach(() => { g?.destroy(); for (const f of unmaps.splice(0)) f(); });

interface Desc { type: number; addr?: number; len: number; sub?: number }

function setup() {
  g = new FakeGuest([{ gpa: R0, size: 2 * MiB }, { gpa: R1, size: MiB }]);
  // a private region in front of the guest's, as the controller has (the bit bucket lives there)
  const privLen = 256 * 1024, priv = libc.mmap(privLen);
  unmaps.push(() => libc.munmap(priv, privLen));
  const mem = new GuestMemory(g.regions, [{ gpa: 0, size: privLen, uaddr: 0, hva: priv }]);
  const segs = new SegmentTable(64);
  const sqe = new Uint8Array(64);
  const put = (b: Uint8Array, o: number, d: Desc) => {
    const dv = new DataView(b.buffer, b.byteOffset + o, 16);
    dv.setBigUint64(0, BigInt(d.addr ?? 0), true);
    dv.setUint32(8, d.len >>> 0, true);
    b[o + 12] = 0; b[o + 13] = 0; b[o + 14] = 0;
    b[o + 15] = (d.type << 4) | (d.sub ?? 0);
  };
  const sgl1 = (d: Desc) => put(sqe, 24, d);
  /** Writes descriptors at guest address gpa. */
  const list = (gpa: number, ds: Desc[]) => {
    const r = mem.regionOf(gpa), o = gpa - mem.gpa[r];
    ds.forEach((d, i) => put(mem.u8[r], o + 16 * i, d));
    return { type: SGL.LAST_SEGMENT, addr: gpa, len: 16 * ds.length };
  };
  const walk = (len: number, bb = false, max = 64) => walkSgl(mem, sqe, 24, len, segs, 0, max, bb ? { region: 0, off: 0 } : null);
  return { mem, segs, sgl1, list, walk };
}

const data = (addr: number, len: number): Desc => ({ type: SGL.DATA_BLOCK, addr, len });

describe('walkSgl', () => {
  it('one Data Block in the command (what Linux sends for one contiguous segment)', () => {
    const { segs, sgl1, walk } = setup();
    sgl1(data(R0 + 0x123, 0x9000));                    // byte aligned, several pages, no PRP rules
    expect(walk(0x9000)).toBe(1);
    expect([segs.region[0], segs.off[0], segs.len[0]]).toEqual([1, 0x123, 0x9000]);
    // R0 ends where R1 starts: a block across the boundary is two segments
    sgl1(data(R0 + 2 * MiB - 0x100, 0x200));
    expect(walk(0x200)).toBe(2);
    expect([segs.region[1], segs.off[1], segs.len[1]]).toEqual([2, 0, 0x100]);
  });

  it('a Last Segment list of Data Blocks (Linux for larger scattered I/O), merging adjacent ones', () => {
    const { segs, sgl1, list, walk } = setup();
    sgl1(list(R0 + 0x8000, [data(R0 + 0x4_0000, 0x8000), data(R0 + 0x4_8000, 0x8000), data(R1 + 0x1000, 0x1000), data(R0 + 0x10, 0x10)]));
    expect(walk(0x11010)).toBe(3);
    expect([segs.region[0], segs.off[0], segs.len[0]]).toEqual([1, 0x4_0000, 0x10000]); // merged
    expect([segs.region[1], segs.off[1], segs.len[1]]).toEqual([2, 0x1000, 0x1000]);
    expect([segs.region[2], segs.off[2], segs.len[2]]).toEqual([1, 0x10, 0x10]);
  });

  it('chained Segments, zero-length Data Blocks, a Segment that ends the SGL with data', () => {
    const { segs, sgl1, list, walk } = setup();
    const l3 = list(R0 + 0x3000, [data(R0 + 0x2_0000, 0x200), { type: SGL.DATA_BLOCK, addr: 0, len: 0 }, data(R0 + 0x2_1000, 0x200)]);
    const l2 = list(R0 + 0x2000, [data(R0 + 0x1_0000, 0x400), l3]);
    const l1 = list(R0 + 0x1000, [data(R0 + 0x4000, 0x200), { ...l2, type: SGL.SEGMENT }]);
    sgl1({ ...l1, type: SGL.SEGMENT });
    expect(walk(0xa00)).toBe(4);
    expect([...segs.len.subarray(0, 4)]).toEqual([0x200, 0x400, 0x200, 0x200]);
    // a Segment (not Last Segment) whose list ends with a data block: the SGL ends there
    const only = list(R0 + 0x5000, [data(R0 + 0x6000, 0x1000)]);
    sgl1({ ...only, type: SGL.SEGMENT });
    expect(walk(0x1000)).toBe(1);
  });

  it('Bit Buckets: reads discard into the private region; elsewhere a type error', () => {
    const { segs, sgl1, list, walk } = setup();
    sgl1(list(R0 + 0x8000, [data(R0 + 0x4_0000, 0x200), { type: SGL.BIT_BUCKET, len: 0x400 }, data(R0 + 0x4_1000, 0x200)]));
    expect(walk(0x800, true)).toBe(3);
    expect([segs.region[1], segs.off[1], segs.len[1]]).toEqual([0, 0, 0x400]);
    expect(walk(0x800, false)).toBe(-SC.SGL_DESCRIPTOR_TYPE_INVALID);
    sgl1({ type: SGL.BIT_BUCKET, len: 0x1000 });
    expect(walk(0x1000, true)).toBe(1);
  });

  it('hostile: types and sub types', () => {
    const { sgl1, list, walk } = setup();
    sgl1({ type: SGL.KEYED_DATA_BLOCK, addr: R0, len: 512 });
    expect(walk(512)).toBe(-SC.SGL_DESCRIPTOR_TYPE_INVALID);
    sgl1({ type: SGL.TRANSPORT_DATA_BLOCK, addr: R0, len: 512 });
    expect(walk(512)).toBe(-SC.SGL_DESCRIPTOR_TYPE_INVALID);
    sgl1({ type: 0xf, addr: R0, len: 512 });
    expect(walk(512)).toBe(-SC.SGL_DESCRIPTOR_TYPE_INVALID);
    sgl1({ type: SGL.DATA_BLOCK, sub: 1, addr: R0, len: 512 });   // Offset: fabrics only
    expect(walk(512)).toBe(-SC.SGL_OFFSET_INVALID);
    sgl1({ type: SGL.DATA_BLOCK, sub: 7, addr: R0, len: 512 });
    expect(walk(512)).toBe(-SC.SGL_DESCRIPTOR_TYPE_INVALID);
    sgl1({ ...list(R0 + 0x8000, [data(R0, 512)]), sub: 1 });
    expect(walk(512)).toBe(-SC.SGL_OFFSET_INVALID);
    // a keyed descriptor inside a list
    sgl1(list(R0 + 0x8000, [data(R0, 256), { type: SGL.KEYED_DATA_BLOCK, addr: R0 + 256, len: 256 }]));
    expect(walk(512)).toBe(-SC.SGL_DESCRIPTOR_TYPE_INVALID);
  });

  it('hostile: segment descriptors misplaced, bad lengths, a Last Segment that chains on', () => {
    const { sgl1, list, walk } = setup();
    const tail = list(R0 + 0x9000, [data(R0, 512)]);
    // a Last Segment descriptor that is not the last descriptor of its segment
    sgl1(list(R0 + 0x8000, [tail, data(R0 + 512, 512)]));
    expect(walk(1024)).toBe(-SC.INVALID_NUM_SGL_DESCRIPTORS);
    sgl1({ ...list(R0 + 0x8000, [{ ...tail, type: SGL.SEGMENT }, data(R0 + 512, 512)]), type: SGL.SEGMENT });
    expect(walk(1024)).toBe(-SC.INVALID_NUM_SGL_DESCRIPTORS);
    // the last segment (pointed to by a Last Segment descriptor) chains further
    sgl1(list(R0 + 0x8000, [data(R0 + 512, 512), tail]));
    expect(walk(1024)).toBe(-SC.INVALID_SGL_SEGMENT);
    // segment lengths: zero, not a multiple of 16; an unaligned segment
    sgl1({ type: SGL.LAST_SEGMENT, addr: R0 + 0x8000, len: 0 });
    expect(walk(512)).toBe(-SC.INVALID_SGL_SEGMENT);
    sgl1({ type: SGL.LAST_SEGMENT, addr: R0 + 0x8000, len: 24 });
    expect(walk(512)).toBe(-SC.INVALID_SGL_SEGMENT);
    list(R0 + 0x8004, [data(R0, 512)]);
    sgl1({ type: SGL.LAST_SEGMENT, addr: R0 + 0x8004, len: 16 });
    expect(walk(512)).toBe(-SC.INVALID_SGL_SEGMENT);
  });

  it('hostile: lengths that disagree with the transfer', () => {
    const { sgl1, list, walk } = setup();
    sgl1(data(R0, 4096));
    expect(walk(2048)).toBe(-SC.DATA_SGL_LENGTH_INVALID);  // longer than the transfer (SGLS bit 18 clear)
    expect(walk(8192)).toBe(-SC.DATA_SGL_LENGTH_INVALID);  // too short
    sgl1(list(R0 + 0x8000, [data(R0, 512), data(R0 + 4096, 512)]));
    expect(walk(512 * 3)).toBe(-SC.DATA_SGL_LENGTH_INVALID);
    expect(walk(512)).toBe(-SC.DATA_SGL_LENGTH_INVALID);
    sgl1({ type: SGL.DATA_BLOCK, addr: R0, len: 0 });
    expect(walk(512)).toBe(-SC.DATA_SGL_LENGTH_INVALID);
    sgl1(data(R0, 0xffff_ffff));
    expect(walk(128 * 1024)).toBe(-SC.DATA_SGL_LENGTH_INVALID);
  });

  it('hostile: addresses outside guest memory, for data and for segments', () => {
    const { sgl1, list, walk } = setup();
    sgl1(data(0x1000, 512));
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
    sgl1(data(2 ** 60, 512));
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
    sgl1(data(R1 + MiB - 256, 512));                      // straddles the end of guest memory
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
    sgl1({ type: SGL.LAST_SEGMENT, addr: 0x7000_0000, len: 32 });
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
    sgl1({ type: SGL.LAST_SEGMENT, addr: 2 ** 63, len: 32 });
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
    // a list running off the end of guest memory: its first descriptor is fine, the second is not there
    list(R1 + MiB - 16, [data(R0, 256)]);
    sgl1({ type: SGL.LAST_SEGMENT, addr: R1 + MiB - 16, len: 32 });
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
    // no guest address reaches the private region (index 0) in front of the guest's
    sgl1(data(0, 512));
    expect(walk(512)).toBe(-SC.DATA_XFER_ERROR);
  });

  it('hostile: chains that loop or never end, more segments than a command holds', () => {
    const { segs, sgl1, list, walk } = setup();
    // a segment whose last descriptor points back at itself (with zero-length data before it)
    const self = R0 + 0xa000;
    list(self, [{ type: SGL.DATA_BLOCK, addr: 0, len: 0 }, { type: SGL.SEGMENT, addr: self, len: 32 }]);
    sgl1({ type: SGL.SEGMENT, addr: self, len: 32 });
    expect(walk(512)).toBe(-SC.INVALID_SGL_SEGMENT);
    // two segments pointing at each other, with data: runs out of data first
    const a = R0 + 0xb000, b = R0 + 0xc000;
    list(a, [data(R0, 16), { type: SGL.SEGMENT, addr: b, len: 32 }]);
    list(b, [data(R0 + 16, 16), { type: SGL.SEGMENT, addr: a, len: 32 }]);
    sgl1({ type: SGL.SEGMENT, addr: a, len: 32 });
    expect(walk(4096)).toBe(-SC.INVALID_SGL_SEGMENT);      // the descriptor budget ends the loop
    expect(walk(32)).toBe(-SC.DATA_SGL_LENGTH_INVALID);     // data done, the chain goes on with data
    // one huge segment: refused before reading it
    sgl1({ type: SGL.LAST_SEGMENT, addr: R0, len: (MAX_SGL_DESCRIPTORS + 1) * 16 });
    expect(walk(512)).toBe(-SC.INVALID_SGL_SEGMENT);
    sgl1({ type: SGL.LAST_SEGMENT, addr: R0, len: 0xffff_fff0 });
    expect(walk(512)).toBe(-SC.INVALID_SGL_SEGMENT);
    // more (unmergeable) pieces than the segment table holds for a command
    const many = Array.from({ length: 9 }, (_, i) => data(R0 + 0x2_0000 + 2 * i * PAGE, 512));
    sgl1(list(R0 + 0xd000, many));
    expect(walk(9 * 512, false, 8)).toBe(-SC.INVALID_FIELD);
    expect(walk(9 * 512, false, 9)).toBe(9);
    expect(segs.len[8]).toBe(512);
    expect(g.canariesIntact()).toBe(true);
  });
});
