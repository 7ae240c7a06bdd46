// The four latencies of a delay bdev (SPDK's enum delay_io_type), in the order they are kept
// in the SharedArrayBuffer the control plane shares with every reactor's channel.
export const AVG_READ = 0, P99_READ = 1, AVG_WRITE = 2, P99_WRITE = 3;
export const LATENCY_COUNT = 4;

/** bdev_delay_update_latency's latency_type values, by index. */
export const LATENCY_TYPES = ['avg_read', 'p99_read', 'avg_write', 'p99_write'] as const;
export type LatencyType = (typeof LATENCY_TYPES)[number];

/** bdev_delay_create's parameter names, by index (microseconds). */
export const LATENCY_PARAMS = ['avg_read_latency', 'p99_read_latency', 'avg_write_latency', 'p99_write_latency'] as const;
