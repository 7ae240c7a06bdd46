// PCI address parsing and the errors the PCIe transport gives before any VFIO ioctl
// (the VFIO paths themselves run against a real device in the nested-guest e2e test).
import { describe, it, expect } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { parsePciAddress, VfioError, VfioContainer } from '../../../native/vfio.js';
import { openTransport, knownTransports } from '../../../bdev/nvme/transport.js';
import '../../../bdev/nvme/transport_pcie.js';

describe('parsePciAddress', () => {
  it('accepts the forms SPDK accepts and returns the sysfs form', () => {
    expect(parsePciAddress('0000:00:04.0')).toBe('0000:00:04.0');
    expect(parsePciAddress('00:04.0')).toBe('0000:00:04.0');
    expect(parsePciAddress('0000.00.04.0')).toBe('0000:00:04.0');
    expect(parsePciAddress('1:AF:1f.7')).toBe('0001:af:1f.7');
    expect(parsePciAddress(' 0000:3b:00.1 ')).toBe('0000:3b:00.1');
  });

  it('rejects what is not a PCI address, saying what it expected', () => {
    for (const bad of ['', 'zz:1', '0000:00:04', '00:04.8', '0000:00:20.0', '00000:00:04.0', '/dev/nvme0']) {
      expect(() => parsePciAddress(bad), bad).toThrow(VfioError);
      expect(() => parsePciAddress(bad), bad).toThrow(/PCI address|device number/);
    }
  });
});

describe('PCIe transport (host without the device)', () => {
  it('is registered as PCIe (any case)', () => {
    expect(knownTransports()).toContain('pcie');
  });

  it('names an absent device and lists the NVMe controllers there are', async () => {
    const p = openTransport('PCIe', '00:1e.7');
    await expect(p).rejects.toThrow(/no PCI device at 0000:00:1e\.7/);
  });

  it('refuses a device that is not an NVMe controller', async () => {
    let other: string | undefined;
    try {
      other = readdirSync('/sys/bus/pci/devices').find((d) =>
        readFileSync(`/sys/bus/pci/devices/${d}/class`, 'utf8').trim() !== '0x010802');
    } catch { /* no PCI bus */ }
    if (!other) return;
    await expect(openTransport('pcie', other)).rejects.toThrow(/is not an NVMe controller \(PCI class 0x[0-9a-f]{6}, NVMe is 0x010802\)/);
  });

  it('says how to get /dev/vfio/vfio when it is missing', () => {
    if (existsSync('/dev/vfio/vfio')) return;
    expect(() => VfioContainer.open()).toThrow(/\/dev\/vfio\/vfio is missing: load the VFIO modules \(modprobe vfio-pci\)/);
  });
});
