// File and block-device bdevs: bdev_uring_* and bdev_aio_* (SPDK v25.05 names, params and
// results). Both serve the file through bdev/file (io_uring, else Linux AIO, else sync).
import type { AppContext } from '../../src/framework/app_context.js';
import type { Bdev } from '../bdev.js';
import { BdevError } from '../registry.js';
import { FileBdev, FileBdevError, FileModule } from './file.js';
import { registerModule } from '../../src/framework/module.js';
import { MethodRegistry } from '../../src/rpc/registry.js';
import { RpcCode, RpcError, invalidParams } from '../../src/rpc/errors.js';
import { Params } from '../../src/rpc/params.js';

const U32 = 0xffffffff;

function checkName(name: string): void {
  if (name.length === 0) throw invalidParams(`bdev name must not be empty`);
  if (name.length > 255) throw invalidParams(`bdev name is ${name.length} characters long: use at most 255`);
}

function checkFilename(filename: string): void {
  if (filename.length === 0) throw invalidParams(`filename must not be empty: give the path of a file or block device`);
}

/** Opens the file and registers the bdev; open/geometry failures become -errno like SPDK's create_aio_bdev. */
function create(ctx: AppContext, module: FileModule, p: {
  name: string; filename: string; block_size?: number; uuid?: string; readonly?: boolean; fallocate?: boolean;
}): string {
  checkName(p.name);
  checkFilename(p.filename);
  if (ctx.bdevs.find(p.name)) { // before opening anything
    throw new BdevError('exists', `bdev '${p.name}' already exists: pick another name or delete the existing one first`);
  }
  let b: Bdev;
  try {
    b = new FileBdev({ module, name: p.name, filename: p.filename, block_size: p.block_size, uuid: p.uuid,
      readonly: p.readonly, fallocate: p.fallocate });
  } catch (e) {
    if (e instanceof FileBdevError) throw new RpcError(-e.errno, e.message);
    throw e;
  }
  try {
    ctx.bdevs.register(b);
  } catch (e) {
    b.destroy();
    throw e;
  }
  return b.name;
}

function fileBdev(ctx: AppContext, name: string, module: FileModule): FileBdev {
  const b = ctx.bdevs.get(name);
  if (!(b instanceof FileBdev) || b.module !== module) {
    throw new RpcError(RpcCode.ENODEV, `bdev '${b.name}' is a ${b.module} bdev, not a ${module} bdev`);
  }
  return b;
}

function rescan(ctx: AppContext, name: string, module: FileModule): boolean {
  const b = fileBdev(ctx, name, module);
  try {
    b.rescan();
  } catch (e) {
    if (e instanceof FileBdevError) throw new RpcError(-e.errno, e.message);
    throw e;
  }
  return true;
}

export function registerBdevFileMethods(reg: MethodRegistry): void {
  const uringSchema = {
    name: { type: 'string', required: true, desc: 'bdev name' },
    filename: { type: 'string', required: true, desc: 'path to a regular file or block device' },
    block_size: { type: 'int', min: 0, max: U32, desc: 'block size in bytes; 0 or absent: detect' },
    uuid: { type: 'string', desc: 'UUID of the new bdev' },
  } as const;
  reg.register('bdev_uring_create', uringSchema, (p: Params<typeof uringSchema>, ctx) => create(ctx, 'uring', p),
    { help: 'Create a bdev on a file or block device, served with io_uring' });

  reg.register('bdev_uring_delete', { name: { type: 'string', required: true } }, async (p, ctx) => {
    await ctx.bdevs.unregister(p.name, 'uring');
    return true;
  }, { help: 'Delete a uring bdev' });

  reg.register('bdev_uring_rescan', { name: { type: 'string', required: true } }, (p, ctx) => rescan(ctx, p.name, 'uring'),
    { help: 'Pick up a new size of the file or block device behind a uring bdev' });

  const aioSchema = {
    name: { type: 'string', required: true, desc: 'bdev name' },
    filename: { type: 'string', required: true, desc: 'path to a regular file or block device' },
    block_size: { type: 'int', min: 0, max: U32, desc: 'block size in bytes; 0 or absent: detect' },
    readonly: { type: 'bool', desc: 'open the file read-only' },
    fallocate: { type: 'bool', desc: 'support UNMAP and WRITE_ZEROES with fallocate' },
    uuid: { type: 'string', desc: 'UUID of the new bdev' },
  } as const;
  reg.register('bdev_aio_create', aioSchema, (p: Params<typeof aioSchema>, ctx) => create(ctx, 'aio', p),
    { help: 'Create a bdev on a file or block device (io_uring, else Linux AIO)' });

  reg.register('bdev_aio_delete', { name: { type: 'string', required: true } }, async (p, ctx) => {
    await ctx.bdevs.unregister(p.name, 'aio');
    return true;
  }, { help: 'Delete an aio bdev' });

  reg.register('bdev_aio_rescan', { name: { type: 'string', required: true } }, (p, ctx) => rescan(ctx, p.name, 'aio'),
    { help: 'Pick up a new size of the file or block device behind an aio bdev' });
}

registerModule({ name: 'bdev_file', subsystem: 'bdev', rpc: registerBdevFileMethods });
