// Subcommand definitions are data: arguments (rpc.py's names and flags) and how they map to params.
import type { RpcClient } from '../rpc-client.js';

export interface ArgSpec {
  /** Destination name; also the JSON param name unless param says otherwise. */
  name: string;
  /** Option flags like ['-b', '--name']; none means positional. */
  flags?: string[];
  type?: 'string' | 'int' | 'float' | 'bool';
  help: string;
  required?: boolean;
  choices?: readonly string[];
  /** JSON param name when it differs from name (false: not sent). */
  param?: string | false;
  /** What a bool flag stores: true (default) or false (argparse store_false); flags sharing a name: the last given wins. */
  store?: boolean;
  /** May be given several times (argparse append): the values are collected in order. */
  repeat?: boolean;
}

export type Args = Record<string, string | number | boolean | (string | number)[] | undefined>;

export interface CommandSpec {
  name: string;
  help: string;
  args?: ArgSpec[];
  /** RPC method; default name. */
  method?: string;
  /** Builds params from parsed args; default: every given arg under its param name. */
  params?(a: Args): Record<string, unknown> | undefined;
  /** Seconds to wait for the response when -t is not given (default 60), as rpc.py raises some. */
  timeoutSec?: number;
  /** Replaces the single call entirely (client-side commands like load_config). */
  run?(client: RpcClient, a: Args): Promise<unknown>;
}
