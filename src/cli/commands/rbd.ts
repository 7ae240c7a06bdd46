// Ceph RBD subcommands (bdev_rbd_*), with rpc.py v25.05.1's arguments: --user is sent as
// user_id, repeated --config-param/--config key=value options become one object.
import type { Args, CommandSpec } from './types.js';
import { UsageError } from '../vhostd-args.js';

/** key=value strings (split at the first '=') into the object rados_conf_set takes. */
function keyValues(cmd: string, flag: string, list: Args[string]): Record<string, string> | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: Record<string, string> = {};
  for (const e of list.map(String)) {
    const i = e.indexOf('=');
    if (i < 0) throw new UsageError(`${cmd}: ${flag} '${e}' is not in key=value form (e.g. ${flag} mon_host=127.0.0.1)`);
    out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

/** The given values under their param names (rpc.py sends what is not None). */
function given(pairs: [string, unknown][]): Record<string, unknown> {
  return Object.fromEntries(pairs.filter(([, v]) => v !== undefined));
}

export const rbdCommands: CommandSpec[] = [
  { name: 'bdev_rbd_register_cluster', help: 'Add a Rados cluster with ceph rbd backend (connects now)', args: [
    { name: 'name', required: true, help: 'name of the Rados cluster only known to rbd bdev' },
    { name: 'user', flags: ['--user'], help: 'Ceph user name (i.e. admin, not client.admin)' },
    { name: 'config_param', flags: ['--config-param'], repeat: true,
      help: 'a key=value option for rados_conf_set (default: rely on config file)' },
    { name: 'config_file', flags: ['--config-file'], help: 'the file path of the Rados configuration file' },
    { name: 'key_file', flags: ['--key-file'], help: 'the file path of the Rados keyring file' },
    { name: 'core_mask', flags: ['--core-mask'], help: 'core mask for librbd IO context threads (not yet supported)' },
  ], params: (a) => given([['name', a.name], ['user_id', a.user],
    ['config_param', keyValues('bdev_rbd_register_cluster', '--config-param', a.config_param)],
    ['config_file', a.config_file], ['key_file', a.key_file], ['core_mask', a.core_mask]]) },
  { name: 'bdev_rbd_unregister_cluster', help: 'Unregister a Rados cluster object (no rbd bdev may use it)', args: [
    { name: 'name', required: true, help: 'name of the Rados cluster only known to rbd bdev' },
  ] },
  { name: 'bdev_rbd_get_clusters_info', help: 'Display registered Rados cluster names and related info', args: [
    { name: 'name', flags: ['-b', '--name'], help: 'name of the registered Rados cluster, e.g. Cluster1' },
  ] },
  { name: 'bdev_rbd_create', help: 'Add a bdev with ceph rbd backend (the image must exist)', args: [
    { name: 'name', flags: ['-b', '--name'], help: 'name of the bdev (default Ceph<N>)' },
    { name: 'user', flags: ['--user'], help: 'Ceph user name (i.e. admin, not client.admin)' },
    { name: 'config', flags: ['--config'], repeat: true, help: 'a key=value option for rados_conf_set (default: rely on config file)' },
    { name: 'pool_name', required: true, help: 'rbd pool name' },
    { name: 'rbd_name', required: true, help: 'rbd image name' },
    { name: 'block_size', type: 'int', required: true, help: 'rbd block size' },
    { name: 'cluster_name', flags: ['-c', '--cluster-name'], help: 'cluster name to identify the Rados cluster' },
    { name: 'uuid', flags: ['-u', '--uuid'], help: 'UUID of the bdev' },
    { name: 'read_only', flags: ['--read-only'], type: 'bool', help: 'serve the image read-only (vhostd; not in rpc.py)' },
  ], params: (a) => {
    if (a.cluster_name === undefined) {
      process.stderr.write('vhostctl: warning: bdev_rbd_create without -c opens a connection of its own; ' +
        'register the cluster once with bdev_rbd_register_cluster and pass -c CLUSTER_NAME\n');
    }
    return given([['pool_name', a.pool_name], ['rbd_name', a.rbd_name], ['block_size', a.block_size], ['name', a.name],
      ['user_id', a.user], ['config', keyValues('bdev_rbd_create', '--config', a.config)], ['cluster_name', a.cluster_name],
      ['uuid', a.uuid], ['read_only', a.read_only]]);
  } },
  { name: 'bdev_rbd_delete', help: 'Delete a rbd bdev (the image stays in the cluster)', args: [
    { name: 'name', required: true, help: 'rbd bdev name' },
  ] },
  { name: 'bdev_rbd_resize', help: 'Resize a rbd bdev and its image (grow only)', args: [
    { name: 'name', required: true, help: 'rbd bdev name' },
    { name: 'new_size', type: 'int', required: true, help: 'new bdev size for resize operation. The unit is MiB' },
  ] },
];
