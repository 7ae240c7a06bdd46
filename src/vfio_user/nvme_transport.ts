// The NVMe bdev's transport over vfio-user (trtype "vfiouser"; traddr: the directory holding
// the controller's `cntrl` socket, as in SPDK): an emulated NVMe controller in another
// process (vhostd's own, or SPDK's nvmf vfio-user target) driven like a PCIe device. It
// lives with the vfio-user protocol code (transport layer) and registers itself with the
// NVMe bdev's transport table (bdev/nvme/transport.ts) when src/modules.ts imports it.
//
// DMA memory is memfd-backed and passed with DMA_MAP (IOVA = hva), so the controller maps
// the very pages the reactors and guests use. Controller registers are REGION_READ/WRITE
// messages (control plane only). Doorbells must be plain stores: BAR0's doorbell page has
// to be a sparse mmap area the client can map; a controller that traps doorbells would cost
// a socket round trip per I/O on the reactor, so it is refused ("not yet").
import { join } from 'node:path';
import { closeQuiet, eventfd, memfdCreate, mmap, munmap, raw, PROT_READ, PROT_WRITE, MAP_SHARED } from '../../native/libc.js';
import * as P from './protocol.js';
import { VfioUserClient } from './client.js';
import { DOORBELL_BASE, PAGE } from '../../bdev/nvme/nvme_spec.js';
import { NvmeTransport, registerTransport } from '../../bdev/nvme/transport.js';

const MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_FIXED = 0x10, PROT_NONE = 0;
const align = (n: number, a: number) => Math.ceil(n / a) * a;
/** Largest BAR0 accepted (an NVMe BAR0 is a few pages). */
const MAX_BAR0 = 64 << 20;

export class VfioUserTransport implements NvmeTransport {
  readonly trtype = 'vfiouser' as const;
  bar0Hva = 0;
  bar0Size = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly dma = new Map<number, { size: number; fd: number }>();
  private readonly mapped = new Map<number, number>();
  private gone: string | null = null;
  private removedCb: ((why: string) => void) | null = null;
  private readonly irqFds: number[] = [];

  private constructor(readonly traddr: string, private readonly c: VfioUserClient) {}

  static async open(traddr: string): Promise<VfioUserTransport> {
    const path = join(traddr, 'cntrl');
    let c: VfioUserClient;
    try { c = VfioUserClient.connect(path); } catch (e) {
      throw new Error(`cannot connect to the vfio-user controller at ${path}: ${(e as Error).message} ` +
        '(is a target listening there? traddr is the directory holding the cntrl socket)');
    }
    const t = new VfioUserTransport(traddr, c);
    try { await t.setup(); } catch (e) { await t.close(); throw e; }
    return t;
  }

