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

export interface ReactorRequest { id: number; op: string; args: unknown }
export interface ReactorReply { id: number; ok: boolean; result?: unknown; error?: string }
/** Unsolicited notice from a reactor (e.g. a queue the guest broke). */
export interface ReactorEvent { event: string; data: unknown }
