// virtio-blk feature bits and config space for a bdev.
import * as B from './virtio_blk.js';
import { bit, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from '../../src/virtio/constants.js';

export interface BlkGeometry {
  blockSize: number;
  numBlocks: number;
  numQueues: number;
  readOnly: boolean;
  flush: boolean;
  discard: boolean;
  writeZeroes: boolean;
}

export function blkFeatures(g: BlkGeometry): bigint {
  let f = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) |
    bit(B.VIRTIO_BLK_F_SIZE_MAX) | bit(B.VIRTIO_BLK_F_SEG_MAX) | bit(B.VIRTIO_BLK_F_BLK_SIZE) |
    bit(B.VIRTIO_BLK_F_TOPOLOGY) | bit(B.VIRTIO_BLK_F_MQ);
  if (g.readOnly) f |= bit(B.VIRTIO_BLK_F_RO);
  if (g.flush) f |= bit(B.VIRTIO_BLK_F_FLUSH);
  if (g.discard && !g.readOnly) f |= bit(B.VIRTIO_BLK_F_DISCARD);
  if (g.writeZeroes && !g.readOnly) f |= bit(B.VIRTIO_BLK_F_WRITE_ZEROES);
  return f;
}

/** struct virtio_blk_config, 60 bytes (virtio 1.2 5.2.4). */
export function blkConfigSpace(g: BlkGeometry): Uint8Array {
  const c = new Uint8Array(60);
  const dv = new DataView(c.buffer);
  const perBlock = g.blockSize / B.SECTOR;
  dv.setBigUint64(0, BigInt(g.numBlocks) * BigInt(perBlock), true); // capacity in 512-byte sectors
  dv.setUint32(8, B.BLK_SIZE_MAX, true);
  dv.setUint32(12, B.BLK_SEG_MAX, true);
  dv.setUint32(20, g.blockSize, true);
  dv.setUint8(24, 0);          // physical_block_exp
  dv.setUint8(25, 0);          // alignment_offset
  dv.setUint16(26, 1, true);   // min_io_size (blocks)
  dv.setUint32(28, 0, true);   // opt_io_size
  dv.setUint8(32, g.flush ? 1 : 0); // writeback
  dv.setUint16(34, g.numQueues, true);
  dv.setUint32(36, B.BLK_MAX_DISCARD_SECTORS, true);
  dv.setUint32(40, 1, true);   // max_discard_seg
  dv.setUint32(44, perBlock, true); // discard_sector_alignment
  dv.setUint32(48, B.BLK_MAX_WRITE_ZEROES_SECTORS, true);
  dv.setUint32(52, 1, true);   // max_write_zeroes_seg
  dv.setUint8(56, g.discard ? 1 : 0); // write_zeroes_may_unmap
  return c;
}
