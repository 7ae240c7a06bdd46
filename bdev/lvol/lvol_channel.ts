// lvol bdev, reactor side. Each I/O runs in a context (reused; grown to the most I/Os ever in
// flight) that cuts it at cluster boundaries and runs the pieces one after another on the base
// bdev's channel (opened by this one, as the delay bdev does):
//  - read: map entry > 0 → that physical cluster; else the nearest ancestor that has the
//    cluster; else zeroes into the guest buffers;
//  - write to an allocated cluster: straight through;
//  - first write to a cluster: claim the map entry (compareExchange 0 → MAP_BUSY; any other
//    writer of that cluster waits), take a free cluster from the shared allocator, write the
//    data (a partial write copies the rest of the cluster from the parent chain through a bounce
//    buffer: copy-on-write; without a parent the rest is zeroed with WRITE_ZEROES on the base, or
//    through the bounce buffer if the base has none), then write the map block under its lock, and only
//    then publish the entry and complete the guest's write. A crash before the map block write
//    leaves the cluster unreferenced, hence free at the next load; no acknowledged write is lost.
// Waiting pieces (entry busy, map block locked by another thread, no bounce buffer) are parked
// and retried from poll(); the reactor does not sleep while any is parked.
import { BdevChannel, openChannel, registerChannelFactory } from '../channel.js';
import { BdevIo, BdevIoSink, SegmentTable } from '../bdev_io.js';
import { BdevChannelSpec, IoStatus, IoType } from '../types.js';
import { GuestMemory } from '../../src/memory/guest_memory.js';
import { mmap, view } from '../../native/libc.js';
import { registerOp } from '../../src/reactor/reactor.js';
import { logger } from '../../src/log.js';
import { allocCluster, freeCluster, LvolChannelData, LvolState, MAP_BUSY, mapBlockImage } from './lvol_shared.js';

const log = logger('lvol');
const PIECE_SEGS = 1024;
const BOUNCES = 4;
const INITIAL_CONTEXTS = 32;

// phases of a context; IO = a child I/O is in flight, `after` is the phase its completion leads to
const START = 0, IO = 1, WAIT_ENTRY = 2, NEW_CLUSTER = 3, COW_WRITE = 4, WAIT_LOCK = 5, MAP_DONE = 6, PIECE_DONE = 7, DONE = 8,
  ZERO_TAIL = 9, NEW_DATA = 10;

/** A state's typed views, made once per state (not per I/O). */
class StateViews {
  readonly map: Int32Array;
  readonly locks: Int32Array;
  readonly chain: Int32Array[];
  constructor(readonly s: LvolState) {
    this.map = new Int32Array(s.map);
    this.locks = new Int32Array(s.locks);
    this.chain = s.chain.map((c) => new Int32Array(c));
  }
}

interface Bounce { mem: GuestMemory; u8: Uint8Array }

class LvolCtx implements BdevIoSink {
  parent: BdevIo | null = null;
  st!: StateViews;
  /** The piece's guest data (segments into the parent's memory). */
  readonly child: BdevIo;
  /** Bounce-buffer and map-block I/O (one segment into channel-private memory). */
  readonly aux: BdevIo;
  readonly mapMem: GuestMemory;
  readonly mapView: DataView;
  private phase = START;
  private after = START;
  private next = 0;
  private end = 0;
  private seg = 0;
  private segOff = 0;
  // the current piece: cluster index, blocks into it, length in blocks
  private ci = 0;
  private cOff = 0;
  private pBlocks = 0;
  private newPhys = -1;
  private bounce: Bounce | null = null;
  private locked = -1;   // map block whose lock this context holds
  private running = false;
  private again = false;
  parked = false;

  constructor(private readonly ch: LvolChannel, readonly tag: number) {
    this.child = new BdevIo(this, 0, new SegmentTable(PIECE_SEGS));
    this.child.internal = true;
    this.aux = new BdevIo(this, 1, new SegmentTable(1));
    this.aux.internal = true;
    this.aux.nseg = 1;
    const page = mmap(4096);
    this.mapMem = new GuestMemory([], [{ gpa: 0, size: 4096, uaddr: 0, hva: page }]);
    this.mapView = new DataView(view(page, 4096));
  }

  start(io: BdevIo): void {
    this.parent = io;
    this.st = this.ch.views;           // an I/O runs against the state it started with
    this.next = io.offsetBlocks;
    this.end = io.offsetBlocks + io.numBlocks;
    this.seg = io.segBase; this.segOff = 0;
    // an empty read or write has nothing to do (and must not allocate a cluster)
    this.phase = io.numBlocks === 0 && (io.type === IoType.READ || io.type === IoType.WRITE) ? DONE : START;
    this.run();
  }

