// malloc bdev, reactor side: copies between guest memory and the shared RAM disk.
import { BdevChannel, registerChannelFactory } from '../channel.js';
import { BdevIo } from '../bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType } from '../types.js';
import { view } from '../../native/libc.js';

export class MallocChannel extends BdevChannel {
  private readonly disk: Uint8Array;

  constructor(spec: BdevChannelSpec, reactorIndex: number) {
    super(spec, reactorIndex);
    this.disk = new Uint8Array(view(spec.data.addr as number, spec.data.bytes as number));
  }

  protected submitIo(io: BdevIo): void {
    const bs = this.blockSize;
    switch (io.type) {
      case IoType.READ:
      case IoType.WRITE: {
        const mem = io.mem!, s = io.segs, disk = this.disk;
        let pos = io.offsetBlocks * bs;
        const end = io.segBase + io.nseg;
        for (let i = io.segBase; i < end; i++) {
          const buf = mem.u8[s.region[i]], off = s.off[i], len = s.len[i];
          // One transient view per segment: TypedArray.set is a memcpy, far faster than a JS loop.
          if (io.type === IoType.READ) buf.set(disk.subarray(pos, pos + len), off);
          else disk.set(buf.subarray(off, off + len), pos);
          pos += len;
        }
        this.complete(io, IoStatus.SUCCESS);
        return;
      }
      case IoType.UNMAP:
      case IoType.WRITE_ZEROES:
        this.disk.fill(0, io.offsetBlocks * bs, (io.offsetBlocks + io.numBlocks) * bs);
        this.complete(io, IoStatus.SUCCESS);
        return;
      case IoType.FLUSH:
      case IoType.RESET:
        this.complete(io, IoStatus.SUCCESS);
        return;
      default:
        this.complete(io, IoStatus.UNSUPPORTED);
    }
  }
}

registerChannelFactory('malloc', (spec, r) => new MallocChannel(spec, r));
