// bdev_get_bdevs and bdev_get_iostat result objects, in SPDK's field layout.
import type { Bdev } from './bdev.js';
import { S, SLOT_DOUBLES, sumStats } from './stats.js';
import { assignedRateLimits } from './qos/qos.js';

const IO_TYPES = ['read', 'write', 'unmap', 'flush', 'reset', 'nvme_admin', 'nvme_io', 'nvme_io_md', 'write_zeroes',
  'zcopy', 'get_zone_info', 'zone_management', 'zone_append', 'compare', 'compare_and_write', 'abort', 'seek_hole',
  'seek_data', 'copy', 'nvme_iov_md'] as const;

const PRODUCT: Record<string, string> = { malloc: 'Malloc disk', null: 'Null disk', aio: 'AIO disk', uring: 'URING bdev', delay: 'delay', nvme: 'NVMe disk',
  rbd: 'Ceph Rbd Disk', lvol: 'Logical Volume' };

export function bdevInfo(b: Bdev): Record<string, unknown> {
  const supported: Record<string, boolean> = {};
  for (const t of IO_TYPES) supported[t] = (b.ioTypes as ReadonlySet<string>).has(t);
  const info: Record<string, unknown> = {
    name: b.name,
    aliases: [...b.aliases],
    product_name: PRODUCT[b.module] ?? `${b.module} disk`,
    block_size: b.blockSize,
    num_blocks: b.numBlocks,
    uuid: b.uuid,
    assigned_rate_limits: assignedRateLimits(b),
    claimed: b.claimedBy !== null,
  };
  if (b.claimedBy !== null) info.claim_type = 'exclusive_write';
  info.zoned = false;
  info.supported_io_types = supported;
  info.driver_specific = b.driverSpecific() ?? {};
  return info;
}

interface Totals {
  readOps: number; readBytes: number; writeOps: number; writeBytes: number; unmapOps: number; unmapBytes: number;
  readLatNs: number; readLatMaxNs: number; readLatMinNs: number; writeLatNs: number; writeLatMaxNs: number;
  writeLatMinNs: number; unmapLatNs: number; errors: number;
}

/** SPDK's spdk_bdev_dump_io_stat_json fields; ticks are ns (tick_rate 1e9). */
export function ioStatFields(t: Totals): Record<string, unknown> {
  const out: Record<string, unknown> = {
    bytes_read: t.readBytes, num_read_ops: t.readOps, bytes_written: t.writeBytes, num_write_ops: t.writeOps,
    bytes_unmapped: t.unmapBytes, num_unmap_ops: t.unmapOps, bytes_copied: 0, num_copy_ops: 0,
    read_latency_ticks: Math.round(t.readLatNs), max_read_latency_ticks: Math.round(t.readLatMaxNs), min_read_latency_ticks: Math.round(t.readLatMinNs),
    write_latency_ticks: Math.round(t.writeLatNs), max_write_latency_ticks: Math.round(t.writeLatMaxNs), min_write_latency_ticks: Math.round(t.writeLatMinNs),
    unmap_latency_ticks: Math.round(t.unmapLatNs), max_unmap_latency_ticks: 0, min_unmap_latency_ticks: 0,
    copy_latency_ticks: 0, max_copy_latency_ticks: 0, min_copy_latency_ticks: 0,
    io_error: t.errors > 0 ? { failed: t.errors } : {},
  };
  return out;
}

export function deviceStat(b: Bdev): Record<string, unknown> {
  return { name: b.name, ...ioStatFields(sumStats(b.stats)) };
}

/** One reactor's slot of a bdev's statistics (SPDK's per-channel view). */
export function slotStat(b: Bdev, slot: number): Totals {
  const d = new Float64Array(b.stats, slot * SLOT_DOUBLES * 8, SLOT_DOUBLES);
  return {
    readOps: d[S.READ_OPS], readBytes: d[S.READ_BYTES], writeOps: d[S.WRITE_OPS], writeBytes: d[S.WRITE_BYTES],
    unmapOps: d[S.UNMAP_OPS], unmapBytes: d[S.UNMAP_BYTES], readLatNs: d[S.READ_LAT], readLatMaxNs: d[S.READ_LAT_MAX],
    readLatMinNs: d[S.READ_LAT_MIN], writeLatNs: d[S.WRITE_LAT], writeLatMaxNs: d[S.WRITE_LAT_MAX],
    writeLatMinNs: d[S.WRITE_LAT_MIN], unmapLatNs: d[S.UNMAP_LAT], errors: d[S.ERRORS],
  };
}

/** Clears only the max/min latency fields (SPDK reset mode "maxmin"). */
export function resetMaxMin(b: Bdev): void {
  const d = new Float64Array(b.stats);
  for (let off = 0; off < d.length; off += SLOT_DOUBLES) {
    d[off + S.READ_LAT_MAX] = 0; d[off + S.READ_LAT_MIN] = 0;
    d[off + S.WRITE_LAT_MAX] = 0; d[off + S.WRITE_LAT_MIN] = 0;
  }
}
