// DEVICE_GET_REGION_INFO replies with a sparse mmap capability (the mappable doorbell page
// of an NVMe BAR0), as QEMU's vfio-user client asks for them: first with argsz = 32 to learn
// the full size, then again with that argsz.
import { describe, expect, it } from 'vitest';
import { encodeRegionInfo } from '../../../src/vfio_user/server.js';
import * as P from '../../../src/vfio_user/protocol.js';

const rw = P.REGION_FLAG_READ | P.REGION_FLAG_WRITE;
const bar0 = { flags: rw | P.REGION_FLAG_MMAP, size: 0x4000, offset: 0, fd: 42, sparse: [{ offset: 0x1000, size: 0x1000 }] };

function parse(p: Uint8Array) {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return { argsz: dv.getUint32(0, true), flags: dv.getUint32(4, true), index: dv.getUint32(8, true), capOffset: dv.getUint32(12, true),
    size: Number(dv.getBigUint64(16, true)), offset: Number(dv.getBigUint64(24, true)), dv };
}

describe('encodeRegionInfo', () => {
  it('a reply too short for the caps gives the full argsz, without FLAG_CAPS and without the fd', () => {
    const r = encodeRegionInfo(P.PCI_BAR0, bar0, 32);
    const h = parse(r.payload);
    expect(r.payload.length).toBe(32);
    expect(h.argsz).toBe(32 + 16 + 16);
    // QEMU's vfio-user client refuses FLAG_CAPS with a cap_offset outside the reply (EINVAL)
    expect(h.flags & P.REGION_FLAG_CAPS).toBe(0);
    expect(h.capOffset).toBe(0);
    expect(h.flags & P.REGION_FLAG_MMAP).toBeTruthy();
    expect(r.fds).toEqual([]);
  });

  it('with the full argsz: FLAG_CAPS, the sparse mmap cap at offset 32, and the fd', () => {
    const r = encodeRegionInfo(P.PCI_BAR0, bar0, 64);
    const h = parse(r.payload);
    expect(r.payload.length).toBe(64);
    expect(h.flags & P.REGION_FLAG_CAPS).toBeTruthy();
    expect(h.capOffset).toBe(32);
    expect(h.size).toBe(0x4000);
    expect(h.dv.getUint16(32, true)).toBe(P.REGION_INFO_CAP_SPARSE_MMAP);
    expect(h.dv.getUint16(34, true)).toBe(1);        // version
    expect(h.dv.getUint32(36, true)).toBe(0);        // next
    expect(h.dv.getUint32(40, true)).toBe(1);        // nr_areas
    expect(Number(h.dv.getBigUint64(48, true))).toBe(0x1000);
    expect(Number(h.dv.getBigUint64(56, true))).toBe(0x1000);
    expect(r.fds).toEqual([42]);
  });

  it('a region without caps: plain 32-byte reply, fd if mappable', () => {
    const plain = encodeRegionInfo(P.PCI_BAR0, { flags: rw, size: 0x4000, offset: 0 }, 32);
    expect(parse(plain.payload).flags).toBe(rw);
    expect(plain.fds).toEqual([]);
    const whole = encodeRegionInfo(P.PCI_BAR0, { flags: rw | P.REGION_FLAG_MMAP, size: 0x1000, offset: 0, fd: 7 }, 32);
    expect(parse(whole.payload).argsz).toBe(32);
    expect(whole.fds).toEqual([7]);
  });
});
