// A reactor's bdev channels: one per bdev per reactor, shared by every queue on the reactor
// that serves the bdev, polled by the reactor when the module completes asynchronously.
import type { Reactor, ReactorChannel } from '../src/reactor/reactor.js';
import type { Poller } from '../src/reactor/poller.js';
import type { BdevChannelSpec } from './types.js';
import { BdevChannel, openChannel } from './channel.js';

class BdevReactorChannel implements ReactorChannel {
  readonly poller: Poller | null;
  constructor(readonly ch: BdevChannel, name: string) {
    // the module's completions and the layer's QoS queue (see bdev/qos)
    if (ch.poll === BdevChannel.prototype.poll && ch.qos === null) { this.poller = null; return; }
    const fds = ch.wakeFdsAll();
    this.poller = { name: `bdev:${name}`, poll: () => ch.pollAll(), wakeFds: () => fds,
      armInterrupt: () => ch.canSleepAll(), disarmInterrupt: () => {} };
  }
  destroy(): void { this.ch.closeAll(); }
}

/** Opens (or shares) reactor `r`'s channel to a bdev. */
export function openBdevChannel(r: Reactor, spec: BdevChannelSpec): BdevChannel {
  return r.getChannel(`bdev:${spec.name}`, () => new BdevReactorChannel(openChannel(spec, r.index), spec.name)).ch;
}

/** Releases one use of reactor `r`'s channel to bdev `name`. */
export function closeBdevChannel(r: Reactor, name: string): void { r.putChannel(`bdev:${name}`); }
