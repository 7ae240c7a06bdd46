// The NVMe bdev's PRP planner: commands cut from scatter lists, PRP1/PRP2/list entries,
// and the layouts it refuses. Every plan is checked by the emulated controller's PRP walker.
import { describe, expect, it } from 'vitest';
import { SegmentTable } from '../../../bdev/bdev_io.js';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import { MAX_PRP_BYTES, PRP_ERR_BLOCK, PRP_ERR_DWORD, PrpCursor, planCommand } from '../../../bdev/nvme/prp.js';
import { walkPrp } from '../../../targets/nvme/prp.js';
import { PAGE, region } from './bdev_nvme_fake.js';

const guest = region(64 * PAGE);
const lists = region(PAGE);
const mem = new GuestMemory([{ gpa: guest.hva, size: 64 * PAGE, uaddr: guest.hva, hva: guest.hva },
  { gpa: lists.hva, size: PAGE, uaddr: lists.hva, hva: lists.hva }]);
const listWords = new Uint32Array(lists.u8.buffer, lists.u8.byteOffset, PAGE / 4);

/** Plans all commands of a scatter list [(offset in guest, length)]; returns [bytes, prp1, prp2, entries] each, or the error. */
function plan(segs: [number, number][], bs: number, max = 128 * 1024): (number[] | string)[] {
  const t = new SegmentTable(segs.length);
  segs.forEach(([o, l], i) => { t.region[i] = 0; t.off[i] = o; t.len[i] = l; });
  const c = new PrpCursor();
  const out: (number[] | string)[] = [];
  const total = segs.reduce((n, s) => n + s[1], 0);
  let done = 0;
  while (done < total) {
    const b = planCommand(c, t, mem.hva, segs.length, Math.min(max, total - done), bs, listWords, 0, lists.hva);
    if (b < 0) { out.push(`err${c.err}`); break; }
    // the emulated controller accepts it and sees exactly these bytes
    const st = new SegmentTable(600);
    const k = walkPrp(mem, c.prp1, c.prp2, b, st, 0, 600);
    expect(k, `walkPrp status ${-k}`).toBeGreaterThan(0);
    let sum = 0;
    for (let i = 0; i < k; i++) sum += st.len[i];
    expect(sum).toBe(b);
    out.push([b, c.prp1 - guest.hva, c.prp2 === 0 ? 0 : c.prp2 === lists.hva ? -1 : c.prp2 - guest.hva, c.entries]);
    done += b;
  }
  return out;
}

describe('NVMe bdev PRP planning', () => {
  it('one page: PRP1 only; two pages: PRP2 is the second page; more: PRP2 is the list', () => {
    expect(plan([[0, 4096]], 512)).toEqual([[4096, 0, 0, 1]]);
    expect(plan([[0, 8192]], 512)).toEqual([[8192, 0, 4096, 2]]);
    expect(plan([[0, 16384]], 512)).toEqual([[16384, 0, -1, 4]]);
    expect([listWords[0], listWords[2], listWords[4]].map((w) => w - (guest.hva >>> 0))).toEqual([4096, 8192, 12288]);
  });

  it('PRP1 may start inside a page (dword aligned); the rest are whole pages', () => {
    expect(plan([[512, 8192]], 512)).toEqual([[8192, 512, -1, 3]]);
    expect(plan([[2, 512]], 512)).toEqual([`err${PRP_ERR_DWORD}`]);
  });

  it('page-aligned segments in the middle join one command; a break cuts it', () => {
    expect(plan([[0, 4096], [16384, 4096], [32768, 8192]], 512)).toEqual([[16384, 0, -1, 4]]);
    // first segment ends inside a page: the next command starts at the second segment
    expect(plan([[0, 2048], [8192, 4096]], 512)).toEqual([[2048, 0, 0, 1], [4096, 8192, 0, 1]]);
    // second segment starts inside a page
    expect(plan([[0, 4096], [8192 + 1024, 3072]], 512)).toEqual([[4096, 0, 0, 1], [3072, 9216, 0, 1]]);
  });

  it('a cut inside a block backs off to the last whole block, or fails the I/O', () => {
    // 6 KiB then a break, 4 KiB blocks: cannot be cut into whole blocks
    expect(plan([[0, 6144], [16384, 2048]], 4096)).toEqual([[4096, 0, 0, 1], `err${PRP_ERR_BLOCK}`]);
    expect(plan([[0, 2048], [8192, 2048]], 4096)).toEqual([`err${PRP_ERR_BLOCK}`]);
    // 1 KiB blocks: 6 KiB + 2 KiB = two commands of whole blocks
    expect(plan([[0, 6144], [16384, 2048]], 1024)).toEqual([[6144, 0, 4096, 2], [2048, 16384, 0, 1]]);
  });

  it('a transfer larger than the command limit is cut at the limit', () => {
    expect(plan([[0, 64 * 1024]], 512, 16 * 1024).map((x) => (x as number[])[0])).toEqual([16384, 16384, 16384, 16384]);
    expect(MAX_PRP_BYTES).toBe(512 * PAGE);
  });
});
