// lvol bdev: one logical volume of an lvstore, as a bdev named by its UUID with the alias
// "lvs_name/lvol_name" (as SPDK). Not in save_config: the lvstore's examine recreates it
// when the base bdev appears.
import { Bdev, ConfigCall } from '../bdev.js';
import type { LvolChannelData, LvolState } from './lvol_shared.js';

/** What an lvol bdev needs from its lvstore (lvstore.ts; an interface, so that file can import this one). */
export interface LvolHost {
  readonly name: string;
  readonly base: Bdev;
  readonly blockSize: number;
  readonly clusterBlocks: number;
  readonly dataStart: number;
  readonly dataClusters: number;
  readonly alloc: Int32Array;
  stateOf(lv: LvolRef): LvolState;
  describeLvol(lv: LvolRef): Record<string, unknown>;
}

/** The lvol's fields the bdev reads (lvstore.ts's Lvol has them). */
export interface LvolRef { readonly uuid: string; readonly name: string; readonly clusters: number; readonly readOnly: boolean }

export class LvolBdev extends Bdev {
  readonly module = 'lvol';
  override readonly examined = true;

  constructor(readonly lvs: LvolHost, readonly lvol: LvolRef) {
    super({ name: lvol.uuid, uuid: lvol.uuid, blockSize: lvs.blockSize, numBlocks: lvol.clusters * lvs.clusterBlocks,
      ioTypes: lvol.readOnly ? ['read', 'flush', 'reset'] : ['read', 'write', 'flush', 'reset'] });
    this.aliases.push(`${lvs.name}/${lvol.name}`);
  }

  /** After a resize or a rename of the lvol or its lvstore. */
  refresh(): void {
    this.aliases.length = 0;
    this.aliases.push(`${this.lvs.name}/${this.lvol.name}`);
    this.setNumBlocks(this.lvol.clusters * this.lvs.clusterBlocks);
  }

  protected channelData(): Record<string, unknown> {
    const lvs = this.lvs;
    const d: LvolChannelData = {
      base: lvs.base.channelSpec(), uuid: this.lvol.uuid, alloc: lvs.alloc.buffer as SharedArrayBuffer,
      dataClusters: lvs.dataClusters, clusterBlocks: lvs.clusterBlocks, dataBlock: lvs.dataStart / lvs.blockSize,
      baseZeroes: lvs.base.ioTypes.has('write_zeroes'),
      state: lvs.stateOf(this.lvol),
    };
    return d as unknown as Record<string, unknown>;
  }

  configCall(): ConfigCall | null { return null; }

  override driverSpecific(): Record<string, unknown> {
    return { lvol: this.lvs.describeLvol(this.lvol) };
  }

  destroy(): void { /* the lvstore owns the metadata and the base */ }
}
