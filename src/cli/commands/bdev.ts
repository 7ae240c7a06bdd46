// bdev subcommands (rpc.py names: sizes given in MiB and converted to num_blocks as rpc.py does).
import type { Args, ArgSpec, CommandSpec } from './types.js';
import { ClientError } from '../rpc-client.js';

const mdArgs: ArgSpec[] = [
  { name: 'physical_block_size', flags: ['-p', '--physical-block-size'], type: 'int', help: 'physical block size' },
  { name: 'md_size', flags: ['-m', '--md-size'], type: 'int', help: 'metadata size (not supported: 0 only)' },
  { name: 'dif_type', flags: ['-t', '--dif-type'], type: 'int', choices: ['0', '1', '2', '3'], help: 'protection information type (0 only)' },
  { name: 'dif_is_head_of_md', flags: ['-d', '--dif-is-head-of-md'], type: 'bool', help: 'PI at head of metadata (not supported)' },
  { name: 'dif_pi_format', flags: ['-f', '--dif-pi-format'], type: 'int', choices: ['0', '1', '2'], help: 'PI format (0 only)' },
];

function sizeParams(a: Args, integerMiB: boolean): Record<string, unknown> {
  const total = a.total_size as number, bs = a.block_size as number;
  if (!(total > 0)) throw new ClientError(`total_size must be > 0 MiB, got ${total}`);
  if (integerMiB && !Number.isInteger(total)) throw new ClientError(`total_size must be a whole number of MiB, got ${total}`);
  if (!(bs > 0)) throw new ClientError(`block_size must be > 0, got ${bs}`);
  const p: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined && k !== 'total_size') p[k] = v;
  p.num_blocks = Math.floor((total * 1024 * 1024) / bs);
  return p;
}

