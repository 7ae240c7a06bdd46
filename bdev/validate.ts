// Checks shared by bdev modules when creating a bdev.
import { totalmem } from 'node:os';
import { BdevError } from './registry.js';

export function checkGeometry(blockSize: number, numBlocks: number, opts: { inMemory?: boolean } = {}): void {
  if (!Number.isInteger(blockSize) || blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
    throw new BdevError('invalid', `block_size ${blockSize} is invalid: use a power of two from 512 to 65536`);
  }
  if (!Number.isSafeInteger(numBlocks) || numBlocks < 1) {
    throw new BdevError('invalid', `num_blocks ${numBlocks} is invalid: a bdev needs at least one block`);
  }
  const bytes = blockSize * numBlocks;
  if (!Number.isSafeInteger(bytes)) throw new BdevError('invalid', `size ${blockSize}*${numBlocks} is too large`);
  if (opts.inMemory && bytes > totalmem()) {
    throw new BdevError('invalid',
      `a ${bytes}-byte memory bdev does not fit in this machine's ${totalmem()} bytes of RAM: use fewer blocks`);
  }
}

export function checkUuid(uuid: string | undefined): void {
  if (uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) {
    throw new BdevError('invalid', `uuid '${uuid}' is not a UUID (expected 8-4-4-4-12 hex digits)`);
  }
}
