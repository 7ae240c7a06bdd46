// delay bdev (SPDK's vbdev_delay): a bdev on top of another one (which it claims) that holds
// every read and write completion for a configured latency, in microseconds: 1 I/O in 100
// gets the p99 latency, the others the average. Other I/O types pass through at once.
// Latencies can change while I/O runs (bdev_delay_update_latency): the reactors read them
// from shared memory for each I/O.
import { Bdev, ConfigCall } from '../bdev.js';
import { BdevError } from '../registry.js';
import { checkUuid } from '../validate.js';
import { LATENCY_COUNT, LATENCY_PARAMS, LATENCY_TYPES, LatencyType } from './latency.js';

export interface DelayParams {
  base_bdev_name: string;
  name: string;
  avg_read_latency: number;
  p99_read_latency: number;
  avg_write_latency: number;
  p99_write_latency: number;
  uuid?: string;
}

export class DelayBdev extends Bdev {
  readonly module = 'delay';
  /** Latencies in µs (see latency.ts), shared with the reactors' channels. */
  private readonly latencyUs = new Float64Array(new SharedArrayBuffer(8 * LATENCY_COUNT));

  /** `base` must be claimed by the caller for this bdev (owner: claimOwner(name)). */
  constructor(readonly base: Bdev, p: DelayParams) {
    checkUuid(p.uuid);
    for (const k of LATENCY_PARAMS) checkUs(k, p[k]);
    if (p.p99_read_latency < p.avg_read_latency || p.p99_write_latency < p.avg_write_latency) {
      throw new BdevError('invalid', `a p99 latency (read ${p.p99_read_latency} µs, write ${p.p99_write_latency} µs) is less than ` +
        `its average (read ${p.avg_read_latency} µs, write ${p.avg_write_latency} µs): make p99 at least the average`);
    }
    super({ name: p.name, blockSize: base.blockSize, numBlocks: base.numBlocks, uuid: p.uuid, ioTypes: [...base.ioTypes] });
    LATENCY_PARAMS.forEach((k, i) => { this.latencyUs[i] = p[k]; });
  }

  static claimOwner(name: string): string { return `delay bdev ${name}`; }

  setLatency(type: LatencyType, us: number): void {
    checkUs('latency_us', us);
    this.latencyUs[LATENCY_TYPES.indexOf(type)] = us;
  }

  latencies(): Record<(typeof LATENCY_PARAMS)[number], number> {
    const out = {} as Record<(typeof LATENCY_PARAMS)[number], number>;
    LATENCY_PARAMS.forEach((k, i) => { out[k] = this.latencyUs[i]; });
    return out;
  }

  protected channelData() { return { base: this.base.channelSpec(), latencyUs: this.latencyUs.buffer }; }

  configCall(): ConfigCall {
    return { method: 'bdev_delay_create',
      params: { name: this.name, base_bdev_name: this.base.name, ...this.latencies(), uuid: this.uuid } };
  }

  override driverSpecific(): Record<string, unknown> {
    return { delay: { name: this.name, base_bdev_name: this.base.name, ...this.latencies() } };
  }

  /** Gives the base bdev back (the reactors closed their channels to both already). */
  destroy(): void {
    if (this.base.claimedBy === DelayBdev.claimOwner(this.name)) this.base.claimedBy = null;
  }
}

/** Latencies are whole microseconds, below an hour (the guest's own timeouts are far shorter). */
function checkUs(what: string, us: number): void {
  if (!Number.isSafeInteger(us) || us < 0 || us > 3600e6) {
    throw new BdevError('invalid', `${what} ${us} is invalid: give whole microseconds from 0 to 3600000000`);
  }
}
