// QoS and image import subcommands: bdev_set_qos_limit (rpc.py's flags), bdev_import_image
// (starts the job, then polls it and draws a progress bar on stderr until it ends) and
// bdev_get_import_jobs.
import type { CommandSpec } from './types.js';
import type { RpcClient } from '../rpc-client.js';
import { ClientError } from '../rpc-client.js';

const limit = (name: string, help: string) => ({ name, flags: [`--${name}`], type: 'int' as const, help });

interface Job { operation_id: number; state: string; progress: number; total_bytes: number; copied_bytes: number;
  zero_bytes: number; mb_per_sec: number; error?: string }

const POLL_MS = 250;
const BAR = 30;

function bar(j: Job): string {
  const fill = Math.min(BAR, Math.floor((j.progress / 100) * BAR));
  const mib = (n: number) => (n / (1 << 20)).toFixed(0);
  return `[${'#'.repeat(fill)}${'.'.repeat(BAR - fill)}] ${j.progress.toFixed(1).padStart(5)}% ` +
    `${mib(j.copied_bytes + j.zero_bytes)}/${mib(j.total_bytes)} MiB ${j.mb_per_sec} MiB/s`;
}

/** Starts an import and follows it: a bar redrawn in place on a terminal, a line per 10% otherwise. */
async function importImage(client: RpcClient, params: Record<string, unknown>, quiet: boolean): Promise<unknown> {
  const { operation_id: id } = await client.call('bdev_import_image', params) as { operation_id: number };
  const tty = process.stderr.isTTY === true;
  let lastTenth = -1;
  for (;;) {
    const [j] = await client.call('bdev_get_import_jobs', { operation_id: id }) as Job[];
    if (!quiet) {
      if (tty) process.stderr.write(`\r${bar(j)}`);
      else if (Math.floor(j.progress / 10) !== lastTenth || j.state !== 'in progress') {
        lastTenth = Math.floor(j.progress / 10);
        process.stderr.write(`${bar(j)}\n`);
      }
    }
    if (j.state !== 'in progress') {
      if (tty && !quiet) process.stderr.write('\n');
      if (j.state === 'error') throw new ClientError(`image import ${id} failed: ${j.error}`);
      return j;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

export const imageCommands: CommandSpec[] = [
  { name: 'bdev_set_qos_limit', help: 'Set QoS rate limits on a blockdev (0 = no limit; reads and writes over it wait)', args: [
    { name: 'name', required: true, help: 'blockdev name' },
    limit('rw_ios_per_sec', 'R/W IOs per second limit (a multiple of 1000, e.g. 20000); 0 = unlimited'),
    limit('rw_mbytes_per_sec', 'R/W megabytes per second limit (e.g. 100); 0 = unlimited'),
    limit('r_mbytes_per_sec', 'read megabytes per second limit; 0 = unlimited'),
    limit('w_mbytes_per_sec', 'write megabytes per second limit; 0 = unlimited'),
  ] },
  { name: 'bdev_import_image', help: 'Copy a raw or qcow2 image into a bdev, showing progress until it is done', args: [
    { name: 'name', flags: ['-b', '--name'], required: true, help: 'bdev to import into (not used by a controller)' },
    { name: 'filename', flags: ['-f', '--filename'], required: true, help: 'image file (path as the daemon sees it)' },
    { name: 'format', flags: ['--format'], choices: ['raw', 'qcow2'], help: 'image format (default: detected)' },
    { name: 'skip_zeroes', flags: ['--skip-zeroes'], type: 'bool', help: 'do not write all-zero parts (a new thin lvol stays thin)' },
    { name: 'no_wait', flags: ['--no-wait'], type: 'bool', param: false, help: 'return the operation_id at once' },
    { name: 'quiet', flags: ['-q', '--quiet'], type: 'bool', param: false, help: 'no progress bar' },
  ], run: (c, a) => {
    const params: Record<string, unknown> = { name: a.name, filename: a.filename };
    if (a.format !== undefined) params.format = a.format;
    if (a.skip_zeroes) params.skip_zeroes = true;
    return a.no_wait ? c.call('bdev_import_image', params) : importImage(c, params, a.quiet === true);
  } },
  { name: 'bdev_get_import_jobs', help: 'Show image imports: state, progress, errors', args: [
    { name: 'operation_id', flags: ['-o', '--operation-id'], type: 'int', help: 'one job (default: all recent)' },
  ] },
];
