// An lvstore: the control-plane state of one base bdev's logical volumes, and every metadata
// change (create, snapshot, clone, resize, inflate, delete, rename). Changes run one at a time
// per lvstore and follow one rule for crash consistency: first write what the new state needs
// and the old one does not reference (new map pages, allocated and copied clusters), flush,
// then switch superblocks (lvs_format.ts), flush; only then free what the old state used.
// A SIGKILL anywhere leaves the old or the new state. Control-plane I/O goes through ctrl_io.
import { randomUUID } from 'node:crypto';
import type { Bdev } from '../bdev.js';
import { BdevError, BdevRegistry } from '../registry.js';
import { ctrlIo } from '../ctrl_io.js';
import { logger } from '../../src/log.js';
import { LvolBdev } from './lvol.js';
import { allocCluster, freeCluster, freeClusters, LvolState, MAP_BUSY, mapBlockImage, markCluster, newAllocator } from './lvol_shared.js';
import { encodeSuperblock, layout, LvolDesc, LvsDesc, MAP_PAGE, MAP_START, mapPagesFor, pickSuperblock, SB_SLOT } from './lvs_format.js';

const log = logger('lvol');

export type ClearMethod = 'none' | 'unmap' | 'write_zeroes';

export interface Lvol extends LvolDesc {
  map: SharedArrayBuffer;
  locks: SharedArrayBuffer;
  bdev: LvolBdev | null;
}

const stores = new Map<string, LvolStore>();
const FREEZE_LIMIT_MS = 10_000;
const INFLATE_PARALLEL = 8;

