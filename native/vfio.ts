// koffi bindings to Linux VFIO (type1 IOMMU + vfio-pci): the container, group and
// device fds, region info and BAR mmap, PCI config space, DMA map/unmap, interrupts as
// eventfds and reset. Control plane only: every call here is a syscall.
// Failures are VfioError with a message that says what to do.
import { readFileSync, readlinkSync, readdirSync, existsSync } from 'node:fs';
import { raw, open, closeQuiet, O_RDWR, PROT_READ, PROT_WRITE, MAP_SHARED } from './libc.js';
import { koffi } from './koffi.js';
import { errnoName, errnoMessage } from './errors.js';

// ioctl numbers: _IO(';', 100 + n)
const VFIO_BASE = (0x3b << 8) | 100;
const VFIO_GET_API_VERSION = VFIO_BASE + 0;
const VFIO_CHECK_EXTENSION = VFIO_BASE + 1;
const VFIO_SET_IOMMU = VFIO_BASE + 2;
const VFIO_GROUP_GET_STATUS = VFIO_BASE + 3;
const VFIO_GROUP_SET_CONTAINER = VFIO_BASE + 4;
const VFIO_GROUP_UNSET_CONTAINER = VFIO_BASE + 5;
const VFIO_GROUP_GET_DEVICE_FD = VFIO_BASE + 6;
const VFIO_DEVICE_GET_INFO = VFIO_BASE + 7;
const VFIO_DEVICE_GET_REGION_INFO = VFIO_BASE + 8;
const VFIO_DEVICE_GET_IRQ_INFO = VFIO_BASE + 9;
const VFIO_DEVICE_SET_IRQS = VFIO_BASE + 10;
const VFIO_DEVICE_RESET = VFIO_BASE + 11;
const VFIO_IOMMU_GET_INFO = VFIO_BASE + 12;
const VFIO_IOMMU_MAP_DMA = VFIO_BASE + 13;
const VFIO_IOMMU_UNMAP_DMA = VFIO_BASE + 14;

const VFIO_API_VERSION = 0;
export const VFIO_TYPE1v2_IOMMU = 3;
const GROUP_FLAGS_VIABLE = 1;
const DEVICE_FLAGS_RESET = 1, DEVICE_FLAGS_PCI = 2;
export const REGION_FLAG_READ = 1, REGION_FLAG_WRITE = 2, REGION_FLAG_MMAP = 4, REGION_FLAG_CAPS = 8;
const REGION_CAP_SPARSE_MMAP = 1;
const IOMMU_INFO_CAPS = 2, IOMMU_CAP_IOVA_RANGE = 1;
const DMA_MAP_READ = 1, DMA_MAP_WRITE = 2;
const IRQ_DATA_NONE = 1, IRQ_DATA_EVENTFD = 4, IRQ_ACTION_TRIGGER = 32;

/** vfio-pci region and interrupt indices. */
export const PCI_BAR0_REGION = 0, PCI_CONFIG_REGION = 7;
export const PCI_MSIX_IRQ = 2, PCI_REQ_IRQ = 4;

const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2, PCI_COMMAND_MASTER = 0x4, PCI_COMMAND_INTX_DISABLE = 0x400;

export type VfioErrorKind =
  | 'no-vfio' | 'no-device' | 'bad-address' | 'not-bound' | 'no-iommu' | 'not-viable'
  | 'busy' | 'no-type1' | 'dma' | 'region' | 'irq' | 'reset' | 'io';

/** A VFIO setup or operation failure; `kind` for callers that react, the message for people. */
export class VfioError extends Error {
  constructor(readonly kind: VfioErrorKind, message: string, readonly errno = 0) {
    super(message);
    this.name = 'VfioError';
  }
}

function errText(errno: number): string { return `${errnoName(errno)} (${errnoMessage(errno)})`; }

// ---------------------------------------------------------------- PCI addresses and sysfs

const SYSFS_PCI = '/sys/bus/pci/devices';

