// NVMe-oF-style objects (SPDK's nvmf naming) for the emulated controllers: one
// VFIOUSER transport, subsystems with namespaces, and listeners; each listener is a
// vfio-user socket DIR/cntrl serving one emulated NVMe controller.
import { join } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { FdLoop } from '../../src/vhost/fd_loop.js';
import { VfioUserServer } from '../../src/vfio_user/server.js';
import { ReactorPool } from '../../src/reactor/pool.js';
import { BdevRegistry } from '../../bdev/registry.js';
import { Bdev, ConfigCall } from '../../bdev/bdev.js';
import { NvmeDevice, NvmeNamespace } from './nvme_device.js';
import { MAX_NS } from './nvme_defs.js';
import type { NsNotice } from './nvme_ctrlr.js';
import { logger } from '../../src/log.js';
import { SocketPathError } from '../../src/framework/socket_file.js';

// The NVMe target's part of the app context (absent in tools that run without reactors).
declare module '../../src/framework/app_context.js' {
  interface AppContext { readonly nvmf?: NvmfManager }
}

const log = logger('nvmf');

export class NvmfError extends Error {
  constructor(readonly code: 'exists' | 'not_found' | 'busy' | 'invalid' | 'unsupported', message: string) { super(message); }
}

export interface TransportOptions {
  trtype: 'VFIOUSER';
  disable_mappable_bar0: boolean;
  disable_shadow_doorbells: boolean;
  /** Kept for save_config when given (vhostd has no Compare yet). */
  disable_compare?: boolean;
}

interface Listener { traddr: string; trsvcid: string; path: string; server: VfioUserServer; device: NvmeDevice }

interface Subsystem {
  nqn: string;
  serial: string;
  model: string;
  allowAnyHost: boolean;
  maxNamespaces: number;
  namespaces: NvmeNamespace[];
  listeners: Listener[];
  /** Unsubscribes from each namespace's bdev resize notifications, by nsid. */
  unwatch: Map<number, () => void>;
}

/** What a controller did with a namespace resize (for the log). */
const NOTICE_TEXT: Record<NsNotice | 'not-enabled', string> = {
  'queued': 'Namespace Attribute Changed event queued for the host',
  'masked': 'added to the Changed Namespace List; no new event (the host has not read the list since the last one)',
  'disabled': 'added to the Changed Namespace List; no event (the host has not enabled Namespace Attribute notices)',
  'no-namespace': 'the controller does not serve this namespace',
  'not-enabled': 'controller not enabled (the host sees the new size when it identifies the namespace)',
};

const DEFAULT_SN = '00000000000000000000';
const DEFAULT_MN = 'vhostd NVMe controller';

export class NvmfManager {
  private transport: TransportOptions | null = null;
  private readonly subsystems = new Map<string, Subsystem>();
  readonly loop = new FdLoop();
  private nextReactor = 0;

  constructor(readonly pool: ReactorPool, readonly bdevs: BdevRegistry) {}

  createTransport(p: { trtype: string; disable_mappable_bar0?: boolean; disable_shadow_doorbells?: boolean; disable_compare?: boolean }): void {
    const t = p.trtype.toUpperCase();
    if (t !== 'VFIOUSER') {
      throw new NvmfError('unsupported', `transport type '${p.trtype}' is not supported by vhostd yet: only VFIOUSER (emulated NVMe controllers for QEMU's vfio-user-pci)`);
    }
    if (this.transport) throw new NvmfError('exists', 'Transport type VFIOUSER already exists');
    this.transport = { trtype: 'VFIOUSER', disable_mappable_bar0: p.disable_mappable_bar0 ?? false,
      disable_shadow_doorbells: p.disable_shadow_doorbells ?? false,
      ...(p.disable_compare !== undefined ? { disable_compare: p.disable_compare } : {}) };
    const o = this.transport;
    const mode = !o.disable_mappable_bar0 ? 'mappable doorbell page (no doorbell write traps)'
      : !o.disable_shadow_doorbells ? 'shadow doorbells (Doorbell Buffer Config; BAR0 not mappable)'
        : 'every doorbell write traps (BAR0 not mappable, no shadow doorbells)';
    log.notice(`transport VFIOUSER created: ${mode}`);
  }

