// Examine (SPDK's name): when a bdev appears (config load, bdev creation), read its superblock
// and, if it holds an lvstore, claim it and register the lvols as bdevs.
import { addExaminer, BdevRegistry } from '../registry.js';
import { ctrlIo } from '../ctrl_io.js';
import { logger } from '../../src/log.js';
import { LvolStore } from './lvstore.js';

const log = logger('lvol');
const watched = new WeakSet<BdevRegistry>();

addExaminer(async (bdev, registry) => {
  if (!ctrlIo.attached || bdev.module === 'lvol' || bdev.claimedBy || !bdev.ioTypes.has('write')) return;
  if (!watched.has(registry)) {
    watched.add(registry);
    registry.onRemove((b) => LvolStore.forgetBase(b));
  }
  try {
    const s = await LvolStore.load(registry, bdev);
    if (!s) await ctrlIo.release(bdev);
  } catch (e) {
    log.error(`examining bdev '${bdev.name}' for an lvstore failed: ${(e as Error).message}`);
    await ctrlIo.release(bdev);
  }
});
