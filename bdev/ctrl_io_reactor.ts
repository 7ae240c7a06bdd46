// Reactor side of the control-plane bdev I/O service (ctrl_io.ts): one channel per bdev,
// opened on first use and kept until 'ctrlio.close'; each request is one BdevIo into the
// staging buffer the main thread mapped. Control-plane rate, so allocating here is fine.
import { registerOp, Reactor } from '../src/reactor/reactor.js';
import { BdevIo, BdevIoSink, SegmentTable } from './bdev_io.js';
import { BdevChannelSpec, IoStatus } from './types.js';
import { GuestMemory } from '../src/memory/guest_memory.js';
import type { BdevChannel } from './channel.js';
import { closeBdevChannel, openBdevChannel } from './reactor_channels.js';

declare module '../src/reactor/mailbox.js' {
  interface ReactorOps {
    'ctrlio.io': { args: IoArgs; result: number };
    'ctrlio.close': { args: { name: string }; result: null };
  }
}

interface IoArgs { bdev: BdevChannelSpec; type: number; offsetBlocks: number; numBlocks: number; hva: number; size: number; bytes: number }

/** Open channels by bdev name; a close waits for the I/Os in flight on it. */
interface Open { ch: BdevChannel; inflight: number; closing: boolean }
const channels = new Map<string, Open>();

function closeNow(r: Reactor, name: string): void {
  channels.delete(name);
  closeBdevChannel(r, name);
}

/** Closes after the current poll round: a completion runs inside the channel's own poll(), which must not destroy it. */
function closeLater(r: Reactor, name: string, entry: Open): void {
  const p = {
    name: `ctrlio-close:${name}`,
    poll: () => {
      r.removePoller(p);
      if (entry.closing && entry.inflight === 0 && channels.get(name) === entry) closeNow(r, name);
      return 1;
    },
    wakeFds: () => [], armInterrupt: () => false, disarmInterrupt: () => {},
  };
  r.addPoller(p);
}

registerOp('ctrlio.io', (r: Reactor, a: IoArgs, reply) => {
  let o = channels.get(a.bdev.name);
  if (!o) { o = { ch: openBdevChannel(r, a.bdev), inflight: 0, closing: false }; channels.set(a.bdev.name, o); }
  o.closing = false;   // used again: a pending close is off
  const entry = o;
  const sink: BdevIoSink = {
    onBdevIoDone: (io) => {
      entry.inflight--;
      if (entry.closing && entry.inflight === 0) closeLater(r, a.bdev.name, entry);
      reply(io.status);
    },
  };
  const segs = new SegmentTable(1);
  const io = new BdevIo(sink, 0, segs);
  io.type = a.type; io.offsetBlocks = a.offsetBlocks; io.numBlocks = a.numBlocks;
  if (a.bytes > 0) {
    io.mem = new GuestMemory([], [{ gpa: 0, size: a.size, uaddr: 0, hva: a.hva }]);
    segs.region[0] = 0; segs.off[0] = 0; segs.len[0] = a.bytes;
    io.nseg = 1; io.bytes = a.bytes;
  }
  o.inflight++;
  try { o.ch.submit(io); } catch { o.inflight--; reply(IoStatus.FAILED); }
});

registerOp('ctrlio.close', (r: Reactor, a: { name: string }, reply) => {
  const o = channels.get(a.name);
  if (o && o.inflight > 0) o.closing = true;
  else if (o) closeNow(r, a.name);
  reply(null);
});