  /** Advances until an I/O is in flight, the context is parked, or the I/O is done. */
  run(): void {
    if (this.running) { this.again = true; return; }
    this.running = true;
    do { this.again = false; this.step(); } while (this.again && this.parent !== null);
    this.running = false;
  }

  onBdevIoDone(c: BdevIo): void {
    if (c.status !== IoStatus.SUCCESS) { this.fail(c.status); return; }
    this.phase = this.after;
    this.run();
  }

  private submit(io: BdevIo, after: number): void {
    this.after = after;
    this.phase = IO;
    this.ch.base.submit(io);
  }

  private step(): void {
    const io = this.parent!;
    for (;;) {
      switch (this.phase) {
        case START: if (!this.startPiece(io)) return; break;
        case WAIT_ENTRY: if (!this.write()) return; break;
        case NEW_CLUSTER: if (!this.newCluster()) return; break;
        case COW_WRITE: this.cowWrite(); return;
        case ZERO_TAIL: if (!this.zeroTail()) return; break;
        case NEW_DATA: this.newData(); return;
        case WAIT_LOCK: this.writeMap(); return;
        case MAP_DONE: {
          const st = this.st;
          Atomics.store(st.map, this.ci, this.newPhys + 1);   // persisted: now visible
          Atomics.store(st.locks, this.locked, 0);
          this.locked = -1; this.newPhys = -1;
          this.releaseBounce();
          this.phase = PIECE_DONE;
          break;
        }
        case PIECE_DONE:
          this.next += this.pBlocks;
          this.phase = this.next >= this.end ? DONE : START;
          break;
        case DONE: this.finish(IoStatus.SUCCESS); return;
        default: return;   // IO: in flight
      }
    }
  }

  /** Starts a piece; false when it waits (an I/O in flight, parked, or finished). */
  private startPiece(io: BdevIo): boolean {
    const ch = this.ch, cb = ch.clusterBlocks;
    if (io.type === IoType.FLUSH) {
      this.pBlocks = this.end - this.next;
      const c = this.aux;
      c.type = IoType.FLUSH; c.offsetBlocks = 0; c.numBlocks = 0; c.bytes = 0;
      this.submit(c, DONE);
      return false;
    }
    if (io.type === IoType.RESET) { this.finish(IoStatus.SUCCESS); return false; }
    if (io.type !== IoType.READ && io.type !== IoType.WRITE) { this.finish(IoStatus.UNSUPPORTED); return false; }
    this.ci = Math.floor(this.next / cb);
    this.cOff = this.next - this.ci * cb;
    this.pBlocks = Math.min(cb - this.cOff, this.end - this.next);
    if (!this.takeSegs(io)) { this.finish(IoStatus.FAILED); return false; }
    return io.type === IoType.READ ? this.read() : this.write();
  }

  /** The parent's segments for this piece → child.segs (the cursor moves on). */
  private takeSegs(io: BdevIo): boolean {
    const c = this.child, ps = io.segs, cs = c.segs, last = io.segBase + io.nseg;
    let want = this.pBlocks * this.ch.blockSize;
    c.nseg = 0; c.segBase = 0; c.bytes = 0; c.mem = io.mem;
    while (want > 0 && this.seg < last) {
      if (c.nseg === PIECE_SEGS) return false;
      const take = Math.min(ps.len[this.seg] - this.segOff, want);
      cs.region[c.nseg] = ps.region[this.seg];
      cs.off[c.nseg] = ps.off[this.seg] + this.segOff;
      cs.len[c.nseg] = take;
      c.nseg++; c.bytes += take; want -= take;
      this.segOff += take;
      if (this.segOff === ps.len[this.seg]) { this.seg++; this.segOff = 0; }
    }
    return want === 0;   // else the buffers are shorter than the I/O
  }

  /** Physical cluster that holds cluster `ci` for reads: own map (if ownToo), then ancestors; -1 = zeroes. */
  private source(ownToo: boolean): number {
    const st = this.st, ci = this.ci;
    if (ownToo) { const v = Atomics.load(st.map, ci); if (v > 0) return v - 1; }
    const chain = st.chain;
    for (let k = 0; k < chain.length; k++) {
      const m = chain[k];
      if (ci < m.length) { const v = Atomics.load(m, ci); if (v > 0) return v - 1; }
    }
    return -1;
  }

