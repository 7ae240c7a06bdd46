// HOOK LIST: every subsystem of the daemon. Each entry builds the Subsystem that
// framework_get_config/save_config read, and registers that subsystem's RPC methods.
// vhost_blk / vhost_scsi (and later nvmf-like targets) are added by appending an entry here.
import { nvmfSubsystem } from './rpc/methods/nvmf.js';
import type { AppContext, Subsystem } from './app.js';
import type { ConfigCall } from '../bdev/bdev.js';
import { MethodRegistry } from './rpc/registry.js';
import { registerBdevMethods } from './rpc/methods/bdev.js';
import { registerVhostMethods, registerVhostScsiMethods } from './rpc/methods/vhost.js';

export interface SubsystemEntry {
  readonly name: string;
  /** The save_config source for this subsystem. */
  create(ctx: AppContext): Subsystem;
  /** Registers the subsystem's RPC methods (called once at start-up). */
  register(rpc: MethodRegistry, ctx: AppContext): void;
}

export const bdevSubsystem: SubsystemEntry = {
  name: 'bdev',
  create: (ctx) => ({
    name: 'bdev', dependsOn: [],
    configCalls: () => {
      const calls = ctx.bdevs.list().map((b) => b.configCall());
      const own = calls.filter((c): c is ConfigCall => c !== null);
      // bdevs found by examine (lvols) are not written: as SPDK, wait for them before the consumers
      return own.length < calls.length ? [...own, { method: 'bdev_wait_for_examine', params: {} }] : own;
    },
  }),
  register: (rpc) => registerBdevMethods(rpc),
};

function vhostOf(ctx: AppContext) {
  if (!ctx.vhost) throw new Error('vhost controllers are not available in this process');
  return ctx.vhost;
}

export const vhostBlkSubsystem: SubsystemEntry = {
  name: 'vhost_blk',
  create: (ctx) => ({
    name: 'vhost_blk', dependsOn: ['bdev'],
    configCalls: () => (ctx.vhost ? ctx.vhost.configCalls('blk') : []),
  }),
  register: (rpc, ctx) => registerVhostMethods(rpc, () => vhostOf(ctx)),
};

export const vhostScsiSubsystem: SubsystemEntry = {
  name: 'vhost_scsi',
  create: (ctx) => ({
    name: 'vhost_scsi', dependsOn: ['bdev'],
    configCalls: () => (ctx.vhost ? ctx.vhost.configCalls('scsi') : []),
  }),
  register: (rpc, ctx) => registerVhostScsiMethods(rpc, () => vhostOf(ctx)),
};

export const SUBSYSTEMS: SubsystemEntry[] = [
  bdevSubsystem,
  vhostBlkSubsystem,
  vhostScsiSubsystem,
  nvmfSubsystem,
];
