// vhost-user-scsi controllers in a real vhostd process: SPDK's RPC semantics (delay/start,
// targets 0-7 or first free, claims, vhost_get_controllers, save_config round trip) and
// vhost-load as the vhost-user front end and virtio-scsi driver, with targets added and
// removed while it runs.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, copyFileSync, writeFileSync, rmSync } from 'node:fs';
import { homedir, cpus } from 'node:os';
import { join } from 'node:path';
import { startDaemon, rpc, ok, run, Daemon, VHOSTCTL, tmpDir } from './daemon.js';
import { P, u64, VhostUserClient } from '../fuzz/vhost_client.js';
import { inflightQueueBytes } from '../../src/virtio/inflight.js';

const SRC = '/work/shared/tools/vhost-load';
const BENCH = join(homedir(), '.cache/vhostd-bench/vhost-load');
const VHOST_LOAD = join(BENCH, 'vhost-load');

/** vhost-load, built from the shared tools into a directory outside the repo if missing; or why not. */
function buildVhostLoad(): Promise<string | null> {
  if (existsSync(VHOST_LOAD)) return Promise.resolve(null);
  if (!existsSync(join(SRC, 'vhost-load.c'))) return Promise.resolve(`no vhost-load sources at ${SRC}`);
  try {
    mkdirSync(BENCH, { recursive: true });
    for (const f of ['vhost-load.c', 'Makefile']) copyFileSync(join(SRC, f), join(BENCH, f));
  } catch (e) { return Promise.resolve(`cannot copy vhost-load sources: ${(e as Error).message}`); }
  return new Promise((resolve) => {
    execFile('make', ['-C', BENCH, 'vhost-load'], { timeout: 120_000 }, (e, _o, stderr) => {
      resolve(e || !existsSync(VHOST_LOAD) ? `vhost-load does not build: ${e?.message ?? ''} ${stderr}` : null);
    });
  });
}

interface LoadResult { code: number; out: string }
function vhostLoad(args: string[], timeoutMs = 60_000): Promise<LoadResult> {
  return new Promise((resolve) => {
    execFile(VHOST_LOAD, args, { timeout: timeoutMs }, (e, stdout, stderr) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 99) : 0, out: stdout + stderr });
    });
  });
}

const skipReason = await buildVhostLoad();
if (skipReason) console.warn(`vhost-scsi integration: vhost-load tests skipped: ${skipReason}`);
const mask = cpus().length >= 2 ? '0x3' : '0x1';

