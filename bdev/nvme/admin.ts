// The admin queue, on the control plane: one command at a time (a promise chain), its
// completion polled with the phase bit on a short timer. Doorbells are stores into the
// mapped doorbell page.
import { view } from '../../native/libc.js';
import { ADMIN_DEPTH, CQE_WORDS, SQE_WORDS, TWO32, cqeStatus, statusText } from './nvme_spec.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class AdminError extends Error {
  constructor(readonly opc: number, readonly status: number, what: string) {
    super(`${what} failed: ${statusText(status)}`);
  }
}

export interface AdminCmd {
  opc: number;
  nsid?: number;
  prp1?: number;
  prp2?: number;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
}

export class AdminQueue {
  private readonly sq: Uint32Array;
  private readonly cq: Uint32Array;
  private tail = 0;
  private head = 0;
  private phase = 1;
  private cid = 0;
  private chain: Promise<unknown> = Promise.resolve();

  /** sqHva/cqHva: ADMIN_DEPTH entries each, in DMA memory; doorbells: hva of the SQ 0 / CQ 0 doorbells. */
  constructor(sqHva: number, cqHva: number, private readonly sqDb: Uint32Array, private readonly cqDb: Uint32Array,
    private readonly timeoutMs: number, private readonly isDead: () => string | null) {
    this.sq = new Uint32Array(view(sqHva, ADMIN_DEPTH * SQE_WORDS * 4));
    this.cq = new Uint32Array(view(cqHva, ADMIN_DEPTH * CQE_WORDS * 4));
  }

  /** After a controller reset: both rings start over empty. */
  restart(): void {
    this.sq.fill(0); this.cq.fill(0);
    this.tail = 0; this.head = 0; this.phase = 1;
  }

  /** Runs one command; resolves with completion DW0, rejects on an error status or timeout. */
  run(c: AdminCmd, what: string): Promise<number> {
    const p = this.chain.then(() => this.exec(c, what));
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async exec(c: AdminCmd, what: string): Promise<number> {
    const dead = this.isDead();
    if (dead) throw new Error(`${what}: ${dead}`);
    const o = this.tail * SQE_WORDS, s = this.sq;
    const cid = (this.cid = (this.cid + 1) & 0xffff);
    s.fill(0, o, o + SQE_WORDS);
    const p1 = c.prp1 ?? 0, p2 = c.prp2 ?? 0;
    s[o] = c.opc | (cid << 16); s[o + 1] = c.nsid ?? 0;
    s[o + 6] = p1 >>> 0; s[o + 7] = (p1 / TWO32) >>> 0; s[o + 8] = p2 >>> 0; s[o + 9] = (p2 / TWO32) >>> 0;
    s[o + 10] = (c.cdw10 ?? 0) >>> 0; s[o + 11] = (c.cdw11 ?? 0) >>> 0; s[o + 12] = (c.cdw12 ?? 0) >>> 0;
    this.tail = (this.tail + 1) % ADMIN_DEPTH;
    Atomics.store(this.sqDb, 0, this.tail);
    const end = Date.now() + this.timeoutMs;
    const e = this.head * CQE_WORDS;
    let spins = 0;
    while (((Atomics.load(this.cq, e + 3) >>> 16) & 1) !== this.phase) {
      if (Date.now() > end) throw new Error(`${what}: no completion within ${this.timeoutMs} ms (controller hung?)`);
      const d = this.isDead();
      if (d) throw new Error(`${what}: ${d}`);
      await (spins++ < 50 ? new Promise((r) => setImmediate(r)) : sleep(1));
    }
    const dw0 = this.cq[e], dw3 = this.cq[e + 3];
    this.head = (this.head + 1) % ADMIN_DEPTH;
    if (this.head === 0) this.phase ^= 1;
    Atomics.store(this.cqDb, 0, this.head);
    if ((dw3 & 0xffff) !== cid) throw new Error(`${what}: completion for command ${dw3 & 0xffff}, expected ${cid}`);
    const st = cqeStatus(dw3);
    if (st) throw new AdminError(c.opc, st, what);
    return dw0 >>> 0;
  }
}
