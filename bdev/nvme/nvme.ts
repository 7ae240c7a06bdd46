// NVMe bdev module (SPDK's bdev_nvme), control plane: attaching a controller over a
// transport creates one bdev per active namespace, named <name>n<nsid>; detaching removes
// them. The controllers attached in this process are kept here by name.
import { Bdev, ConfigCall } from '../bdev.js';
import type { BdevRegistry } from '../registry.js';
import { BdevError } from '../registry.js';
import { dmaRegistry } from '../../src/memory/dma_registry.js';
import { NsInfo, NvmeController } from './ctrlr.js';
import { openTransport } from './transport.js';
import type { NvmeChannelData } from './nvme_channel.js';

export interface AttachParams {
  name: string;
  trtype: string;
  traddr: string;
  /** Other params of the RPC (kept for save_config), already checked. */
  extra: Record<string, unknown>;
  /** I/O queues to ask for: at most one per reactor. */
  numIoQueues: number;
}

export class NvmeBdev extends Bdev {
  readonly module = 'nvme';

  constructor(readonly ctrlr: NvmeController, readonly ns: NsInfo, private readonly attach: AttachParams) {
    super({ name: `${attach.name}n${ns.nsid}`, blockSize: ns.blockSize, numBlocks: ns.numBlocks,
      ioTypes: ctrlr.ioTypes(), maxIoBlocks: 0 });
  }

  protected channelData(): Record<string, unknown> {
    const d: NvmeChannelData = { ctrlr: this.ctrlr.name, nsid: this.ns.nsid, qpairs: this.ctrlr.qpairs };
    return d as unknown as Record<string, unknown>;
  }

  /** The controller's first namespace recreates the controller (and so every namespace); the others write nothing. */
  configCall(): ConfigCall | null {
    const first = Math.min(...this.ctrlr.namespaces.map((n) => n.nsid));
    if (this.ns.nsid !== first) return null;
    return { method: 'bdev_nvme_attach_controller', params: attachConfigParams(this.attach) };
  }

  override driverSpecific(): Record<string, unknown> {
    const c = this.ctrlr, id = c.id;
    return {
      nvme: [{
        trid: { trtype: c.transport.trtype, traddr: c.transport.traddr },
        ctrlr_data: {
          cntlid: id.cntlid, vendor_id: `0x${id.vid.toString(16).padStart(4, '0')}`, model_number: id.mn, serial_number: id.sn,
          firmware_revision: id.fr, subnqn: id.subnqn, oacs: {}, multi_ctrlr: false, ana_reporting: false,
        },
        vs: { nvme_version: `${id.ver >>> 16}.${(id.ver >>> 8) & 0xff}${id.ver & 0xff ? `.${id.ver & 0xff}` : ''}` },
        ns_data: { id: this.ns.nsid, can_share: false },
        state: c.stateName,
      }],
    };
  }

  /** Namespaces go with their controller (bdev_nvme_detach_controller). */
  destroy(): void { /* the controller is closed by detach */ }
}

export function attachConfigParams(a: AttachParams): Record<string, unknown> {
  return { name: a.name, trtype: a.trtype, traddr: a.traddr, ...a.extra };
}

/** bdev_nvme_set_options: for controllers attached after it. SPDK's default timeout is 0 (none); vhostd resets after 30 s. */
export const nvmeOptions = { timeoutUs: 30_000_000, actionOnTimeout: 'reset' as 'none' | 'reset' };

export const controllers = new Map<string, { ctrlr: NvmeController; bdevs: NvmeBdev[]; params: AttachParams }>();

/** Attaches a controller and registers its namespaces' bdevs; returns their names. */
export async function attachController(bdevs: BdevRegistry, p: AttachParams): Promise<string[]> {
  if (controllers.has(p.name)) {
    throw new BdevError('exists', `NVMe controller '${p.name}' already exists (multipath is not supported): detach it first or pick another name`);
  }
  for (const b of bdevs.list()) {
    if (b.name.startsWith(`${p.name}n`)) {
      throw new BdevError('exists', `bdev '${b.name}' already exists and could clash with the namespaces of '${p.name}': pick another name`);
    }
  }
  const t = await openTransport(p.trtype, p.traddr, p.extra);
  const ctrlr = new NvmeController(p.name, t, p.numIoQueues, nvmeOptions.timeoutUs / 1000, nvmeOptions.actionOnTimeout === 'reset');
  const entry = { ctrlr, bdevs: [] as NvmeBdev[], params: p };
  controllers.set(p.name, entry);
  try {
    await ctrlr.init();
    await dmaRegistry.subscribe(ctrlr);
    for (const ns of ctrlr.namespaces) {
      const b = new NvmeBdev(ctrlr, ns, p);
      bdevs.register(b);
      entry.bdevs.push(b);
    }
  } catch (e) {
    for (const b of entry.bdevs) await bdevs.unregister(b.name).catch(() => undefined);
    controllers.delete(p.name);
    await ctrlr.close().catch(() => undefined);
    throw e;
  }
  return entry.bdevs.map((b) => b.name);
}

/** Removes a controller's bdevs (none may be claimed) and detaches it. */
export async function detachController(bdevs: BdevRegistry, name: string): Promise<void> {
  const e = controllers.get(name);
  if (!e) throw new BdevError('not_found', `NVMe controller '${name}' does not exist (see bdev_nvme_get_controllers)`);
  const claimed = e.bdevs.filter((b) => b.claimedBy);
  if (claimed.length) {
    throw new BdevError('claimed', `NVMe controller '${name}' cannot be detached: ` +
      `${claimed.map((b) => `${b.name} is in use by ${b.claimedBy}`).join(', ')}; remove that first`);
  }
  controllers.delete(name);
  for (const b of e.bdevs) await bdevs.unregister(b.name).catch(() => undefined);
  await e.ctrlr.close();
}

/**
 * bdev_nvme_get_controllers entries, shaped like SPDK's; vhostd adds the newest entries of
 * each enabled controller's Error Information log (Get Log Page 01h) as `error_log`.
 */
export async function controllerInfo(name?: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (const [n, e] of controllers) {
    if (name !== undefined && n !== name) continue;
    const c = e.ctrlr;
    let errorLog: unknown[] = [];
    if (c.stateName === 'enabled') { try { errorLog = await c.errorLog(); } catch { /* the controller is busy or gone */ } }
    out.push({
      name: n,
      ctrlrs: [{
        state: c.stateName,
        error_log: errorLog,
        trid: { trtype: c.transport.trtype, traddr: c.transport.traddr },
        cntlid: c.id?.cntlid ?? 0,
        host: { nqn: (e.params.extra.hostnqn as string | undefined) ?? '', addr: '', svcid: '' },
      }],
    });
  }
  return out;
}