  private read(): boolean {
    const p = this.source(true), c = this.child;
    if (p < 0) {
      const mem = c.mem!, s = c.segs;
      for (let i = 0; i < c.nseg; i++) mem.u8[s.region[i]].fill(0, s.off[i], s.off[i] + s.len[i]);
      this.phase = PIECE_DONE;
      return true;
    }
    c.type = IoType.READ;
    c.offsetBlocks = this.ch.dataBlock + p * this.ch.clusterBlocks + this.cOff;
    c.numBlocks = this.pBlocks;
    this.submit(c, PIECE_DONE);
    return false;
  }

  /** A write piece: in place, or claims the entry and allocates; false when it waits. */
  private write(): boolean {
    const st = this.st;
    if (st.s.readOnly) { this.finish(IoStatus.FAILED); return false; }
    for (;;) {
      const v = Atomics.load(st.map, this.ci);
      if (v > 0) {
        const c = this.child;
        c.type = IoType.WRITE;
        c.offsetBlocks = this.ch.dataBlock + (v - 1) * this.ch.clusterBlocks + this.cOff;
        c.numBlocks = this.pBlocks;
        this.submit(c, PIECE_DONE);
        return false;
      }
      if (v === MAP_BUSY) { this.park(WAIT_ENTRY); return false; }   // another writer allocates it
      if (Atomics.compareExchange(st.map, this.ci, 0, MAP_BUSY) === 0) break;
    }
    const p = allocCluster(this.ch.alloc, this.ch.dataClusters);
    if (p < 0) {
      Atomics.store(st.map, this.ci, 0);
      this.ch.full();
      this.finish(IoStatus.FAILED);
      return false;
    }
    this.newPhys = p;
    this.phase = NEW_CLUSTER;
    return true;
  }

  /** Data of the new cluster: a whole-cluster write as is, a partial one copy-on-write through a bounce buffer. */
  private newCluster(): boolean {
    const ch = this.ch, c = this.child;
    if (this.pBlocks === ch.clusterBlocks) {
      c.type = IoType.WRITE; c.offsetBlocks = ch.dataBlock + this.newPhys * ch.clusterBlocks; c.numBlocks = ch.clusterBlocks;
      this.submit(c, WAIT_LOCK);
      return false;
    }
    if (ch.baseZeroes && this.source(false) < 0) {
      // nothing to copy: zero the rest of the cluster on the base (cheap there), then write the data
      const first = ch.dataBlock + this.newPhys * ch.clusterBlocks;
      if (this.cOff > 0) { this.zeroAux(first, this.cOff); this.submit(this.aux, ZERO_TAIL); return false; }
      this.phase = ZERO_TAIL;
      return true;
    }
    this.bounce = ch.takeBounce();
    if (this.bounce === null) { this.park(NEW_CLUSTER); return false; }
    const src = this.source(false);
    if (src < 0) { this.bounce.u8.fill(0); this.phase = COW_WRITE; return true; }
    const a = this.aux;
    this.pointAux(this.bounce.mem, ch.clusterBytes);
    a.type = IoType.READ; a.offsetBlocks = ch.dataBlock + src * ch.clusterBlocks; a.numBlocks = ch.clusterBlocks;
    this.submit(a, COW_WRITE);
    return false;
  }

  private zeroAux(offsetBlocks: number, numBlocks: number): void {
    const a = this.aux;
    a.type = IoType.WRITE_ZEROES; a.offsetBlocks = offsetBlocks; a.numBlocks = numBlocks;
    a.mem = null; a.nseg = 0; a.bytes = 0; a.mayUnmap = false;
  }

  /** After the head of a new cluster was zeroed: its tail. */
  private zeroTail(): boolean {
    const ch = this.ch, end = this.cOff + this.pBlocks;
    if (end < ch.clusterBlocks) {
      this.zeroAux(ch.dataBlock + this.newPhys * ch.clusterBlocks + end, ch.clusterBlocks - end);
      this.submit(this.aux, NEW_DATA);
      return false;
    }
    this.phase = NEW_DATA;
    return true;
  }

  /** The guest's data into the zeroed new cluster. */
  private newData(): void {
    const ch = this.ch, c = this.child;
    c.type = IoType.WRITE; c.offsetBlocks = ch.dataBlock + this.newPhys * ch.clusterBlocks + this.cOff; c.numBlocks = this.pBlocks;
    this.submit(c, WAIT_LOCK);
  }

  private pointAux(mem: GuestMemory, bytes: number): void {
    const a = this.aux;
    a.mem = mem; a.segBase = 0; a.nseg = 1;
    a.segs.region[0] = 0; a.segs.off[0] = 0; a.segs.len[0] = bytes; a.bytes = bytes;
  }

