// Unit tests of the SCSI logical-unit layer (targets/scsi/scsi) against real malloc/null channels.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as libc from '../../../native/libc.js';
import { GuestMemory } from '../../../src/memory/guest_memory.js';
import { BdevIo, SegmentTable } from '../../../bdev/bdev_io.js';
import { BdevChannel } from '../../../bdev/channel.js';
import { MallocChannel } from '../../../bdev/malloc/malloc_channel.js';
import { NullChannel } from '../../../bdev/null/null_channel.js';
import { createStats, S, SLOT_DOUBLES } from '../../../bdev/stats.js';
import { BdevChannelSpec, IoStatus } from '../../../bdev/types.js';
import { blockIoDone, DataDir, executeScsi, LunInfo, ScsiLun, ScsiTask, ScsiTaskSink } from '../../../targets/scsi/scsi/index.js';

export const UUID = '12345678-9abc-4def-8123-456789abcdef';

export function info(o: Partial<LunInfo> = {}): LunInfo {
  return { bdevName: 'Malloc0', blockSize: 512, numBlocks: 2048, uuid: UUID, productName: 'Malloc disk',
    supportsUnmap: true, supportsWriteZeroes: true, ...o };
}

function spec(module: string, blockSize: number, numBlocks: number, data: Record<string, unknown> = {}): BdevChannelSpec {
  return { name: 'b', module, blockSize, numBlocks, stats: createStats(1), maxIoBlocks: 0, data };
}

/** Two guest regions of 64 KiB each (buffers may span them). */
export class Guest {
  readonly size = 65536;
  readonly a1 = libc.mmap(this.size);
  readonly a2 = libc.mmap(this.size);
  readonly mem = new GuestMemory([
    { gpa: 0, size: this.size, uaddr: 0, hva: this.a1 },
    { gpa: this.size, size: this.size, uaddr: this.size, hva: this.a2 },
  ]);
  u8(region: number): Uint8Array { return this.mem.u8[region]; }
  free(): void { libc.munmap(this.a1, this.size); libc.munmap(this.a2, this.size); }
}

export class Disk {
  readonly fd: number;
  readonly addr: number;
  readonly bytes: number;
  readonly channel: MallocChannel;
  readonly u8: Uint8Array;
  constructor(readonly blockSize = 512, readonly numBlocks = 2048) {
    this.bytes = blockSize * numBlocks;
    this.fd = libc.memfdCreate('scsi-test', this.bytes);
    this.addr = libc.mmap(this.bytes, this.fd);
    this.channel = new MallocChannel(spec('malloc', blockSize, numBlocks, { addr: this.addr, bytes: this.bytes }), 0);
    this.u8 = new Uint8Array(libc.view(this.addr, this.bytes));
  }
  stat(i: number): number { return new Float64Array(this.channel.spec.stats, 0, SLOT_DOUBLES)[i]; }
  flushes(): number { return this.stat(S.FLUSH_OPS); }
  free(): void { libc.munmap(this.addr, this.bytes); libc.closeQuiet(this.fd); }
}

export function nullChannel(blockSize = 512, numBlocks = 2048): NullChannel {
  return new NullChannel(spec('null', blockSize, numBlocks), 0);
}

/** Completes every I/O with a fixed status. */
export class StatusChannel extends BdevChannel {
  constructor(readonly result: number, blockSize = 512, numBlocks = 2048) { super(spec('x', blockSize, numBlocks), 0); }
  protected submitIo(io: BdevIo): void { this.complete(io, this.result); }
}

/** A malloc channel whose completions wait for poll(): exercises the asynchronous path. */
export class DeferredChannel extends MallocChannel {
  readonly q: BdevIo[] = [];
  constructor(d: Disk) { super(d.channel.spec, 0); }
  protected override submitIo(io: BdevIo): void { this.q.push(io); }
  override poll(): number {
    const n = this.q.length;
    for (const io of this.q.splice(0)) super.submitIo(io);
    return n;
  }
}

export class Sink implements ScsiTaskSink {
  calls = 0;
  onScsiTaskDone(_t: ScsiTask): void { this.calls++; }
}

export interface Run { task: ScsiTask; sink: Sink }

export type Seg = [region: number, off: number, len: number];

/** Sets up a task (CDB, buffer) and executes it; does not wait for asynchronous completion. */
export function start(lun: ScsiLun | null, cdb: number[], g: Guest | null, segs: Seg[] = [],
  dir: number = DataDir.NONE, cdbLen = cdb.length, task?: ScsiTask, sink?: Sink): Run {
  const table = task?.segs ?? new SegmentTable(64);
  sink ??= new Sink();
  task ??= new ScsiTask(sink, 7, table, blockIoDone);
  const base = 3; // not at 0, to catch segBase mistakes
  let total = 0;
  segs.forEach(([r, o, l], i) => { table.region[base + i] = r; table.off[base + i] = o; table.len[base + i] = l; total += l; });
  task.loadCdb(Uint8Array.from(cdb), 0, cdbLen);
  task.setData(g?.mem ?? null, table, base, segs.length, total, segs.length ? dir : DataDir.NONE);
  executeScsi(lun, task);
  return { task, sink };
}

/** start() and expect synchronous completion, exactly once. */
export function run(lun: ScsiLun | null, cdb: number[], g: Guest | null = null, segs: Seg[] = [],
  dir: number = DataDir.NONE, cdbLen = cdb.length): ScsiTask {
  const r = start(lun, cdb, g, segs, dir, cdbLen);
  if (r.sink.calls !== 1) throw new Error(`sink called ${r.sink.calls} times`);
  return r.task;
}

/** [sense key, ASC, ASCQ] of a finished task. */
export function sense(t: ScsiTask): [number, number, number] { return [t.sense[2] & 0xf, t.sense[12], t.sense[13]]; }

/** Bytes of the data buffer, concatenated. */
export function read(g: Guest, segs: Seg[]): number[] {
  const out: number[] = [];
  for (const [r, o, l] of segs) out.push(...g.u8(r).subarray(o, o + l));
  return out;
}

export function fill(g: Guest, segs: Seg[], bytes: ArrayLike<number>): void {
  let p = 0;
  for (const [r, o, l] of segs) for (let i = 0; i < l; i++) g.u8(r)[o + i] = bytes[p++];
}

