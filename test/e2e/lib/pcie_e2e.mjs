// In-guest end-to-end run of vhostd's NVMe bdev over the PCIe transport (run by node in
// the nested guest, from the built dist/; one node process so TCG starts node only twice):
//   1. vhostd starts; bdev_nvme_attach_controller -b Nvme0 -t PCIe -a <addr>; a vhost-blk
//      controller on Nvme0n1;
//   2. vhost-load --verify through it (patterned writes, every read checked);
//   3. bench: vhost-load randread through vhost-blk on Nvme0n1;
//   4. hot-remove with I/O in flight (echo 1 > .../remove): the I/O fails, vhostd lives on;
//   5. bench peer: rescan, the kernel nvme driver takes the disk, fio with the same workload.
// Prints key=value lines for the test. Env: NVME_ADDR, VHOST_LOAD, BENCH_S, BENCH_QD, BENCH_BS.
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { RpcClient } from '../../../dist/src/cli/rpc-client.js';

const addr = process.env.NVME_ADDR;
const vl = process.env.VHOST_LOAD;
const benchS = Number(process.env.BENCH_S ?? 8);
const qd = Number(process.env.BENCH_QD ?? 32);
const bs = process.env.BENCH_BS ?? '4k';
const dir = '/tmp/pcie';
mkdirSync(dir, { recursive: true });
const rpcSock = `${dir}/rpc.sock`, blkSock = `${dir}/vhost.0`;
const out = (k, v) => console.log(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sh = (cmd) => new Promise((resolve) => execFile('sh', ['-c', cmd], { timeout: 120_000 }, (e, so, se) =>
  resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, out: so + se })));

function runVl(args, timeoutMs = 120_000) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(vl, ['--socket', blkSock, '--json', '--cpus', '1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let so = '', se = '';
    p.stdout.on('data', (d) => (so += d));
    p.stderr.on('data', (d) => (se += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      let json = null;
      try { json = JSON.parse(so); } catch { /* see stderr */ }
      resolve({ code, json, stderr: se.slice(-2000), ms: Date.now() - t0 });
    });
  });
}

