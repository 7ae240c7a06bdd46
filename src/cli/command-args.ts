// Parses a subcommand's argv against its ArgSpec table; renders per-command help.
import type { Args, ArgSpec, CommandSpec } from './commands/types.js';
import { UsageError } from './vhostd-args.js';

function convert(spec: ArgSpec, raw: string, shown: string): string | number {
  let v: string | number = raw;
  if (spec.type === 'int') {
    if (!/^-?\d+$/.test(raw)) throw new UsageError(`${shown} must be an integer, got '${raw}'`);
    v = Number(raw);
  } else if (spec.type === 'float') {
    v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v)) throw new UsageError(`${shown} must be a number, got '${raw}'`);
  }
  if (spec.choices && !spec.choices.includes(raw)) throw new UsageError(`${shown} must be one of ${spec.choices.join(', ')}, got '${raw}'`);
  return v;
}

export function parseCommandArgs(cmd: CommandSpec, argv: string[]): Args {
  const specs = cmd.args ?? [];
  const positional = specs.filter((s) => !s.flags);
  const out: Args = {};
  let pos = 0;
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline: string | undefined;
    if (a.startsWith('--') && a.includes('=')) { inline = a.slice(a.indexOf('=') + 1); a = a.slice(0, a.indexOf('=')); }
    if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      const spec = specs.find((s) => s.flags?.includes(a));
      if (!spec) throw new UsageError(`${cmd.name}: unknown option '${a}' (see vhostctl ${cmd.name} --help)`);
      if (spec.type === 'bool') { out[spec.name] = spec.store ?? true; continue; }
      const raw = inline ?? argv[++i];
      if (raw === undefined) throw new UsageError(`${cmd.name}: option ${a} needs a value`);
      const v = convert(spec, raw, `${cmd.name}: ${a}`);
      if (spec.repeat) out[spec.name] = [...((out[spec.name] as (string | number)[] | undefined) ?? []), v];
      else out[spec.name] = v;
      continue;
    }
    const spec = positional[pos++];
    if (!spec) throw new UsageError(`${cmd.name}: unexpected argument '${a}' (see vhostctl ${cmd.name} --help)`);
    out[spec.name] = convert(spec, a, `${cmd.name}: ${spec.name}`);
  }
  for (const s of specs) {
    if (s.required && out[s.name] === undefined) {
      throw new UsageError(`${cmd.name}: missing ${s.flags ? s.flags.join('/') : s.name} (${s.help}); see vhostctl ${cmd.name} --help`);
    }
  }
  return out;
}

/** Default params: every given arg under its JSON param name. */
export function defaultParams(cmd: CommandSpec, a: Args): Record<string, unknown> | undefined {
  const p: Record<string, unknown> = {};
  for (const s of cmd.args ?? []) {
    if (s.param === false || a[s.name] === undefined) continue;
    p[s.param ?? s.name] = a[s.name];
  }
  return Object.keys(p).length ? p : undefined;
}

export function commandHelp(cmd: CommandSpec): string {
  const specs = cmd.args ?? [];
  const usage = specs.map((s) => {
    const metavar = s.type === 'bool' ? '' : ` ${s.name.toUpperCase()}`;
    const t = s.flags ? `${s.flags[0]}${metavar}` : s.name;
    return s.required ? t : `[${t}]`;
  });
  const lines = [`Usage: vhostctl [-s SOCKET] [-t TIMEOUT] ${cmd.name} ${usage.join(' ')}`.trimEnd(), '', cmd.help];
  if (specs.length) {
    lines.push('', 'Arguments:');
    for (const s of specs) {
      const left = s.flags ? s.flags.join(', ') + (s.type === 'bool' ? '' : ` ${s.name.toUpperCase()}`) : s.name;
      const notes = `${s.choices ? ` (one of ${s.choices.join(', ')})` : ''}${s.repeat ? ' (may be repeated)' : ''}`;
      lines.push(`  ${left.padEnd(34)} ${s.help}${notes}`);
    }
  }
  return lines.join('\n') + '\n';
}
