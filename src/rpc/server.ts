// JSON-RPC 2.0 server on a Unix socket with SPDK's unframed wire format: requests are
// back-to-back JSON values, each response is followed by a newline.
import net from 'node:net';
import { unlinkSync } from 'node:fs';
import type { AppContext } from '../framework/app_context.js';
import { logger } from '../log.js';
import { JsonSplitter } from './splitter.js';
import { handleText } from './dispatch.js';
import { MethodRegistry } from './registry.js';
import { RpcCode } from './errors.js';
import { claimSocketPath } from './socket-path.js';

const log = logger('rpc');

export interface RpcServerOptions {
  path: string;
  registry: MethodRegistry;
  ctx: AppContext;
  /** Largest request in bytes; a bigger one gets an error and the connection is closed. */
  maxRequestBytes?: number;
}

export class RpcServer {
  private server: net.Server | null = null;
  private readonly conns = new Set<net.Socket>();

  constructor(private readonly o: RpcServerOptions) {}

  get path(): string { return this.o.path; }

  async listen(): Promise<void> {
    await claimSocketPath(this.o.path);
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.path, () => { server.off('error', reject); resolve(); });
    });
    server.on('error', (e) => log.error(`RPC server error: ${e.message}`));
    this.server = server;
    log.notice(`RPC server listening on ${this.o.path}`);
  }

  /** Stops accepting, drops connections and removes the socket file. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try { unlinkSync(this.o.path); } catch { /* already gone */ }
  }

  private serve(sock: net.Socket): void {
    this.conns.add(sock);
    const splitter = new JsonSplitter(this.o.maxRequestBytes ?? 1 << 20);
    let queue: Promise<void> = Promise.resolve();   // one connection's requests run in order
    const send = (obj: unknown) => { if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(obj) + '\n'); };

    sock.on('data', (data: Buffer) => {
      const { values, error } = splitter.push(data);
      for (const text of values) {
        queue = queue.then(async () => {
          const resp = await handleText(text, this.o.registry, this.o.ctx);
          if (resp) send(resp);
        }).catch((e) => log.error(`RPC connection error: ${(e as Error).message}`));
      }
      if (error) {
        const code = error.kind === 'too_large' ? RpcCode.INVALID_REQUEST : RpcCode.PARSE_ERROR;
        const what = error.kind === 'too_large' ? 'Invalid request' : 'Parse error';
        queue = queue.then(() => {
          send({ jsonrpc: '2.0', id: null, error: { code, message: `${what}: ${error.message}; closing the connection` } });
          sock.end();
        });
      }
    });
    sock.on('end', () => { queue.then(() => sock.end()); });
    sock.on('error', (e) => log.debug(`RPC client socket error: ${e.message}`));
    sock.on('close', () => this.conns.delete(sock));
  }
}
