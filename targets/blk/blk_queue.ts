// One virtio-blk request queue on a reactor: fetches requests in batches, turns them
// into bdev I/Os, completes them on the used ring. Nothing is allocated per request.
import { CHAIN_OK, SplitQueueSpec } from '../../src/virtio/split_queue.js';
import { VirtioQueue, VirtioQueueCounters } from '../../src/virtio/virtio_queue.js';
import { MemRegionSpec, TWO32 } from '../../src/memory/guest_memory.js';
import { BdevIo, BdevIoSink } from '../../bdev/bdev_io.js';
import { BdevChannel } from '../../bdev/channel.js';
import { BdevChannelSpec, IoStatus, IoType } from '../../bdev/types.js';
import * as B from './virtio_blk.js';

export interface BlkQueueSpec {
  ctrlr: string;
  qid: number;
  mem: MemRegionSpec[];
  ring: SplitQueueSpec;
  kickFd: number;
  bdev: BdevChannelSpec;
  readOnly: boolean;
  serial: string;
  /** This queue's part of the front end's inflight-tracking region (INFLIGHT_SHMFD), if any. */
  inflight?: { addr: number };
}

/** Counters a queue keeps for diagnosis (read by the control plane on request). */
export type BlkQueueCounters = VirtioQueueCounters;

const CHAIN_ERRORS: Record<number, string> = {
  [-1]: 'a buffer address is outside guest memory', [-2]: 'the descriptor chain loops or is longer than its table',
  [-3]: 'a next index is out of range', [-4]: 'a malformed indirect descriptor table',
  [-5]: 'a device-readable descriptor follows a writable one', [-6]: 'the request has more segments than its table holds',
};

export class BlkQueue extends VirtioQueue implements BdevIoSink {
  private readonly ios: BdevIo[];
  private readonly statusRegion: Int32Array;
  private readonly statusOff: Float64Array;
  private readonly usedLen: Int32Array;
  private readonly inflight: Uint8Array;
  private readonly hdr = new Uint8Array(16);
  private readonly hdrView = new DataView(this.hdr.buffer);
  private inflightCount = 0;
  /** 512-byte sectors per block (the size in sectors follows the bdev: it can be resized). */
  private readonly spb: number;
  private readonly blockSize: number;
  private readonly serial: Uint8Array;

  constructor(readonly spec: BlkQueueSpec, readonly channel: BdevChannel) {
    super(`blk:${spec.ctrlr}:q${spec.qid}`, spec, B.BLK_CHAIN_SEGS, { requests: 0, errors: 0, badChains: 0, lastError: '' });
    const n = this.vq.size;
    this.ios = [];
    for (let i = 0; i < n; i++) {
      const io = new BdevIo(this, i, this.segs);
      io.mem = this.mem;
      this.ios.push(io);
    }
    this.statusRegion = new Int32Array(n);
    this.statusOff = new Float64Array(n);
    this.usedLen = new Int32Array(n);
    this.inflight = new Uint8Array(n);
    this.blockSize = channel.blockSize;
    this.spb = channel.blockSize / B.SECTOR;
    this.serial = new TextEncoder().encode(spec.serial.slice(0, B.VIRTIO_BLK_ID_BYTES));
  }

  get inFlight(): number { return this.inflightCount; }

  poll(): number { return this.pollRequests(); }

