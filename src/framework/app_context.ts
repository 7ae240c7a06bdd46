// The process-wide context that RPC methods, config loading and the CLI act on.
import { BdevRegistry } from '../../bdev/registry.js';
import { ConfigCall } from '../../bdev/bdev.js';
import type { VhostManager } from '../../targets/vhost/vhost_manager.js';

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
  readonly bdevs: BdevRegistry;
  readonly reactors: ReactorsView;
  readonly subsystems: Subsystem[];
  /** vhost controllers (absent in tools that run without reactors). */
  readonly vhost?: VhostManager;
  state: AppState;
  /** Finishes start-up after --wait-for-rpc (framework_start_init). */
  startInit(): Promise<void>;
  /** Begins an orderly shutdown (spdk_kill_instance, SIGTERM). */
  shutdown(reason: string): void;
}

export const VERSION = '0.1.0';
