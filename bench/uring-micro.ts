// Micro-benchmark of the async I/O engines: 4 KiB random reads at a fixed queue
// depth for a fixed time, through the allocation-free prep/submit/reap path.
// Build, then: node dist/bench/uring-micro.js [--secs 1] [--qd 32] [--dir /var/tmp]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { PerformanceObserver } from 'node:perf_hooks';
import { IoUring, ioUringAvailable } from '../native/io_uring.js';
import { LinuxAio } from '../native/linux_aio.js';
import type { AsyncIoEngine } from '../native/async_io.js';
import { close, fsync, mmap, munmap, open, pwrite, O_CREAT, O_DIRECT, O_RDONLY, O_RDWR } from '../native/libc.js';

const { values: args } = parseArgs({
  options: {
    secs: { type: 'string', default: '1' }, qd: { type: 'string', default: '32' },
    dir: { type: 'string', default: os.tmpdir() }, 'file-mb': { type: 'string', default: '64' },
  },
});
const SECS = Number(args.secs), QD = Number(args.qd), BS = 4096;
const FILE_BYTES = Number(args['file-mb']) << 20, BLOCKS = FILE_BYTES / BS;

function makeFile(p: string): void {
  const fd = open(p, O_CREAT | O_RDWR, 0o600);
  const chunk = new Uint8Array(1 << 20).fill(0xa5);
  for (let off = 0; off < FILE_BYTES; off += chunk.length) pwrite(fd, chunk, off);
  fsync(fd);
  close(fd);
}

interface Result { ops: number; errors: number; secs: number }

/** Keeps QD reads in flight; each completion immediately re-arms its slot. */
function randRead(io: AsyncIoEngine, fd: number, secs: number): Result {
  const bufLen = QD * BS, buf = mmap(bufLen);
  const retry = new Int32Array(QD); // slots whose re-arm found the SQ full (SQPOLL head lag)
  let seed = 0x2545f491, ops = 0, errors = 0, inflight = 0, nRetry = 0;
  const next = (): number => { // xorshift32, no allocation
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return (seed % BLOCKS) * BS;
  };
  const arm = (slot: number): void => {
    if (io.prepRead(fd, buf + slot * BS, BS, next(), slot)) inflight++;
    else retry[nRetry++] = slot;
  };
  const sink = {
    onCqe(slot: number, res: number): void {
      ops++; inflight--;
      if (res !== BS) errors++;
      arm(slot);
    },
  };
  for (let s = 0; s < QD; s++) arm(s);
  const t0 = performance.now(), end = t0 + secs * 1000;
  let now = t0;
  while (now < end) {
    for (let k = nRetry; k > 0; k--) arm(retry[--nRetry]);
    if (inflight > 0) io.submitAndWait(1);
    io.reap(sink);
    if ((ops & 1023) < 32) now = performance.now();
  }
  const elapsed = (performance.now() - t0) / 1000;
  const drain = { onCqe(): void { inflight--; } };
  while (inflight > 0) { io.submitAndWait(1); io.reap(drain); }
  munmap(buf, bufLen);
  return { ops, errors, secs: elapsed };
}

// Young-generation GCs during the measured run (allocation-free hot path => ~0).
let gcs = 0;
new PerformanceObserver((l) => { gcs += l.getEntries().length; }).observe({ entryTypes: ['gc'] });
const settle = () => new Promise((r) => setTimeout(r, 20));

function report(label: string, r: Result, gc: number): void {
  const kops = r.ops / r.secs / 1000;
  console.log(`${label.padEnd(34)} ${kops.toFixed(1).padStart(8)} kIOPS  ${(kops * BS / 1024).toFixed(0).padStart(6)} MiB/s` +
    `  errors=${r.errors}  GCs=${gc}`);
}

async function runEngine(label: string, make: () => AsyncIoEngine, file: string, flags: number): Promise<void> {
  let fd = -1, io: AsyncIoEngine | undefined;
  try {
    fd = open(file, O_RDONLY | flags);
    io = make();
    randRead(io, fd, Math.min(0.2, SECS)); // warm-up
    await settle(); gcs = 0;
    const r = randRead(io, fd, SECS);
    await settle();
    report(label, r, gcs);
  } catch (e) {
    console.log(`${label.padEnd(34)} skipped: ${e instanceof Error ? e.message : e}`);
  } finally {
    io?.close();
    if (fd >= 0) close(fd);
  }
}

const dir = fs.mkdtempSync(path.join(args.dir!, 'uring-micro-'));
const file = path.join(dir, 'data');
try {
  makeFile(file);
  const u = ioUringAvailable();
  console.log(`kernel ${os.release()}, ${os.cpus().length} CPUs, file ${FILE_BYTES >> 20} MiB in ${dir}, ` +
    `4 KiB random reads, QD${QD}, ${SECS}s each; io_uring: ${u.ok ? 'available' : `unavailable (${u.reason})`}`);
  const depth = Math.max(QD, 1);
  for (const [mode, flags] of [['page cache', 0], ['O_DIRECT', O_DIRECT]] as const) {
    if (u.ok) {
      await runEngine(`io_uring        ${mode}`, () => IoUring.create(depth), file, flags);
      await runEngine(`io_uring sqpoll ${mode}`, () => IoUring.create(depth, { sqpoll: true }), file, flags);
    }
    await runEngine(`linux-aio       ${mode}`, () => LinuxAio.create(depth), file, flags);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