describe('vhost-user-scsi RPC', () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await startDaemon(['-m', mask]);
    for (const n of ['Malloc0', 'Malloc1', 'Malloc2']) {
      await ok(d.sock, 'bdev_malloc_create', { name: n, num_blocks: 16384, block_size: 512 });
    }
  });
  afterAll(async () => { await d.stop(); });

  it('delay: the socket appears only on vhost_start_scsi_controller', async () => {
    expect(await ok(d.sock, 'vhost_create_scsi_controller', { ctrlr: 'sd', delay: true })).toBe(true);
    expect(existsSync(join(d.dir, 'sd'))).toBe(false);
    expect(await ok(d.sock, 'vhost_start_scsi_controller', { ctrlr: 'sd' })).toBe(true);
    expect(existsSync(join(d.dir, 'sd'))).toBe(true);
    expect(await ok(d.sock, 'vhost_start_scsi_controller', { ctrlr: 'sd' })).toBe(true); // already started: no-op
    expect(await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'sd' })).toBe(true);
    expect(existsSync(join(d.dir, 'sd'))).toBe(false);
  });

  it('targets: numbers 0-7 or -1 for the first free, claims, errors', async () => {
    await ok(d.sock, 'vhost_create_scsi_controller', { ctrlr: 'scsi0', cpumask: mask });
    expect(existsSync(join(d.dir, 'scsi0'))).toBe(true);
    expect(await ok(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 2, bdev_name: 'Malloc0' })).toBe(2);
    expect(await ok(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: -1, bdev_name: 'Malloc1' })).toBe(0);
    let r = await rpc(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 2, bdev_name: 'Malloc2' });
    expect(r.error?.code).toBe(-17);
    r = await rpc(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 8, bdev_name: 'Malloc2' });
    expect(r.error?.code).toBe(-32602);
    r = await rpc(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 3, bdev_name: 'Malloc0' });
    expect(r.error?.code).toBe(-17); // already a target of this controller
    r = await rpc(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 3, bdev_name: 'nope' });
    expect(r.error?.code).toBe(-19);
    r = await rpc(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'nope', scsi_target_num: 3, bdev_name: 'Malloc2' });
    expect(r.error?.code).toBe(-19);
    // claimed bdevs cannot be deleted
    r = await rpc(d.sock, 'bdev_malloc_delete', { name: 'Malloc0' });
    expect(r.error?.code).toBe(-16);
    const [c] = await ok(d.sock, 'vhost_get_controllers', { name: 'scsi0' });
    expect(c).toMatchObject({ ctrlr: 'scsi0', cpumask: mask, socket: join(d.dir, 'scsi0'), sessions: [] });
    expect(c.backend_specific).toEqual({ scsi: [
      { scsi_dev_num: 0, id: 0, target_name: 'Target 0', luns: [{ id: 0, bdev_name: 'Malloc1' }] },
      { scsi_dev_num: 2, id: 2, target_name: 'Target 2', luns: [{ id: 0, bdev_name: 'Malloc0' }] },
    ] });
    expect(await ok(d.sock, 'vhost_scsi_controller_remove_target', { ctrlr: 'scsi0', scsi_target_num: 0 })).toBe(true);
    r = await rpc(d.sock, 'vhost_scsi_controller_remove_target', { ctrlr: 'scsi0', scsi_target_num: 0 });
    expect(r.error?.code).toBe(-19);
    const b = await ok(d.sock, 'bdev_get_bdevs', { name: 'Malloc1' });
    expect(b[0].claimed).toBe(false);
  });

  it('save_config emits SPDK\'s sequence and it loads back into a fresh daemon', async () => {
    await ok(d.sock, 'vhost_create_scsi_controller', { ctrlr: 'later', delay: true });
    await ok(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'later', scsi_target_num: 5, bdev_name: 'Malloc2' });
    const cfg = await ok(d.sock, 'save_config');
    const sub = cfg.subsystems.find((s: { subsystem: string }) => s.subsystem === 'vhost_scsi');
    expect(sub.config).toEqual([
      { method: 'vhost_create_scsi_controller', params: { ctrlr: 'scsi0', cpumask: mask, delay: true } },
      { method: 'vhost_scsi_controller_add_target', params: { ctrlr: 'scsi0', scsi_target_num: 2, bdev_name: 'Malloc0' } },
      { method: 'vhost_start_scsi_controller', params: { ctrlr: 'scsi0' } },
      { method: 'vhost_create_scsi_controller', params: { ctrlr: 'later', cpumask: mask, delay: true } },
      { method: 'vhost_scsi_controller_add_target', params: { ctrlr: 'later', scsi_target_num: 5, bdev_name: 'Malloc2' } },
    ]);
    const dir = tmpDir();
    const file = join(dir, 'cfg.json');
    writeFileSync(file, JSON.stringify(cfg));
    const d2 = await startDaemon(['-m', mask, '-c', file], dir);
    try {
      expect(await ok(d2.sock, 'vhost_get_controllers')).toEqual((await ok(d.sock, 'vhost_get_controllers')).map(
        (c: { socket: string }) => ({ ...c, socket: c.socket.replace(d.dir, dir) })));
      expect(existsSync(join(dir, 'scsi0'))).toBe(true);
      expect(existsSync(join(dir, 'later'))).toBe(false);
    } finally {
      await d2.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'later' }); // targets go with it, as in SPDK
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'Malloc2' }))[0].claimed).toBe(false);
  });

  it('GET_INFLIGHT_FD: one region for the control, event and all 62 request queues; more are refused', async () => {
    await ok(d.sock, 'vhost_create_scsi_controller', { ctrlr: 'ifl', cpumask: mask });
    const c = new VhostUserClient(join(d.dir, 'ifl'));
    try {
      c.call(P.REQ.SET_OWNER);
      const pf = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
      const want = (1n << BigInt(P.PF.INFLIGHT_SHMFD)) | (1n << BigInt(P.PF.REPLY_ACK));
      expect(pf & want).toBe(want);
      c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(want));
      c.ack = true;
      expect(c.callU64(P.REQ.GET_QUEUE_NUM)).toBe(64n);
      const ask = (numQueues: number, queueSize: number) => {
        const b = new Uint8Array(20), v = new DataView(b.buffer);
        v.setUint16(16, numQueues, true); v.setUint16(18, queueSize, true);
        c.send(P.REQ.GET_INFLIGHT_FD, b, { flags: P.FLAG_VERSION | P.FLAG_NEED_REPLY });
        return c.expectReply(P.REQ.GET_INFLIGHT_FD);
      };
      // QEMU's vhost-user-scsi asks for 2 + num_queues queues of virtqueue_size entries
      const r = ask(64, 128);
      expect(r.payload.length).toBe(20);
      const v = new DataView(r.payload.buffer);
      expect(Number(v.getBigUint64(0, true))).toBe(64 * inflightQueueBytes(128));
      expect([v.getUint16(16, true), v.getUint16(18, true)]).toEqual([64, 128]);
      const bad = ask(65, 128);
      expect(bad.payload.length).toBe(8);            // a refusing ack, not a region
      expect(new DataView(bad.payload.buffer).getBigUint64(0, true)).not.toBe(0n);
    } finally {
      c.close();
    }
    for (let i = 0; i < 100 && !/inflight region asked for 65/.test(d.stderr()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(d.stderr()).toMatch(/inflight region asked for 65 queues, but this controller has 1 to 64/);
    await ok(d.sock, 'vhost_delete_controller', { ctrlr: 'ifl' });
  });

  it('vhostctl speaks rpc.py\'s argument names', async () => {
    let r = await run(VHOSTCTL, ['-s', d.sock, 'vhost_create_scsi_controller', 'cli0', '--delay']);
    expect(r.code, r.stderr).toBe(0);
    r = await run(VHOSTCTL, ['-s', d.sock, 'vhost_scsi_controller_add_target', 'cli0', '-1', 'Malloc1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('0');
    r = await run(VHOSTCTL, ['-s', d.sock, 'vhost_start_scsi_controller', 'cli0']);
    expect(r.code, r.stderr).toBe(0);
    r = await run(VHOSTCTL, ['-s', d.sock, 'vhost_scsi_controller_remove_target', 'cli0', '0']);
    expect(r.code, r.stderr).toBe(0);
    r = await run(VHOSTCTL, ['-s', d.sock, 'vhost_delete_controller', 'cli0']);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe.skipIf(skipReason !== null)('vhost-user-scsi with vhost-load as the client', () => {
  let d: Daemon;
  let sock = '';
  beforeAll(async () => {
    d = await startDaemon(['-m', mask]);
    for (const n of ['Malloc0', 'Malloc1']) await ok(d.sock, 'bdev_malloc_create', { name: n, num_blocks: 32768, block_size: 512 });
    await ok(d.sock, 'vhost_create_scsi_controller', { ctrlr: 'scsi0', cpumask: mask });
    await ok(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 0, bdev_name: 'Malloc0' });
    sock = join(d.dir, 'scsi0');
  });
  afterAll(async () => { await d.stop(); });

  it('randrw with verification passes', async () => {
    const r = await vhostLoad(['-s', sock, '--type', 'scsi', '--verify', '--rw', 'randrw', '--qd', '16', '--time', '2']);
    expect(r.code, r.out + d.stderr()).toBe(0);
    expect(r.out).toMatch(/0 mismatches/);
    expect(r.out).toMatch(/VHOSTD\s+Malloc disk/);
  }, 60_000);

  it('two request queues, indirect descriptors, multi-segment buffers', async () => {
    const r = await vhostLoad(['-s', sock, '--type', 'scsi', '--verify', '--rw', 'randrw', '--qd', '8', '-j', '2',
      '--indirect', '--segs', '4', '--bs', '16k', '--time', '1']);
    expect(r.code, r.out + d.stderr()).toBe(0);
  }, 60_000);

  it('a target added and removed while I/O runs on another: I/O continues and verifies', async () => {
    const load = vhostLoad(['-s', sock, '--type', 'scsi', '--verify', '--rw', 'randrw', '--qd', '16', '--time', '4']);
    await new Promise((r) => setTimeout(r, 1200));
    expect(await ok(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 1, bdev_name: 'Malloc1' })).toBe(1);
    const [c] = await ok(d.sock, 'vhost_get_controllers', { name: 'scsi0' });
    expect(c.sessions.length).toBe(1);
    expect(c.backend_specific.scsi.map((t: { scsi_dev_num: number }) => t.scsi_dev_num)).toEqual([0, 1]);
    await new Promise((r) => setTimeout(r, 500));
    expect(await ok(d.sock, 'vhost_scsi_controller_remove_target', { ctrlr: 'scsi0', scsi_target_num: 1 })).toBe(true);
    const r = await load;
    expect(r.code, r.out + d.stderr()).toBe(0);
  }, 60_000);

  it('I/O to the added target works; an empty target fails cleanly; the daemon lives on', async () => {
    await ok(d.sock, 'vhost_scsi_controller_add_target', { ctrlr: 'scsi0', scsi_target_num: 1, bdev_name: 'Malloc1' });
    let r = await vhostLoad(['-s', sock, '--type', 'scsi', '--scsi-target', '1', '--verify', '--rw', 'randwrite', '--qd', '8', '--time', '1']);
    expect(r.code, r.out).toBe(0);
    r = await vhostLoad(['-s', sock, '--type', 'scsi', '--scsi-target', '5', '--rw', 'randread', '--time', '1']);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/BAD_TARGET|response 3/i);
    r = await vhostLoad(['-s', sock, '--type', 'scsi', '--scsi-lun', '3', '--rw', 'randread', '--time', '1']);
    expect(r.code).not.toBe(0);
    await ok(d.sock, 'vhost_scsi_controller_remove_target', { ctrlr: 'scsi0', scsi_target_num: 1 });
    expect((await ok(d.sock, 'spdk_get_version')).version).toMatch(/vhostd/);
  }, 60_000);

  it('delete refuses while a front end is connected', async () => {
    const load = vhostLoad(['-s', sock, '--type', 'scsi', '--rw', 'randread', '--time', '2']);
    await new Promise((r) => setTimeout(r, 1000));
    const r = await rpc(d.sock, 'vhost_delete_controller', { ctrlr: 'scsi0' });
    expect(r.error?.code).toBe(-16);
    expect((await load).code).toBe(0);
  }, 60_000);
});
