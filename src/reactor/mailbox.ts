// Shared-memory words between the control plane and one reactor: a message counter the
// reactor checks each round (one Atomics.load), a sleeping flag, and busy/idle time.
export const MB_SEQ = 0;
export const MB_SLEEPING = 1;
export const MB_WORDS = 4;

export const ST_BUSY_NS = 0;
export const ST_IDLE_NS = 1;
export const ST_ROUNDS = 2;
export const ST_SLEEPS = 3;
export const ST_WAKEUPS = 4;
export const ST_POLLERS = 5;
export const ST_DOUBLES = 8;

export interface ReactorInit {
  index: number;
  cpu: number;
  mailbox: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  wakeFd: number;
  /** Poll this long with no work before sleeping in epoll (ms); < 0 never sleeps. */
  idleSleepMs: number;
}

/**
 * The operations reactors serve: name -> the args the control plane sends and the result
 * the reactor replies. The framework knows only 'stop'; each module adds its operations
 * with a `declare module '.../src/reactor/mailbox.js'` block beside its registerOp calls
 * (targets/blk/blk_reactor.ts, ...), so both sides are checked against one type.
 */
export interface ReactorOps {
  stop: { args: null; result: null };
}
export type OpName = keyof ReactorOps & string;
export type OpArgs<K extends OpName> = ReactorOps[K]['args'];
export type OpResult<K extends OpName> = ReactorOps[K]['result'];

/** Unsolicited notices from reactors: name -> data. Modules add theirs as for ReactorOps. */
export interface ReactorEvents {
  ready: { index: number; tid: number };
}
/** A notice as posted: a union discriminated by `event`. */
export type ReactorEvent = { [K in keyof ReactorEvents]: { event: K; data: ReactorEvents[K] } }[keyof ReactorEvents];

export interface ReactorRequest { id: number; op: OpName; args: unknown }
export interface ReactorReply { id: number; ok: boolean; result?: unknown; error?: string }
