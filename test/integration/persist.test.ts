// --config-file: the running configuration survives a restart (and a SIGKILL).
import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, tmpDir } from './daemon.js';

describe('persistent configuration (--config-file)', () => {
  it('is rewritten after every change and restored at start, before any client reconnects', async () => {
    const dir = tmpDir();
    const file = join(dir, 'running.json');
    const d = await startDaemon(['--config-file', file], dir);
    try {
      expect(existsSync(file)).toBe(true);
      await ok(d.sock, 'bdev_malloc_create', { name: 'P0', num_blocks: 2048, block_size: 512 });
      expect(readFileSync(file, 'utf8')).toContain('"P0"');
      await ok(d.sock, 'bdev_null_create', { name: 'N0', num_blocks: 64, block_size: 4096 });
      await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: 'pc0', dev_name: 'P0' });
      await ok(d.sock, 'bdev_null_delete', { name: 'N0' });
      const saved = JSON.parse(readFileSync(file, 'utf8'));
      expect(saved).toEqual(await ok(d.sock, 'save_config'));
    } finally {
      d.proc.kill('SIGKILL');          // no orderly shutdown: the file must already be complete
      await d.exited;
    }
    const d2 = await startDaemon(['--config-file', file], dir);
    try {
      const bdevs = await ok(d2.sock, 'bdev_get_bdevs');
      expect(bdevs.map((b: { name: string }) => b.name)).toEqual(['P0']);
      const ctrls = await ok(d2.sock, 'vhost_get_controllers');
      expect(ctrls).toMatchObject([{ ctrlr: 'pc0', backend_specific: { block: { bdev: 'P0' } } }]);
      expect(existsSync(join(dir, 'pc0'))).toBe(true);
    } finally { await d2.stop(); }
  });
});
