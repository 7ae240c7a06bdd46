// The PCIe NVMe transport: a local NVMe controller bound to vfio-pci, driven from user
// space. BAR0 (registers + doorbells) is mmapped; DMA memory and guest memory are mapped
// in the IOMMU at IOVA = this process's virtual address (SPDK's iova-mode va).
// Hot-remove: the kernel asks for the device back through the VFIO request interrupt;
// the transport then fences BAR0 (all-ones reads, like a surprise-removed device, writes
// go nowhere), tells its listeners and lets the device go, so the removal never waits
// for vhostd.
import {
  VfioContainer, VfioGroup, VfioDevice, VfioError, vfioGroupOf, pciDeviceInfo, parsePciAddress,
  PCI_BAR0_REGION, PCI_MSIX_IRQ, PCI_REQ_IRQ,
} from '../../native/vfio.js';
import {
  raw, memfdCreate, mmap, munmap, closeQuiet, eventfd, eventfdDrain, view,
  PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS,
} from '../../native/libc.js';
import { NvmeTransport, registerTransport } from './transport.js';

const PAGE = 4096;
const MAP_FIXED = 0x10;
const NVME_CLASS = 0x010802;
/** How often the request interrupt (kernel wants the device back) is checked. */
const REQ_POLL_MS = 200;

const pageDown = (a: number) => a - (a % PAGE);
const pageUp = (a: number) => Math.ceil(a / PAGE) * PAGE;

interface DmaAlloc { hva: number; size: number; fd: number }
interface DmaMapping { iova: number; size: number }

export class PcieTransport implements NvmeTransport {
  readonly trtype = 'PCIe' as const;
  readonly bar0Hva: number;
  readonly bar0Size: number;
  private readonly allocs = new Map<number, DmaAlloc>();
  /** IOMMU mappings by the hva the caller named (page-aligned range in the value). */
  private readonly maps = new Map<number, DmaMapping>();
  private irqFds: number[] = [];
  private reqFd = -1;
  private reqTimer: NodeJS.Timeout | undefined;
  private readonly removedCbs: ((reason: string) => void)[] = [];
  private removed = '';
  private closed = false;

  private constructor(
    readonly traddr: string,
    private readonly container: VfioContainer,
    private readonly group: VfioGroup,
    private readonly dev: VfioDevice,
  ) {
    const bar = dev.mapRegionStart(PCI_BAR0_REGION);
    this.bar0Hva = bar.addr;
    this.bar0Size = bar.size;
  }

  /** Opens traddr ("0000:00:04.0" or "00:04.0"), which must be an NVMe controller bound to vfio-pci. */
  static open(traddr: string): PcieTransport {
    const addr = parsePciAddress(traddr);
    const info = pciDeviceInfo(addr);
    if (info.classCode !== NVME_CLASS) {
      throw new VfioError('no-device', `${addr} is not an NVMe controller (PCI class 0x${info.classCode.toString(16).padStart(6, '0')}, ` +
        `NVMe is 0x${NVME_CLASS.toString(16).padStart(6, '0')})`);
    }
    const groupId = vfioGroupOf(addr);
    const container = VfioContainer.open();
    let group: VfioGroup | undefined, dev: VfioDevice | undefined;
    try {
      group = VfioGroup.open(groupId, addr);
      group.setContainer(container);
      container.setIommu();
      dev = group.openDevice(addr);
      const di = dev.info();
      if (!di.isPci) throw new VfioError('no-device', `${addr}: VFIO does not present it as a PCI device`);
      const t = new PcieTransport(addr, container, group, dev);
      dev.enableBusMaster();
      t.watchRemoval();
      return t;
    } catch (e) {
      dev?.close();
      group?.close();
      container.close();
      throw e;
    }
  }

  async allocDma(size: number): Promise<{ hva: number; size: number; fd: number }> {
    this.live('allocate DMA memory');
    const len = pageUp(Math.max(size, 1));
    const fd = memfdCreate(`vhostd-nvme-dma-${this.traddr}`, len);
    let hva = 0;
    try {
      hva = mmap(len, fd);
      await this.mapDma(hva, len, fd, 0);
    } catch (e) {
      if (hva) munmap(hva, len);
      closeQuiet(fd);
      throw e;
    }
    const a = { hva, size: len, fd };
    this.allocs.set(hva, a);
    return { ...a };
  }

  async freeDma(hva: number): Promise<void> {
    const a = this.allocs.get(hva);
    if (!a) return;
    this.allocs.delete(hva);
    await this.unmapDma(hva, a.size);
    munmap(a.hva, a.size);
    closeQuiet(a.fd);
  }

  async mapDma(hva: number, size: number, _fd: number, _offset: number): Promise<void> {
    // a removed device reaches no memory: nothing to map, and a front end that connects to
    // a controller on it must still get its queues started (its I/O fails with an error)
    if (this.removed && !this.closed) return;
    this.live('map DMA memory');
    const prev = this.maps.get(hva);
    const iova = pageDown(hva), len = pageUp(hva + size) - iova;
    if (prev) {
      if (prev.iova === iova && prev.size === len) return;
      throw new VfioError('dma', `DMA range at 0x${hva.toString(16)} is already mapped with another size ` +
        `(0x${prev.size.toString(16)}, now 0x${len.toString(16)}): unmap it first`);
    }
    // reserve before the (asynchronous) map, so a concurrent identical call is idempotent
    this.maps.set(hva, { iova, size: len });
    try {
      await this.container.mapDmaAsync(iova, iova, len);
    } catch (e) {
      this.maps.delete(hva);
      throw e;
    }
  }

