// io_uring ABI constants (include/uapi/linux/io_uring.h). Syscall numbers are the
// same on every architecture since 5.1 (unified table).
export const SYS_io_uring_setup = 425, SYS_io_uring_enter = 426, SYS_io_uring_register = 427;

// io_uring_params (120 bytes): byte offsets.
export const PARAMS_SIZE = 120;
export const P_SQ_ENTRIES = 0, P_CQ_ENTRIES = 4, P_FLAGS = 8, P_SQ_THREAD_CPU = 12, P_SQ_THREAD_IDLE = 16;
export const P_FEATURES = 20, P_SQ_OFF = 40, P_CQ_OFF = 80;
// io_sqring_offsets / io_cqring_offsets: u32 indexes inside sq_off / cq_off.
export const SQO_HEAD = 0, SQO_TAIL = 1, SQO_RING_MASK = 2, SQO_RING_ENTRIES = 3, SQO_FLAGS = 4, SQO_DROPPED = 5, SQO_ARRAY = 6;
export const CQO_HEAD = 0, CQO_TAIL = 1, CQO_RING_MASK = 2, CQO_RING_ENTRIES = 3, CQO_OVERFLOW = 4, CQO_CQES = 5, CQO_FLAGS = 6;

// mmap offsets.
export const IORING_OFF_SQ_RING = 0, IORING_OFF_CQ_RING = 0x8000000, IORING_OFF_SQES = 0x10000000;

export const SQE_SIZE = 64, CQE_SIZE = 16;

// Setup flags.
export const IORING_SETUP_IOPOLL = 1 << 0, IORING_SETUP_SQPOLL = 1 << 1, IORING_SETUP_SQ_AFF = 1 << 2;
export const IORING_SETUP_CQSIZE = 1 << 3, IORING_SETUP_CLAMP = 1 << 4;
export const IORING_SETUP_SUBMIT_ALL = 1 << 7, IORING_SETUP_COOP_TASKRUN = 1 << 8, IORING_SETUP_SINGLE_ISSUER = 1 << 12;

// Features.
export const IORING_FEAT_SINGLE_MMAP = 1 << 0, IORING_FEAT_NODROP = 1 << 1, IORING_FEAT_SUBMIT_STABLE = 1 << 2;

// Enter flags / SQ ring flags.
export const IORING_ENTER_GETEVENTS = 1 << 0, IORING_ENTER_SQ_WAKEUP = 1 << 1;
export const IORING_SQ_NEED_WAKEUP = 1 << 0, IORING_SQ_CQ_OVERFLOW = 1 << 1;

// SQE flags.
export const IOSQE_FIXED_FILE = 1 << 0, IOSQE_IO_DRAIN = 1 << 1, IOSQE_IO_LINK = 1 << 2;

// Opcodes.
export const IORING_OP_NOP = 0, IORING_OP_READV = 1, IORING_OP_WRITEV = 2, IORING_OP_FSYNC = 3;
export const IORING_OP_FALLOCATE = 17, IORING_OP_READ = 22, IORING_OP_WRITE = 23;
export const IORING_FSYNC_DATASYNC = 1;

// io_uring_register opcodes.
export const IORING_REGISTER_FILES = 2, IORING_UNREGISTER_FILES = 3;
export const IORING_REGISTER_EVENTFD = 4, IORING_UNREGISTER_EVENTFD = 5;
