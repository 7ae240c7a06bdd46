// vfio-user wire format (QEMU docs/interop/vfio-user.rst, protocol 0.1): the 16-byte
// header, command numbers and the VFIO constants the messages reuse.

export const HDR_SIZE = 16;

export const Cmd = {
  VERSION: 1, DMA_MAP: 2, DMA_UNMAP: 3, DEVICE_GET_INFO: 4, DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6, DEVICE_GET_IRQ_INFO: 7, DEVICE_SET_IRQS: 8, REGION_READ: 9, REGION_WRITE: 10,
  DMA_READ: 11, DMA_WRITE: 12, DEVICE_RESET: 13, REGION_WRITE_MULTI: 15, DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17, MIG_DATA_WRITE: 18,
} as const;

export const cmdNames: Record<number, string> = Object.fromEntries(Object.entries(Cmd).map(([k, v]) => [v, k]));

export const FLAG_TYPE_MASK = 0xf, TYPE_COMMAND = 0, TYPE_REPLY = 1, FLAG_NO_REPLY = 0x10, FLAG_ERROR = 0x20;

export const VERSION_MAJOR = 0, VERSION_MINOR = 1;

/** Our limits, told to the client in the VERSION reply. */
export const MAX_MSG_FDS = 16;
export const MAX_DATA_XFER = 1 << 20;
/** Largest message we accept (a region write of MAX_DATA_XFER plus headers). */
export const MAX_MSG_SIZE = MAX_DATA_XFER + 4096;

// VFIO PCI region and irq indexes
export const PCI_BAR0 = 0, PCI_ROM = 6, PCI_CONFIG = 7, PCI_VGA = 8, PCI_NUM_REGIONS = 9;
export const IRQ_INTX = 0, IRQ_MSI = 1, IRQ_MSIX = 2, IRQ_ERR = 3, IRQ_REQ = 4, PCI_NUM_IRQS = 5;

export const DEVICE_FLAGS_RESET = 1, DEVICE_FLAGS_PCI = 2;
export const REGION_FLAG_READ = 1, REGION_FLAG_WRITE = 2, REGION_FLAG_MMAP = 4, REGION_FLAG_CAPS = 8;
export const REGION_INFO_CAP_SPARSE_MMAP = 1;
export const IRQ_INFO_EVENTFD = 1, IRQ_INFO_MASKABLE = 2, IRQ_INFO_AUTOMASKED = 4, IRQ_INFO_NORESIZE = 8;
export const IRQ_SET_DATA_NONE = 1, IRQ_SET_DATA_BOOL = 2, IRQ_SET_DATA_EVENTFD = 4;
export const IRQ_SET_ACTION_MASK = 8, IRQ_SET_ACTION_UNMASK = 16, IRQ_SET_ACTION_TRIGGER = 32;

export const DMA_FLAG_READ = 1, DMA_FLAG_WRITE = 2;

/** errno values sent in error replies. */
export const E = { EPERM: 1, ENOENT: 2, EIO: 5, EBADF: 9, ENOMEM: 12, EFAULT: 14, EBUSY: 16, EEXIST: 17, EINVAL: 22, ENOSPC: 28, ENOTSUP: 95 } as const;

export class VfioUserError extends Error {
  constructor(readonly errno: number, message: string) { super(message); }
}

export interface MsgHeader { id: number; cmd: number; size: number; flags: number; error: number }

export function readHeader(b: Uint8Array, off = 0): MsgHeader {
  const dv = new DataView(b.buffer, b.byteOffset + off, HDR_SIZE);
  return { id: dv.getUint16(0, true), cmd: dv.getUint16(2, true), size: dv.getUint32(4, true),
    flags: dv.getUint32(8, true), error: dv.getUint32(12, true) };
}

export function writeHeader(b: Uint8Array, h: MsgHeader): void {
  const dv = new DataView(b.buffer, b.byteOffset, HDR_SIZE);
  dv.setUint16(0, h.id, true); dv.setUint16(2, h.cmd, true); dv.setUint32(4, h.size, true);
  dv.setUint32(8, h.flags, true); dv.setUint32(12, h.error, true);
}

/** A whole message: header + payload. */
export function message(h: Omit<MsgHeader, 'size'>, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(HDR_SIZE + payload.length);
  writeHeader(b, { ...h, size: b.length });
  b.set(payload, HDR_SIZE);
  return b;
}

/** VERSION payload: major, minor, NUL-terminated JSON. */
export function versionPayload(major: number, minor: number, json: unknown): Uint8Array {
  const s = Buffer.from(JSON.stringify(json) + '\0');
  const b = new Uint8Array(4 + s.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, major, true); dv.setUint16(2, minor, true);
  b.set(s, 4);
  return b;
}

export function parseVersion(p: Uint8Array): { major: number; minor: number; caps: Record<string, unknown> } {
  if (p.length < 4) throw new VfioUserError(E.EINVAL, `VERSION payload of ${p.length} bytes is too short`);
  const dv = new DataView(p.buffer, p.byteOffset, p.length);
  const major = dv.getUint16(0, true), minor = dv.getUint16(2, true);
  let caps: Record<string, unknown> = {};
  if (p.length > 4) {
    let end = p.indexOf(0, 4);
    if (end < 0) end = p.length;
    const text = Buffer.from(p.subarray(4, end)).toString('utf8');
    if (text.length) {
      let j: unknown;
      try { j = JSON.parse(text); } catch { throw new VfioUserError(E.EINVAL, 'VERSION capabilities are not valid JSON'); }
      const c = (j as { capabilities?: unknown })?.capabilities;
      if (c && typeof c === 'object') caps = c as Record<string, unknown>;
    }
  }
  return { major, minor, caps };
}
