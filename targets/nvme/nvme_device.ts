// The control-plane side of an emulated NVMe controller served over vfio-user: PCI
// config space, BAR0 registers (CAP, VS, CC, CSTS, AQA, ASQ, ACQ) with the enable,
// disable and shutdown sequences, the doorbell page (a memfd the client may map, or
// trapped REGION_WRITEs copied into it), MSI-X eventfds and the DMA map. The queues
// themselves run on a reactor (nvme_ctrlr.ts).
import { memfdCreate, mmap, munmap, closeQuiet, eventfd, eventfdSignal, view } from '../../native/libc.js';
import { ReactorPool } from '../../src/reactor/pool.js';
import { DmaTable, DmaWindow } from '../../src/vfio_user/dma.js';
import { RegionInfo, VfioUserDevice } from '../../src/vfio_user/server.js';
import * as P from '../../src/vfio_user/protocol.js';
import { requireEventfd } from '../../src/vhost/fd_kind.js';
import { Bdev } from '../../bdev/bdev.js';
import * as D from './nvme_defs.js';
import { PciConfig, CONFIG_SIZE, BAR4_SIZE } from './pci_config.js';
import { CtrlrIdentity } from './identify.js';
import {
  C_COUNT, C_TRAPPED_DB, C_IO_CMDS, C_ADMIN_CMDS, C_IRQS, C_SHADOW, C_ERRORS, C_BAD_DB, C_SGL_CMDS, C_SGL_LIST_CMDS,
  C_COMPARES, C_COMPARE_FAILS, C_ABORT_CMDS, C_ABORTED, C_READS, C_WRITES, C_READ_BYTES, C_WRITE_BYTES, ERROR_LOG_BYTES,
  NvmeCtrlrSpec, NvmeNsSpec, NsNotice,
} from './nvme_ctrlr.js';
import { logger } from '../../src/log.js';

const log = logger('nvme');

export interface NvmeDeviceOptions {
  /** Offer the doorbell page as a sparse mmap area of BAR0 (then no doorbell write traps). */
  mappableDoorbells: boolean;
  /** Offer Doorbell Buffer Config (only without mappable doorbells, as SPDK does). */
  shadowDoorbells: boolean;
}

export interface NvmeNamespace { nsid: number; bdev: Bdev }

const TWO32 = 4294967296;

export class NvmeDevice implements VfioUserDevice {
  readonly numRegions = P.PCI_NUM_REGIONS;
  readonly numIrqs = P.PCI_NUM_IRQS;
  readonly pci = new PciConfig();
  private readonly regs = new Uint8Array(0x1000);
  private readonly rdv = new DataView(this.regs.buffer);
  private readonly dbFd: number;
  private readonly dbMap: number;
  private readonly db: Uint32Array;
  private readonly wakeFd: number;
  readonly counters = new SharedArrayBuffer(C_COUNT * 8);
  /** The Error Information log ring: the device keeps it across controller resets, as the spec asks. */
  readonly errorLog = new SharedArrayBuffer(ERROR_LOG_BYTES);
  private readonly cnt = new Float64Array(this.counters);
  private msix: number[] = new Array(D.NUM_MSIX).fill(-1);
  private enabled = false;
  private dma: DmaTable | null = null;
  lastFatal: string | null = null;

  constructor(readonly name: string, readonly identity: () => CtrlrIdentity, readonly namespaces: () => NvmeNamespace[],
    readonly reactor: number, private readonly pool: ReactorPool, readonly opts: NvmeDeviceOptions) {
    this.dbFd = memfdCreate(`vhostd-nvme-${name}-bar0`, 0x2000);
    this.dbMap = mmap(0x2000, this.dbFd);
    this.db = new Uint32Array(view(this.dbMap + D.DOORBELL_BASE, D.DOORBELL_AREA));
    this.wakeFd = eventfd();
    this.resetRegs();
    pool.onEvent((_r, e) => {
      if (e.event === 'nvmeFatal' && (e.data as { ctrlr: string }).ctrlr === name) {
        this.lastFatal = (e.data as { why: string }).why;
        log.error(`${name}: controller fatal status: ${this.lastFatal}`);
        this.setCsts(this.csts | D.CSTS_CFS);
      }
    });
  }

