// bdev_null_* methods (SPDK names and parameters): decode, then create, delete or resize a NullBdev.
import { registerModule } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError } from '../../src/rpc/errors.js';
import { Params } from '../../src/rpc/params.js';
import { checkName, createAndRegister, geometry, refuseUnsupported } from '../rpc_common.js';
import { NullBdev } from './null.js';

export function registerNullMethods(reg: MethodRegistry): void {
  const nullSchema = { name: { type: 'string', required: true, desc: 'bdev name' }, ...geometry } as const;
  reg.register('bdev_null_create', nullSchema, (p: Params<typeof nullSchema>, ctx) => {
    refuseUnsupported(p);
    checkName(p.name);
    return createAndRegister(ctx, () => new NullBdev({ name: p.name, num_blocks: p.num_blocks, block_size: p.block_size, uuid: p.uuid }));
  });

  reg.register('bdev_null_delete', { name: { type: 'string', required: true } }, async (p, ctx) => {
    await ctx.bdevs.unregister(p.name, 'null');
    return true;
  });

  reg.register('bdev_null_resize', {
    name: { type: 'string', required: true },
    new_size: { type: 'int', required: true, min: 1, desc: 'new size in MiB' },
  }, (p, ctx) => {
    const b = ctx.bdevs.find(p.name);
    if (!b) throw new RpcError(RpcCode.ENODEV, `bdev '${p.name}' does not exist (see bdev_get_bdevs)`);
    if (!(b instanceof NullBdev)) throw new RpcError(RpcCode.EINVAL, `bdev '${p.name}' is a ${b.module} bdev, not a null bdev`);
    b.resize(p.new_size);
    return true;
  });
}

registerModule({ name: 'bdev_null', subsystem: 'bdev', rpc: registerNullMethods });
