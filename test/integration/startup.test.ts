// Start-up and operator mistakes against the real daemon process: a second start next to a
// running vhostd, failures after controllers exist, files in the socket directory, bad -m,
// -r, --metrics and config syntax, and controller socket owner/group/mode.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { VHOSTD, ok, rpc, run, tmpDir } from './daemon.js';
import { vhostLoad } from '../lib/vhost_load.js';

const vl = vhostLoad();
const STARTED = /vhostd \S+ started/;

interface Proc {
  proc: ChildProcess;
  out: () => string;
  /** Exit code and the time (Date.now()) the process was seen to exit. */
  exited: Promise<{ code: number | null; at: number }>;
  /** When each stderr/stdout chunk arrived. */
  seen: (re: RegExp) => number | undefined;
}

/** Starts vhostd with CPU locks on, kept in `lockDir` (the suite otherwise disables them). */
function spawnVhostd(args: string[], lockDir: string): Proc {
  const env: NodeJS.ProcessEnv = { ...process.env, VHOSTD_CPU_LOCK_DIR: lockDir };
  delete env.VHOSTD_DISABLE_CPUMASK_LOCKS;
  const proc = spawn(process.execPath, [VHOSTD, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let text = '';
  const chunks: { t: number; s: string }[] = [];
  const add = (d: Buffer) => { text += d; chunks.push({ t: Date.now(), s: String(d) }); };
  proc.stdout!.on('data', add);
  proc.stderr!.on('data', add);
  const exited = new Promise<{ code: number | null; at: number }>((r) => proc.on('exit', (code) => r({ code, at: Date.now() })));
  const seen = (re: RegExp) => chunks.find((c) => re.test(c.s))?.t;
  return { proc, out: () => text, exited, seen };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function started(p: Proc): Promise<void> {
  let dead = false;
  void p.exited.then(() => { dead = true; });
  await until(() => dead || STARTED.test(p.out()), 20_000, 'vhostd start');
  if (dead) throw new Error(`vhostd exited early:\n${p.out()}`);
}

async function stop(p: Proc): Promise<number | null> {
  if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGTERM');
  return (await p.exited).code;
}

function blkConfig(ctrlrs: { ctrlr: string; dev: string }[], extra: object[] = []) {
  const bdevs = [...new Set(ctrlrs.map((c) => c.dev))].map((name) => ({ method: 'bdev_malloc_create', params: { name, num_blocks: 32768, block_size: 512 } }));
  return { subsystems: [
    { subsystem: 'bdev', config: bdevs },
    { subsystem: 'vhost_blk', config: [...ctrlrs.map((c) => ({ method: 'vhost_create_blk_controller', params: { ctrlr: c.ctrlr, dev_name: c.dev } })), ...extra] },
  ] };
}

const NO_STACK = /^\s+at /m;

describe('a second vhostd next to a running one', () => {
  it.skipIf(!vl.bin)(`exits non-zero naming the running instance; the first keeps its socket and its I/O${vl.why ? ` (skipped: ${vl.why})` : ''}`, async () => {
    const dir = tmpDir();
    const locks = join(dir, 'locks');
    mkdirSync(locks);
    const cfg = join(dir, 'cfg.json');
    writeFileSync(cfg, JSON.stringify(blkConfig([{ ctrlr: 'vhost.0', dev: 'Malloc0' }])));
    const args = ['-r', join(dir, 'rpc.sock'), '-S', dir, '-c', cfg];   // what `npm start` twice does
    const a = spawnVhostd(args, locks);
    await started(a);
    const sock = join(dir, 'vhost.0');
    const ino = statSync(sock).ino;
    try {
      // a guest stand-in: vhost-load writes and verifies until told to stop
      const load = spawn(vl.bin!, ['-s', sock, '--verify', '--rw', 'randrw', '--bs', '4k', '--qd', '8', '--size', '8m',
        '--time', '120', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let loadOut = '', loadErr = '';
      load.stdout!.on('data', (d) => { loadOut += d; });
      load.stderr!.on('data', (d) => { loadErr += d; });
      const loadDone = new Promise<number | null>((r) => load.on('exit', (c) => r(c)));
      await until(() => /front end connected/.test(a.out()), 10_000, 'vhost-load to connect');
      await new Promise((r) => setTimeout(r, 300));

      // same CPUs, RPC socket and socket dir; then CPU locks off; then also another RPC socket
      const same = spawnVhostd(args, locks);
      const noCpuLock = spawnVhostd([...args, '--disable-cpumask-locks'], locks);
      const otherRpc = spawnVhostd(['-r', join(dir, 'rpc2.sock'), '-S', dir, '-c', cfg, '--disable-cpumask-locks'], locks);
      const [r1, r2, r3] = await Promise.all([same.exited, noCpuLock.exited, otherRpc.exited]);
      const pid = a.proc.pid;
      expect(r1.code, same.out()).toBe(1);
      expect(same.out()).toMatch(new RegExp(`CPU 0 is already used by another vhostd \\(pid ${pid}, RPC socket ${dir}/rpc\\.sock\\); ` +
        'this instance stopped before changing anything'));
      expect(r2.code, noCpuLock.out()).toBe(1);
      expect(noCpuLock.out()).toMatch(new RegExp(`another vhostd \\(pid ${pid}\\) is already serving RPC on ${dir}/rpc\\.sock`));
      expect(r3.code, otherRpc.out()).toBe(1);
      expect(otherRpc.out()).toMatch(/vhost_create_blk_controller failed \(-16\): cannot create the socket .*vhost\.0: another process \(another vhostd\?\) is listening on it/);
      for (const p of [same, noCpuLock, otherRpc]) expect(p.out()).not.toMatch(NO_STACK);

      // the first daemon: same socket file, the guest never noticed, nothing probed its socket
      expect(statSync(sock).ino).toBe(ino);
      expect(load.exitCode, `vhost-load ended early: ${loadOut}${loadErr}`).toBeNull();
      expect(a.out()).not.toMatch(/refusing a front end|a front end waits until|front end disconnected/);
      load.kill('SIGINT');
      expect(await loadDone, loadErr).toBe(0);
      const res = JSON.parse(loadOut);
      expect(res).toMatchObject({ ok: true, interrupted: true, errors: 0, verify: { mismatches: 0 } });
      expect(res.total.ios).toBeGreaterThan(0);
      expect(existsSync(join(dir, 'rpc2.sock'))).toBe(false);
      expect((await ok(join(dir, 'rpc.sock'), 'vhost_get_controllers'))[0].ctrlr).toBe('vhost.0');
    } finally {
      expect(await stop(a)).toBe(0);
    }
    // a clean stop removes its lock files and sockets
    expect(readdirSync(locks)).toEqual([]);
    expect(existsSync(sock) || existsSync(join(dir, 'rpc.sock')) || existsSync(join(dir, 'rpc.sock.lock'))).toBe(false);
  }, 90_000);
});

describe('framework_disable_cpumask_locks / framework_enable_cpumask_locks', () => {
  it('releases the CPUs to another instance and takes them back once it is gone', async () => {
    const dir = tmpDir();
    const locks = join(dir, 'locks');
    mkdirSync(locks);
    const a = spawnVhostd(['-r', join(dir, 'a.sock'), '-S', dir], locks);
    await started(a);
    let b: Proc | undefined;
    try {
      expect(readdirSync(locks)).toEqual(['vhostd_cpu_lock_000']);
      expect(await ok(join(dir, 'a.sock'), 'framework_disable_cpumask_locks')).toBe(true);
      expect(readdirSync(locks)).toEqual([]);
      b = spawnVhostd(['-r', join(dir, 'b.sock'), '-S', dir], locks);
      await started(b);
      const r = await rpc(join(dir, 'a.sock'), 'framework_enable_cpumask_locks');
      expect(r.error?.code).toBe(-16);
      expect(r.error?.message).toMatch(new RegExp(`cannot lock the reactor CPUs: CPU 0 is already used by another vhostd \\(pid ${b.proc.pid}, RPC socket ${dir}/b\\.sock\\)`));
      expect(await stop(b)).toBe(0);
      expect(await ok(join(dir, 'a.sock'), 'framework_enable_cpumask_locks')).toBe(true);
      expect(JSON.parse(readFileSync(join(locks, 'vhostd_cpu_lock_000'), 'utf8')).pid).toBe(a.proc.pid);
    } finally {
      if (b) await stop(b);
      expect(await stop(a)).toBe(0);
    }
    expect(readdirSync(locks)).toEqual([]);
  }, 60_000);
});

describe('failed starts exit at once with a non-zero code', () => {
  it('a config entry failing after a controller exists: exit 1 within 2 s, nothing left behind, CPU free again', async () => {
    const dir = tmpDir();
    const locks = join(dir, 'locks');
    mkdirSync(locks);
    const cfg = join(dir, 'late.json');
    writeFileSync(cfg, JSON.stringify(blkConfig([{ ctrlr: 'vhost.1', dev: 'Malloc1' }],
      [{ method: 'vhost_create_blk_controller', params: { ctrlr: 'vhost.2', dev_name: 'Missing' } }])));
    const args = ['-r', join(dir, 'rpc.sock'), '-S', dir, '-c', cfg];
    const p = spawnVhostd(args, locks);
    const { code, at } = await p.exited;
    expect(code, p.out()).toBe(1);
    expect(p.out()).toMatch(/vhost-user-blk controller vhost\.1 on/);
    expect(p.out()).toMatch(/vhostd: subsystems\[1\] 'vhost_blk' config\[1\]: vhost_create_blk_controller failed \(-19\): bdev 'Missing' does not exist/);
    expect(p.out()).not.toMatch(NO_STACK);
    // from the controller's creation (the reactors run and the fd loop waits) to the exit
    const created = p.seen(/controller vhost\.1 on/)!;
    expect(at - created).toBeLessThan(2000);
    expect(existsSync(join(dir, 'vhost.1'))).toBe(false);
    expect(readdirSync(locks)).toEqual([]);
    // the CPU and the RPC socket are free: the same command line with a good config starts
    writeFileSync(cfg, JSON.stringify(blkConfig([{ ctrlr: 'vhost.1', dev: 'Malloc1' }])));
    const again = spawnVhostd(args, locks);
    await started(again);
    expect(await stop(again)).toBe(0);
  }, 60_000);

  it('--metrics on a busy port: exit 1 within 2 s of the reactors starting, with a clear message, before any controller', async () => {
    const dir = tmpDir();
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const cfg = join(dir, 'cfg.json');
      writeFileSync(cfg, JSON.stringify(blkConfig([{ ctrlr: 'vhost.0', dev: 'Malloc0' }])));
      const p = spawnVhostd(['-r', join(dir, 'rpc.sock'), '-S', dir, '-c', cfg, '--metrics', `127.0.0.1:${port}`], join(dir));
      const { code, at } = await p.exited;
      expect(code, p.out()).toBe(1);
      expect(p.out()).toMatch(new RegExp(`vhostd: --metrics 127\\.0\\.0\\.1:${port}: cannot listen: the port is already in use`));
      expect(p.out()).not.toMatch(NO_STACK);
      expect(at - p.seen(/reactor\(s\) started/)!).toBeLessThan(2000);
      expect(p.out()).not.toMatch(/controller vhost\.0 on/);
      expect(existsSync(join(dir, 'vhost.0')) || existsSync(join(dir, 'rpc.sock'))).toBe(false);
    } finally {
      busy.close();
    }
  }, 60_000);
});

describe('command-line and config mistakes', () => {
  it('-m with CPUs the machine lacks names the CPUs it has', async () => {
    const n = cpus().length;
    const mask = '0x' + (1n << BigInt(n + 6)).toString(16);
    const r = await run(VHOSTD, ['-m', mask, '-r', join(tmpDir(), 'x.sock')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`-m ${mask}: CPU ${n + 6} does not exist on this machine; its CPUs are 0${n > 1 ? `-${n - 1}` : ''} `));
    expect(r.stderr).not.toMatch(NO_STACK);
  });

  it('a config with a JSON syntax error names the line and column', async () => {
    const dir = tmpDir();
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{\n  "subsystems": [\n    { "subsystem": "bdev",\n      "config": [ { "method": "bdev_malloc_create", },\n    ] }\n  ]\n}\n');
    const r = await run(VHOSTD, ['-r', join(dir, 'x.sock'), '-S', dir, '-c', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`config file ${file} is not valid JSON: line 4, column 53: expected a property name in double quotes`));
    writeFileSync(file, '{"subsystems": [ {"subsystem": "bdev", "config": [ tru ] } ] }');
    const r2 = await run(VHOSTD, ['-r', join(dir, 'x.sock'), '-S', dir, '-c', file]);
    expect(r2.stderr).toMatch(/line 1, column 52: expected a value .* found 'tru'/);
  });

  it('-r and -S in a missing directory say that the directory is missing', async () => {
    const dir = tmpDir();
    const r = await run(VHOSTD, ['-r', join(dir, 'nope', 'rpc.sock'), '-S', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`-r ${dir}/nope/rpc\\.sock: directory ${dir}/nope does not exist: create it first`));
    const s = await run(VHOSTD, ['-r', join(dir, 'rpc.sock'), '-S', join(dir, 'gone')]);
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(new RegExp(`-S ${dir}/gone: directory ${dir}/gone does not exist`));
    expect(r.stderr + s.stderr).not.toMatch(/EACCES/);
    expect(r.stderr + s.stderr).not.toMatch(NO_STACK);
  });

  it('refuses bad --socket-owner and --socket-mode values', async () => {
    const dir = tmpDir();
    const base = ['-r', join(dir, 'rpc.sock'), '-S', dir];
    let r = await run(VHOSTD, [...base, '--socket-owner', 'no_such_user_vhostd']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--socket-owner no_such_user_vhostd: there is no user 'no_such_user_vhostd'/);
    r = await run(VHOSTD, [...base, '--socket-owner', 'root:no_such_group_vhostd']);
    expect(r.stderr).toMatch(/there is no group 'no_such_group_vhostd'/);
    r = await run(VHOSTD, [...base, '--socket-mode', '999']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--socket-mode '999' must be octal permission bits/);
  });
});

describe('the controller socket path', () => {
  let dir = '';
  let d: Proc;
  const sock = () => join(dir, 'rpc.sock');
  beforeAll(async () => {
    dir = tmpDir();
    d = spawnVhostd(['-r', join(dir, 'rpc.sock'), '-S', dir, '--disable-cpumask-locks'], join(dir));
    await started(d);
    await ok(sock(), 'bdev_malloc_create', { name: 'M0', num_blocks: 2048, block_size: 512 });
    await ok(sock(), 'bdev_malloc_create', { name: 'M1', num_blocks: 2048, block_size: 512 });
    return async () => { await stop(d); };
  });

  it('is refused when a regular file is there; the file is kept', async () => {
    const file = join(dir, 'disk.9');
    writeFileSync(file, 'precious data');
    const r = await rpc(sock(), 'vhost_create_blk_controller', { ctrlr: 'disk.9', dev_name: 'M0' });
    expect(r.error?.code).toBe(-17);
    expect(r.error?.message).toMatch(/cannot create the socket .*disk\.9: the path exists and is a regular file, which vhostd does not delete/);
    const s = await rpc(sock(), 'vhost_create_scsi_controller', { ctrlr: 'disk.9' });
    expect(s.error?.message).toMatch(/is a regular file/);
    expect(readFileSync(file, 'utf8')).toBe('precious data');
    // M0 was not claimed by the failed attempt
    expect(await ok(sock(), 'vhost_create_blk_controller', { ctrlr: 'disk.10', dev_name: 'M0' })).toBe(true);
    await ok(sock(), 'vhost_delete_controller', { ctrlr: 'disk.10' });
  });

  it('replaces a stale socket, refuses one another process listens on', async () => {
    const stale = join(dir, 'stale.0');
    // a process that dies listening leaves its socket file behind
    const gone = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))`, stale]);
    expect(gone.signal, String(gone.stderr)).toBe('SIGKILL');
    expect(statSync(stale).isSocket()).toBe(true);
    expect(await ok(sock(), 'vhost_create_blk_controller', { ctrlr: 'stale.0', dev_name: 'M1' })).toBe(true);
    await new Promise<void>((res, rej) => { const c = net.connect(stale, () => { c.destroy(); res(); }); c.on('error', rej); });
    // the daemon sees our close a moment later: until then the controller is busy (-16)
    for (let i = 0; ; i++) {
      const r = await rpc(sock(), 'vhost_delete_controller', { ctrlr: 'stale.0' });
      if (!r.error) break;
      expect(r.error.code).toBe(-16);
      if (i === 50) throw new Error(`vhost_delete_controller still refused after 5 s: ${r.error.message}`);
      await new Promise((w) => setTimeout(w, 100));
    }

    const live = join(dir, 'live.0');
    const other = net.createServer();
    await new Promise<void>((r) => other.listen(live, () => r()));
    try {
      const r = await rpc(sock(), 'vhost_create_blk_controller', { ctrlr: 'live.0', dev_name: 'M1' });
      expect(r.error?.code).toBe(-16);
      expect(r.error?.message).toMatch(/another process \(another vhostd\?\) is listening on it/);
      // still the other process's socket
      await new Promise<void>((res, rej) => { const c = net.connect(live, () => { c.destroy(); res(); }); c.on('error', rej); });
      const nvmeDir = join(dir, 'nvme');
      mkdirSync(nvmeDir);
      writeFileSync(join(nvmeDir, 'cntrl'), 'not a socket');
      await ok(sock(), 'nvmf_create_transport', { trtype: 'VFIOUSER' });
      await ok(sock(), 'nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:t', allow_any_host: true });
      const n = await rpc(sock(), 'nvmf_subsystem_add_listener', { nqn: 'nqn.2016-06.io.spdk:t',
        listen_address: { trtype: 'VFIOUSER', traddr: nvmeDir, trsvcid: '0' } });
      expect(n.error?.code).toBe(-17);
      expect(n.error?.message).toMatch(/cntrl: the path exists and is a regular file/);
      expect(readFileSync(join(nvmeDir, 'cntrl'), 'utf8')).toBe('not a socket');
    } finally {
      other.close();
    }
  });
});

describe('controller socket owner, group and mode', () => {
  const uid = (name: string) => Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
  const gid = (name: string) => Number(spawnSync('getent', ['group', name], { encoding: 'utf8' }).stdout.split(':')[2]);
  const haveNobody = spawnSync('id', ['-u', 'nobody']).status === 0 && spawnSync('getent', ['group', 'nogroup']).status === 0;
  const root = process.getuid?.() === 0;

  it.skipIf(!haveNobody || !root)('--socket-owner nobody:nogroup --socket-mode 0660: stat shows them, nobody connects, others cannot', async () => {
    const dir = tmpDir();
    chmodSync(dir, 0o711);   // the directory must be searchable by the QEMU user
    const nvmeDir = join(dir, 'nvme');
    mkdirSync(nvmeDir, { mode: 0o711 });
    const d = spawnVhostd(['-r', join(dir, 'rpc.sock'), '-S', dir, '--disable-cpumask-locks',
      '--socket-owner', 'nobody:nogroup', '--socket-mode', '0660'], dir);
    try {
      await started(d);
      const s = join(dir, 'rpc.sock');
      await ok(s, 'bdev_malloc_create', { name: 'M0', num_blocks: 2048, block_size: 512 });
      await ok(s, 'vhost_create_blk_controller', { ctrlr: 'blk0', dev_name: 'M0' });
      await ok(s, 'vhost_create_scsi_controller', { ctrlr: 'scsi0' });
      await ok(s, 'nvmf_create_transport', { trtype: 'VFIOUSER' });
      await ok(s, 'nvmf_create_subsystem', { nqn: 'nqn.2016-06.io.spdk:o', allow_any_host: true });
      await ok(s, 'nvmf_subsystem_add_listener', { nqn: 'nqn.2016-06.io.spdk:o', listen_address: { trtype: 'VFIOUSER', traddr: nvmeDir, trsvcid: '0' } });
      for (const p of [join(dir, 'blk0'), join(dir, 'scsi0'), join(nvmeDir, 'cntrl')]) {
        const st = statSync(p);
        expect(st.isSocket(), p).toBe(true);
        expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }, p).toEqual({ uid: uid('nobody'), gid: gid('nogroup'), mode: 0o660 });
      }
      // the RPC socket stays root's
      expect(statSync(s).uid).toBe(0);
      const connectAs = (ids: string[], path: string) => spawnSync('setpriv', [...ids, '--clear-groups', process.execPath, '-e',
        `const c=require('net').connect(process.argv[1]);c.on('connect',()=>{console.log('connected');c.destroy()});c.on('error',e=>{console.log(e.code)})`, path],
      { encoding: 'utf8', timeout: 20_000 }).stdout.trim();
      expect(connectAs(['--reuid=nobody', '--regid=nogroup'], join(dir, 'blk0'))).toBe('connected');
      expect(connectAs(['--reuid=54321', '--regid=54321'], join(dir, 'blk0'))).toBe('EACCES');
      expect(connectAs(['--reuid=54321', '--regid=nogroup'], join(nvmeDir, 'cntrl'))).toBe('connected');
    } finally {
      expect(await stop(d)).toBe(0);
    }
  }, 60_000);
});
