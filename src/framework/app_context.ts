// The process-wide context that RPC methods, config loading and the CLI act on.
// The framework declares what it owns; each higher layer adds its part to AppContext with
// a `declare module` block next to its own code (bdev/registry.ts: bdevs,
// targets/vhost/vhost_manager.ts: vhost, targets/nvme/nvmf_manager.ts: nvmf), so no lower
// layer names a higher one.

/** One RPC call of a saved configuration (save_config, -c, --config-file). */
export interface ConfigCall { method: string; params: Record<string, unknown> }

/** A group of RPC-created objects that save_config writes out (SPDK "subsystem"). */
export interface Subsystem {
  name: string;
  dependsOn: string[];
  /** The calls that recreate the subsystem's current state, in order. */
  configCalls(): ConfigCall[];
}

/** What the reactor pool tells the control plane (framework_get_reactors). */
export interface ReactorsView {
  readonly cpus: number[];
  describe(): Record<string, unknown>;
}

export type AppState = 'waiting_for_rpc' | 'running' | 'stopping';

export interface AppContext {
  readonly version: string;
  readonly reactors: ReactorsView;
  readonly subsystems: Subsystem[];
  state: AppState;
  /** Finishes start-up after --wait-for-rpc (framework_start_init). */
  startInit(): Promise<void>;
  /** Begins an orderly shutdown (spdk_kill_instance, SIGTERM). */
  shutdown(reason: string): void;
}

export const VERSION = '0.1.0';
