// What a device type (blk, scsi) plugs into the generic vhost-user back end.
import { MemRegionSpec } from '../memory/guest_memory.js';

declare module '../reactor/mailbox.js' {
  interface ReactorEvents {
    /** A virtqueue the guest broke (vhost-user-blk or -scsi): the queue stopped; the device needs a reset. */
    queueBroken: { ctrlr: string; qid: number; why: string; lastAvail: number };
  }
}

export interface VringState {
  index: number;
  num: number;
  descUaddr: number;
  availUaddr: number;
  usedUaddr: number;
  addrSet: boolean;
  lastAvail: number;
  kickFd: number;
  callFd: number;
  errFd: number;
  enabled: boolean;
  started: boolean;
  /** Reactor index running the queue while started. */
  reactor: number;
}

export interface QueueStart {
  vring: VringState;
  mem: MemRegionSpec[];
  features: bigint;
  /** This queue's part of the inflight-tracking region, when the front end set one. */
  inflight?: QueueInflight;
}

/** Where a queue tracks its requests in the front end's inflight region. */
export interface QueueInflight {
  /** Address of this queue's part of the region. */
  addr: number;
  /** Queues the region covers (the front end's queue count: it starts that many). */
  numQueues: number;
}

export interface VhostTarget {
  readonly ctrlr: string;
  /** Most queues the device offers. */
  readonly maxQueues: number;
  /** Device feature bits (virtio common + device-specific). */
  features(): bigint;
  /** Full config space of the device. */
  configSpace(): Uint8Array;
  /** Config space write from the driver (e.g. virtio-blk writeback); return false to refuse. */
  writeConfig(offset: number, data: Uint8Array): boolean;
  startQueue(q: QueueStart): Promise<number>;
  /** Stops a queue once its in-flight requests finish; resolves with the next avail index. */
  stopQueue(vring: VringState): Promise<number>;
}