/**
 * Canonical "dddd:bb:dd.f" from the forms SPDK accepts: "0000:00:04.0", "00:04.0",
 * "0000.00.04.0" (hex, any case). Throws VfioError('bad-address').
 */
export function parsePciAddress(addr: string): string {
  const m = /^(?:([0-9a-fA-F]{1,4})[:.])?([0-9a-fA-F]{1,2})[:.]([0-9a-fA-F]{1,2})\.([0-7])$/.exec(addr.trim());
  if (!m) {
    throw new VfioError('bad-address', `'${addr}' is not a PCI address: expected DDDD:BB:DD.F or BB:DD.F, e.g. 0000:00:04.0`);
  }
  const dev = parseInt(m[3]!, 16);
  if (dev > 0x1f) throw new VfioError('bad-address', `'${addr}': PCI device number ${dev} is above 31`);
  const hex = (s: string, n: number) => parseInt(s, 16).toString(16).padStart(n, '0');
  return `${hex(m[1] ?? '0', 4)}:${hex(m[2]!, 2)}:${hex(m[3]!, 2)}.${m[4]}`;
}

function sysfsRead(path: string): string | undefined {
  try { return readFileSync(path, 'utf8').trim(); } catch { return undefined; }
}

function linkName(path: string): string | undefined {
  try { return readlinkSync(path).split('/').pop(); } catch { return undefined; }
}

export interface PciDeviceInfo {
  addr: string;
  vendor: number;
  device: number;
  classCode: number;
  /** bound driver name, undefined when none */
  driver?: string;
  /** IOMMU group number, undefined when the device has none (IOMMU off) */
  iommuGroup?: number;
}

/** What sysfs says about a PCI device; VfioError('no-device') if there is none at addr. */
export function pciDeviceInfo(addr: string): PciDeviceInfo {
  const a = parsePciAddress(addr);
  const dir = `${SYSFS_PCI}/${a}`;
  if (!existsSync(dir)) {
    const nvmes = listPciDevices().filter((d) => d.classCode >> 8 === 0x0108).map((d) => d.addr);
    throw new VfioError('no-device', `no PCI device at ${a}` +
      (nvmes.length ? ` (NVMe controllers present: ${nvmes.join(', ')})` : ' (no NVMe controller is present: check lspci)'));
  }
  const num = (f: string) => parseInt(sysfsRead(`${dir}/${f}`) ?? '0', 16);
  const group = linkName(`${dir}/iommu_group`);
  return {
    addr: a,
    vendor: num('vendor'),
    device: num('device'),
    classCode: num('class'),
    driver: linkName(`${dir}/driver`),
    iommuGroup: group === undefined ? undefined : Number(group),
  };
}

export function listPciDevices(): PciDeviceInfo[] {
  let names: string[] = [];
  try { names = readdirSync(SYSFS_PCI); } catch { return []; }
  return names.sort().map((n) => {
    const num = (f: string) => parseInt(sysfsRead(`${SYSFS_PCI}/${n}/${f}`) ?? '0', 16);
    const group = linkName(`${SYSFS_PCI}/${n}/iommu_group`);
    return {
      addr: n, vendor: num('vendor'), device: num('device'), classCode: num('class'),
      driver: linkName(`${SYSFS_PCI}/${n}/driver`), iommuGroup: group === undefined ? undefined : Number(group),
    };
  });
}

function bindHint(a: string, info: PciDeviceInfo): string {
  const unbind = info.driver ? `echo ${a} > /sys/bus/pci/devices/${a}/driver/unbind; ` : '';
  return `${unbind}echo vfio-pci > /sys/bus/pci/devices/${a}/driver_override; echo ${a} > /sys/bus/pci/drivers/vfio-pci/bind` +
    ' (modprobe vfio-pci first)';
}

