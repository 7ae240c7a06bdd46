// save_config: the calls that recreate every subsystem's objects, subsystems in dependency order.
import type { Subsystem } from '../framework/app_context.js';
import type { ConfigCall } from '../../bdev/bdev.js';

export interface SavedConfig { subsystems: { subsystem: string; config: ConfigCall[] }[] }

/** Orders subsystems so each comes after the ones it depends on (stable otherwise). */
export function orderSubsystems(subs: readonly Subsystem[]): Subsystem[] {
  const byName = new Map(subs.map((s) => [s.name, s]));
  const out: Subsystem[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (s: Subsystem, path: string[]) => {
    const st = state.get(s.name);
    if (st === 'done') return;
    if (st === 'visiting') throw new Error(`subsystem dependency cycle: ${[...path, s.name].join(' -> ')}`);
    state.set(s.name, 'visiting');
    for (const d of s.dependsOn) {
      const dep = byName.get(d);
      if (!dep) throw new Error(`subsystem '${s.name}' depends on unknown subsystem '${d}'`);
      visit(dep, [...path, s.name]);
    }
    state.set(s.name, 'done');
    out.push(s);
  };
  for (const s of subs) visit(s, []);
  return out;
}

export function saveConfig(subs: readonly Subsystem[]): SavedConfig {
  return { subsystems: orderSubsystems(subs).map((s) => ({ subsystem: s.name, config: s.configCalls() })) };
}
