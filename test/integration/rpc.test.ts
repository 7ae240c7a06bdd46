// vhostd's JSON-RPC control plane, driven over its real socket in a real process.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { startDaemon, rawExchange, rpc, ok, run, Daemon, VHOSTCTL, VHOSTD, tmpDir } from './daemon.js';

const req = (id: number | null | undefined, method: string, params?: unknown) =>
  JSON.stringify({ jsonrpc: '2.0', ...(id === undefined ? {} : { id }), method, ...(params === undefined ? {} : { params }) });

describe('vhostd RPC server', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(); });
  afterAll(async () => { await d.stop(); });

  it('answers spdk_get_version and lists methods', async () => {
    const v = await ok(d.sock, 'spdk_get_version');
    expect(v.version).toMatch(/^vhostd v\d+\.\d+\.\d+/);
    expect(v.fields).toMatchObject({ major: expect.any(Number), minor: expect.any(Number), patch: expect.any(Number) });
    const methods: string[] = await ok(d.sock, 'rpc_get_methods');
    for (const m of ['bdev_malloc_create', 'bdev_null_create', 'bdev_get_bdevs', 'bdev_get_iostat', 'framework_get_reactors',
      'framework_get_subsystems', 'framework_get_config', 'save_config', 'spdk_kill_instance', 'log_set_level']) {
      expect(methods).toContain(m);
    }
    const current: string[] = await ok(d.sock, 'rpc_get_methods', { current: true });
    expect(current).not.toContain('framework_start_init');
    expect(current).toContain('bdev_malloc_create');
  });

  it('describes reactors from the cpumask', async () => {
    const r = await ok(d.sock, 'framework_get_reactors');
    expect(r.tick_rate).toBeGreaterThan(0);
    expect(r.reactors).toEqual([expect.objectContaining({ lcore: 0 })]);
    // a real pinned worker thread, not the main thread, accounting its time
    expect(r.reactors[0].tid).not.toBe(r.pid);
    expect(r.reactors[0].busy + r.reactors[0].idle).toBeGreaterThan(0);
  });

  it('creates, lists, and deletes malloc and null bdevs with SPDK result shapes', async () => {
    const uuid = '0d5c8fe2-38a8-4a52-8f3c-5d4f2a6c7b10';
    expect(await ok(d.sock, 'bdev_malloc_create', { name: 'M1', num_blocks: 2048, block_size: 512, uuid })).toBe('M1');
    const auto = await ok(d.sock, 'bdev_malloc_create', { num_blocks: 16, block_size: 4096 });
    expect(auto).toMatch(/^Malloc\d+$/);
    expect(await ok(d.sock, 'bdev_null_create', { name: 'N1', num_blocks: 1000, block_size: 4096 })).toBe('N1');
    const [m] = await ok(d.sock, 'bdev_get_bdevs', { name: 'M1' });
    expect(m).toMatchObject({
      name: 'M1', aliases: [], product_name: 'Malloc disk', block_size: 512, num_blocks: 2048, uuid, claimed: false,
      zoned: false, assigned_rate_limits: { rw_ios_per_sec: 0, rw_mbytes_per_sec: 0, r_mbytes_per_sec: 0, w_mbytes_per_sec: 0 },
      supported_io_types: { read: true, write: true, unmap: true, flush: true, reset: true, write_zeroes: true, zcopy: false },
      driver_specific: {},
    });
    const [n] = await ok(d.sock, 'bdev_get_bdevs', { name: 'N1' });
    expect(n.product_name).toBe('Null disk');
    const byUuid = await ok(d.sock, 'bdev_get_bdevs', { name: uuid });
    expect(byUuid[0].name).toBe('M1');
    const all = (await ok(d.sock, 'bdev_get_bdevs')).map((b: { name: string }) => b.name);
    expect(all).toEqual(expect.arrayContaining(['M1', auto, 'N1']));
    // SPDK's own optional params at their defaults are accepted (what SPDK's save_config writes)
    expect(await ok(d.sock, 'bdev_null_create', { name: 'N2', num_blocks: 8, block_size: 512, physical_block_size: 512,
      md_size: 0, dif_type: 0, dif_is_head_of_md: false, dif_pi_format: 0 })).toBe('N2');
    expect(await ok(d.sock, 'bdev_malloc_delete', { name: 'M1' })).toBe(true);
    expect(await ok(d.sock, 'bdev_malloc_delete', { name: auto })).toBe(true);
    expect(await ok(d.sock, 'bdev_null_delete', { name: 'N1' })).toBe(true);
    expect(await ok(d.sock, 'bdev_null_delete', { name: 'N2' })).toBe(true);
    expect(await ok(d.sock, 'bdev_get_bdevs')).toEqual([]);
  });

  it('bdev_get_bdevs waits up to timeout ms for a bdev to appear', async () => {
    const pending = rpc(d.sock, 'bdev_get_bdevs', { name: 'Late', timeout: 3000 });
    await new Promise((r) => setTimeout(r, 200));
    await ok(d.sock, 'bdev_null_create', { name: 'Late', num_blocks: 8, block_size: 512 });
    const r = await pending;
    expect(r.result[0].name).toBe('Late');
    const miss = await rpc(d.sock, 'bdev_get_bdevs', { name: 'Never', timeout: 100 });
    expect(miss.error?.code).toBe(-19);
    await ok(d.sock, 'bdev_null_delete', { name: 'Late' });
  });

  it('reports and resets iostat in SPDK fields', async () => {
    await ok(d.sock, 'bdev_null_create', { name: 'S1', num_blocks: 8, block_size: 512 });
    const st = await ok(d.sock, 'bdev_get_iostat', { name: 'S1' });
    expect(st.tick_rate).toBe(1e9);
    expect(st.bdevs).toHaveLength(1);
    expect(st.bdevs[0]).toMatchObject({ name: 'S1', bytes_read: 0, num_read_ops: 0, bytes_written: 0, num_write_ops: 0,
      bytes_unmapped: 0, num_unmap_ops: 0, read_latency_ticks: 0, max_read_latency_ticks: 0, min_read_latency_ticks: 0,
      write_latency_ticks: 0, unmap_latency_ticks: 0 });
    const pc = await ok(d.sock, 'bdev_get_iostat', { name: 'S1', per_channel: true });
    expect(pc.name).toBe('S1');
    expect(pc.channels).toHaveLength(1);
    expect((await rpc(d.sock, 'bdev_get_iostat', { per_channel: true })).error?.code).toBe(-22);
    expect(await ok(d.sock, 'bdev_reset_iostat', { name: 'S1', mode: 'maxmin' })).toBe(true);
    expect(await ok(d.sock, 'bdev_reset_iostat')).toBe(true);
    expect((await rpc(d.sock, 'bdev_reset_iostat', { name: 'nope' })).error?.code).toBe(-19);
    await ok(d.sock, 'bdev_null_delete', { name: 'S1' });
  });

  it('maps the log methods to SPDK level names', async () => {
    expect(await ok(d.sock, 'log_get_level')).toBe('NOTICE');
    expect(await ok(d.sock, 'log_set_level', { level: 'debug' })).toBe(true);
    expect(await ok(d.sock, 'log_get_level')).toBe('DEBUG');
    await ok(d.sock, 'log_set_level', { level: 'NOTICE' });
    expect(await ok(d.sock, 'log_set_flag', { flag: 'bdev' })).toBe(true);
    expect((await ok(d.sock, 'log_get_flags')).bdev).toBe(true);
    await ok(d.sock, 'log_clear_flag', { flag: 'bdev' });
    expect((await ok(d.sock, 'log_get_flags')).bdev).toBe(false);
    const bad = await rpc(d.sock, 'log_set_level', { level: 'LOUD' });
    expect(bad.error?.code).toBe(-32602);
    expect(bad.error?.message).toMatch(/LOUD.*ERROR, WARNING, NOTICE, INFO, DEBUG/);
  });

  it('handles requests split across writes and several in one write', async () => {
    const a = req(1, 'spdk_get_version'), b = req(2, 'bdev_get_bdevs', { name: 'x"}{' }), c = req(3, 'log_get_level');
    const all = a + b + c;
    // split inside a string holding braces and an escaped quote, and between values
    const cut1 = all.indexOf('\\"') + 1, cut2 = all.indexOf('log_get') + 3;   // cut1: between the backslash and the escaped quote
    expect(cut1).toBeGreaterThan(5);
    const lines = await rawExchange(d.sock, [all.slice(0, 5), all.slice(5, cut1), all.slice(cut1, cut2), all.slice(cut2)], 3);
    const rs = lines.map((l) => JSON.parse(l));
    expect(rs.map((r) => r.id)).toEqual([1, 2, 3]);
    expect(rs[1].error.code).toBe(-19);
    expect(rs[2].result).toBe('NOTICE');
    // one byte per write
    const bytes = [...Buffer.from(req(9, 'log_get_level'))].map((x) => Buffer.from([x]));
    const [one] = await rawExchange(d.sock, bytes, 1, 1);
    expect(JSON.parse(one)).toEqual({ jsonrpc: '2.0', id: 9, result: 'NOTICE' });
  });

  it('serves batches and stays silent for notifications', async () => {
    const batch = `[${req(1, 'log_get_level')},${req(undefined, 'log_set_level', { level: 'NOTICE' })},${req(2, 'nope')},7]`;
    const [line] = await rawExchange(d.sock, [batch], 1);
    const rs = JSON.parse(line);
    expect(rs).toHaveLength(3);
    expect(rs[0]).toEqual({ jsonrpc: '2.0', id: 1, result: 'NOTICE' });
    expect(rs[1].error.code).toBe(-32601);
    expect(rs[2]).toMatchObject({ id: null, error: { code: -32600 } });
    expect(JSON.parse((await rawExchange(d.sock, ['[]'], 1))[0]).error.code).toBe(-32600);
    // notifications, even failing ones, get nothing; the following request is answered alone
    const lines = await rawExchange(d.sock, [req(undefined, 'log_get_level') + req(undefined, 'nope') +
      `[${req(undefined, 'log_get_level')}]` + req(5, 'log_get_level')], 1);
    expect(lines.map((l) => JSON.parse(l).id)).toEqual([5]);
    expect(await rawExchange(d.sock, [req(undefined, 'bdev_null_create', { name: 'Note', num_blocks: 8, block_size: 512 })], 0)).toEqual([]);
    expect((await ok(d.sock, 'bdev_get_bdevs', { name: 'Note' }))[0].name).toBe('Note');
    await ok(d.sock, 'bdev_null_delete', { name: 'Note' });
  });

  it('rejects malformed requests with the JSON-RPC codes and keeps serving', async () => {
    const cases: [string, number, RegExp][] = [
      ['{"jsonrpc":"2.0","id":1,"method":}', -32700, /Parse error/],
      ['{"jsonrpc":"1.0","id":1,"method":"log_get_level"}', -32600, /"jsonrpc" must be "2.0"/],
      ['{"jsonrpc":"2.0","id":1}', -32600, /"method" must be a string/],
      ['{"jsonrpc":"2.0","id":1,"method":5}', -32600, /"method"/],
      ['{"jsonrpc":"2.0","id":{},"method":"log_get_level"}', -32600, /"id"/],
      ['{"jsonrpc":"2.0","id":1,"method":"log_get_level","params":3}', -32600, /"params"/],
      ['{"jsonrpc":"2.0","id":1,"method":"log_get_level","extra":1}', -32600, /unexpected member "extra"/],
      ['{"jsonrpc":"2.0","id":1,"method":"no_such_method"}', -32601, /no_such_method.*rpc_get_methods/],
      ['{"jsonrpc":"2.0","id":1,"method":"bdev_malloc_delete","params":["M0"]}', -32602, /params must be an object/],
    ];
    for (const [text, code, msg] of cases) {
      const [line] = await rawExchange(d.sock, [text], 1);
      const r = JSON.parse(line);
      expect(r.error.code, text).toBe(code);
      expect(r.error.message, text).toMatch(msg);
    }
    expect((await ok(d.sock, 'spdk_get_version')).version).toMatch(/vhostd/);
  });

  it('closes the connection on unsplittable garbage and on oversized requests', async () => {
    const g = await rawExchange(d.sock, [req(1, 'log_get_level') + 'hello'], 5);
    expect(g).toHaveLength(2);
    expect(JSON.parse(g[0]).result).toBe('NOTICE');
    expect(JSON.parse(g[1]).error).toMatchObject({ code: -32700, message: expect.stringMatching(/expected '\{' or '\['.*closing/) });
    const huge = `{"jsonrpc":"2.0","id":1,"method":"bdev_get_bdevs","params":{"name":"${'a'.repeat(1_100_000)}"}}`;
    const big = await rawExchange(d.sock, [huge], 5);
    expect(big).toHaveLength(1);
    expect(JSON.parse(big[0]).error).toMatchObject({ code: -32600, message: expect.stringMatching(/1048576-byte limit/) });
    // a truncated request followed by a disconnect does not hurt the daemon
    await rawExchange(d.sock, ['{"jsonrpc":"2.0","id":1,"meth'], 0);
    expect(await ok(d.sock, 'log_get_level')).toBe('NOTICE');
  });

  it('validates params and explains what is wrong', async () => {
    const cases: [string, unknown, number, RegExp][] = [
      ['bdev_malloc_create', { block_size: 512 }, -32602, /missing required parameter 'num_blocks'/],
      ['bdev_malloc_create', { num_blocks: 8, block_size: 512, colour: 'red' }, -32602, /unknown parameter 'colour'/],
      ['bdev_malloc_create', { num_blocks: '8', block_size: 512 }, -32602, /'num_blocks' must be an integer.*string "8"/],
      ['bdev_malloc_create', { num_blocks: 1.5, block_size: 512 }, -32602, /'num_blocks' must be an integer/],
      ['bdev_malloc_create', { num_blocks: -1, block_size: 512 }, -32602, /below the minimum 0/],
      ['bdev_null_create', { num_blocks: 8, block_size: 512 }, -32602, /missing required parameter 'name'/],
      ['bdev_get_bdevs', { name: 7 }, -32602, /'name' must be a string/],
      ['bdev_get_iostat', { reset_mode: 'some' }, -32602, /use one of all, maxmin, none/],
      ['rpc_get_methods', { current: 'yes' }, -32602, /'current' must be a boolean/],
      ['framework_get_reactors', { x: 1 }, -32602, /takes no parameters/],
      ['framework_get_config', { name: 'iscsi' }, -32602, /Subsystem 'iscsi' not found/],
      ['spdk_kill_instance', { sig_name: 'SIGFOO' }, -32602, /SIGFOO.*SIGTERM/],
      ['bdev_malloc_create', { num_blocks: 0, block_size: 512 }, -22, /num_blocks 0.*at least one block/],
      ['bdev_malloc_create', { num_blocks: 8, block_size: 1000 }, -22, /block_size 1000.*power of two/],
      ['bdev_null_create', { name: 'Z', num_blocks: 8, block_size: 0 }, -22, /block_size 0/],
      ['bdev_malloc_create', { num_blocks: Math.ceil(totalmem() / 4096) * 2, block_size: 4096 }, -22, /does not fit.*RAM/],
      ['bdev_malloc_create', { num_blocks: 8, block_size: 512, uuid: 'nope' }, -22, /uuid 'nope' is not a UUID/],
      ['bdev_malloc_create', { num_blocks: 8, block_size: 512, md_size: 8 }, -22, /md_size=8 is not supported/],
      ['bdev_null_create', { name: 'Z', num_blocks: 8, block_size: 512, dif_type: 1 }, -22, /dif_type=1 is not supported/],
      ['bdev_malloc_create', { num_blocks: 8, block_size: 512, physical_block_size: 4096 }, -22, /physical_block_size=4096/],
      ['bdev_malloc_delete', { name: 'ghost' }, -19, /'ghost' does not exist/],
      ['bdev_null_delete', {}, -32602, /missing required parameter 'name'/],
    ];
    for (const [method, params, code, msg] of cases) {
      const r = await rpc(d.sock, method, params);
      expect(r.error?.code, `${method} ${JSON.stringify(params)}`).toBe(code);
      expect(r.error?.message, method).toMatch(msg);
    }
    expect(await ok(d.sock, 'bdev_get_bdevs')).toEqual([]);   // nothing half-created
  });

  it('refuses duplicates and deleting through the wrong module', async () => {
    await ok(d.sock, 'bdev_malloc_create', { name: 'Dup', num_blocks: 8, block_size: 512 });
    const again = await rpc(d.sock, 'bdev_malloc_create', { name: 'Dup', num_blocks: 8, block_size: 512 });
    expect(again.error).toMatchObject({ code: -17, message: expect.stringMatching(/'Dup' already exists/) });
    const nul = await rpc(d.sock, 'bdev_null_create', { name: 'Dup', num_blocks: 8, block_size: 512 });
    expect(nul.error?.code).toBe(-17);
    const wrong = await rpc(d.sock, 'bdev_null_delete', { name: 'Dup' });
    expect(wrong.error).toMatchObject({ code: -22, message: expect.stringMatching(/malloc bdev, not a null bdev/) });
    await ok(d.sock, 'bdev_malloc_delete', { name: 'Dup' });
  });

  it('serves many concurrent clients', async () => {
    const calls = Array.from({ length: 40 }, (_, i) =>
      ok(d.sock, 'bdev_null_create', { name: `C${i}`, num_blocks: 8, block_size: 512 }));
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 40 }, (_, i) => `C${i}`));
    expect(await ok(d.sock, 'bdev_get_bdevs')).toHaveLength(40);
    await Promise.all(Array.from({ length: 40 }, (_, i) => ok(d.sock, 'bdev_null_delete', { name: `C${i}` })));
  });

  it('reports subsystems and their config', async () => {
    const subs = await ok(d.sock, 'framework_get_subsystems');
    expect(subs).toContainEqual({ subsystem: 'bdev', depends_on: [] });
    await ok(d.sock, 'bdev_null_create', { name: 'Cfg', num_blocks: 8, block_size: 512 });
    const cfg = await ok(d.sock, 'framework_get_config', { name: 'bdev' });
    expect(cfg).toEqual([{ method: 'bdev_null_create', params: expect.objectContaining({ name: 'Cfg', num_blocks: 8, block_size: 512 }) }]);
    await ok(d.sock, 'bdev_null_delete', { name: 'Cfg' });
  });

  it('refuses framework_start_init once running (SPDK state -1)', async () => {
    const r = await rpc(d.sock, 'framework_start_init');
    expect(r.error).toMatchObject({ code: -1, message: expect.stringMatching(/only be called before framework is initialized/) });
    expect(await ok(d.sock, 'framework_wait_init')).toBe(true);
  });
});