/** The device's IOMMU group number, checking that it is bound to vfio-pci. */
export function vfioGroupOf(addr: string): number {
  const info = pciDeviceInfo(addr);
  const a = info.addr;
  if (info.iommuGroup === undefined) {
    throw new VfioError('no-iommu', `${a} has no IOMMU group: the IOMMU is off. Boot the kernel with intel_iommu=on ` +
      '(or amd_iommu=on; a VM needs a virtual IOMMU, e.g. QEMU -device intel-iommu,intremap=on,aw-bits=48). ' +
      'vhostd maps DMA at IOVA = virtual address, so VFIO no-IOMMU mode cannot be used');
  }
  if (info.driver !== 'vfio-pci') {
    throw new VfioError('not-bound', `${a} is ${info.driver ? `bound to ${info.driver}` : 'not bound to any driver'}, ` +
      `not to vfio-pci: ${bindHint(a, info)}`);
  }
  return info.iommuGroup;
}

// ---------------------------------------------------------------- ioctl helpers

/** One scratch buffer for ioctl arguments (control plane, one call at a time). */
const scratch = new Uint8Array(4096);
const sv = new DataView(scratch.buffer);

function ioctlArg(fd: number, req: number, arg: number): number {
  return raw.ioctlAddr(fd, req, arg);
}

function ioctlBuf(fd: number, req: number): number {
  return raw.ioctlBuf(fd, req, scratch);
}

function lastErrno(): number { return koffi.errno(); }

function mapArg(vaddr: number, iova: number, size: number): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setUint32(0, 32, true);
  v.setUint32(4, DMA_MAP_READ | DMA_MAP_WRITE, true);
  v.setBigUint64(8, BigInt(vaddr), true);
  v.setBigUint64(16, BigInt(iova), true);
  v.setBigUint64(24, BigInt(size), true);
  return b;
}

function u64(off: number): number { return Number(sv.getBigUint64(off, true)); }
function setU64(off: number, v: number): void { sv.setBigUint64(off, BigInt(v), true); }

// ---------------------------------------------------------------- container

export interface IovaRange { start: number; end: number }

/** /dev/vfio/vfio with the type1v2 IOMMU: DMA mappings for the groups attached to it. */
export class VfioContainer {
  private iommuSet = false;
  private closed = false;
  private constructor(readonly fd: number) {}

