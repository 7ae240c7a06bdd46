// bdev_set_qos_limit on the control plane: SPDK's rules for the values (spdk_bdev_set_qos_rate_limits),
// what bdev_get_bdevs shows (assigned_rate_limits) and what save_config writes.
import type { Bdev, ConfigCall } from '../bdev.js';
import { BdevError } from '../registry.js';
import { LIMIT_COUNT, LIMIT_NAMES, LimitName, QosBucket, RW_IOPS } from './qos_bucket.js';
import { logger } from '../../src/log.js';

const log = logger('bdev');

/** SPDK_BDEV_QOS_MIN_IOS_PER_SEC, _MIN_BYTES_PER_SEC: limits are multiples of these. */
export const MIN_IOS_PER_SEC = 1000;
const MIB = 1024 * 1024;
/** Above this a byte limit cannot bind any device (and per-slice budgets stay exact doubles). */
const MAX_MBYTES_PER_SEC = 2 ** 32;

export type QosLimits = Partial<Record<LimitName, number>>;

/**
 * Applies the limits given (others keep their value; 0 turns one off). As SPDK: an I/O limit
 * that is not a multiple of 1000 is rounded up (with a warning); MB/s are MiB/s. At least one
 * limit must be given. Returns the limits now in force, as bdev_get_bdevs shows them.
 */
export function setQosLimits(b: Bdev, given: QosLimits): Record<LimitName, number> {
  if (LIMIT_NAMES.every((k) => given[k] === undefined)) {
    throw new BdevError('invalid', `No rate limits specified: give at least one of ${LIMIT_NAMES.join(', ')} (0 = no limit)`);
  }
  const bucket = new QosBucket(b.qos);
  const perSec = bucket.limits();
  for (let i = 0; i < LIMIT_COUNT; i++) {
    const name = LIMIT_NAMES[i], v = given[name];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 0) throw new BdevError('invalid', `${name} ${v} is invalid: give a whole number, 0 for no limit`);
    if (i === RW_IOPS) {
      const up = Math.ceil(v / MIN_IOS_PER_SEC) * MIN_IOS_PER_SEC;
      if (up !== v) log.warn(`bdev ${b.name}: rw_ios_per_sec ${v} is not a multiple of ${MIN_IOS_PER_SEC}: rounded up to ${up}`);
      perSec[i] = up;
    } else {
      let mb = v;
      if (mb > MAX_MBYTES_PER_SEC) {
        log.warn(`bdev ${b.name}: ${name} ${v} is beyond any device: limited to ${MAX_MBYTES_PER_SEC}`);
        mb = MAX_MBYTES_PER_SEC;
      }
      perSec[i] = mb * MIB;
    }
  }
  bucket.configure(perSec);
  return assignedRateLimits(b);
}

/** bdev_get_bdevs' assigned_rate_limits (I/Os per second, MiB per second; 0 = none). */
export function assignedRateLimits(b: Bdev): Record<LimitName, number> {
  const l = new QosBucket(b.qos).limits();
  const out = {} as Record<LimitName, number>;
  LIMIT_NAMES.forEach((k, i) => { out[k] = i === RW_IOPS ? l[i] : Math.floor(l[i] / MIB); });
  return out;
}

/** save_config: the bdev_set_qos_limit call after the bdev's creation, if any limit is set (as SPDK). */
export function qosConfigCalls(b: Bdev): ConfigCall[] {
  const limits = assignedRateLimits(b);
  const params: Record<string, unknown> = { name: b.name };
  let any = false;
  for (const k of LIMIT_NAMES) if (limits[k] > 0) { params[k] = limits[k]; any = true; }
  return any ? [{ method: 'bdev_set_qos_limit', params }] : [];
}
