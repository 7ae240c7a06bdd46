// The layer rule (scripts/check-imports.mjs): no import cycle, no import up the layer order.
import { describe, it, expect } from 'vitest';
// @ts-ignore: a plain .mjs script without type declarations
import { buildGraph, findViolations, layerOf, LAYERS } from '../../scripts/check-imports.mjs';

describe('import layers', () => {
  it('the tree has no import cycle and no upward import', () => {
    expect(findViolations(buildGraph())).toEqual([]);
  });

  it('the check catches a cycle, an upward import and a missing file', () => {
    const g = new Map<string, string[]>([
      ['bdev/a.ts', ['bdev/b.ts']],
      ['bdev/b.ts', ['bdev/a.ts', 'targets/t.ts', 'bdev/gone.ts']],
      ['targets/t.ts', []],
    ]);
    const v: string[] = findViolations(g);
    expect(v).toContainEqual(expect.stringMatching(/^import cycle: bdev\/a\.ts <-> bdev\/b\.ts$/));
    expect(v).toContainEqual(expect.stringMatching(/bdev\/b\.ts \(bdev\) imports targets\/t\.ts \(target\)/));
    expect(v).toContainEqual(expect.stringMatching(/bdev\/gone\.ts, which does not exist/));
  });

  it('places files by the first matching layer', () => {
    const name = (f: string) => LAYERS[layerOf(f)].name;
    expect(name('native/libc.ts')).toBe('native');
    expect(name('bdev/bdev_io.ts')).toBe('core');
    expect(name('src/rpc/server.ts')).toBe('framework');
    expect(name('bdev/malloc/malloc.ts')).toBe('bdev');
    expect(name('src/vhost/device.ts')).toBe('transport');
    expect(name('targets/nvme/nvme_ctrlr.ts')).toBe('target');
    expect(name('src/daemon.ts')).toBe('app');
    expect(name('bench/run.ts')).toBe('tools');
  });
});
