// Helpers for the file bdev tests: guest memory over an anonymous mapping, BdevIos with
// scatter lists, and a poll loop that drives a channel in the test thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { BdevIo, BdevIoSink, SegmentTable } from '../../bdev/bdev_io.js';
import { BdevChannel, openChannel } from '../../bdev/channel.js';
import { FileBdev } from '../../bdev/file/file.js';
import '../../bdev/file/file_channel.js';
import { GuestMemory } from '../../src/memory/guest_memory.js';
import { mmap, munmap } from '../../native/libc.js';
import type { FileChannel } from '../../bdev/file/file_channel.js';

export class Guest {
  readonly addr: number;
  readonly mem: GuestMemory;
  readonly u8: Uint8Array;
  constructor(readonly size = 8 << 20) {
    this.addr = mmap(size);
    this.mem = new GuestMemory([{ gpa: 0, size, uaddr: 0, hva: this.addr }]);
    this.u8 = this.mem.u8[0];
  }
  free(): void { munmap(this.addr, this.size); }
}

export class Sink implements BdevIoSink {
  done = new Set<BdevIo>();
  count = 0;
  onBdevIoDone(io: BdevIo): void {
    if (this.done.has(io)) throw new Error(`I/O ${io.tag} completed twice`);
    this.done.add(io);
    this.count++;
  }
}

let tag = 0;
/** An I/O whose scatter list is [guestOffset, length] pairs. */
export function mkIo(sink: Sink, g: Guest, type: number, offsetBlocks: number, numBlocks: number,
  segs: Array<[number, number]> = []): BdevIo {
  const t = new SegmentTable(Math.max(1, segs.length));
  segs.forEach(([off, len], i) => { t.region[i] = 0; t.off[i] = off; t.len[i] = len; });
  const io = new BdevIo(sink, tag++, t);
  io.type = type; io.offsetBlocks = offsetBlocks; io.numBlocks = numBlocks;
  io.mem = g.mem; io.segBase = 0; io.nseg = segs.length;
  io.bytes = segs.reduce((a, [, l]) => a + l, 0);
  return io;
}

/** Polls until every io has completed (or throws after timeoutMs). */
export function pollUntil(ch: BdevChannel, sink: Sink, ios: BdevIo[], timeoutMs = 10_000): void {
  const end = Date.now() + timeoutMs;
  while (!ios.every((io) => sink.done.has(io))) {
    ch.poll();
    if (Date.now() > end) throw new Error(`timed out: ${ios.filter((io) => !sink.done.has(io)).length} I/Os pending, inflight=${ch.inflight()}`);
  }
}

/** Submits and waits; returns the status. */
export function run(ch: BdevChannel, sink: Sink, io: BdevIo): number {
  ch.submit(io);
  pollUntil(ch, sink, [io]);
  return io.status;
}

export function openFileChannel(b: FileBdev, reactor = 0): FileChannel {
  return openChannel(b.channelSpec(), reactor) as FileChannel;
}

export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

/** A fresh directory on a file system that accepts O_DIRECT (ext4 /var/tmp here), or undefined. */
export function directDir(): string | undefined {
  for (const d of ['/var/tmp', '/tmp', '/work']) {
    try {
      const dir = fs.mkdtempSync(path.join(d, 'vhostd-file-'));
      const p = path.join(dir, 'probe');
      fs.writeFileSync(p, '');
      try {
        fs.closeSync(fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_DIRECT));
        fs.rmSync(p);
        return dir;
      } catch {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } catch { /* next */ }
  }
  return undefined;
}

/** A sparse file of `bytes`. */
export function sparseFile(dir: string, name: string, bytes: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, bytes);
  return p;
}

/** Attaches a loop device over file (optionally with a logical sector size); undefined if not possible here. */
export function loopDevice(file: string, sectorSize?: number): string | undefined {
  try {
    const args = ['-f', '--show', ...(sectorSize ? ['--sector-size', String(sectorSize)] : []), file];
    return execFileSync('losetup', args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

export function detachLoop(dev: string): void {
  try { execFileSync('losetup', ['-d', dev], { stdio: 'ignore' }); } catch { /* already gone */ }
}
