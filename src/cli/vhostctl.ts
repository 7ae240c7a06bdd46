// vhostctl: command-line client of vhostd's JSON-RPC socket (rpc.py-compatible subcommands).
import { COMMANDS } from './commands/index.js';
import type { CommandSpec } from './commands/types.js';
import { commandHelp, defaultParams, parseCommandArgs } from './command-args.js';
import { ClientError, RpcClient } from './rpc-client.js';
import { DEFAULT_RPC_SOCKET, UsageError } from './vhostd-args.js';

const callCommand: CommandSpec = {
  name: 'call', help: 'Call any method: vhostctl call METHOD [JSON_PARAMS]',
  args: [
    { name: 'method', required: true, help: 'RPC method name' },
    { name: 'params', help: 'params as a JSON object, e.g. \'{"name":"Malloc0"}\'' },
  ],
  run: (c, a) => {
    let params: unknown;
    if (a.params !== undefined) {
      try { params = JSON.parse(a.params as string); } catch (e) {
        throw new UsageError(`call: params are not valid JSON: ${(e as Error).message}`);
      }
    }
    return c.call(a.method as string, params);
  },
};

const ALL = [...COMMANDS, callCommand];

function usage(): string {
  const width = Math.max(...ALL.map((c) => c.name.length)) + 2;
  return `Usage: vhostctl [-s SOCKET] [-t TIMEOUT] COMMAND [ARGS...]

Options:
  -s, --server SOCKET   vhostd RPC socket (default ${DEFAULT_RPC_SOCKET})
  -t, --timeout SECS    seconds to wait for each response (default 60; 90 for bdev_lvol_create_lvstore, as rpc.py)
  -h, --help            this help; 'vhostctl COMMAND --help' for a command

Commands:
${ALL.map((c) => `  ${c.name.padEnd(width)}${c.help}`).join('\n')}
`;
}

function print(result: unknown, indent = 2): void {
  if (result === undefined) return;
  process.stdout.write((typeof result === 'string' ? result : JSON.stringify(result, null, indent < 0 ? undefined : indent)) + '\n');
}

async function main(argv: string[]): Promise<number> {
  let socket = DEFAULT_RPC_SOCKET, timeout: number | undefined;
  let i = 0;
  for (; i < argv.length && argv[i].startsWith('-'); i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { process.stdout.write(usage()); return 0; }
    const v = argv[i + 1];
    if ((a === '-s' || a === '--server' || a === '-t' || a === '--timeout') && v === undefined) throw new UsageError(`${a} needs a value`);
    if (a === '-s' || a === '--server') { socket = v; i++; }
    else if (a === '-t' || a === '--timeout') {
      timeout = Number(v); i++;
      if (!(timeout > 0)) throw new UsageError(`-t must be a positive number of seconds, got '${v}'`);
    } else throw new UsageError(`unknown option '${a}' (see vhostctl --help)`);
  }
  const name = argv[i];
  if (!name) { process.stderr.write(usage()); return 2; }
  const cmd = ALL.find((c) => c.name === name);
  if (!cmd) throw new UsageError(`unknown command '${name}': see vhostctl --help, or use 'vhostctl call ${name} JSON'`);
  const rest = argv.slice(i + 1);
  if (rest.includes('-h') || rest.includes('--help')) { process.stdout.write(commandHelp(cmd)); return 0; }
  const args = parseCommandArgs(cmd, rest);
  const params = cmd.run ? undefined : (cmd.params ? cmd.params(args) : defaultParams(cmd, args));
  const client = await RpcClient.connect(socket, (timeout ?? cmd.timeoutSec ?? 60) * 1000);
  try {
    const result = cmd.run ? await cmd.run(client, args) : await client.call(cmd.method ?? cmd.name, params);
    print(result, typeof args.indent === 'number' ? args.indent : 2);
  } finally {
    client.close();
  }
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  const known = e instanceof UsageError || e instanceof ClientError;
  process.stderr.write(`vhostctl: ${known ? (e as Error).message : (e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});