  private async setup(): Promise<void> {
    const c = this.c;
    const v = await c.version({ max_msg_fds: 8 });
    if (v.major !== 0) throw new Error(`the vfio-user server speaks protocol ${v.major}.${v.minor}; vhostd speaks 0.x`);
    const dev = await c.deviceInfo();
    if (!(dev.flags & P.DEVICE_FLAGS_PCI)) throw new Error('the vfio-user device is not a PCI device');
    const bar0 = await c.regionInfo(P.PCI_BAR0);
    try {
      const area = bar0.sparse.find((a) => a.offset <= DOORBELL_BASE && a.offset + a.size >= DOORBELL_BASE + PAGE);
      if (!(bar0.flags & P.REGION_FLAG_MMAP) || bar0.fd < 0 || !area) {
        throw new Error('the controller does not offer a mappable BAR0 doorbell page (sparse mmap): trapped doorbells ' +
          'would cost a socket round trip per I/O and are not yet supported; on a vhostd or SPDK target, do not set ' +
          'disable_mappable_bar0');
      }
      // the server's numbers are checked before MAP_FIXED could land on memory we use
      if (bar0.size < DOORBELL_BASE + PAGE || bar0.size > MAX_BAR0 || area.offset % PAGE || area.size % PAGE ||
        area.offset + area.size > bar0.size) {
        throw new Error(`the controller describes an invalid BAR0 (size 0x${bar0.size.toString(16)}, mappable area ` +
          `0x${area.offset.toString(16)}+0x${area.size.toString(16)})`);
      }
      // reserve the whole BAR (inaccessible), then map the doorbell area into it at its offset
      this.bar0Size = align(bar0.size, PAGE);
      this.bar0Hva = Number(raw.mmap(0, this.bar0Size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (this.bar0Hva === -1) throw new Error('cannot reserve address space for BAR0');
      const at = Number(raw.mmap(this.bar0Hva + area.offset, area.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
        bar0.fd, bar0.offset + area.offset));
      if (at !== this.bar0Hva + area.offset) throw new Error('cannot map the BAR0 doorbell page');
    } finally {
      closeQuiet(bar0.fd);
    }
  }

  /** One message exchange at a time (the client is not re-entrant). */
  private locked<T>(f: () => Promise<T>): Promise<T> {
    const p = this.chain.then(async () => {
      if (this.gone) throw new Error(`vfio-user controller ${this.traddr}: ${this.gone}`);
      try { return await f(); } catch (e) {
        const m = (e as Error).message;
        if (/closed the connection|EPIPE|ECONNRESET|EBADF/.test(m)) this.lost(m);
        throw e;
      }
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  private lost(why: string): void {
    if (this.gone) return;
    this.gone = why;
    this.removedCb?.(why);
  }

  onRemoved(cb: (reason: string) => void): void { this.removedCb = cb; }

  readReg32(off: number): Promise<number> { return this.locked(() => this.c.r32(P.PCI_BAR0, off)); }
  writeReg32(off: number, v: number): Promise<void> { return this.locked(() => this.c.w32(P.PCI_BAR0, off, v)); }
  readReg64(off: number): Promise<bigint> { return this.locked(() => this.c.r64(P.PCI_BAR0, off)); }
  async writeReg64(off: number, v: bigint): Promise<void> {
    await this.writeReg32(off, Number(v & 0xffffffffn));
    await this.writeReg32(off + 4, Number(v >> 32n));
  }

  async allocDma(size: number): Promise<{ hva: number; size: number; fd: number }> {
    const len = align(size, PAGE);
    const fd = memfdCreate('vhostd-nvme-dma', len);
    let hva = 0;
    try {
      hva = mmap(len, fd);
      await this.locked(() => this.c.dmaMap(fd, hva, len, 0));
    } catch (e) {
      if (hva) munmap(hva, len);
      closeQuiet(fd);
      throw e;
    }
    this.dma.set(hva, { size: len, fd });
    return { hva, size: len, fd };
  }

  async freeDma(hva: number): Promise<void> {
    const m = this.dma.get(hva);
    if (!m) return;
    this.dma.delete(hva);
    try { if (!this.gone) await this.locked(() => this.c.dmaUnmap(hva, m.size)); } finally {
      munmap(hva, m.size);
      closeQuiet(m.fd);
    }
  }

  async mapDma(hva: number, size: number, fd: number, offset: number): Promise<void> {
    if (this.mapped.get(hva) === size) return;
    if (fd < 0) throw new Error(`memory at 0x${hva.toString(16)} has no fd: a vfio-user controller cannot reach it`);
    await this.locked(() => this.c.dmaMap(fd, hva, size, offset));
    this.mapped.set(hva, size);
  }

  async unmapDma(hva: number, size: number): Promise<void> {
    if (this.mapped.get(hva) !== size) return;
    this.mapped.delete(hva);
    await this.locked(() => this.c.dmaUnmap(hva, size));
  }

  /** MSI-X vectors 0..vectors-1 as eventfds (DEVICE_SET_IRQS); the controller signals them for CQs created with IEN. */
  async enableInterrupts(vectors: number): Promise<number[]> {
    const fds: number[] = [];
    for (let i = 0; i < vectors; i++) fds.push(eventfd());
    const q = new Uint8Array(20), dv = new DataView(q.buffer);
    dv.setUint32(0, 20, true); dv.setUint32(4, P.IRQ_SET_DATA_EVENTFD | P.IRQ_SET_ACTION_TRIGGER, true);
    dv.setUint32(8, P.IRQ_MSIX, true); dv.setUint32(12, 0, true); dv.setUint32(16, vectors, true);
    try {
      await this.locked(() => this.c.ok(P.Cmd.DEVICE_SET_IRQS, q, fds));
    } catch (e) {
      fds.forEach(closeQuiet);
      throw e;
    }
    this.irqFds.push(...fds);
    return fds;
  }

  reset(): Promise<void> { return this.locked(() => this.c.deviceReset()); }

  async close(): Promise<void> {
    this.gone ??= 'closed';
    this.c.close();
    for (const [hva, m] of this.dma) { munmap(hva, m.size); closeQuiet(m.fd); }
    this.dma.clear();
    if (this.bar0Hva) { munmap(this.bar0Hva, this.bar0Size); this.bar0Hva = 0; }
    this.irqFds.splice(0).forEach(closeQuiet);
  }
}

registerTransport('vfiouser', (traddr) => VfioUserTransport.open(traddr));
