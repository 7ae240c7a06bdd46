// Reactor-side control operations of emulated NVMe controllers (vfio-user).
import { registerOp, Reactor } from '../../src/reactor/reactor.js';
import { closeBdevChannel, openBdevChannel } from '../../bdev/reactor_channels.js';
import { MemRegionSpec } from '../../src/memory/guest_memory.js';
import { NvmeCtrlr, NvmeCtrlrSpec, NvmeNsSpec, NsNotice } from './nvme_ctrlr.js';

/** The operations and notice below, checked on both sides (nvme_device.ts). */
declare module '../../src/reactor/mailbox.js' {
  interface ReactorOps {
    'nvme.enable': { args: NvmeCtrlrSpec; result: { reactor: number } };
    'nvme.disable': { args: { ctrlr: string }; result: { counters: Record<string, unknown> } | null };
    'nvme.memory': { args: { ctrlr: string; mem: MemRegionSpec[]; removing: boolean }; result: null };
    'nvme.msix': { args: { ctrlr: string; fds: number[] }; result: null };
    'nvme.addNs': { args: { ctrlr: string; ns: NvmeNsSpec }; result: null };
    'nvme.nsResized': { args: { ctrlr: string; nsid: number }; result: NsNotice | 'not-enabled' };
    'nvme.info': { args: { ctrlr: string }; result: Record<string, unknown> | null };
  }
  interface ReactorEvents {
    /** A controller went fatal (CSTS.CFS): the reason. */
    nvmeFatal: { ctrlr: string; why: string };
  }
}

const ctrlrs = new Map<string, NvmeCtrlr>();

function get(name: string): NvmeCtrlr | undefined { return ctrlrs.get(name); }

function release(r: Reactor, c: NvmeCtrlr): void {
  ctrlrs.delete(c.spec.ctrlr);
  r.removePoller(c);
  for (const ns of c.namespaces()) closeBdevChannel(r, ns.spec.bdev.name);
  c.destroy();
}

/** CC.EN 0→1: builds the controller with its admin queue and starts polling it. */
registerOp('nvme.enable', (r: Reactor, spec: NvmeCtrlrSpec, reply) => {
  if (ctrlrs.has(spec.ctrlr)) throw new Error(`NVMe controller ${spec.ctrlr} is already enabled on reactor ${r.index}`);
  const opened: string[] = [];
  let c: NvmeCtrlr;
  try {
    c = new NvmeCtrlr(spec, (s) => { const ch = openBdevChannel(r, s); opened.push(s.name); return ch; });
  } catch (e) {
    for (const n of opened) closeBdevChannel(r, n);
    throw e;
  }
  c.onFatal = (why) => r.emit('nvmeFatal', { ctrlr: spec.ctrlr, why });
  ctrlrs.set(spec.ctrlr, c);
  r.addPoller(c);
  reply({ reactor: r.index });
});

/** CC.EN 1→0, shutdown, reset or disconnect: stops fetching, waits for in-flight I/O, frees the queues. */
registerOp('nvme.disable', (r: Reactor, a: { ctrlr: string }, reply) => {
  const c = get(a.ctrlr);
  if (!c) { reply(null); return; }
  const done = () => { release(r, c); reply({ counters: c.info() }); };
  c.stopping = true;
  if (c.inFlight === 0) { done(); return; }
  c.onDrained = done;
});

/** The DMA map changed; replies once the old windows are no longer used. */
registerOp('nvme.memory', (r: Reactor, a: { ctrlr: string; mem: MemRegionSpec[]; removing: boolean }, reply) => {
  const c = get(a.ctrlr);
  if (!c) { reply(null); return; }
  if (c.inFlight === 0) { c.setMemory(a.mem); reply(null); return; }
  // in-flight I/O holds region indices of the old table (windows are kept sorted, so an added
  // one shifts them) and may point into a window about to go: stop fetching until it drained
  c.stopping = true;
  c.onDrained = () => { c.setMemory(a.mem); c.stopping = false; reply(null); };
});

registerOp('nvme.msix', (_r: Reactor, a: { ctrlr: string; fds: number[] }, reply) => {
  get(a.ctrlr)?.setMsix(a.fds);
  reply(null);
});

registerOp('nvme.addNs', (r: Reactor, a: { ctrlr: string; ns: NvmeNsSpec }, reply) => {
  const c = get(a.ctrlr);
  if (c) c.addNs(a.ns, (s) => openBdevChannel(r, s));
  reply(null);
});

/** A namespace's bdev changed size: Changed Namespace List entry and Namespace Attribute Changed notice. */
registerOp('nvme.nsResized', (_r: Reactor, a: { ctrlr: string; nsid: number }, reply) => {
  const c = get(a.ctrlr);
  reply((c ? c.nsResized(a.nsid) : 'not-enabled') satisfies NsNotice | 'not-enabled');
});

registerOp('nvme.info', (_r: Reactor, a: { ctrlr: string }, reply) => {
  reply(get(a.ctrlr)?.info() ?? null);
});
