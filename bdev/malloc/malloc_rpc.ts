// bdev_malloc_* methods (SPDK names and parameters): decode, then create or delete a MallocBdev.
import type { AppContext } from '../../src/framework/app_context.js';
import { registerModule } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { Params } from '../../src/rpc/params.js';
import { BdevError } from '../registry.js';
import { checkName, createAndRegister, geometry, refuseUnsupported, U32 } from '../rpc_common.js';
import { MallocBdev } from './malloc.js';

declare module '../../src/framework/app_context.js' {
  /** The N of the next default name Malloc<N> (as SPDK's malloc_disk_count: never reused). */
  interface AppContext { mallocCounter?: number }
}

function nextMallocName(ctx: AppContext): string {
  let n = ctx.mallocCounter ?? 0;
  while (ctx.bdevs.find(`Malloc${n}`)) n++;
  ctx.mallocCounter = n + 1;
  return `Malloc${n}`;
}

export function registerMallocMethods(reg: MethodRegistry): void {
  const mallocSchema = {
    name: { type: 'string', desc: 'bdev name; default Malloc<N>' },
    ...geometry,
    optimal_io_boundary: { type: 'int', min: 0, max: U32 },
    md_interleave: { type: 'bool' },
  } as const;
  reg.register('bdev_malloc_create', mallocSchema, (p: Params<typeof mallocSchema>, ctx) => {
    refuseUnsupported(p);
    if (p.name !== undefined) checkName(p.name);
    if (p.name !== undefined && ctx.bdevs.find(p.name)) {   // before allocating memory
      throw new BdevError('exists', `bdev '${p.name}' already exists: pick another name or delete the existing one first`);
    }
    const name = p.name ?? nextMallocName(ctx);
    return createAndRegister(ctx, () => new MallocBdev({ name, num_blocks: p.num_blocks, block_size: p.block_size, uuid: p.uuid }));
  });

  reg.register('bdev_malloc_delete', { name: { type: 'string', required: true } }, async (p, ctx) => {
    await ctx.bdevs.unregister(p.name, 'malloc');
    return true;
  });
}

registerModule({ name: 'bdev_malloc', subsystem: 'bdev', rpc: registerMallocMethods });
