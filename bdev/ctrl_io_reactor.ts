// Reactor side of the control-plane bdev I/O service (ctrl_io.ts): one channel per bdev,
// opened on first use and kept until 'ctrlio.close'; each request is one BdevIo into the
// staging buffer the main thread mapped. Control-plane rate, so allocating here is fine.
import { registerOp, Reactor } from '../src/reactor/reactor.js';
import { BdevIo, BdevIoSink, SegmentTable } from './bdev_io.js';
import { BdevChannelSpec, IoStatus } from './types.js';
import { GuestMemory } from '../src/memory/guest_memory.js';
import type { BdevChannel } from './channel.js';

interface IoArgs { bdev: BdevChannelSpec; type: number; offsetBlocks: number; numBlocks: number; hva: number; size: number; bytes: number }

const channels = new Map<string, BdevChannel>();

registerOp('ctrlio.io', (r: Reactor, a: IoArgs, reply) => {
  let ch = channels.get(a.bdev.name);
  if (!ch) { ch = r.openChannel(a.bdev); channels.set(a.bdev.name, ch); }
  const sink: BdevIoSink = { onBdevIoDone: (io) => reply(io.status) };
  const segs = new SegmentTable(1);
  const io = new BdevIo(sink, 0, segs);
  io.type = a.type; io.offsetBlocks = a.offsetBlocks; io.numBlocks = a.numBlocks;
  if (a.bytes > 0) {
    io.mem = new GuestMemory([], [{ gpa: 0, size: a.size, uaddr: 0, hva: a.hva }]);
    segs.region[0] = 0; segs.off[0] = 0; segs.len[0] = a.bytes;
    io.nseg = 1; io.bytes = a.bytes;
  }
  try { ch.submit(io); } catch { reply(IoStatus.FAILED); }
});

registerOp('ctrlio.close', (r: Reactor, a: { name: string }, reply) => {
  if (channels.delete(a.name)) r.closeChannel(a.name);
  reply(null);
});
