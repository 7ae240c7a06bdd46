// Issue 11, vfio-user side: a hostile NVMe-over-vfio-user client against the real daemon.
// After every case the daemon must be alive, a bystander NVMe controller (its own malloc bdev,
// its client connected all along) must still write, read back and compare data, and the
// victim controller must serve a fresh, well-behaved client (the benchmark's NVMe initiator).
import { describe, it, expect, beforeAll, afterAll, afterEach, beforeEach } from 'vitest';
import { openSync, closeSync, ftruncateSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { libc } from '../../native/koffi.js';
import { closeQuiet, eventfd, eventfdDrain, EFD_CLOEXEC, F_GETFL, O_NONBLOCK, raw, memfdCreate, MFD_CLOEXEC, mmap, munmap, view,
  ftruncate } from '../../native/libc.js';
import { unixConnect, sendWithFds, recvWithFds } from '../../native/socket.js';
import { VfioUserClient } from '../../src/vfio_user/client.js';
import { NvmeInitiator } from '../../bench/lib/nvme_initiator.js';
import * as P from '../../src/vfio_user/protocol.js';
import { startDaemon, ok, Daemon } from './daemon.js';

const pipe2 = libc.func('pipe2', 'int', ['_Out_ int32_t *', 'int']);
function makePipe(): [number, number] {
  const fds = new Int32Array(2);
  if (pipe2(fds, 0o2000000) !== 0) throw new Error('pipe2 failed');
  return [fds[0], fds[1]];
}

const TMP = '/tmp/wt-hostile2';
const TIMEOUT = 5000;
const BLOCKS = 4096;       // 16 MiB of 4 KiB blocks per namespace
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let d: Daemon;
let bystander: NvmeInitiator;
let round = 0;
/** Where the daemon's log stood when the current test began. */
let mark = 0;
const since = () => d.stderr().slice(mark);
const cntrl = (name: string) => join(d.dir, name, 'cntrl');

async function waitLog(re: RegExp, ms = TIMEOUT): Promise<boolean> {
  const end = Date.now() + ms;
  while (!re.test(since())) { if (Date.now() > end) return false; await sleep(20); }
  return true;
}

/** A fresh, well-behaved client on `name`: enable, identify, I/O queue, write/read/compare two blocks. */
async function freshSession(name: string): Promise<void> {
  const ini = new NvmeInitiator({ socket: cntrl(name), doorbells: 'auto', queues: 1, qd: 2, bs: 4096 });
  try {
    await ini.setup();
    await ini.check((round * 37) % BLOCKS);
    await ini.check(BLOCKS - 1 - (round % 64));
  } finally { await ini.close(); }
}

/** The checks after every case: alive, the bystander's connected client still does verified I/O. */
async function bystanderOk(): Promise<void> {
  expect(d.proc.exitCode, `daemon exited: ${d.stderr().slice(-2000)}`).toBe(null);
  expect(d.proc.signalCode).toBe(null);
  for (let i = 0; i < 4; i++) await bystander.check((round * 131 + i * 17) % BLOCKS);
  round++;
}

// ---------------------------------------------------------------- a minimal NVMe host

const MiB = 1 << 20, IOVA = 0x10_0000;
const OFF_ASQ = 0x0, OFF_ACQ = 0x1000, OFF_ID = 0x2000, OFF_IOSQ = 0x3000, OFF_IOCQ = 0x4000, OFF_BUF = 0x8000;
const QSIZE = 16;
const REG_CC = 0x14, REG_CSTS = 0x1c, REG_AQA = 0x24, REG_ASQ = 0x28, REG_ACQ = 0x30, DB = 0x1000;

/** Just enough of an NVMe driver over a caller-supplied memory fd (the initiator brings its own memfd). */
class MiniHost {
  readonly c: VfioUserClient;
  readonly dv: DataView;
  private sqTail = [0, 0];
  private cqHead = [0, 0];
  private phase = [1, 1];
  private cid = 0;
  constructor(socket: string, readonly fd: number, readonly addr: number, readonly size: number) {
    this.c = VfioUserClient.connect(socket);
    this.dv = new DataView(view(addr, size));
  }

  private negotiated = false;
  async hello(): Promise<void> {
    if (!this.negotiated) await this.c.version();
    this.negotiated = true;
  }

  async enable(): Promise<void> {
    await this.hello();
    await this.c.dmaMap(this.fd, IOVA, this.size);
    await this.c.w32(P.PCI_BAR0, REG_AQA, ((QSIZE - 1) << 16) | (QSIZE - 1));
    await this.c.w32(P.PCI_BAR0, REG_ASQ, IOVA + OFF_ASQ); await this.c.w32(P.PCI_BAR0, REG_ASQ + 4, 0);
    await this.c.w32(P.PCI_BAR0, REG_ACQ, IOVA + OFF_ACQ); await this.c.w32(P.PCI_BAR0, REG_ACQ + 4, 0);
    await this.c.w32(P.PCI_BAR0, REG_CC, (4 << 20) | (6 << 16) | 1);
    const end = Date.now() + TIMEOUT;
    while (((await this.c.r32(P.PCI_BAR0, REG_CSTS)) & 3) !== 1) {
      if (Date.now() > end) throw new Error('controller not ready');
      await sleep(1);
    }
  }

  /** Puts one command on queue `q` (0 admin, 1 I/O) and rings its doorbell; `wait`: polls for its status. */
  async cmd(q: 0 | 1, opc: number, nsid: number, prp1: number, cdw10: number, cdw11 = 0, cdw12 = 0, wait = true): Promise<number> {
    const o = (q ? OFF_IOSQ : OFF_ASQ) + this.sqTail[q] * 64, dv = this.dv;
    const cid = (this.cid = (this.cid + 1) & 0xffff);
    for (let i = 0; i < 64; i += 4) dv.setUint32(o + i, 0, true);
    dv.setUint32(o, opc | (cid << 16), true); dv.setUint32(o + 4, nsid, true);
    dv.setBigUint64(o + 24, BigInt(prp1), true);
    dv.setUint32(o + 40, cdw10, true); dv.setUint32(o + 44, cdw11, true); dv.setUint32(o + 48, cdw12, true);
    this.sqTail[q] = (this.sqTail[q] + 1) % QSIZE;
    await this.c.w32(P.PCI_BAR0, DB + 8 * q, this.sqTail[q]);
    if (!wait) return -1;
    const e = (q ? OFF_IOCQ : OFF_ACQ) + this.cqHead[q] * 16, end = Date.now() + TIMEOUT;
    while (((dv.getUint32(e + 12, true) >>> 16) & 1) !== this.phase[q]) {
      if (Date.now() > end) throw new Error(`command 0x${opc.toString(16)} on queue ${q}: no completion`);
      await sleep(0);
    }
    this.cqHead[q] = (this.cqHead[q] + 1) % QSIZE;
    if (this.cqHead[q] === 0) this.phase[q] ^= 1;
    await this.c.w32(P.PCI_BAR0, DB + 8 * q + 4, this.cqHead[q]);
    return (dv.getUint32(e + 12, true) >>> 17) & 0x7fff;
  }

  async ioQueue(): Promise<void> {
    expect(await this.cmd(0, 0x05, 0, IOVA + OFF_IOCQ, 1 | ((QSIZE - 1) << 16), 1)).toBe(0);             // CQ 1, PC, no irq
    expect(await this.cmd(0, 0x01, 0, IOVA + OFF_IOSQ, 1 | ((QSIZE - 1) << 16), 1 | (1 << 16))).toBe(0); // SQ 1 on CQ 1
  }

  /** The connection is closed by the server within `ms` (a read returns end of file). */
  async closedByServer(ms = TIMEOUT): Promise<boolean> {
    const b = new Uint8Array(4096), end = Date.now() + ms;
    for (;;) {
      let r;
      try { r = recvWithFds(this.c.fd, b, 0, b.length); } catch { return true; }
      r.fds.forEach(closeQuiet);
      if (r.n === 0) return true;
      if (Date.now() > end) return false;
      if (r.n < 0) await sleep(10);
    }
  }

  close(): void { this.c.close(); }
}

/** SET_IRQS payload: argsz, flags, index, start, count. */
function setIrqsPayload(flags: number, index: number, start: number, count: number): Uint8Array {
  const b = new Uint8Array(20), dv = new DataView(b.buffer);
  dv.setUint32(0, 20, true); dv.setUint32(4, flags, true); dv.setUint32(8, index, true);
  dv.setUint32(12, start, true); dv.setUint32(16, count, true);
  return b;
}
const MSIX_EVENTFD = P.IRQ_SET_DATA_EVENTFD | P.IRQ_SET_ACTION_TRIGGER;

function fileMem(dir: string, size: number): { fd: number; cleanup: () => void } {
  const path = join(dir, `wt-hostile2-mem-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const fd = openSync(path, 'w+');
  ftruncateSync(fd, size);
  return { fd, cleanup: () => { closeSync(fd); rmSync(path, { force: true }); } };
}

describe('hostile vfio-user (NVMe) clients (issue 11)', () => {
  beforeAll(async () => {
    mkdirSync(TMP, { recursive: true });
    d = await startDaemon(['-m', '0x1']);
    // trapped doorbells: every doorbell is a message, so the control plane is on the I/O path too
    await ok(d.sock, 'nvmf_create_transport', { trtype: 'VFIOUSER', disable_mappable_bar0: true, disable_shadow_doorbells: true });
    for (const [b, name] of [['Victim0', 'victim'], ['Bystander0', 'bystander']]) {
      const nqn = `nqn.2019-07.io.spdk:${name}`;
      mkdirSync(join(d.dir, name));
      await ok(d.sock, 'bdev_malloc_create', { name: b, num_blocks: BLOCKS, block_size: 4096 });
      await ok(d.sock, 'nvmf_create_subsystem', { nqn, serial_number: `SN-${name}`, model_number: 'vhostd hostile' });
      await ok(d.sock, 'nvmf_subsystem_add_ns', { nqn, namespace: { bdev_name: b, nsid: 1 } });
      await ok(d.sock, 'nvmf_subsystem_add_listener', { nqn, listen_address: { trtype: 'VFIOUSER', traddr: join(d.dir, name), trsvcid: '0' } });
    }
    bystander = new NvmeInitiator({ socket: cntrl('bystander'), doorbells: 'auto', queues: 1, qd: 2, bs: 4096 });
    await bystander.setup();
    await bystanderOk();
  }, 30_000);
  afterAll(async () => {
    await bystander?.close();
    const code = await Promise.race([d.stop(), new Promise<string>((r) => setTimeout(() => r('hung'), 15_000))]);
    if (code === 'hung') d.proc.kill('SIGKILL');
    expect(code, 'vhostd exits cleanly on SIGTERM').toBe(0);
    rmSync(TMP, { recursive: true, force: true });
  });
  beforeEach(() => { mark = d.stderr().length; });
  afterEach(async () => {
    await bystanderOk();
    await freshSession('victim');
  });

  for (const kind of ['/dev/null', 'pipe read end', 'pipe write end', 'regular file'] as const) {
    it(`refuses a ${kind} as MSI-X irq fd with a clear error reply, then takes an eventfd`, async () => {
      const c = VfioUserClient.connect(cntrl('victim'));
      const file = join(TMP, 'not-an-eventfd');
      writeFileSync(file, 'x');
      let fd: number, other = -1;
      if (kind === '/dev/null') fd = openSync('/dev/null', 'r+');
      else if (kind === 'regular file') fd = openSync(file, 'r+');
      else { const [r, w] = makePipe(); fd = kind === 'pipe read end' ? r : w; other = kind === 'pipe read end' ? w : r; }
      const efd = eventfd(0, EFD_CLOEXEC);   // blocking, as QEMU's
      try {
        await c.version();
        const r = await c.call(P.Cmd.DEVICE_SET_IRQS, setIrqsPayload(MSIX_EVENTFD, P.IRQ_MSIX, 0, 1), [fd]);
        expect(r.h.flags & P.FLAG_ERROR, `SET_IRQS with a ${kind}`).toBeTruthy();
        expect(r.h.error).toBe(P.E.EINVAL);
        expect(await waitLog(/victim\/cntrl: DEVICE_SET_IRQS: the fd of MSI-X vector 0 is not an eventfd but \S+: the front end must pass an eventfd; no vector was changed/)).toBe(true);
        // an eventfd is taken, and made non-blocking (the flag lives in the open file both processes share)
        expect(raw.fcntl(efd, F_GETFL, 0) & O_NONBLOCK).toBe(0);
        const good = await c.call(P.Cmd.DEVICE_SET_IRQS, setIrqsPayload(MSIX_EVENTFD, P.IRQ_MSIX, 0, 1), [efd]);
        expect(good.h.flags & P.FLAG_ERROR).toBe(0);
        expect(raw.fcntl(efd, F_GETFL, 0) & O_NONBLOCK).toBe(O_NONBLOCK);
        // a loopback trigger signals it
        const trig = new Uint8Array(20);
        trig.set(setIrqsPayload(P.IRQ_SET_DATA_NONE | P.IRQ_SET_ACTION_TRIGGER, P.IRQ_MSIX, 0, 1));
        expect((await c.call(P.Cmd.DEVICE_SET_IRQS, trig)).h.flags & P.FLAG_ERROR).toBe(0);
        expect(eventfdDrain(efd), 'the eventfd was signalled').toBe(true);
      } finally { c.close(); closeQuiet(fd); closeQuiet(other); closeQuiet(efd); rmSync(file, { force: true }); }
    });
  }

  it('an MSI-X eventfd the client makes blocking again, never read, cannot stall the reactor', async () => {
    const fd = memfdCreate('hostile2-irq', MiB);
    const addr = mmap(MiB, fd);
    const h = new MiniHost(cntrl('victim'), fd, addr, MiB);
    const efd = eventfd(0, EFD_CLOEXEC);
    try {
      await h.hello();
      expect((await h.c.call(P.Cmd.DEVICE_SET_IRQS, setIrqsPayload(MSIX_EVENTFD, P.IRQ_MSIX, 0, 1), [efd])).h.flags & P.FLAG_ERROR).toBe(0);
      raw.fcntl(efd, 4 /* F_SETFL */, 0);
      await h.enable();
      // admin completions interrupt on vector 0: 40 of them, never drained by us
      for (let i = 0; i < 40; i++) expect(await h.cmd(0, 0x06, 0, IOVA + OFF_ID, 1)).toBe(0);
      expect(eventfdDrain(efd), 'the vector was signalled').toBe(true);
      await bystanderOk();   // same reactor (-m 0x1)
    } finally { h.close(); closeQuiet(efd); munmap(addr, MiB); closeQuiet(fd); }
  });

  const truncCases: { name: string; make: (size: number) => { fd: number; cleanup: () => void } }[] = [
    { name: 'an unsealable memfd', make: (size) => { const fd = memfdCreate('hostile2-unsealable', size, MFD_CLOEXEC); return { fd, cleanup: () => closeQuiet(fd) }; } },
    { name: 'a tmpfs file (/dev/shm)', make: (size) => fileMem('/dev/shm', size) },
    { name: `a regular file in ${TMP}`, make: (size) => fileMem(TMP, size) },
  ];
  for (const tc of truncCases) {
    it(`DMA memory from ${tc.name} truncated under I/O fails that client only (SIGBUS guarded)`, async () => {
      const KEEP = 64 << 10;
      const { fd, cleanup } = tc.make(MiB);
      const addr = mmap(MiB, fd);
      const h = new MiniHost(cntrl('victim'), fd, addr, MiB);
      try {
        await h.enable();
        await h.ioQueue();
        const buf = new Uint8Array(view(addr + OFF_BUF, 4096)).fill(0x5a);
        expect(await h.cmd(1, 0x01, 1, IOVA + OFF_BUF, 7, 0, 0), 'a correct write').toBe(0);
        buf.fill(0);
        expect(await h.cmd(1, 0x02, 1, IOVA + OFF_BUF, 7, 0, 0), 'a correct read').toBe(0);
        expect(buf.every((x) => x === 0x5a)).toBe(true);
        // the client shrinks its memory to 64 KiB (queues and the first buffer stay), then
        // writes from a buffer beyond: the reactor's copy faults
        ftruncate(fd, KEEP);
        await h.cmd(1, 0x01, 1, IOVA + 0x80000, 8, 0, 0, false);
        expect(await waitLog(/victim\/cntrl: DMA window at 0x100000 \(1048576 bytes\) lost its backing under vhostd's mapping/),
          'the daemon logs the lost window').toBe(true);
        expect(await h.closedByServer(), 'the victim connection is closed').toBe(true);
        expect(await waitLog(/victim\/cntrl: client dropped: its DMA memory lost its backing \(SIGBUS\)/)).toBe(true);
      } finally { h.close(); munmap(addr, MiB); cleanup(); }
    });
  }

  it('refuses a DMA window larger than its file at map time, with a clear error', async () => {
    const { fd, cleanup } = fileMem(TMP, 64 << 10);
    const c = VfioUserClient.connect(cntrl('victim'));
    try {
      await c.version();
      const m = new Uint8Array(32), dv = new DataView(m.buffer);
      dv.setUint32(0, 32, true); dv.setUint32(4, P.DMA_FLAG_READ | P.DMA_FLAG_WRITE, true);
      dv.setBigUint64(16, BigInt(IOVA), true); dv.setBigUint64(24, BigInt(MiB), true);
      const r = await c.call(P.Cmd.DMA_MAP, m, [fd]);
      expect(r.h.error).toBe(P.E.EINVAL);
      expect(await waitLog(/DMA_MAP: DMA window of 1048576 bytes \(offset included\) is larger than its fd \(65536 bytes\)/)).toBe(true);
    } finally { c.close(); cleanup(); }
  });

  it('a client that never reads its replies is dropped; the other controller keeps answering at once', async () => {
    const fd = unixConnect(cntrl('victim'));   // non-blocking
    const one = P.message({ id: 0, cmd: P.Cmd.REGION_READ, flags: P.TYPE_COMMAND, error: 0 }, (() => {
      const q = new Uint8Array(16), dv = new DataView(q.buffer);
      dv.setBigUint64(0, BigInt(REG_CSTS), true); dv.setUint32(8, P.PCI_BAR0, true); dv.setUint32(12, 4, true);
      return q;
    })());
    const burst = new Uint8Array(one.length * 1024);
    for (let i = 0; i < 1024; i++) burst.set(one, i * one.length);
    let sent = 0, gone = false;
    try {
      sendWithFds(fd, P.message({ id: 0, cmd: P.Cmd.VERSION, flags: P.TYPE_COMMAND, error: 0 },
        P.versionPayload(0, 1, { capabilities: {} })));
      const end = Date.now() + 15_000;
      while (!gone && Date.now() < end) {
        try { sendWithFds(fd, burst, [], 0); sent += 1024; } catch (e) {
          if (/EAGAIN/.test((e as Error).message)) await sleep(20); else gone = true;   // EPIPE/ECONNRESET: dropped
        }
        const t0 = performance.now();
        await bystander.check(round % BLOCKS);
        expect(performance.now() - t0, 'the bystander answered').toBeLessThan(1000);
        if (!gone) gone = /victim\/cntrl: client dropped/.test(since());
      }
      expect(await waitLog(/victim\/cntrl: client dropped: reply failed \(sendmsg failed: EAGAIN .*\): the client does not read its replies/),
        'the daemon drops the client with a log line').toBe(true);
    } finally { closeQuiet(fd); }
    expect(sent).toBeGreaterThan(0);
  });

  it('a client flooding 1 MiB posted writes that are slow to handle is not read ahead: memory stays bounded, the bystander keeps answering', async () => {
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.proc.pid}/status`, 'utf8'))![1]) * 1024;
    const fd = memfdCreate('hostile2-flood', MiB);
    const addr = mmap(MiB, fd);
    const h = new MiniHost(cntrl('victim'), fd, addr, MiB);
    let sock: Socket | undefined;
    try {
      await h.hello();
      await h.c.dmaMap(fd, IOVA, MiB);
      await h.c.w32(P.PCI_BAR0, REG_AQA, ((QSIZE - 1) << 16) | (QSIZE - 1));
      await h.c.w32(P.PCI_BAR0, REG_ASQ, IOVA + OFF_ASQ);
      await h.c.w32(P.PCI_BAR0, REG_ACQ, IOVA + OFF_ACQ);
      // posted CC writes, enable and disable in turn (each a reactor round trip), padded to 1 MiB
      const big = [1, 0].map((en) => {
        const q = new Uint8Array(MiB), dv = new DataView(q.buffer);
        dv.setBigUint64(0, BigInt(REG_CC), true); dv.setUint32(8, P.PCI_BAR0, true); dv.setUint32(12, 4, true);
        dv.setUint32(16, (4 << 20) | (6 << 16) | en, true);
        return Buffer.from(P.message({ id: 7, cmd: P.Cmd.REGION_WRITE, flags: P.TYPE_COMMAND | P.FLAG_NO_REPLY, error: 0 }, q));
      });
      const base = rss();
      const s = (sock = new Socket({ fd: h.c.fd, readable: false, writable: true }));
      s.on('error', () => {});
      let sent = 0, stop = false;
      const pump = () => { while (!stop) { if (!s.write(big[sent++ & 1])) { s.once('drain', pump); return; } } };
      pump();
      let peak = base, checks = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < 2500) {
        const t = performance.now();
        await bystander.check((round + checks) % BLOCKS);
        expect(performance.now() - t, 'a bystander write+read while the victim is flooded').toBeLessThan(2000);
        checks++;
        peak = Math.max(peak, rss());
        await sleep(50);
      }
      stop = true;
      const queued = s.writableLength;
      console.log(`[hostile-vfio-user] flood: ${sent - Math.ceil(queued / MiB)} MiB sent, daemon RSS ${(base / MiB).toFixed(0)} -> peak ` +
        `${(peak / MiB).toFixed(0)} MiB, ${checks} bystander checks`);
      expect(sent, 'the flood got going (far more than a socket buffer holds)').toBeGreaterThan(16);
      expect(peak - base, 'the daemon does not read ahead of what it handles').toBeLessThan(96 * MiB);
    } finally { sock?.destroy(); h.close(); munmap(addr, MiB); closeQuiet(fd); }
  });

  it('200 rapid connect/close sessions, half of them well-behaved: every well-behaved one is answered', async () => {
    const t0 = performance.now();
    let good = 0;
    for (let i = 0; i < 200; i++) {
      const c = VfioUserClient.connect(cntrl('victim'));
      try {
        if (i % 2 === 0) {
          // well-behaved: negotiates and asks, and gets its answers (no retry)
          expect((await c.version()).major).toBe(0);
          expect((await c.deviceInfo()).numRegions).toBe(P.PCI_NUM_REGIONS);
          good++;
        } else if (i % 4 === 1) {
          sendWithFds(c.fd, P.message({ id: 1, cmd: P.Cmd.VERSION, flags: P.TYPE_COMMAND, error: 0 }, P.versionPayload(0, 1, {})));
        }
      } finally { c.close(); }
    }
    console.log(`[hostile-vfio-user] 200 sessions in ${(performance.now() - t0).toFixed(0)} ms, ${good} well-behaved answered`);
    expect(good).toBe(100);
    expect(since()).not.toMatch(/refusing a client/);
  });

  it('a second concurrent client waits, and is served as soon as the first closes', async () => {
    const a = VfioUserClient.connect(cntrl('victim'));
    const b = VfioUserClient.connect(cntrl('victim'));
    try {
      await a.version();
      const waiting = b.call(P.Cmd.VERSION, P.versionPayload(0, 1, { capabilities: {} }), [], TIMEOUT);
      await sleep(300);
      let answered = false;
      void waiting.then(() => { answered = true; }, () => {});
      await sleep(0);
      expect(answered, 'no answer while the first client is connected').toBe(false);
      a.close();
      const r = await waiting;
      expect(r.h.flags & P.FLAG_ERROR).toBe(0);
    } finally { a.close(); b.close(); }
  });
});
