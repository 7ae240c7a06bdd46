// Every RPC method the daemon registers has a vhostctl subcommand, and the subcommands
// added for the file bdevs and nvmf build the right params (checked against the daemon).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ok, run, Daemon, VHOSTCTL } from './daemon.js';

describe('vhostctl subcommands', () => {
  let d: Daemon;
  beforeAll(async () => { d = await startDaemon(['--disable-cpumask-locks']); });
  afterAll(async () => { await d.stop(); });
  const ctl = (...args: string[]) => run(VHOSTCTL, ['-s', d.sock, ...args]);

  it('has a subcommand for every method in rpc_get_methods', async () => {
    const methods: string[] = await ok(d.sock, 'rpc_get_methods');
    const help = await run(VHOSTCTL, ['--help']);
    expect(help.code).toBe(0);
    const commands = new Set([...help.stdout.split('Commands:')[1].matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]));
    expect(commands.size).toBeGreaterThan(30);
    // a new RPC without a vhostctl subcommand (src/cli/commands/*) fails here
    expect(methods.filter((m) => !commands.has(m))).toEqual([]);
  });

  it('bdev_uring_* and bdev_aio_* take rpc.py arguments', async () => {
    const file = join(d.dir, 'disk.img');
    writeFileSync(file, Buffer.alloc(1 << 20));
    let r = await ctl('bdev_uring_create', file, 'Uring0', '512');
    expect(r, r.stderr).toMatchObject({ code: 0, stdout: 'Uring0\n' });
    r = await ctl('bdev_aio_create', '-r', file, 'Aio0');
    expect(r.code, r.stderr).toBe(0);
    const bdevs = await ok(d.sock, 'bdev_get_bdevs');
    expect(bdevs.find((b: { name: string }) => b.name === 'Uring0')).toMatchObject({ block_size: 512, num_blocks: 2048 });
    expect(bdevs.find((b: { name: string }) => b.name === 'Aio0')).toBeTruthy();
    expect((await ctl('bdev_uring_rescan', 'Uring0')).code).toBe(0);
    expect((await ctl('bdev_aio_rescan', 'Aio0')).code).toBe(0);
    expect((await ctl('bdev_wait_for_examine')).stdout).toBe('true\n');
    expect((await ctl('bdev_uring_delete', 'Uring0')).stdout).toBe('true\n');
    expect((await ctl('bdev_aio_delete', 'Aio0')).stdout).toBe('true\n');
    r = await ctl('bdev_uring_create', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing name/);
  });

  it('nvmf_* build a VFIOUSER subsystem with a namespace and a listener', async () => {
    const nqn = 'nqn.2019-07.io.spdk:cnode9';
    await ok(d.sock, 'bdev_malloc_create', { name: 'M9', num_blocks: 2048, block_size: 512 });
    const steps = [
      ['nvmf_create_transport', '-t', 'VFIOUSER', '-M'],
      ['nvmf_create_subsystem', nqn, '-a', '-s', 'SN9', '-m', '4'],
      ['nvmf_subsystem_add_ns', nqn, 'M9', '-n', '3'],
      ['nvmf_subsystem_add_listener', nqn, '-t', 'VFIOUSER', '-a', d.dir, '-s', '0'],
    ];
    for (const s of steps) {
      const r = await ctl(...s);
      expect(r.code, `${s.join(' ')}: ${r.stderr}`).toBe(0);
    }
    expect(existsSync(join(d.dir, 'cntrl'))).toBe(true);
    const r = await ctl('nvmf_get_subsystems', nqn);
    const sub = JSON.parse(r.stdout)[0];
    expect(sub).toMatchObject({ nqn, serial_number: 'SN9' });
    expect(sub.namespaces).toEqual([expect.objectContaining({ nsid: 3, bdev_name: 'M9' })]);
    expect(sub.listen_addresses[0]).toMatchObject({ trtype: 'VFIOUSER', traddr: d.dir });
    expect((await ctl('nvmf_delete_subsystem', nqn)).stdout).toBe('true\n');
    expect(await ok(d.sock, 'nvmf_get_subsystems')).toEqual([]);
  });
});
