// null bdev, reactor side: every I/O succeeds at once and moves no data.
import { BdevChannel, registerChannelFactory } from '../channel.js';
import { BdevIo } from '../bdev_io.js';
import { IoStatus } from '../types.js';

export class NullChannel extends BdevChannel {
  protected submitIo(io: BdevIo): void { this.complete(io, IoStatus.SUCCESS); }
}

registerChannelFactory('null', (spec, r) => new NullChannel(spec, r));