  /** Runs one request (handed over by VirtioQueue's fetch loop, or recovered). */
  handle(head: number): void {
    this.counters.requests++;
    if (this.inflight[head] !== 0) { this.vq.broken = `request ${head} was made available while still in flight`; return; }
    const c = this.chain, segs = this.segs;
    const base = head * B.BLK_CHAIN_SEGS;
    const rc = this.vq.readChain(head, segs, base, B.BLK_CHAIN_SEGS, c);
    if (rc !== CHAIN_OK || c.writeBytes < 1) {
      // No trustworthy status byte to fail the request with: the device needs a reset
      // (VIRTIO_CONFIG_S_NEEDS_RESET). Returning it unused would let the guest read a stale status.
      this.counters.badChains++;
      this.vq.broken = rc !== CHAIN_OK ? `request ${head}: ${CHAIN_ERRORS[rc]}`
        : `request ${head}: no device-writable status byte`;
      return;
    }
    const last = base + c.n - 1;
    this.statusRegion[head] = segs.region[last];
    this.statusOff[head] = segs.off[last] + segs.len[last] - 1;
    this.inflight[head] = 1;
    this.fetched(head);
    this.inflightCount++;
    // header + data + status: more than seg_max data descriptors, or one larger than size_max
    // (+16: header and data may share a descriptor), or a short header fails the request.
    if (c.readBytes < 16 || c.descs > B.BLK_SEG_MAX + 2 || c.maxLen > B.BLK_SIZE_MAX + 16) {
      this.counters.badChains++;
      this.counters.errors++;
      this.counters.lastError = c.readBytes < 16 ? `request ${head}: header is ${c.readBytes} readable bytes`
        : `request ${head}: ${c.descs} descriptors or one of ${c.maxLen} bytes exceeds seg_max/size_max`;
      this.finish(head, B.VIRTIO_BLK_S_IOERR);
      return;
    }
    this.readHeader(base, c.nRead);
    const type = this.hdrView.getUint32(0, true);
    const sector = this.hdrView.getUint32(12, true) * TWO32 + this.hdrView.getUint32(8, true);
    const io = this.ios[head];
    // a switch, not a table: six request types per I/O stay a jump inside this one monomorphic handler
    switch (type) {
      case B.VIRTIO_BLK_T_IN:
        this.usedLen[head] = c.writeBytes;
        this.rw(io, IoType.READ, sector, base + c.nRead, c.n - c.nRead, 0, c.writeBytes - 1);
        return;
      case B.VIRTIO_BLK_T_OUT:
        this.usedLen[head] = 1;
        if (this.spec.readOnly) { this.finish(head, B.VIRTIO_BLK_S_IOERR); return; }
        this.rw(io, IoType.WRITE, sector, base, c.nRead, 16, c.readBytes - 16);
        return;
      case B.VIRTIO_BLK_T_FLUSH:
        this.usedLen[head] = 1;
        io.type = IoType.FLUSH; io.offsetBlocks = 0; io.numBlocks = 0; io.nseg = 0; io.bytes = 0;
        this.channel.submit(io);
        return;
      case B.VIRTIO_BLK_T_GET_ID:
        this.getId(head, base + c.nRead, c.n - c.nRead, c.writeBytes - 1);
        return;
      case B.VIRTIO_BLK_T_DISCARD:
      case B.VIRTIO_BLK_T_WRITE_ZEROES:
        this.usedLen[head] = 1;
        this.discard(io, type, base, c.nRead, c.readBytes - 16);
        return;
      default:
        this.usedLen[head] = 1;
        this.finish(head, B.VIRTIO_BLK_S_UNSUPP);
    }
  }

  /** Copies the 16-byte header out of the readable segments (it may be split). */
  private readHeader(base: number, nRead: number): void {
    const s = this.segs, mem = this.mem;
    if (s.len[base] >= 16) {
      const u8 = mem.u8[s.region[base]], o = s.off[base];
      for (let i = 0; i < 16; i++) this.hdr[i] = u8[o + i];
      return;
    }
    let got = 0;
    for (let k = base; k < base + nRead && got < 16; k++) {
      const u8 = mem.u8[s.region[k]], o = s.off[k], l = s.len[k];
      for (let i = 0; i < l && got < 16; i++) this.hdr[got++] = u8[o + i];
    }
  }

  /**
   * Narrows segments [from, from+count) in place to `bytes` bytes starting `skip` bytes in,
   * and points io at them.
   */
  private slice(io: BdevIo, from: number, count: number, skip: number, bytes: number): void {
    const s = this.segs;
    let k = from;
    const end = from + count;
    while (k < end && skip >= s.len[k]) { skip -= s.len[k]; k++; }
    if (k < end && skip > 0) { s.off[k] += skip; s.len[k] -= skip; }
    let first = k, left = bytes, n = 0;
    while (first + n < end && left > 0) {
      const l = s.len[first + n];
      if (l > left) s.len[first + n] = left;
      left -= Math.min(l, left);
      n++;
    }
    // drop empty leading segments (zero-length descriptors)
    while (n > 0 && s.len[first] === 0) { first++; n--; }
    io.segBase = first;
    io.nseg = n;
    io.bytes = bytes;
  }

