// The daemon: builds the App (AppContext), loads -c config, serves RPC, shuts down on signals.
import type { AppContext, AppState, Subsystem } from './framework/app_context.js';
import { ReactorPool } from './reactor/pool.js';
import { VhostManager } from '../targets/vhost/vhost_manager.js';
import { startMetricsServer } from './metrics.js';
import { defaultConfig, printAttachHelp } from './default_config.js';
import { ConfigPersister } from './config/persist.js';
import { NvmfManager } from '../targets/nvme/nvmf_manager.js';
import { VERSION } from './framework/app_context.js';
import { BdevRegistry } from '../bdev/registry.js';
import { ctrlIo } from '../bdev/ctrl_io.js';
import { logger, setLogFlag, setLogLevel, Level } from './log.js';
import { MethodRegistry } from './rpc/registry.js';
import { RpcServer } from './rpc/server.js';
import { registerFrameworkMethods } from './app_rpc.js';
import { registerLogMethods } from './framework/log_rpc.js';
import { registerCpuLockMethods } from './startup/cpu_locks_rpc.js';
import './modules.js';
import { registeredSubsystems, registerModuleMethods } from './framework/module.js';
import { applyConfig, ConfigEntry, planConfig, readConfigFile } from './config/load.js';
import type { DaemonOptions } from './cli/vhostd-args.js';
import { UsageError } from './cli/vhostd-args.js';
import { StartupError } from './startup/errors.js';
import { checkCpus, checkPaths, cpuRanges, resolveSocketAccess } from './startup/checks.js';
import { claimCpuLocks } from './startup/cpu_locks.js';
import type { HeldLock } from './framework/lock_file.js';
import { lockRpcSocket } from './rpc/socket-path.js';
import { setControllerSocketAccess } from './framework/socket_file.js';
import { getAffinity } from '../native/libc.js';

