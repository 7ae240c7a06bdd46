// Start-up checks of the command line against the machine, before anything is created:
// each failure says what is wrong and what to do.
import { readFileSync, statSync } from 'node:fs';
import { cpus as osCpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { formatCpumask, parseCpumask } from '../cpumask.js';
import { UsageError, type DaemonOptions } from '../cli/vhostd-args.js';
import { lookupGroup, lookupUser } from '../../native/process.js';
import type { SocketAccess } from '../framework/socket_file.js';

/** CPUs the kernel has online (/sys/devices/system/cpu/online, in cpumask list syntax). */
export function onlineCpuList(): number[] {
  try { return parseCpumask(`[${readFileSync('/sys/devices/system/cpu/online', 'utf8').trim()}]`); } catch {
    return osCpus().map((_, i) => i);
  }
}

/** Compact list: 0-3,6 */
export function cpuRanges(cpus: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < cpus.length; i++) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j] + 1) j++;
    out.push(i === j ? `${cpus[i]}` : `${cpus[i]}-${cpus[j]}`);
    i = j;
  }
  return out.join(',');
}

export function checkCpus(opts: DaemonOptions): void {
  const online = onlineCpuList();
  const missing = opts.cpus.filter((c) => !online.includes(c));
  if (missing.length) {
    throw new UsageError(`-m ${opts.cpumask}: CPU ${cpuRanges(missing)} ${missing.length > 1 ? 'do' : 'does'} not exist on this machine; ` +
      `its CPUs are ${cpuRanges(online)} (-m ${formatCpumask(online)} or -m [${cpuRanges(online)}]): use CPUs from that set`);
  }
}

function checkDir(dir: string, flag: string, what: string): void {
  let st;
  try { st = statSync(dir); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${flag}: directory ${dir} does not exist: create it first, or give another ${what}`);
    throw new UsageError(`${flag}: cannot use directory ${dir}: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) throw new UsageError(`${flag}: ${dir} is not a directory: give another ${what}`);
}

export function checkPaths(opts: DaemonOptions): void {
  checkDir(opts.socketDir, `-S ${opts.socketDir}`, 'socket directory with -S');
  checkDir(dirname(resolve(opts.rpcSocket)), `-r ${opts.rpcSocket}`, 'RPC socket path with -r');
}

/** --socket-owner and --socket-mode, with user and group names resolved (NSS: /etc/passwd, LDAP, ...). */
export function resolveSocketAccess(opts: DaemonOptions): SocketAccess {
  const a: SocketAccess = { mode: opts.socketMode };
  const o = opts.socketOwner;
  if (!o) return a;
  a.owner = o.text;
  if (o.user !== undefined) {
    if (/^\d+$/.test(o.user)) a.uid = Number(o.user);
    else {
      const u = lookupUser(o.user);
      if (!u) throw new UsageError(`--socket-owner ${o.text}: there is no user '${o.user}' on this system (see getent passwd)`);
      a.uid = u.uid;
    }
  }
  if (o.group !== undefined) {
    if (/^\d+$/.test(o.group)) a.gid = Number(o.group);
    else {
      const g = lookupGroup(o.group);
      if (g === null) throw new UsageError(`--socket-owner ${o.text}: there is no group '${o.group}' on this system (see getent group)`);
      a.gid = g;
    }
  }
  return a;
}
