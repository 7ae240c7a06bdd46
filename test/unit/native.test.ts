import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unixListen, unixConnect, unixAccept, recvWithFds, sendWithFds } from '../../native/socket.js';
import { Epoll } from '../../native/epoll.js';
import * as libc from '../../native/libc.js';
import { NativeError } from '../../native/errors.js';

function socketPairViaPath() {
  const dir = mkdtempSync(join(tmpdir(), 'vhostd-native-'));
  const path = join(dir, 's.sock');
  const l = unixListen(path);
  const c = unixConnect(path);
  let s = -1;
  for (let i = 0; i < 100 && s < 0; i++) s = unixAccept(l);
  libc.closeQuiet(l);
  return { c, s };
}

describe('native', () => {
  it('passes fds with SCM_RIGHTS both ways and the passed fd refers to the same file', () => {
    const { c, s } = socketPairViaPath();
    const memfd = libc.memfdCreate('t', 4096);
    const addr = libc.mmap(4096, memfd);
    new Uint8Array(libc.view(addr, 4096)).set([1, 2, 3, 4]);
    sendWithFds(c, new Uint8Array([9, 8, 7]), [memfd]);
    const buf = new Uint8Array(16);
    const r = recvWithFds(s, buf, 0, 16);
    expect(r.n).toBe(3);
    expect([...buf.subarray(0, 3)]).toEqual([9, 8, 7]);
    expect(r.fds).toHaveLength(1);
    expect(r.fds[0]).not.toBe(memfd);
    const addr2 = libc.mmap(4096, r.fds[0]);
    expect([...new Uint8Array(libc.view(addr2, 4))]).toEqual([1, 2, 3, 4]);
    // and back the other way with two fds
    const e1 = libc.eventfd(), e2 = libc.eventfd();
    sendWithFds(s, new Uint8Array([1]), [e1, e2]);
    const r2 = recvWithFds(c, buf, 0, 16);
    expect(r2.fds).toHaveLength(2);
    libc.eventfdSignal(r2.fds[1]);
    expect(libc.eventfdDrain(e2)).toBe(true);
    expect(libc.eventfdDrain(e1)).toBe(false);
    expect(recvWithFds(c, buf, 0, 16).n).toBe(-1); // would block
    libc.closeQuiet(s);
    expect(recvWithFds(c, buf, 0, 16).n).toBe(0); // peer closed
    for (const fd of [c, memfd, e1, e2, ...r.fds, ...r2.fds]) libc.closeQuiet(fd);
    libc.munmap(addr, 4096); libc.munmap(addr2, 4096);
  });

  it('epoll reports eventfd readiness synchronously and asynchronously', async () => {
    const ep = new Epoll();
    const e = libc.eventfd();
    ep.add(e);
    expect(ep.wait(0)).toBe(0);
    libc.eventfdSignal(e);
    expect(ep.wait(0)).toBe(1);
    expect(ep.readyFd(0)).toBe(e);
    libc.eventfdDrain(e);
    const p = new Promise<number>((res, rej) => ep.waitAsync(5000, (err, n) => (err ? rej(err) : res(n))));
    setTimeout(() => libc.eventfdSignal(e), 50);
    expect(await p).toBe(1);
    expect(ep.readyFd(0)).toBe(e);
    ep.close(); libc.closeQuiet(e);
  });

  it('raises typed errors with the call and errno name', () => {
    try {
      libc.open('/nonexistent/dir/file', libc.O_RDONLY);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(NativeError);
      expect((e as NativeError).code).toBe('ENOENT');
      expect((e as NativeError).message).toMatch(/open failed: ENOENT .*\/nonexistent/);
    }
  });

  it('pread/pwrite/fdatasync/fallocate on a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vhostd-native-'));
    const p = join(dir, 'f');
    writeFileSync(p, Buffer.alloc(8192, 0x11));
    const fd = libc.open(p, libc.O_RDWR);
    expect(libc.pwrite(fd, new Uint8Array([5, 6, 7]), 4096)).toBe(3);
    libc.fdatasync(fd);
    const b = new Uint8Array(4);
    expect(libc.pread(fd, b, 4095)).toBe(4);
    expect([...b]).toEqual([0x11, 5, 6, 7]);
    libc.fallocate(fd, libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE, 0, 4096);
    libc.close(fd);
    const back = readFileSync(p);
    expect(back.length).toBe(8192);
    expect(back[0]).toBe(0);
    expect(back[4097]).toBe(6);
  });

  it('pins the calling thread with sched_setaffinity', () => {
    const before = libc.getAffinity(0);
    libc.setAffinity(0, [before[0]]);
    expect(libc.getAffinity(0)).toEqual([before[0]]);
    libc.setAffinity(0, before);
    expect(libc.getAffinity(0)).toEqual(before);
  });
});
