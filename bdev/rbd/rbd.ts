// Ceph RBD bdev (SPDK's bdev_rbd), control side: an RBD image served through librbd.
//
// Image handles: one per reactor, opened here on the control plane (rbd_open waits on the
// cluster) and handed to the reactors as numbers. librbd's aio calls are thread-safe, so one
// handle per bdev (SPDK's choice) would work for submission, but completions are reaped per
// handle (rbd_poll_io_events after its eventfd fires): a handle shared by two reactors would
// let one reap the other's completions. Each handle gets its own eventfd. Writes from two
// reactors to one image pass librbd's exclusive lock between the handles (correct, slower);
// a bdev served from one reactor never does. The image must exist (as in SPDK: `rbd create`).
import { Bdev, ConfigCall } from '../bdev.js';
import { BdevError } from '../registry.js';
import { checkUuid } from '../validate.js';
import { IoTypeName } from '../types.js';
import { callAsync, ceph, cephErr, EVENT_TYPE_EVENTFD, NativeCells } from '../../native/rbd.js';
import { closeQuiet, eventfd } from '../../native/libc.js';
import { logger } from '../../src/log.js';
import { findCluster, RadosCluster, RbdError } from './rbd_cluster.js';

const log = logger('bdev_rbd');
const MiB = 1024 * 1024;

export interface RbdParams {
  name: string;
  pool_name: string;
  rbd_name: string;
  block_size: number;
  user_id?: string;
  config?: Record<string, string>;
  cluster_name?: string;
  uuid?: string;
  read_only?: boolean;
}

/** What a reactor channel needs (structured-clone safe). */
export interface RbdChannelData {
  [k: string]: unknown;
  /** rbd_image_t per reactor index. */
  images: number[];
  /** The eventfd librbd signals for each image's completions. */
  efds: number[];
  readOnly: boolean;
}

interface Opened { cluster: RadosCluster; ownsCluster: boolean; ioctx: number; images: number[]; efds: number[]; bytes: number }

export class RbdBdev extends Bdev {
  readonly module = 'rbd';
  private destroyed = false;

  private constructor(readonly p: RbdParams, private readonly o: Opened) {
    super({ name: p.name, blockSize: p.block_size, numBlocks: Math.floor(o.bytes / p.block_size), uuid: p.uuid,
      ioTypes: (p.read_only ? ['read', 'flush', 'reset'] : ['read', 'write', 'flush', 'unmap', 'write_zeroes', 'reset']) as IoTypeName[] });
  }

  /** Connects (or uses the registered cluster), opens one image handle per reactor and checks the size. */
  static async open(p: RbdParams, reactors: number): Promise<RbdBdev> {
    checkUuid(p.uuid);
    const bs = p.block_size;
    if (!Number.isInteger(bs) || bs < 512 || bs > 65536 || (bs & (bs - 1)) !== 0) {
      throw new BdevError('invalid', `block_size ${bs} is invalid: use a power of two from 512 to 65536 (usually 512 or 4096)`);
    }
    const { rados, rbd } = ceph();
    const img = `${p.pool_name}/${p.rbd_name}`;
    let cluster: RadosCluster;
    let ownsCluster = false;
    if (p.cluster_name !== undefined) {
      const c = findCluster(p.cluster_name);
      if (!c) {
        throw new RbdError(`cluster '${p.cluster_name}' is not registered: register it first (bdev_rbd_register_cluster)`, 2 /* ENOENT */);
      }
      if (p.user_id !== undefined || p.config !== undefined) {
        throw new BdevError('invalid', `give either cluster_name or user_id/config, not both: the registered cluster '${p.cluster_name}' has its own`);
      }
      cluster = c;
    } else {
      cluster = await RadosCluster.connect(null, { user_id: p.user_id, config_param: p.config });
      ownsCluster = true;
    }
    cluster.refs++;
    const o: Opened = { cluster, ownsCluster, ioctx: 0, images: [], efds: [], bytes: 0 };
    const cell = new NativeCells(1);
    try {
      let rc: number = await callAsync(rados.ioctxCreate, cluster.handle, p.pool_name, cell.addr(0));
      if (rc < 0) {
        throw new RbdError(`pool '${p.pool_name}' cannot be opened: ${cephErr(rc)}` +
          (rc === -2 ? `: create it (ceph osd pool create ${p.pool_name}; rbd pool init ${p.pool_name})` : ''), -rc);
      }
      o.ioctx = cell.get(0);
      for (let r = 0; r < reactors; r++) {
        rc = await callAsync(p.read_only ? rbd.openReadOnly : rbd.open, o.ioctx, p.rbd_name, cell.addr(0), 0);
        if (rc < 0) {
          throw new RbdError(`RBD image '${img}' cannot be opened: ${cephErr(rc)}` +
            (rc === -2 ? `: create it first (rbd create --size SIZE_MiB ${img})` : ''), -rc);
        }
        o.images.push(cell.get(0));
        const efd = eventfd();
        o.efds.push(efd);
        rc = rbd.setImageNotification(o.images[r], efd, EVENT_TYPE_EVENTFD);
        if (rc < 0) throw new RbdError(`rbd_set_image_notification on '${img}' failed: ${cephErr(rc)}`, -rc);
      }
      rc = rbd.getSize(o.images[0], cell.addr(0));
      if (rc < 0) throw new RbdError(`the size of RBD image '${img}' cannot be read: ${cephErr(rc)}`, -rc);
      o.bytes = cell.get(0);
      if (o.bytes < bs) {
        throw new BdevError('invalid', `RBD image '${img}' (${o.bytes} bytes) is smaller than one ${bs}-byte block: grow it (rbd resize)`);
      }
      if (o.bytes % bs !== 0) {
        log.warn(`RBD image '${img}': its ${o.bytes} bytes are not a multiple of ${bs}: the last ${o.bytes % bs} bytes are not served`);
      }
      return new RbdBdev(p, o);
    } catch (e) {
      await release(o);
      throw e;
    } finally { cell.free(); }
  }

