// Image import: copies a raw or qcow2 image file into an existing bdev (any module: malloc,
// file, lvol) as a background job with progress, through the control-plane bdev I/O service
// (ctrl_io). Reading, qcow2 decoding and zero detection run in piscina workers; this file
// only schedules chunks and writes what they return. All-zero parts (holes, unallocated
// qcow2 clusters) become WRITE_ZEROES, which thin bdevs keep thin. The bdev is claimed
// while the job runs, so no controller can attach to a half-written disk.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Piscina } from 'piscina';
import type { Bdev } from '../bdev.js';
import type { BdevRegistry } from '../registry.js';
import { BdevError } from '../registry.js';
import { ctrlIo, CtrlIo } from '../ctrl_io.js';
import type { ChunkTask, ImageFormat, ProbeResult } from './image_worker.js';
import { logger } from '../../src/log.js';

const log = logger('bdev');

/** Virtual bytes per worker task. */
const CHUNK = 8 << 20;
/** Zero detection granule (a multiple of every block size). */
const GRANULE = 64 << 10;
/** Chunks read, decoded or being written at once. */
const IN_FLIGHT = 4;
const WORKERS = 2;
/** Finished jobs kept for bdev_get_import_jobs. */
const KEEP_DONE = 16;

export type JobState = 'in progress' | 'complete' | 'error';

export interface ImportJob {
  operation_id: number;
  bdev: string;
  filename: string;
  format: ImageFormat | 'auto';
  state: JobState;
  total_bytes: number;
  copied_bytes: number;
  zero_bytes: number;
  progress: number;
  mb_per_sec: number;
  elapsed_ms: number;
  error?: string;
}

class Job {
  readonly started = performance.now();
  ended = 0;
  state: JobState = 'in progress';
  format: ImageFormat | 'auto';
  total = 0;
  copied = 0;
  zero = 0;
  error?: string;
  constructor(readonly id: number, readonly bdev: Bdev, readonly filename: string, format?: ImageFormat,
    readonly skipZeroes = false) {
    this.format = format ?? 'auto';
  }

  view(): ImportJob {
    const ms = (this.ended || performance.now()) - this.started;
    const done = this.copied + this.zero;
    const j: ImportJob = {
      operation_id: this.id, bdev: this.bdev.name, filename: this.filename, format: this.format, state: this.state,
      total_bytes: this.total, copied_bytes: this.copied, zero_bytes: this.zero,
      progress: this.total > 0 ? Math.floor((done / this.total) * 1000) / 10 : this.state === 'complete' ? 100 : 0,
      mb_per_sec: ms > 0 ? Math.round((done / (1 << 20)) / (ms / 1000) * 10) / 10 : 0,
      elapsed_ms: Math.round(ms),
    };
    if (this.error) j.error = this.error;
    return j;
  }
}

export class ImageImporter {
  private nextId = 1;
  private readonly jobs = new Map<number, Job>();
  private pool: Piscina | null = null;
  private running = 0;

  constructor(private readonly io: CtrlIo = ctrlIo) {}

  static claimOwner(id: number): string { return `image import ${id}`; }

