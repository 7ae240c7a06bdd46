// qcow2 header checks on synthetic headers: what import refuses and why (the features qemu-img
// rarely writes by default: zstd, extended L2, external data file, the corrupt bit), and the
// sanity checks on sizes and offsets of a hostile file.
import { describe, it, expect } from 'vitest';
import { parseQcow2Header, QCOW2_MAGIC } from '../../bdev/image/qcow2.js';

function header(o: { version?: number; clusterBits?: number; size?: number; l1Size?: number; l1Offset?: number;
  crypt?: number; incompat?: number; backing?: number } = {}): Buffer {
  const h = Buffer.alloc(512);
  h.writeUInt32BE(QCOW2_MAGIC, 0);
  h.writeUInt32BE(o.version ?? 3, 4);
  h.writeBigUInt64BE(BigInt(o.backing ?? 0), 8);
  h.writeUInt32BE(o.backing ? 8 : 0, 16);
  if (o.backing) h.write('base.img', o.backing);
  h.writeUInt32BE(o.clusterBits ?? 16, 20);
  h.writeBigUInt64BE(BigInt(o.size ?? 1 << 30), 24);
  h.writeUInt32BE(o.crypt ?? 0, 32);
  h.writeUInt32BE(o.l1Size ?? 2, 36);
  h.writeBigUInt64BE(BigInt(o.l1Offset ?? 196608), 40);
  h.writeBigUInt64BE(BigInt(o.incompat ?? 0), 72);
  h.writeUInt32BE(104, 100);
  return h;
}
const FILE = 1 << 20;

describe('qcow2 header', () => {
  it('accepts versions 2 and 3 and reports the geometry', () => {
    expect(parseQcow2Header(header(), FILE, 'a.qcow2')).toMatchObject({ version: 3, clusterSize: 65536, size: 1 << 30, l1Size: 2, dirty: false });
    expect(parseQcow2Header(header({ version: 2 }), FILE, 'a.qcow2').version).toBe(2);
    expect(parseQcow2Header(header({ incompat: 1 }), FILE, 'a.qcow2').dirty).toBe(true);
  });

  it('refuses what import does not handle, saying what to do', () => {
    const cases: Array<[Parameters<typeof header>[0], RegExp]> = [
      [{ version: 4 }, /version 4 is not supported/],
      [{ backing: 300 }, /has a backing file \(base\.img\).*flatten it first with 'qemu-img convert/],
      [{ crypt: 1 }, /is encrypted \(method AES\)/],
      [{ incompat: 2 }, /QEMU marked it corrupt: repair it with 'qemu-img check -r all'/],
      [{ incompat: 4 }, /external data file: not yet supported/],
      [{ incompat: 8 }, /compression type other than zlib \(zstd\).*compression_type=zlib/],
      [{ incompat: 16 }, /extended L2 entries \(subclusters\): not yet supported/],
      [{ incompat: 64 }, /unknown incompatible feature bits 0x40/],
    ];
    for (const [o, msg] of cases) expect(() => parseQcow2Header(header(o), FILE, 'a.qcow2'), JSON.stringify(o)).toThrow(msg);
  });

  it('refuses hostile geometry: cluster size, L1 too small for the size, L1 past the end of the file', () => {
    expect(() => parseQcow2Header(header({ clusterBits: 30 }), FILE, 'a')).toThrow(/cluster_bits 30 is outside 9\.\.21/);
    expect(() => parseQcow2Header(header({ l1Size: 1 }), FILE, 'a')).toThrow(/L1 table has 1 entries, fewer than the 2/);
    expect(() => parseQcow2Header(header({ l1Offset: FILE }), FILE, 'a')).toThrow(/ends past the end of the file/);
    expect(() => parseQcow2Header(header({ size: 2 ** 52 }), FILE, 'a')).toThrow(/L1 table has 2 entries/);
    expect(() => parseQcow2Header(Buffer.from('QFI'), FILE, 'a')).toThrow(/no qcow2 magic/);
  });
});
