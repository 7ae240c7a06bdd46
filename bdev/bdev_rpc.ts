// The bdev layer's generic methods (bdev_get_bdevs, iostat) and the "bdev" save_config
// subsystem: every bdev writes the call that recreates it (Bdev.configCall).
import type { AppContext, ConfigCall } from '../src/framework/app_context.js';
import { registerModule, registerSubsystem } from '../src/framework/module.js';
import type { Bdev } from './bdev.js';
import { resetStats } from './stats.js';
import { MethodRegistry } from '../src/rpc/registry.js';
import { RpcCode, RpcError } from '../src/rpc/errors.js';
import { bdevInfo, deviceStat, ioStatFields, resetMaxMin, slotStat } from './bdev_info.js';
import { moduleConfigCalls } from './module_config.js';
import { qosConfigCalls } from './qos/qos.js';

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

function bdevConfigCalls(ctx: AppContext): ConfigCall[] {
  const bdevs = ctx.bdevs.list();
  // module-level objects (rbd clusters) come before the bdevs that use them; as SPDK, each
  // bdev's creation call is followed by its QoS limits
  const calls = [...moduleConfigCalls(), ...bdevs.flatMap((b) => {
    const c = b.configCall();
    return c ? [c, ...qosConfigCalls(b)] : [];
  })];
  // bdevs that examine finds (lvols) are not written: as SPDK, wait for them before their consumers
  if (!bdevs.some((b) => b.examined)) return calls;
  return [...calls, { method: 'bdev_wait_for_examine', params: {} },
    ...bdevs.filter((b) => b.examined).flatMap((b) => qosConfigCalls(b))];
}

registerSubsystem({ name: 'bdev', dependsOn: [], configCalls: bdevConfigCalls });
registerModule({ name: 'bdev', subsystem: 'bdev', rpc: registerBdevMethods });