  private rw(io: BdevIo, type: number, sector: number, from: number, count: number, skip: number, bytes: number): void {
    const head = io.tag;
    const bs = this.blockSize;
    if (bytes === 0) { this.finish(head, B.VIRTIO_BLK_S_OK); return; }
    if (bytes % bs !== 0 || (sector * B.SECTOR) % bs !== 0 || sector + bytes / B.SECTOR > this.channel.numBlocks * this.spb) {
      this.counters.errors++;
      this.finish(head, B.VIRTIO_BLK_S_IOERR);
      return;
    }
    io.type = type;
    io.offsetBlocks = (sector * B.SECTOR) / bs;
    io.numBlocks = bytes / bs;
    this.slice(io, from, count, skip, bytes);
    this.channel.submit(io);
  }

  private discard(io: BdevIo, type: number, base: number, nRead: number, rangeBytes: number): void {
    const head = io.tag;
    if (this.spec.readOnly) { this.finish(head, B.VIRTIO_BLK_S_IOERR); return; }
    if (rangeBytes !== 16) { this.finish(head, B.VIRTIO_BLK_S_UNSUPP); return; } // max_*_seg is 1
    // the range follows the header: read it byte-wise (it may be split across segments)
    const s = this.segs, mem = this.mem, h = this.hdr;
    let skip = 16, got = 0;
    for (let k = base; k < base + nRead && got < 16; k++) {
      const u8 = mem.u8[s.region[k]], o = s.off[k], l = s.len[k];
      for (let i = 0; i < l && got < 16; i++) { if (skip > 0) { skip--; continue; } h[got++] = u8[o + i]; }
    }
    const dv = this.hdrView;
    const sector = dv.getUint32(4, true) * TWO32 + dv.getUint32(0, true);
    const num = dv.getUint32(8, true), flags = dv.getUint32(12, true);
    const wz = type === B.VIRTIO_BLK_T_WRITE_ZEROES;
    if ((wz ? flags & ~1 : flags) !== 0) { this.finish(head, B.VIRTIO_BLK_S_UNSUPP); return; }
    const max = wz ? B.BLK_MAX_WRITE_ZEROES_SECTORS : B.BLK_MAX_DISCARD_SECTORS;
    const bs = this.blockSize;
    if (num > max || sector + num > this.channel.numBlocks * this.spb || (sector * B.SECTOR) % bs !== 0 || (num * B.SECTOR) % bs !== 0) {
      this.counters.errors++;
      this.finish(head, B.VIRTIO_BLK_S_IOERR);
      return;
    }
    if (num === 0) { this.finish(head, B.VIRTIO_BLK_S_OK); return; }
    io.type = wz ? IoType.WRITE_ZEROES : IoType.UNMAP;
    io.mayUnmap = wz && (flags & 1) !== 0;
    io.offsetBlocks = (sector * B.SECTOR) / bs;
    io.numBlocks = (num * B.SECTOR) / bs;
    io.nseg = 0; io.bytes = 0;
    this.channel.submit(io);
  }

  private getId(head: number, from: number, count: number, room: number): void {
    const s = this.segs, mem = this.mem, id = this.serial;
    const total = Math.min(room, B.VIRTIO_BLK_ID_BYTES);
    let w = 0;
    for (let k = from; k < from + count && w < total; k++) {
      const u8 = mem.u8[s.region[k]], o = s.off[k], l = s.len[k];
      for (let i = 0; i < l && w < total; i++, w++) u8[o + i] = w < id.length ? id[w] : 0;
    }
    this.usedLen[head] = w + 1;
    this.finish(head, B.VIRTIO_BLK_S_OK);
  }

  onBdevIoDone(io: BdevIo): void {
    const st = io.status;
    if (st !== IoStatus.SUCCESS) this.counters.errors++;
    this.finish(io.tag, st === IoStatus.SUCCESS ? B.VIRTIO_BLK_S_OK
      : st === IoStatus.UNSUPPORTED ? B.VIRTIO_BLK_S_UNSUPP : B.VIRTIO_BLK_S_IOERR);
  }

  private finish(head: number, status: number): void {
    if (status !== B.VIRTIO_BLK_S_OK) this.usedLen[head] = 1;
    this.mem.u8[this.statusRegion[head]][this.statusOff[head]] = status;
    this.inflight[head] = 0;
    this.inflightCount--;
    this.used(head, this.usedLen[head]);
  }
}
