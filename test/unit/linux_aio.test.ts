import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LinuxAio } from '../../native/linux_aio.js';
import { IovecTable, type AsyncIoEngine } from '../../native/async_io.js';
import { ERRNO } from '../../native/errors.js';
import {
  close, eventfd, eventfdDrain, mmap, munmap, open, pread, pwrite, view,
  O_CREAT, O_DIRECT, O_RDONLY, O_RDWR, O_WRONLY,
} from '../../native/libc.js';

function buffer(len: number) {
  const addr = mmap(len);
  return { addr, len, u8: new Uint8Array(view(addr, len)), free: () => munmap(addr, len) };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 29 + seed * 11 + (i >> 9)) & 0xff;
  return b;
}

class Collect {
  got: Array<[number, number]> = [];
  onCqe(userData: number, res: number): void { this.got.push([userData, res]); }
}

function runAll(io: AsyncIoEngine, n: number): Array<[number, number]> {
  const sink = new Collect();
  io.submit();
  while (sink.got.length < n) {
    io.submitAndWait(n - sink.got.length);
    io.reap(sink);
  }
  return sink.got;
}

function directIoDir(): string | undefined {
  for (const d of [os.tmpdir(), '/var/tmp', '/work']) {
    let fd = -1;
    const p = path.join(d, `.odirect-probe-aio-${process.pid}`);
    try {
      fd = open(p, O_CREAT | O_RDWR | O_DIRECT, 0o600);
      return d;
    } catch { /* next */ } finally {
      if (fd >= 0) close(fd);
      fs.rmSync(p, { force: true });
    }
  }
  return undefined;
}

