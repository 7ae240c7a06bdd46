// vhostd entry point.
import { parseDaemonArgs, USAGE, UsageError } from './vhostd-args.js';
import { runDaemon } from '../daemon.js';
import { VERSION } from '../framework/app_context.js';
import { ConfigError } from '../config/load.js';
import { SocketInUseError } from '../rpc/socket-path.js';

async function main(): Promise<void> {
  const parsed = parseDaemonArgs(process.argv.slice(2));
  if (parsed.kind === 'help') { process.stdout.write(USAGE); return; }
  if (parsed.kind === 'version') { process.stdout.write(`vhostd v${VERSION}\n`); return; }
  const exit = (code: number) => process.exit(code);
  const app = await runDaemon(parsed.opts, exit);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP'] as const) process.on(sig, () => app.shutdown(sig));
}

main().catch((e: unknown) => {
  const known = e instanceof UsageError || e instanceof ConfigError || e instanceof SocketInUseError;
  process.stderr.write(`vhostd: ${known ? (e as Error).message : (e as Error)?.stack ?? String(e)}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
