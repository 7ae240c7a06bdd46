// Small helpers for the standalone bench scripts (import, qos, soak): numeric flags and
// one JSON-RPC call per connection to a vhostd they started.
import { createConnection } from "node:net";

/** `--name N` from the command line, or `def`. */
export function numArg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

/** One JSON-RPC request on its own connection; rejects with the method and vhostd's message. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function rpc(sock: string, method: string, params?: unknown): Promise<any> {
  return new Promise((res, rej) => {
    const c = createConnection(sock);
    let buf = "";
    c.on("data", (d) => {
      buf += d;
      if (!buf.includes("\n")) return;
      c.end();
      const r = JSON.parse(buf);
      if (r.error) rej(new Error(`${method}: ${r.error.message}`)); else res(r.result);
    });
    c.on("error", rej);
    c.write(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }));
  });
}