describe('linux-aio', () => {
  let dir: string;
  let aio: LinuxAio;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aio-'));
    aio = LinuxAio.create(128);
  });
  afterAll(() => {
    aio.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sets up a context whose completion ring is read from user space', () => {
    expect(aio.name).toBe('linux-aio');
    expect(aio.depth).toBe(128);
    expect(aio.ctx).toBeGreaterThan(0);
    expect(aio.userRing).toBe(true);
  });

  it('writev across 3 iovecs at an offset, fsync/fdatasync, readv back', () => {
    const fd = open(path.join(dir, 'rw'), O_CREAT | O_RDWR);
    const src = buffer(16384), dst = buffer(16384);
    const data = pattern(5000, 1);
    src.u8.set(data.subarray(0, 1000), 0);
    src.u8.set(data.subarray(1000, 4096), 4096);
    src.u8.set(data.subarray(4096), 12000);
    const iov = new IovecTable(8);
    iov.set(0, src.addr, 1000);
    iov.set(1, src.addr + 4096, 3096);
    iov.set(2, src.addr + 12000, 904);
    const off = 2 * 4096 + 77;
    expect(aio.prepWritev(fd, iov.addrOf(0), 3, off, 1)).toBe(true);
    expect(runAll(aio, 1)).toEqual([[1, 5000]]);
    expect(aio.prepFsync(fd, false, 2)).toBe(true);
    expect(aio.prepFsync(fd, true, 3)).toBe(true);
    expect(runAll(aio, 2).sort()).toEqual([[2, 0], [3, 0]]);
    iov.set(4, dst.addr + 8192, 2500);
    iov.set(5, dst.addr + 100, 2500);
    expect(aio.prepReadv(fd, iov.addrOf(4), 2, off, 4)).toBe(true);
    expect(runAll(aio, 1)).toEqual([[4, 5000]]);
    const back = new Uint8Array(5000);
    back.set(dst.u8.subarray(8192, 8192 + 2500), 0);
    back.set(dst.u8.subarray(100, 2600), 2500);
    expect(Buffer.compare(back, data)).toBe(0);
    const chk = new Uint8Array(5000);
    pread(fd, chk, off);
    expect(Buffer.compare(chk, data)).toBe(0);
    iov.free(); src.free(); dst.free(); close(fd);
  });

  it('batches 64 ops in one submit and reaps them with the right user_data/res', () => {
    const fd = open(path.join(dir, 'batch'), O_CREAT | O_RDWR);
    const file = pattern(64 * 512, 3);
    pwrite(fd, file, 0);
    const b = buffer(64 * 512);
    const base = 2 ** 53 - 100;
    for (let i = 0; i < 64; i++) {
      expect(aio.prepRead(fd, b.addr + i * 512, 512 - (i & 7), (63 - i) * 512, base + i)).toBe(true);
    }
    expect(aio.submit()).toBe(64);
    expect(aio.submit()).toBe(0);
    const sink = new Collect();
    while (sink.got.length < 64) {
      aio.submitAndWait(1);
      aio.reap(sink, 10);
    }
    const byUd = new Map(sink.got);
    expect(byUd.size).toBe(64);
    for (let i = 0; i < 64; i++) expect(byUd.get(base + i)).toBe(512 - (i & 7));
    for (let i = 0; i < 64; i++) {
      const got = b.u8.subarray(i * 512, i * 512 + 512 - (i & 7));
      const want = file.subarray((63 - i) * 512, (63 - i) * 512 + 512 - (i & 7));
      expect(Buffer.compare(got, want)).toBe(0);
    }
    b.free(); close(fd);
  });

  it('reports submit-time errors as negative errno in res without throwing', () => {
    const p = path.join(dir, 'wo');
    const wfd = open(p, O_CREAT | O_WRONLY);
    const rfd = open(p, O_RDONLY);
    const b = buffer(4096);
    aio.prepRead(wfd, b.addr, 4096, 0, 20);      // rejected by io_submit (EBADF)
    aio.prepWrite(wfd, b.addr, 10, 0, 21);       // fine
    aio.prepRead(987654, b.addr, 4096, 0, 22);   // not an fd
    aio.prepWrite(rfd, b.addr, 10, 0, 23);       // EBADF
    expect(aio.submit()).toBe(4);
    const got = runAll(aio, 4).sort((a, c) => a[0] - c[0]);
    expect(got).toEqual([[20, -ERRNO.EBADF], [21, 10], [22, -ERRNO.EBADF], [23, -ERRNO.EBADF]]);
    b.free(); close(wfd); close(rfd);
  });

  it('returns false when depth ops are queued or in flight', () => {
    const small = LinuxAio.create(4);
    try {
      for (let i = 0; i < 4; i++) expect(small.prepFsync(-1, false, i)).toBe(true);
      expect(small.prepFsync(-1, false, 99)).toBe(false);
      expect(small.submit()).toBe(4);
      expect(small.prepFsync(-1, false, 99)).toBe(false); // still unreaped
      const sink = new Collect();
      expect(small.reap(sink)).toBe(4);
      expect(sink.got.map((g) => g[1])).toEqual([-9, -9, -9, -9]);
      expect(small.prepFsync(-1, false, 4)).toBe(true);
      small.submit();
      expect(small.reap(sink)).toBe(1);
    } finally { small.close(); }
    small.close(); // idempotent
    expect(small.prepFsync(-1, false, 5)).toBe(false);
    expect(small.submit()).toBe(0);
  });

  it('reaps through io_getevents when the user ring is not used', () => {
    const io = LinuxAio.create(32, { userRing: false });
    const fd = open(path.join(dir, 'getevents'), O_CREAT | O_RDWR);
    const b = buffer(32 * 512);
    try {
      expect(io.userRing).toBe(false);
      for (let i = 0; i < 16; i++) io.prepWrite(fd, b.addr + i * 512, 512, i * 512, i);
      io.prepRead(987654, b.addr, 512, 0, 99);
      const sink = new Collect();
      io.submit();
      while (sink.got.length < 17) { io.submitAndWait(5); io.reap(sink, 3); }
      const m = new Map(sink.got);
      expect(m.size).toBe(17);
      expect(m.get(99)).toBe(-ERRNO.EBADF);
      for (let i = 0; i < 16; i++) expect(m.get(i)).toBe(512);
      expect(io.reap(sink)).toBe(0);
    } finally { io.close(); b.free(); close(fd); }
  });

  it('signals an eventfd via IOCB_FLAG_RESFD', () => {
    const efd = eventfd();
    const fd = open(path.join(dir, 'efd'), O_CREAT | O_RDWR);
    const b = buffer(4096);
    try {
      aio.registerEventfd(efd);
      aio.prepWrite(fd, b.addr, 4096, 0, 40);
      expect(runAll(aio, 1)).toEqual([[40, 4096]]);
      expect(eventfdDrain(efd)).toBe(true);
      aio.registerEventfd(-1);
      aio.prepWrite(fd, b.addr, 4096, 0, 41);
      runAll(aio, 1);
      expect(eventfdDrain(efd)).toBe(false);
    } finally { aio.registerEventfd(-1); b.free(); close(fd); close(efd); }
  });

  it('O_DIRECT: async write/read, misaligned buffer completes with -EINVAL', (ctx) => {
    const d = directIoDir();
    if (!d) { ctx.skip('no filesystem supporting O_DIRECT among tmpdir, /var/tmp, /work'); return; }
    const p = path.join(d, `aio-direct-${process.pid}`);
    const fd = open(p, O_CREAT | O_RDWR | O_DIRECT, 0o600);
    const src = buffer(64 * 4096), dst = buffer(64 * 4096);
    const iov = new IovecTable(4);
    try {
      const data = pattern(64 * 4096, 7);
      src.u8.set(data);
      iov.set(0, src.addr, 4096); iov.set(1, src.addr + 4096, 8192);
      aio.prepWritev(fd, iov.addrOf(0), 2, 0, 60);
      for (let i = 3; i < 64; i++) aio.prepWrite(fd, src.addr + i * 4096, 4096, i * 4096, 100 + i);
      expect(runAll(aio, 62).every(([u, r]) => r === (u === 60 ? 3 * 4096 : 4096))).toBe(true);
      aio.prepFsync(fd, true, 61);
      expect(runAll(aio, 1)).toEqual([[61, 0]]);
      for (let i = 0; i < 64; i++) aio.prepRead(fd, dst.addr + i * 4096, 4096, i * 4096, 200 + i);
      aio.prepRead(fd, dst.addr + 1, 4096, 0, 300); // misaligned
      const got = runAll(aio, 65);
      expect(new Map(got).get(300)).toBe(-ERRNO.EINVAL);
      expect(got.filter(([u, r]) => u !== 300 && r === 4096).length).toBe(64);
      expect(Buffer.compare(dst.u8.subarray(4096), data.subarray(4096))).toBe(0);
    } finally { iov.free(); src.free(); dst.free(); close(fd); fs.rmSync(p, { force: true }); }
  });
});