describe('vhostd lifecycle', () => {
  it('save_config, restart with -c: identical bdevs', async () => {
    const d = await startDaemon();
    await ok(d.sock, 'bdev_malloc_create', { name: 'Keep0', num_blocks: 4096, block_size: 512 });
    await ok(d.sock, 'bdev_null_create', { name: 'Keep1', num_blocks: 1 << 20, block_size: 4096, uuid: '11111111-2222-4333-8444-555555555555' });
    await ok(d.sock, 'bdev_malloc_create', { num_blocks: 64, block_size: 4096 });
    const before = await ok(d.sock, 'bdev_get_bdevs');
    const saved = await ok(d.sock, 'save_config');
    expect(saved.subsystems.map((s: { subsystem: string }) => s.subsystem)).toEqual(['bdev', 'vhost_blk', 'vhost_scsi', 'nvmf']);
    const file = join(d.dir, 'config.json');
    writeFileSync(file, JSON.stringify(saved, null, 2));
    expect(await d.stop()).toBe(0);
    expect(existsSync(d.sock)).toBe(false);

    const d2 = await startDaemon(['-c', file]);
    try {
      expect(await ok(d2.sock, 'bdev_get_bdevs')).toEqual(before);
      expect(await ok(d2.sock, 'save_config')).toEqual(saved);
    } finally { await d2.stop(); }
  });

  it('loads an SPDK-written config: harmless foreign calls skipped, unsupported ones refused by name', async () => {
    const dir = tmpDir();
    const spdkStyle = { subsystems: [
      { subsystem: 'keyring', config: [] },
      { subsystem: 'iobuf', config: [{ method: 'iobuf_set_options', params: { small_pool_count: 8192 } }] },
      { subsystem: 'sock', config: [{ method: 'sock_set_default_impl', params: { impl_name: 'posix' } }] },
      { subsystem: 'vmd', config: [] },
      { subsystem: 'accel', config: [{ method: 'accel_set_options', params: { small_cache_size: 128 } }] },
      { subsystem: 'bdev', config: [
        { method: 'bdev_set_options', params: { bdev_io_pool_size: 65535 } },
        { method: 'bdev_malloc_create', params: { name: 'Malloc0', num_blocks: 8192, block_size: 512, physical_block_size: 512,
          uuid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', optimal_io_boundary: 0, md_size: 0, dif_type: 0, dif_is_head_of_md: false,
          dif_pi_format: 0 } },
        { method: 'bdev_wait_for_examine' },
      ] },
      { subsystem: 'nbd', config: [] },
      { subsystem: 'scheduler', config: [{ method: 'framework_set_scheduler', params: { name: 'static' } }] },
    ] };
    const good = join(dir, 'spdk.json');
    writeFileSync(good, JSON.stringify(spdkStyle));
    const d = await startDaemon(['-c', good], dir);
    try {
      const [b] = await ok(d.sock, 'bdev_get_bdevs');
      expect(b).toMatchObject({ name: 'Malloc0', num_blocks: 8192, uuid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee' });
      expect(d.stderr()).toMatch(/iobuf_set_options.*skipped/);
    } finally { await d.stop(); }

    const bad = (cfg: unknown) => { const f = join(dir, `bad${Math.random()}.json`); writeFileSync(f, typeof cfg === 'string' ? cfg : JSON.stringify(cfg)); return f; };
    const cases: [string, RegExp][] = [
      [bad({ subsystems: [{ subsystem: 'iscsi', config: [{ method: 'iscsi_create_portal_group', params: {} }] }] }),
        /subsystems\[0\] 'iscsi' config\[0\]: subsystem 'iscsi' is not supported.*iscsi_create_portal_group/],
      [bad({ subsystems: [{ subsystem: 'bdev', config: [{ method: 'bdev_ocf_create', params: {} }] }] }),
        /subsystems\[0\] 'bdev' config\[0\]: method 'bdev_ocf_create' is not supported/],
      [bad({ subsystems: [{ subsystem: 'bdev', config: [{ method: 'bdev_malloc_create', params: { num_blocks: 0, block_size: 512 } }] }] }),
        /config\[0\]: bdev_malloc_create failed \(-22\).*num_blocks 0/],
      [bad('{"subsystems": ['), /not valid JSON/],
      [bad({ bdevs: [] }), /must be an object \{"subsystems"/],
      [join(dir, 'missing.json'), /cannot read config file/],
    ];
    for (const [file, msg] of cases) {
      const r = await run(VHOSTD, ['-r', join(dir, 'x.sock'), '-c', file]);
      expect(r.code, file).toBe(1);
      expect(r.stderr, file).toMatch(msg);
    }
  });

  it('--wait-for-rpc allows only startup methods until framework_start_init', async () => {
    const d = await startDaemon(['--wait-for-rpc']);
    try {
      const r = await rpc(d.sock, 'bdev_malloc_create', { num_blocks: 8, block_size: 512 });
      expect(r.error).toMatchObject({ code: -1, message: expect.stringMatching(/after framework is initialized using framework_start_init/) });
      expect(await ok(d.sock, 'spdk_get_version')).toBeTruthy();
      expect(await ok(d.sock, 'log_set_level', { level: 'INFO' })).toBe(true);
      const current: string[] = await ok(d.sock, 'rpc_get_methods', { current: true });
      expect(current).toContain('framework_start_init');
      expect(current).not.toContain('bdev_malloc_create');
      const waiter = rpc(d.sock, 'framework_wait_init');
      expect(await ok(d.sock, 'framework_start_init')).toBe(true);
      expect((await waiter).result).toBe(true);
      expect(await ok(d.sock, 'bdev_malloc_create', { name: 'After', num_blocks: 8, block_size: 512 })).toBe('After');
    } finally { await d.stop(); }
  });

  it('-c with --wait-for-rpc applies the runtime part at framework_start_init', async () => {
    const dir = tmpDir();
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ subsystems: [{ subsystem: 'bdev', config: [
      { method: 'bdev_null_create', params: { name: 'Deferred', num_blocks: 8, block_size: 512 } }] }] }));
    const d = await startDaemon(['--wait-for-rpc', '-c', file], dir);
    try {
      await ok(d.sock, 'framework_start_init');
      expect((await ok(d.sock, 'bdev_get_bdevs'))[0].name).toBe('Deferred');
    } finally { await d.stop(); }
  });

  it('refuses a socket a live daemon serves, replaces a stale one, and exits 0 on SIGINT', async () => {
    const d = await startDaemon();
    const second = await run(VHOSTD, ['-r', d.sock]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/already serving RPC on .*rpc\.sock/);
    expect(await ok(d.sock, 'spdk_get_version')).toBeTruthy();
    d.proc.kill('SIGKILL');           // leaves a stale socket file behind
    await d.exited;
    expect(existsSync(d.sock)).toBe(true);
    const d2 = await startDaemon([], d.dir);
    expect(await ok(d2.sock, 'spdk_get_version')).toBeTruthy();
    d2.proc.kill('SIGINT');
    expect(await d2.exited).toBe(0);
    expect(existsSync(d2.sock)).toBe(false);
  });

  it('spdk_kill_instance SIGTERM answers, then exits 0', async () => {
    const d = await startDaemon();
    expect(await ok(d.sock, 'spdk_kill_instance', { sig_name: 'SIGTERM' })).toBe(true);
    expect(await d.exited).toBe(0);
    expect(existsSync(d.sock)).toBe(false);
  });

  it('explains bad command lines', async () => {
    const help = await run(VHOSTD, ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--cpumask[\s\S]*--rpc-socket[\s\S]*--wait-for-rpc/);
    expect((await run(VHOSTD, ['--version'])).stdout).toMatch(/^vhostd v\d/);
    const cases: [string[], RegExp][] = [
      [['--bogus'], /unknown option '--bogus'/],
      [['-m', 'zz'], /-m: cpumask 'zz'/],
      [['-r'], /option -r needs a value/],
      [['--log-level', 'LOUD'], /--log-level 'LOUD'/],
      [['--metrics', 'nope'], /HOST:PORT/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(VHOSTD, args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });
});

describe('vhostctl', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(['-m', '0x3']); });
  afterAll(async () => { await d.stop(); });
  const ctl = (...args: string[]) => run(VHOSTCTL, ['-s', d.sock, ...args]);

  it('runs rpc.py-style subcommands with JSON output', async () => {
    let r = await ctl('bdev_malloc_create', '-b', 'Malloc0', '64', '512');
    expect(r).toMatchObject({ code: 0, stdout: 'Malloc0\n' });
    r = await ctl('bdev_null_create', 'Null0', '128', '4096');
    expect(r.stdout).toBe('Null0\n');
    r = await ctl('bdev_get_bdevs', '-b', 'Malloc0');
    expect(JSON.parse(r.stdout)[0]).toMatchObject({ name: 'Malloc0', num_blocks: 131072, block_size: 512 });
    r = await ctl('bdev_get_bdevs', '--name', 'Null0');
    expect(JSON.parse(r.stdout)[0]).toMatchObject({ num_blocks: 32768, block_size: 4096 });
    r = await ctl('framework_get_reactors');
    expect(JSON.parse(r.stdout).reactors.map((x: { lcore: number }) => x.lcore)).toEqual([0, 1]);
    r = await ctl('bdev_get_iostat', '-b', 'Null0', '-c');
    expect(JSON.parse(r.stdout).channels).toHaveLength(2);
    r = await ctl('call', 'bdev_get_bdevs', '{"name":"Null0"}');
    expect(JSON.parse(r.stdout)[0].name).toBe('Null0');
    r = await ctl('save_config');
    const cfg = JSON.parse(r.stdout);
    expect(cfg.subsystems[0].config).toHaveLength(2);
    expect((await ctl('bdev_malloc_delete', 'Malloc0')).stdout).toBe('true\n');
    expect((await ctl('bdev_null_delete', 'Null0')).code).toBe(0);
    // load_config from stdin recreates the same bdevs
    const file = join(d.dir, 'saved.json');
    writeFileSync(file, r.stdout);
    r = await run(VHOSTCTL, ['-s', d.sock, 'load_config'], readFileSync(file, 'utf8'));
    expect(r.code, r.stderr).toBe(0);
    const names = JSON.parse((await ctl('bdev_get_bdevs')).stdout).map((b: { name: string }) => b.name);
    expect(names.sort()).toEqual(['Malloc0', 'Null0']);
    await ctl('bdev_malloc_delete', 'Malloc0');
    await ctl('bdev_null_delete', 'Null0');
  });

  it('fails with a clear message and non-zero exit', async () => {
    let r = await ctl('bdev_malloc_delete', 'ghost');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bdev_malloc_delete failed: bdev 'ghost' does not exist.*\(code -19\)/);
    r = await ctl('bdev_malloc_create', '64');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing block_size/);
    r = await ctl('bdev_malloc_create', 'big', '512');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/total_size must be a number, got 'big'/);
    r = await ctl('no_such_command');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'no_such_command'.*vhostctl call/);
    r = await ctl('call', 'log_get_level', '{bad');
    expect(r.code).toBe(2);
    r = await run(VHOSTCTL, ['-s', join(d.dir, 'absent.sock'), 'spdk_get_version']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot connect to .*absent\.sock: is vhostd running\?/);
  });

  it('prints help for the tool and each command', async () => {
    const top = await run(VHOSTCTL, ['--help']);
    expect(top.stdout).toMatch(/bdev_malloc_create[\s\S]*call/);
    const sub = await ctl('bdev_malloc_create', '--help');
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/-b, --name NAME[\s\S]*total_size[\s\S]*block_size/);
  });
});
