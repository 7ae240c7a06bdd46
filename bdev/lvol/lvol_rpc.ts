// Logical volume RPCs with SPDK's names, parameters and results (module/bdev/lvol/vbdev_lvol_rpc.c).
import type { AppContext } from '../../src/framework/app_context.js';
import { registerModule } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError } from '../../src/rpc/errors.js';
import { ClearMethod, LvolStore } from './lvstore.js';
import './lvol_examine.js';

const CLEAR = ['none', 'unmap', 'write_zeroes'] as const;
const lvolOf = (ctx: AppContext, name: string) => LvolStore.lvolOf(ctx.bdevs, name);

export function registerLvolMethods(reg: MethodRegistry): void {
  reg.register('bdev_lvol_create_lvstore', {
    bdev_name: { type: 'string', required: true, desc: 'base bdev (claimed by the lvstore)' },
    lvs_name: { type: 'string', required: true },
    cluster_sz: { type: 'int', min: 4096, desc: 'cluster size in bytes, default 4 MiB' },
    clear_method: { type: 'string', choices: CLEAR, desc: 'how the data region is cleared; default unmap' },
    num_md_pages_per_cluster_ratio: { type: 'int', min: 1, desc: 'accepted; vhostd sizes its map area itself' },
    md_page_size: { type: 'int', min: 0 },
  }, async (p, ctx) => {
    if (p.md_page_size !== undefined && p.md_page_size !== 0 && p.md_page_size !== 4096) {
      throw new RpcError(RpcCode.EINVAL, `md_page_size ${p.md_page_size} is not supported: vhostd's metadata pages are 4096 bytes; omit it`);
    }
    const base = ctx.bdevs.find(p.bdev_name);
    if (!base) throw new RpcError(RpcCode.ENODEV, `bdev '${p.bdev_name}' does not exist (see bdev_get_bdevs)`);
    const s = await LvolStore.create(ctx.bdevs, base, { lvs_name: p.lvs_name, cluster_sz: p.cluster_sz ?? 4 << 20,
      clear_method: (p.clear_method ?? 'unmap') as ClearMethod });
    return s.uuid;
  }, { help: 'Create a logical volume store on a bdev' });

  reg.register('bdev_lvol_delete_lvstore', { uuid: { type: 'string' }, lvs_name: { type: 'string' } }, async (p) => {
    await LvolStore.find(p.uuid, p.lvs_name).destroy();
    return true;
  }, { help: 'Delete a logical volume store and its lvols (none may be in use)' });

  reg.register('bdev_lvol_rename_lvstore', { old_name: { type: 'string', required: true }, new_name: { type: 'string', required: true } },
    async (p) => { await LvolStore.find(undefined, p.old_name).renameStore(p.new_name); return true; });

  reg.register('bdev_lvol_get_lvstores', { uuid: { type: 'string' }, lvs_name: { type: 'string' } }, (p) => {
    if (p.uuid === undefined && p.lvs_name === undefined) return LvolStore.list().map((s) => s.describe());
    return [LvolStore.find(p.uuid, p.lvs_name).describe()];
  });

  reg.register('bdev_lvol_create', {
    lvol_name: { type: 'string', required: true },
    size_in_mib: { type: 'int', required: true, min: 1 },
    thin_provision: { type: 'bool' },
    uuid: { type: 'string', desc: 'UUID of the lvstore' },
    lvs_name: { type: 'string' },
    clear_method: { type: 'string', choices: CLEAR },
  }, (p) => LvolStore.find(p.uuid, p.lvs_name).createLvol(p.lvol_name, p.size_in_mib, p.thin_provision ?? false,
    (p.clear_method ?? 'unmap') as ClearMethod), { help: 'Create an lvol; returns its bdev name (UUID)' });

  reg.register('bdev_lvol_snapshot', { lvol_name: { type: 'string', required: true }, snapshot_name: { type: 'string', required: true } },
    (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.lvol_name); return lvs.snapshot(lvol, p.snapshot_name); });

  reg.register('bdev_lvol_clone', { snapshot_name: { type: 'string', required: true }, clone_name: { type: 'string', required: true } },
    (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.snapshot_name); return lvs.clone(lvol, p.clone_name); });

  reg.register('bdev_lvol_resize', { name: { type: 'string', required: true }, size_in_mib: { type: 'int', required: true, min: 1 } },
    async (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.name); await lvs.resize(lvol, p.size_in_mib); return true; });

  reg.register('bdev_lvol_inflate', { name: { type: 'string', required: true } },
    async (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.name); await lvs.inflate(lvol, true); return true; });

  reg.register('bdev_lvol_decouple_parent', { name: { type: 'string', required: true } },
    async (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.name); await lvs.inflate(lvol, false); return true; });

  reg.register('bdev_lvol_set_read_only', { name: { type: 'string', required: true } },
    async (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.name); await lvs.setReadOnly(lvol); return true; });

  reg.register('bdev_lvol_rename', { old_name: { type: 'string', required: true }, new_name: { type: 'string', required: true } },
    async (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.old_name); await lvs.rename(lvol, p.new_name); return true; });

  reg.register('bdev_lvol_delete', { name: { type: 'string', required: true } },
    async (p, ctx) => { const { lvs, lvol } = lvolOf(ctx, p.name); await lvs.deleteLvol(lvol); return true; });

  reg.register('bdev_lvol_get_lvols', { lvs_uuid: { type: 'string' }, lvs_name: { type: 'string' } }, (p) => {
    const stores = p.lvs_uuid === undefined && p.lvs_name === undefined ? LvolStore.list() : [LvolStore.find(p.lvs_uuid, p.lvs_name)];
    return stores.flatMap((s) => [...s.lvols.values()].map((lv) => s.listLvol(lv)));
  });
}

// lvols are not in save_config (examine finds them on the base bdev): methods only
registerModule({ name: 'lvol', subsystem: 'bdev', rpc: registerLvolMethods });
