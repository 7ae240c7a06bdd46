// The contract between a reactor and the work it runs (SPDK's spdk_poller idea).

export interface Poller {
  readonly name: string;
  /** Does one round of work; returns how much (0 = idle). Must not throw or block. */
  poll(): number;
  /** fds whose readiness means poll() has work (kick eventfds, completion eventfds). */
  wakeFds(): number[];
  /** Before the reactor sleeps: ask to be woken. Returns false if work is already pending. */
  armInterrupt(): boolean;
  /** After the reactor wakes up: back to polling. */
  disarmInterrupt(): void;
}

/** A poller that runs every `periodMs` instead of every round. */
export interface TimedPoller {
  readonly name: string;
  readonly periodMs: number;
  run(nowMs: number): void;
}
