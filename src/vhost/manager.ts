// All vhost controllers of the process: creation, lookup, deletion, and the socket
// directory they live in (SPDK's -S).
import { join } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { FdLoop } from './fd_loop.js';
import { VhostUserDevice } from './device.js';
import { ReactorPool } from '../reactor/pool.js';
import { BdevRegistry } from '../../bdev/registry.js';
import { BlkController } from '../../targets/blk/blk_controller.js';
import { parseCpumask, formatCpumask } from '../cpumask.js';
import { logger } from '../log.js';
import { ConfigCall } from '../../bdev/bdev.js';

const log = logger('vhost');

export class VhostError extends Error {
  constructor(readonly code: 'exists' | 'not_found' | 'busy' | 'invalid', message: string) { super(message); }
}

export interface Coalescing { delayBaseUs: number; iopsThreshold: number }

interface Entry {
  name: string;
  kind: 'blk';
  device: VhostUserDevice;
  ctrl: BlkController;
  cpus: number[];
  coalescing: Coalescing;
}

export class VhostManager {
  private readonly ctrls = new Map<string, Entry>();
  readonly loop = new FdLoop();

  constructor(readonly pool: ReactorPool, readonly bdevs: BdevRegistry, readonly socketDir: string) {
    pool.onEvent((reactor, e) => {
      if (e.event === 'queueBroken') {
        const d = e.data as { ctrlr: string; qid: number; why: string };
        log.error(`${d.ctrlr}: queue ${d.qid} stopped: the guest broke the virtqueue protocol (${d.why}); ` +
          'the device needs a reset by the guest driver');
      }
    });
  }

  private reactorsFor(cpumask: string | undefined): { cpus: number[]; reactors: number[] } {
    const cpus = cpumask === undefined ? this.pool.cpus : parseCpumaskChecked(cpumask);
    const reactors = cpus.map((c) => this.pool.indexOfCpu(c));
    const bad = cpus.filter((_, i) => reactors[i] < 0);
    if (bad.length) {
      throw new VhostError('invalid', `cpumask ${cpumask} includes cpu ${bad.join(',')} where no reactor runs ` +
        `(reactors: ${formatCpumask(this.pool.cpus)}); use a subset of the -m mask`);
    }
    return { cpus, reactors };
  }

  createBlk(p: { ctrlr: string; dev_name: string; cpumask?: string; readonly?: boolean; packed_ring?: boolean }): void {
    checkName(p.ctrlr);
    if (this.ctrls.has(p.ctrlr)) throw new VhostError('exists', `controller '${p.ctrlr}' already exists`);
    if (p.packed_ring) {
      throw new VhostError('invalid', 'packed_ring is not supported yet by vhostd: omit it or pass false (split rings are used)');
    }
    const { cpus, reactors } = this.reactorsFor(p.cpumask);
    const path = join(this.socketDir, p.ctrlr);
    const bdev = this.bdevs.claim(p.dev_name, `vhost controller ${p.ctrlr}`);
    let device: VhostUserDevice;
    try {
      const ctrl = new BlkController(p.ctrlr, bdev, p.readonly ?? false, reactors, this.pool);
      device = new VhostUserDevice(ctrl, path, this.loop);
      device.listen();
      this.ctrls.set(p.ctrlr, { name: p.ctrlr, kind: 'blk', device, ctrl, cpus, coalescing: { delayBaseUs: 0, iopsThreshold: 0 } });
    } catch (e) {
      this.bdevs.release(p.dev_name, `vhost controller ${p.ctrlr}`);
      throw e;
    }
    log.notice(`vhost-user-blk controller ${p.ctrlr} on ${path} serves bdev ${bdev.name} (cpumask ${formatCpumask(cpus)})`);
  }

  get(name: string): Entry {
    const e = this.ctrls.get(name);
    if (!e) throw new VhostError('not_found', `controller '${name}' does not exist (see vhost_get_controllers)`);
    return e;
  }

  async remove(name: string): Promise<void> {
    const e = this.get(name);
    if (e.device.connected) {
      throw new VhostError('busy', `controller '${name}' has a connected front end: stop or detach the VM first`);
    }
    this.ctrls.delete(name);
    await e.device.close();
    this.bdevs.release(e.ctrl.bdev.name, `vhost controller ${name}`);
    log.notice(`controller ${name} removed`);
  }

  setCoalescing(name: string, c: Coalescing): void {
    const e = this.get(name);
    if (c.delayBaseUs !== 0) {
      throw new VhostError('invalid', 'interrupt coalescing is not implemented yet in vhostd: only delay_base_us=0 ' +
        '(notify the guest once per completed batch, the default) is accepted');
    }
    e.coalescing = c;
  }

  list(name?: string): Record<string, unknown>[] {
    const es = name === undefined ? [...this.ctrls.values()] : [this.get(name)];
    return es.map((e) => ({
      ctrlr: e.name,
      cpumask: formatCpumask(e.cpus),
      delay_base_us: e.coalescing.delayBaseUs,
      iops_threshold: e.coalescing.iopsThreshold,
      socket: e.device.socketPath,
      sessions: e.device.connected ? [{ vid: 0, id: 0, name: `${e.name}s0`, started: e.device.vrings.some((v) => v.started),
        max_queues: e.device.vrings.filter((v) => v.started).length, inflight_task_cnt: 0 }] : [],
      backend_specific: { block: { readonly: e.ctrl.readOnly, bdev: e.ctrl.bdev.name, transport: 'vhost_user_blk' } },
    }));
  }

  configCalls(kind: 'blk'): ConfigCall[] {
    const out: ConfigCall[] = [];
    for (const e of this.ctrls.values()) {
      if (e.kind !== kind) continue;
      out.push({ method: 'vhost_create_blk_controller',
        params: { ctrlr: e.name, dev_name: e.ctrl.bdev.name, cpumask: formatCpumask(e.cpus), readonly: e.ctrl.readOnly } });
      if (e.coalescing.delayBaseUs || e.coalescing.iopsThreshold) {
        out.push({ method: 'vhost_controller_set_coalescing',
          params: { ctrlr: e.name, delay_base_us: e.coalescing.delayBaseUs, iops_threshold: e.coalescing.iopsThreshold } });
      }
    }
    return out;
  }

  async closeAll(): Promise<void> {
    for (const e of this.ctrls.values()) {
      await e.device.close();
      this.bdevs.release(e.ctrl.bdev.name, `vhost controller ${e.name}`);
    }
    this.ctrls.clear();
    this.loop.close();
  }
}

function parseCpumaskChecked(mask: string): number[] {
  try { return parseCpumask(mask); } catch (e) { throw new VhostError('invalid', (e as Error).message); }
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(name) || name === '.' || name === '..') {
    throw new VhostError('invalid', `controller name '${name}' is invalid: use 1-64 letters, digits, '.', '_', ':' or '-'`);
  }
}

export function socketDirOk(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(`socket directory ${dir} does not exist: create it or pass another with -S`);
  }
}