  createSubsystem(p: { nqn: string; serial_number?: string; model_number?: string; allow_any_host?: boolean; max_namespaces?: number }): void {
    if (!/^nqn\.\d{4}-\d{2}\.[^:]+(:.+)?$/.test(p.nqn) || p.nqn.length > 223) {
      throw new NvmfError('invalid', `subsystem NQN '${p.nqn}' is invalid (expected nqn.yyyy-mm.reverse-domain:name, at most 223 bytes)`);
    }
    if (this.subsystems.has(p.nqn)) throw new NvmfError('exists', `Unable to create subsystem ${p.nqn}: it already exists`);
    const sn = p.serial_number ?? DEFAULT_SN, mn = p.model_number ?? DEFAULT_MN;
    if (!/^[\x20-\x7e]{1,20}$/.test(sn)) throw new NvmfError('invalid', `serial_number '${sn}' must be 1-20 printable ASCII characters`);
    if (!/^[\x20-\x7e]{1,40}$/.test(mn)) throw new NvmfError('invalid', `model_number '${mn}' must be 1-40 printable ASCII characters`);
    this.subsystems.set(p.nqn, { nqn: p.nqn, serial: sn, model: mn, allowAnyHost: p.allow_any_host ?? false,
      maxNamespaces: Math.min(p.max_namespaces || MAX_NS, MAX_NS), namespaces: [], listeners: [], unwatch: new Map() });
    log.notice(`subsystem ${p.nqn} created`);
  }

  private get(nqn: string): Subsystem {
    const s = this.subsystems.get(nqn);
    if (!s) throw new NvmfError('not_found', `Unable to find subsystem with NQN ${nqn}`);
    return s;
  }

  async addNamespace(nqn: string, ns: { bdev_name: string; nsid?: number; uuid?: string }): Promise<number> {
    const s = this.get(nqn);
    let nsid = ns.nsid ?? 0;
    if (nsid === 0) { nsid = 1; while (s.namespaces.some((n) => n.nsid === nsid)) nsid++; }
    if (nsid < 1 || nsid > s.maxNamespaces) throw new NvmfError('invalid', `nsid ${nsid} is out of range 1-${s.maxNamespaces}`);
    if (s.namespaces.some((n) => n.nsid === nsid)) throw new NvmfError('exists', `Requested NSID ${nsid} already in use`);
    if (s.listeners.some((l) => l.device.isEnabled)) {
      throw new NvmfError('busy', `subsystem ${nqn} has an enabled controller: adding namespaces to a running controller ` +
        '(with the namespace-changed async event) is not supported yet; add namespaces before the guest starts');
    }
    const owner = `nvmf subsystem ${nqn}`;
    const bdev = this.bdevs.claim(ns.bdev_name, owner);
    if (bdev.blockSize !== 512 && bdev.blockSize !== 4096) {
      this.bdevs.release(bdev.name, owner);
      throw new NvmfError('invalid', `bdev ${bdev.name} has block size ${bdev.blockSize}: NVMe namespaces need 512 or 4096`);
    }
    const entry = { nsid, bdev };
    s.namespaces.push(entry);
    s.unwatch.set(nsid, bdev.onResize((b, old) => this.nsResized(s, nsid, b, old)));
    for (const l of s.listeners) await l.device.addNamespace(entry);
    log.notice(`subsystem ${nqn}: namespace ${nsid} serves bdev ${bdev.name}`);
    return nsid;
  }

  /** A namespace's bdev changed size: every controller of the subsystem tells its host (as SPDK's nvmf_ns_resize). */
  private nsResized(s: Subsystem, nsid: number, b: Bdev, old: number): void {
    if (this.subsystems.get(s.nqn) !== s) return;
    const what = `subsystem ${s.nqn}: namespace ${nsid} (bdev ${b.name}) resized from ${old} to ${b.numBlocks} blocks`;
    if (s.listeners.length === 0) { log.notice(`${what} (no listener)`); return; }
    for (const l of s.listeners) {
      l.device.namespaceResized(nsid).then(
        (r) => log.notice(`${what}; controller ${l.path}: ${NOTICE_TEXT[r]}`),
        (e) => log.warn(`${what}; controller ${l.path} could not be told: ${(e as Error).message}`));
    }
  }