  protected channelData(): RbdChannelData {
    return { images: this.o.images, efds: this.o.efds, readOnly: !!this.p.read_only };
  }

  get clusterName(): string | undefined { return this.p.cluster_name; }

  /** bdev_rbd_resize: grows the image to new_size MiB (shrinking is refused, as SPDK). */
  async resize(newSizeMiB: number): Promise<void> {
    const bytes = newSizeMiB * MiB;
    const cur = this.numBlocks * this.blockSize;
    if (!Number.isSafeInteger(bytes) || bytes < cur) {
      throw new BdevError('invalid', `new_size ${newSizeMiB} MiB is smaller than the current size ` +
        `(${Math.floor(cur / MiB)} MiB): an rbd bdev can only grow`);
    }
    const rc: number = await callAsync(ceph().rbd.resize, this.o.images[0], bytes);
    if (rc < 0) throw new RbdError(`resizing RBD image '${this.p.pool_name}/${this.p.rbd_name}' failed: ${cephErr(rc)}`, -rc);
    // the other handles refresh from the header update librbd sent before rbd_resize returned
    this.setNumBlocks(Math.floor(bytes / this.blockSize));
  }

  configCall(): ConfigCall {
    const p = this.p;
    return { method: 'bdev_rbd_create', params: {
      name: this.name, pool_name: p.pool_name, rbd_name: p.rbd_name, block_size: this.blockSize,
      ...(p.user_id !== undefined ? { user_id: p.user_id } : {}),
      ...(p.config !== undefined ? { config: p.config } : {}),
      // SPDK leaves cluster_name out of its save_config; without it the bdev would come back
      // through /etc/ceph/ceph.conf instead of the registered cluster
      ...(p.cluster_name !== undefined ? { cluster_name: p.cluster_name } : {}),
      uuid: this.uuid,
      ...(p.read_only ? { read_only: true } : {}),
    } };
  }

  override driverSpecific(): Record<string, unknown> {
    const p = this.p;
    const rbd: Record<string, unknown> = { pool_name: p.pool_name, rbd_name: p.rbd_name };
    if (p.cluster_name !== undefined) {
      const { cluster_name: _n, ...rest } = this.o.cluster.info();
      Object.assign(rbd, rest);
    } else {
      if (p.user_id !== undefined) rbd.user_id = p.user_id;
      if (p.config !== undefined) rbd.config = p.config;
    }
    return { rbd };
  }

  /** Closes the image handles (rbd_close waits for I/O still in flight) and the connection. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await release(this.o);
  }
}

async function release(o: Opened): Promise<void> {
  const { rados, rbd } = ceph();
  for (const h of o.images) {
    const rc: number = await callAsync(rbd.close, h);
    if (rc < 0) log.warn(`rbd_close failed: ${cephErr(rc)}`);
  }
  o.images = [];
  for (const fd of o.efds) closeQuiet(fd);
  o.efds = [];
  if (o.ioctx) { rados.ioctxDestroy(o.ioctx); o.ioctx = 0; }
  o.cluster.refs--;
  if (o.ownsCluster) await o.cluster.shutdown();
}
