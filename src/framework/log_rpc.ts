// log_* methods over src/log.ts, with SPDK's level names.
import { getLogFlags, getLogLevel, Level, setLogFlag, setLogLevel } from '../log.js';
import { MethodRegistry, STARTUP_AND_RUNTIME } from '../rpc/registry.js';
import { invalidParams } from '../rpc/errors.js';

const SPDK_LEVELS: Record<string, Level> = { ERROR: 'error', WARNING: 'warn', NOTICE: 'notice', INFO: 'info', DEBUG: 'debug' };
const toSpdk = (l: Level) => Object.keys(SPDK_LEVELS).find((k) => SPDK_LEVELS[k] === l) ?? 'NOTICE';

/** Components that log under a flag name; set flags enable their debug output. */
export const KNOWN_LOG_FLAGS = ['app', 'bdev', 'config', 'reactor', 'rpc', 'vhost', 'vhost_blk', 'vhost_scsi', 'virtio'];

function parseLevel(s: string): Level {
  const l = SPDK_LEVELS[s.toUpperCase()] ?? (s.toLowerCase() === 'warn' ? 'warn' : undefined);
  if (!l) throw invalidParams(`log level '${s}' is unknown: use one of ${Object.keys(SPDK_LEVELS).join(', ')}`);
  return l;
}

function checkFlag(flag: string): string {
  if (!/^[A-Za-z0-9_]{1,64}$/.test(flag)) {
    throw invalidParams(`log flag '${flag}' is not a flag name (letters, digits, '_'; known: ${KNOWN_LOG_FLAGS.join(', ')})`);
  }
  return flag;
}

export function registerLogMethods(reg: MethodRegistry): void {
  const any = { states: STARTUP_AND_RUNTIME };
  reg.register('log_set_level', { level: { type: 'string', required: true, desc: 'ERROR, WARNING, NOTICE, INFO or DEBUG' } },
    (p) => { setLogLevel(parseLevel(p.level)); return true; }, any);
  reg.register('log_get_level', {}, () => toSpdk(getLogLevel()), any);
  // vhostd has a single level for stderr; the print level is the same setting
  reg.register('log_set_print_level', { level: { type: 'string', required: true } },
    (p) => { setLogLevel(parseLevel(p.level)); return true; }, any);
  reg.register('log_get_print_level', {}, () => toSpdk(getLogLevel()), any);
  reg.register('log_set_flag', { flag: { type: 'string', required: true } }, (p) => {
    const flags = p.flag === 'all' ? KNOWN_LOG_FLAGS : [checkFlag(p.flag)];
    flags.forEach((f) => setLogFlag(f, true));
    return true;
  }, any);
  reg.register('log_clear_flag', { flag: { type: 'string', required: true } }, (p) => {
    const flags = p.flag === 'all' ? [...new Set([...KNOWN_LOG_FLAGS, ...getLogFlags()])] : [checkFlag(p.flag)];
    flags.forEach((f) => setLogFlag(f, false));
    return true;
  }, any);
  reg.register('log_get_flags', {}, () => {
    const on = new Set(getLogFlags());
    const out: Record<string, boolean> = {};
    for (const f of [...new Set([...KNOWN_LOG_FLAGS, ...on])].sort()) out[f] = on.has(f);
    return out;
  }, any);
}
