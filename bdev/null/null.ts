// null bdev: completes every I/O at once; reads return zeros. Measures the stack itself.
import { Bdev, ConfigCall } from '../bdev.js';
import { checkGeometry, checkUuid } from '../validate.js';

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

  configCall(): ConfigCall {
    return { method: 'bdev_null_create',
      params: { name: this.name, num_blocks: this.numBlocks, block_size: this.blockSize, uuid: this.uuid } };
  }

  destroy(): void { /* nothing held */ }
}
