// koffi bindings to Ceph's C API: librados (cluster connection, pool I/O context) and
// librbd (images, asynchronous I/O). Handles (rados_t, rados_ioctx_t, rbd_image_t,
// rbd_completion_t) are plain numbers (addresses < 2^53), so they cross to reactor
// threads as data. Calls that may wait on the network (connect, open, close, resize,
// shutdown) run on koffi's worker threads through the *Async wrappers; the aio calls
// never block and are meant for the reactors. No callback ever runs JavaScript: aio
// completions are created without a callback and reaped with rbd_poll_io_events after
// the image's eventfd fires (rbd_set_image_notification).
import { koffi } from './koffi.js';
import { errnoMessage, errnoName } from './errors.js';
import { mmap, munmap, view } from './libc.js';

/** rbd_set_image_notification type for an eventfd (librbd.h: EVENT_TYPE_EVENTFD). */
export const EVENT_TYPE_EVENTFD = 2;

type Fn = ReturnType<ReturnType<typeof koffi.load>['func']> & { async: Function };

export interface Rados {
  create: Fn; confReadFile: Fn; confSet: Fn; confGet: Fn; connect: Fn; shutdown: Fn;
  ioctxCreate: Fn; ioctxDestroy: Fn;
}
export interface Rbd {
  open: Fn; openReadOnly: Fn; close: Fn; getSize: Fn; resize: Fn; setImageNotification: Fn; pollIoEvents: Fn;
  aioCreateCompletion: Fn; aioReadv: Fn; aioWritev: Fn; aioDiscard: Fn; aioWriteZeroes: Fn; aioFlush: Fn;
  aioGetArg: Fn; aioGetReturnValue: Fn; aioRelease: Fn;
}

let rados: Rados | null = null;
let rbd: Rbd | null = null;
let loadError: string | null = null;

function load(): void {
  if (rados || loadError) return;
  try {
    const lr = koffi.load('librados.so.2');
    const lb = koffi.load('librbd.so.1');
    const r = (name: string, ret: string, args: string[]) => lr.func(name, ret, args) as Fn;
    const b = (name: string, ret: string, args: string[]) => lb.func(name, ret, args) as Fn;
    rados = {
      create: r('rados_create', 'int', ['intptr_t', 'str']),
      confReadFile: r('rados_conf_read_file', 'int', ['intptr_t', 'str']),
      confSet: r('rados_conf_set', 'int', ['intptr_t', 'str', 'str']),
      confGet: r('rados_conf_get', 'int', ['intptr_t', 'str', 'intptr_t', 'size_t']),
      connect: r('rados_connect', 'int', ['intptr_t']),
      shutdown: r('rados_shutdown', 'void', ['intptr_t']),
      ioctxCreate: r('rados_ioctx_create', 'int', ['intptr_t', 'str', 'intptr_t']),
      ioctxDestroy: r('rados_ioctx_destroy', 'void', ['intptr_t']),
    };
    rbd = {
      open: b('rbd_open', 'int', ['intptr_t', 'str', 'intptr_t', 'intptr_t']),
      openReadOnly: b('rbd_open_read_only', 'int', ['intptr_t', 'str', 'intptr_t', 'intptr_t']),
      close: b('rbd_close', 'int', ['intptr_t']),
      getSize: b('rbd_get_size', 'int', ['intptr_t', 'intptr_t']),
      resize: b('rbd_resize', 'int', ['intptr_t', 'uint64_t']),
      setImageNotification: b('rbd_set_image_notification', 'int', ['intptr_t', 'int', 'int']),
      pollIoEvents: b('rbd_poll_io_events', 'int', ['intptr_t', 'intptr_t', 'int']),
      aioCreateCompletion: b('rbd_aio_create_completion', 'int', ['intptr_t', 'intptr_t', 'intptr_t']),
      aioReadv: b('rbd_aio_readv', 'int', ['intptr_t', 'intptr_t', 'int', 'uint64_t', 'intptr_t']),
      aioWritev: b('rbd_aio_writev', 'int', ['intptr_t', 'intptr_t', 'int', 'uint64_t', 'intptr_t']),
      aioDiscard: b('rbd_aio_discard', 'int', ['intptr_t', 'uint64_t', 'uint64_t', 'intptr_t']),
      aioWriteZeroes: b('rbd_aio_write_zeroes', 'int', ['intptr_t', 'uint64_t', 'size_t', 'intptr_t', 'int', 'int']),
      aioFlush: b('rbd_aio_flush', 'int', ['intptr_t', 'intptr_t']),
      aioGetArg: b('rbd_aio_get_arg', 'intptr_t', ['intptr_t']),
      aioGetReturnValue: b('rbd_aio_get_return_value', 'intptr_t', ['intptr_t']),
      aioRelease: b('rbd_aio_release', 'void', ['intptr_t']),
    };
  } catch (e) {
    loadError = `librbd/librados could not be loaded (${(e as Error).message}): install them ` +
      `(Debian/Ubuntu: apt-get install librbd1 librados2)`;
  }
}

/** The bound libraries; throws a clear error when Ceph's client libraries are missing. */
export function ceph(): { rados: Rados; rbd: Rbd } {
  load();
  if (!rados || !rbd) throw new Error(loadError ?? 'librbd not loaded');
  return { rados, rbd };
}

/** "ENOENT (no such file or directory)" for a negative errno returned by librados/librbd. */
export function cephErr(rc: number): string { return `${errnoName(-rc)} (${errnoMessage(-rc)})`; }

/**
 * A small native scratch area (anonymous mmap) for out-parameters: handles, sizes,
 * completion lists. Addresses are numbers, reads go through a Uint32Array view.
 */
export class NativeCells {
  readonly base: number;
  private readonly u32: Uint32Array;
  readonly u8: Uint8Array;
  constructor(readonly count: number) {
    this.base = mmap(Math.max(8 * count, 8));
    this.u32 = new Uint32Array(view(this.base, Math.max(8 * count, 8)));
    this.u8 = new Uint8Array(this.u32.buffer);
  }
  addr(i: number): number { return this.base + 8 * i; }
  /** Cell i as an unsigned 64-bit number (exact below 2^53: pointers and sizes). */
  get(i: number): number { return this.u32[2 * i] + this.u32[2 * i + 1] * 4294967296; }
  set(i: number, v: number): void { this.u32[2 * i] = v >>> 0; this.u32[2 * i + 1] = Math.floor(v / 4294967296) >>> 0; }
  free(): void { munmap(this.base, Math.max(8 * this.count, 8)); }
}

/** Runs a bound function on koffi's worker pool; resolves with its return value. */
export function callAsync(f: Fn, ...args: unknown[]): Promise<any> {
  return new Promise((resolve, reject) => {
    f.async(...args, (err: unknown, r: unknown) => (err ? reject(err) : resolve(r)));
  });
}
