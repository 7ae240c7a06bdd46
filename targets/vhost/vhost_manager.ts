// All vhost controllers of the process: creation, lookup, deletion, and the socket
// directory they live in (SPDK's -S).
import { join } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { FdLoop } from '../../src/vhost/fd_loop.js';
import { VhostUserDevice } from '../../src/vhost/device.js';
import { ReactorPool } from '../../src/reactor/pool.js';
import { BdevRegistry } from '../../bdev/registry.js';
import { BlkController } from '../blk/blk_controller.js';
import { ScsiController } from '../scsi/scsi_controller.js';
import { SCSI_MAX_TARGETS } from '../scsi/virtio_scsi.js';
import { parseCpumask, formatCpumask } from '../../src/cpumask.js';
import { logger } from '../../src/log.js';
import { ConfigCall } from '../../bdev/bdev.js';
import { COALESCING_CHECK_MS } from '../../src/virtio/split_queue.js';
import { applySocketAccess, prepareSocketPath, SocketPathError } from '../../src/framework/socket_file.js';

const log = logger('vhost');

// The vhost targets' part of the app context (absent in tools that run without reactors).
declare module '../../src/framework/app_context.js' {
  interface AppContext { readonly vhost?: VhostManager }
}

export class VhostError extends Error {
  constructor(readonly code: 'exists' | 'not_found' | 'busy' | 'invalid', message: string) { super(message); }
}

export interface Coalescing { delayBaseUs: number; iopsThreshold: number }

interface EntryBase {
  name: string;
  /** The vhost-user socket; null for a scsi controller created with delay until it is started. */
  device: VhostUserDevice | null;
  path: string;
  cpus: number[];
  coalescing: Coalescing;
}
interface BlkEntry extends EntryBase { kind: 'blk'; ctrl: BlkController; unwatch: () => void }
interface ScsiEntry extends EntryBase { kind: 'scsi'; ctrl: ScsiController }
type Entry = BlkEntry | ScsiEntry;

export class VhostManager {
  private readonly ctrls = new Map<string, Entry>();
  readonly loop = new FdLoop();

