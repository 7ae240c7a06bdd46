// Framework methods: version, method list, reactors, subsystems/config, init and shutdown.
import type { AppContext } from './framework/app_context.js';
import { MethodRegistry, STARTUP_AND_RUNTIME } from './rpc/registry.js';
import { RpcError, RpcCode, invalidParams } from './rpc/errors.js';
import { orderSubsystems, saveConfig } from './config/save.js';

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGQUIT: 3, SIGHUP: 1, SIGKILL: 9, SIGUSR1: 10 };

function versionInfo(v: string) {
  const [major, minor, rest] = v.split('.');
  const m = /^(\d+)(.*)$/.exec(rest ?? '0') ?? ['', '0', ''];
  return { version: `vhostd v${v}`, fields: { major: Number(major), minor: Number(minor), patch: Number(m[1]), suffix: m[2] } };
}

function waitRunning(ctx: AppContext): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      if (ctx.state === 'running') { clearInterval(t); resolve(true); }
      else if (ctx.state === 'stopping') { clearInterval(t); reject(new RpcError(RpcCode.INTERNAL_ERROR, 'vhostd is shutting down')); }
    }, 20);
  });
}

export function registerFrameworkMethods(reg: MethodRegistry): void {
  const any = { states: STARTUP_AND_RUNTIME };

  reg.register('spdk_get_version', {}, (_p, ctx) => versionInfo(ctx.version), any);

  reg.register('rpc_get_methods', {
    current: { type: 'bool', desc: 'only methods callable in the current state' },
    include_aliases: { type: 'bool' },
  }, (p, ctx) => reg.list().filter((m) => !p.current || m.states.includes(ctx.state)).map((m) => m.name), any);

  reg.register('framework_get_reactors', {}, (_p, ctx) => ctx.reactors.describe());

  reg.register('framework_get_subsystems', {}, (_p, ctx) =>
    orderSubsystems(ctx.subsystems).map((s) => ({ subsystem: s.name, depends_on: [...s.dependsOn] })));

  reg.register('framework_get_config', { name: { type: 'string', required: true, desc: 'subsystem name' } }, (p, ctx) => {
    const s = ctx.subsystems.find((x) => x.name === p.name);
    if (!s) {
      throw invalidParams(`Subsystem '${p.name}' not found (known: ${ctx.subsystems.map((x) => x.name).join(', ')})`);
    }
    return s.configCalls();
  });

  reg.register('save_config', {}, (_p, ctx) => saveConfig(ctx.subsystems));

  reg.register('framework_start_init', {}, async (_p, ctx) => { await ctx.startInit(); return true; },
    { states: ['waiting_for_rpc'] });

  reg.register('framework_wait_init', {}, (_p, ctx) => ctx.state === 'running' ? true : waitRunning(ctx), any);

  reg.register('spdk_kill_instance', { sig_name: { type: 'string', required: true, desc: 'e.g. SIGTERM or 15' } }, (p, ctx) => {
    const name = Object.keys(SIGNALS).find((k) => k === p.sig_name || String(SIGNALS[k]) === p.sig_name);
    if (!name) throw invalidParams(`sig_name '${p.sig_name}' is not supported: use one of ${Object.keys(SIGNALS).join(', ')}`);
    // reply first, then act
    setTimeout(() => {
      if (name === 'SIGKILL') process.kill(process.pid, 'SIGKILL');
      else if (name !== 'SIGUSR1') ctx.shutdown(`spdk_kill_instance ${name}`);
    }, 10);
    return true;
  });
}
