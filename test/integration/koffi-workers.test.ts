// koffi from many worker threads at once (upstream koffi#190, #274 concerned workers):
// each worker loads koffi, calls into libc in a loop and reads a mapping the main thread
// made; some are stopped early the way vhostd stops reactors (a shared flag, then the thread
// exits by itself) while the others keep calling. The process must survive and see right data.
// (worker.terminate() in the middle of a koffi call can abort the process: vhostd never does it.)
import { describe, it, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as libc from '../../native/libc.js';

const LIBC = pathToFileURL(resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/native/libc.js')).href;

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
import(${JSON.stringify(LIBC)}).then((libc) => {
  const { addr, len, ms, stop } = workerData;
  const flag = new Int32Array(stop);
  const mem = new Uint32Array(libc.view(addr, len));
  const efd = libc.eventfd();
  const buf = new Uint8Array(64);
  let calls = 0, sum = -1;
  const end = Date.now() + ms;
  while (Date.now() < end && Atomics.load(flag, 0) === 0) {
    for (let i = 0; i < 200; i++) {
      libc.eventfdSignal(efd);
      if (!libc.eventfdDrain(efd)) throw new Error('eventfd lost a signal');
      libc.getpid();
      calls += 3;
    }
    let pass = 0;
    for (let i = 0; i < mem.length; i += 1024) pass = (pass + mem[i]) >>> 0;
    if (sum >= 0 && pass !== sum) throw new Error('the shared mapping read differently between passes');
    sum = pass;
  }
  libc.closeQuiet(efd);
  parentPort.postMessage({ calls, sum, tid: libc.gettid() });
});
`;

function run(addr: number, len: number, ms: number, stop = new SharedArrayBuffer(4)):
  { worker: Worker; stop: Int32Array; exited: Promise<unknown>; done: Promise<{ calls: number; sum: number; tid: number }> } {
  const worker = new Worker(WORKER, { eval: true, workerData: { addr, len, ms, stop } });
  const done = new Promise<{ calls: number; sum: number; tid: number }>((res, rej) => {
    worker.once('message', res);
    worker.once('error', rej);
  });
  const exited = new Promise((res) => worker.once('exit', res));
  return { worker, stop: new Int32Array(stop), exited, done };
}

describe('koffi in worker threads', () => {
  it('survives several workers calling libc and reading a shared mapping, some stopped early', async () => {
    const len = 1 << 20;
    const addr = libc.mmap(len);
    const words = new Uint32Array(libc.view(addr, len));
    for (let i = 0; i < words.length; i++) words[i] = i * 2654435761 >>> 0;
    let expected = 0;
    for (let i = 0; i < words.length; i += 1024) expected = (expected + words[i]) >>> 0;

    for (let round = 0; round < 3; round++) {
      const steady = Array.from({ length: 4 }, () => run(addr, len, 700));
      const doomed = Array.from({ length: 3 }, () => run(addr, len, 10_000));
      await new Promise((r) => setTimeout(r, 150 + 100 * round));
      for (const d of doomed) Atomics.store(d.stop, 0, 1);            // stopped while others call into libc
      for (const r of await Promise.all(doomed.map((d) => d.done))) expect([-1, expected]).toContain(r.sum);
      await Promise.all(doomed.map((d) => d.exited));
      const results = await Promise.all(steady.map((s) => s.done));
      for (const r of results) {
        expect(r.calls).toBeGreaterThan(1000);
        expect(r.sum).toBe(expected);   // the worker saw the main thread's data through its own view
      }
      expect(new Set(results.map((r) => r.tid)).size).toBe(results.length);
    }
    // the main thread's own koffi use is unaffected
    expect(libc.getpid()).toBe(process.pid);
    libc.munmap(addr, len);
  }, 60_000);
});
