// Ceph cluster connections for rbd bdevs: one librados connection (rados_t) per registered
// cluster (bdev_rbd_register_cluster), shared by every bdev and reactor that uses it
// (librados is thread-safe), or a private one for a bdev_rbd_create without cluster_name.
//
// vhostd's defaults, applied only where neither the config file nor the given parameters
// set the option (each can be overridden with config_param / config):
// - rbd_cache=false: a write completes when the OSDs have it, not when librbd's cache does;
// - rados_osd_op_timeout=30, rados_mon_op_timeout=30: I/O to an unreachable cluster fails
//   after 30 s instead of blocking forever (0 restores Ceph's "wait forever");
// - client_mount_timeout=15: registering an unreachable cluster fails after 15 s, not 300.
import { callAsync, ceph, cephErr, NativeCells } from '../../native/rbd.js';
import { BdevError } from '../registry.js';
import { logger } from '../../src/log.js';

const log = logger('bdev_rbd');

/** [option, Ceph's default as rados_conf_get prints it, vhostd's default]. */
const DEFAULTS: [string, string, string][] = [
  ['rbd_cache', 'true', 'false'],
  ['rados_osd_op_timeout', '0', '30'],
  ['rados_mon_op_timeout', '0', '30'],
  ['client_mount_timeout', '300', '15'],
];

/** A librados call failed: the RPC layer answers -errno, as SPDK does. */
export class RbdError extends BdevError {
  constructor(message: string, readonly errno: number) { super('invalid', message); }
}

export interface ClusterParams {
  user_id?: string;
  /** rados_conf_set key=value pairs (bdev_rbd_register_cluster's config_param, bdev_rbd_create's config). */
  config_param?: Record<string, string>;
  config_file?: string;
  key_file?: string;
}

export class RadosCluster {
  /** rados_t, 0 once shut down. */
  handle = 0;
  /** bdevs using the connection. */
  refs = 0;

  private constructor(readonly name: string | null, readonly params: ClusterParams) {}

  /** Creates, configures and connects (off the main thread: connecting waits on the monitors). */
  static async connect(name: string | null, p: ClusterParams): Promise<RadosCluster> {
    const { rados } = ceph();
    const c = new RadosCluster(name, p);
    const what = name === null ? 'the Ceph cluster' : `Ceph cluster '${name}'`;
    const cell = new NativeCells(1);
    try {
      const rc = rados.create(cell.addr(0), p.user_id ?? null);
      if (rc < 0) throw new RbdError(`rados_create for user '${p.user_id ?? 'admin'}' failed: ${cephErr(rc)}`, -rc);
      c.handle = cell.get(0);
    } finally { cell.free(); }
    try {
      // no config_file and no config: the default search path (/etc/ceph/ceph.conf, ...), as SPDK
      const readDefault = p.config_file === undefined && p.config_param === undefined;
      if (p.config_file !== undefined || readDefault) {
        const rc = rados.confReadFile(c.handle, p.config_file ?? null);
        if (rc < 0) {
          throw new RbdError(`reading the Ceph configuration ${p.config_file ? `file '${p.config_file}'` : '(/etc/ceph/ceph.conf)'} ` +
            `failed: ${cephErr(rc)}: give config_file, or mon_host in config_param`, -rc);
        }
      }
      for (const [k, cephDefault, ours] of DEFAULTS) {
        const given = p.config_param !== undefined && Object.hasOwn(p.config_param, k);
        if (!given && c.get(k) === cephDefault) c.set(k, ours);
      }
      for (const [k, v] of Object.entries(p.config_param ?? {})) c.set(k, v);
      if (p.key_file !== undefined) c.set('keyring', p.key_file);
      const rc = await callAsync(rados.connect, c.handle);
      if (rc < 0) {
        throw new RbdError(`connecting to ${what} failed: ${cephErr(rc)}: check mon_host, the monitors, user_id and keyring ` +
          `(client_mount_timeout ${c.get('client_mount_timeout')} s)`, -rc);
      }
    } catch (e) {
      await c.shutdown();
      throw e;
    }
    log.info(`connected to ${what} (mon_host ${c.get('mon_host')})`);
    return c;
  }

  /** rados_conf_get as a string ('' if unknown). */
  get(key: string): string {
    const { rados } = ceph();
    const buf = new NativeCells(64);
    try {
      if (rados.confGet(this.handle, key, buf.base, 512) < 0) return '';
      const end = buf.u8.indexOf(0);
      return Buffer.from(buf.u8.subarray(0, end < 0 ? 512 : end)).toString();
    } finally { buf.free(); }
  }

  private set(key: string, value: string): void {
    const rc = ceph().rados.confSet(this.handle, key, String(value));
    if (rc < 0) throw new RbdError(`Ceph option ${key}=${value} was refused: ${cephErr(rc)}: check its name and value`, -rc);
  }

  async shutdown(): Promise<void> {
    if (!this.handle) return;
    const h = this.handle;
    this.handle = 0;
    await callAsync(ceph().rados.shutdown, h);
  }

  /** bdev_rbd_get_clusters_info entry (SPDK's fields). */
  info(): Record<string, unknown> {
    const p = this.params;
    return {
      cluster_name: this.name,
      ...(p.user_id !== undefined ? { user_id: p.user_id } : {}),
      ...(p.config_param !== undefined ? { config_param: p.config_param } : {}),
      ...(p.config_file !== undefined ? { config_file: p.config_file } : {}),
      ...(p.key_file !== undefined ? { key_file: p.key_file } : {}),
    };
  }
}

/** Registered clusters, by name (process-wide, like SPDK's g_map_bdev_rbd_cluster). */
const clusters = new Map<string, RadosCluster>();
/** Names being registered (the connect is asynchronous): a second register of the same name is refused. */
const pending = new Set<string>();

export async function registerCluster(name: string, p: ClusterParams): Promise<RadosCluster> {
  if (clusters.has(name) || pending.has(name)) {
    throw new RbdError(`cluster '${name}' is already registered: unregister it first or pick another name`, 17 /* EEXIST */);
  }
  pending.add(name);
  try {
    const c = await RadosCluster.connect(name, p);
    clusters.set(name, c);
    return c;
  } finally { pending.delete(name); }
}

export async function unregisterCluster(name: string): Promise<void> {
  const c = clusters.get(name);
  if (!c) throw new RbdError(`cluster '${name}' is not registered (see bdev_rbd_get_clusters_info)`, 2 /* ENOENT */);
  if (c.refs > 0) {
    throw new RbdError(`cluster '${name}' is used by ${c.refs} rbd bdev(s): delete them first (bdev_rbd_delete)`, 16 /* EBUSY */);
  }
  clusters.delete(name);
  await c.shutdown();
}

export function findCluster(name: string): RadosCluster | undefined { return clusters.get(name); }
export function listClusters(): RadosCluster[] { return [...clusters.values()]; }

/** save_config: the registrations, to come before any bdev_rbd_create that uses them. */
export function clusterConfigCalls(): { method: string; params: Record<string, unknown> }[] {
  return listClusters().map((c) => {
    const { cluster_name, ...rest } = c.info();
    return { method: 'bdev_rbd_register_cluster', params: { name: cluster_name, ...rest } };
  });
}
