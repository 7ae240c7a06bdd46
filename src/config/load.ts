// -c FILE: applies an SPDK save_config file through the RPC method registry, as SPDK's
// json_config loader does: startup-state calls first, then framework init, then the rest.
import { readFileSync } from 'node:fs';
import type { AppContext } from '../framework/app_context.js';
import { MethodRegistry } from '../rpc/registry.js';
import { toRpcError } from '../rpc/errors.js';
import { logger } from '../log.js';
import { locateJsonError } from './json_error.js';

const log = logger('config');

export class ConfigError extends Error {
  constructor(message: string) { super(message); this.name = 'ConfigError'; }
}

/** Calls SPDK configs carry that only tune features vhostd does not have; skipped with a note. */
export const HARMLESS_METHODS = new Set([
  'bdev_set_options', 'bdev_raid_set_options', 'bdev_iscsi_set_options', 'bdev_nvme_set_options',
  'bdev_nvme_set_hotplug', 'iobuf_set_options', 'accel_set_options', 'sock_set_default_impl',
  'sock_impl_set_options', 'framework_set_scheduler', 'scheduler_set_options', 'keyring_set_options',
  'vhost_set_options',
]);

export interface ConfigEntry { where: string; method: string; params: unknown }

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function readConfigFile(path: string): unknown {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);   // a UTF-8 byte order mark
  try { return JSON.parse(text); } catch (e) {
    const at = locateJsonError(text);
    throw new ConfigError(`config file ${path} is not valid JSON: ` +
      (at ? `line ${at.line}, column ${at.column}: ${at.message}` : (e as Error).message));
  }
}

/** Checks the whole file before anything is applied; returns the calls to make, in order. */
export function planConfig(cfg: unknown, known: readonly string[], reg: MethodRegistry): ConfigEntry[] {
  if (!isObj(cfg) || !Array.isArray(cfg.subsystems)) {
    throw new ConfigError('config must be an object {"subsystems": [...]} as written by save_config');
  }
  const out: ConfigEntry[] = [];
  cfg.subsystems.forEach((sub, i) => {
    if (!isObj(sub) || typeof sub.subsystem !== 'string') {
      throw new ConfigError(`subsystems[${i}] must be {"subsystem": NAME, "config": [...]}`);
    }
    const name = sub.subsystem;
    const config = sub.config ?? [];
    if (!Array.isArray(config)) throw new ConfigError(`subsystems[${i}] '${name}': "config" must be an array or null`);
    const ours = known.includes(name);
    if (!ours && config.length === 0) { log.info(`config: subsystem '${name}' is empty; vhostd has no such subsystem, ignored`); return; }
    config.forEach((e, j) => {
      const where = `subsystems[${i}] '${name}' config[${j}]`;
      if (!isObj(e) || typeof e.method !== 'string') throw new ConfigError(`${where} must be {"method": NAME, "params": {...}}`);
      if (e.params !== undefined && e.params !== null && !isObj(e.params)) {
        throw new ConfigError(`${where} '${e.method}': "params" must be an object`);
      }
      if (HARMLESS_METHODS.has(e.method)) {
        log.notice(`config: ${where}: '${e.method}' tunes a feature vhostd does not have; skipped`);
      } else if (!ours) {
        throw new ConfigError(`${where}: subsystem '${name}' is not supported by vhostd, so '${e.method}' cannot be applied: ` +
          `remove that subsystem from the config`);
      } else if (!reg.has(e.method)) {
        throw new ConfigError(`${where}: method '${e.method}' is not supported by vhostd: remove that entry`);
      } else {
        out.push({ where, method: e.method, params: e.params ?? undefined });
      }
    });
  });
  return out;
}

/** Applies the entries callable in ctx's current state; returns the ones left for later. */
export async function applyConfig(entries: ConfigEntry[], reg: MethodRegistry, ctx: AppContext): Promise<ConfigEntry[]> {
  const later: ConfigEntry[] = [];
  for (const e of entries) {
    if (!reg.get(e.method)!.states.includes(ctx.state)) { later.push(e); continue; }
    try {
      await reg.invoke(e.method, e.params, ctx);
    } catch (err) {
      const r = toRpcError(err);
      throw new ConfigError(`${e.where}: ${e.method} failed (${r.code}): ${r.message}`);
    }
  }
  return later;
}