  addListener(nqn: string, a: { trtype: string; traddr: string; trsvcid?: string; adrfam?: string }): void {
    const s = this.get(nqn);
    if (a.trtype.toUpperCase() !== 'VFIOUSER') throw new NvmfError('unsupported', `listener trtype '${a.trtype}': only VFIOUSER is supported`);
    if (!this.transport) throw new NvmfError('invalid', 'create the VFIOUSER transport first (nvmf_create_transport -t VFIOUSER)');
    if (!existsSync(a.traddr) || !statSync(a.traddr).isDirectory()) {
      throw new NvmfError('invalid', `traddr ${a.traddr} must be an existing directory (the socket is created in it as 'cntrl')`);
    }
    for (const o of this.subsystems.values()) {
      if (o.listeners.some((l) => l.traddr === a.traddr)) throw new NvmfError('exists', `a listener on ${a.traddr} exists already (subsystem ${o.nqn})`);
    }
    const path = join(a.traddr, 'cntrl');
    const reactor = this.nextReactor++ % this.pool.count;
    const t = this.transport;
    const device = new NvmeDevice(`${nqn}@${a.traddr}`, () => ({
      serial: s.serial, model: s.model, firmware: '0.1', subnqn: s.nqn, cntlid: 1, dbbuf: false,
      vwc: s.namespaces.some((n) => n.bdev.ioTypes.has('flush')),
      compare: !t.disable_compare,   // Compare reads through the bdev into a bounce buffer: any bdev can
      dsm: s.namespaces.some((n) => n.bdev.ioTypes.has('unmap')),
      writeZeroes: s.namespaces.length > 0 && s.namespaces.every((n) => n.bdev.ioTypes.has('write_zeroes')),
    }), () => s.namespaces, reactor, this.pool, {
      mappableDoorbells: !t.disable_mappable_bar0, shadowDoorbells: !t.disable_shadow_doorbells,
    });
    const server = new VfioUserServer(path, device, this.loop);
    try { server.listen(); } catch (e) {
      void device.destroy();
      throw e instanceof SocketPathError ? new NvmfError(e.code, e.message) : e;
    }
    s.listeners.push({ traddr: a.traddr, trsvcid: a.trsvcid ?? '0', path, server, device });
    log.notice(`subsystem ${nqn}: vfio-user listener ${path} (reactor ${reactor})`);
  }

  async deleteSubsystem(nqn: string): Promise<void> {
    const s = this.get(nqn);
    this.subsystems.delete(nqn);
    for (const f of s.unwatch.values()) f();
    s.unwatch.clear();
    for (const l of s.listeners) { await l.server.close(); await l.device.destroy(); }
    for (const n of s.namespaces) this.bdevs.release(n.bdev.name, `nvmf subsystem ${nqn}`);
    log.notice(`subsystem ${nqn} deleted`);
  }

  async list(nqn?: string): Promise<Record<string, unknown>[]> {
    const ss = nqn === undefined ? [...this.subsystems.values()] : [this.get(nqn)];
    const out: Record<string, unknown>[] = [];
    for (const s of ss) {
      const ctrlrs = [];
      for (const l of s.listeners) ctrlrs.push({ socket: l.path, connected: l.server.connected, ...(await l.device.info()) });
      out.push({
        nqn: s.nqn, subtype: 'NVMe', listen_addresses: s.listeners.map((l) => ({ trtype: 'VFIOUSER', adrfam: 'IPv4', traddr: l.traddr, trsvcid: l.trsvcid })),
        allow_any_host: s.allowAnyHost, hosts: [], serial_number: s.serial, model_number: s.model, max_namespaces: s.maxNamespaces,
        namespaces: s.namespaces.map((n) => ({ nsid: n.nsid, bdev_name: n.bdev.name, name: n.bdev.name, uuid: n.bdev.uuid })),
        vfio_user_controllers: ctrlrs,
      });
    }
    return out;
  }

  configCalls(): ConfigCall[] {
    const out: ConfigCall[] = [];
    if (this.transport) out.push({ method: 'nvmf_create_transport', params: { ...this.transport } });
    for (const s of this.subsystems.values()) {
      out.push({ method: 'nvmf_create_subsystem', params: { nqn: s.nqn, allow_any_host: s.allowAnyHost, serial_number: s.serial,
        model_number: s.model, max_namespaces: s.maxNamespaces } });
      for (const n of s.namespaces) out.push({ method: 'nvmf_subsystem_add_ns', params: { nqn: s.nqn, namespace: { bdev_name: n.bdev.name, nsid: n.nsid } } });
      for (const l of s.listeners) {
        out.push({ method: 'nvmf_subsystem_add_listener', params: { nqn: s.nqn,
          listen_address: { trtype: 'VFIOUSER', adrfam: 'IPv4', traddr: l.traddr, trsvcid: l.trsvcid } } });
      }
    }
    return out;
  }

  async closeAll(): Promise<void> {
    // the fd loop first: its pending epoll wait must not keep a stopping process alive
    this.loop.close();
    for (const nqn of [...this.subsystems.keys()]) {
      await Promise.race([this.deleteSubsystem(nqn), new Promise((r) => setTimeout(r, 2000).unref())]).catch(() => {});
    }
  }
}