export const bdevCommands: CommandSpec[] = [
  { name: 'bdev_malloc_create', help: 'Create a bdev with malloc backend', args: [
    { name: 'name', flags: ['-b', '--name'], help: 'name of the bdev (default Malloc<N>)' },
    { name: 'uuid', flags: ['-u', '--uuid'], help: 'UUID of the bdev (optional)' },
    { name: 'total_size', type: 'float', required: true, help: 'size of malloc bdev in MB (float > 0)' },
    { name: 'block_size', type: 'int', required: true, help: 'data block size for this bdev' },
    { name: 'optimal_io_boundary', flags: ['-o', '--optimal-io-boundary'], type: 'int', help: 'split boundary in blocks (0 only)' },
    { name: 'md_interleave', flags: ['-i', '--md-interleave'], type: 'bool', help: 'interleaved metadata (not supported)' },
    ...mdArgs,
  ], params: (a) => sizeParams(a, false) },
  { name: 'bdev_malloc_delete', help: 'Delete a malloc disk', args: [{ name: 'name', required: true, help: 'malloc bdev name' }] },
  { name: 'bdev_null_create', help: 'Add a bdev with null backend', args: [
    { name: 'name', required: true, help: 'block device name' },
    { name: 'uuid', flags: ['-u', '--uuid'], help: 'UUID of the bdev (optional)' },
    { name: 'total_size', type: 'int', required: true, help: 'size of null bdev in MB (int > 0)' },
    { name: 'block_size', type: 'int', required: true, help: 'data block size for this bdev' },
    ...mdArgs,
  ], params: (a) => sizeParams(a, true) },
  { name: 'bdev_null_delete', help: 'Delete a null bdev', args: [{ name: 'name', required: true, help: 'null bdev name' }] },
  { name: 'bdev_null_resize', help: 'Resize a null bdev (grow while in use; the guest is told)', args: [
    { name: 'name', required: true, help: 'null bdev name' },
    { name: 'new_size', type: 'int', required: true, help: 'new size in MiB' },
  ] },
  { name: 'bdev_delay_create', help: 'Add a delay bdev on existing bdev', args: [
    { name: 'base_bdev_name', flags: ['-b', '--base-bdev-name'], required: true, help: 'base bdev name' },
    { name: 'name', flags: ['-d', '--name'], required: true, help: 'name of the delay bdev' },
    { name: 'avg_read_latency', flags: ['-r', '--avg-read-latency'], type: 'int', required: true, help: 'average read latency (us)' },
    { name: 'p99_read_latency', flags: ['-t', '--nine-nine-read-latency'], type: 'int', required: true, help: 'p99 read latency (us)' },
    { name: 'avg_write_latency', flags: ['-w', '--avg-write-latency'], type: 'int', required: true, help: 'average write latency (us)' },
    { name: 'p99_write_latency', flags: ['-n', '--nine-nine-write-latency'], type: 'int', required: true, help: 'p99 write latency (us)' },
    { name: 'uuid', flags: ['-u', '--uuid'], help: 'UUID of the bdev (optional)' },
  ] },
  { name: 'bdev_delay_delete', help: 'Delete a delay bdev', args: [{ name: 'name', required: true, help: 'delay bdev name' }] },
  { name: 'bdev_delay_update_latency', help: 'Update one of the latency values for a given delay bdev', args: [
    { name: 'delay_bdev_name', required: true, help: 'name of the delay bdev' },
    { name: 'latency_type', required: true, choices: ['avg_read', 'p99_read', 'avg_write', 'p99_write'], help: 'latency to update' },
    { name: 'latency_us', type: 'int', required: true, help: 'new latency value (us)' },
  ] },
  { name: 'bdev_uring_create', help: 'Create a bdev with io_uring backend', args: [
    { name: 'filename', required: true, help: 'path to device or file (ex: /dev/nvme0n1)' },
    { name: 'name', required: true, help: 'bdev name' },
    { name: 'block_size', type: 'int', help: 'block size for this bdev (default: detect)' },
    { name: 'uuid', flags: ['-u', '--uuid'], help: 'UUID of the bdev (optional)' },
  ] },
  { name: 'bdev_uring_delete', help: 'Delete a uring bdev', args: [{ name: 'name', required: true, help: 'uring bdev name' }] },
  { name: 'bdev_uring_rescan', help: 'Rescan a uring bdev (pick up a new size)', args: [{ name: 'name', required: true, help: 'uring bdev name' }] },
  { name: 'bdev_aio_create', help: 'Add a bdev with aio backend', args: [
    { name: 'filename', required: true, help: 'path to device or file (ex: /dev/sda)' },
    { name: 'name', required: true, help: 'block device name' },
    { name: 'block_size', type: 'int', help: 'block size for this bdev (default: detect)' },
    { name: 'readonly', flags: ['-r', '--readonly'], type: 'bool', help: 'set this bdev as read-only' },
    { name: 'fallocate', flags: ['--fallocate'], type: 'bool', help: 'support unmap/writezeros with fallocate' },
    { name: 'uuid', flags: ['-u', '--uuid'], help: 'UUID of the bdev (optional)' },
  ] },
  { name: 'bdev_aio_delete', help: 'Delete an aio disk', args: [{ name: 'name', required: true, help: 'aio bdev name' }] },
  { name: 'bdev_aio_rescan', help: 'Rescan an aio bdev (pick up a new size)', args: [{ name: 'name', required: true, help: 'aio bdev name' }] },
  { name: 'bdev_wait_for_examine', help: 'Report when all bdevs have been examined' },
  { name: 'bdev_get_bdevs', help: 'Display current blockdev list or required blockdev', args: [
    { name: 'name', flags: ['-b', '--name'], help: 'name of the blockdev (optional)' },
    { name: 'timeout', flags: ['-t', '--timeout'], type: 'int', help: 'ms to wait for the bdev to appear' },
  ] },
  { name: 'bdev_get_iostat', help: 'Display current I/O statistics of all the blockdevs or specified blockdev', args: [
    { name: 'name', flags: ['-b', '--name'], help: 'name of the blockdev (optional)' },
    { name: 'per_channel', flags: ['-c', '--per-channel'], type: 'bool', help: 'per reactor statistics (needs -b)' },
    { name: 'reset_mode', flags: ['--reset-mode'], choices: ['all', 'maxmin', 'none'], help: 'reset after reading' },
  ] },
  { name: 'bdev_reset_iostat', help: 'Reset I/O statistics of all the blockdevs or specified blockdev', args: [
    { name: 'name', flags: ['-b', '--name'], help: 'name of the blockdev (optional)' },
    { name: 'mode', flags: ['-m', '--mode'], choices: ['all', 'maxmin'], help: 'what to reset (default all)' },
  ] },
];
