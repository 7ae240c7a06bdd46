// The RPC method table: name → schema, handler and the app states it may run in
// (SPDK's SPDK_RPC_STARTUP/SPDK_RPC_RUNTIME masks).
import type { AppContext, AppState } from '../framework/app_context.js';
import { Params, Schema, validateParams } from './params.js';
import { logger } from '../log.js';

const log = logger('rpc');
import { RpcCode, RpcError, toRpcError } from './errors.js';

export type Handler<S extends Schema> = (params: Params<S>, ctx: AppContext) => unknown | Promise<unknown>;

export interface MethodOptions {
  /** States the method may run in; default ['running'] (SPDK_RPC_RUNTIME). */
  states?: readonly AppState[];
  /** Short description for help output. */
  help?: string;
}

export interface Method {
  readonly name: string;
  readonly schema: Schema;
  readonly states: readonly AppState[];
  readonly help: string;
  readonly handler: (params: never, ctx: AppContext) => unknown;
}

export const STARTUP_AND_RUNTIME: readonly AppState[] = ['waiting_for_rpc', 'running'];

export class MethodRegistry {
  private readonly methods = new Map<string, Method>();

  register<const S extends Schema>(name: string, schema: S, handler: Handler<S>, opts: MethodOptions = {}): void {
    if (this.methods.has(name)) throw new Error(`RPC method '${name}' is registered twice`);
    this.methods.set(name, {
      name, schema, handler: handler as Method['handler'],
      states: opts.states ?? ['running'], help: opts.help ?? '',
    });
  }

  private readonly successListeners: ((method: string) => void)[] = [];
  /** Called after every method that succeeded (e.g. to persist the configuration). */
  onSuccess(l: (method: string) => void): void { this.successListeners.push(l); }

  get(name: string): Method | undefined { return this.methods.get(name); }
  has(name: string): boolean { return this.methods.has(name); }
  list(): Method[] { return [...this.methods.values()]; }

  /** Validates and runs a method as the RPC server would; every failure is an RpcError. */
  async invoke(name: string, params: unknown, ctx: AppContext): Promise<unknown> {
    const m = this.methods.get(name);
    if (!m) throw new RpcError(RpcCode.METHOD_NOT_FOUND, `Method not found: '${name}' (list methods with rpc_get_methods)`);
    checkState(m, ctx.state);
    const p = validateParams(name, m.schema, params);
    try {
      const result = await (m.handler as (p: unknown, c: AppContext) => unknown)(p, ctx);
      for (const l of this.successListeners) l(name);
      return result;
    } catch (e) {
      const err = toRpcError(e);
      if (err.code === RpcCode.INTERNAL_ERROR) log.error(`${name}: ${(e as Error)?.stack ?? String(e)}`);
      throw err;
    }
  }
}

function checkState(m: Method, state: AppState): void {
  if (m.states.includes(state)) return;
  if (state === 'waiting_for_rpc') {
    throw new RpcError(RpcCode.INVALID_STATE, `Method may only be called after framework is initialized ` +
      `using framework_start_init RPC ('${m.name}' is not allowed while vhostd waits for RPC)`);
  }
  if (state === 'running') {
    throw new RpcError(RpcCode.INVALID_STATE, `Method may only be called before framework is initialized. ` +
      `Use --wait-for-rpc command line parameter and then issue this RPC before the framework_start_init RPC.`);
  }
  throw new RpcError(RpcCode.INVALID_STATE, `vhostd is shutting down: '${m.name}' is refused`);
}
