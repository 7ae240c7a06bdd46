// A fake NVMe controller on synthetic memory for the NVMe bdev's unit tests: it serves
// one I/O queue pair of an NvmeQpair (SQ entries up to the tail doorbell, completions with
// the phase bit), moving data with the emulated controller's own PRP walker (so the
// driver's PRPs are checked by the target's validation).
import { mmap, view } from '../../../native/libc.js';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import { SegmentTable } from '../../../bdev/bdev_io.js';
import { walkPrp, copySegs } from '../../../targets/nvme/prp.js';
import { QpairSpec } from '../../../bdev/nvme/qpair.js';
import { createState } from '../../../bdev/nvme/ctrlr_state.js';
import { eventfd } from '../../../native/libc.js';

export const PAGE = 4096;

/** Anonymous memory at a known hva (IOVA = hva). */
export function region(size: number): { hva: number; u8: Uint8Array } {
  const hva = mmap(size);
  return { hva, u8: new Uint8Array(view(hva, size)) };
}

export class FakeNvme {
  readonly spec: QpairSpec;
  readonly state = createState();
  readonly disk: Uint8Array;
  private readonly sq: Uint32Array;
  private readonly cq: Uint32Array;
  private readonly db: Uint32Array;
  private sqHead = 0;
  private cqTail = 0;
  private phase = 1;
  readonly mem: GuestMemory;
  readonly segs = new SegmentTable(1024);
  /** Commands seen: opcode, nsid, slba, nlb (1-based), prp1, prp2, cdw10, cdw11. */
  readonly log: { opc: number; nsid: number; slba: number; nlb: number; prp1: number; prp2: number; cdw10: number; cdw11: number; cid: number }[] = [];
  /** Status to answer per opcode (SCT<<8|SC), default success. */
  failWith = new Map<number, number>();
  /** Commands fetched and not completed (held while `hold` is set). */
  held: { cid: number; status: number }[] = [];
  hold = false;

  constructor(readonly depth: number, readonly blockSize: number, diskBlocks: number, guest: { hva: number; size: number }[]) {
    const sqBytes = depth * 64, cqBytes = depth * 16;
    const q = region(PAGE * 4 + sqBytes + cqBytes + (depth - 1) * PAGE);
    const sqHva = q.hva, cqHva = q.hva + Math.ceil(sqBytes / PAGE) * PAGE, listHva = cqHva + Math.ceil(cqBytes / PAGE) * PAGE;
    const dbHva = listHva + (depth - 1) * PAGE;
    this.spec = { ctrlr: 'Fake0', serial: Math.floor(Math.random() * 1e9), index: 0, qid: 1, depth, sqHva, cqHva, listHva,
      sqDbHva: dbHva, cqDbHva: dbHva + 4, wakeFd: eventfd(), irqFd: -1, state: this.state.buffer as SharedArrayBuffer,
      maxXferBytes: 128 * 1024, timeoutMs: 0 };
    this.sq = new Uint32Array(view(sqHva, sqBytes));
    this.cq = new Uint32Array(view(cqHva, cqBytes));
    this.db = new Uint32Array(view(dbHva, 8));
    this.disk = new Uint8Array(diskBlocks * blockSize);
    // the device reaches the guest buffers and the PRP list pages (IOVA = hva)
    const all = [...guest, { hva: listHva, size: (depth - 1) * PAGE }];
    this.mem = new GuestMemory(all.map((g) => ({ gpa: g.hva, size: g.size, uaddr: g.hva, hva: g.hva })));
  }

  get sqTailDoorbell(): number { return this.db[0]; }
  get cqHeadDoorbell(): number { return this.db[1]; }

  /** Fetches every SQ entry up to the tail doorbell, executes it, posts completions (unless held). */
  serve(): number {
    let n = 0;
    while (this.sqHead !== this.db[0]) {
      const o = this.sqHead * 16, s = this.sq;
      this.sqHead = (this.sqHead + 1) % this.depth;
      const opc = s[o] & 0xff, cid = s[o] >>> 16, nsid = s[o + 1];
      const prp1 = s[o + 6] + s[o + 7] * 2 ** 32, prp2 = s[o + 8] + s[o + 9] * 2 ** 32;
      const slba = s[o + 10] + s[o + 11] * 2 ** 32, nlb = (s[o + 12] & 0xffff) + 1;
      this.log.push({ opc, nsid, slba, nlb, prp1, prp2, cdw10: s[o + 10], cdw11: s[o + 11], cid });
      let status = this.failWith.get(opc) ?? 0;
      if (!status && (opc === 1 || opc === 2)) {
        const len = nlb * this.blockSize;
        const k = walkPrp(this.mem, prp1, prp2, len, this.segs, 0, 1024);
        if (k < 0) status = -k;
        else {
          const d = this.disk.subarray(slba * this.blockSize, slba * this.blockSize + len);
          copySegs(this.mem, this.segs, 0, k, d, opc === 1 ? 'in' : 'out');
        }
      }
      if (!status && opc === 8) this.disk.fill(0, slba * this.blockSize, (slba + nlb) * this.blockSize);
      if (this.hold) this.held.push({ cid, status }); else this.post(cid, status);
      n++;
    }
    return n;
  }

  post(cid: number, status: number): void {
    const o = this.cqTail * 4;
    this.cq[o] = 0; this.cq[o + 1] = 0; this.cq[o + 2] = this.sqHead | (1 << 16);
    Atomics.store(this.cq, o + 3, cid | (this.phase << 16) | (status << 17));
    this.cqTail = (this.cqTail + 1) % this.depth;
    if (this.cqTail === 0) this.phase ^= 1;
  }

  release(): void { for (const h of this.held.splice(0)) this.post(h.cid, h.status); }

  /** As a controller reset: queues empty, indices back to 0. */
  resetQueues(): void { this.sqHead = 0; this.cqTail = 0; this.phase = 1; this.held = []; this.db[0] = 0; this.db[1] = 0; }
}
