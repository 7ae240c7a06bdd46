// null bdev: completes every I/O at once; reads return zeros. Measures the stack itself.
import { Bdev, ConfigCall } from '../bdev.js';
import { checkGeometry, checkUuid } from '../validate.js';
import { BdevError } from '../registry.js';

export interface NullParams { name: string; num_blocks: number; block_size: number; uuid?: string }

export class NullBdev extends Bdev {
  readonly module = 'null';

  constructor(p: NullParams) {
    checkGeometry(p.block_size, p.num_blocks);
    checkUuid(p.uuid);
    super({ name: p.name, blockSize: p.block_size, numBlocks: p.num_blocks, uuid: p.uuid,
      ioTypes: ['read', 'write', 'flush', 'unmap', 'write_zeroes', 'reset'] });
  }

  protected channelData() { return {}; }

  /** bdev_null_resize: a new size in MiB. Growing is always allowed; shrinking only while unused (as SPDK). */
  resize(newSizeMiB: number): void {
    const bytes = newSizeMiB * 1024 * 1024;
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % this.blockSize !== 0) {
      throw new BdevError('invalid', `new_size ${newSizeMiB} MiB is not a positive multiple of the ${this.blockSize}-byte block size`);
    }
    const n = bytes / this.blockSize;
    if (n < this.numBlocks && this.claimedBy) {
      throw new BdevError('claimed', `bdev '${this.name}' is in use by ${this.claimedBy}: it can grow, but not shrink ` +
        `from ${this.numBlocks} to ${n} blocks`);
    }
    this.setNumBlocks(n);
  }

  configCall(): ConfigCall {
    return { method: 'bdev_null_create',
      params: { name: this.name, num_blocks: this.numBlocks, block_size: this.blockSize, uuid: this.uuid } };
  }

  destroy(): void { /* nothing held */ }
}
