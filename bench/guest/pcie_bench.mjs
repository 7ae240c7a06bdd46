// In-guest bench (run by node in the nested guest of test/e2e/lib/nested_guest.ts, from the
// built dist/): the same emulated NVMe SSD read two ways, in alternating rounds of one
// guest run:
//   vhost   vhost-load -> vhostd vhost-blk on Nvme0n1 -> vhostd's NVMe driver over VFIO
//   kernel  fio (libaio, O_DIRECT) -> the guest kernel's nvme driver
// Between rounds the SSD is rebound (vfio-pci <-> nvme); vhostd detaches and re-attaches.
// Prints one "sample={...}" line per run. Env: NVME_ADDR, VHOST_LOAD, RUNS, RUNTIME, CASES, VL_MODE.
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { RpcClient } from '../../dist/src/cli/rpc-client.js';

const addr = process.env.NVME_ADDR;
const vl = process.env.VHOST_LOAD;
const RUNS = Number(process.env.RUNS ?? 3);
const RUNTIME = Number(process.env.RUNTIME ?? 5);
const CASES = (process.env.CASES ?? 'randread:1,randread:32,randwrite:32').split(',').map((c) => {
  const [rw, qd] = c.split(':');
  return { rw, qd: Number(qd) };
});
const SPAN = '64m';
// vhost-load sleeps on the call eventfd (--irq) unless VL_MODE=poll: under TCG a polling
// vCPU takes host CPU from QEMU's device emulation (fio on the kernel driver sleeps too)
const VL_IRQ = (process.env.VL_MODE ?? 'irq') !== 'poll';
const dir = '/tmp/pcie-bench';
mkdirSync(dir, { recursive: true });
const rpcSock = `${dir}/rpc.sock`, blkSock = `${dir}/vhost.0`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sh = (cmd) => new Promise((resolve) => execFile('bash', ['-c', cmd], { timeout: 300_000 }, (e, so, se) =>
  resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, out: so + se })));
const fail = (why) => { console.log(`fatal=${JSON.stringify(why)}`); process.exit(1); };

function vhostLoad(args) {
  return new Promise((resolve) => {
    execFile(vl, ['--socket', blkSock, '--json', '--cpus', '1', ...(VL_IRQ ? ['--irq'] : []), ...args], { timeout: 300_000 }, (e, so) => {
      try { resolve(JSON.parse(so)); } catch { resolve({ ok: false, error: String(e) }); }
    });
  });
}

const vhostd = spawn(process.execPath, ['dist/src/cli/vhostd.js', '-m', '0x1', '-r', rpcSock, '-S', dir], { stdio: 'ignore' });
for (let i = 0; !existsSync(rpcSock); i++) { if (i > 1200) fail('vhostd did not start'); await sleep(100); }
const c = await RpcClient.connect(rpcSock, 120_000);

async function attach() {
  await c.call('bdev_nvme_attach_controller', { name: 'Nvme0', trtype: 'PCIe', traddr: addr });
  await c.call('vhost_create_blk_controller', { ctrlr: 'vhost.0', dev_name: 'Nvme0n1' });
}
async function detach() {
  await c.call('vhost_delete_controller', { ctrlr: 'vhost.0' });
  await c.call('bdev_nvme_detach_controller', { name: 'Nvme0' });
}
async function rebind(driver) {
  const r = await sh(`. /tmp/inner_lib.sh; bind_driver ${addr} ${driver}`);
  if (r.code) fail(`bind ${driver}: ${r.out}`);
}
async function kernelDev() {
  for (let i = 0; i < 300; i++) {
    const d = readdirSync('/sys/block').find((b) => /^nvme\d+n1$/.test(b));
    if (d) return d;
    await sleep(100);
  }
  fail('no nvme block device after binding the kernel driver');
}

// the image is filled with data by the host before boot: no reads of holes on either path
await attach();

for (let rep = 1; rep <= RUNS; rep++) {
  const order = rep % 2 ? ['vhost', 'kernel'] : ['kernel', 'vhost'];
  for (const path of order) {
    if (path === 'vhost') {
      if (rep > 1 || order[0] !== 'vhost') { await rebind('vfio-pci'); await attach(); }
      for (const cs of CASES) {
        const j = await vhostLoad(['--rw', cs.rw, '--bs', '4k', '--qd', String(cs.qd), '--size', SPAN,
          '--time', String(RUNTIME), '--warmup', '1']);
        console.log(`sample=${JSON.stringify({ rep, path, rw: cs.rw, qd: cs.qd, iops: j.iops ?? -1, p50: j.total?.lat_us?.p50 ?? -1, ok: j.ok })}`);
      }
      await detach();
    } else {
      await rebind('nvme');
      const dev = await kernelDev();
      for (const cs of CASES) {
        const r = await sh(`fio --name=peer --filename=/dev/${dev} --direct=1 --ioengine=libaio --rw=${cs.rw} --bs=4k ` +
          `--iodepth=${cs.qd} --size=${SPAN} --time_based --runtime=${RUNTIME} --ramp_time=1 --output-format=json`);
        let iops = -1, p50 = -1;
        try {
          const j = JSON.parse(r.out.slice(r.out.indexOf('{')));
          const side = cs.rw.includes('read') ? j.jobs[0].read : j.jobs[0].write;
          iops = side.iops;
          p50 = (side.clat_ns?.percentile?.['50.000000'] ?? -1000) / 1000;
        } catch { /* iops -1 */ }
        console.log(`sample=${JSON.stringify({ rep, path, rw: cs.rw, qd: cs.qd, iops: Math.round(iops), p50, ok: iops > 0 })}`);
      }
    }
  }
}
await c.call('spdk_kill_instance', { sig_name: 'SIGTERM' }).catch(() => {});
for (let i = 0; i < 100 && vhostd.exitCode === null; i++) await sleep(100);
if (vhostd.exitCode === null) vhostd.kill('SIGKILL');
console.log('bench_done=1');
