// Issue 11 (part A): a hostile vhost-user front end against the real daemon. After every case
// the daemon must be alive and a bystander controller (its own malloc bdev) must serve a fresh,
// correct front end: random data written, read back and compared, flushed.
import { describe, it, expect, beforeAll, afterAll, afterEach, beforeEach } from 'vitest';
import { openSync, closeSync, ftruncateSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { libc } from '../../native/koffi.js';
import { closeQuiet, eventfd, EFD_CLOEXEC, F_GETFL, O_NONBLOCK, raw, memfdCreate, MFD_CLOEXEC, mmap, munmap, view, ftruncate }
  from '../../native/libc.js';
import { unixConnect } from '../../native/socket.js';
import { BadReply, Closed, connectFresh, GuestMem, handshake, memTablePayload, P, regionBytes, Ring, blkRequest, u64,
  VhostUserClient, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, sleepSync, startRing }
  from '../fuzz/vhost_client.js';
import { startDaemon, ok, Daemon } from './daemon.js';

const pipe2 = libc.func('pipe2', 'int', ['_Out_ int32_t *', 'int']);
function makePipe(): [number, number] {
  const fds = new Int32Array(2);
  if (pipe2(fds, 0o2000000) !== 0) throw new Error('pipe2 failed');
  return [fds[0], fds[1]];
}

const TMP = '/tmp/wt-hostile';
const TIMEOUT = 5000;
let d: Daemon;
let round = 0;
/** Where the daemon's log stood when the current test began. */
let mark = 0;
const since = () => d.stderr().slice(mark);

const sock = (c: string) => join(d.dir, c);

/** Waits until the daemon's log shows `re` (its stderr arrives through this event loop: never sleepSync here). */
async function waitLog(re: RegExp, ms = TIMEOUT): Promise<boolean> {
  const end = Date.now() + ms;
  while (!re.test(since())) { if (Date.now() > end) return false; await new Promise((r) => setTimeout(r, 20)); }
  return true;
}

/** A fresh, well-behaved front end on `ctrlr`: write/read/compare 4 requests and flush. */
function roundTrip(ctrlr: string): void {
  const c = connectFresh(sock(ctrlr), TIMEOUT);
  const mem = new GuestMem(1 << 20, 0x100000, 'hostile-good');
  const q = new Ring(mem, 0, 64, 0);
  try {
    const { capacity } = handshake(c, { regions: [mem], rings: [q] });
    for (let i = 0; i < 4; i++) {
      const len = 4096 * (1 + ((round + i) % 8));
      const sector = ((round * 97 + i * 31) * 8) % (Number(capacity) - len / 512);
      const data = new Uint8Array(len).map((_, k) => (k * 7 + round + i) & 0xff);
      const w = blkRequest(q, 0x10000, VIRTIO_BLK_T_OUT, sector, data, TIMEOUT);
      expect(w.status, `${ctrlr}: write at sector ${sector}`).toBe(0);
      const r = blkRequest(q, 0x10000, VIRTIO_BLK_T_IN, sector, len, TIMEOUT);
      expect(r.status, `${ctrlr}: read at sector ${sector}`).toBe(0);
      expect(Buffer.from(r.data).equals(Buffer.from(data)), `${ctrlr}: data read back at sector ${sector}`).toBe(true);
    }
    expect(blkRequest(q, 0x10000, VIRTIO_BLK_T_FLUSH, 0, 0, TIMEOUT).status).toBe(0);
    round++;
  } finally { c.close(); q.close(); mem.close(); }
}

/** The checks after every case: alive, and the bystander works. */
function bystanderOk(): void {
  expect(d.proc.exitCode, `daemon exited: ${d.stderr().slice(-2000)}`).toBe(null);
  expect(d.proc.signalCode).toBe(null);
  roundTrip('bystander');
}

/** Negotiates up to SET_MEM_TABLE (REPLY_ACK on) with the given memory fd of `size` bytes at front-end address `uaddr`. */
function upToMemory(c: VhostUserClient, fd: number, size: number, uaddr: number): void {
  const f = c.callU64(P.REQ.GET_FEATURES);
  const pf = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
  c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf & ((1n << BigInt(P.PF.REPLY_ACK)) | (1n << BigInt(P.PF.MQ)) | (1n << BigInt(P.PF.CONFIG)))));
  c.ack = true;
  c.call(P.REQ.SET_OWNER);
  c.call(P.REQ.SET_FEATURES, u64(f & ((1n << 32n) | (1n << 30n))));
  c.call(P.REQ.SET_MEM_TABLE, memTablePayload(1, [regionBytes(0x100000, size, uaddr, 0)]), [fd]);
}

