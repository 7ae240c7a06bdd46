// Turns one received JSON text into the response text (or nothing): request shape checks,
// batches, notifications; method errors become JSON-RPC error objects.
import type { AppContext } from '../framework/app_context.js';
import { logger } from '../log.js';
import { MethodRegistry } from './registry.js';
import { RpcCode, RpcError, toRpcError } from './errors.js';

const log = logger('rpc');

type Id = string | number | null;
export interface Response {
  jsonrpc: '2.0';
  id: Id;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

const errorResponse = (id: Id, e: RpcError): Response => ({
  jsonrpc: '2.0', id, error: e.data === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, data: e.data },
});

const invalid = (msg: string) => new RpcError(RpcCode.INVALID_REQUEST, `Invalid request: ${msg}`);

/** Handles one request object; undefined means no response (a notification). */
export async function handleRequest(req: unknown, reg: MethodRegistry, ctx: AppContext): Promise<Response | undefined> {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) {
    return errorResponse(null, invalid('each request must be a JSON object with "jsonrpc":"2.0", "method" and optional "id"/"params"'));
  }
  const r = req as Record<string, unknown>;
  const hasId = Object.hasOwn(r, 'id');
  const id = r.id;
  if (hasId && id !== null && typeof id !== 'string' && typeof id !== 'number') {
    return errorResponse(null, invalid('"id" must be a string, a number or null'));
  }
  const rid = (hasId ? id : null) as Id;
  if (Object.hasOwn(r, 'jsonrpc') && r.jsonrpc !== '2.0') return errorResponse(rid, invalid('"jsonrpc" must be "2.0"'));
  if (typeof r.method !== 'string') return errorResponse(rid, invalid('"method" must be a string naming the method to call'));
  const params = r.params;
  if (params !== undefined && params !== null && typeof params !== 'object') {
    return errorResponse(rid, invalid('"params" must be an object (or absent)'));
  }
  for (const k of Object.keys(r)) {
    if (k !== 'jsonrpc' && k !== 'method' && k !== 'params' && k !== 'id') {
      return errorResponse(rid, invalid(`unexpected member "${k}" (allowed: jsonrpc, method, params, id)`));
    }
  }
  try {
    const result = await reg.invoke(r.method, params, ctx);
    return hasId ? { jsonrpc: '2.0', id: rid, result: result === undefined ? true : result } : undefined;
  } catch (e) {
    const err = toRpcError(e);
    if (err.code !== RpcCode.INTERNAL_ERROR) log.info(`${r.method}: error ${err.code}: ${err.message}`);
    return hasId ? errorResponse(rid, err) : undefined;
  }
}

/** Handles one complete JSON text: a single request or a batch array. */
export async function handleText(text: string, reg: MethodRegistry, ctx: AppContext): Promise<Response | Response[] | undefined> {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    return errorResponse(null, new RpcError(RpcCode.PARSE_ERROR, `Parse error: ${(e as Error).message}`));
  }
  if (!Array.isArray(msg)) return handleRequest(msg, reg, ctx);
  if (msg.length === 0) return errorResponse(null, invalid('a batch must contain at least one request'));
  const out: Response[] = [];
  for (const one of msg) {            // in order: a batch may create then use an object
    const resp = await handleRequest(one, reg, ctx);
    if (resp) out.push(resp);
  }
  return out.length ? out : undefined;
}
