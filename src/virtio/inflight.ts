// Inflight I/O tracking for a split virtqueue (vhost-user INFLIGHT_SHMFD). The region is
// shared with the front end, which keeps it across a back-end restart; its layout is the
// one libvhost-user and DPDK use:
//   header: u64 features, u16 version, u16 desc_num, u16 last_batch_head, u16 used_idx
//   desc[i]: u8 inflight, u8 pad[5], u16 next, u64 counter        (16 bytes each)
// A head is marked when fetched and cleared after its used entry is published; the heads
// completed in one batch are linked through `next` so a crash between publishing the used
// index and clearing them can be repaired.
import { TWO32 } from '../memory/guest_memory.js';

export const INFLIGHT_VERSION = 1;
const ALIGN = 64;

export function inflightQueueBytes(queueSize: number): number {
  return Math.ceil((16 + 16 * queueSize) / ALIGN) * ALIGN;
}

export interface InflightRecovery {
  /** Index of the next avail entry to fetch. */
  lastAvail: number;
  /** Heads to execute again, oldest first. */
  resubmit: number[];
}

export class InflightRegion {
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private counter = 1;
  private readonly batch: Uint16Array;
  private batchLen = 0;

  /** `buf` covers exactly this queue's part of the region (16-byte aligned). */
  constructor(buf: ArrayBuffer, byteOffset: number, readonly queueSize: number) {
    const len = inflightQueueBytes(queueSize);
    this.u8 = new Uint8Array(buf, byteOffset, len);
    this.u16 = new Uint16Array(buf, byteOffset, len >> 1);
    this.u32 = new Uint32Array(buf, byteOffset, len >> 2);
    this.batch = new Uint16Array(queueSize);
  }

  private descByte(head: number): number { return 16 + 16 * head; }

  /** A head was taken off the avail ring. */
  fetched(head: number): void {
    const b = this.descByte(head), w = b >> 2, c = this.counter++;
    this.u32[w + 2] = c % TWO32;
    this.u32[w + 3] = Math.floor(c / TWO32);
    this.u8[b] = 1;
  }

  /** A head's used entry was written (not yet published). */
  completed(head: number): void {
    const prev = this.batchLen > 0 ? this.batch[this.batchLen - 1] : head;
    this.u16[(this.descByte(head) >> 1) + 3] = prev;   // next: the previous head of this batch
    this.u16[6] = head;                                 // last_batch_head
    this.batch[this.batchLen++] = head;
  }

  /** The used index `usedIdx` was published: the batch is no longer in flight. */
  published(usedIdx: number): void {
    const n = this.batchLen;
    for (let i = 0; i < n; i++) this.u8[this.descByte(this.batch[i])] = 0;
    this.batchLen = 0;
    Atomics.store(this.u16, 7, usedIdx);                // used_idx, after the flags
  }

  /**
   * Reads the state a previous back end left: repairs a half-published batch and lists the
   * heads still in flight. `ringUsedIdx` is used->idx of the ring. Returns null for a fresh
   * region (which is initialized).
   */
  recover(ringUsedIdx: number): InflightRecovery | null {
    const u8 = this.u8, u16 = this.u16, u32 = this.u32;
    if (u16[4] !== INFLIGHT_VERSION || u16[5] !== this.queueSize) {
      u8.fill(0);
      u16[4] = INFLIGHT_VERSION;
      u16[5] = this.queueSize;
      u16[7] = ringUsedIdx;
      return null;
    }
    let missed = (ringUsedIdx - u16[7]) & 0xffff;
    if (missed > this.queueSize) missed = this.queueSize;   // a corrupt region: never loop long
    for (let h = u16[6], k = 0; k < missed; k++) {
      if (h >= this.queueSize) break;
      u8[this.descByte(h)] = 0;
      h = u16[(this.descByte(h) >> 1) + 3];
    }
    u16[7] = ringUsedIdx;
    const heads: { h: number; c: number }[] = [];
    let max = 0;
    for (let h = 0; h < this.queueSize; h++) {
      const b = this.descByte(h);
      if (u8[b] !== 1) { u8[b] = 0; continue; }
      const c = u32[(b >> 2) + 2] + u32[(b >> 2) + 3] * TWO32;
      heads.push({ h, c });
      if (c > max) max = c;
    }
    heads.sort((a, b) => a.c - b.c);
    this.counter = max + 1;
    return { lastAvail: (ringUsedIdx + heads.length) & 0xffff, resubmit: heads.map((x) => x.h) };
  }
}