export const be32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
export const be16 = (v: number) => [(v >>> 8) & 0xff, v & 0xff];
export const be64 = (v: number) => [...be32(Math.floor(v / 2 ** 32)), ...be32(v >>> 0)];
export const IoSt = IoStatus;

// ======================================================================================

import { Asc as A, MAX_UNMAP_DESCRIPTORS, Op, SenseKey as K, Status } from '../../../targets/scsi/scsi/index.js';

const ILLEGAL = K.ILLEGAL_REQUEST;
let g: Guest;
let d: Disk;
let lun: ScsiLun;

beforeAll(() => { g = new Guest(); d = new Disk(); });
afterAll(() => { g.free(); d.free(); });

function freshLun(o: Partial<LunInfo> = {}, ch: BdevChannel | null = d.channel): ScsiLun {
  return new ScsiLun(info(o), ch);
}

const IN = DataDir.FROM_DEVICE, OUT = DataDir.TO_DEVICE;
const inquiry = (evpd: number, page: number, alloc: number) => [Op.INQUIRY, evpd, page, ...be16(alloc), 0];

describe('INQUIRY', () => {
  beforeAll(() => { lun = freshLun(); });

  it('returns standard data with the right fields, truncated to the allocation length', () => {
    const t = run(lun, inquiry(0, 0, 255), g, [[0, 0, 255]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(74);
    expect(t.residual).toBe(255 - 74);
    const b = read(g, [[0, 0, 74]]);
    expect(b[0]).toBe(0x00);           // qualifier 0, direct access block device
    expect(b[1]).toBe(0);              // not removable
    expect(b[2]).toBe(0x06);           // SPC-4
    expect(b[3]).toBe(0x12);           // HISUP, format 2
    expect(b[4]).toBe(74 - 5);         // additional length
    expect(b[7]).toBe(0x02);           // CMDQUE
    expect(String.fromCharCode(...b.slice(8, 16))).toBe('VHOSTD  ');
    expect(String.fromCharCode(...b.slice(16, 32))).toBe('Malloc disk     ');
    expect(String.fromCharCode(...b.slice(32, 36))).toBe('0001');
    expect(b.slice(58, 64)).toEqual([0x00, 0xa0, 0x04, 0x60, 0x04, 0xc0]);
    const t2 = run(lun, inquiry(0, 0, 36), g, [[0, 100, 36]], IN);
    expect(t2.dataTransferred).toBe(36);
    expect(read(g, [[0, 104, 1]])[0]).toBe(69); // additional length is the full one
  });

  it('truncates to a data buffer smaller than the allocation length (GOOD, residual 0)', () => {
    const t = run(lun, inquiry(0, 0, 96), g, [[0, 0, 10], [1, 5, 10]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(20);
    expect(t.residual).toBe(0);
    expect(read(g, [[1, 5, 4]])).toEqual([...'OSTD'].map((c) => c.charCodeAt(0))); // bytes 10..13: 'VHOSTD' starts at 8
  });

  it('lists the supported VPD pages', () => {
    const t = run(lun, inquiry(1, 0x00, 64), g, [[0, 0, 64]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(read(g, [[0, 0, t.dataTransferred]])).toEqual([0, 0, 0, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
  });

  it('VPD 0x80 gives the unit serial number', () => {
    const l = freshLun({ serial: 'SN-42' });
    const t = run(l, inquiry(1, 0x80, 64), g, [[0, 0, 64]], IN);
    expect(read(g, [[0, 0, t.dataTransferred]])).toEqual([0, 0x80, 0, 5, ...[...'SN-42'].map((c) => c.charCodeAt(0))]);
    const t2 = run(lun, inquiry(1, 0x80, 64), g, [[0, 0, 64]], IN); // default: the bdev name
    expect(String.fromCharCode(...read(g, [[0, 4, t2.dataTransferred - 4]]))).toBe('Malloc0');
  });

  it('VPD 0x83 carries an NAA type 6 designator derived from the UUID, then a T10 vendor id', () => {
    const t = run(lun, inquiry(1, 0x83, 255), g, [[0, 0, 255]], IN);
    const b = read(g, [[0, 0, t.dataTransferred]]);
    expect(b[1]).toBe(0x83);
    expect((b[2] << 8) | b[3]).toBe(b.length - 4);
    // designator 1: binary, LU association, type 3 (NAA), length 16
    expect(b.slice(4, 8)).toEqual([0x01, 0x03, 0x00, 16]);
    // NAA 6 | OUI 00-03-47 | first 36 bits of the UUID | last 64 bits of the UUID
    expect(b.slice(8, 24)).toEqual([0x60, 0x00, 0x34, 0x71, 0x23, 0x45, 0x67, 0x89,
      0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    expect(b[8] >> 4).toBe(6);
    // designator 2: ASCII, T10 vendor id
    expect(b.slice(24, 28)).toEqual([0x02, 0x01, 0x00, 24 + 7]);
    expect(String.fromCharCode(...b.slice(28, 28 + 31))).toBe('VHOSTD  Malloc disk     Malloc0');
    // a different UUID gives a different designator; a company id can be configured
    const other = freshLun({ uuid: '00000000-0000-4000-8000-000000000001', naaCompanyId: 0x001405 });
    expect([...other.naa]).toEqual([0x60, 0x01, 0x40, 0x50, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 1]);
  });

  it('VPD 0xB0 block limits: WSNZ, transfer lengths, unmap limits, write same length', () => {
    const t = run(lun, inquiry(1, 0xb0, 64), g, [[0, 0, 64]], IN);
    expect(t.dataTransferred).toBe(64);
    const b = Buffer.from(read(g, [[0, 0, 64]]));
    expect(b.readUInt16BE(2)).toBe(0x3c);
    expect(b[4] & 1).toBe(1);                          // WSNZ
    expect(b.readUInt16BE(6)).toBe(8);                 // optimal granularity: 4 KiB
    expect(b.readUInt32BE(8)).toBe(8192);              // max transfer: 4 MiB of 512 B blocks
    expect(b.readUInt32BE(12)).toBe(8192);
    expect(b.readUInt32BE(20)).toBe(0x400000);         // max unmap LBA count
    expect(b.readUInt32BE(24)).toBe(MAX_UNMAP_DESCRIPTORS); // max unmap descriptor count
    expect(Number(b.readBigUInt64BE(36))).toBe(0xffff); // max write same length
    const noUnmap = freshLun({ supportsUnmap: false });
    run(noUnmap, inquiry(1, 0xb0, 64), g, [[0, 0, 64]], IN);
    const c = Buffer.from(read(g, [[0, 0, 64]]));
    expect(c.readUInt32BE(20)).toBe(0);
    expect(c.readUInt32BE(24)).toBe(0);
  });

  it('VPD 0xB1 says non-rotating; 0xB2 has LBPU/LBPWS/LBPWS10 and thin provisioning', () => {
    run(lun, inquiry(1, 0xb1, 64), g, [[0, 0, 64]], IN);
    expect(read(g, [[0, 0, 6]])).toEqual([0, 0xb1, 0, 0x3c, 0, 1]);
    const t = run(lun, inquiry(1, 0xb2, 64), g, [[0, 0, 64]], IN);
    expect(read(g, [[0, 0, t.dataTransferred]])).toEqual([0, 0xb2, 0, 4, 0, 0xe0, 0x02, 0]);
    const t2 = run(freshLun({ supportsUnmap: false }), inquiry(1, 0xb2, 64), g, [[0, 0, 64]], IN);
    expect(read(g, [[0, 0, t2.dataTransferred]])).toEqual([0, 0xb2, 0, 4, 0, 0, 0, 0]);
  });

  it('rejects unknown VPD pages and a page code without EVPD with INVALID FIELD IN CDB', () => {
    const t = run(lun, inquiry(1, 0x99, 64), g, [[0, 0, 64]], IN);
    expect(t.status).toBe(Status.CHECK_CONDITION);
    expect(sense(t)).toEqual([ILLEGAL, 0x24, 0x00]);
    expect(t.sense[0]).toBe(0x70);
    expect(t.sense[7]).toBe(10);
    expect(t.senseLen).toBe(18);
    expect([t.sense[15], t.sense[16], t.sense[17]]).toEqual([0xc0, 0, 2]); // SKSV, C/D, byte 2
    expect(t.dataTransferred).toBe(0);
    expect(sense(run(lun, inquiry(0, 0x83, 64), g, [[0, 0, 64]], IN))).toEqual([ILLEGAL, 0x24, 0]);
  });
});

describe('READ CAPACITY', () => {
  beforeAll(() => { lun = freshLun(); });

  it('(10) returns the last LBA and the block length', () => {
    const t = run(lun, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], g, [[0, 0, 8]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(read(g, [[0, 0, 8]])).toEqual([...be32(2047), ...be32(512)]);
    const big = freshLun({ numBlocks: 2 ** 33, blockSize: 4096 }, null);
    run(big, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], g, [[0, 0, 8]], IN);
    expect(read(g, [[0, 0, 8]])).toEqual([0xff, 0xff, 0xff, 0xff, ...be32(4096)]);
    const bad = run(lun, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 1, 0, 0, 0, 0], g, [[0, 0, 8]], IN); // LBA without PMI
    expect(sense(bad)).toEqual([ILLEGAL, 0x24, 0]);
  });

  it('(16) returns the 64-bit last LBA, block length and LBPME when unmap is supported', () => {
    const cdb = [Op.SERVICE_ACTION_IN_16, 0x10, ...be64(0), ...be32(32), 0, 0];
    const t = run(lun, cdb, g, [[0, 0, 32]], IN);
    expect(t.dataTransferred).toBe(32);
    const b = read(g, [[0, 0, 32]]);
    expect(b.slice(0, 8)).toEqual(be64(2047));
    expect(b.slice(8, 12)).toEqual(be32(512));
    expect(b[13]).toBe(0);
    expect(b[14]).toBe(0x80); // LBPME, LBPRZ=0
    const big = freshLun({ numBlocks: 2 ** 40 + 5, supportsUnmap: false }, null);
    const t2 = run(big, cdb, g, [[0, 0, 32]], IN);
    expect(t2.status).toBe(Status.GOOD);
    const c = read(g, [[0, 0, 32]]);
    expect(c.slice(0, 8)).toEqual(be64(2 ** 40 + 4));
    expect(c[14]).toBe(0);
    // allocation length 12: truncated
    const t3 = run(lun, [Op.SERVICE_ACTION_IN_16, 0x10, ...be64(0), ...be32(12), 0, 0], g, [[0, 0, 32]], IN);
    expect(t3.dataTransferred).toBe(12);
    expect(t3.residual).toBe(20);
    // other service actions
    expect(sense(run(lun, [Op.SERVICE_ACTION_IN_16, 0x12, ...be64(0), ...be32(32), 0, 0], g, [[0, 0, 32]], IN)))
      .toEqual([ILLEGAL, 0x24, 0]);
  });
});

describe('MODE SENSE / MODE SELECT', () => {
  beforeAll(() => { lun = freshLun(); });
  const ms6 = (flags: number, pcPage: number, sub: number, alloc: number) => [Op.MODE_SENSE_6, flags, pcPage, sub, alloc, 0];
  const ms10 = (flags: number, pcPage: number, sub: number, alloc: number) =>
    [Op.MODE_SENSE_10, flags, pcPage, sub, 0, 0, 0, ...be16(alloc), 0];

  it('MODE SENSE(6) caching page with a short block descriptor', () => {
    const t = run(lun, ms6(0, 0x08, 0, 255), g, [[0, 0, 255]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(4 + 8 + 20);
    const b = read(g, [[0, 0, 32]]);
    expect(b.slice(0, 4)).toEqual([31, 0, 0x10, 8]); // length, medium, DPOFUA, block descriptor length
    expect(b.slice(4, 12)).toEqual([...be32(2048), 0, 0, 2, 0]);
    expect(b.slice(12, 15)).toEqual([0x08, 0x12, 0x04]); // caching, WCE
  });

  it('MODE SENSE(6) all pages, DBD, and a 4-byte allocation length', () => {
    const t = run(lun, ms6(0x08, 0x3f, 0, 255), g, [[0, 0, 255]], IN);
    const b = read(g, [[0, 0, t.dataTransferred]]);
    expect(b.length).toBe(4 + 12 + 20 + 12);
    expect(b[0]).toBe(b.length - 1);
    expect(b[3]).toBe(0);
    expect(b[4]).toBe(0x01); expect(b[5]).toBe(0x0a); expect(b[6]).toBe(0x80); // R/W error recovery, AWRE
    expect(b[16]).toBe(0x08); expect(b[17]).toBe(0x12);                      // caching
    expect(b[36]).toBe(0x0a); expect(b[37]).toBe(0x0a); expect(b[39]).toBe(0x10); // control, QAM=1
    expect(run(lun, ms6(0, 0x3f, 0xff, 255), g, [[0, 0, 255]], IN).status).toBe(Status.GOOD);
    const t4 = run(lun, ms6(0, 0x3f, 0, 4), g, [[0, 0, 255]], IN);
    expect(t4.dataTransferred).toBe(4);
    expect(read(g, [[0, 0, 1]])[0]).toBe(4 + 8 + 44 - 1); // full length reported
  });

  it('MODE SENSE(10) control page with a long LBA block descriptor; changeable values', () => {
    const t = run(lun, ms10(0x10, 0x0a, 0, 255), g, [[0, 0, 255]], IN);
    const b = read(g, [[0, 0, t.dataTransferred]]);
    expect(b.length).toBe(8 + 16 + 12);
    expect(b.slice(0, 8)).toEqual([...be16(b.length - 2), 0, 0x10, 0x01, 0, ...be16(16)]);
    expect(b.slice(8, 24)).toEqual([...be64(2048), 0, 0, 0, 0, ...be32(512)]);
    expect(b.slice(24, 28)).toEqual([0x0a, 0x0a, 0, 0x10]);
    const c = run(lun, ms10(0x08, 0x48, 0, 255), g, [[0, 0, 255]], IN); // PC=1 changeable, caching
    expect(read(g, [[0, 8, 3]])).toEqual([0x08, 0x12, 0x05]);
    expect(c.status).toBe(Status.GOOD);
  });

  it('reports WP for a read-only LUN; rejects saved values and unknown pages', () => {
    run(freshLun({ readOnly: true }), ms6(0x08, 0x08, 0, 255), g, [[0, 0, 255]], IN);
    expect(read(g, [[0, 2, 1]])[0]).toBe(0x90);
    expect(sense(run(lun, ms6(0, 0xc8, 0, 255), g, [[0, 0, 255]], IN))).toEqual([ILLEGAL, 0x39, 0]);
    expect(sense(run(lun, ms6(0, 0x1c, 0, 255), g, [[0, 0, 255]], IN))).toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(lun, ms6(0, 0x08, 0x01, 255), g, [[0, 0, 255]], IN))).toEqual([ILLEGAL, 0x24, 0]);
  });

  it('MODE SELECT accepts the caching page as Linux writes it back, and disabling WCE flushes', () => {
    const l = freshLun();
    // what sd_cache_type_store does: MODE SENSE(10) page 8 with DBD, clear WCE, MODE SELECT(10) PF=1
    run(l, ms10(0x08, 0x08, 0, 255), g, [[0, 0, 255]], IN);
    const page = read(g, [[0, 8, 20]]);
    page[2] &= ~0x05;
    const param = [0, 0, 0, 0, 0, 0, 0, 0, ...page];
    fill(g, [[0, 1000, param.length]], param);
    const before = d.flushes();
    const t = run(l, [Op.MODE_SELECT_10, 0x10, 0, 0, 0, 0, 0, ...be16(param.length), 0], g, [[0, 1000, param.length]], OUT);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(28);
    expect(l.wce).toBe(false);
    expect(d.flushes()).toBe(before + 1);
    run(l, ms6(0x08, 0x08, 0, 255), g, [[0, 0, 255]], IN);
    expect(read(g, [[0, 6, 1]])[0]).toBe(0x00);
    // writes are now write-through: each one is followed by a flush
    const f = d.flushes();
    run(l, [Op.WRITE_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], OUT);
    expect(d.flushes()).toBe(f + 1);
    // MODE SELECT(6) turning WCE back on
    page[2] |= 0x04;
    const p6 = [0, 0, 0, 0, ...page];
    fill(g, [[1, 0, p6.length]], p6);
    expect(run(l, [Op.MODE_SELECT_6, 0x10, 0, 0, p6.length, 0], g, [[1, 0, p6.length]], OUT).status).toBe(Status.GOOD);
    expect(l.wce).toBe(true);
  });

  it('MODE SELECT rejects unchangeable bits, SP=1, bad lengths, and a short buffer', () => {
    const l = freshLun();
    const ctl = [0, 0, 0, 0, 0x0a, 0x0a, 0, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]; // QAM changed 1 -> 0
    fill(g, [[0, 0, ctl.length]], ctl);
    const t = run(l, [Op.MODE_SELECT_6, 0x10, 0, 0, ctl.length, 0], g, [[0, 0, ctl.length]], OUT);
    expect(sense(t)).toEqual([ILLEGAL, 0x26, 0]);
    expect([t.sense[15], t.sense[16], t.sense[17]]).toEqual([0x80, 0, 7]); // parameter byte 7
    expect(sense(run(l, [Op.MODE_SELECT_6, 0x11, 0, 0, ctl.length, 0], g, [[0, 0, ctl.length]], OUT)))
      .toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(l, [Op.MODE_SELECT_6, 0x10, 0, 0, 2, 0], g, [[0, 0, 2]], OUT))).toEqual([ILLEGAL, 0x1a, 0]);
    const short = run(l, [Op.MODE_SELECT_6, 0x10, 0, 0, ctl.length, 0], g, [[0, 0, 8]], OUT);
    expect(sense(short)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x0b]);
    expect(short.overrun).toBe(true);
    expect(run(l, [Op.MODE_SELECT_6, 0x10, 0, 0, 0, 0], g).status).toBe(Status.GOOD);
  });
});

describe('simple commands', () => {
  beforeAll(() => { lun = freshLun(); });

  it('TEST UNIT READY is GOOD; REQUEST SENSE reports NO SENSE in fixed or descriptor format', () => {
    expect(run(lun, [0, 0, 0, 0, 0, 0]).status).toBe(Status.GOOD);
    const t = run(lun, [Op.REQUEST_SENSE, 0, 0, 0, 252, 0], g, [[0, 0, 252]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(18);
    expect(read(g, [[0, 0, 18]])).toEqual([0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const t2 = run(lun, [Op.REQUEST_SENSE, 1, 0, 0, 252, 0], g, [[0, 0, 252]], IN);
    expect(read(g, [[0, 0, t2.dataTransferred]])).toEqual([0x72, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('REPORT LUNS lists the target LUNs with the right addressing', () => {
    const r = start(lun, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, ...be32(4096), 0, 0], null);
    const task = r.task;
    task.targetLuns = [0, 1, 300];
    task.targetLunCount = 3;
    const t = start(lun, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, ...be32(4096), 0, 0], g, [[0, 0, 4096]], IN,
      12, task, r.sink).task;
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(32);
    expect(read(g, [[0, 0, 32]])).toEqual([0, 0, 0, 24, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0,  0, 1, 0, 0, 0, 0, 0, 0,  0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
    const wk = start(lun, [Op.REPORT_LUNS, 0, 1, 0, 0, 0, ...be32(4096), 0, 0], g, [[0, 0, 4096]], IN, 12, task, r.sink).task;
    expect(read(g, [[0, 0, wk.dataTransferred]])).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(sense(run(lun, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, ...be32(8), 0, 0], g, [[0, 0, 8]], IN)))
      .toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(lun, [Op.REPORT_LUNS, 0, 3, 0, 0, 0, ...be32(64), 0, 0], g, [[0, 0, 64]], IN)))
      .toEqual([ILLEGAL, 0x24, 0]);
  });

  it('START STOP UNIT: stop flushes, start is GOOD', () => {
    const f = d.flushes();
    expect(run(lun, [Op.START_STOP_UNIT, 0, 0, 0, 0, 0]).status).toBe(Status.GOOD);
    expect(d.flushes()).toBe(f + 1);
    expect(run(lun, [Op.START_STOP_UNIT, 0, 0, 0, 1, 0]).status).toBe(Status.GOOD);
    expect(d.flushes()).toBe(f + 1);
  });

  it('SYNCHRONIZE CACHE 10/16 flush; a range past the end is LBA OUT OF RANGE', () => {
    const f = d.flushes();
    expect(run(lun, [Op.SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]).status).toBe(Status.GOOD);
    expect(run(lun, [Op.SYNCHRONIZE_CACHE_16, 0, ...be64(100), ...be32(8), 0, 0]).status).toBe(Status.GOOD);
    expect(d.flushes()).toBe(f + 2);
    expect(sense(run(lun, [Op.SYNCHRONIZE_CACHE_10, 0, ...be32(2040), 0, ...be16(9), 0]))).toEqual([ILLEGAL, 0x21, 0]);
    expect(d.flushes()).toBe(f + 2);
  });

  it('VERIFY 10/12/16 check the range; BYTCHK is rejected', () => {
    expect(run(lun, [Op.VERIFY_10, 0, ...be32(0), 0, ...be16(2048), 0]).status).toBe(Status.GOOD);
    expect(run(lun, [Op.VERIFY_12, 0, ...be32(10), ...be32(8), 0, 0]).status).toBe(Status.GOOD);
    expect(run(lun, [Op.VERIFY_16, 0, ...be64(2047), ...be32(1), 0, 0]).status).toBe(Status.GOOD);
    expect(sense(run(lun, [Op.VERIFY_16, 0, ...be64(2047), ...be32(2), 0, 0]))).toEqual([ILLEGAL, 0x21, 0]);
    expect(sense(run(lun, [Op.VERIFY_10, 0x02, ...be32(0), 0, ...be16(1), 0]))).toEqual([ILLEGAL, 0x24, 0]);
  });
});

describe('READ / WRITE', () => {
  beforeAll(() => { lun = freshLun(); });

  const pattern = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

  it('round-trips through a malloc bdev with multi-segment buffers, all CDB sizes', () => {
    const wsegs: Seg[] = [[0, 3, 100], [1, 17, 700], [0, 5000, 1248]]; // 2048 = 4 blocks
    const data = pattern(2048, 1);
    fill(g, wsegs, data);
    const w = run(lun, [Op.WRITE_10, 0, ...be32(10), 0, ...be16(4), 0], g, wsegs, OUT);
    expect(w.status).toBe(Status.GOOD);
    expect(w.dataTransferred).toBe(2048);
    expect(w.residual).toBe(0);
    expect([...d.u8.subarray(10 * 512, 14 * 512)]).toEqual(data);
    const cdbs = [
      [Op.READ_6, 0, 0, 10, 4, 0],
      [Op.READ_10, 0, ...be32(10), 0, ...be16(4), 0],
      [Op.READ_12, 0, ...be32(10), ...be32(4), 0, 0],
      [Op.READ_16, 0, ...be64(10), ...be32(4), 0, 0],
    ];
    for (const cdb of cdbs) {
      const rsegs: Seg[] = [[1, 1000, 1], [0, 20000, 511], [1, 3000, 1536]];
      fill(g, rsegs, new Array(2048).fill(0xee));
      const r = run(lun, cdb, g, rsegs, IN);
      expect(r.status).toBe(Status.GOOD);
      expect(r.dataTransferred).toBe(2048);
      expect(read(g, rsegs)).toEqual(data);
    }
    const data2 = pattern(512 * 3, 9);
    for (const cdb of [[Op.WRITE_6, 0, 0x01, 0x00, 3, 0], [Op.WRITE_12, 0, ...be32(256), ...be32(3), 0, 0],
      [Op.WRITE_16, 0x08, ...be64(256), ...be32(3), 0, 0]]) {
      d.u8.fill(0, 256 * 512, 259 * 512);
      fill(g, [[0, 0, 1536]], data2);
      expect(run(lun, cdb, g, [[0, 0, 1536]], OUT).status).toBe(Status.GOOD);
      expect([...d.u8.subarray(256 * 512, 259 * 512)]).toEqual(data2);
    }
  });

  it('READ(6) with transfer length 0 reads 256 blocks; READ(10) with 0 moves nothing', () => {
    const t = run(lun, [Op.READ_6, 0, 0, 0, 0, 0], g, [[0, 0, 65536], [1, 0, 65536]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(256 * 512);
    const z = run(lun, [Op.READ_10, 0, ...be32(5), 0, 0, 0, 0], g, [[0, 0, 512]], IN);
    expect(z.status).toBe(Status.GOOD);
    expect(z.dataTransferred).toBe(0);
    expect(z.residual).toBe(512);
  });

  it('a buffer longer than the transfer: only the CDB length moves, residual reported, segments restored', () => {
    d.u8.fill(0x5a, 0, 512);
    g.u8(0).fill(0x11, 0, 2048);
    const r = start(lun, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 300], [0, 300, 1000]], IN);
    const t = r.task;
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(512);
    expect(t.residual).toBe(1300 - 512);
    expect(g.u8(0)[511]).toBe(0x5a);
    expect(g.u8(0)[512]).toBe(0x11);
    expect(t.segs.len[4]).toBe(1000); // the clipped segment is back
    // and for writes
    fill(g, [[1, 0, 1024]], pattern(1024, 3));
    const w = run(lun, [Op.WRITE_10, 0, ...be32(7), 0, ...be16(1), 0], g, [[1, 0, 1024]], OUT);
    expect(w.dataTransferred).toBe(512);
    expect(w.residual).toBe(512);
    expect([...d.u8.subarray(7 * 512, 8 * 512)]).toEqual(pattern(512, 3));
  });

  it('a buffer shorter than the transfer, or of the wrong direction, is a buffer overflow', () => {
    const r = run(lun, [Op.READ_10, 0, ...be32(0), 0, ...be16(2), 0], g, [[0, 0, 512]], IN);
    expect(r.status).toBe(Status.CHECK_CONDITION);
    expect(sense(r)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x08]);
    expect(r.overrun).toBe(true);
    expect(r.dataTransferred).toBe(0);
    const w = run(lun, [Op.WRITE_10, 0, ...be32(0), 0, ...be16(2), 0], g, [[0, 0, 1000]], OUT);
    expect(sense(w)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x0b]);
    expect(w.overrun).toBe(true);
    const wrongDir = run(lun, [Op.WRITE_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN);
    expect(sense(wrongDir)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x0b]);
    const noBuf = run(lun, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0]);
    expect(sense(noBuf)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x08]);
  });

  it('LBA out of range, too long a transfer, protection fields, read-only', () => {
    const t = run(lun, [Op.READ_10, 0, ...be32(2047), 0, ...be16(2), 0], g, [[0, 0, 1024]], IN);
    expect(t.status).toBe(Status.CHECK_CONDITION);
    expect(sense(t)).toEqual([ILLEGAL, 0x21, 0x00]);
    expect(sense(run(lun, [Op.READ_16, 0, ...be64(2 ** 63), ...be32(1), 0, 0], g, [[0, 0, 512]], IN)))
      .toEqual([ILLEGAL, 0x21, 0]);
    expect(sense(run(lun, [Op.WRITE_16, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...be32(1), 0, 0],
      g, [[0, 0, 512]], OUT))).toEqual([ILLEGAL, 0x21, 0]);
    expect(sense(run(lun, [Op.READ_10, 0, ...be32(2048), 0, 0, 0, 0], g, [[0, 0, 512]], IN))).toEqual([ILLEGAL, 0x21, 0]);
    const big = freshLun({ numBlocks: 100000 }, nullChannel(512, 100000));
    const m = run(big, [Op.READ_12, 0, ...be32(0), ...be32(8193), 0, 0], g, [[0, 0, 65536]], IN);
    expect(sense(m)).toEqual([ILLEGAL, 0x24, 0]);
    expect([m.sense[15], m.sense[16], m.sense[17]]).toEqual([0xc0, 0, 6]);
    expect(sense(run(lun, [Op.READ_10, 0x20, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN))).toEqual([ILLEGAL, 0x24, 0]);
    const ro = freshLun({ readOnly: true });
    expect(sense(run(ro, [Op.WRITE_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], OUT))).toEqual([K.DATA_PROTECT, 0x27, 0]);
    expect(run(ro, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN).status).toBe(Status.GOOD);
  });

  it('bdev failures: MEDIUM ERROR 11/00 on reads and 03/00 on writes, with the LBA; others mapped', () => {
    const bad = freshLun({}, new StatusChannel(IoSt.FAILED));
    const r = run(bad, [Op.READ_10, 0, ...be32(33), 0, ...be16(1), 0], g, [[0, 0, 512]], IN);
    expect(sense(r)).toEqual([K.MEDIUM_ERROR, 0x11, 0x00]);
    expect(r.sense[0]).toBe(0xf0); // VALID
    expect([...r.sense.subarray(3, 7)]).toEqual(be32(33));
    const w = run(bad, [Op.WRITE_10, 0, ...be32(34), 0, ...be16(1), 0], g, [[0, 0, 512]], OUT);
    expect(sense(w)).toEqual([K.MEDIUM_ERROR, 0x03, 0x00]);
    expect(sense(run(bad, [Op.SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toEqual([K.MEDIUM_ERROR, 0x03, 0]);
    const busy = freshLun({}, new StatusChannel(IoSt.NOMEM));
    const b = run(busy, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN);
    expect(b.status).toBe(Status.TASK_SET_FULL);
    expect(b.senseLen).toBe(0);
    const ab = freshLun({}, new StatusChannel(IoSt.ABORTED));
    expect(sense(run(ab, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN))).toEqual([K.ABORTED_COMMAND, 0, 0]);
    // a bdev without flush support: SYNCHRONIZE CACHE still succeeds
    const nf = freshLun({}, new StatusChannel(IoSt.UNSUPPORTED));
    expect(run(nf, [Op.SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]).status).toBe(Status.GOOD);
  });

  it('null bdev: reads and writes complete GOOD', () => {
    const nl = freshLun({}, nullChannel());
    const t = run(nl, [Op.READ_16, 0, ...be64(5), ...be32(2), 0, 0], g, [[0, 0, 1024]], IN);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(1024);
  });

  it('completes later when the bdev completes asynchronously', () => {
    const ch = new DeferredChannel(d);
    const al = freshLun({}, ch);
    d.u8.fill(0x77, 512 * 40, 512 * 42);
    const r = start(al, [Op.READ_10, 0, ...be32(40), 0, ...be16(2), 0], g, [[1, 0, 1024]], IN);
    expect(r.sink.calls).toBe(0);
    expect(() => executeScsi(al, r.task)).toThrow(/in flight/);
    expect(ch.poll()).toBe(1);
    expect(r.sink.calls).toBe(1);
    expect(r.task.status).toBe(Status.GOOD);
    expect(g.u8(1)[1023]).toBe(0x77);
    // FUA write: write, then flush, each asynchronously
    const w = start(al, [Op.WRITE_10, 0x08, ...be32(40), 0, ...be16(1), 0], g, [[1, 0, 512]], OUT);
    expect(ch.poll()).toBe(1);
    expect(w.sink.calls).toBe(0);
    expect(ch.poll()).toBe(1);
    expect(w.sink.calls).toBe(1);
    expect(w.task.status).toBe(Status.GOOD);
  });
});

describe('UNMAP and WRITE SAME', () => {
  beforeAll(() => { lun = freshLun(); });
  const unmapCdb = (pll: number, anchor = 0) => [Op.UNMAP, anchor, 0, 0, 0, 0, 0, ...be16(pll), 0];
  const descr = (lba: number, n: number) => [...be64(lba), ...be32(n), 0, 0, 0, 0];
  const params = (...ds: number[][]) => [...be16(6 + 16 * ds.length), ...be16(16 * ds.length), 0, 0, 0, 0, ...ds.flat()];

  it('unmaps every descriptor of a parameter list split across segments', () => {
    d.u8.fill(0xab, 0, 512 * 64);
    const p = params(descr(2, 3), descr(20, 0), descr(30, 2));
    const segs: Seg[] = [[0, 100, 5], [1, 200, 20], [0, 9000, p.length - 25]]; // split inside descriptors
    fill(g, segs, p);
    const t = run(lun, unmapCdb(p.length), g, segs, OUT);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(56);
    const blk = (b: number) => d.u8[b * 512 + 100];
    expect([blk(1), blk(2), blk(4), blk(5), blk(20), blk(29), blk(30), blk(31), blk(32)])
      .toEqual([0xab, 0, 0, 0xab, 0xab, 0xab, 0, 0, 0xab]);
    expect(d.stat(4 /* UNMAP_OPS */)).toBeGreaterThanOrEqual(2);
  });

  it('ignores an incomplete trailing descriptor; checks lengths, ranges and limits', () => {
    d.u8.fill(0xab, 0, 512 * 64);
    const p = params(descr(8, 1));
    p[3] = 16 + 10; // BLOCK DESCRIPTOR DATA LENGTH not a multiple of 16: last one partial
    const full = [...p, ...descr(9, 1).slice(0, 10)];
    fill(g, [[0, 0, full.length]], full);
    expect(run(lun, unmapCdb(full.length), g, [[0, 0, full.length]], OUT).status).toBe(Status.GOOD);
    expect([d.u8[8 * 512], d.u8[9 * 512]]).toEqual([0, 0xab]);

    expect(run(lun, unmapCdb(0), g).status).toBe(Status.GOOD);
    expect(sense(run(lun, unmapCdb(4), g, [[0, 0, 4]], OUT))).toEqual([ILLEGAL, 0x1a, 0]);
    expect(sense(run(lun, unmapCdb(24, 1), g, [[0, 0, 24]], OUT))).toEqual([ILLEGAL, 0x24, 0]);
    const oor = params(descr(10, 1), descr(2047, 2));
    fill(g, [[0, 0, oor.length]], oor);
    expect(sense(run(lun, unmapCdb(oor.length), g, [[0, 0, oor.length]], OUT))).toEqual([ILLEGAL, 0x21, 0]);
    expect(d.u8[10 * 512]).toBe(0xab); // nothing unmapped
    const many = params(...Array.from({ length: MAX_UNMAP_DESCRIPTORS + 1 }, (_, i) => descr(i, 1)));
    fill(g, [[1, 0, many.length]], many);
    expect(sense(run(lun, unmapCdb(many.length), g, [[1, 0, many.length]], OUT))).toEqual([ILLEGAL, 0x26, 0]);
    const short = run(lun, unmapCdb(40), g, [[0, 0, 24]], OUT);
    expect(sense(short)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x0b]);
    expect(short.overrun).toBe(true);
    expect(sense(run(freshLun({ supportsUnmap: false }), unmapCdb(24), g, [[0, 0, 24]], OUT))).toEqual([ILLEGAL, 0x20, 0]);
    expect(sense(run(freshLun({ readOnly: true }), unmapCdb(24), g, [[0, 0, 24]], OUT))).toEqual([K.DATA_PROTECT, 0x27, 0]);
  });

  it('UNMAP with several descriptors on an asynchronous bdev', () => {
    const ch = new DeferredChannel(d);
    const al = freshLun({}, ch);
    d.u8.fill(0xab, 0, 512 * 64);
    const p = params(descr(1, 1), descr(3, 1), descr(5, 1));
    fill(g, [[0, 0, p.length]], p);
    const r = start(al, unmapCdb(p.length), g, [[0, 0, p.length]], OUT);
    let polls = 0;
    while (r.sink.calls === 0 && polls < 10) { ch.poll(); polls++; }
    expect(polls).toBe(3);
    expect(r.task.status).toBe(Status.GOOD);
    expect([d.u8[512], d.u8[1024], d.u8[1536], d.u8[2048], d.u8[2560]]).toEqual([0, 0xab, 0, 0xab, 0]);
  });

  it('WRITE SAME(10) writes a non-zero block to every LBA, block split across segments', () => {
    d.u8.fill(0, 0, d.bytes);
    const block = pattern(512, 5);
    const segs: Seg[] = [[0, 0, 200], [1, 0, 312]];
    fill(g, segs, block);
    const t = run(lun, [Op.WRITE_SAME_10, 0, ...be32(100), 0, ...be16(70), 0], g, segs, OUT);
    expect(t.status).toBe(Status.GOOD);
    expect(t.dataTransferred).toBe(512);
    for (let b = 100; b < 170; b++) expect([...d.u8.subarray(b * 512, b * 512 + 512)]).toEqual(block);
    expect(d.u8[99 * 512 + 511]).toBe(0);
    expect(d.u8[170 * 512]).toBe(0);
  });

  it('WRITE SAME(16) with a zero block (and UNMAP bit) becomes one write-zeroes', () => {
    d.u8.fill(0xcd, 0, d.bytes);
    g.u8(0).fill(0, 0, 512);
    const wz = d.stat(7 /* WZ_OPS */);
    const t = run(lun, [Op.WRITE_SAME_16, 0x08, ...be64(1000), ...be32(1048), 0, 0], g, [[0, 0, 512]], OUT);
    expect(t.status).toBe(Status.GOOD);
    expect(d.stat(7)).toBe(wz + 1);
    expect(d.u8[1000 * 512]).toBe(0);
    expect(d.u8[d.bytes - 1]).toBe(0);
    expect(d.u8[1000 * 512 - 1]).toBe(0xcd);
    // without write-zeroes support the zero block is written like any other
    const nwz = freshLun({ supportsWriteZeroes: false });
    expect(run(nwz, [Op.WRITE_SAME_16, 0, ...be64(0), ...be32(3), 0, 0], g, [[0, 0, 512]], OUT).status).toBe(Status.GOOD);
    expect(d.stat(7)).toBe(wz + 1);
    expect(d.u8[3 * 512 - 1]).toBe(0);
    expect(d.u8[3 * 512]).toBe(0xcd);
  });

  it('WRITE SAME checks: zero length, too long, range, ANCHOR, buffer, read-only', () => {
    expect(sense(run(lun, [Op.WRITE_SAME_10, 0, ...be32(0), 0, 0, 0, 0], g, [[0, 0, 512]], OUT))).toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(lun, [Op.WRITE_SAME_16, 0, ...be64(0), ...be32(0x10000), 0, 0], g, [[0, 0, 512]], OUT))).toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(lun, [Op.WRITE_SAME_10, 0, ...be32(2000), 0, ...be16(49), 0], g, [[0, 0, 512]], OUT))).toEqual([ILLEGAL, 0x21, 0]);
    expect(sense(run(lun, [Op.WRITE_SAME_10, 0x10, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], OUT))).toEqual([ILLEGAL, 0x24, 0]);
    const s = run(lun, [Op.WRITE_SAME_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 100]], OUT);
    expect(sense(s)).toEqual([K.ABORTED_COMMAND, 0x4b, 0x0b]);
    expect(sense(run(freshLun({ readOnly: true }), [Op.WRITE_SAME_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], OUT)))
      .toEqual([K.DATA_PROTECT, 0x27, 0]);
  });

  it('a long WRITE SAME on a synchronous bdev runs as a loop, not a recursion', () => {
    const big = new Disk(512, 70000);
    try {
      const bl = new ScsiLun(info({ numBlocks: 70000 }), big.channel);
      fill(g, [[0, 0, 512]], pattern(512, 77));
      const t = run(bl, [Op.WRITE_SAME_16, 0, ...be64(1), ...be32(0xffff), 0, 0], g, [[0, 0, 512]], OUT);
      expect(t.status).toBe(Status.GOOD);
      expect(big.stat(2 /* WRITE_OPS */)).toBe(Math.ceil(0xffff / 32));
      expect([...big.u8.subarray(0xffff * 512, 0x10000 * 512)]).toEqual(pattern(512, 77));
      expect(big.u8[0x10000 * 512]).toBe(0);
    } finally { big.free(); }
  });

  function pattern(n: number, seed: number) { return Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff); }
});

describe('bad input and absent LUNs', () => {
  beforeAll(() => { lun = freshLun(); });

  it('unknown opcodes get INVALID COMMAND OPERATION CODE', () => {
    for (const op of [0x02, 0x4d, 0x7f, 0xc0, 0xa3, 0xff]) {
      const t = run(lun, [op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      expect(t.status).toBe(Status.CHECK_CONDITION);
      expect(sense(t)).toEqual([ILLEGAL, 0x20, 0x00]);
    }
  });

  it('a CDB shorter than its opcode needs, or NACA/LINK set, is INVALID FIELD IN CDB', () => {
    expect(sense(run(lun, [Op.READ_16, 0, ...be64(0), ...be32(1), 0, 0], g, [[0, 0, 512]], IN, 10))).toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(lun, [Op.INQUIRY, 0, 0, 0, 36], g, [[0, 0, 36]], IN))).toEqual([ILLEGAL, 0x24, 0]);
    expect(sense(run(lun, [], g))).toEqual([ILLEGAL, 0x24, 0]);
    const naca = run(lun, [Op.TEST_UNIT_READY, 0, 0, 0, 0, 0x04]);
    expect(sense(naca)).toEqual([ILLEGAL, 0x24, 0]);
    expect([naca.sense[15], naca.sense[16], naca.sense[17]]).toEqual([0xca, 0, 5]); // byte 5, bit 2
    // a 32-byte virtio-scsi CDB buffer with a 10-byte command is fine
    const padded = [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0, ...new Array(22).fill(0)];
    expect(run(lun, padded, g, [[0, 0, 512]], IN).status).toBe(Status.GOOD);
  });

  it('a removed LUN answers LOGICAL UNIT NOT SUPPORTED, and INQUIRY with qualifier 3', () => {
    const l = freshLun();
    l.remove();
    for (const l2 of [l, null]) {
      const r = run(l2, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN);
      expect(sense(r)).toEqual([ILLEGAL, 0x25, 0x00]);
      expect(sense(run(l2, [0, 0, 0, 0, 0, 0]))).toEqual([ILLEGAL, 0x25, 0]);
      expect(sense(run(l2, [0xc0, 0, 0, 0, 0, 0]))).toEqual([ILLEGAL, 0x25, 0]);
      const inq = run(l2, inquiry(0, 0, 96), g, [[0, 0, 96]], IN);
      expect(inq.status).toBe(Status.GOOD);
      expect(inq.dataTransferred).toBe(36);
      expect(read(g, [[0, 0, 5]])).toEqual([0x7f, 0, 6, 0x12, 31]);
      const rs = run(l2, [Op.REQUEST_SENSE, 0, 0, 0, 18, 0], g, [[0, 0, 18]], IN);
      expect(rs.status).toBe(Status.GOOD);
      expect(read(g, [[0, 0, 18]])[2]).toBe(ILLEGAL);
      expect(read(g, [[0, 12, 2]])).toEqual([0x25, 0]);
      expect(run(l2, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, ...be32(16), 0, 0], g, [[0, 0, 16]], IN).status).toBe(Status.GOOD);
    }
  });

  it('reuses one task for many commands without leaking state', () => {
    const sink = new Sink();
    const task = new ScsiTask(sink, 1, new SegmentTable(8), blockIoDone);
    start(lun, [Op.READ_10, 0, ...be32(5000), 0, ...be16(1), 0], g, [[0, 0, 512]], IN, 10, task, sink);
    expect(task.status).toBe(Status.CHECK_CONDITION);
    start(lun, [Op.READ_10, 0, ...be32(0), 0, ...be16(1), 0], g, [[0, 0, 512]], IN, 10, task, sink);
    expect(task.status).toBe(Status.GOOD);
    expect(task.senseLen).toBe(0);
    expect(task.overrun).toBe(false);
    expect(sink.calls).toBe(2);
  });
});