  /** Starts importing `filename` into bdev `name`; returns the operation id at once. */
  /**
   * `skipZeroes`: the bdev reads zeros wherever nothing was written (a new thin lvol), so all-zero
   * parts are not written at all and it stays thin. Otherwise they are WRITE_ZEROES (or zero writes
   * on a bdev without it, such as an lvol, which then allocates them).
   */
  start(bdevs: BdevRegistry, name: string, filename: string, format?: ImageFormat, skipZeroes = false): number {
    const bdev = bdevs.get(name);
    if (bdev.claimedBy) {
      throw new BdevError('claimed', `bdev '${bdev.name}' is in use by ${bdev.claimedBy}: an image can only be imported into ` +
        `a bdev nothing else uses; remove that first`);
    }
    if (!bdev.ioTypes.has('write')) throw new BdevError('invalid', `bdev '${bdev.name}' cannot be written`);
    const path = resolve(filename);
    let st;
    try { st = statSync(path); } catch (e) {
      throw new BdevError('invalid', `cannot open image ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (!st.isFile()) throw new BdevError('invalid', `image ${path} is not a regular file`);
    if (!this.io.attached) throw new BdevError('invalid', 'image import needs the reactors: not available in this process');
    const id = this.nextId++;
    bdevs.claim(bdev.name, ImageImporter.claimOwner(id));
    const job = new Job(id, bdev, path, format, skipZeroes);
    this.jobs.set(id, job);
    this.running++;
    void this.run(job).then(() => {
      job.state = 'complete';
      log.notice(`image import ${id}: ${path} into bdev ${bdev.name} done (${job.view().mb_per_sec} MiB/s)`);
    }, (e: Error) => {
      job.state = 'error';
      job.error = e.message;
      log.error(`image import ${id}: ${path} into bdev ${bdev.name} failed: ${e.message}`);
    }).finally(() => {
      job.ended = performance.now();
      bdevs.release(bdev.name, ImageImporter.claimOwner(id));
      if (--this.running === 0) this.stopWorkers();
      this.trim();
    });
    return id;
  }

  list(id?: number): ImportJob[] {
    if (id === undefined) return [...this.jobs.values()].map((j) => j.view());
    const j = this.jobs.get(id);
    if (!j) throw new BdevError('not_found', `no image import with operation_id ${id} (see bdev_get_import_jobs)`);
    return [j.view()];
  }

  private workers(): Piscina {
    this.pool ??= new Piscina({ filename: new URL('./image_worker.js', import.meta.url).href, maxThreads: WORKERS,
      minThreads: 0, idleTimeout: 1000 });
    return this.pool;
  }

  private stopWorkers(): void {
    const p = this.pool;
    this.pool = null;
    void p?.destroy();
  }

  private async run(job: Job): Promise<void> {
    const pool = this.workers(), bdev = job.bdev, bs = bdev.blockSize;
    const info = await pool.run({ kind: 'probe', filename: job.filename, format: job.format === 'auto' ? undefined : job.format }) as ProbeResult;
    job.format = info.format;
    const cap = bdev.numBlocks * bs;
    if (info.size > cap) {
      throw new BdevError('invalid', `image ${job.filename} is ${info.size} bytes (virtual size) but bdev '${bdev.name}' has only ` +
        `${cap}: use a bdev of at least ${Math.ceil(info.size / bs)} ${bs}-byte blocks`);
    }
    if (info.dirty) log.warn(`image import ${job.id}: ${job.filename} was not closed cleanly (dirty bit); its data is imported as is`);
    const total = Math.ceil(info.size / bs) * bs;   // the last partial block is padded with zeros
    job.total = total;
    const chunk = info.qcow2 ? Math.max(CHUNK, info.qcow2.clusterSize) : CHUNK;
    const cover = info.qcow2 ? info.qcow2.clusterSize * (info.qcow2.clusterSize / 8) : 0;
    let failed: Error | null = null;
    const inflight = new Set<Promise<void>>();
    const buffers: ArrayBuffer[] = [];   // chunk buffers back from the workers, sent out again (no fresh pages per chunk)
    for (let off = 0; off < total && !failed; off += chunk) {
      const length = Math.min(chunk, total - off);
      const task: ChunkTask = { kind: 'chunk', job: job.id, filename: job.filename, format: info.format, offset: off, length,
        granule: GRANULE };
      if (info.qcow2) {
        task.qcow2 = info.qcow2;
        task.l1Base = Math.floor(off / cover);
        task.l1 = info.l1!.slice(task.l1Base, Math.floor((Math.min(off + length, info.size) - 1) / cover) + 1);
      }
      const spare = buffers.pop();
      if (spare) task.buf = spare;
      const p: Promise<void> = pool.run(task, spare ? { transferList: [spare] } : {})
        .then((buf: ArrayBuffer) => this.store(job, off, length, buf).then(() => { buffers.push(buf); }))
        .catch((e: Error) => { failed ??= e; })
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= IN_FLIGHT) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    if (failed) throw failed;
    await this.io.flush(bdev);
  }

  /** Writes one decoded chunk: runs of data granules as writes, runs of zero granules as WRITE_ZEROES, all at once. */
  private async store(job: Job, off: number, length: number, buf: ArrayBuffer): Promise<void> {
    const ngran = Math.ceil(length / GRANULE);
    const flags = new Uint8Array(buf, 0, ngran), data = new Uint8Array(buf, ngran, length);
    const writes: Promise<void>[] = [];
    for (let g = 0; g < ngran;) {
      const z = flags[g];
      let e = g + 1;
      while (e < ngran && flags[e] === z) e++;
      const a = g * GRANULE, b = Math.min(e * GRANULE, length);
      if (z && job.skipZeroes) { job.zero += b - a; g = e; continue; }
      writes.push(z ? this.io.writeZeroes(job.bdev, off + a, b - a).then(() => { job.zero += b - a; })
        : this.io.write(job.bdev, off + a, data.subarray(a, b)).then(() => { job.copied += b - a; }));
      g = e;
    }
    await Promise.all(writes);
  }

  private trim(): void {
    const done = [...this.jobs.values()].filter((j) => j.state !== 'in progress');
    for (const j of done.slice(0, Math.max(0, done.length - KEEP_DONE))) this.jobs.delete(j.id);
  }
}

/** The daemon's importer. */
export const imageImporter = new ImageImporter();
