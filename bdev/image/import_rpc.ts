// bdev_import_image and bdev_get_import_jobs. SPDK has no image import; these follow its
// pattern for long operations (bdev_lvol_start_shallow_copy / bdev_lvol_check_shallow_copy):
// the start call returns an operation_id at once, the status call reports state ("in progress",
// "complete", "error"), bytes done of the total, progress in percent and the error if any.
import { MethodRegistry } from '../../src/rpc/registry.js';
import { registerModule } from '../../src/framework/module.js';
import { Params } from '../../src/rpc/params.js';
import { imageImporter } from './import.js';
import type { ImageFormat } from './image_worker.js';

const startSchema = {
  name: { type: 'string', required: true, desc: 'bdev to write the image into (not in use by a controller)' },
  filename: { type: 'string', required: true, desc: 'path of a raw or qcow2 image file' },
  format: { type: 'string', choices: ['raw', 'qcow2'], desc: 'image format; default: qcow2 if the file has its magic, else raw' },
  skip_zeroes: { type: 'bool', desc: 'do not write all-zero parts: only for a bdev that reads zeros where never written (a new thin lvol)' },
} as const;

export function registerImportMethods(reg: MethodRegistry): void {
  reg.register('bdev_import_image', startSchema, (p: Params<typeof startSchema>, ctx) => {
    const id = imageImporter.start(ctx.bdevs, p.name, p.filename, p.format as ImageFormat | undefined, p.skip_zeroes ?? false);
    return { operation_id: id };
  }, { help: 'Copy a raw or qcow2 image into a bdev in the background; returns an operation_id (see bdev_get_import_jobs)' });

  reg.register('bdev_get_import_jobs', {
    operation_id: { type: 'int', min: 1, desc: 'one job; default: all recent jobs' },
  }, (p) => imageImporter.list(p.operation_id), { help: 'State and progress of image imports' });
}

registerModule({ name: 'bdev_import', subsystem: 'bdev', rpc: registerImportMethods });