  /** The bounce buffer holds the cluster's old content: put the guest's data over it and write it all. */
  private cowWrite(): void {
    const ch = this.ch, b = this.bounce!, c = this.child, mem = c.mem!, s = c.segs;
    let pos = this.cOff * ch.blockSize;
    for (let i = 0; i < c.nseg; i++) {
      const len = s.len[i];
      b.u8.set(mem.u8[s.region[i]].subarray(s.off[i], s.off[i] + len), pos);
      pos += len;
    }
    const a = this.aux;
    this.pointAux(b.mem, ch.clusterBytes);
    a.type = IoType.WRITE; a.offsetBlocks = ch.dataBlock + this.newPhys * ch.clusterBlocks; a.numBlocks = ch.clusterBlocks;
    this.submit(a, WAIT_LOCK);
  }

  /** Persists the new map entry: one base-block write under that block's lock. */
  private writeMap(): void {
    const ch = this.ch, st = this.st, blk = Math.floor(this.ci / ch.entriesPerBlock);
    if (Atomics.compareExchange(st.locks, blk, 0, 1) !== 0) { this.park(WAIT_LOCK); return; }
    this.locked = blk;
    mapBlockImage(st.map, blk, ch.entriesPerBlock, this.mapView, this.ci, this.newPhys + 1);
    const a = this.aux;
    this.pointAux(this.mapMem, ch.blockSize);
    a.type = IoType.WRITE; a.offsetBlocks = st.s.mapBlock + blk; a.numBlocks = 1;
    this.submit(a, MAP_DONE);
  }

  private park(phase: number): void {
    this.phase = phase;
    if (!this.parked) { this.parked = true; this.ch.park(this); }
  }

  private releaseBounce(): void {
    if (this.bounce !== null) { this.ch.giveBounce(this.bounce); this.bounce = null; }
  }

  /** A failed I/O: undo a half-done allocation (the entry goes back to unallocated). */
  private fail(status: number): void {
    const st = this.st;
    if (this.locked >= 0) {
      // the map block may or may not hold the entry now: the cluster stays taken until the next
      // load (which sees what the disk says), so it can never be handed out twice
      Atomics.store(st.map, this.ci, 0);
      Atomics.store(st.locks, this.locked, 0);
      this.locked = -1; this.newPhys = -1;
    }
    this.finish(status);
  }

  private finish(status: number): void {
    const io = this.parent!;
    this.parent = null;
    this.phase = START;
    if (this.newPhys >= 0) {   // the new cluster was never referenced: give it back
      freeCluster(this.ch.alloc, this.newPhys);
      Atomics.store(this.st.map, this.ci, 0);
      this.newPhys = -1;
    }
    this.releaseBounce();
    this.ch.release(this);
    this.ch.complete(io, status);
  }
}

/** Live lvol channels of this reactor, by lvol UUID (for 'lvol.update'). */
const live = new Map<string, Set<LvolChannel>>();

export class LvolChannel extends BdevChannel {
  readonly base: BdevChannel;
  readonly alloc: Int32Array;
  readonly dataClusters: number;
  readonly clusterBlocks: number;
  readonly clusterBytes: number;
  readonly dataBlock: number;
  readonly entriesPerBlock: number;
  /** The base has WRITE_ZEROES: a partial first write without a parent zeroes the rest there. */
  readonly baseZeroes: boolean;
  views: StateViews;
  private readonly uuid: string;
  private readonly ctxs: LvolCtx[] = [];
  private free: LvolCtx[] = [];
  private active = 0;
  private parked: LvolCtx[] = [];
  private parkedSpare: LvolCtx[] = [];
  private readonly bounces: Bounce[] = [];
  private bouncesMade = 0;
  private fullWarned = false;

  constructor(spec: BdevChannelSpec, reactorIndex: number) {
    super(spec, reactorIndex);
    const d = spec.data as unknown as LvolChannelData;
    this.base = openChannel(d.base, reactorIndex);
    this.uuid = d.uuid;
    this.alloc = new Int32Array(d.alloc);
    this.dataClusters = d.dataClusters;
    this.clusterBlocks = d.clusterBlocks;
    this.clusterBytes = d.clusterBlocks * spec.blockSize;
    this.dataBlock = d.dataBlock;
    this.entriesPerBlock = spec.blockSize / 4;
    this.baseZeroes = d.baseZeroes;
    this.views = new StateViews(d.state);
    for (let i = 0; i < INITIAL_CONTEXTS; i++) this.newCtx();
    let set = live.get(this.uuid);
    if (!set) live.set(this.uuid, set = new Set());
    set.add(this);
  }