const log = logger('app');
/** The reactor threads' entry (not imported here: the reactor side of the modules loads only in reactors). */
const REACTOR_MAIN = new URL('./reactor_main.js', import.meta.url);
const SHUTDOWN_LIMIT_MS = 15_000;
/** A failed start tears down what it created for at most this long, then the process exits anyway. */
const ABORT_LIMIT_MS = 1_000;


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
    private readonly onStopped: (code: number) => void, private cpuLocks: HeldLock[] = [], private rpcLock: HeldLock | null = null) {
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
    this.stopping = this.stopAll().then(() => { this.releaseLocks(); this.onStopped(0); }, (e) => {
      log.error(`shutdown failed: ${(e as Error).message}`);
      this.releaseLocks();
      this.onStopped(1);
    });
  }

  /** A failed start: removes what was created (sockets, reactors) within ABORT_LIMIT_MS, then the locks. */
  async abort(): Promise<void> {
    this.state = 'stopping';
    const limit = new Promise<'late'>((r) => setTimeout(() => r('late'), ABORT_LIMIT_MS).unref());
    const done = this.stopAll().then(() => 'done' as const, (e) => { log.warn(`cleanup after the failed start: ${(e as Error).message}`); return 'done' as const; });
    if (await Promise.race([done, limit]) === 'late') log.warn(`cleanup after the failed start took over ${ABORT_LIMIT_MS} ms: exiting anyway`);
    this.releaseLocks();
  }

  private releaseLocks(): void {
    this.disableCpuLocks();
    this.rpcLock?.release();
    this.rpcLock = null;
  }

  /** framework_enable_cpumask_locks: locks the reactor CPUs again (throws CpuLockError naming a holder). */
  enableCpuLocks(): void {
    if (this.cpuLocks.length === 0) this.cpuLocks = claimCpuLocks(this.opts.cpus, this.opts.rpcSocket);
  }

  /** framework_disable_cpumask_locks: another instance may take these CPUs. */
  disableCpuLocks(): void {
    for (const l of this.cpuLocks.splice(0)) l.release();
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

/**
 * Starts the daemon; resolves with the App once it serves RPC. onExit gets the exit code.
 * Order: check the command line against the machine, lock the CPUs and the RPC socket (a second
 * instance stops here, having changed nothing), then start reactors and create objects. A failure
 * after that removes what was created before it is thrown.
 */
export async function runDaemon(opts: DaemonOptions, onExit: (code: number) => void): Promise<App> {
  applyLogOptions(opts);
  checkCpus(opts);
  checkPaths(opts);
  setControllerSocketAccess(resolveSocketAccess(opts));
  const cpuLocks = opts.disableCpumaskLocks ? [] : claimCpuLocks(opts.cpus, opts.rpcSocket);
  let rpcLock: HeldLock | null = null;
  let pool: ReactorPool;
  try {
    rpcLock = lockRpcSocket(opts.rpcSocket);
    pool = await ReactorPool.start(opts.cpus, { worker: REACTOR_MAIN, idleSleepMs: opts.idleSleepMs }).catch((e) => { throw reactorStartError(e, opts); });
  } catch (e) {
    for (const l of cpuLocks) l.release();
    rpcLock?.release();
    throw e;
  }
  const app = new App(opts, new MethodRegistry(), pool, onExit, cpuLocks, rpcLock);
  try {
    await startApp(app);
    return app;
  } catch (e) {
    await app.abort();
    throw e;
  }
}

function reactorStartError(e: unknown, opts: DaemonOptions): Error {
  const msg = (e as Error)?.message ?? String(e);
  if (!/sched_setaffinity/.test(msg)) return e as Error;
  let allowed = '';
  try { allowed = `; this process may run on CPUs ${cpuRanges(getAffinity(0))} (taskset or cgroup cpuset)`; } catch { /* unknown */ }
  return new StartupError(`-m ${opts.cpumask}: a reactor could not be pinned to its CPU (${msg})${allowed}: choose CPUs it may use`);
}

async function startApp(app: App): Promise<void> {
  const opts = app.opts;
  const rpcMethods = app.rpc;
  ctrlIo.attach(app.reactors, app.bdevs);
  registerFrameworkMethods(rpcMethods);
  registerLogMethods(rpcMethods);
  registerCpuLockMethods(rpcMethods, app);
  registerModuleMethods(rpcMethods);
  for (const s of registeredSubsystems()) {
    app.subsystems.push({ name: s.name, dependsOn: s.dependsOn, configCalls: () => s.configCalls(app) });
  }
  // the metrics port is claimed before any controller exists: a busy port changes nothing
  if (opts.metrics) {
    const addr = `${opts.metrics.host}:${opts.metrics.port}`;
    await startMetricsServer(addr, app.bdevs, app.reactors).catch((e) => { throw metricsError(addr, e); });
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
  await server.listen().catch((e) => { throw new StartupError(`-r ${opts.rpcSocket}: cannot serve RPC there: ${(e as Error).message}`); });
  app.closeRpc = () => server.close();
  if (!opts.config && !restored && opts.useDefault) printAttachHelp(opts.socketDir, opts.rpcSocket);
  log.notice(`vhostd ${VERSION} started: reactors on CPUs ${opts.cpus.join(',')}, vhost sockets in ${opts.socketDir}` +
    (opts.waitForRpc ? ', waiting for framework_start_init' : ''));
}

function metricsError(addr: string, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  const why = code === 'EADDRINUSE' ? 'the port is already in use (another vhostd or exporter?): choose another port or stop that process'
    : code === 'EADDRNOTAVAIL' ? 'that address is not on this machine: use 127.0.0.1, 0.0.0.0 or one of its addresses'
    : code === 'EACCES' ? 'permission denied (ports below 1024 need root): choose another port'
    : (e as Error)?.message ?? String(e);
  return new StartupError(`--metrics ${addr}: cannot listen: ${why}`);
}
