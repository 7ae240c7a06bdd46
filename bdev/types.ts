// Constants shared by the control plane and the reactors.

export const IoType = {
  READ: 1, WRITE: 2, FLUSH: 3, UNMAP: 4, WRITE_ZEROES: 5, RESET: 6,
} as const;
export type IoTypeName = 'read' | 'write' | 'flush' | 'unmap' | 'write_zeroes' | 'reset';
export const ioTypeNames: Record<number, IoTypeName> = {
  1: 'read', 2: 'write', 3: 'flush', 4: 'unmap', 5: 'write_zeroes', 6: 'reset',
};

export const IoStatus = {
  SUCCESS: 0, FAILED: 1, UNSUPPORTED: 2, NOMEM: 3, ABORTED: 4, OUT_OF_RANGE: 5,
} as const;

/** Plain data that lets a reactor open a channel to a bdev (structured-clone safe). */
export interface BdevChannelSpec {
  name: string;
  module: string;
  blockSize: number;
  numBlocks: number;
  /** One Float64: the current size in blocks, shared with every channel (a resize updates it). */
  size?: SharedArrayBuffer;
  /** QoS rate limits shared by every channel (qos/qos_bucket.ts). */
  qos?: SharedArrayBuffer;
  /** Per-reactor statistics slots (see stats.ts). */
  stats: SharedArrayBuffer;
  /** Largest I/O the module accepts in one piece, in blocks (0 = no limit). */
  maxIoBlocks: number;
  /** Module-specific data: addresses, fds, options. */
  data: Record<string, unknown>;
}