  private newCtx(): void {
    const c = new LvolCtx(this, this.ctxs.length);
    this.ctxs.push(c);
    this.free.push(c);
  }

  setState(s: LvolState): void { this.views = new StateViews(s); }

  // Freeze (around a snapshot): new I/Os wait in `held`; `onIdle` runs once none is in flight.
  private frozen = false;
  private held: BdevIo[] = [];
  private onIdle: (() => void) | null = null;

  freeze(onIdle: () => void): void {
    this.frozen = true;
    if (this.active === 0) onIdle(); else this.onIdle = onIdle;
  }

  /** Ends a freeze: with a new state if given, then the held I/Os run in their order. */
  thaw(s: LvolState | null): void {
    if (s) this.setState(s);
    this.frozen = false;
    this.onIdle = null;
    const held = this.held;
    this.held = [];
    for (const io of held) this.submitIo(io);
  }

  protected submitIo(io: BdevIo): void {
    if (this.frozen) { this.held.push(io); return; }   // only while a snapshot is taken
    if (this.free.length === 0) this.newCtx();   // grows to the most I/Os ever in flight, then stays
    const c = this.free.pop()!;
    this.active++;
    c.start(io);
  }

  release(c: LvolCtx): void {
    this.active--;
    this.free.push(c);
    if (this.active === 0 && this.onIdle) { const f = this.onIdle; this.onIdle = null; f(); }
  }
  park(c: LvolCtx): void { this.parked.push(c); }

  takeBounce(): Bounce | null {
    const b = this.bounces.pop();
    if (b) return b;
    if (this.bouncesMade >= BOUNCES) return null;
    this.bouncesMade++;
    const hva = mmap(this.clusterBytes);
    return { mem: new GuestMemory([], [{ gpa: 0, size: this.clusterBytes, uaddr: 0, hva }]), u8: new Uint8Array(view(hva, this.clusterBytes)) };
  }

  giveBounce(b: Bounce): void { this.bounces.push(b); }

  full(): void {
    if (this.fullWarned) return;
    this.fullWarned = true;
    log.error(`lvol ${this.spec.name}: the lvstore has no free cluster left: writes to unallocated clusters fail ` +
      `(delete lvols or snapshots, or create the lvstore on a larger bdev)`);
  }

  override poll(): number {
    let work = this.base.pollAll();   // the base's completions and its QoS queue
    if (this.parked.length > 0) {
      const list = this.parked;
      this.parked = this.parkedSpare;
      for (let i = 0; i < list.length; i++) { const c = list[i]; c.parked = false; c.run(); }
      work += list.length - this.parked.length;
      list.length = 0;
      this.parkedSpare = list;
    }
    return work;
  }

  override inflight(): number { return this.active + this.held.length; }
  override wakeFds(): number[] { return this.base.wakeFdsAll(); }
  override canSleep(): boolean { return this.parked.length === 0 && this.base.canSleepAll(); }

  override destroy(): void {
    live.get(this.uuid)?.delete(this);
    this.base.closeAll();
  }
}

registerChannelFactory('lvol', (spec, r) => new LvolChannel(spec, r));

declare module '../../src/reactor/mailbox.js' {
  interface ReactorOps {
    'lvol.update': { args: { uuid: string; state: LvolState }; result: null };
    'lvol.freeze': { args: { uuid: string }; result: null };
    'lvol.thaw': { args: { uuid: string; state: LvolState | null }; result: null };
  }
}

/** The control plane changed an lvol's map or parent chain (snapshot, inflate): new I/Os use the new state. */
registerOp('lvol.update', (_r, a: { uuid: string; state: LvolState }, reply) => {
  for (const ch of live.get(a.uuid) ?? []) ch.setState(a.state);
  reply(null);
});

/** Holds new I/Os of an lvol and replies once those in flight on this reactor are done. */
registerOp('lvol.freeze', (_r, a: { uuid: string }, reply) => {
  const chs = [...(live.get(a.uuid) ?? [])];
  let left = chs.length;
  if (left === 0) { reply(null); return; }
  for (const ch of chs) ch.freeze(() => { if (--left === 0) reply(null); });
});

registerOp('lvol.thaw', (_r, a: { uuid: string; state: LvolState | null }, reply) => {
  for (const ch of live.get(a.uuid) ?? []) ch.thaw(a.state);
  reply(null);
});
