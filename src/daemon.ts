// The daemon: builds the App (AppContext), loads -c config, serves RPC, shuts down on signals.
import { statSync } from 'node:fs';
import type { AppContext, AppState, Subsystem } from './framework/app_context.js';
import { ReactorPool } from './reactor/pool.js';
import { VhostManager } from '../targets/vhost/vhost_manager.js';
import { startMetricsServer } from './metrics.js';
import { defaultConfig, printAttachHelp } from './default_config.js';
import { ConfigPersister } from './config/persist.js';
import { NvmfManager } from '../targets/nvme/nvmf_manager.js';
import { VERSION } from './framework/app_context.js';
import { BdevRegistry } from '../bdev/registry.js';
import { logger, setLogFlag, setLogLevel, Level } from './log.js';
import { MethodRegistry } from './rpc/registry.js';
import { RpcServer } from './rpc/server.js';
import { registerFrameworkMethods } from './app_rpc.js';
import { registerLogMethods } from './framework/log_rpc.js';
import './modules.js';
import { registeredSubsystems, registerModuleMethods } from './framework/module.js';
import { applyConfig, ConfigEntry, planConfig, readConfigFile } from './config/load.js';
import type { DaemonOptions } from './cli/vhostd-args.js';
import { UsageError } from './cli/vhostd-args.js';

const log = logger('app');
/** The reactor threads' entry (not imported here: the reactor side of the modules loads only in reactors). */
const REACTOR_MAIN = new URL('./reactor_main.js', import.meta.url);
const SHUTDOWN_LIMIT_MS = 15_000;


export class App implements AppContext {
  readonly version = VERSION;
  readonly bdevs = new BdevRegistry();
  readonly reactors: ReactorPool;
  readonly vhost: VhostManager;
  readonly nvmf: NvmfManager;
  readonly subsystems: Subsystem[] = [];
  state: AppState = 'waiting_for_rpc';
  /** Config entries that must wait until framework init (runtime-only methods). */
  pendingConfig: ConfigEntry[] = [];
  private stopping: Promise<void> | null = null;

  constructor(readonly opts: DaemonOptions, readonly rpc: MethodRegistry, pool: ReactorPool,
    private readonly onStopped: (code: number) => void) {
    this.reactors = pool;
    this.vhost = new VhostManager(pool, this.bdevs, opts.socketDir);
    this.nvmf = new NvmfManager(pool, this.bdevs);
  }

  async startInit(): Promise<void> {
    if (this.state !== 'waiting_for_rpc') return;
    this.state = 'running';
    log.notice('framework initialized');
    const left = await applyConfig(this.pendingConfig, this.rpc, this);
    this.pendingConfig = [];
    if (left.length) log.warn(`${left.length} config entries were skipped: not callable after init`);
  }

  shutdown(reason: string): void {
    if (this.stopping) return;
    log.notice(`shutting down: ${reason}`);
    this.state = 'stopping';
    // bounded: a backend that never completes its I/O must not keep the process alive
    const limit = setTimeout(() => {
      log.error(`shutdown did not finish in ${SHUTDOWN_LIMIT_MS / 1000} s (I/O still in flight?): exiting anyway`);
      this.onStopped(1);
    }, SHUTDOWN_LIMIT_MS);
    limit.unref();
    this.stopping = this.stopAll().then(() => this.onStopped(0), (e) => {
      log.error(`shutdown failed: ${(e as Error).message}`);
      this.onStopped(1);
    });
  }

  /** Set by runDaemon: closes the RPC server. */
  closeRpc: () => Promise<void> = async () => {};

  private async stopAll(): Promise<void> {
    await this.closeRpc();
    // controllers first: queues stop fetching, in-flight I/O completes, sockets close
    await this.vhost.closeAll();
    await this.nvmf.closeAll();
    for (const b of this.bdevs.list()) {
      b.claimedBy = null;
      await this.bdevs.unregister(b.name).catch((e) => log.warn(`deleting bdev ${b.name}: ${(e as Error).message}`));
    }
    await this.reactors.stop();
  }
}

function applyLogOptions(opts: DaemonOptions): void {
  if (opts.logLevel) {
    const map: Record<string, Level> = { ERROR: 'error', WARNING: 'warn', WARN: 'warn', NOTICE: 'notice', INFO: 'info', DEBUG: 'debug' };
    const l = map[opts.logLevel.toUpperCase()];
    if (!l) throw new UsageError(`--log-level '${opts.logLevel}' is unknown: use ERROR, WARNING, NOTICE, INFO or DEBUG`);
    setLogLevel(l);
  }
  for (const f of opts.logFlags) setLogFlag(f, true);
}

/** Starts the daemon; resolves with the App once it serves RPC. onExit gets the exit code. */
export async function runDaemon(opts: DaemonOptions, onExit: (code: number) => void): Promise<App> {
  applyLogOptions(opts);
  try {
    if (!statSync(opts.socketDir).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw new UsageError(`-S ${opts.socketDir}: ${(e as Error).message}`);
  }
  const pool = await ReactorPool.start(opts.cpus, { worker: REACTOR_MAIN, idleSleepMs: opts.idleSleepMs });
  try {
    return await startApp(opts, pool, onExit);
  } catch (e) {
    await pool.stop();
    throw e;
  }
}

async function startApp(opts: DaemonOptions, pool: ReactorPool, onExit: (code: number) => void): Promise<App> {
  const rpcMethods = new MethodRegistry();
  const app = new App(opts, rpcMethods, pool, onExit);
  registerFrameworkMethods(rpcMethods);
  registerLogMethods(rpcMethods);
  registerModuleMethods(rpcMethods);
  for (const s of registeredSubsystems()) {
    app.subsystems.push({ name: s.name, dependsOn: s.dependsOn, configCalls: () => s.configCalls(app) });
  }
  const persist = opts.configFile ? new ConfigPersister(opts.configFile, () => app.subsystems) : undefined;
  const restored = persist?.exists ?? false;
  const config = restored ? readConfigFile(persist!.path)
    : opts.config ? readConfigFile(opts.config) : opts.useDefault ? defaultConfig() : undefined;
  if (restored) log.notice(`restoring the running configuration from ${opts.configFile}`);
  if (config) {
    const entries = planConfig(config, app.subsystems.map((s) => s.name), rpcMethods);
    app.pendingConfig = await applyConfig(entries, rpcMethods, app);   // startup-state calls
  }
  if (!opts.waitForRpc) await app.startInit();
  if (persist) {
    if (restored) persist.markLoaded();
    persist.update();
    rpcMethods.onSuccess(() => persist.update());
  }
  const server = new RpcServer({ path: opts.rpcSocket, registry: rpcMethods, ctx: app });
  await server.listen();
  app.closeRpc = () => server.close();
  if (opts.metrics) await startMetricsServer(`${opts.metrics.host}:${opts.metrics.port}`, app.bdevs, pool);
  if (!opts.config && !restored && opts.useDefault) printAttachHelp(opts.socketDir, opts.rpcSocket);
  log.notice(`vhostd ${VERSION} started: reactors on CPUs ${opts.cpus.join(',')}, vhost sockets in ${opts.socketDir}` +
    (opts.waitForRpc ? ', waiting for framework_start_init' : ''));
  return app;
}
