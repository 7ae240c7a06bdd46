// Shared-memory structures of an lvstore, used alike by the control plane and by every
// reactor's lvol channels (Atomics on SharedArrayBuffers; no locks besides these words).
//
// Cluster allocator: Int32 words [CURSOR, FREE, bitmap...], one bit per data cluster
// (1 = in use). Allocation scans from the cursor and sets a bit with compareExchange, so
// reactors and the control plane allocate concurrently without a lock. The bitmap lives only
// in memory: at load it is rebuilt from the cluster maps, so a cluster allocated but never
// recorded in a persisted map (a crash in between) is free again.
//
// Cluster map of an lvol: Int32 per cluster index: 0 = unallocated (read from the parent
// chain, or zeroes), MAP_BUSY = being allocated by some thread, p+1 = physical cluster p.
// Invariant: an entry > 0 is on disk already (it is set only after its map block was written).
//
// Map block locks: Int32 per map block of the lvol (a base-bdev block holding blockSize/4
// entries): 1 while one thread writes that block, so writes of one block never overlap and
// the last one written carries every entry set before it started.
export const MAP_BUSY = -1;
const CURSOR = 0, FREE = 1, WORD0 = 2;

export function newAllocator(clusters: number): SharedArrayBuffer {
  const a = new Int32Array(new SharedArrayBuffer(4 * (WORD0 + Math.ceil(clusters / 32))));
  a[FREE] = clusters;
  return a.buffer as SharedArrayBuffer;
}

/** Takes a free cluster; -1 when the lvstore is full. */
export function allocCluster(a: Int32Array, clusters: number): number {
  let p = Atomics.load(a, CURSOR);
  if (p >= clusters) p = 0;
  for (let seen = 0; seen < clusters;) {
    const w = WORD0 + (p >>> 5), bit = 1 << (p & 31), old = Atomics.load(a, w);
    if (old === -1) {                       // a full word: skip to the next one
      const skip = 32 - (p & 31);
      seen += skip; p += skip;
      if (p >= clusters) p = 0;
      continue;
    }
    if ((old & bit) === 0) {
      if (Atomics.compareExchange(a, w, old, old | bit) === old) {
        Atomics.store(a, CURSOR, p + 1);
        Atomics.sub(a, FREE, 1);
        return p;
      }
      continue;                              // lost a race on this word: look again
    }
    seen++; p++;
    if (p >= clusters) p = 0;
  }
  return -1;
}

export function freeCluster(a: Int32Array, p: number): void {
  const bit = 1 << (p & 31);
  if ((Atomics.and(a, WORD0 + (p >>> 5), ~bit) & bit) !== 0) Atomics.add(a, FREE, 1);
}

/** Marks a cluster used (at load); false if it already was (two maps claim it). */
export function markCluster(a: Int32Array, p: number): boolean {
  const bit = 1 << (p & 31);
  if ((Atomics.or(a, WORD0 + (p >>> 5), bit) & bit) !== 0) return false;
  Atomics.sub(a, FREE, 1);
  return true;
}

export function freeClusters(a: Int32Array): number { return Atomics.load(a, FREE); }

/**
 * Fills `out` (one base block, little-endian u32 per entry) with the persisted image of map
 * block `blk`: entries > 0 as they are, every other entry as 0, except entry `idx` = `val`.
 */
export function mapBlockImage(map: Int32Array, blk: number, entriesPerBlock: number, out: DataView, idx: number, val: number): void {
  const first = blk * entriesPerBlock;
  for (let k = 0; k < entriesPerBlock; k++) {
    const i = first + k;
    const v = i === idx ? val : i < map.length ? Atomics.load(map, i) : 0;
    out.setUint32(k * 4, v > 0 ? v : 0, true);
  }
}

/** What a channel needs to serve one lvol; replaced on every reactor when a snapshot or inflate changes it. */
export interface LvolState {
  map: SharedArrayBuffer;
  locks: SharedArrayBuffer;
  /** Base block holding map entry 0. */
  mapBlock: number;
  /** Maps of the ancestors (snapshots), nearest first. */
  chain: SharedArrayBuffer[];
  readOnly: boolean;
}

export interface LvolChannelData {
  base: import('../types.js').BdevChannelSpec;
  uuid: string;
  alloc: SharedArrayBuffer;
  dataClusters: number;
  clusterBlocks: number;
  /** Base block of physical cluster 0. */
  dataBlock: number;
  /** The base bdev supports WRITE_ZEROES. */
  baseZeroes: boolean;
  state: LvolState;
}
