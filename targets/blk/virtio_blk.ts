// virtio-blk wire constants (virtio 1.2, 5.2) and this target's limits.
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR = 512;

/** Data segments per request we accept (seg_max) and bytes per segment (size_max). */
export const BLK_SEG_MAX = 126;
export const BLK_SIZE_MAX = 1 << 20;
/** Segments a chain may decode into: data + header + status, each possibly split at a region edge. */
export const BLK_CHAIN_SEGS = 2 * (BLK_SEG_MAX + 2);
/** Largest DISCARD / WRITE_ZEROES in 512-byte sectors, one range per request. */
export const BLK_MAX_DISCARD_SECTORS = 1 << 22;
export const BLK_MAX_WRITE_ZEROES_SECTORS = 1 << 22;