// ---- 1. vhostd, attach, vhost-blk controller
const t0 = Date.now();
const vhostd = spawn(process.execPath, ['dist/src/cli/vhostd.js', '-m', '0x1', '-r', rpcSock, '-S', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
let vlog = '';
vhostd.stdout.on('data', (d) => (vlog += d));
vhostd.stderr.on('data', (d) => (vlog += d));
let vhostdExit = null;
vhostd.on('exit', (code, sig) => (vhostdExit = code ?? sig));
const failAll = async (why) => { out('fatal', why); out('vhostd_log', vlog.slice(-4000)); vhostd.kill('SIGKILL'); process.exit(1); };
for (let i = 0; !existsSync(rpcSock); i++) {
  if (vhostdExit !== null || i > 600) await failAll(`vhostd did not start (exit ${vhostdExit})`);
  await sleep(100);
}
out('vhostd_start_ms', Date.now() - t0);
const c = await RpcClient.connect(rpcSock, 120_000);
const call = async (m, p) => { try { return { ok: true, r: await c.call(m, p) }; } catch (e) { return { ok: false, err: e.message }; } };

let t = Date.now();
const att = await call('bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'PCIe', traddr: addr });
out('attach', att);
out('attach_ms', Date.now() - t);
if (!att.ok) await failAll('attach failed');
const bd = await call('bdev_get_bdevs', { name: 'Nvme0n1' });
out('bdev', bd.ok ? { block_size: bd.r[0].block_size, num_blocks: bd.r[0].num_blocks, product_name: bd.r[0].product_name } : bd);
out('controllers', await call('bdev_nvme_get_controllers', {}));
const vc = await call('vhost_create_blk_controller', { ctrlr: 'vhost.0', dev_name: 'Nvme0n1' });
out('vhost_ctrlr', vc);
if (!vc.ok) await failAll('vhost controller failed');

// ---- 2. data integrity
t = Date.now();
const ver = await runVl(['--rw', 'randwrite', '--bs', '4k', '--qd', '16', '--time', '4', '--size', '16m', '--verify', '--seed', '7']);
out('verify_code', ver.code);
out('verify', ver.json ? { errors: ver.json.errors, mismatches: ver.json.verify?.mismatches, checked: ver.json.verify?.sectors_checked, ios: ver.json.total?.ios } : ver.stderr);
const verMix = await runVl(['--rw', 'randrw', '--bs', '16k', '--segs', '3', '--qd', '8', '--time', '3', '--size', '16m', '--offset', '32m', '--verify', '--seed', '9']);
out('verify_mix_code', verMix.code);
out('verify_mix', verMix.json ? { errors: verMix.json.errors, mismatches: verMix.json.verify?.mismatches, checked: verMix.json.verify?.sectors_checked } : verMix.stderr);
out('verify_ms', Date.now() - t);

// ---- 3. bench through vhost-blk
const bench = await runVl(['--irq', '--rw', 'randread', '--bs', bs, '--qd', String(qd), '--time', String(benchS), '--warmup', '1', '--size', '64m']);
out('bench_vhost_code', bench.code);
out('bench_vhost_iops', bench.json?.iops ?? -1);
out('bench_vhost_lat_p50_us', bench.json?.total?.lat_us?.p50 ?? -1);
const st = await call('bdev_get_iostat', { name: 'Nvme0n1' });
out('iostat', st.ok ? { reads: st.r.bdevs[0].num_read_ops, writes: st.r.bdevs[0].num_write_ops } : st);

// ---- 4. hot-remove with I/O in flight
// (a read run: it ends at --time with its counts; errors do not stop it, a hang would
// end it only at --io-timeout)
const bg = runVl(['--rw', 'randread', '--bs', '4k', '--qd', '8', '--time', '8', '--size', '64m', '--io-timeout', '30'], 90_000);
await sleep(3000);
t = Date.now();
const rm = await sh(`echo 1 > /sys/bus/pci/devices/${addr}/remove`);
out('remove_rc', rm.code);
out('remove_ms', Date.now() - t);
const inflight = await bg;
out('inflight_code', inflight.code);
out('inflight_after_remove_ms', Date.now() - t);
out('inflight', inflight.json ? { ok: inflight.json.ok, error: inflight.json.error, errors: inflight.json.errors, ios: inflight.json.total?.ios } : inflight.stderr);
const after = await runVl(['--rw', 'read', '--bs', '4k', '--qd', '1', '--time', '1', '--io-timeout', '20'], 60_000);
out('after_code', after.code);
out('after', after.json ? { ok: after.json.ok, error: after.json.error, errors: after.json.errors, ios: after.json.total?.ios } : after.stderr);
out('vhostd_alive', vhostdExit === null ? 1 : 0);
const ver2 = await call('spdk_get_version');
out('rpc_after_remove', ver2.ok ? 1 : ver2.err);
out('controllers_after_remove', await call('bdev_nvme_get_controllers', {}));
out('detach_in_use', await call('bdev_nvme_detach_controller', { name: 'Nvme0' }));
out('vhost_delete', await call('vhost_delete_controller', { ctrlr: 'vhost.0' }));
out('detach', await call('bdev_nvme_detach_controller', { name: 'Nvme0' }));
out('bdevs_after_detach', ((await call('bdev_get_bdevs', {})).r ?? []).map((b) => b.name));

// ---- 5. bench peer: the kernel nvme driver on the same disk, same workload
await sh(`. /tmp/inner_lib.sh; pci_rescan ${addr}`);
let dev = '';
for (let i = 0; i < 300 && !dev; i++) {
  try { dev = readdirSync('/sys/block').find((b) => /^nvme\d+n1$/.test(b)) ?? ''; } catch { /* */ }
  if (!dev) await sleep(100);
}
out('kernel_dev', dev || 'none');
if (dev) {
  const drv = readFileSync(`/sys/block/${dev}/device/device/uevent`, 'utf8').match(/DRIVER=(\S+)/)?.[1];
  out('kernel_driver', drv ?? 'none');
  const fio = await sh(`fio --name=peer --filename=/dev/${dev} --direct=1 --ioengine=libaio --rw=randread --bs=${bs} ` +
    `--iodepth=${qd} --size=64m --time_based --runtime=${benchS} --ramp_time=1 --output-format=json 2>&1`);
  let iops = -1, p50 = -1;
  try {
    const j = JSON.parse(fio.out.slice(fio.out.indexOf('{')));
    iops = j.jobs[0].read.iops;
    p50 = (j.jobs[0].read.clat_ns?.percentile?.['50.000000'] ?? -1000) / 1000;
  } catch { out('fio_output', fio.out.slice(-1500)); }
  out('bench_kernel_iops', Math.round(iops));
  out('bench_kernel_lat_p50_us', p50);
}

await c.call('spdk_kill_instance', { sig_name: 'SIGTERM' }).catch(() => {});
c.close?.();
for (let i = 0; i < 100 && vhostdExit === null; i++) await sleep(100);
if (vhostdExit === null) vhostd.kill('SIGKILL');
out('vhostd_exit', vhostdExit);
const errs = vlog.split('\n').filter((l) => /error|warn|fail|remov/i.test(l)).slice(-30);
out('vhostd_log_tail', errs);
