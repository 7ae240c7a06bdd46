// NVMe bdev, reactor side: a namespace channel submits to its controller's qpair for this
// reactor. Qpairs live for as long as the process knows the controller (their ring
// positions must survive a channel being closed and opened again), shared by every
// namespace channel of that controller on this reactor.
import { BdevChannel, registerChannelFactory } from '../channel.js';
import { BdevIo } from '../bdev_io.js';
import { BdevChannelSpec } from '../types.js';
import { eventfdDrain } from '../../native/libc.js';
import { NsTarget, NvmeQpair, QpairSpec } from './qpair.js';

export interface NvmeChannelData {
  ctrlr: string;
  nsid: number;
  /** Indexed by reactor: the qpair the control plane created for it (null: none). */
  qpairs: (QpairSpec | null)[];
}

const qpairs = new Map<string, { qp: NvmeQpair; refs: number }>();

function acquire(q: QpairSpec): NvmeQpair {
  const key = `${q.serial}:${q.qid}`;
  let e = qpairs.get(key);
  if (!e) { e = { qp: new NvmeQpair(q), refs: 0 }; qpairs.set(key, e); }
  if (e.refs++ === 0) e.qp.activate(true);
  return e.qp;
}

function release(q: QpairSpec): void {
  const e = qpairs.get(`${q.serial}:${q.qid}`);
  if (e && --e.refs === 0) e.qp.activate(false);
}

export class NvmeChannel extends BdevChannel implements NsTarget {
  readonly nsid: number;
  private readonly qp: NvmeQpair;
  private readonly q: QpairSpec;
  private readonly fds: number[];

  constructor(spec: BdevChannelSpec, reactorIndex: number) {
    super(spec, reactorIndex);
    const d = spec.data as unknown as NvmeChannelData;
    const q = d.qpairs[reactorIndex];
    if (!q) {
      throw new Error(`NVMe controller ${d.ctrlr} has no I/O queue for reactor ${reactorIndex} ` +
        `(it granted fewer queues than vhostd has reactors): use a smaller cpumask or another reactor`);
    }
    this.nsid = d.nsid;
    this.q = q;
    this.qp = acquire(q);
    this.fds = q.irqFd >= 0 ? [q.wakeFd, q.irqFd] : [q.wakeFd];
  }

  protected submitIo(io: BdevIo): void { this.qp.submit(io, this); }
  override poll(): number { return this.qp.poll(); }
  override inflight(): number { return this.qp.inflight; }
  override wakeFds(): number[] { return this.fds; }
  override canSleep(): boolean {
    eventfdDrain(this.q.wakeFd);
    if (this.q.irqFd >= 0) eventfdDrain(this.q.irqFd);
    if (this.qp.poll() > 0) return false;   // a state change seen now, not after the sleep
    return this.qp.canSleep();
  }
  override destroy(): void { release(this.q); }
}

registerChannelFactory('nvme', (spec, r) => new NvmeChannel(spec, r));