  async unmapDma(hva: number, _size: number): Promise<void> {
    const m = this.maps.get(hva);
    if (!m) return;
    this.maps.delete(hva);
    if (!this.closed) this.container.unmapDma(m.iova, m.size);
  }

  /** Number of MSI-X vectors the device offers. */
  msixVectors(): number { return this.dev.irqInfo(PCI_MSIX_IRQ).count; }

  async enableInterrupts(vectors: number): Promise<number[]> {
    this.live('enable interrupts');
    const have = this.msixVectors();
    if (vectors < 1 || vectors > have) {
      throw new VfioError('irq', `${this.traddr} offers ${have} MSI-X vectors, ${vectors} were asked for`);
    }
    this.disableInterrupts();
    const fds: number[] = [];
    try {
      for (let i = 0; i < vectors; i++) fds.push(eventfd());
      this.dev.setIrqEventfds(PCI_MSIX_IRQ, fds);
    } catch (e) {
      fds.forEach(closeQuiet);
      throw e;
    }
    this.irqFds = fds;
    return [...fds];
  }

  private disableInterrupts(): void {
    if (!this.irqFds.length) return;
    if (!this.released) this.dev.disableIrqs(PCI_MSIX_IRQ);
    this.irqFds.forEach(closeQuiet);
    this.irqFds = [];
  }

  async reset(): Promise<void> {
    this.live('reset');
    this.dev.reset();
    // a reset clears the command register: DMA and MMIO back on
    this.dev.enableBusMaster();
  }

  onRemoved(cb: (reason: string) => void): void {
    if (this.removed) queueMicrotask(() => cb(this.removed));
    else this.removedCbs.push(cb);
  }

  /** Why the device is gone ('' while present). */
  get removedReason(): string { return this.removed; }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.reqTimer) clearInterval(this.reqTimer);
    this.disableInterrupts();
    for (const m of this.maps.values()) {
      try { this.container.unmapDma(m.iova, m.size); } catch { /* the container goes away below */ }
    }
    this.maps.clear();
    this.closed = true;
    this.releaseDevice();
    if (this.reqFd >= 0) closeQuiet(this.reqFd);
    this.reqFd = -1;
    for (const a of this.allocs.values()) { munmap(a.hva, a.size); closeQuiet(a.fd); }
    this.allocs.clear();
    if (this.fenced) munmap(this.bar0Hva, this.bar0Size);
  }

  // ---------------------------------------------------------------- removal

  private fenced = false;
  private released = false;

  private watchRemoval(): void {
    if (this.dev.irqInfo(PCI_REQ_IRQ).count < 1) return;
    this.reqFd = eventfd();
    this.dev.setIrqEventfds(PCI_REQ_IRQ, [this.reqFd]);
    this.reqTimer = setInterval(() => {
      if (eventfdDrain(this.reqFd)) this.deviceRemoved('the kernel asked for the device back (PCI remove or unbind)');
    }, REQ_POLL_MS);
    this.reqTimer.unref();
  }

  /**
   * The device is going away: fence BAR0, notify, release the device so the kernel's
   * removal can finish. Reactors that still hold views of BAR0 read all-ones (CSTS =
   * 0xffffffff, the NVMe sign of a removed controller) and their doorbell writes land
   * in the fence page.
   */
  deviceRemoved(reason: string): void {
    if (this.removed || this.closed) return;
    this.removed = reason;
    if (this.reqTimer) clearInterval(this.reqTimer);
    this.fenceBar0();
    for (const cb of this.removedCbs.splice(0)) {
      try { cb(reason); } catch (e) { process.emitWarning(`NVMe ${this.traddr} removal listener failed: ${(e as Error).message}`); }
    }
    // the interrupt eventfds stay open until close(): reactors may hold them in their epoll
    // sets, and a closed number could be reused by an unrelated fd (releasing the device
    // drops VFIO's use of them)
    for (const m of this.maps.values()) {
      try { this.container.unmapDma(m.iova, m.size); } catch { /* device gone */ }
    }
    this.maps.clear();
    this.releaseDevice();
  }

  private fenceBar0(): void {
    const addr = Number(raw.mmap(this.bar0Hva, this.bar0Size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
    if (addr !== this.bar0Hva) {
      process.emitWarning(`NVMe ${this.traddr}: cannot fence BAR0 after removal; the device is kept until close`);
      return;
    }
    new Uint8Array(view(addr, this.bar0Size)).fill(0xff);
    this.fenced = true;
    // the device fd no longer backs the BAR mapping
    this.dev.mappings.splice(0);
  }

  private releaseDevice(): void {
    if (this.released) return;
    this.released = true;
    this.dev.close();
    this.group.close();
    this.container.close();
  }

  private live(what: string): void {
    if (this.closed) throw new VfioError('io', `NVMe ${this.traddr} is closed: cannot ${what}`);
    if (this.removed) throw new VfioError('no-device', `NVMe ${this.traddr} was removed (${this.removed}): cannot ${what}`);
  }
}

registerTransport('PCIe', async (traddr) => PcieTransport.open(traddr));
