// Module-level save_config calls (SPDK's spdk_bdev_module config_json): objects a bdev module
// keeps besides its bdevs (rbd's registered clusters), written before every bdev.
import type { ConfigCall } from '../src/framework/app_context.js';

const sources: (() => ConfigCall[])[] = [];

export function registerModuleConfig(fn: () => ConfigCall[]): void { sources.push(fn); }

export function moduleConfigCalls(): ConfigCall[] { return sources.flatMap((f) => f()); }
