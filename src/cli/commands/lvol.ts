// Logical volume subcommands, with rpc.py v25.05.1's positional arguments, flags and params
// (sizes in MiB as given; an lvstore is named by -u UUID or -l NAME).
import type { Args, CommandSpec } from './types.js';
import { UsageError } from '../vhostd-args.js';

const CLEAR = ['none', 'unmap', 'write_zeroes'] as const;
const CLEAR_HELP = 'how data clusters are cleared (default unmap)';

/** rpc.py sends optional params only when they are truthy (0 and '' mean "default"). */
function truthy(a: Args, keys: string[]): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  for (const k of keys) if (a[k]) p[k] = a[k];
  return p;
}

/** An lvstore named by at most one (or, if required, exactly one) of its UUID and its name, as rpc.py checks. */
function store(cmd: string, a: Args, uuidKey: string, required: boolean): Record<string, unknown> | undefined {
  if (a[uuidKey] && a.lvs_name) throw new UsageError(`${cmd}: give -u or -l, not both`);
  if (required && !a[uuidKey] && !a.lvs_name) {
    throw new UsageError(`${cmd}: give the lvol store with -u UUID or -l NAME (see bdev_lvol_get_lvstores)`);
  }
  const p = truthy(a, [uuidKey, 'lvs_name']);
  return Object.keys(p).length ? p : undefined;   // rpc.py sends no params at all then
}

const storeArgs = (uuidParam: string) => [
  { name: uuidParam, flags: ['-u', uuidParam === 'uuid' ? '--uuid' : '--lvs-uuid'], help: 'lvol store UUID' },
  { name: 'lvs_name', flags: ['-l', '--lvs-name'], help: 'lvol store name' },
];

const byName = (name: string, help: string, arg = 'name', argHelp = 'lvol bdev name'): CommandSpec =>
  ({ name, help, args: [{ name: arg, required: true, help: argHelp }] });

export const lvolCommands: CommandSpec[] = [
  { name: 'bdev_lvol_create_lvstore', help: 'Add logical volume store on base bdev', timeoutSec: 90, args: [
    { name: 'bdev_name', required: true, help: 'base bdev name' },
    { name: 'lvs_name', required: true, help: 'name for lvol store' },
    { name: 'cluster_sz', flags: ['-c', '--cluster-sz'], type: 'int', help: 'size of cluster (in bytes), default 4 MiB' },
    { name: 'clear_method', flags: ['--clear-method'], choices: CLEAR, help: CLEAR_HELP },
    { name: 'num_md_pages_per_cluster_ratio', flags: ['-m', '--md-pages-per-cluster-ratio'], type: 'int',
      help: 'reserved metadata pages for each cluster (accepted; vhostd sizes its map area itself)' },
    { name: 'md_page_size', flags: ['-s', '--md-page-size'], type: 'int', help: 'size of metadata page in bytes (4096 only)' },
  ], params: (a) => ({ bdev_name: a.bdev_name, lvs_name: a.lvs_name,
    ...truthy(a, ['cluster_sz', 'clear_method', 'num_md_pages_per_cluster_ratio', 'md_page_size']) }) },
  { name: 'bdev_lvol_delete_lvstore', help: 'Destroy a logical volume store (its lvols must not be in use)', args: storeArgs('uuid'),
    params: (a) => store('bdev_lvol_delete_lvstore', a, 'uuid', true) },
  { name: 'bdev_lvol_rename_lvstore', help: 'Change logical volume store name', args: [
    { name: 'old_name', required: true, help: 'old name' },
    { name: 'new_name', required: true, help: 'new name' },
  ] },
  { name: 'bdev_lvol_get_lvstores', help: 'Display current logical volume store list', args: storeArgs('uuid'),
    params: (a) => store('bdev_lvol_get_lvstores', a, 'uuid', false) },
  { name: 'bdev_lvol_create', help: 'Add a bdev with a logical volume backend; prints its bdev name (UUID)', args: [
    ...storeArgs('uuid'),
    { name: 'thin_provision', flags: ['-t', '--thin-provision'], type: 'bool', help: 'create lvol bdev as thin provisioned' },
    { name: 'clear_method', flags: ['-c', '--clear-method'], choices: CLEAR, help: CLEAR_HELP },
    { name: 'lvol_name', required: true, help: 'name for this lvol' },
    { name: 'size_in_mib', type: 'int', required: true, help: 'size in MiB for this bdev (rounded up to whole clusters)' },
  ], params: (a) => ({ lvol_name: a.lvol_name, size_in_mib: a.size_in_mib,
    ...store('bdev_lvol_create', a, 'uuid', true), ...truthy(a, ['thin_provision', 'clear_method']) }) },
  { name: 'bdev_lvol_snapshot', help: 'Create a snapshot of an lvol bdev', args: [
    { name: 'lvol_name', required: true, help: 'lvol bdev name' },
    { name: 'snapshot_name', required: true, help: 'lvol snapshot name' },
  ] },
  { name: 'bdev_lvol_clone', help: 'Create a clone of an lvol snapshot', args: [
    { name: 'snapshot_name', required: true, help: 'lvol snapshot name' },
    { name: 'clone_name', required: true, help: 'lvol clone name' },
  ] },
  { name: 'bdev_lvol_rename', help: 'Change lvol bdev name', args: [
    { name: 'old_name', required: true, help: 'lvol bdev name' },
    { name: 'new_name', required: true, help: 'new lvol name' },
  ] },
  byName('bdev_lvol_inflate', 'Make thin provisioned lvol a thick provisioned lvol'),
  byName('bdev_lvol_decouple_parent', 'Decouple parent of lvol'),
  { name: 'bdev_lvol_resize', help: 'Resize existing lvol bdev', args: [
    { name: 'name', required: true, help: 'lvol bdev name' },
    { name: 'size_in_mib', type: 'int', required: true, help: 'new size in MiB for this bdev' },
  ] },
  byName('bdev_lvol_set_read_only', 'Mark lvol bdev as read only'),
  byName('bdev_lvol_delete', 'Destroy a logical volume'),
  { name: 'bdev_lvol_get_lvols', help: 'Display current logical volume list', args: storeArgs('lvs_uuid').map((s) =>
    ({ ...s, help: `only lvols in ${s.help}` })), params: (a) => store('bdev_lvol_get_lvols', a, 'lvs_uuid', false) },
];
