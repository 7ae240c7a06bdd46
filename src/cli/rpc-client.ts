// A JSON-RPC client over the daemon's Unix socket, one call at a time.
import net from 'node:net';
import { JsonSplitter } from '../rpc/splitter.js';

export class ClientError extends Error {
  constructor(message: string, readonly code?: number) { super(message); this.name = 'ClientError'; }
}

export class RpcClient {
  private nextId = 1;
  private readonly splitter = new JsonSplitter(64 << 20);
  private readonly waiting: ((v: unknown) => void)[] = [];
  private readonly ready: unknown[] = [];
  private closedError: ClientError | null = null;

  private constructor(private readonly sock: net.Socket, readonly path: string, private readonly timeoutMs: number) {
    sock.on('data', (d: Buffer) => {
      const { values, error } = this.splitter.push(d);
      for (const v of values) this.deliver(JSON.parse(v));
      if (error) this.fail(new ClientError(`bad response from ${path}: ${error.message}`));
    });
    sock.on('close', () => this.fail(new ClientError(`${path} closed the connection`)));
    sock.on('error', () => { /* reported by close */ });
  }

  static connect(path: string, timeoutMs = 60_000): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      sock.once('connect', () => resolve(new RpcClient(sock, path, timeoutMs)));
      sock.once('error', (e: NodeJS.ErrnoException) => reject(new ClientError(
        `cannot connect to ${path}: is vhostd running? (${e.code ?? e.message}; choose the socket with -s)`)));
    });
  }

  async call(method: string, params?: unknown): Promise<unknown> {
    const id = this.nextId++;
    const req: Record<string, unknown> = { jsonrpc: '2.0', method, id };
    if (params !== undefined) req.params = params;
    this.sock.write(JSON.stringify(req));
    const resp = await this.next(method) as { id?: unknown; result?: unknown; error?: { code: number; message: string } };
    if (resp.error) throw new ClientError(`${method} failed: ${resp.error.message} (code ${resp.error.code})`, resp.error.code);
    if (resp.id !== id) throw new ClientError(`${method}: response id ${JSON.stringify(resp.id)} does not match request id ${id}`);
    return resp.result;
  }

  close(): void { this.sock.end(); this.sock.destroy(); }

  private next(method: string): Promise<unknown> {
    if (this.ready.length) return Promise.resolve(this.ready.shift());
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new ClientError(`${method}: no response from ${this.path} within ${this.timeoutMs / 1000}s`)),
        this.timeoutMs);
      this.waiting.push((v) => { clearTimeout(t); if (v instanceof ClientError) reject(v); else resolve(v); });
    });
  }

  private deliver(v: unknown): void {
    const w = this.waiting.shift();
    if (w) w(v); else this.ready.push(v);
  }

  private fail(e: ClientError): void {
    if (this.closedError) return;
    this.closedError = e;
    for (const w of this.waiting.splice(0)) w(e);
  }
}
