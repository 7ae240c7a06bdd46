// In-guest smoke test of native/vfio.ts + bdev/nvme/transport_pcie.ts (run by node inside
// the nested guest, from the built dist/): opens the NVMe controller bound to vfio-pci,
// reads CAP/VS from BAR0, DMA-maps memory at IOVA = hva and proves the device reaches it
// with one admin command (Identify Controller through a minimal admin queue), then checks
// the error paths and hot-remove (the kernel's request interrupt). Prints key=value lines.
//   node test/e2e/lib/vfio_smoke.mjs <nvme-pci-addr> <expected-serial> [<non-vfio-pci-addr>]
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { openTransport } from '../../../dist/bdev/nvme/transport.js';
import '../../../dist/bdev/nvme/transport_pcie.js';
import { view, memfdCreate, mmap, munmap, close, eventfdDrain, raw } from '../../../dist/native/libc.js';

const [addr, serial, otherAddr] = process.argv.slice(2);
const out = (k, v) => console.log(`${k}=${v}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hex = (n) => '0x' + n.toString(16);

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await sleep(1);
  }
}

async function expectError(what, f) {
  try { await f(); out(`err_${what}`, 'none'); } catch (e) { out(`err_${what}`, JSON.stringify(`${e.name}: ${e.message}`)); }
}

const t0 = Date.now();
// SPDK's short form and a lower-case trtype are accepted
const t = await openTransport('pcie', addr.replace(/^0000:/, ''));
out('open_ms', Date.now() - t0);
out('traddr', t.traddr);
out('bar0_size', hex(t.bar0Size));

// registers: 32-bit loads and stores only (MMIO)
const r32 = new Uint32Array(view(t.bar0Hva, 0x1000 + 8));
const cap = BigInt(r32[0]) | (BigInt(r32[1]) << 32n);
out('cap', hex(cap));
out('cap_mqes', Number(cap & 0xffffn) + 1);
out('cap_dstrd', Number((cap >> 32n) & 0xfn));
out('cap_to_ms', Number((cap >> 24n) & 0xffn) * 500);
const vs = r32[2];
out('vs', `${vs >>> 16}.${(vs >>> 8) & 0xff}.${vs & 0xff}`);

// DMA memory at IOVA = hva
const asq = await t.allocDma(4096), acq = await t.allocDma(4096), idb = await t.allocDma(4096);
out('dma_hva', hex(asq.hva));
const CC = 0x14 / 4, CSTS = 0x1c / 4, AQA = 0x24 / 4, ASQ = 0x28 / 4, ACQ = 0x30 / 4;
const toMs = Math.max(2000, Number((cap >> 24n) & 0xffn) * 500);
r32[CC] = 0;
await waitFor(() => (r32[CSTS] & 1) === 0, toMs, 'CSTS.RDY=0');
r32[AQA] = (15 << 16) | 15;
r32[ASQ] = asq.hva % 2 ** 32; r32[ASQ + 1] = Math.floor(asq.hva / 2 ** 32);
r32[ACQ] = acq.hva % 2 ** 32; r32[ACQ + 1] = Math.floor(acq.hva / 2 ** 32);
r32[CC] = 1 | (6 << 16) | (4 << 20);
await waitFor(() => (r32[CSTS] & 3) !== 0, toMs, 'CSTS.RDY=1');
out('csts_after_enable', hex(r32[CSTS]));

// interrupts: one eventfd per MSI-X vector; the admin CQ raises vector 0
const fds = await t.enableInterrupts(2);
out('msix_fds', fds.length === 2 && fds.every((f) => f >= 0) ? 1 : 0);

// Identify Controller (opcode 06h, CNS 1), PRP1 = the DMA buffer's hva
const sq = new Uint32Array(view(asq.hva, 4096));
sq[0] = 0x06 | (7 << 16);
sq[6] = idb.hva % 2 ** 32; sq[7] = Math.floor(idb.hva / 2 ** 32);
sq[10] = 1;
const id = new Uint8Array(view(idb.hva, 4096));
r32[0x1000 / 4] = 1; // admin SQ tail doorbell
const cq = new Uint32Array(view(acq.hva, 4096));
await waitFor(() => (cq[3] >>> 16) & 1, 5000, 'admin completion');
out('identify_status', hex((cq[3] >>> 17) & 0x7fff));
out('identify_cid', cq[3] & 0xffff);
const str = (a, b) => Buffer.from(id.subarray(a, b)).toString('latin1').trim();
out('identify_vid', hex(id[0] | (id[1] << 8)));
out('identify_sn', JSON.stringify(str(4, 24)));
out('identify_mn', JSON.stringify(str(24, 64)));
out('identify_sn_ok', str(4, 24) === serial ? 1 : 0);
let irq = false;
for (let i = 0; i < 2000 && !irq; i++) { irq = eventfdDrain(fds[0]); if (!irq) await sleep(1); }
out('msix_vector0_signalled', irq ? 1 : 0);

// function-level reset: the controller comes back disabled (CC.EN = 0, CSTS.RDY = 0) and
// bus mastering is restored, so it can be enabled again
await t.reset();
out('cc_after_reset', hex(r32[CC]));
out('csts_after_reset', hex(r32[CSTS]));
r32[AQA] = (15 << 16) | 15;
r32[ASQ] = asq.hva % 2 ** 32; r32[ASQ + 1] = Math.floor(asq.hva / 2 ** 32);
r32[ACQ] = acq.hva % 2 ** 32; r32[ACQ + 1] = Math.floor(acq.hva / 2 ** 32);
new Uint8Array(view(acq.hva, 4096)).fill(0);
r32[CC] = 1 | (6 << 16) | (4 << 20);
await waitFor(() => (r32[CSTS] & 3) !== 0, toMs, 'CSTS.RDY=1 after reset');
id.fill(0);
sq[0] = 0x06 | (8 << 16);
r32[0x1000 / 4] = 1;
await waitFor(() => (cq[3] >>> 16) & 1, 5000, 'admin completion after reset');
out('identify_after_reset_ok', ((cq[3] >>> 17) & 0x7fff) === 0 && str(4, 24) === serial ? 1 : 0);

// a "guest memory" region from another memfd: mapped, mapping again is a no-op, unmapped
const gsz = 2 * 1024 * 1024;
const gfd = memfdCreate('smoke-guest', gsz);
const ghva = mmap(gsz, gfd);
await t.mapDma(ghva, gsz, gfd, 0);
await t.mapDma(ghva, gsz, gfd, 0);
out('map_idempotent', 1);
await expectError('map_other_size', () => t.mapDma(ghva, gsz / 2, gfd, 0));
await t.unmapDma(ghva, gsz);
munmap(ghva, gsz); close(gfd);

await expectError('too_many_vectors', () => t.enableInterrupts(100000));

// error paths: opening it a second time, bad addresses, a device not bound to vfio-pci
await expectError('second_open', () => openTransport('PCIe', addr));
await expectError('bad_addr', () => openTransport('PCIe', 'zz:1'));
await expectError('absent', () => openTransport('PCIe', '0000:00:1e.0'));
if (otherAddr) await expectError('not_nvme', () => openTransport('PCIe', otherAddr));

// hot-remove: the kernel's remove blocks until the device is released; the transport
// sees the request interrupt, fences BAR0 (reads all-ones) and lets it go
let reason = '';
t.onRemoved((why) => { reason = why; });
const tr = Date.now();
const rm = new Promise((resolve) => execFile('sh', ['-c', `echo 1 > /sys/bus/pci/devices/${addr}/remove`], (e) => resolve(e ? String(e) : 'ok')));
await waitFor(() => reason !== '', 20000, 'removal notice');
out('removed_reason', JSON.stringify(reason));
out('csts_after_remove', hex(r32[CSTS]));
r32[0x1000 / 4] = 2; // a doorbell write after removal lands in the fence, harmlessly
out('remove_write', await rm);
out('remove_ms', Date.now() - tr);
out('device_gone', existsSync(`/sys/bus/pci/devices/${addr}`) ? 0 : 1);
// the interrupt eventfds stay open until close (reactors may still have them in epoll)
out('irq_fds_open_after_remove', fds.every((f) => raw.fcntl(f, 1 /* F_GETFD */, 0) >= 0) ? 1 : 0);
await expectError('after_remove', () => t.allocDma(4096));
await t.close();
out('smoke_done', 1);
