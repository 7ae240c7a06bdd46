// lvstore building blocks: the two-copy superblock (a torn or older copy loses to the valid
// newer one), the persisted image of a map block, and the shared cluster allocator (every
// cluster handed out once, also to two threads allocating at the same time).
import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { encodeSuperblock, decodeSuperblock, pickSuperblock, layout, mapPagesFor, SB_SLOT, LvsDesc } from '../../bdev/lvol/lvs_format.js';
import { allocCluster, freeCluster, freeClusters, markCluster, mapBlockImage, newAllocator, MAP_BUSY } from '../../bdev/lvol/lvol_shared.js';

const desc = (name: string): LvsDesc => ({ v: 1, uuid: '6f1c1d2e-0000-4000-8000-000000000001', name, clusterSize: 1 << 20, blockSize: 512,
  mapPages: 256, dataStart: 2 << 20, dataClusters: 60,
  lvols: [{ uuid: 'u1', name: 'a', clusters: 4, thin: true, snapshot: false, readOnly: false, parent: null, page: 0, pages: 1 }] });

describe('lvstore superblock', () => {
  it('round-trips, refuses torn copies and picks the newest valid one', () => {
    const a = encodeSuperblock(desc('old'), 7, 512), b = encodeSuperblock(desc('new'), 8, 512);
    expect(a.length % 512).toBe(0);
    expect(decodeSuperblock(a)).toEqual({ desc: desc('old'), seq: 7 });
    const region = new Uint8Array(2 * SB_SLOT);
    region.set(a, SB_SLOT);      // seq 7 in copy B
    region.set(b, 0);            // seq 8 in copy A
    expect(pickSuperblock(region)!.desc.name).toBe('new');
    region[40] ^= 0xff;          // copy A torn: the older copy wins
    expect(decodeSuperblock(region.subarray(0, SB_SLOT))).toBeNull();
    expect(pickSuperblock(region)!.desc.name).toBe('old');
    expect(pickSuperblock(new Uint8Array(2 * SB_SLOT))).toBeNull();
  });

  it('lays out map pages before whole data clusters; maps get power-of-two pages', () => {
    const l = layout(64 << 20, 1 << 20);
    expect(l.dataStart % (1 << 20)).toBe(0);
    expect(l.dataStart).toBeGreaterThanOrEqual(2 * SB_SLOT + l.mapPages * 4096);
    expect(l.dataClusters).toBe(64 - l.dataStart / (1 << 20));
    expect([1, 1024, 1025, 5000].map(mapPagesFor)).toEqual([1, 1, 2, 8]);
  });
});

describe('cluster maps and the allocator', () => {
  it('writes entries > 0 only, with the new entry substituted', () => {
    const map = new Int32Array(300);
    map[0] = 5; map[1] = MAP_BUSY; map[130] = 9;
    const out = new DataView(new ArrayBuffer(512));
    mapBlockImage(map, 0, 128, out, 2, 42);
    expect([out.getUint32(0, true), out.getUint32(4, true), out.getUint32(8, true), out.getUint32(12, true)]).toEqual([5, 0, 42, 0]);
    mapBlockImage(map, 1, 128, out, -1, 0);
    expect(out.getUint32(8, true)).toBe(9);
  });

  it('hands out every cluster once, then -1; frees and marks', () => {
    const a = new Int32Array(newAllocator(70));
    const got = new Set<number>();
    for (let i = 0; i < 70; i++) got.add(allocCluster(a, 70));
    expect(got.size).toBe(70);
    expect(Math.min(...got)).toBe(0); expect(Math.max(...got)).toBe(69);
    expect(allocCluster(a, 70)).toBe(-1);
    expect(freeClusters(a)).toBe(0);
    freeCluster(a, 33);
    expect(freeClusters(a)).toBe(1);
    expect(allocCluster(a, 70)).toBe(33);
    const b = new Int32Array(newAllocator(10));
    expect(markCluster(b, 3)).toBe(true);
    expect(markCluster(b, 3)).toBe(false);   // mapped twice: detected at load
    expect(freeClusters(b)).toBe(9);
  });

  it('two threads allocating at once never get the same cluster', async () => {
    const N = 20000;
    const sab = newAllocator(N);
    const url = pathToFileURL(resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/bdev/lvol/lvol_shared.js')).href;
    const src = `const { workerData, parentPort } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then((m) => {
        const a = new Int32Array(workerData.sab), out = [];
        for (;;) { const p = m.allocCluster(a, workerData.n); if (p < 0) break; out.push(p); }
        parentPort.postMessage(out);
      });`;
    const run = () => new Promise<number[]>((res, rej) => {
      const w = new Worker(src, { eval: true, workerData: { sab, n: N } });
      w.once('message', res); w.once('error', rej);
    });
    const [x, y] = await Promise.all([run(), run()]);
    const all = new Set([...x, ...y]);
    expect(x.length + y.length).toBe(N);
    expect(all.size).toBe(N);
  });
});
