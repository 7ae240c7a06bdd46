// JSON-RPC error codes (JSON-RPC 2.0 plus SPDK's) and the typed error handlers throw.

export const RpcCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** SPDK_JSONRPC_ERROR_INVALID_STATE: method not allowed in the current RPC state. */
  INVALID_STATE: -1,
  EBUSY: -16,
  EEXIST: -17,
  ENODEV: -19,
  EINVAL: -22,
  ENOMEM: -12,
} as const;

export class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly data?: unknown) {
    super(message);
    this.name = 'RpcError';
  }
}

export const invalidParams = (msg: string) => new RpcError(RpcCode.INVALID_PARAMS, msg);

/** A module's error that knows its JSON-RPC code (SPDK answers -errno), e.g. BdevError. */
export interface CodedError extends Error { readonly rpcCode: number }

const isCoded = (e: unknown): e is CodedError => e instanceof Error && typeof (e as Partial<CodedError>).rpcCode === 'number';

/** Maps anything a handler threw to an RpcError (SPDK returns -errno for module failures). */
export function toRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  if (isCoded(e)) return new RpcError(e.rpcCode, e.message);
  const err = e as { name?: string; errno?: number; message?: string };
  if (err && err.name === 'NativeError' && typeof err.errno === 'number') {
    return new RpcError(-err.errno, err.message ?? 'system call failed');
  }
  return new RpcError(RpcCode.INTERNAL_ERROR, `internal error: ${err?.message ?? String(e)}`);
}
