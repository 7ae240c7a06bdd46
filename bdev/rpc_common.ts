// What the bdev modules' RPC files share: SPDK's geometry params, name checks, create+register.
import type { AppContext } from '../src/framework/app_context.js';
import type { Bdev } from './bdev.js';
import { RpcCode, RpcError, invalidParams } from '../src/rpc/errors.js';

export const U32 = 0xffffffff;

/** Params shared by bdev_malloc_create and bdev_null_create (SPDK names). */
export const geometry = {
  uuid: { type: 'string', desc: 'UUID of the new bdev' },
  num_blocks: { type: 'int', required: true, min: 0, desc: 'size in blocks' },
  block_size: { type: 'int', required: true, min: 0, max: U32, desc: 'data block size in bytes' },
  physical_block_size: { type: 'int', min: 0, max: U32 },
  md_size: { type: 'int', min: 0, max: U32 },
  dif_type: { type: 'int', min: 0, max: 3 },
  dif_is_head_of_md: { type: 'bool' },
  dif_pi_format: { type: 'int', min: 0, max: 2 },
} as const;

/** Accepts SPDK's optional params at their "off" values and refuses the features vhostd lacks. */
export function refuseUnsupported(p: Record<string, unknown>): void {
  const off = (k: string, v: unknown, why: string) => {
    if (p[k] !== undefined && p[k] !== v && !(v === 0 && p[k] === false)) {
      throw new RpcError(RpcCode.EINVAL, `${k}=${JSON.stringify(p[k])} is not supported by vhostd (${why}): omit it or use ${v}`);
    }
  };
  off('md_size', 0, 'no separate or interleaved metadata');
  off('md_interleave', false, 'no metadata');
  off('dif_type', 0, 'no protection information');
  off('dif_is_head_of_md', false, 'no protection information');
  off('dif_pi_format', 0, 'no protection information');
  off('optimal_io_boundary', 0, 'no I/O boundary splitting');
  const pbs = p.physical_block_size;
  if (pbs !== undefined && pbs !== 0 && pbs !== p.block_size) {
    throw new RpcError(RpcCode.EINVAL,
      `physical_block_size=${pbs} is not supported: vhostd uses the block size (${p.block_size}) as physical block size; omit it`);
  }
}

export function checkName(name: string): void {
  if (name.length === 0) throw invalidParams(`bdev name must not be empty`);
  if (name.length > 255) throw invalidParams(`bdev name is ${name.length} characters long: use at most 255`);
}

export async function createAndRegister(ctx: AppContext, make: () => Bdev): Promise<string> {
  const b = make();
  try {
    await b.prepare();
    ctx.bdevs.register(b);
  } catch (e) {
    b.destroy();
    throw e;
  }
  return b.name;
}
