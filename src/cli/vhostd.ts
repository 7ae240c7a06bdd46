// vhostd entry point. Every exit goes through exitNow: process.exit() would wait for worker
// threads and the libuv thread pool, and a reactor or fd loop blocked in epoll_wait would
// keep a failed daemon hanging instead of letting systemd restart it.
import { parseDaemonArgs, USAGE, UsageError } from './vhostd-args.js';
import { runDaemon } from '../daemon.js';
import { VERSION } from '../framework/app_context.js';
import { ConfigError } from '../config/load.js';
import { SocketInUseError } from '../rpc/socket-path.js';
import { StartupError } from '../startup/errors.js';
import { exitNow } from '../../native/process.js';

async function main(): Promise<void> {
  const parsed = parseDaemonArgs(process.argv.slice(2));
  if (parsed.kind === 'help') { process.stdout.write(USAGE); return; }
  if (parsed.kind === 'version') { process.stdout.write(`vhostd v${VERSION}\n`); return; }
  const app = await runDaemon(parsed.opts, (code) => exitNow(code));
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP'] as const) process.on(sig, () => app.shutdown(sig));
}

// a bug that escapes every handler ends the process at once, with the stack, so a supervisor restarts it
process.on('uncaughtException', (e) => {
  process.stderr.write(`vhostd: fatal internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  exitNow(70);
});

main().catch((e: unknown) => {
  const known = e instanceof UsageError || e instanceof ConfigError || e instanceof SocketInUseError || e instanceof StartupError;
  process.stderr.write(`vhostd: ${known ? (e as Error).message : (e as Error)?.stack ?? String(e)}\n`);
  exitNow(e instanceof UsageError ? 2 : 1);
});