  get shadowOffered(): boolean { return this.opts.shadowDoorbells && !this.opts.mappableDoorbells; }

  private get cap(): bigint {
    return BigInt(D.MQES) | (1n << 16n) /* CQR */ | (15n << 24n) /* TO: 7.5 s */ | (1n << 37n) /* CSS: NVM */;
  }

  private resetRegs(): void {
    this.regs.fill(0);
    this.rdv.setBigUint64(D.REG.CAP, this.cap, true);
    this.rdv.setUint32(D.REG.VS, D.NVME_VERSION, true);
    this.db.fill(0);
  }

  private get cc(): number { return this.rdv.getUint32(D.REG.CC, true); }
  private get csts(): number { return this.rdv.getUint32(D.REG.CSTS, true); }
  private setCsts(v: number): void { this.rdv.setUint32(D.REG.CSTS, v, true); }

  // ------------------------------------------------------------------ vfio-user device

  regionInfo(index: number): RegionInfo {
    const rw = P.REGION_FLAG_READ | P.REGION_FLAG_WRITE;
    switch (index) {
      case P.PCI_CONFIG: return { flags: rw, size: CONFIG_SIZE, offset: 0 };
      case P.PCI_BAR0:
        if (this.opts.mappableDoorbells) {
          return { flags: rw | P.REGION_FLAG_MMAP, size: D.BAR0_SIZE, offset: 0, fd: this.dbFd,
            sparse: [{ offset: D.DOORBELL_BASE, size: D.DOORBELL_AREA }] };
        }
        return { flags: rw, size: D.BAR0_SIZE, offset: 0 };
      case 4: return { flags: rw, size: BAR4_SIZE, offset: 0 };
      default: return { flags: 0, size: 0, offset: 0 };
    }
  }

  irqInfo(index: number): { flags: number; count: number } {
    if (index === P.IRQ_MSIX) return { flags: P.IRQ_INFO_EVENTFD, count: D.NUM_MSIX };
    return { flags: P.IRQ_INFO_EVENTFD, count: 0 };
  }

  async setIrqs(index: number, flags: number, start: number, count: number, fds: number[], _data: Uint8Array): Promise<void> {
    if (index !== P.IRQ_MSIX) {
      fds.forEach(closeQuiet);
      if (count === 0 && (flags & P.IRQ_SET_DATA_NONE)) return; // disabling what we do not have
      throw new P.VfioUserError(P.E.EINVAL, `irq index ${index} has no interrupts (MSI-X only)`);
    }
    if (start + count > D.NUM_MSIX) { fds.forEach(closeQuiet); throw new P.VfioUserError(P.E.EINVAL, `MSI-X vectors ${start}+${count} beyond ${D.NUM_MSIX}`); }
    if (flags & P.IRQ_SET_DATA_EVENTFD) {
      if (!(flags & P.IRQ_SET_ACTION_TRIGGER)) { fds.forEach(closeQuiet); return; } // mask/unmask eventfds: not used
      if (fds.length !== 0 && fds.length !== count) {
        fds.forEach(closeQuiet);
        throw new P.VfioUserError(P.E.EINVAL, `SET_IRQS for ${count} vectors came with ${fds.length} fds`);
      }
      // only eventfds, made non-blocking: signalling a vector must never block a reactor
      try { fds.forEach((fd, i) => requireEventfd(fd, `the fd of MSI-X vector ${start + i}`)); } catch (e) {
        fds.forEach(closeQuiet);
        throw new P.VfioUserError(P.E.EINVAL, `${(e as Error).message}; no vector was changed`);
      }
      for (let i = 0; i < count; i++) {
        const old = this.msix[start + i];
        this.msix[start + i] = fds.length ? fds[i] : -1;
        if (old >= 0) closeQuiet(old);
      }
    } else if ((flags & P.IRQ_SET_DATA_NONE) && (flags & P.IRQ_SET_ACTION_TRIGGER) && count === 0) {
      for (let i = 0; i < this.msix.length; i++) { closeQuiet(this.msix[i]); this.msix[i] = -1; }
    } else if ((flags & P.IRQ_SET_ACTION_TRIGGER) && (flags & (P.IRQ_SET_DATA_NONE | P.IRQ_SET_DATA_BOOL))) {
      // loopback trigger by the client
      for (let i = 0; i < count; i++) if (this.msix[start + i] >= 0 && (!(flags & P.IRQ_SET_DATA_BOOL) || _data[i])) eventfdSignal(this.msix[start + i]);
    }
    if (this.enabled) await this.pool.call(this.reactor, 'nvme.msix', { ctrlr: this.name, fds: this.msix });
  }

