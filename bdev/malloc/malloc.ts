// malloc bdev: a RAM disk in a memfd mapping that every reactor can reach.
import { Bdev, ConfigCall } from '../bdev.js';
import { checkGeometry, checkUuid } from '../validate.js';
import { closeQuiet, memfdCreate, mmap, munmap, populateAsync } from '../../native/libc.js';

export interface MallocParams { name: string; num_blocks: number; block_size: number; uuid?: string }

export class MallocBdev extends Bdev {
  readonly module = 'malloc';
  private readonly fd: number;
  private readonly addr: number;
  private readonly bytes: number;

  constructor(p: MallocParams) {
    checkGeometry(p.block_size, p.num_blocks, { inMemory: true });
    checkUuid(p.uuid);
    super({ name: p.name, blockSize: p.block_size, numBlocks: p.num_blocks, uuid: p.uuid,
      ioTypes: ['read', 'write', 'flush', 'unmap', 'write_zeroes', 'reset'] });
    this.bytes = p.block_size * p.num_blocks;
    this.fd = memfdCreate(`vhostd-malloc-${p.name}`, this.bytes);
    try {
      this.addr = mmap(this.bytes, this.fd);
    } catch (e) {
      closeQuiet(this.fd);
      throw e;
    }
  }

  /** Allocates the RAM up front (as SPDK does), so I/O never waits on page faults. */
  override prepare(): Promise<void> { return populateAsync(this.addr, this.bytes); }

  protected channelData() { return { addr: this.addr, bytes: this.bytes }; }

  configCall(): ConfigCall {
    return { method: 'bdev_malloc_create',
      params: { name: this.name, num_blocks: this.numBlocks, block_size: this.blockSize, uuid: this.uuid } };
  }

  destroy(): void {
    munmap(this.addr, this.bytes);
    closeQuiet(this.fd);
  }
}