describe('hostile vhost-user front ends (issue 11)', () => {
  beforeAll(async () => {
    mkdirSync(TMP, { recursive: true });
    d = await startDaemon(['-m', '0x1']);
    for (const [b, c] of [['Victim0', 'victim'], ['Bystander0', 'bystander'], ['Other0', 'other']]) {
      await ok(d.sock, 'bdev_malloc_create', { name: b, num_blocks: 8192, block_size: 512 });
      await ok(d.sock, 'vhost_create_blk_controller', { ctrlr: c, dev_name: b });
    }
    bystanderOk();
  });
  afterAll(async () => {
    // a daemon with a stuck reactor would not exit on SIGTERM: never hang the suite on it
    const code = await Promise.race([d.stop(), new Promise<string>((r) => setTimeout(() => r('hung'), 15_000))]);
    if (code === 'hung') d.proc.kill('SIGKILL');
    expect(code, 'vhostd exits cleanly on SIGTERM').toBe(0);
  });
  beforeEach(() => { mark = d.stderr().length; });
  afterEach(() => { bystanderOk(); });

  for (const kind of ['/dev/null', 'pipe read end', 'pipe write end', 'regular file', 'socket'] as const) {
    it(`refuses a ${kind} as kick, call and err fd, with a log line, and the device keeps working`, async () => {
      const c = connectFresh(sock('victim'), TIMEOUT);
      const mem = new GuestMem(1 << 20, 0x100000, 'hostile-fdkind');
      const file = join(TMP, 'not-an-eventfd');
      writeFileSync(file, 'x');
      try {
        upToMemory(c, mem.fd, mem.size, mem.addr);
        for (const req of [P.REQ.SET_VRING_KICK, P.REQ.SET_VRING_CALL, P.REQ.SET_VRING_ERR]) {
          let fd: number, other = -1;
          if (kind === '/dev/null') fd = openSync('/dev/null', 'r+');
          else if (kind === 'regular file') fd = openSync(file, 'r+');
          else if (kind === 'socket') fd = unixConnect(d.sock);
          else { const [r, w] = makePipe(); fd = kind === 'pipe read end' ? r : w; other = kind === 'pipe read end' ? w : r; }
          try {
            expect(() => c.call(req, u64(0), [fd]), `${P.REQ_NAMES[req]} with a ${kind}`).toThrow(BadReply);
          } finally { closeQuiet(fd); closeQuiet(other); }
        }
        await waitLog(/SET_VRING_ERR refused: the err fd of vring 0 is not an eventfd but/);
        expect(since()).toMatch(/SET_VRING_KICK refused: the kick fd of vring 0 is not an eventfd but \S+/);
        expect(since()).toMatch(/SET_VRING_CALL refused: the call fd of vring 0 is not an eventfd but \S+/);
        // the same session still works with proper eventfds
        const q = new Ring(mem, 0, 64, 0);
        try {
          startRing(c, q);
          expect(blkRequest(q, 0x10000, VIRTIO_BLK_T_IN, 0, 4096, TIMEOUT).status).toBe(0);
        } finally { q.close(); }
      } finally { c.close(); mem.close(); rmSync(file, { force: true }); }
    });
  }

  it('refuses a pipe as the backend request fd', async () => {
    const c = connectFresh(sock('victim'), TIMEOUT);
    const [r, w] = makePipe();
    try {
      c.callU64(P.REQ.GET_FEATURES);
      const pf = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
      c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf & ((1n << BigInt(P.PF.REPLY_ACK)) | (1n << BigInt(P.PF.BACKEND_REQ)))));
      c.ack = true;
      expect(() => c.call(P.REQ.SET_BACKEND_REQ_FD, new Uint8Array(0), [w])).toThrow(BadReply);
      expect(await waitLog(/SET_BACKEND_REQ_FD refused: the backend request fd is not a socket but pipe:/)).toBe(true);
    } finally { c.close(); closeQuiet(r); closeQuiet(w); }
  });

  it('makes a blocking eventfd non-blocking (a call can never block a reactor)', () => {
    const c = connectFresh(sock('victim'), TIMEOUT);
    const mem = new GuestMem(1 << 20, 0x100000, 'hostile-efd');
    const call = eventfd(0, EFD_CLOEXEC);
    try {
      upToMemory(c, mem.fd, mem.size, mem.addr);
      expect(raw.fcntl(call, F_GETFL, 0) & O_NONBLOCK).toBe(0);
      c.call(P.REQ.SET_VRING_CALL, u64(0), [call]);
      // the flag lives in the open file description both processes share
      expect(raw.fcntl(call, F_GETFL, 0) & O_NONBLOCK).toBe(O_NONBLOCK);
    } finally { c.close(); mem.close(); closeQuiet(call); }
  });

  it('a kick eventfd the front end makes blocking again cannot stall the reactor', async () => {
    const c = connectFresh(sock('victim'), TIMEOUT);
    const mem = new GuestMem(1 << 20, 0x100000, 'hostile-blockkick');
    const q = new Ring(mem, 0, 64, 0);
    try {
      upToMemory(c, mem.fd, mem.size, mem.addr);
      startRing(c, q);
      // O_NONBLOCK lives in the open file both processes share: the front end clears it again
      raw.fcntl(q.kickFd, 4, 0);
      expect(raw.fcntl(q.kickFd, F_GETFL, 0) & O_NONBLOCK).toBe(0);
      for (let i = 0; i < 3; i++) expect(blkRequest(q, 0x10000, VIRTIO_BLK_T_IN, 0, 4096, TIMEOUT).status).toBe(0);
      // the queue goes idle and its reactor to sleep a few times, draining the (empty) kick fd each time
      await new Promise((r) => setTimeout(r, 1500));
      roundTrip('bystander');    // same reactor (-m 0x1)
      expect(blkRequest(q, 0x10000, VIRTIO_BLK_T_IN, 0, 4096, TIMEOUT).status).toBe(0);
    } finally { c.close(); q.close(); mem.close(); }
  });

  it('a full, blocking call pipe cannot stall the control plane: the pipe is refused, other controllers answer at once', () => {
    const c = connectFresh(sock('victim'), TIMEOUT);
    const mem = new GuestMem(1 << 20, 0x100000, 'hostile-fullpipe');
    const [r, w] = makePipe();
    const fill = new Uint8Array(65536);
    try {
      while (Number(raw.write(w, fill, fill.length)) > 0) { if (raw.fcntl(w, F_GETFL, 0) & O_NONBLOCK) break; raw.fcntl(w, 4, O_NONBLOCK); }
      raw.fcntl(w, 4, 0);   // full and blocking again
      upToMemory(c, mem.fd, mem.size, mem.addr);
      expect(() => c.call(P.REQ.SET_VRING_CALL, u64(0), [w])).toThrow(BadReply);
      const t0 = performance.now();
      const o = new VhostUserClient(sock('other'), 1000);
      try { o.callU64(P.REQ.GET_FEATURES); } finally { o.close(); }
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally { c.close(); mem.close(); closeQuiet(r); closeQuiet(w); }
  });

  it('a front end that never reads its replies is dropped; the control plane keeps answering others', async () => {
    const c = new VhostUserClient(sock('victim'), TIMEOUT);
    let sent = 0, closed = false;
    try {
      const hdr = new Uint8Array(12);
      new DataView(hdr.buffer).setUint32(0, P.REQ.GET_FEATURES, true);
      new DataView(hdr.buffer).setUint32(4, P.FLAG_VERSION, true);
      const burst = new Uint8Array(12 * 4096);
      for (let i = 0; i < 4096; i++) burst.set(hdr, 12 * i);
      // ~30k requests whose 20-byte replies fill the socket buffer
      for (let i = 0; i < 8 && !closed; i++) {
        try { c.sendRaw(burst); sent += 4096; } catch (e) { if (e instanceof Closed) closed = true; else sleepSync(50); }
        const t0 = performance.now();
        const o = new VhostUserClient(sock('other'), 1000);
        try { o.callU64(P.REQ.GET_FEATURES); } finally { o.close(); }
        expect(performance.now() - t0, 'another controller answered GET_FEATURES').toBeLessThan(1000);
      }
      expect(await waitLog(/victim: front end disconnected: reply failed \(.*\): the front end does not read its replies/),
        'the daemon drops the front end with a log line').toBe(true);
    } finally { c.close(); }
    expect(sent).toBeGreaterThan(0);
  });

  const truncCases: { name: string; make: (size: number) => { fd: number; cleanup: () => void } }[] = [
    { name: 'an unsealable memfd', make: (size) => { const fd = memfdCreate('hostile-unsealable', size, MFD_CLOEXEC); return { fd, cleanup: () => closeQuiet(fd) }; } },
    { name: 'a tmpfs file (/dev/shm)', make: (size) => fileMem('/dev/shm', size) },
    { name: `a regular file in ${TMP}`, make: (size) => fileMem(TMP, size) },
  ];
  for (const tc of truncCases) {
    it(`${tc.name} truncated under a running queue fails that device only (SIGBUS guarded)`, async () => {
      const SIZE = 1 << 20, KEEP = 64 << 10;
      const { fd, cleanup } = tc.make(SIZE);
      const addr = mmap(SIZE, fd);
      const u8 = new Uint8Array(view(addr, SIZE));
      const c = connectFresh(sock('victim'), TIMEOUT);
      try {
        upToMemory(c, fd, SIZE, addr);
        // one correct request first, the ring in the first 64 KiB
        const mem = { fd, addr, size: SIZE, gpa: 0x100000, u8, dv: new DataView(u8.buffer), close() {} } as unknown as GuestMem;
        const q = new Ring(mem, 0, 64, 0);
        startRing(c, q);
        expect(blkRequest(q, 0x8000, VIRTIO_BLK_T_OUT, 8, new Uint8Array(4096).fill(1), TIMEOUT).status).toBe(0);
        // the front end shrinks its memory to 64 KiB, then posts a write whose data lies beyond
        ftruncate(fd, KEEP);
        const hdr = 0x8000, st = 0x8100, gpa = mem.gpa;
        mem.dv.setUint32(hdr, VIRTIO_BLK_T_OUT, true); mem.dv.setBigUint64(hdr + 8, 16n, true);
        u8[st] = 0xff;
        q.setDesc(0, gpa + hdr, 16, VRING_DESC_F_NEXT, 1);
        q.setDesc(1, gpa + 0x80000, 4096, VRING_DESC_F_NEXT, 2);
        q.setDesc(2, gpa + st, 1, VRING_DESC_F_WRITE, 0);
        q.push(0); q.publish(); q.kick();
        expect(await waitLog(/victim: guest memory region at gpa 0x100000 \(1048576 bytes\) lost its backing under vhostd's mapping/),
          'the daemon logs the lost region').toBe(true);
        expect(since()).toMatch(/victim: front end disconnected: guest memory lost its backing \(SIGBUS\)/);
        expect(c.pending(TIMEOUT), 'the victim connection is closed').toBe(true);
        expect(() => c.recv(100)).toThrow(Closed);
        q.close();
      } finally { c.close(); munmap(addr, SIZE); cleanup(); }
      expect(d.proc.exitCode).toBe(null);
      roundTrip('victim');   // the victim controller serves the next front end
    });
  }

  it('a ring whose memory is truncated under it fails that device only', async () => {
    const SIZE = 1 << 20;
    const fd = memfdCreate('hostile-ring', SIZE, MFD_CLOEXEC);
    const addr = mmap(SIZE, fd);
    const u8 = new Uint8Array(view(addr, SIZE));
    const c = connectFresh(sock('victim'), TIMEOUT);
    try {
      upToMemory(c, fd, SIZE, addr);
      const mem = { fd, addr, size: SIZE, gpa: 0x100000, u8, dv: new DataView(u8.buffer), close() {} } as unknown as GuestMem;
      const q = new Ring(mem, 0, 64, 0x80000);   // the rings in the second half
      startRing(c, q);
      expect(blkRequest(q, 0x1000, VIRTIO_BLK_T_IN, 0, 4096, TIMEOUT).status).toBe(0);
      ftruncate(fd, 64 << 10);
      q.kick();   // the reactor reads the avail ring: gone
      expect(await waitLog(/victim: guest memory region at gpa 0x100000 \(1048576 bytes\) lost its backing/)).toBe(true);
      expect(c.pending(TIMEOUT), 'the victim connection is closed').toBe(true);
      expect(() => c.recv(100)).toThrow(Closed);
      q.close();
    } finally { c.close(); munmap(addr, SIZE); closeQuiet(fd); }
    roundTrip('victim');
  });

  it('refuses memory larger than its file at map time, with a clear error', async () => {
    const { fd, cleanup } = fileMem(TMP, 64 << 10);
    const c = connectFresh(sock('victim'), TIMEOUT);
    try {
      c.callU64(P.REQ.GET_FEATURES);
      const pf = c.callU64(P.REQ.GET_PROTOCOL_FEATURES);
      c.call(P.REQ.SET_PROTOCOL_FEATURES, u64(pf & (1n << BigInt(P.PF.REPLY_ACK))));
      c.ack = true;
      expect(() => c.call(P.REQ.SET_MEM_TABLE, memTablePayload(1, [regionBytes(0, 1 << 20, 0x7000000000, 0)]), [fd])).toThrow(BadReply);
      expect(await waitLog(/SET_MEM_TABLE refused: guest memory region of 1048576 bytes \(offset included\) is larger than its fd \(65536 bytes\)/)).toBe(true);
    } finally { c.close(); cleanup(); }
  });

  it('200 rapid connect/close sessions, half of them well-behaved: no well-behaved one is dropped', () => {
    const t0 = performance.now();
    let good = 0;
    for (let i = 0; i < 200; i++) {
      const c = new VhostUserClient(sock('victim'), TIMEOUT);
      try {
        if (i % 2 === 0) {
          // well-behaved: asks and gets its answer (no retry)
          expect(c.callU64(P.REQ.GET_FEATURES) & (1n << 30n)).not.toBe(0n);
          good++;
        } else if (i % 4 === 1) {
          c.send(P.REQ.GET_FEATURES);   // closes without reading
        }
      } finally { c.close(); }
    }
    const ms = performance.now() - t0;
    console.log(`[hostile] 200 sessions in ${ms.toFixed(0)} ms, ${good} well-behaved answered`);
    expect(good).toBe(100);
  });

  it('40 back-to-back full sessions (memory, ring, I/O, close) on one controller, no retries', () => {
    const mem = new GuestMem(1 << 20, 0x100000, 'hostile-b2b');
    const t0 = performance.now();
    try {
      for (let i = 0; i < 40; i++) {
        const c = new VhostUserClient(sock('victim'), TIMEOUT);
        const q = new Ring(mem, 0, 64, 0);
        q.reset();
        try {
          handshake(c, { regions: [mem], rings: [q] });
          expect(blkRequest(q, 0x10000, VIRTIO_BLK_T_IN, i, 4096, TIMEOUT).status, `session ${i}`).toBe(0);
        } finally { c.close(); q.close(); }
      }
    } finally { mem.close(); }
    console.log(`[hostile] 40 full sessions in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it('a second concurrent front end waits, and is served as soon as the first closes', () => {
    const a = connectFresh(sock('victim'), TIMEOUT);
    const b = new VhostUserClient(sock('victim'), TIMEOUT);
    try {
      b.send(P.REQ.GET_FEATURES);
      expect(b.pending(300), 'no answer while the first front end is connected').toBe(false);
      a.callU64(P.REQ.GET_FEATURES);
      a.close();
      expect(b.expectReply(P.REQ.GET_FEATURES).payload.length).toBe(8);
    } finally { a.close(); b.close(); }
  });
});

function fileMem(dir: string, size: number): { fd: number; cleanup: () => void } {
  const path = join(dir, `wt-hostile-mem-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const fd = openSync(path, 'w+');
  ftruncateSync(fd, size);
  return { fd, cleanup: () => { closeSync(fd); rmSync(path, { force: true }); } };
}
