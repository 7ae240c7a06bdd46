/**
 * The NVMe driver's view of a transport: BAR0 mapped into this process, DMA memory at
 * IOVA = hva (SPDK's iova-mode va), interrupts as eventfds, reset and close.
 * Transports (PCIe over VFIO, vfio-user) register a factory by trtype.
 */
export interface NvmeTransport {
  readonly trtype: 'PCIe' | 'vfiouser';
  readonly traddr: string;
  /** BAR0 mapped in this process (controller registers and the doorbell page at 0x1000), or an error for a transport that can't map it. */
  readonly bar0Hva: number;
  readonly bar0Size: number;
  /** Memory mapped for DMA at IOVA = hva: fd-backed (memfd) so vfio-user can pass it; locked for VFIO. */
  allocDma(size: number): Promise<{ hva: number; size: number; fd: number }>;
  freeDma(hva: number): Promise<void>;
  /** Makes [hva, hva+size) (backed by fd at offset) reachable by the device at IOVA = hva; idempotent per range. */
  mapDma(hva: number, size: number, fd: number, offset: number): Promise<void>;
  unmapDma(hva: number, size: number): Promise<void>;
  /** One eventfd per MSI-X vector (vector 0 = admin), signalled on completion interrupts; -1 where the transport has none. */
  enableInterrupts(vectors: number): Promise<number[]>;
  /** PCIe: function-level reset; vfio-user: device reset message. */
  reset(): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional: controller register access for transports whose BAR0 registers (offsets
   * below 0x1000) are not in the mapped area (vfio-user: only the doorbell page is
   * mappable; the registers are REGION_READ/WRITE messages). Control plane only. When
   * absent the driver uses 32/64-bit loads and stores on bar0Hva.
   */
  readReg32?(offset: number): Promise<number>;
  writeReg32?(offset: number, value: number): Promise<void>;
  readReg64?(offset: number): Promise<bigint>;
  writeReg64?(offset: number, value: bigint): Promise<void>;
  /** Optional: called when the device goes away (socket closed, PCI remove). */
  onRemoved?(cb: (reason: string) => void): void;
}

export type TransportFactory = (traddr: string, opts: Record<string, unknown>) => Promise<NvmeTransport>;

const factories = new Map<string, TransportFactory>();

/** trtype is matched case-insensitively ("PCIe", "pcie", "VFIOUSER"...), as SPDK does. */
export function registerTransport(trtype: string, f: TransportFactory): void {
  factories.set(trtype.toLowerCase(), f);
}

export function knownTransports(): string[] {
  return [...factories.keys()];
}

export async function openTransport(
  trtype: string,
  traddr: string,
  opts: Record<string, unknown> = {},
): Promise<NvmeTransport> {
  const f = factories.get(trtype.toLowerCase());
  if (!f && trtype.toLowerCase() === 'pcie') {
    throw new Error(`NVMe transport PCIe (VFIO) is not yet available in this build: use -t vfiouser, or a build with bdev/nvme/transport_pcie.ts`);
  }
  if (!f) {
    const known = knownTransports();
    throw new Error(
      `NVMe transport '${trtype}' is not available` +
        (known.length ? ` (available: ${known.join(', ')})` : ' (no transport registered)'),
    );
  }
  return f(traddr, opts);
}