  constructor(readonly pool: ReactorPool, readonly bdevs: BdevRegistry, readonly socketDir: string) {
    pool.onEvent((reactor, e) => {
      if (e.event === 'queueBroken') {
        const d = e.data;
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
    claimPath(path);
    const bdev = this.bdevs.claim(p.dev_name, `vhost controller ${p.ctrlr}`);
    let device: VhostUserDevice;
    try {
      const ctrl = new BlkController(p.ctrlr, bdev, p.readonly ?? false, reactors, this.pool);
      device = new VhostUserDevice(ctrl, path, this.loop);
      listenWithAccess(device);
      const unwatch = bdev.onResize((b, old) => this.blkResized(p.ctrlr, b.numBlocks, old));
      this.ctrls.set(p.ctrlr, { name: p.ctrlr, kind: 'blk', device, path, ctrl, cpus, unwatch,
        coalescing: { delayBaseUs: 0, iopsThreshold: 0 } });
    } catch (e) {
      this.bdevs.release(p.dev_name, `vhost controller ${p.ctrlr}`);
      throw e;
    }
    log.notice(`vhost-user-blk controller ${p.ctrlr} on ${path} serves bdev ${bdev.name} (cpumask ${formatCpumask(cpus)})`);
  }

  /** The bdev of a blk controller changed size: the guest is told through the front end. */
  private blkResized(name: string, blocks: number, old: number): void {
    const e = this.ctrls.get(name);
    if (!e || e.kind !== 'blk') return;
    const told = e.device?.notifyConfigChange() ?? false;
    log.notice(`${name}: bdev ${e.ctrl.bdev.name} resized from ${old} to ${blocks} blocks; ` +
      (told ? 'the front end was told (the guest sees the new capacity)'
        : 'no front end with a backend channel is connected: the guest sees the new capacity when it next reads the config'));
  }

  /** vhost_create_scsi_controller: with delay the socket is only created by startScsi (SPDK semantics). */
  createScsi(p: { ctrlr: string; cpumask?: string; delay?: boolean }): void {
    checkName(p.ctrlr);
    if (this.ctrls.has(p.ctrlr)) throw new VhostError('exists', `controller '${p.ctrlr}' already exists`);
    const { cpus, reactors } = this.reactorsFor(p.cpumask);
    const path = join(this.socketDir, p.ctrlr);
    const ctrl = new ScsiController(p.ctrlr, reactors, this.pool);
    const e: ScsiEntry = { name: p.ctrlr, kind: 'scsi', device: null, path, ctrl, cpus, coalescing: { delayBaseUs: 0, iopsThreshold: 0 } };
    if (!p.delay) this.listenScsi(e);
    this.ctrls.set(p.ctrlr, e);
    log.notice(`vhost-user-scsi controller ${p.ctrlr} ${p.delay ? 'created (socket on vhost_start_scsi_controller)' : `on ${path}`} ` +
      `(cpumask ${formatCpumask(cpus)})`);
  }

  private listenScsi(e: ScsiEntry): void {
    claimPath(e.path);
    const device = new VhostUserDevice(e.ctrl, e.path, this.loop);
    listenWithAccess(device);
    e.device = device;
  }

  /** vhost_start_scsi_controller: creates the socket of a delayed controller (a started one is left alone). */
  startScsi(name: string): void {
    const e = this.scsi(name);
    if (e.device) return;
    this.listenScsi(e);
    log.notice(`vhost-user-scsi controller ${name} started on ${e.path}`);
  }

  private scsi(name: string): ScsiEntry {
    const e = this.get(name);
    if (e.kind !== 'scsi') throw new VhostError('invalid', `controller '${name}' is a vhost-${e.kind} controller, not vhost-scsi`);
    return e;
  }

  /** vhost_scsi_controller_add_target: returns the target number used. */
  async scsiAddTarget(name: string, num: number, bdevName: string): Promise<number> {
    const e = this.scsi(name);
    if (num >= SCSI_MAX_TARGETS || num < -1) {
      throw new VhostError('invalid', `scsi_target_num ${num} is out of range: use 0-${SCSI_MAX_TARGETS - 1}, or -1 for the first free one`);
    }
    if (num < 0) {
      num = e.ctrl.freeSlot();
      if (num < 0) throw new VhostError('busy', `controller '${name}' has no free SCSI target (all ${SCSI_MAX_TARGETS} are in use)`);
    } else if (e.ctrl.slots[num]) {
      throw new VhostError('exists', `SCSI target ${num} of controller '${name}' is already occupied (bdev ${e.ctrl.slots[num]!.bdev.name})`);
    }
    const owner = `vhost controller ${name}`;
    const bdev = this.bdevs.claim(bdevName, owner);
    if (this.scsiUses(e, bdev.name)) {
      throw new VhostError('exists', `bdev '${bdev.name}' is already a target of controller '${name}'`);
    }
    try {
      await e.ctrl.addTarget(num, bdev);
    } catch (err) {
      if (!this.scsiUses(e, bdev.name)) this.bdevs.release(bdev.name, owner);
      throw err;
    }
    log.notice(`${name}: SCSI target ${num} serves bdev ${bdev.name}`);
    return num;
  }

  private scsiUses(e: ScsiEntry, bdev: string): boolean { return e.ctrl.slots.some((s) => s !== null && s.bdev.name === bdev); }

  /** vhost_scsi_controller_remove_target: resolves once the target's commands finished and the guest was told. */
  async scsiRemoveTarget(name: string, num: number): Promise<void> {
    const e = this.scsi(name);
    if (num < 0 || num >= SCSI_MAX_TARGETS) {
      throw new VhostError('invalid', `scsi_target_num ${num} is out of range: use 0-${SCSI_MAX_TARGETS - 1}`);
    }
    const slot = e.ctrl.slots[num];
    if (!slot) throw new VhostError('not_found', `SCSI target ${num} of controller '${name}' is empty`);
    if (slot.state !== 'present') throw new VhostError('busy', `SCSI target ${num} of controller '${name}' is being removed`);
    const bdev = await e.ctrl.removeTarget(num);
    if (!this.scsiUses(e, bdev.name)) this.bdevs.release(bdev.name, `vhost controller ${name}`);
    log.notice(`${name}: SCSI target ${num} (bdev ${bdev.name}) removed`);
  }

  private releaseAll(e: Entry): void {
    const owner = `vhost controller ${e.name}`;
    if (e.kind === 'blk') { e.unwatch(); this.bdevs.release(e.ctrl.bdev.name, owner); return; }
    for (let i = 0; i < e.ctrl.slots.length; i++) {
      const s = e.ctrl.slots[i];
      if (s) { s.unwatch(); this.bdevs.release(s.bdev.name, owner); e.ctrl.slots[i] = null; }
    }
  }

  get(name: string): Entry {
    const e = this.ctrls.get(name);
    if (!e) throw new VhostError('not_found', `controller '${name}' does not exist (see vhost_get_controllers)`);
    return e;
  }

  async remove(name: string): Promise<void> {
    const e = this.get(name);
    if (e.device?.connected) {
      throw new VhostError('busy', `controller '${name}' has a connected front end: stop or detach the VM first`);
    }
    this.ctrls.delete(name);
    await e.device?.close();
    // SPDK removes a scsi controller's remaining targets with it
    this.releaseAll(e);
    log.notice(`controller ${name} removed`);
  }

  /** vhost_controller_set_coalescing (SPDK semantics; delay_base_us 0 turns it off). */
  async setCoalescing(name: string, c: Coalescing): Promise<void> {
    const e = this.get(name);
    if (c.delayBaseUs !== 0 && Math.floor((c.iopsThreshold * COALESCING_CHECK_MS) / 1000) < 1) {
      throw new VhostError('invalid', `iops_threshold ${c.iopsThreshold} is too low: coalescing needs at least ` +
        `${1000 / COALESCING_CHECK_MS} IOPS (or delay_base_us 0 to turn it off)`);
    }
    e.coalescing = c;
    await e.ctrl.setCoalescing(c);
  }

  list(name?: string): Record<string, unknown>[] {
    const es = name === undefined ? [...this.ctrls.values()] : [this.get(name)];
    return es.map((e) => {
      const d = e.device;
      return {
        ctrlr: e.name,
        cpumask: formatCpumask(e.cpus),
        delay_base_us: e.coalescing.delayBaseUs,
        iops_threshold: e.coalescing.iopsThreshold,
        socket: e.path,
        // vhostd's own: requests a restarted back end found in flight in the front end's inflight region
        recovered_requests: e.ctrl.recovered,
        sessions: d && d.connected ? [{ vid: 0, id: 0, name: `${e.name}s0`, started: d.vrings.some((v) => v.started),
          max_queues: d.vrings.filter((v) => v.started).length, inflight_task_cnt: 0 }] : [],
        backend_specific: e.kind === 'blk'
          ? { block: { readonly: e.ctrl.readOnly, bdev: e.ctrl.bdev.name, transport: 'vhost_user_blk' } }
          : { scsi: scsiTargets(e.ctrl) },
      };
    });
  }

  configCalls(kind: 'blk' | 'scsi'): ConfigCall[] {
    const out: ConfigCall[] = [];
    for (const e of this.ctrls.values()) {
      if (e.kind !== kind) continue;
      if (e.kind === 'blk') {
        out.push({ method: 'vhost_create_blk_controller',
          params: { ctrlr: e.name, dev_name: e.ctrl.bdev.name, cpumask: formatCpumask(e.cpus), readonly: e.ctrl.readOnly } });
      } else {
        // as SPDK's vhost_scsi_write_config_json: create delayed, add the targets, then start
        out.push({ method: 'vhost_create_scsi_controller', params: { ctrlr: e.name, cpumask: formatCpumask(e.cpus), delay: true } });
        e.ctrl.slots.forEach((s, i) => {
          if (s && s.state === 'present') {
            out.push({ method: 'vhost_scsi_controller_add_target', params: { ctrlr: e.name, scsi_target_num: i, bdev_name: s.bdev.name } });
          }
        });
        if (e.device) out.push({ method: 'vhost_start_scsi_controller', params: { ctrlr: e.name } });
      }
      if (e.coalescing.delayBaseUs || e.coalescing.iopsThreshold) {
        out.push({ method: 'vhost_controller_set_coalescing',
          params: { ctrlr: e.name, delay_base_us: e.coalescing.delayBaseUs, iops_threshold: e.coalescing.iopsThreshold } });
      }
    }
    return out;
  }

  async closeAll(): Promise<void> {
    for (const e of this.ctrls.values()) {
      await e.device?.close();
      this.releaseAll(e);
    }
    this.ctrls.clear();
    this.loop.close();
  }
}

/** backend_specific.scsi of vhost_get_controllers, in SPDK's vhost_scsi_dump_info_json shape. */
function scsiTargets(c: ScsiController): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  c.slots.forEach((s, i) => {
    if (!s || s.state !== 'present') return;
    out.push({ scsi_dev_num: i, id: i, target_name: `Target ${i}`, luns: [{ id: 0, bdev_name: s.bdev.name }] });
  });
  return out;
}

function parseCpumaskChecked(mask: string): number[] {
  try { return parseCpumask(mask); } catch (e) { throw new VhostError('invalid', (e as Error).message); }
}

/** The socket path must be free or a stale socket: a file or a live socket is refused, not deleted. */
function claimPath(path: string): void {
  try { prepareSocketPath(path); } catch (e) {
    if (e instanceof SocketPathError) throw new VhostError(e.code, e.message);
    throw e;
  }
}

/** Listens and applies --socket-owner/--socket-mode; a socket that cannot get them is closed again. */
function listenWithAccess(device: VhostUserDevice): void {
  device.listen();
  try { applySocketAccess(device.socketPath); } catch (e) {
    void device.close();   // closes and unlinks the socket synchronously
    throw e instanceof SocketPathError ? new VhostError(e.code, e.message) : e;
  }
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