  static open(): VfioContainer {
    if (!existsSync('/dev/vfio/vfio')) {
      throw new VfioError('no-vfio', '/dev/vfio/vfio is missing: load the VFIO modules (modprobe vfio-pci) ' +
        'and boot with the IOMMU on (intel_iommu=on or amd_iommu=on)');
    }
    let fd: number;
    try { fd = open('/dev/vfio/vfio', O_RDWR); } catch (e) {
      throw new VfioError('no-vfio', `cannot open /dev/vfio/vfio: ${(e as Error).message} (vhostd needs root or access to /dev/vfio)`);
    }
    const c = new VfioContainer(fd);
    const v = ioctlArg(fd, VFIO_GET_API_VERSION, 0);
    if (v !== VFIO_API_VERSION) { c.close(); throw new VfioError('no-vfio', `unknown VFIO API version ${v} (expected ${VFIO_API_VERSION})`); }
    if (ioctlArg(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) {
      c.close();
      throw new VfioError('no-type1', 'the VFIO type1v2 IOMMU is not available: modprobe vfio_iommu_type1, and boot with intel_iommu=on');
    }
    return c;
  }

  /** Selects the type1v2 IOMMU; valid once a group is attached, done once. */
  setIommu(): void {
    if (this.iommuSet) return;
    if (ioctlArg(this.fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0) {
      const e = lastErrno();
      throw new VfioError('no-type1', `VFIO_SET_IOMMU(type1v2) failed: ${errText(e)}`, e);
    }
    this.iommuSet = true;
  }

  /** The IOVA ranges the IOMMU can translate (empty if the kernel does not say). */
  iovaRanges(): IovaRange[] {
    scratch.fill(0);
    sv.setUint32(0, scratch.length, true);
    if (ioctlBuf(this.fd, VFIO_IOMMU_GET_INFO) < 0) return [];
    if (!(sv.getUint32(4, true) & IOMMU_INFO_CAPS)) return [];
    const out: IovaRange[] = [];
    let off = sv.getUint32(16, true);
    for (let guard = 0; off && off + 8 <= scratch.length && guard < 16; guard++) {
      const id = sv.getUint16(off, true);
      if (id === IOMMU_CAP_IOVA_RANGE) {
        const n = sv.getUint32(off + 8, true);
        for (let i = 0; i < n && off + 16 + i * 16 + 16 <= scratch.length; i++) {
          out.push({ start: u64(off + 16 + i * 16), end: u64(off + 24 + i * 16) });
        }
      }
      off = sv.getUint32(off + 4, true);
    }
    return out;
  }

  /** Maps [vaddr, vaddr+size) of this process for device DMA at iova (pins the pages). */
  mapDma(vaddr: number, iova: number, size: number): void {
    const b = mapArg(vaddr, iova, size);
    if (raw.ioctlBuf(this.fd, VFIO_IOMMU_MAP_DMA, b) < 0) throw this.mapError(lastErrno(), iova, size);
  }

  /**
   * mapDma on the thread pool: pinning a large region (guest memory) takes a while and
   * must not stall the control plane.
   */
  mapDmaAsync(vaddr: number, iova: number, size: number): Promise<void> {
    const b = mapArg(vaddr, iova, size);
    return new Promise((resolve, reject) => {
      (raw.ioctlBuf as unknown as { async: Function }).async(this.fd, VFIO_IOMMU_MAP_DMA, b, (err: unknown, r: number) => {
        if (err) reject(err);
        else if (r < 0) {
          // errno of a thread-pool call is not ours to read: a failed map changes
          // nothing, so repeat it here to get the reason (or succeed if it was transient)
          try { this.mapDma(vaddr, iova, size); resolve(); } catch (e) { reject(e); }
        } else resolve();
      });
    });
  }

  private mapError(e: number, iova: number, size: number): VfioError {
    {
      const what = `VFIO_IOMMU_MAP_DMA of 0x${size.toString(16)} bytes at IOVA 0x${iova.toString(16)} failed: ${errText(e)}`;
      const code = errnoName(e);
      let hint = '';
      if (code === 'ENOMEM') hint = ': cannot pin that much memory: run as root or raise the locked-memory limit (ulimit -l)';
      else if (code === 'EEXIST') hint = ': the range overlaps an existing mapping';
      else if (code === 'EINVAL' || code === 'EPERM') {
        const r = this.iovaRanges();
        if (r.length) hint = `: the IOMMU translates only ${r.map((x) => `0x${x.start.toString(16)}-0x${x.end.toString(16)}`).join(', ')}` +
          ' (a virtual IOMMU needs a 48-bit address width, e.g. QEMU intel-iommu,aw-bits=48)';
      }
      return new VfioError('dma', what + hint, e);
    }
  }

  unmapDma(iova: number, size: number): void {
    scratch.fill(0, 0, 24);
    sv.setUint32(0, 24, true);
    setU64(8, iova); setU64(16, size);
    if (ioctlBuf(this.fd, VFIO_IOMMU_UNMAP_DMA) < 0) {
      const e = lastErrno();
      throw new VfioError('dma', `VFIO_IOMMU_UNMAP_DMA of 0x${size.toString(16)} bytes at IOVA 0x${iova.toString(16)} failed: ${errText(e)}`, e);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuiet(this.fd);
  }
}

// ---------------------------------------------------------------- group

/** /dev/vfio/<group>: the unit of isolation; every device in it must be VFIO-owned or driverless. */
export class VfioGroup {
  private closed = false;
  private constructor(readonly id: number, readonly fd: number) {}

  static open(id: number, forAddr: string): VfioGroup {
    const path = `/dev/vfio/${id}`;
    const fd = raw.open(path, O_RDWR | 0o2000000 /* O_CLOEXEC */, 0);
    if (fd < 0) {
      const e = lastErrno();
      const code = errnoName(e);
      if (code === 'EBUSY') {
        throw new VfioError('busy', `IOMMU group ${id} of ${forAddr} is in use by another process or controller ` +
          '(another vhostd, SPDK or QEMU has it open); detach it there first', e);
      }
      if (code === 'ENOENT') {
        throw new VfioError('not-bound', `${path} does not exist: ${forAddr} is not bound to vfio-pci ` +
          `(echo ${forAddr} > /sys/bus/pci/drivers/vfio-pci/bind)`, e);
      }
      throw new VfioError('io', `cannot open ${path} for ${forAddr}: ${errText(e)}`, e);
    }
    const g = new VfioGroup(id, fd);
    scratch.fill(0, 0, 8);
    sv.setUint32(0, 8, true);
    if (ioctlBuf(fd, VFIO_GROUP_GET_STATUS) < 0) {
      const e = lastErrno();
      g.close();
      throw new VfioError('io', `VFIO_GROUP_GET_STATUS on ${path} failed: ${errText(e)}`, e);
    }
    if (!(sv.getUint32(4, true) & GROUP_FLAGS_VIABLE)) {
      g.close();
      const others = groupMembers(id).filter((d) => d.addr !== forAddr && d.driver && d.driver !== 'vfio-pci' && d.driver !== 'pcieport');
      throw new VfioError('not-viable', `IOMMU group ${id} of ${forAddr} is not viable: ` +
        (others.length
          ? `${others.map((d) => `${d.addr} is bound to ${d.driver}`).join(', ')}; unbind ${others.length > 1 ? 'them' : 'it'} or bind to vfio-pci too`
          : 'another device of the group is bound to a host driver; bind every device of the group to vfio-pci'));
    }
    return g;
  }

  setContainer(c: VfioContainer): void {
    scratch.fill(0, 0, 4);
    sv.setInt32(0, c.fd, true);
    if (ioctlBuf(this.fd, VFIO_GROUP_SET_CONTAINER) < 0) {
      const e = lastErrno();
      throw new VfioError('io', `VFIO_GROUP_SET_CONTAINER for group ${this.id} failed: ${errText(e)}`, e);
    }
  }

  /** The device fd of addr ("dddd:bb:dd.f"). */
  openDevice(addr: string): VfioDevice {
    const name = new TextEncoder().encode(addr + '\0');
    scratch.fill(0, 0, name.length);
    scratch.set(name, 0);
    const fd = ioctlBuf(this.fd, VFIO_GROUP_GET_DEVICE_FD);
    if (fd < 0) {
      const e = lastErrno();
      throw new VfioError(errnoName(e) === 'EBUSY' ? 'busy' : 'io',
        `VFIO_GROUP_GET_DEVICE_FD for ${addr} failed: ${errText(e)}` +
        (errnoName(e) === 'EBUSY' ? ' (the device is open elsewhere)' : ''), e);
    }
    return new VfioDevice(addr, fd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    ioctlArg(this.fd, VFIO_GROUP_UNSET_CONTAINER, 0);
    closeQuiet(this.fd);
  }
}

function groupMembers(id: number): PciDeviceInfo[] {
  let names: string[] = [];
  try { names = readdirSync(`/sys/kernel/iommu_groups/${id}/devices`); } catch { return []; }
  return names.map((n) => ({ addr: n, vendor: 0, device: 0, classCode: 0, driver: linkName(`${SYSFS_PCI}/${n}/driver`) }));
}

// ---------------------------------------------------------------- device

export interface RegionInfo {
  index: number;
  flags: number;
  size: number;
  /** offset of the region in the device fd (for pread/pwrite/mmap) */
  offset: number;
  /** mmappable areas (offset within the region, size); the whole region when it has no sparse cap */
  mmapAreas: { offset: number; size: number }[];
}

export interface IrqInfo { index: number; flags: number; count: number }

export interface MappedRegion { addr: number; size: number; }

export class VfioDevice {
  private closed = false;
  private configOffset = -1;
  readonly mappings: MappedRegion[] = [];
  constructor(readonly addr: string, readonly fd: number) {}

  info(): { flags: number; numRegions: number; numIrqs: number; canReset: boolean; isPci: boolean } {
    scratch.fill(0, 0, 24);
    sv.setUint32(0, 24, true);
    if (ioctlBuf(this.fd, VFIO_DEVICE_GET_INFO) < 0) {
      const e = lastErrno();
      throw new VfioError('io', `VFIO_DEVICE_GET_INFO for ${this.addr} failed: ${errText(e)}`, e);
    }
    const flags = sv.getUint32(4, true);
    return {
      flags, numRegions: sv.getUint32(8, true), numIrqs: sv.getUint32(12, true),
      canReset: (flags & DEVICE_FLAGS_RESET) !== 0, isPci: (flags & DEVICE_FLAGS_PCI) !== 0,
    };
  }

  regionInfo(index: number): RegionInfo {
    scratch.fill(0);
    sv.setUint32(0, scratch.length, true);
    sv.setUint32(8, index, true);
    if (ioctlBuf(this.fd, VFIO_DEVICE_GET_REGION_INFO) < 0) {
      const e = lastErrno();
      throw new VfioError('region', `VFIO_DEVICE_GET_REGION_INFO(${index}) for ${this.addr} failed: ${errText(e)}`, e);
    }
    const flags = sv.getUint32(4, true);
    const size = u64(16), offset = u64(24);
    let mmapAreas: { offset: number; size: number }[] = [];
    let sparse = false;
    if (flags & REGION_FLAG_CAPS) {
      let off = sv.getUint32(12, true);
      for (let guard = 0; off && off + 16 <= scratch.length && guard < 16; guard++) {
        if (sv.getUint16(off, true) === REGION_CAP_SPARSE_MMAP) {
          sparse = true;
          const n = sv.getUint32(off + 8, true);
          for (let i = 0; i < n && off + 16 + i * 16 + 16 <= scratch.length; i++) {
            mmapAreas.push({ offset: u64(off + 16 + i * 16), size: u64(off + 24 + i * 16) });
          }
        }
        off = sv.getUint32(off + 4, true);
      }
    }
    if (!sparse && flags & REGION_FLAG_MMAP) mmapAreas = [{ offset: 0, size }];
    if (!(flags & REGION_FLAG_MMAP)) mmapAreas = [];
    return { index, flags, size, offset, mmapAreas };
  }

  /**
   * Maps the mmappable area of region `index` that starts at region offset 0 (for NVMe
   * BAR0: the registers and doorbells; the MSI-X table may sit in an unmappable hole).
   */
  mapRegionStart(index: number): MappedRegion {
    const r = this.regionInfo(index);
    const area = r.mmapAreas.find((a) => a.offset === 0);
    if (!area || area.size === 0) {
      throw new VfioError('region', `region ${index} of ${this.addr} cannot be mmapped from offset 0 ` +
        `(flags 0x${r.flags.toString(16)}, ${r.mmapAreas.length} mmappable areas)`);
    }
    const addr = Number(raw.mmap(0, area.size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, r.offset));
    if (addr === -1) {
      const e = lastErrno();
      throw new VfioError('region', `mmap of region ${index} (0x${area.size.toString(16)} bytes) of ${this.addr} failed: ${errText(e)}`, e);
    }
    const m = { addr, size: area.size };
    this.mappings.push(m);
    return m;
  }

  private config(): number {
    if (this.configOffset < 0) this.configOffset = this.regionInfo(PCI_CONFIG_REGION).offset;
    return this.configOffset;
  }

  configRead(off: number, len: 1 | 2 | 4): number {
    const b = new Uint8Array(4);
    const n = Number(raw.pread(this.fd, b, len, this.config() + off));
    if (n !== len) {
      const e = n < 0 ? lastErrno() : 0;
      throw new VfioError('io', `config space read at 0x${off.toString(16)} of ${this.addr} failed${e ? `: ${errText(e)}` : ''}`, e);
    }
    const v = new DataView(b.buffer);
    return len === 1 ? v.getUint8(0) : len === 2 ? v.getUint16(0, true) : v.getUint32(0, true);
  }

  configWrite(off: number, len: 1 | 2 | 4, value: number): void {
    const b = new Uint8Array(4);
    const v = new DataView(b.buffer);
    if (len === 1) v.setUint8(0, value); else if (len === 2) v.setUint16(0, value, true); else v.setUint32(0, value >>> 0, true);
    const n = Number(raw.pwrite(this.fd, b, len, this.config() + off));
    if (n !== len) {
      const e = n < 0 ? lastErrno() : 0;
      throw new VfioError('io', `config space write at 0x${off.toString(16)} of ${this.addr} failed${e ? `: ${errText(e)}` : ''}`, e);
    }
  }

  /** Turns on memory decoding and bus mastering (DMA), INTx off (MSI-X is used). */
  enableBusMaster(): void {
    const cmd = this.configRead(PCI_COMMAND, 2);
    this.configWrite(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
  }

  irqInfo(index: number): IrqInfo {
    scratch.fill(0, 0, 16);
    sv.setUint32(0, 16, true);
    sv.setUint32(8, index, true);
    if (ioctlBuf(this.fd, VFIO_DEVICE_GET_IRQ_INFO) < 0) {
      const e = lastErrno();
      throw new VfioError('irq', `VFIO_DEVICE_GET_IRQ_INFO(${index}) for ${this.addr} failed: ${errText(e)}`, e);
    }
    return { index, flags: sv.getUint32(4, true), count: sv.getUint32(12, true) };
  }

  /** Routes interrupts start.. of `index` to eventfds (-1 leaves a vector unrouted). */
  setIrqEventfds(index: number, fds: number[], start = 0): void {
    const argsz = 20 + 4 * fds.length;
    if (argsz > scratch.length) throw new VfioError('irq', `too many interrupt vectors (${fds.length})`);
    scratch.fill(0, 0, argsz);
    sv.setUint32(0, argsz, true);
    sv.setUint32(4, IRQ_DATA_EVENTFD | IRQ_ACTION_TRIGGER, true);
    sv.setUint32(8, index, true);
    sv.setUint32(12, start, true);
    sv.setUint32(16, fds.length, true);
    fds.forEach((fd, i) => sv.setInt32(20 + 4 * i, fd, true));
    if (ioctlBuf(this.fd, VFIO_DEVICE_SET_IRQS) < 0) {
      const e = lastErrno();
      throw new VfioError('irq', `VFIO_DEVICE_SET_IRQS(index ${index}, ${fds.length} eventfds) for ${this.addr} failed: ${errText(e)}`, e);
    }
  }

  /** Disables every interrupt of `index` (count 0, DATA_NONE). */
  disableIrqs(index: number): void {
    scratch.fill(0, 0, 20);
    sv.setUint32(0, 20, true);
    sv.setUint32(4, IRQ_DATA_NONE | IRQ_ACTION_TRIGGER, true);
    sv.setUint32(8, index, true);
    ioctlBuf(this.fd, VFIO_DEVICE_SET_IRQS);
  }

  /** Function-level (or bus) reset, as vfio-pci offers it. */
  reset(): void {
    if (ioctlArg(this.fd, VFIO_DEVICE_RESET, 0) < 0) {
      const e = lastErrno();
      throw new VfioError('reset', `VFIO_DEVICE_RESET of ${this.addr} failed: ${errText(e)}`, e);
    }
  }

  /** Unmaps the BAR mappings and closes the fd (the kernel can then release the device). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.mappings.splice(0)) raw.munmap(m.addr, m.size);
    closeQuiet(this.fd);
  }
}
