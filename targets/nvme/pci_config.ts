// PCI configuration space of the emulated NVMe controller: type 0 header, class
// 01:08:02 (NVM Express), BAR0 64-bit memory (registers + doorbells), BAR4 (MSI-X table
// and PBA), capabilities PM -> MSI-X -> PCI Express. Writes go through a mask of the
// bits software may change; BAR sizing reads back the size mask.
import { BAR0_SIZE, NUM_MSIX } from './nvme_defs.js';
import { PCI_DEVICE_ID, PCI_VENDOR_ID } from './identify.js';

export const CONFIG_SIZE = 4096;
export const BAR4_SIZE = 0x1000;
export const MSIX_TABLE_OFF = 0x0, MSIX_PBA_OFF = 0x800;
export const CAP_PM = 0x40, CAP_MSIX = 0x50, CAP_PCIE = 0x60;

export class PciConfig {
  readonly b = new Uint8Array(CONFIG_SIZE);
  private readonly wmask = new Uint8Array(CONFIG_SIZE);
  private readonly dv = new DataView(this.b.buffer);

  constructor() {
    const b = this.b, dv = this.dv, m = this.wmask;
    dv.setUint16(0x00, PCI_VENDOR_ID, true);
    dv.setUint16(0x02, PCI_DEVICE_ID, true);
    dv.setUint16(0x04, 0x0000, true);      // command
    dv.setUint16(0x06, 0x0010, true);      // status: capabilities list
    b[0x08] = 0x00;                        // revision
    b[0x09] = 0x02; b[0x0a] = 0x08; b[0x0b] = 0x01; // NVMe I/O controller
    b[0x0e] = 0x00;                        // header type 0
    dv.setUint32(0x10, 0x4, true);         // BAR0: memory, 64-bit, not prefetchable
    dv.setUint32(0x20, 0x0, true);         // BAR4: memory, 32-bit
    dv.setUint16(0x2c, PCI_VENDOR_ID, true);
    dv.setUint16(0x2e, PCI_DEVICE_ID, true);
    b[0x34] = CAP_PM;
    b[0x3c] = 0xff; b[0x3d] = 0x00;        // no INTx pin: MSI-X only
    // writable: command (I/O, memory, bus master, parity, SERR, INTx disable), BARs, interrupt line
    dv.setUint16(0x04 - 0 + 0, 0, true);
    m[0x04] = 0x47; m[0x05] = 0x05;
    m.fill(0xff, 0x10, 0x18); m.fill(0xff, 0x20, 0x24);
    m[0x3c] = 0xff;
    // PM capability (version 3), PMCSR power state writable
    b[CAP_PM] = 0x01; b[CAP_PM + 1] = CAP_MSIX;
    dv.setUint16(CAP_PM + 2, 0x0003, true);
    m[CAP_PM + 4] = 0x03;
    // MSI-X: table size, enable/function-mask writable; table and PBA in BAR4
    b[CAP_MSIX] = 0x11; b[CAP_MSIX + 1] = CAP_PCIE;
    dv.setUint16(CAP_MSIX + 2, NUM_MSIX - 1, true);
    dv.setUint32(CAP_MSIX + 4, MSIX_TABLE_OFF | 4, true);
    dv.setUint32(CAP_MSIX + 8, MSIX_PBA_OFF | 4, true);
    m[CAP_MSIX + 3] = 0xc0;
    // PCI Express capability v2, endpoint; device control writable; link x1 2.5 GT/s
    b[CAP_PCIE] = 0x10; b[CAP_PCIE + 1] = 0x00;
    dv.setUint16(CAP_PCIE + 2, 0x0002, true);
    dv.setUint32(CAP_PCIE + 4, 0x00008000 | 0x0, true); // DevCap: role-based error reporting
    m[CAP_PCIE + 8] = 0xff; m[CAP_PCIE + 9] = 0x7f;      // DevCtl
    dv.setUint32(CAP_PCIE + 0x0c, 0x00000011, true);      // LinkCap: x1, 2.5 GT/s
    dv.setUint16(CAP_PCIE + 0x12, 0x0011, true);          // LinkSta
  }

  read(off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    if (off < CONFIG_SIZE) out.set(this.b.subarray(off, Math.min(CONFIG_SIZE, off + len)));
    return out;
  }

  write(off: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = off + i;
      if (o >= CONFIG_SIZE) break;
      const m = this.wmask[o];
      this.b[o] = (this.b[o] & ~m) | (data[i] & m);
    }
    // BAR sizing: the size bits read back as zero
    const bar0 = this.dv.getUint32(0x10, true);
    this.dv.setUint32(0x10, (bar0 & ~(BAR0_SIZE - 1) & 0xfffffff0) | 0x4, true);
    const bar4 = this.dv.getUint32(0x20, true);
    this.dv.setUint32(0x20, bar4 & ~(BAR4_SIZE - 1) & 0xfffffff0, true);
  }

  get msixEnabled(): boolean { return (this.b[CAP_MSIX + 3] & 0x80) !== 0; }
}
