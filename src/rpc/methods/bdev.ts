// bdev methods: malloc/null create and delete, bdev_get_bdevs, iostat.
import type { AppContext } from '../../app.js';
import type { Bdev } from '../../../bdev/bdev.js';
import { MallocBdev } from '../../../bdev/malloc/malloc.js';
import { NullBdev } from '../../../bdev/null/null.js';
import { resetStats } from '../../../bdev/stats.js';
import { BdevError } from '../../../bdev/registry.js';
import { MethodRegistry } from '../registry.js';
import { registerBdevFileMethods } from './bdev_file.js';
import { registerBdevDelayMethods } from './bdev_delay.js';
import { registerLvolMethods } from '../../../bdev/lvol/lvol_rpc.js';
import { RpcCode, RpcError, invalidParams } from '../errors.js';
import { Params } from '../params.js';
import { bdevInfo, deviceStat, ioStatFields, resetMaxMin, slotStat } from './bdev-info.js';

const U32 = 0xffffffff;

/** Params shared by bdev_malloc_create and bdev_null_create (SPDK names). */
const geometry = {
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
function refuseUnsupported(p: Record<string, unknown>): void {
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

let mallocCounter = 0;
function nextMallocName(ctx: AppContext): string {
  while (ctx.bdevs.find(`Malloc${mallocCounter}`)) mallocCounter++;
  return `Malloc${mallocCounter++}`;
}

function checkName(name: string): void {
  if (name.length === 0) throw invalidParams(`bdev name must not be empty`);
  if (name.length > 255) throw invalidParams(`bdev name is ${name.length} characters long: use at most 255`);
}

async function createAndRegister(ctx: AppContext, make: () => Bdev): Promise<string> {
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

async function waitForBdev(ctx: AppContext, name: string, timeoutMs: number): Promise<Bdev | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const b = ctx.bdevs.find(name);
    if (b || Date.now() >= end) return b;
    await new Promise((r) => setTimeout(r, Math.min(20, end - Date.now())));
  }
}

const resetModes = ['all', 'maxmin', 'none'] as const;

export function registerBdevMethods(reg: MethodRegistry): void {
  registerBdevFileMethods(reg);
  registerBdevDelayMethods(reg);
  registerLvolMethods(reg);
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

  reg.register('bdev_get_bdevs', {
    name: { type: 'string', desc: 'bdev name, alias or UUID' },
    timeout: { type: 'int', min: 0, desc: 'ms to wait for the bdev to appear' },
  }, async (p, ctx) => {
    if (p.name === undefined) return ctx.bdevs.list().map(bdevInfo);
    const b = p.timeout ? await waitForBdev(ctx, p.name, p.timeout) : ctx.bdevs.find(p.name);
    if (!b) throw new RpcError(RpcCode.ENODEV, `bdev '${p.name}' does not exist (see bdev_get_bdevs)`);
    return [bdevInfo(b)];
  });

  reg.register('bdev_get_iostat', {
    name: { type: 'string' },
    per_channel: { type: 'bool', desc: 'one entry per reactor; needs name' },
    reset_mode: { type: 'string', choices: resetModes },
  }, (p, ctx) => {
    if (p.per_channel && p.name === undefined) {
      throw new RpcError(RpcCode.EINVAL, 'per_channel statistics need a bdev name: add name');
    }
    const bdevs = p.name === undefined ? ctx.bdevs.list() : [ctx.bdevs.get(p.name)];
    const head = { tick_rate: 1e9, ticks: Number(process.hrtime.bigint()) };
    let out: Record<string, unknown>;
    if (p.per_channel) {
      const b = bdevs[0];
      const channels = ctx.reactors.cpus.map((_cpu, slot) => ({ thread_id: slot + 1, ...ioStatFields(slotStat(b, slot)) }));
      out = { ...head, name: b.name, channels };
    } else {
      out = { ...head, bdevs: bdevs.map(deviceStat) };
    }
    if (p.reset_mode === 'all') bdevs.forEach((b) => resetStats(b.stats));
    else if (p.reset_mode === 'maxmin') bdevs.forEach(resetMaxMin);
    return out;
  });

  reg.register('bdev_reset_iostat', {
    name: { type: 'string' },
    mode: { type: 'string', choices: ['all', 'maxmin'] },
  }, (p, ctx) => {
    const bdevs = p.name === undefined ? ctx.bdevs.list() : [ctx.bdevs.get(p.name)];
    for (const b of bdevs) (p.mode === 'maxmin' ? resetMaxMin(b) : resetStats(b.stats));
    return true;
  });

  // SPDK writes this at the end of every bdev config: bdevs found on others (lvols) exist after it
  reg.register('bdev_wait_for_examine', {}, async (_p, ctx) => { await ctx.bdevs.waitForExamine(); return true; });
}
