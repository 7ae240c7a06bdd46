// vhost controller methods, with SPDK's names and parameters, and the vhost_blk and
// vhost_scsi save_config subsystems.
import type { AppContext } from '../../src/framework/app_context.js';
import { registerModule, registerSubsystem } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError } from '../../src/rpc/errors.js';
import { VhostError, VhostManager } from './vhost_manager.js';

const codes: Record<VhostError['code'], number> = {
  exists: RpcCode.EEXIST, not_found: RpcCode.ENODEV, busy: RpcCode.EBUSY, invalid: RpcCode.EINVAL,
};

function wrap<T>(f: () => T): T {
  try { return f(); } catch (e) {
    if (e instanceof VhostError) throw new RpcError(codes[e.code], e.message);
    throw e;
  }
}

/** The process's vhost controllers (absent in tools that run without reactors). */
function vhostOf(ctx: AppContext): VhostManager {
  if (!ctx.vhost) throw new Error('vhost controllers are not available in this process');
  return ctx.vhost;
}

async function wrapAsync<T>(f: () => Promise<T>): Promise<T> {
  try { return await f(); } catch (e) {
    if (e instanceof VhostError) throw new RpcError(codes[e.code], e.message);
    throw e;
  }
}

export function registerVhostMethods(rpc: MethodRegistry): void {
  rpc.register('vhost_create_blk_controller', {
    ctrlr: { type: 'string', required: true, desc: 'controller name, also the socket file name' },
    dev_name: { type: 'string', required: true, desc: 'bdev to serve' },
    cpumask: { type: 'string', desc: 'reactors for the queues, e.g. 0x3 or [0,1]' },
    readonly: { type: 'bool' },
    packed_ring: { type: 'bool' },
    packed_ring_recovery: { type: 'bool' },
    transport: { type: 'string', choices: ['vhost_user_blk'] },
  }, (p, ctx) => { wrap(() => vhostOf(ctx).createBlk(p)); return true; }, { help: 'Create a vhost-user-blk controller' });

  rpc.register('vhost_get_controllers', {
    name: { type: 'string', desc: 'controller name' },
  }, (p, ctx) => wrap(() => vhostOf(ctx).list(p.name)), { help: 'List vhost controllers' });

  rpc.register('vhost_delete_controller', {
    ctrlr: { type: 'string', required: true },
  }, async (p, ctx) => {
    try { await vhostOf(ctx).remove(p.ctrlr); } catch (e) {
      if (e instanceof VhostError) throw new RpcError(codes[e.code], e.message);
      throw e;
    }
    return true;
  }, { help: 'Delete a vhost controller' });

  rpc.register('vhost_controller_set_coalescing', {
    ctrlr: { type: 'string', required: true },
    delay_base_us: { type: 'int', required: true, min: 0, max: 1_000_000 },
    iops_threshold: { type: 'int', required: true, min: 0 },
  }, async (p, ctx) => {
    await wrapAsync(() => vhostOf(ctx).setCoalescing(p.ctrlr, { delayBaseUs: p.delay_base_us, iopsThreshold: p.iops_threshold }));
    return true;
  },
  { help: 'Set interrupt coalescing of a controller' });
}

/** vhost-user-scsi controller methods (the vhost_scsi subsystem), with SPDK's names and parameters. */
export function registerVhostScsiMethods(rpc: MethodRegistry): void {
  rpc.register('vhost_create_scsi_controller', {
    ctrlr: { type: 'string', required: true, desc: 'controller name, also the socket file name' },
    cpumask: { type: 'string', desc: 'reactors for the queues, e.g. 0x3 or [0,1]' },
    delay: { type: 'bool', desc: 'create the socket only on vhost_start_scsi_controller' },
  }, (p, ctx) => { wrap(() => vhostOf(ctx).createScsi(p)); return true; }, { help: 'Create a vhost-user-scsi controller' });

  rpc.register('vhost_start_scsi_controller', {
    ctrlr: { type: 'string', required: true },
  }, (p, ctx) => { wrap(() => vhostOf(ctx).startScsi(p.ctrlr)); return true; }, { help: 'Start a vhost-user-scsi controller created with delay' });

  rpc.register('vhost_scsi_controller_add_target', {
    ctrlr: { type: 'string', required: true },
    scsi_target_num: { type: 'int', required: true, min: -1, max: 7, desc: 'target number 0-7, or -1 for the first free one' },
    bdev_name: { type: 'string', required: true },
  }, (p, ctx) => wrapAsync(() => vhostOf(ctx).scsiAddTarget(p.ctrlr, p.scsi_target_num, p.bdev_name)),
  { help: 'Add a target (LUN 0 = the bdev) to a vhost-user-scsi controller; returns its number' });

  rpc.register('vhost_scsi_controller_remove_target', {
    ctrlr: { type: 'string', required: true },
    scsi_target_num: { type: 'int', required: true, min: 0, max: 7 },
  }, async (p, ctx) => { await wrapAsync(() => vhostOf(ctx).scsiRemoveTarget(p.ctrlr, p.scsi_target_num)); return true; },
  { help: 'Remove a target from a vhost-user-scsi controller' });
}

registerSubsystem({ name: 'vhost_blk', dependsOn: ['bdev'], configCalls: (ctx) => (ctx.vhost ? ctx.vhost.configCalls('blk') : []) });
registerSubsystem({ name: 'vhost_scsi', dependsOn: ['bdev'], configCalls: (ctx) => (ctx.vhost ? ctx.vhost.configCalls('scsi') : []) });
registerModule({ name: 'vhost_blk', subsystem: 'vhost_blk', rpc: registerVhostMethods });
registerModule({ name: 'vhost_scsi', subsystem: 'vhost_scsi', rpc: registerVhostScsiMethods });
