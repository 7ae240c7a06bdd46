// delay bdevs: bdev_delay_create, bdev_delay_delete, bdev_delay_update_latency (SPDK names,
// params and results; latencies in microseconds).
import type { AppContext } from '../../src/framework/app_context.js';
import { BdevError } from '../registry.js';
import { DelayBdev } from './delay.js';
import { LATENCY_TYPES } from './latency.js';
import { registerModule } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError, invalidParams } from '../../src/rpc/errors.js';
import { Params } from '../../src/rpc/params.js';

const us = (desc: string) => ({ type: 'int', required: true, min: 0, desc }) as const;

function create(ctx: AppContext, p: Params<typeof createSchema>): string {
  if (p.name.length === 0 || p.name.length > 255) throw invalidParams('bdev name must be 1 to 255 characters long');
  if (ctx.bdevs.find(p.name)) {
    throw new BdevError('exists', `bdev '${p.name}' already exists: pick another name or delete the existing one first`);
  }
  if (!ctx.bdevs.find(p.base_bdev_name)) {
    // SPDK would wait for the base to appear; vhostd creates delay bdevs only on existing ones
    throw new RpcError(RpcCode.ENODEV, `base bdev '${p.base_bdev_name}' does not exist: create it first (see bdev_get_bdevs)`);
  }
  const owner = DelayBdev.claimOwner(p.name);
  const base = ctx.bdevs.claim(p.base_bdev_name, owner);
  if (base.module === 'delay' && base.name === p.name) throw invalidParams('a delay bdev cannot be its own base');
  try {
    ctx.bdevs.register(new DelayBdev(base, p));
  } catch (e) {
    ctx.bdevs.release(base.name, owner);
    throw e;
  }
  return p.name;
}

const createSchema = {
  base_bdev_name: { type: 'string', required: true, desc: 'bdev to put the delay on (claimed)' },
  name: { type: 'string', required: true, desc: 'name of the delay bdev' },
  avg_read_latency: us('read latency, µs'),
  p99_read_latency: us('read latency of 1 I/O in 100, µs'),
  avg_write_latency: us('write latency, µs'),
  p99_write_latency: us('write latency of 1 I/O in 100, µs'),
  uuid: { type: 'string', desc: 'UUID of the new bdev' },
} as const;

export function registerBdevDelayMethods(reg: MethodRegistry): void {
  reg.register('bdev_delay_create', createSchema, (p: Params<typeof createSchema>, ctx) => create(ctx, p),
    { help: 'Add a delay bdev on an existing bdev: reads and writes complete after the given latencies' });

  reg.register('bdev_delay_delete', { name: { type: 'string', required: true } }, async (p, ctx) => {
    const b = ctx.bdevs.find(p.name);
    if (!(b instanceof DelayBdev)) {
      throw new RpcError(RpcCode.ENODEV, b ? `bdev '${p.name}' is a ${b.module} bdev, not a delay bdev` : `delay bdev '${p.name}' does not exist`);
    }
    await ctx.bdevs.unregister(p.name, 'delay');
    return true;
  }, { help: 'Delete a delay bdev (its base bdev is released)' });

  const updateSchema = {
    delay_bdev_name: { type: 'string', required: true },
    latency_type: { type: 'string', required: true, choices: LATENCY_TYPES },
    latency_us: { type: 'int', required: true, min: 0 },
  } as const;
  reg.register('bdev_delay_update_latency', updateSchema, (p: Params<typeof updateSchema>, ctx) => {
    const b = ctx.bdevs.find(p.delay_bdev_name);
    if (!b) throw new RpcError(RpcCode.INVALID_PARAMS, `bdev '${p.delay_bdev_name}' does not exist (see bdev_get_bdevs)`);
    if (!(b instanceof DelayBdev)) {
      throw new RpcError(RpcCode.INVALID_REQUEST, `bdev '${b.name}' is a ${b.module} bdev, not a delay bdev`);
    }
    b.setLatency(p.latency_type as (typeof LATENCY_TYPES)[number], p.latency_us);
    return true;
  }, { help: 'Change one latency of a delay bdev; I/Os completing from now on use it' });
}

registerModule({ name: 'bdev_delay', subsystem: 'bdev', rpc: registerBdevDelayMethods });
