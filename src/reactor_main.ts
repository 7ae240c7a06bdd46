// A reactor thread's entry point: loads every module's reactor side (src/reactor_modules.ts),
// then runs the Reactor until it is told to stop. ReactorPool starts one per CPU with this file.
import { workerData, MessagePort } from 'node:worker_threads';
import './reactor_modules.js';
import { Reactor } from './reactor/reactor.js';
import * as M from './reactor/mailbox.js';

function main(): void {
  const { init, port } = workerData as { init: M.ReactorInit; port: MessagePort };
  const r = new Reactor(init, port);
  port.postMessage({ event: 'ready', data: { index: r.index, tid: r.tid } } satisfies M.ReactorEvent);
  r.run();
  port.close();
}

if (workerData && (workerData as { init?: unknown }).init) main();