  regionRead(index: number, offset: number, count: number): Uint8Array {
    if (index === P.PCI_CONFIG) return this.pci.read(offset, count);
    if (index === P.PCI_BAR0) {
      const out = new Uint8Array(count);
      if (offset + count <= 0x1000) out.set(this.regs.subarray(offset, offset + count));
      else if (offset >= D.DOORBELL_BASE && offset + count <= D.DOORBELL_BASE + D.DOORBELL_AREA) {
        out.set(new Uint8Array(this.db.buffer, this.db.byteOffset + offset - D.DOORBELL_BASE, count));
      }
      return out;
    }
    if (index === 4 && offset + count <= BAR4_SIZE) return new Uint8Array(count);
    if (index === 4 || index === P.PCI_BAR0) throw new P.VfioUserError(P.E.EINVAL, `read beyond region ${index}`);
    throw new P.VfioUserError(P.E.EINVAL, `region ${index} cannot be read`);
  }

  async regionWrite(index: number, offset: number, data: Uint8Array): Promise<void> {
    if (index === P.PCI_CONFIG) { this.pci.write(offset, data); return; }
    if (index === 4) return; // MSI-X table: the client emulates it
    if (index !== P.PCI_BAR0) throw new P.VfioUserError(P.E.EINVAL, `region ${index} cannot be written`);
    if (offset >= D.DOORBELL_BASE && offset < D.DOORBELL_BASE + D.DOORBELL_AREA) {
      // a trapped doorbell write: into the doorbell page the reactor polls, then wake it
      if (data.length !== 4 || offset % 4 !== 0) return; // doorbells are dwords: other sizes are ignored
      this.cnt[C_TRAPPED_DB]++;
      this.db[(offset - D.DOORBELL_BASE) >> 2] = data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24);
      eventfdSignal(this.wakeFd);
      return;
    }
    if (offset + data.length > 0x1000) return; // beyond the registers: ignored
    await this.writeRegs(offset, data);
  }

  private async writeRegs(offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    const touches = (reg: number, len: number) => offset < reg + len && end > reg;
    const ro = (reg: number, len: number) => touches(reg, len);
    // read-only registers keep their values
    if (ro(D.REG.CAP, 8) || ro(D.REG.VS, 4) || ro(D.REG.CSTS, 4)) return;
    if (touches(D.REG.INTMS, 8)) return; // MSI-X in use: INTMS/INTMC have no effect
    if (touches(D.REG.NSSR, 4)) return;  // NSSR not supported (CAP.NSSRS = 0)
    const enabled = (this.cc & D.CC_EN) !== 0;
    if (enabled && (touches(D.REG.AQA, 4) || touches(D.REG.ASQ, 8) || touches(D.REG.ACQ, 8))) return;
    const oldCc = this.cc;
    this.regs.set(data, offset);
    if (!touches(D.REG.CC, 4)) return;
    const cc = this.cc;
    if ((cc & D.CC_EN) && !(oldCc & D.CC_EN)) await this.enable(cc);
    else if (!(cc & D.CC_EN) && (oldCc & D.CC_EN)) await this.disable();
    const shn = (cc >> D.CC_SHN_SHIFT) & D.CC_SHN_MASK, oldShn = (oldCc >> D.CC_SHN_SHIFT) & D.CC_SHN_MASK;
    if (shn && !oldShn) {
      await this.stopQueues();
      this.setCsts((this.csts & ~(3 << D.CSTS_SHST_SHIFT)) | (D.CSTS_SHST_COMPLETE << D.CSTS_SHST_SHIFT));
      log.info(`${this.name}: shutdown complete`);
    } else if (!shn && oldShn) {
      this.setCsts(this.csts & ~(3 << D.CSTS_SHST_SHIFT));
    }
  }

  private async enable(cc: number): Promise<void> {
    const fail = (why: string) => {
      log.error(`${this.name}: enable refused: ${why}`);
      this.setCsts(this.csts | D.CSTS_CFS);
    };
    const iosqes = (cc >> 16) & 0xf, iocqes = (cc >> 20) & 0xf, mps = (cc >> 7) & 0xf, css = (cc >> 4) & 7, ams = (cc >> 11) & 7;
    if (mps !== 0) return fail(`CC.MPS ${mps}: only 4 KiB pages are supported`);
    if (css !== 0 || ams !== 0) return fail(`CC.CSS ${css} / CC.AMS ${ams} not supported`);
    if ((iosqes && iosqes !== 6) || (iocqes && iocqes !== 4)) return fail(`CC.IOSQES ${iosqes} / IOCQES ${iocqes}`);
    const aqa = this.rdv.getUint32(D.REG.AQA, true);
    const asqs = (aqa & 0xfff) + 1, acqs = ((aqa >>> 16) & 0xfff) + 1;
    const asq = Number(this.rdv.getBigUint64(D.REG.ASQ, true) & ~0xfffn), acq = Number(this.rdv.getBigUint64(D.REG.ACQ, true) & ~0xfffn);
    if (asqs < 2 || acqs < 2) return fail(`admin queue sizes ${asqs}/${acqs}`);
    if (!this.dma) return fail('no guest memory is mapped (DMA_MAP) yet');
    const id = this.identity();
    const spec: NvmeCtrlrSpec = {
      ctrlr: this.name, mem: this.dma.specs(), dbHva: this.dbMap + D.DOORBELL_BASE, asq, acq, asqs, acqs,
      msix: this.msix, wakeFd: this.wakeFd, counters: this.counters, errorLog: this.errorLog,
      shadowDoorbells: this.shadowOffered, mappableDoorbells: this.opts.mappableDoorbells,
      identity: { ...id, dbbuf: this.shadowOffered },
      namespaces: this.namespaces().map((n) => nsSpec(n)),
    };
    this.db.fill(0);
    this.cnt[C_SHADOW] = 0;
    try {
      await this.pool.call(this.reactor, 'nvme.enable', spec);
    } catch (e) {
      return fail((e as Error).message);
    }
    this.enabled = true;
    this.setCsts((this.csts & ~D.CSTS_CFS) | D.CSTS_RDY);
    log.info(`${this.name}: enabled (admin SQ ${asqs} @0x${asq.toString(16)}, CQ ${acqs} @0x${acq.toString(16)}) on reactor ${this.reactor}`);
  }

  private async stopQueues(): Promise<void> {
    if (!this.enabled) return;
    this.enabled = false;
    await this.pool.call(this.reactor, 'nvme.disable', { ctrlr: this.name });
  }

  private async disable(): Promise<void> {
    await this.stopQueues();
    this.db.fill(0);
    this.setCsts(0);
    log.info(`${this.name}: disabled`);
  }

  async memoryChanged(dma: DmaTable, removing?: DmaWindow): Promise<void> {
    this.dma = dma;
    if (!this.enabled) return;
    await this.pool.call(this.reactor, 'nvme.memory', { ctrlr: this.name, mem: dma.specs(removing), removing: removing !== undefined });
  }

  async reset(): Promise<void> {
    await this.stopQueues();
    const keep = this.rdv.getUint32(D.REG.AQA, true);
    void keep;
    this.resetRegs();
    log.info(`${this.name}: device reset`);
  }

  async disconnected(): Promise<void> {
    await this.stopQueues();
    this.resetRegs();
    for (let i = 0; i < this.msix.length; i++) { closeQuiet(this.msix[i]); this.msix[i] = -1; }
    this.dma = null;
  }

  async addNamespace(n: NvmeNamespace): Promise<void> {
    if (this.enabled) await this.pool.call(this.reactor, 'nvme.addNs', { ctrlr: this.name, ns: nsSpec(n) });
  }

  /**
   * Namespace `nsid`'s bdev changed size. An enabled controller serves the new size at once
   * (its channel shares the size cell) and tells the host with a Namespace Attribute Changed
   * notice; a disabled one has nothing to tell (the host identifies the namespace when it
   * enables the controller).
   */
  async namespaceResized(nsid: number): Promise<NsNotice | 'not-enabled'> {
    if (!this.enabled) return 'not-enabled';
    return this.pool.call<NsNotice | 'not-enabled'>(this.reactor, 'nvme.nsResized', { ctrlr: this.name, nsid });
  }

  get isEnabled(): boolean { return this.enabled; }

  async info(): Promise<Record<string, unknown>> {
    const c = this.cnt;
    const q = this.enabled ? await this.pool.call<Record<string, unknown> | null>(this.reactor, 'nvme.info', { ctrlr: this.name }) : null;
    const io = c[C_IO_CMDS];
    return {
      enabled: this.enabled, csts: this.csts, cc: this.cc, reactor: this.reactor,
      mappable_doorbells: this.opts.mappableDoorbells, shadow_doorbells_offered: this.shadowOffered,
      shadow_doorbells_in_use: c[C_SHADOW] === 1,
      trapped_doorbell_writes: c[C_TRAPPED_DB], io_commands: io, admin_commands: c[C_ADMIN_CMDS],
      trapped_doorbell_writes_per_io: io > 0 ? c[C_TRAPPED_DB] / io : null,
      interrupts: c[C_IRQS], errors: c[C_ERRORS], bad_doorbell_writes: c[C_BAD_DB],
      sgl_commands: c[C_SGL_CMDS], sgl_segment_list_commands: c[C_SGL_LIST_CMDS],
      compare_commands: c[C_COMPARES], compare_failures: c[C_COMPARE_FAILS],
      abort_commands: c[C_ABORT_CMDS], aborted_commands: c[C_ABORTED],
      reads_completed: c[C_READS], writes_completed: c[C_WRITES], bytes_read: c[C_READ_BYTES], bytes_written: c[C_WRITE_BYTES],
      fatal: this.lastFatal, queues: q,
      recent_errors: this.recentErrors(8),
    };
  }

  /** The newest `n` Error Information log entries, decoded (the ring the reactor fills). */
  recentErrors(n: number): Record<string, unknown>[] {
    const count = this.cnt[C_ERRORS], dv = new DataView(this.errorLog);
    const out: Record<string, unknown>[] = [];
    for (let k = 0; k < n && k < count && k < D.LOG_ERROR_ENTRIES; k++) {
      const o = ((count - 1 - k) % D.LOG_ERROR_ENTRIES) * D.ERROR_ENTRY;
      const sf = dv.getUint16(o + 12, true), loc = dv.getUint16(o + 14, true);
      out.push({
        error_count: Number(dv.getBigUint64(o, true)), sqid: dv.getUint16(o + 8, true), cid: dv.getUint16(o + 10, true),
        sct: (sf >> 9) & 7, sc: (sf >> 1) & 0xff, dnr: (sf >> 15) & 1,
        param_loc: loc === 0xffff ? null : { byte: loc & 0xff, bit: (loc >> 8) & 7 },
        lba: Number(dv.getBigUint64(o + 16, true)), nsid: dv.getUint32(o + 24, true),
      });
    }
    return out;
  }

  async destroy(): Promise<void> {
    await this.stopQueues();
    for (const fd of this.msix) closeQuiet(fd);
    try { munmap(this.dbMap, 0x2000); } catch { /* gone */ }
    closeQuiet(this.dbFd);
    closeQuiet(this.wakeFd);
  }
}

function nsSpec(n: NvmeNamespace): NvmeNsSpec {
  return { nsid: n.nsid, bdev: n.bdev.channelSpec(), uuid: n.bdev.uuid };
}

export { TWO32 };
