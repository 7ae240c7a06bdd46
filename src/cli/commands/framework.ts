// Framework, config and log subcommands (rpc.py names).
import { readFileSync } from 'node:fs';
import type { CommandSpec } from './types.js';
import type { RpcClient } from '../rpc-client.js';
import { ClientError } from '../rpc-client.js';

const none = (name: string, help: string): CommandSpec => ({ name, help });

async function loadConfig(client: RpcClient, file: string | undefined, includeAliases: boolean): Promise<unknown> {
  const text = file ? readFileSync(file, 'utf8') : readFileSync(0, 'utf8');
  let cfg: { subsystems?: { subsystem: string; config: { method: string; params?: unknown }[] | null }[] };
  try { cfg = JSON.parse(text); } catch (e) { throw new ClientError(`config is not valid JSON: ${(e as Error).message}`); }
  if (!cfg || !Array.isArray(cfg.subsystems)) throw new ClientError('config must be {"subsystems": [...]} as written by save_config');
  const known = await client.call('rpc_get_methods', { include_aliases: includeAliases }) as string[];
  const subs = cfg.subsystems.filter((s) => s.config && s.config.length);
  for (const s of subs) for (const e of s.config!) {
    if (!known.includes(e.method)) throw new ClientError(`config entry '${e.method}' of subsystem '${s.subsystem}' is not a vhostd method`);
  }
  // like rpc.py: apply what the current state allows, start the framework, repeat
  for (;;) {
    const allowed = await client.call('rpc_get_methods', { current: true, include_aliases: includeAliases }) as string[];
    let progress = false;
    for (const s of subs) {
      for (const e of [...s.config!]) {
        if (!allowed.includes(e.method)) continue;
        await client.call(e.method, e.params);
        s.config!.splice(s.config!.indexOf(e), 1);
        progress = true;
      }
    }
    if (allowed.includes('framework_start_init')) { await client.call('framework_start_init'); progress = true; }
    if (!progress || subs.every((s) => s.config!.length === 0)) break;
  }
  return undefined;
}

export const frameworkCommands: CommandSpec[] = [
  none('spdk_get_version', 'Get the daemon version'),
  { name: 'rpc_get_methods', help: 'List the RPC methods', args: [
    { name: 'current', flags: ['--current'], type: 'bool', help: 'only methods callable in the current state' },
    { name: 'include_aliases', flags: ['--include-aliases'], type: 'bool', help: 'include deprecated aliases' },
  ] },
  none('framework_get_reactors', 'Show the reactors'),
  none('framework_get_subsystems', 'List subsystems and their dependencies'),
  { name: 'framework_get_config', help: 'Show the config calls of one subsystem', args: [
    { name: 'name', help: 'subsystem name', required: true },
  ] },
  none('framework_start_init', 'Finish start-up after --wait-for-rpc'),
  none('framework_wait_init', 'Wait until the framework is initialized'),
  none('framework_enable_cpumask_locks', 'Lock the reactor CPUs against a second vhostd'),
  none('framework_disable_cpumask_locks', 'Release the reactor CPU locks'),
  { name: 'spdk_kill_instance', help: 'Send a signal to the daemon', args: [
    { name: 'sig_name', help: 'signal name or number, e.g. SIGTERM', required: true },
  ] },
  { name: 'save_config', help: 'Print the current configuration as JSON (reload with vhostd -c or load_config)', args: [
    { name: 'indent', flags: ['-i', '--indent'], type: 'int', help: 'indent level (default 2)', param: false },
  ] },
  { name: 'load_config', help: 'Apply a configuration written by save_config (from -j FILE or stdin)', args: [
    { name: 'json_conf', flags: ['-j', '--json-conf'], help: 'config file; default stdin', param: false },
    { name: 'include_aliases', flags: ['--include-aliases'], type: 'bool', help: 'accept alias method names', param: false },
  ], run: (c, a) => loadConfig(c, a.json_conf as string | undefined, a.include_aliases === true) },
  { name: 'log_set_level', help: 'Set the log level', args: [
    { name: 'level', help: 'ERROR, WARNING, NOTICE, INFO or DEBUG', required: true },
  ] },
  none('log_get_level', 'Show the log level'),
  { name: 'log_set_print_level', help: 'Set the level printed to stderr', args: [
    { name: 'level', help: 'ERROR, WARNING, NOTICE, INFO or DEBUG', required: true },
  ] },
  none('log_get_print_level', 'Show the level printed to stderr'),
  { name: 'log_set_flag', help: 'Enable debug logging of a component', args: [{ name: 'flag', help: 'flag name or all', required: true }] },
  { name: 'log_clear_flag', help: 'Disable debug logging of a component', args: [{ name: 'flag', help: 'flag name or all', required: true }] },
  none('log_get_flags', 'Show the log flags'),
];