export class LvolStore {
  readonly uuid: string;
  name: string;
  readonly clusterSize: number;
  readonly blockSize: number;
  readonly clusterBlocks: number;
  readonly mapPages: number;
  readonly dataStart: number;
  readonly dataClusters: number;
  readonly alloc: Int32Array;
  readonly lvols = new Map<string, Lvol>();
  private readonly pageUsed: Uint8Array;
  private seq: number;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly base: Bdev, readonly registry: BdevRegistry, d: LvsDesc, seq: number) {
    this.uuid = d.uuid; this.name = d.name; this.clusterSize = d.clusterSize; this.blockSize = d.blockSize;
    this.clusterBlocks = d.clusterSize / d.blockSize;
    this.mapPages = d.mapPages; this.dataStart = d.dataStart; this.dataClusters = d.dataClusters;
    this.alloc = new Int32Array(newAllocator(d.dataClusters));
    this.pageUsed = new Uint8Array(d.mapPages);
    this.seq = seq;
  }

  static list(): LvolStore[] { return [...stores.values()]; }
  static claimOwner(name: string): string { return `lvstore ${name}`; }

  /** By UUID xor name (SPDK's rule for the lvs_name/uuid parameter pairs). */
  static find(uuid?: string, name?: string): LvolStore {
    if ((uuid === undefined) === (name === undefined)) {
      throw new BdevError('invalid', 'give exactly one of the lvstore UUID and the lvstore name');
    }
    const s = [...stores.values()].find((x) => (uuid !== undefined ? x.uuid === uuid : x.name === name));
    if (!s) throw new BdevError('not_found', `lvstore ${uuid ?? `'${name}'`} does not exist (see bdev_lvol_get_lvstores)`);
    return s;
  }

  /** The lvol behind a bdev name, alias or UUID. */
  static lvolOf(registry: BdevRegistry, name: string): { lvs: LvolStore; lvol: Lvol } {
    const b = registry.find(name);
    if (!(b instanceof LvolBdev)) {
      throw new BdevError('not_found', b ? `bdev '${name}' is a ${b.module} bdev, not an lvol` : `lvol '${name}' does not exist (see bdev_lvol_get_lvols)`);
    }
    return { lvs: b.lvs as LvolStore, lvol: b.lvol as Lvol };
  }

  // ---- creation and loading ----

  static async create(registry: BdevRegistry, base: Bdev, p: { lvs_name: string; cluster_sz: number; clear_method: ClearMethod }): Promise<LvolStore> {
    checkName('lvs_name', p.lvs_name);
    if ([...stores.values()].some((s) => s.name === p.lvs_name)) {
      throw new BdevError('exists', `lvstore '${p.lvs_name}' already exists: pick another name`);
    }
    const bs = base.blockSize, cs = p.cluster_sz;
    if (bs > MAP_PAGE) throw new BdevError('invalid', `base bdev '${base.name}' has ${bs}-byte blocks: lvstores need blocks of at most ${MAP_PAGE} bytes`);
    if (!Number.isInteger(cs) || cs < MAP_PAGE || (cs & (cs - 1)) !== 0 || cs > 1 << 30) {
      throw new BdevError('invalid', `cluster_sz ${cs} is invalid: use a power of two from ${MAP_PAGE} bytes to 1 GiB`);
    }
    const bytes = base.numBlocks * bs;
    const l = layout(bytes, cs);
    if (l.dataClusters < 1) {
      throw new BdevError('invalid', `base bdev '${base.name}' (${bytes} bytes) is too small for an lvstore with ${cs}-byte clusters: ` +
        `it needs at least ${l.dataStart + cs} bytes`);
    }
    const owner = LvolStore.claimOwner(p.lvs_name);
    registry.claim(base.name, owner);
    try {
      const desc: LvsDesc = { v: 1, uuid: randomUUID(), name: p.lvs_name, clusterSize: cs, blockSize: bs, ...l, lvols: [] };
      await ctrlIo.writeZeroes(base, 0, l.dataStart);   // both superblock copies and every map page
      if (p.clear_method === 'write_zeroes') await ctrlIo.writeZeroes(base, l.dataStart, l.dataClusters * cs);
      const s = new LvolStore(base, registry, desc, 0);
      await s.writeSuperblock(desc);
      stores.set(s.uuid, s);
      log.notice(`lvstore '${s.name}' (${s.uuid}) created on bdev '${base.name}': ${s.dataClusters} clusters of ${cs} bytes`);
      return s;
    } catch (e) {
      registry.release(base.name, owner);
      throw e;
    }
  }

  /** Examine: the lvstore on `base`, loaded and its lvols registered, or null if there is none. */
  static async load(registry: BdevRegistry, base: Bdev): Promise<LvolStore | null> {
    const bs = base.blockSize;
    if (bs > MAP_PAGE || base.numBlocks * bs < MAP_START) return null;
    const found = pickSuperblock(await ctrlIo.read(base, 0, MAP_START));
    if (!found) return null;
    const d = found.desc;
    if (d.blockSize !== bs) {
      log.error(`bdev '${base.name}' holds lvstore '${d.name}' written with ${d.blockSize}-byte blocks, but has ${bs}-byte blocks: not loaded`);
      return null;
    }
    if (stores.has(d.uuid) || [...stores.values()].some((s) => s.name === d.name)) {
      log.error(`bdev '${base.name}' holds lvstore '${d.name}' (${d.uuid}), but an lvstore with that name or UUID is loaded already: not loaded`);
      return null;
    }
    if (base.claimedBy || registry.find(base.name) !== base) return null;   // taken meanwhile
    const owner = LvolStore.claimOwner(d.name);
    registry.claim(base.name, owner);
    const s = new LvolStore(base, registry, d, found.seq);
    try {
      const repairs: Promise<void>[] = [];
      for (const ld of d.lvols) {
        const lv = s.newLvol(ld);
        const raw = await ctrlIo.read(base, MAP_START + ld.page * MAP_PAGE, ld.pages * MAP_PAGE);
        const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength), map = new Int32Array(lv.map);
        let stale = false;
        for (let i = 0; i < map.length; i++) {
          const v = dv.getUint32(i * 4, true);
          if (v === 0) continue;
          if (i >= ld.clusters || v > d.dataClusters) { stale = true; continue; }   // left by a shrink cut short
          if (!markCluster(s.alloc, v - 1)) {
            log.error(`lvstore '${d.name}': cluster ${v - 1} is mapped twice (lvol '${ld.name}', index ${i}): kept in the first lvol only`);
            stale = true;
            continue;
          }
          map[i] = v;
        }
        if (stale) repairs.push(s.rewriteMap(lv));
        for (let pg = ld.page; pg < ld.page + ld.pages; pg++) s.pageUsed[pg] = 1;
      }
      await Promise.all(repairs);
      stores.set(s.uuid, s);
      for (const lv of s.lvols.values()) s.registerBdev(lv);
    } catch (e) {
      stores.delete(s.uuid);
      for (const lv of s.lvols.values()) if (lv.bdev && registry.find(lv.bdev.name) === lv.bdev) await registry.unregister(lv.bdev.name);
      registry.release(base.name, owner);
      throw e;
    }
    log.notice(`lvstore '${s.name}' (${s.uuid}) found on bdev '${base.name}': ${s.lvols.size} lvol(s), ` +
      `${freeClusters(s.alloc)} of ${s.dataClusters} clusters free`);
    return s;
  }

  // ---- helpers ----

  private newLvol(d: LvolDesc): Lvol {
    const lv: Lvol = { ...d, map: new SharedArrayBuffer(d.pages * MAP_PAGE), locks: new SharedArrayBuffer(4 * Math.ceil(d.pages * MAP_PAGE / this.blockSize)), bdev: null };
    this.lvols.set(lv.uuid, lv);
    return lv;
  }

  private desc(lvols: LvolDesc[]): LvsDesc {
    return { v: 1, uuid: this.uuid, name: this.name, clusterSize: this.clusterSize, blockSize: this.blockSize,
      mapPages: this.mapPages, dataStart: this.dataStart, dataClusters: this.dataClusters, lvols };
  }

  private static descOf(lv: Lvol): LvolDesc {
    return { uuid: lv.uuid, name: lv.name, clusters: lv.clusters, thin: lv.thin, snapshot: lv.snapshot,
      readOnly: lv.readOnly, parent: lv.parent, page: lv.page, pages: lv.pages };
  }

  private current(): LvolDesc[] { return [...this.lvols.values()].map(LvolStore.descOf); }

  /** Flush, write the older superblock copy with seq+1, flush. */
  private async writeSuperblock(d: LvsDesc): Promise<void> {
    const seq = this.seq + 1;
    const img = encodeSuperblock(d, seq, this.blockSize);
    await ctrlIo.flush(this.base);
    await ctrlIo.write(this.base, (seq % 2) * SB_SLOT, img);
    await ctrlIo.flush(this.base);
    this.seq = seq;
  }

  /** Runs metadata changes one at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.queue.then(fn, fn);
    this.queue = r.catch(() => undefined);
    return r;
  }

  private takePages(n: number): number {
    for (let i = 0; i + n <= this.mapPages; i++) {
      let ok = true;
      for (let k = 0; k < n && ok; k++) if (this.pageUsed[i + k]) { ok = false; i += k; }
      if (ok) { this.pageUsed.fill(1, i, i + n); return i; }
    }
    throw new BdevError('invalid', `lvstore '${this.name}' has no room left for another cluster map of ${n} page(s): delete lvols or snapshots`);
  }

  private freePages(page: number, n: number): void { this.pageUsed.fill(0, page, page + n); }

  chainOf(lv: Lvol): Lvol[] {
    const out: Lvol[] = [];
    for (let p = lv.parent; p !== null;) {
      const a = this.lvols.get(p);
      if (!a) break;
      out.push(a);
      p = a.parent;
    }
    return out;
  }

  stateOf(lv: Lvol): LvolState {
    return { map: lv.map, locks: lv.locks, mapBlock: (MAP_START + lv.page * MAP_PAGE) / this.blockSize,
      chain: this.chainOf(lv).map((a) => a.map), readOnly: lv.readOnly };
  }

  clonesOf(lv: Lvol): Lvol[] { return [...this.lvols.values()].filter((x) => x.parent === lv.uuid); }

  allocated(lv: Lvol): number {
    const m = new Int32Array(lv.map);
    let n = 0;
    for (let i = 0; i < lv.clusters; i++) if (Atomics.load(m, i) > 0) n++;
    return n;
  }

  private registerBdev(lv: Lvol): void {
    const b = new LvolBdev(this, lv);
    this.registry.register(b);
    lv.bdev = b;
  }

  /** Tells every reactor's channels of `lv` its new map and parent chain. */
  private async pushState(lv: Lvol): Promise<void> {
    if (lv.bdev?.claimedBy) await ctrlIo.callAll('lvol.update', { uuid: lv.uuid, state: this.stateOf(lv) });
  }

  /** Writes the whole map of `lv` from memory (entries > 0 only). */
  private async rewriteMap(lv: Lvol, page = lv.page): Promise<void> {
    const img = new Uint8Array(lv.pages * MAP_PAGE), dv = new DataView(img.buffer), m = new Int32Array(lv.map);
    for (let i = 0; i < lv.clusters && i < m.length; i++) { const v = Atomics.load(m, i); if (v > 0) dv.setUint32(i * 4, v, true); }
    await ctrlIo.write(this.base, MAP_START + page * MAP_PAGE, img);
  }

  private clusterOffset(p: number): number { return this.dataStart + p * this.clusterSize; }

  private uniqueName(name: string): void {
    checkName('lvol name', name);
    if ([...this.lvols.values()].some((x) => x.name === name)) {
      throw new BdevError('exists', `lvol '${this.name}/${name}' already exists: pick another name`);
    }
  }

  // ---- operations (RPC) ----

  createLvol(name: string, sizeMiB: number, thin: boolean, clear: ClearMethod): Promise<string> {
    return this.serial(async () => {
      this.uniqueName(name);
      const clusters = this.clustersFor(sizeMiB);
      if (!thin && clusters > freeClusters(this.alloc)) {
        throw new BdevError('invalid', `lvstore '${this.name}' has ${freeClusters(this.alloc)} free clusters, the lvol needs ${clusters}: ` +
          `use a smaller size or thin_provision`);
      }
      const pages = mapPagesFor(clusters), page = this.takePages(pages);
      const d: LvolDesc = { uuid: randomUUID(), name, clusters, thin, snapshot: false, readOnly: false, parent: null, page, pages };
      const map = new Int32Array(new SharedArrayBuffer(pages * MAP_PAGE));
      const taken: number[] = [];
      try {
        if (!thin) {
          for (let i = 0; i < clusters; i++) {
            const p = allocCluster(this.alloc, this.dataClusters);
            if (p < 0) throw new BdevError('invalid', `lvstore '${this.name}' ran out of clusters`);
            taken.push(p);
            map[i] = p + 1;
          }
          // old data of the clusters must not show through: zeroed in runs of adjacent clusters
          if (clear !== 'none') {
            const sorted = [...taken].sort((a, b) => a - b);
            for (let k = 0; k < sorted.length;) {
              let e = k + 1;
              while (e < sorted.length && sorted[e] === sorted[e - 1] + 1) e++;
              await ctrlIo.writeZeroes(this.base, this.clusterOffset(sorted[k]), (e - k) * this.clusterSize);
              k = e;
            }
          }
        }
        const lvTmp = { ...d, map: map.buffer as SharedArrayBuffer } as Lvol;
        await this.rewriteMap(lvTmp);
        await this.writeSuperblock(this.desc([...this.current(), d]));
      } catch (e) {
        for (const p of taken) freeCluster(this.alloc, p);
        this.freePages(page, pages);
        throw e;
      }
      const lv = this.newLvol(d);
      new Int32Array(lv.map).set(map);
      this.registerBdev(lv);
      return lv.uuid;
    });
  }

  private clustersFor(sizeMiB: number): number {
    const bytes = sizeMiB * 1024 * 1024;
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new BdevError('invalid', `size_in_mib ${sizeMiB} is invalid: give a positive number of MiB`);
    return Math.ceil(bytes / this.clusterSize);
  }

  /**
   * The snapshot takes the lvol's map as it is; the lvol starts over with an empty map and reads
   * through the snapshot. While an lvol in use switches, its channels hold new I/Os and the switch
   * waits for those in flight, so the snapshot holds exactly the writes completed before it.
   */
  snapshot(lv: Lvol, name: string): Promise<string> {
    return this.serial(async () => {
      this.uniqueName(name);
      if (lv.readOnly) throw new BdevError('invalid', `'${lv.name}' is read-only (a snapshot already): clone it, then snapshot the clone`);
      const page = this.takePages(lv.pages);
      const snap: LvolDesc = { uuid: randomUUID(), name, clusters: lv.clusters, thin: false, snapshot: true, readOnly: true,
        parent: lv.parent, page: lv.page, pages: lv.pages };
      const after: LvolDesc = { ...LvolStore.descOf(lv), parent: snap.uuid, page, thin: true };
      let s: Lvol;
      try {
        await ctrlIo.writeZeroes(this.base, MAP_START + page * MAP_PAGE, lv.pages * MAP_PAGE);
        s = await this.whileFrozen(lv, 'the snapshot', async () => {
          await this.writeSuperblock(this.desc([...this.current().map((x) => (x.uuid === lv.uuid ? after : x)), snap]));
          const sn = this.newLvol(snap);
          sn.map = lv.map; sn.locks = lv.locks;
          lv.map = new SharedArrayBuffer(lv.pages * MAP_PAGE);
          lv.locks = new SharedArrayBuffer(sn.locks.byteLength);
          lv.parent = snap.uuid; lv.page = page; lv.thin = true;
          return sn;
        });
      } catch (e) { this.freePages(page, lv.pages); throw e; }
      this.registerBdev(s);
      return s.uuid;
    });
  }

  /**
   * Runs `fn` while the lvol's channels on every reactor hold new I/Os and none is in flight (if
   * it is in use), then lets them go on with the lvol's state as `fn` left it (unchanged if it threw).
   */
  private async whileFrozen<T>(lv: Lvol, what: string, fn: () => Promise<T>): Promise<T> {
    if (!lv.bdev?.claimedBy) return fn();
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new BdevError('invalid', `lvol '${lv.name}' still had I/O in flight after ${FREEZE_LIMIT_MS / 1000} s: ` +
        `${what} was not done; retry when its base bdev '${this.base.name}' responds`)), FREEZE_LIMIT_MS);
    });
    let changed = false;
    try {
      await Promise.race([ctrlIo.callAll('lvol.freeze', { uuid: lv.uuid }), limit]);
      const r = await fn();
      changed = true;
      return r;
    } finally {
      clearTimeout(timer);
      await ctrlIo.callAll('lvol.thaw', { uuid: lv.uuid, state: changed ? this.stateOf(lv) : null });
    }
  }

  clone(snap: Lvol, name: string): Promise<string> {
    return this.serial(async () => {
      this.uniqueName(name);
      if (!snap.readOnly) throw new BdevError('invalid', `'${snap.name}' is not a snapshot (read-only lvol): only snapshots can be cloned`);
      const page = this.takePages(snap.pages);
      const d: LvolDesc = { uuid: randomUUID(), name, clusters: snap.clusters, thin: true, snapshot: false, readOnly: false,
        parent: snap.uuid, page, pages: snap.pages };
      try {
        await ctrlIo.writeZeroes(this.base, MAP_START + page * MAP_PAGE, snap.pages * MAP_PAGE);
        await this.writeSuperblock(this.desc([...this.current(), d]));
      } catch (e) { this.freePages(page, snap.pages); throw e; }
      const lv = this.newLvol(d);
      this.registerBdev(lv);
      return lv.uuid;
    });
  }

  resize(lv: Lvol, sizeMiB: number): Promise<void> {
    return this.serial(async () => {
      if (lv.readOnly) throw new BdevError('invalid', `'${lv.name}' is read-only (a snapshot): it cannot be resized`);
      const n = this.clustersFor(sizeMiB), old = lv.clusters;
      if (n === old) return;
      const inUse = lv.bdev?.claimedBy ?? null;
      if (n < old && inUse) {
        throw new BdevError('claimed', `lvol '${lv.name}' is in use by ${inUse}: it can grow, but not shrink from ${old} to ${n} clusters`);
      }
      if (n * 4 > lv.pages * MAP_PAGE) {
        // the map moves to a bigger run of pages (while no I/O of the lvol is in flight)
        const pages = mapPagesFor(n), page = this.takePages(pages);
        const moved = { ...LvolStore.descOf(lv), clusters: n, page, pages };
        try {
          await this.whileFrozen(lv, 'the resize', async () => {
            await this.rewriteMap({ ...lv, pages }, page);
            await this.writeSuperblock(this.desc(this.current().map((x) => (x.uuid === lv.uuid ? moved : x))));
            const map = new Int32Array(new SharedArrayBuffer(pages * MAP_PAGE));
            map.set(new Int32Array(lv.map));
            this.freePages(lv.page, lv.pages);
            lv.map = map.buffer as SharedArrayBuffer;
            lv.locks = new SharedArrayBuffer(4 * Math.ceil(pages * MAP_PAGE / this.blockSize));
            lv.page = page; lv.pages = pages; lv.clusters = n;
          });
        } catch (e) {
          if (lv.page !== page) this.freePages(page, pages);
          throw e;
        }
      } else {
        await this.writeSuperblock(this.desc(this.current().map((x) => (x.uuid === lv.uuid ? { ...x, clusters: n } : x))));
        lv.clusters = n;
        if (n < old) {
          // cut clusters leave the map on disk (superblock first: a crash in between is repaired at load)
          const m = new Int32Array(lv.map), freed: number[] = [];
          for (let i = n; i < old; i++) { const v = Atomics.load(m, i); if (v > 0) { freed.push(v - 1); Atomics.store(m, i, 0); } }
          await this.rewriteMap(lv);
          await ctrlIo.flush(this.base);
          for (const p of freed) freeCluster(this.alloc, p);
        }
      }
      lv.bdev?.refresh();
    });
  }

  /** inflate: every cluster allocated (copied from the parent chain or zeroed); decouple: only those the chain has. */
  inflate(lv: Lvol, all: boolean): Promise<void> {
    return this.serial(async () => {
      if (lv.readOnly) throw new BdevError('invalid', `'${lv.name}' is read-only (a snapshot): it cannot be inflated`);
      if (lv.parent === null && !(all && lv.thin)) {
        throw new BdevError('invalid', `lvol '${lv.name}' has no parent${all ? ' and is not thin provisioned' : ''}: nothing to ${all ? 'inflate' : 'decouple'}`);
      }
      const chain = this.chainOf(lv).map((a) => new Int32Array(a.map));
      const m = new Int32Array(lv.map), locks = new Int32Array(lv.locks), epb = this.blockSize / 4;
      const mapBase = MAP_START + lv.page * MAP_PAGE;
      const one = async (i: number): Promise<void> => {
        // claim the entry as a first write would (a writer on a reactor waits, or we wait for it)
        for (;;) {
          const v = Atomics.load(m, i);
          if (v !== 0 && v !== MAP_BUSY) break;
          if (v === 0 && Atomics.compareExchange(m, i, 0, MAP_BUSY) === 0) break;
          await sleep(1);
        }
        if (Atomics.load(m, i) !== MAP_BUSY) return;
        let src = -1;
        for (const c of chain) if (i < c.length && c[i] > 0) { src = c[i] - 1; break; }
        if (src < 0 && !all) { Atomics.store(m, i, 0); return; }
        const p = allocCluster(this.alloc, this.dataClusters);
        if (p < 0) {
          Atomics.store(m, i, 0);
          throw new BdevError('invalid', `lvstore '${this.name}' ran out of free clusters while inflating '${lv.name}' ` +
            `(the lvol is consistent and still has its parent): free space and retry`);
        }
        const blk = Math.floor(i / epb), img = new Uint8Array(this.blockSize);
        try {
          if (src >= 0) await ctrlIo.write(this.base, this.clusterOffset(p), await ctrlIo.read(this.base, this.clusterOffset(src), this.clusterSize));
          else await ctrlIo.writeZeroes(this.base, this.clusterOffset(p), this.clusterSize);
          while (Atomics.compareExchange(locks, blk, 0, 1) !== 0) await sleep(1);
          try {
            mapBlockImage(m, blk, epb, new DataView(img.buffer), i, p + 1);
            await ctrlIo.write(this.base, mapBase + blk * this.blockSize, img);
            Atomics.store(m, i, p + 1);
          } finally { Atomics.store(locks, blk, 0); }
        } catch (e) {
          if (Atomics.load(m, i) === MAP_BUSY) { Atomics.store(m, i, 0); freeCluster(this.alloc, p); }
          throw e;
        }
      };
      // a few clusters at a time: each is a read, a write and a map-block write on the base
      let next = 0;
      const worker = async () => { while (next < lv.clusters) await one(next++); };
      const results = await Promise.allSettled(Array.from({ length: INFLATE_PARALLEL }, worker));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const after = { ...LvolStore.descOf(lv), parent: null, thin: all ? false : lv.thin };
      await this.writeSuperblock(this.desc(this.current().map((x) => (x.uuid === lv.uuid ? after : x))));
      lv.parent = null; lv.thin = after.thin;
      await this.pushState(lv);
    });
  }

  /**
   * Deletes an lvol. As SPDK: a snapshot with more than one clone cannot be deleted; a snapshot
   * with one clone hands its clusters to the clone, which then reads through the snapshot's parent.
   */
  deleteLvol(lv: Lvol): Promise<void> {
    return this.serial(async () => {
      const clones = this.clonesOf(lv);
      if (clones.length > 1) {
        throw new BdevError('claimed', `snapshot '${this.name}/${lv.name}' has ${clones.length} clones (${clones.map((c) => c.name).join(', ')}): ` +
          `delete or inflate all but one of them first`);
      }
      const heir = clones[0];
      if (lv.bdev) await this.registry.unregister(lv.bdev.name);   // refuses while a controller uses it
      let merged: Int32Array | null = null;
      try {
        const others = this.current().filter((x) => x.uuid !== lv.uuid);
        if (!heir) await this.writeSuperblock(this.desc(others));
        else {
          // the clone's new map (its own clusters, else the snapshot's) goes to new pages: one
          // superblock switch moves both; the clone's I/O waits meanwhile if it is in use
          const pages = heir.pages, page = this.takePages(pages);
          try {
            await this.whileFrozen(heir, 'the merge into the clone', async () => {
              const map = new Int32Array(new SharedArrayBuffer(pages * MAP_PAGE)), own = new Int32Array(heir.map), old = new Int32Array(lv.map);
              for (let i = 0; i < heir.clusters; i++) map[i] = own[i] > 0 ? own[i] : i < lv.clusters && old[i] > 0 ? old[i] : 0;
              await this.rewriteMap({ ...heir, map: map.buffer as SharedArrayBuffer }, page);
              await this.writeSuperblock(this.desc(others.map((x) => (x.uuid === heir.uuid ? { ...x, parent: lv.parent, page } : x))));
              merged = map;
              this.lvols.delete(lv.uuid);
              this.freePages(heir.page, heir.pages);
              heir.map = map.buffer as SharedArrayBuffer;
              heir.locks = new SharedArrayBuffer(heir.locks.byteLength);
              heir.page = page;
              heir.parent = lv.parent;
            });
          } catch (e) {
            if (!merged) this.freePages(page, pages);
            throw e;
          }
        }
      } catch (e) {
        if (!merged && this.lvols.has(lv.uuid)) this.registerBdev(lv);
        throw e;
      }
      this.lvols.delete(lv.uuid);
      const m = new Int32Array(lv.map), kept: Int32Array | null = merged;
      for (let i = 0; i < m.length; i++) if (m[i] > 0 && !(kept && i < heir!.clusters && kept[i] === m[i])) freeCluster(this.alloc, m[i] - 1);
      this.freePages(lv.page, lv.pages);
    });
  }

  /** bdev_lvol_set_read_only: writes fail from now on; the lvol can then be cloned like a snapshot. */
  setReadOnly(lv: Lvol): Promise<void> {
    return this.serial(async () => {
      if (lv.readOnly) return;
      await this.writeSuperblock(this.desc(this.current().map((x) => (x.uuid === lv.uuid ? { ...x, readOnly: true } : x))));
      lv.readOnly = true;
      await this.pushState(lv);
    });
  }

  rename(lv: Lvol, name: string): Promise<void> {
    return this.serial(async () => {
      this.uniqueName(name);
      await this.writeSuperblock(this.desc(this.current().map((x) => (x.uuid === lv.uuid ? { ...x, name } : x))));
      lv.name = name;
      lv.bdev?.refresh();
    });
  }

  renameStore(name: string): Promise<void> {
    return this.serial(async () => {
      checkName('lvs_name', name);
      if ([...stores.values()].some((s) => s !== this && s.name === name)) throw new BdevError('exists', `lvstore '${name}' already exists`);
      const old = this.name;
      this.name = name;
      try { await this.writeSuperblock(this.desc(this.current())); } catch (e) { this.name = old; throw e; }
      this.base.claimedBy = LvolStore.claimOwner(name);
      for (const lv of this.lvols.values()) lv.bdev?.refresh();
    });
  }

  /** Removes the lvstore: its lvols (none may be in use) and the superblocks. */
  destroy(): Promise<void> {
    return this.serial(async () => {
      const used = [...this.lvols.values()].filter((lv) => lv.bdev?.claimedBy);
      if (used.length) {
        throw new BdevError('claimed', `lvstore '${this.name}' has lvols in use (${used.map((l) => `${l.name} by ${l.bdev!.claimedBy}`).join(', ')}): remove those first`);
      }
      for (const lv of this.lvols.values()) if (lv.bdev) await this.registry.unregister(lv.bdev.name);
      await ctrlIo.writeZeroes(this.base, 0, MAP_START);
      await ctrlIo.flush(this.base);
      stores.delete(this.uuid);
      this.registry.release(this.base.name, LvolStore.claimOwner(this.name));
      await ctrlIo.release(this.base);
    });
  }

  /** The base bdev went away (shutdown): forget the lvstore. */
  static forgetBase(base: Bdev): void {
    for (const s of stores.values()) if (s.base === base) stores.delete(s.uuid);
  }

  describe(): Record<string, unknown> {
    return { uuid: this.uuid, name: this.name, base_bdev: this.base.name, total_data_clusters: this.dataClusters,
      free_clusters: freeClusters(this.alloc), block_size: this.blockSize, cluster_size: this.clusterSize };
  }

  describeLvol(lv: Lvol): Record<string, unknown> {
    const parent = lv.parent ? this.lvols.get(lv.parent) : undefined;
    const clones = this.clonesOf(lv);
    return {
      lvol_store_uuid: this.uuid, base_bdev: this.base.name, thin_provision: lv.thin,
      num_allocated_clusters: this.allocated(lv), snapshot: lv.snapshot, clone: parent !== undefined,
      ...(parent ? { base_snapshot: parent.name } : {}), ...(clones.length ? { clones: clones.map((c) => c.name) } : {}),
      esnap_clone: false,
    };
  }

  /** An entry of bdev_lvol_get_lvols (SPDK's fields). */
  listLvol(lv: Lvol): Record<string, unknown> {
    return { alias: `${this.name}/${lv.name}`, uuid: lv.uuid, name: lv.name, is_thin_provisioned: lv.thin,
      is_snapshot: lv.snapshot, is_clone: lv.parent !== null, is_esnap_clone: false, is_degraded: false,
      num_allocated_clusters: this.allocated(lv), lvs: { name: this.name, uuid: this.uuid } };
  }
}

function checkName(what: string, name: string): void {
  if (name.length === 0 || name.length > 63) throw new BdevError('invalid', `${what} '${name}' must be 1 to 63 characters long`);
  if (name.includes('/')) throw new BdevError('invalid', `${what} '${name}' must not contain '/'`);
}

function sleep(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }
