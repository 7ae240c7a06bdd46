import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IoUring, IovecTable, ioUringAvailable } from '../../native/io_uring.js';
import { NativeError, ERRNO } from '../../native/errors.js';
import { koffi } from '../../native/koffi.js';
import {
  close, eventfd, eventfdDrain, mmap, munmap, open, pread, pwrite, raw, view,
  O_CREAT, O_DIRECT, O_RDONLY, O_RDWR, O_WRONLY, F_GETFD,
} from '../../native/libc.js';

const avail = ioUringAvailable();
if (!avail.ok) console.warn(`io_uring tests skipped: ${avail.reason}`);

/** Page-aligned anonymous buffer with a byte view. */
function buffer(len: number) {
  const addr = mmap(len);
  return { addr, len, u8: new Uint8Array(view(addr, len)), free: () => munmap(addr, len) };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

class Collect {
  got: Array<[number, number]> = [];
  onCqe(userData: number, res: number): void { this.got.push([userData, res]); }
}

/** Submits, waits for n completions and returns them. */
function runAll(ring: IoUring, n: number): Array<[number, number]> {
  const sink = new Collect();
  ring.submit();
  while (sink.got.length < n) {
    ring.submitAndWait(n - sink.got.length);
    ring.reap(sink);
  }
  return sink.got;
}

/** A directory whose filesystem accepts O_DIRECT, or undefined. */
function directIoDir(): string | undefined {
  for (const d of [os.tmpdir(), '/var/tmp', '/work']) {
    let fd = -1;
    const p = path.join(d, `.odirect-probe-${process.pid}`);
    try {
      fd = open(p, O_CREAT | O_RDWR | O_DIRECT, 0o600);
      return d;
    } catch { /* try next */ } finally {
      if (fd >= 0) close(fd);
      fs.rmSync(p, { force: true });
    }
  }
  return undefined;
}

describe.skipIf(!avail.ok)('io_uring', () => {
  let dir: string;
  let ring: IoUring;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uring-'));
    ring = IoUring.create(64);
  });
  afterAll(() => {
    ring.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sets up a ring with the requested depth', () => {
    expect(ring.name).toBe('io_uring');
    expect(ring.depth).toBe(64);
    expect(ring.cqEntries).toBe(128);
    expect(ring.ringFd).toBeGreaterThan(2);
    expect(ioUringAvailable()).toBe(avail); // cached
  });

  it('writev across 3 iovecs at an offset, fsync, readv back into different iovecs', () => {
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
    expect(iov.iovBase(1)).toBe(src.addr + 4096);
    expect(iov.iovLen(2)).toBe(904);
    const off = 3 * 4096 + 123;
    expect(ring.prepWritev(fd, iov.addrOf(0), 3, off, 1)).toBe(true);
    expect(runAll(ring, 1)).toEqual([[1, 5000]]);
    expect(ring.prepFsync(fd, false, 2)).toBe(true);
    expect(ring.prepFsync(fd, true, 3)).toBe(true);
    expect(runAll(ring, 2).sort()).toEqual([[2, 0], [3, 0]]);

    // Read into two iovecs with a different split.
    iov.set(4, dst.addr + 8192, 2500);
    iov.set(5, dst.addr + 100, 2500);
    expect(ring.prepReadv(fd, iov.addrOf(4), 2, off, 4)).toBe(true);
    expect(runAll(ring, 1)).toEqual([[4, 5000]]);
    const back = new Uint8Array(5000);
    back.set(dst.u8.subarray(8192, 8192 + 2500), 0);
    back.set(dst.u8.subarray(100, 2600), 2500);
    expect(Buffer.compare(back, data)).toBe(0);
    // Cross-check with a synchronous pread.
    const chk = new Uint8Array(5000);
    pread(fd, chk, off);
    expect(Buffer.compare(chk, data)).toBe(0);
    iov.free(); src.free(); dst.free(); close(fd);
  });

  it('prepRead / prepWrite / prepFallocate', () => {
    const p = path.join(dir, 'plain');
    const fd = open(p, O_CREAT | O_RDWR);
    const b = buffer(8192);
    b.u8.set(pattern(4096, 2));
    expect(ring.prepFallocate(fd, 0, 0, 1 << 20, 10)).toBe(true);
    expect(runAll(ring, 1)).toEqual([[10, 0]]);
    expect(fs.statSync(p).size).toBe(1 << 20);
    expect(ring.prepWrite(fd, b.addr, 4096, 65536, 11)).toBe(true);
    expect(runAll(ring, 1)).toEqual([[11, 4096]]);
    expect(ring.prepRead(fd, b.addr + 4096, 4096, 65536, 12)).toBe(true);
    expect(runAll(ring, 1)).toEqual([[12, 4096]]);
    expect(Buffer.compare(b.u8.subarray(4096), pattern(4096, 2))).toBe(0);
    b.free(); close(fd);
  });

  it('batches 64 ops in one submit and reaps them with the right user_data/res', () => {
    const fd = open(path.join(dir, 'batch'), O_CREAT | O_RDWR);
    const file = pattern(64 * 512, 3);
    pwrite(fd, file, 0);
    const b = buffer(64 * 512);
    const base = 2 ** 52; // large user_data survives the 64-bit round trip
    for (let i = 0; i < 64; i++) {
      expect(ring.prepRead(fd, b.addr + i * 512, 512 - (i & 7), (63 - i) * 512, base + i)).toBe(true);
    }
    expect(ring.pending).toBe(64);
    expect(ring.submit()).toBe(64);
    expect(ring.pending).toBe(0);
    expect(ring.submit()).toBe(0); // nothing pending: no syscall
    const sink = new Collect();
    while (sink.got.length < 64) {
      ring.submitAndWait(1);
      ring.reap(sink, 10); // respects max
    }
    expect(sink.got.length).toBe(64);
    const byUd = new Map(sink.got);
    for (let i = 0; i < 64; i++) expect(byUd.get(base + i)).toBe(512 - (i & 7));
    for (let i = 0; i < 64; i++) {
      const got = b.u8.subarray(i * 512, i * 512 + 512 - (i & 7));
      const want = file.subarray((63 - i) * 512, (63 - i) * 512 + 512 - (i & 7));
      expect(Buffer.compare(got, want)).toBe(0);
    }
    b.free(); close(fd);
  });

  it('reports errors as negative errno in res without throwing', () => {
    const p = path.join(dir, 'wo');
    const wfd = open(p, O_CREAT | O_WRONLY);
    const b = buffer(4096);
    expect(ring.prepRead(wfd, b.addr, 4096, 0, 20)).toBe(true);
    expect(ring.prepRead(987654, b.addr, 4096, 0, 21)).toBe(true); // not an fd
    const rfd = open(p, O_RDONLY);
    expect(ring.prepFsync(rfd, false, 22)).toBe(true);              // fsync on O_RDONLY is fine
    expect(ring.prepWrite(rfd, b.addr, 4096, 0, 23)).toBe(true);
    const got = runAll(ring, 4).sort((a, c) => a[0] - c[0]);
    expect(got).toEqual([[20, -ERRNO.EBADF], [21, -ERRNO.EBADF], [22, 0], [23, -ERRNO.EBADF]]);
    b.free(); close(wfd); close(rfd);
  });

  it('returns false when the SQ is full', () => {
    const small = IoUring.create(4);
    try {
      for (let i = 0; i < 4; i++) expect(small.prepNop(i)).toBe(true);
      expect(small.sqSpace).toBe(0);
      expect(small.prepNop(99)).toBe(false);
      expect(small.prepReadv(0, 0, 0, 0, 99)).toBe(false);
      expect(small.submit()).toBe(4);
      expect(small.prepNop(4)).toBe(true);
      const got = runAll(small, 5);
      expect(got.map((g) => g[0]).sort()).toEqual([0, 1, 2, 3, 4]);
    } finally { small.close(); }
  });

  it('uses registered (fixed) files', () => {
    const fdA = open(path.join(dir, 'fa'), O_CREAT | O_RDWR);
    const fdB = open(path.join(dir, 'fb'), O_CREAT | O_RDWR);
    pwrite(fdB, pattern(4096, 5), 0);
    const r = IoUring.create(8);
    const b = buffer(4096);
    try {
      r.registerFiles([fdA, fdB]);
      expect(r.prepRead(1, b.addr, 4096, 0, 30, true)).toBe(true);   // index 1 = fdB
      expect(r.prepWrite(0, b.addr, 100, 0, 31, true)).toBe(true);   // index 0 = fdA (may run first: short-ish)
      expect(r.prepRead(7, b.addr, 4096, 0, 32, true)).toBe(true);   // no such slot
      const got = runAll(r, 3).sort((a, c) => a[0] - c[0]);
      expect(got[0]).toEqual([30, 4096]);
      expect(got[1][0]).toBe(31);
      expect(got[2]).toEqual([32, -ERRNO.EBADF]);
      expect(Buffer.compare(b.u8, pattern(4096, 5))).toBe(0);
      r.unregisterFiles();
    } finally { r.close(); b.free(); close(fdA); close(fdB); }
  });

  it('signals a registered eventfd on completion', () => {
    const efd = eventfd();
    const r = IoUring.create(8);
    try {
      r.registerEventfd(efd);
      expect(eventfdDrain(efd)).toBe(false);
      r.prepNop(40);
      expect(runAll(r, 1)).toEqual([[40, 0]]);
      expect(eventfdDrain(efd)).toBe(true);
      r.unregisterEventfd();
      r.prepNop(41);
      runAll(r, 1);
      expect(eventfdDrain(efd)).toBe(false);
    } finally { r.close(); close(efd); }
  });

  it('works with SQPOLL', () => {
    const r = IoUring.create(16, { sqpoll: true, sqThreadIdleMs: 10 });
    const fd = open(path.join(dir, 'sqpoll'), O_CREAT | O_RDWR);
    const b = buffer(4096);
    try {
      expect(r.sqpoll).toBe(true);
      b.u8.set(pattern(4096, 6));
      r.prepWrite(fd, b.addr, 4096, 0, 50);
      expect(runAll(r, 1)).toEqual([[50, 4096]]);
      b.u8.fill(0);
      r.prepRead(fd, b.addr, 4096, 0, 51);
      expect(runAll(r, 1)).toEqual([[51, 4096]]);
      expect(Buffer.compare(b.u8, pattern(4096, 6))).toBe(0);
    } finally { r.close(); b.free(); close(fd); }
  });

  it('O_DIRECT write/read with aligned buffers', (ctx) => {
    const d = directIoDir();
    if (!d) { ctx.skip('no filesystem supporting O_DIRECT among tmpdir, /var/tmp, /work'); return; }
    const p = path.join(d, `uring-direct-${process.pid}`);
    const fd = open(p, O_CREAT | O_RDWR | O_DIRECT, 0o600);
    const src = buffer(3 * 4096), dst = buffer(3 * 4096);
    const iov = new IovecTable(4);
    try {
      const data = pattern(3 * 4096, 7);
      src.u8.set(data);
      iov.set(0, src.addr, 4096); iov.set(1, src.addr + 4096, 8192);
      ring.prepWritev(fd, iov.addrOf(0), 2, 8192, 60);
      expect(runAll(ring, 1)).toEqual([[60, 3 * 4096]]);
      ring.prepRead(fd, dst.addr, 3 * 4096, 8192, 61);
      ring.prepRead(fd, dst.addr + 1, 4096, 8192, 62); // misaligned buffer
      const got = runAll(ring, 2).sort((a, c) => a[0] - c[0]);
      expect(got).toEqual([[61, 3 * 4096], [62, -ERRNO.EINVAL]]);
      expect(Buffer.compare(dst.u8, data)).toBe(0);
    } finally { iov.free(); src.free(); dst.free(); close(fd); fs.rmSync(p, { force: true }); }
  });

  it('close releases the ring fd', () => {
    const r = IoUring.create(4);
    const fd = r.ringFd;
    expect(raw.fcntl(fd, F_GETFD, 0)).toBeGreaterThanOrEqual(0);
    r.close();
    expect(raw.fcntl(fd, F_GETFD, 0)).toBe(-1);
    expect(koffi.errno()).toBe(ERRNO.EBADF);
    r.close(); // idempotent
    expect(() => r.prepNop(1)).toThrow(RangeError); // views detached: no access to unmapped memory
  });

  it('create throws NativeError on bad arguments', () => {
    expect(() => IoUring.create(0)).toThrow(NativeError);
    try { IoUring.create(0); } catch (e) { expect((e as NativeError).code).toBe('EINVAL'); }
  });

  // io_uring_setup is made to fail with seccomp in a child process (python3 installs
  // the filter, then execs node on the compiled module), so nothing system-wide changes.
  it('reports ENOSYS/EPERM from io_uring_setup as unavailable', (ctx) => {
    const mod = fileURLToPath(new URL('../../dist/native/io_uring.js', import.meta.url));
    if (!fs.existsSync(mod)) { ctx.skip('dist/ not built (npx tsc -p .)'); return; }
    if (spawnSync('python3', ['-c', '0']).status !== 0) { ctx.skip('python3 not available'); return; }
    const js = `import { IoUring, ioUringAvailable } from ${JSON.stringify(mod)};
      const a = ioUringAvailable(); let code;
      try { IoUring.create(8).close(); } catch (e) { code = e.name + ':' + e.code; }
      console.log(JSON.stringify({ ...a, code, cached: ioUringAvailable() === a }));`;
    for (const [errno, code] of [[38, 'ENOSYS'], [1, 'EPERM']] as const) {
      const r = spawnSync('python3', ['-c', SECCOMP_PY, String(errno), process.execPath, '--input-type=module', '-e', js],
        { encoding: 'utf8', timeout: 20000 });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(out).toMatchObject({ ok: false, code: `NativeError:${code}`, cached: true });
      expect(out.reason).toContain(code);
    }
  });
});

const SECCOMP_PY = `
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
ins = lambda code, jt, jf, k: struct.pack('HBBI', code, jt, jf, k)
prog = ins(0x20, 0, 0, 0) + ins(0x15, 0, 1, 425) + ins(0x06, 0, 0, 0x50000 | int(sys.argv[1])) + ins(0x06, 0, 0, 0x7fff0000)
buf = ctypes.create_string_buffer(prog)
class F(ctypes.Structure): _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
f = F(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(f), 0, 0) == 0
os.execv(sys.argv[2], sys.argv[2:])
`;
