// The controller state shared by the control plane and the reactors' queue pairs: one
// Int32Array over a SharedArrayBuffer. The control plane moves the state; each qpair
// acknowledges a new generation once it has failed its commands and reset its rings.
export const ST = { OK: 0, RESETTING: 1, DISABLED: 2, FAILED: 3 } as const;
export const stateNames = ['enabled', 'resetting', 'resetting', 'failed'] as const;

export const C_STATE = 0, C_GEN = 1;
const QP_BASE = 8, QP_CELLS = 5;
/**
 * Per qpair: generation acknowledged, instantiated on its reactor, a command timed out,
 * requests in flight, completions so far (the control plane's no-progress timeout).
 */
export const Q_ACK = 0, Q_ACTIVE = 1, Q_TIMEOUT = 2, Q_INFLIGHT = 3, Q_PROGRESS = 4;
export const MAX_QPAIRS = 128;

export function createState(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * (QP_BASE + QP_CELLS * MAX_QPAIRS)));
}

export function qpCell(index: number, cell: number): number { return QP_BASE + QP_CELLS * index + cell; }
