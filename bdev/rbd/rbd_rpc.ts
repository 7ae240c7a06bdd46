// rbd bdevs over JSON-RPC with SPDK v25.05's names and parameters: bdev_rbd_register_cluster,
// bdev_rbd_unregister_cluster, bdev_rbd_get_clusters_info, bdev_rbd_create, bdev_rbd_delete,
// bdev_rbd_resize. Decodes parameters and calls the module; librados/librbd failures answer
// -errno, as SPDK does.
import type { AppContext } from '../../src/framework/app_context.js';
import { registerModule } from '../../src/framework/module.js';
import { registerModuleConfig } from '../module_config.js';
import { BdevError } from '../registry.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError, invalidParams } from '../../src/rpc/errors.js';
import { Params } from '../../src/rpc/params.js';
import { RbdBdev } from './rbd.js';
import { clusterConfigCalls, findCluster, listClusters, RbdError, registerCluster, unregisterCluster } from './rbd_cluster.js';

/** A config object of key=value strings (rados_conf_set pairs). */
function stringMap(what: string, v: Record<string, unknown> | undefined): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw invalidParams(`${what}.${k} must be a string (Ceph options are key=value strings), got ${typeof x}`);
  }
  return v as Record<string, string>;
}

/** Runs fn; a librados/librbd failure becomes -errno with its message. */
async function cephCall<T>(fn: () => Promise<T>): Promise<T> {
  try { return await fn(); } catch (e) {
    if (e instanceof RbdError) throw new RpcError(-e.errno, e.message);
    throw e;
  }
}

let cephCounter = 0;
function nextName(ctx: AppContext): string {
  while (ctx.bdevs.find(`Ceph${cephCounter}`)) cephCounter++;
  return `Ceph${cephCounter++}`;
}

function rbdBdev(ctx: AppContext, name: string): RbdBdev {
  const b = ctx.bdevs.find(name);
  if (!b) throw new RpcError(RpcCode.ENODEV, `bdev '${name}' does not exist (see bdev_get_bdevs)`);
  if (!(b instanceof RbdBdev)) throw new RpcError(RpcCode.EINVAL, `bdev '${name}' is a ${b.module} bdev, not an rbd bdev`);
  return b;
}

const registerSchema = {
  name: { type: 'string', required: true, desc: 'name of the cluster, used as cluster_name by bdev_rbd_create' },
  user_id: { type: 'string', desc: 'Ceph user without "client." (e.g. admin)' },
  config_param: { type: 'object', desc: 'rados_conf_set options, e.g. {"mon_host": "127.0.0.1"}' },
  config_file: { type: 'string', desc: 'ceph.conf path' },
  key_file: { type: 'string', desc: 'keyring path' },
  core_mask: { type: 'string', desc: 'CPUs for librados threads (not yet supported)' },
} as const;

const createSchema = {
  name: { type: 'string', desc: 'bdev name; default Ceph<N>' },
  user_id: { type: 'string', desc: 'Ceph user without "client."' },
  pool_name: { type: 'string', required: true },
  rbd_name: { type: 'string', required: true, desc: 'image name (the image must exist: rbd create)' },
  block_size: { type: 'int', required: true, min: 1, max: 0xffffffff },
  config: { type: 'object', desc: 'rados_conf_set options for a private connection' },
  cluster_name: { type: 'string', desc: 'a cluster registered with bdev_rbd_register_cluster' },
  uuid: { type: 'string' },
  read_only: { type: 'bool' },
} as const;

export function registerRbdMethods(reg: MethodRegistry): void {
  reg.register('bdev_rbd_register_cluster', registerSchema, (p: Params<typeof registerSchema>) => {
    if (p.name.length === 0) throw invalidParams('cluster name must not be empty');
    if (p.core_mask !== undefined) {
      throw new RpcError(RpcCode.EINVAL, 'core_mask is not supported by vhostd yet: omit it (librados threads run on any CPU)');
    }
    return cephCall(async () => {
      await registerCluster(p.name, { user_id: p.user_id, config_param: stringMap('config_param', p.config_param),
        config_file: p.config_file, key_file: p.key_file });
      return p.name;
    });
  }, { help: 'Connect to a Ceph cluster once; rbd bdevs then use it with cluster_name' });

  reg.register('bdev_rbd_unregister_cluster', { name: { type: 'string', required: true } }, (p) =>
    cephCall(async () => { await unregisterCluster(p.name); return true; }),
  { help: 'Disconnect a registered Ceph cluster (no rbd bdev may use it)' });

  reg.register('bdev_rbd_get_clusters_info', { name: { type: 'string' } }, (p) => {
    if (p.name === undefined) return listClusters().map((c) => c.info());
    const c = findCluster(p.name);
    if (!c) throw new RpcError(-2, `cluster '${p.name}' is not registered (see bdev_rbd_get_clusters_info)`);
    return c.info();
  }, { help: 'List registered Ceph clusters' });

  reg.register('bdev_rbd_create', createSchema, async (p: Params<typeof createSchema>, ctx) => {
    if (p.name !== undefined && (p.name.length === 0 || p.name.length > 255)) throw invalidParams('bdev name must be 1 to 255 characters long');
    if (p.pool_name.length === 0 || p.rbd_name.length === 0) throw invalidParams('pool_name and rbd_name must not be empty');
    const name = p.name ?? nextName(ctx);
    if (ctx.bdevs.find(name)) throw new BdevError('exists', `bdev '${name}' already exists: pick another name or delete the existing one first`);
    const b = await cephCall(() => RbdBdev.open({ name, pool_name: p.pool_name, rbd_name: p.rbd_name, block_size: p.block_size,
      user_id: p.user_id, config: stringMap('config', p.config), cluster_name: p.cluster_name, uuid: p.uuid,
      read_only: p.read_only }, ctx.reactors.cpus.length));
    try {
      ctx.bdevs.register(b);   // the name may have been taken while the image was opening
    } catch (e) {
      await b.destroy();
      throw e;
    }
    return name;
  }, { help: 'Serve an existing RBD image as a bdev' });

  reg.register('bdev_rbd_delete', { name: { type: 'string', required: true } }, async (p, ctx) => {
    rbdBdev(ctx, p.name);
    await ctx.bdevs.unregister(p.name, 'rbd');
    return true;
  }, { help: 'Delete an rbd bdev (the image stays in the cluster)' });

  reg.register('bdev_rbd_resize', {
    name: { type: 'string', required: true },
    new_size: { type: 'int', required: true, min: 1, desc: 'new size in MiB' },
  }, (p, ctx) => cephCall(async () => { await rbdBdev(ctx, p.name).resize(p.new_size); return true; }),
  { help: 'Grow an rbd bdev and its image to new_size MiB' });
}

registerModuleConfig(clusterConfigCalls);
registerModule({ name: 'bdev_rbd', subsystem: 'bdev', rpc: registerRbdMethods });
