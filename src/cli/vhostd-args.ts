// Command-line options of the vhostd daemon (SPDK app flag names where SPDK has them).
import { parseCpumask } from '../cpumask.js';

export class UsageError extends Error {
  constructor(message: string) { super(message); this.name = 'UsageError'; }
}

export interface DaemonOptions {
  cpumask: string;
  cpus: number[];
  rpcSocket: string;
  socketDir: string;
  config?: string;
  /** Running configuration kept on disk: loaded at start if present, rewritten after every change. */
  configFile?: string;
  waitForRpc: boolean;
  logLevel?: string;
  logFlags: string[];
  metrics?: { host: string; port: number };
  /** Load the embedded default (a malloc bdev as vhost-blk) when no -c is given. */
  useDefault: boolean;
  /** Idle polling time before a reactor sleeps (ms); < 0: always poll. */
  idleSleepMs: number;
  /** SPDK's --disable-cpumask-locks: no per-CPU lock files. */
  disableCpumaskLocks: boolean;
  /** --socket-owner USER[:GROUP] or :GROUP for every controller socket (names resolved at start). */
  socketOwner?: { user?: string; group?: string; text: string };
  /** --socket-mode: permission bits of every controller socket. */
  socketMode?: number;
}

export const DEFAULT_RPC_SOCKET = '/var/tmp/vhostd.sock';

export const USAGE = `Usage: vhostd [options]

vhost-user storage target (virtio-blk, virtio-scsi) controlled over JSON-RPC.

Options:
  -m, --cpumask MASK        CPUs for reactors: hex mask (0x3) or list ([0,2-3]); default 0x1
  -r, --rpc-socket PATH     JSON-RPC Unix socket; default ${DEFAULT_RPC_SOCKET}
  -S, --socket-dir DIR      directory for vhost-user controller sockets; default: current directory
  -c, --config FILE         load a JSON config written by save_config at start-up
      --config-file FILE    keep the running configuration in FILE: loaded at start if it exists
                            (else -c is used), rewritten atomically after every change
      --wait-for-rpc        wait for framework_start_init before initializing
      --log-level LEVEL     ERROR, WARNING, NOTICE (default), INFO or DEBUG
  -L, --logflag FLAG        enable debug output of a component (repeatable)
      --metrics HOST:PORT   serve Prometheus metrics on HOST:PORT (off unless given)
      --default             without -c: create Malloc0 (256 MiB) exported as vhost-blk 'vhost.0'
                            and print the QEMU command line that attaches it
      --idle-sleep-ms MS    poll this long without work before a reactor sleeps (default 2;
                            -1 keeps reactors polling, SPDK-style)
      --socket-owner USER[:GROUP]
                            owner (and group; or :GROUP alone) of every controller socket, e.g.
                            libvirt-qemu:kvm, so a non-root QEMU can connect
      --socket-mode MODE    permission bits of every controller socket, octal, e.g. 0660
      --disable-cpumask-locks
                            do not lock the reactor CPUs (a second vhostd on the same CPUs is
                            refused by default: see /var/tmp/vhostd_cpu_lock_*); the same as
                            VHOSTD_DISABLE_CPUMASK_LOCKS=1 in the environment
  -h, --help                show this help
  -v, --version             show the version

Control it with: vhostctl -s SOCKET METHOD ...   (see vhostctl --help)
`;

export type ParsedArgs = { kind: 'run'; opts: DaemonOptions } | { kind: 'help' } | { kind: 'version' };

export function parseDaemonArgs(argv: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  const o: Omit<DaemonOptions, 'cpus'> = {
    cpumask: '0x1', rpcSocket: DEFAULT_RPC_SOCKET, socketDir: cwd, waitForRpc: false, logFlags: [], useDefault: false, idleSleepMs: 2,
    disableCpumaskLocks: env.VHOSTD_DISABLE_CPUMASK_LOCKS === '1',
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline: string | undefined;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    if (eq > 0) { inline = a.slice(eq + 1); a = a.slice(0, eq); }
    const value = () => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`option ${a} needs a value (see vhostd --help)`);
      return v;
    };
    switch (a) {
      case '-h': case '--help': return { kind: 'help' };
      case '-v': case '--version': return { kind: 'version' };
      case '-m': case '--cpumask': o.cpumask = value(); break;
      case '-r': case '--rpc-socket': o.rpcSocket = value(); break;
      case '-S': case '--socket-dir': o.socketDir = value(); break;
      case '-c': case '--config': case '--json': o.config = value(); break;
      case '--config-file': o.configFile = value(); break;
      case '--wait-for-rpc': o.waitForRpc = true; break;
      case '--log-level': o.logLevel = value(); break;
      case '-L': case '--logflag': o.logFlags.push(value()); break;
      case '--metrics': o.metrics = parseHostPort(value()); break;
      case '--default': o.useDefault = true; break;
      case '--disable-cpumask-locks': o.disableCpumaskLocks = true; break;
      case '--socket-owner': o.socketOwner = parseOwner(value()); break;
      case '--socket-mode': o.socketMode = parseMode(value()); break;
      case '--idle-sleep-ms': {
        const v = Number(value());
        if (!Number.isFinite(v)) throw new UsageError(`--idle-sleep-ms needs a number of milliseconds`);
        o.idleSleepMs = v;
        break;
      }
      default: throw new UsageError(`unknown option '${argv[i]}' (see vhostd --help)`);
    }
  }
  let cpus: number[];
  try { cpus = parseCpumask(o.cpumask); } catch (e) { throw new UsageError(`-m: ${(e as Error).message}`); }
  return { kind: 'run', opts: { ...o, cpus } };
}

function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]*):(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new UsageError(`--metrics '${s}' must be HOST:PORT, e.g. 127.0.0.1:9100`);
  return { host: m[1].replace(/^\[|\]$/g, '') || '0.0.0.0', port };
}

function parseOwner(s: string): { user?: string; group?: string; text: string } {
  const m = /^([^:\s]*)(?::([^:\s]*))?$/.exec(s);
  if (!m || (!m[1] && !m[2])) throw new UsageError(`--socket-owner '${s}' must be USER, USER:GROUP or :GROUP (names or numeric ids)`);
  return { user: m[1] || undefined, group: m[2] || undefined, text: s };
}

function parseMode(s: string): number {
  if (!/^0?[0-7]{3}$/.test(s)) throw new UsageError(`--socket-mode '${s}' must be octal permission bits, e.g. 0660 or 660`);
  return parseInt(s, 8);
}
