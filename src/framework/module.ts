// Module registration, as SPDK's SPDK_BDEV_MODULE_REGISTER / SPDK_SUBSYSTEM_REGISTER: a bdev
// module or target registers its save_config subsystem and its RPC methods when its
// `<mod>_rpc.ts` file is imported; src/modules.ts is the one list of those imports (the
// reactor side registers its ops and channel factories likewise, listed in
// src/reactor_modules.ts). The lists hold definitions only, never runtime state.
import type { AppContext, ConfigCall } from './app_context.js';
import type { MethodRegistry } from '../rpc/registry.js';

/** A save_config subsystem ("bdev", "vhost_blk", "nvmf"...), written in registration order. */
export interface SubsystemDef {
  readonly name: string;
  readonly dependsOn: string[];
  /** The calls that recreate the subsystem's current objects, in order. */
  configCalls(ctx: AppContext): ConfigCall[];
}

/** A module: its RPC methods, belonging to a subsystem registered before it. */
export interface ModuleDef {
  readonly name: string;
  readonly subsystem: string;
  /** Registers the module's RPC methods (once per registry; handlers get the app context per call). */
  rpc(reg: MethodRegistry): void;
}

const subsystems: SubsystemDef[] = [];
const modules: ModuleDef[] = [];

export function registerSubsystem(s: SubsystemDef): void {
  if (subsystems.some((x) => x.name === s.name)) throw new Error(`subsystem '${s.name}' is registered twice`);
  subsystems.push(s);
}

export function registerModule(m: ModuleDef): void {
  if (modules.some((x) => x.name === m.name)) throw new Error(`module '${m.name}' is registered twice`);
  if (!subsystems.some((s) => s.name === m.subsystem)) {
    throw new Error(`module '${m.name}' belongs to subsystem '${m.subsystem}', which is not registered: ` +
      `import the file that registers '${m.subsystem}' before it in src/modules.ts`);
  }
  modules.push(m);
}

export function registeredSubsystems(): readonly SubsystemDef[] { return subsystems; }
export function registeredModules(): readonly ModuleDef[] { return modules; }

/** Registers every registered module's RPC methods into `reg`. */
export function registerModuleMethods(reg: MethodRegistry): void {
  for (const m of modules) m.rpc(reg);
}
