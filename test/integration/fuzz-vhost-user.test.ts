// Hostile vhost-user front end against a real vhostd (issue 6, item 5): seeded, reproducible
// cases against a victim controller while vhost-load --verify keeps a bystander controller
// busy. Zero crashes, zero hangs, zero verify errors, bounded RSS and fds; the victim still
// serves a fresh, correct front end afterwards.
//
//   VHOSTD_FUZZ_CASES  number of cases (default 100000)
//   VHOSTD_FUZZ_SEED   seed (default: random, printed)
//   VHOSTD_FUZZ_FIRST  first case to run (a block start, to reproduce one failure quickly)
//   VHOSTD_FUZZ_TIMEOUT_MS  reply deadline (default 5000)
//   VHOSTD_FUZZ_KEEP=1  keep the temp dir (vhostd.log, vhost-load.out)
//   VHOSTD_FUZZ_DAEMON_ARGS  extra vhostd arguments (e.g. "-L vhost" for a message trace)
//   VHOSTD_FUZZ_DAEMON_NODE_OPTIONS  NODE_OPTIONS for the daemon only
//   VHOSTD_FUZZ_VHOSTD  another vhostd.js to fuzz (e.g. an older build)
//   VHOST_LOAD / VHOST_LOAD_SRC  a vhost-load binary / its sources (default /work/shared/tools/vhost-load,
//                      built into ~/.cache/vhostd-bench/vhost-load; the bystander load is skipped, with a
//                      message, if that fails)
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFuzzDaemon, FuzzDaemon, sampleProc, fdKinds, mappingsOf, buildVhostLoad, startLoad, Load, ProcSample } from '../fuzz/daemon.js';
import { Fuzzer, FuzzStats } from '../fuzz/fuzzer.js';
import { connectFresh, GuestMem, Ring, handshake, blkRequest, stopRing, sleepSync, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_FLUSH } from '../fuzz/vhost_client.js';
import { Rng } from '../fuzz/prng.js';

const CASES = Number(process.env.VHOSTD_FUZZ_CASES ?? 100_000);
const SEED = process.env.VHOSTD_FUZZ_SEED !== undefined ? Number(process.env.VHOSTD_FUZZ_SEED) >>> 0
  : (Math.random() * 0x100000000) >>> 0;
const FIRST = Number(process.env.VHOSTD_FUZZ_FIRST ?? 0);
const TIMEOUT_MS = Number(process.env.VHOSTD_FUZZ_TIMEOUT_MS ?? 5000);
/** Extra fds the daemon may hold after the run (log file reopen, thread-pool eventfds...). */
const FD_SLACK = 8;
/**
 * RSS: the daemon's heaps grow while the JIT warms up and V8 sizes its old space (tens of MiB
 * in the first ~20k cases), then level off. Bounded means: no more than this over the whole run...
 */
const RSS_SLACK_KIB = 160 * 1024;
/** ...and no more than this over its second half (a leak grows with the case count). */
const RSS_SECOND_HALF_KIB = 48 * 1024;

const VICTIM = 'victim', BYSTANDER = 'bystander';

/** A correct front end on a fresh connection: write, read back and compare, flush. */
function victimRoundTrip(socket: string, seed: number): string {
  const c = connectFresh(socket, TIMEOUT_MS);
  const mem = new GuestMem(1 << 20, 0x80000000, 'fuzz-final');
  const q = new Ring(mem, 0, 64, 0);
  try {
    const { capacity } = handshake(c, { regions: [mem], rings: [q] });
    const rng = new Rng(seed ^ 0xf1a1);
    const out: string[] = [];
    for (let i = 0; i < 8; i++) {
      const len = 512 * rng.range(1, 64);
      const sector = rng.int(Number(capacity) - len / 512);
      const data = rng.bytes(len);
      const w = blkRequest(q, 0x10000, VIRTIO_BLK_T_OUT, sector, data, TIMEOUT_MS);
      if (w.status !== 0) throw new Error(`write of ${len} bytes at sector ${sector}: status ${w.status}`);
      const r = blkRequest(q, 0x10000, VIRTIO_BLK_T_IN, sector, len, TIMEOUT_MS);
      if (r.status !== 0) throw new Error(`read of ${len} bytes at sector ${sector}: status ${r.status}`);
      if (!Buffer.from(r.data).equals(Buffer.from(data))) throw new Error(`read back of sector ${sector} differs from what was written`);
      if (r.usedLen !== len + 1) out.push(`used.len ${r.usedLen} for a ${len}-byte read`);
    }
    const f = blkRequest(q, 0x10000, VIRTIO_BLK_T_FLUSH, 0, 0, TIMEOUT_MS);
    if (f.status !== 0) throw new Error(`flush: status ${f.status}`);
    const base = stopRing(c, 0);
    if (base !== q.availIdx) throw new Error(`GET_VRING_BASE returned ${base}, ${q.availIdx} requests were made available`);
    return out.join('; ');
  } finally {
    c.close(); q.close(); mem.close();
  }
}

async function settle(pid: number, want: ProcSample, ms: number): Promise<ProcSample> {
  const end = Date.now() + ms;
  let s = sampleProc(pid);
  while (s.fds > want.fds + FD_SLACK && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    s = sampleProc(pid);
  }
  return s;
}

describe('vhost-user fuzzing (issue 6)', () => {
  let dir: string;
  let d: FuzzDaemon | null = null;
  let load: Load | null = null;
  const vl = buildVhostLoad();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vhostd-fuzz-'));
    d = await startFuzzDaemon(dir, [{ ctrlr: VICTIM, bdev: 'Victim0', mib: 16 }, { ctrlr: BYSTANDER, bdev: 'Bystander0', mib: 32 }]);
  });

  afterAll(async () => {
    if (load?.running()) await load.finish();
    if (d) await d.stop();
    if (dir && !process.env.VHOSTD_FUZZ_KEEP) rmSync(dir, { recursive: true, force: true });
  });

  it(`survives ${CASES - FIRST} hostile cases on one controller while another keeps serving`, async () => {
    const daemon = d!;
    console.log(`[fuzz] seed ${SEED} (VHOSTD_FUZZ_SEED=${SEED}), cases ${FIRST}..${CASES - 1}, reply deadline ${TIMEOUT_MS} ms, ` +
      `daemon pid ${daemon.pid}, dir ${dir}`);
    // warm up the victim once with a correct front end, so the baseline includes what any session loads
    victimRoundTrip(daemon.socket(VICTIM), SEED);
    if ('skip' in vl) console.log(`[fuzz] bystander load SKIPPED: ${vl.skip}`);
    else {
      load = startLoad(vl.path, daemon.socket(BYSTANDER), dir, SEED % 1000 + 1);
      // let it connect and get through its prefill before measuring
      await new Promise((r) => setTimeout(r, 1500));
      expect(load.running(), 'vhost-load stopped early').toBe(true);
    }
    const before = await settle(daemon.pid, sampleProc(daemon.pid), 0);
    const kindsBefore = fdKinds(daemon.pid);
    let lastPrint = performance.now();
    const rss: { done: number; kib: number }[] = [];
    const fz = new Fuzzer({
      seed: SEED, cases: CASES, first: FIRST, socket: daemon.socket(VICTIM), timeoutMs: TIMEOUT_MS,
      alive: () => daemon.alive() && (load === null || load.running()),
      progress: (done, st) => {
        if (rss.length === 0 || done - rss[rss.length - 1].done >= 1000) rss.push({ done, kib: sampleProc(daemon.pid).rssKiB });
        if (performance.now() - lastPrint < 10_000) return;
        lastPrint = performance.now();
        const s = sampleProc(daemon.pid);
        console.log(`[fuzz] ${done} cases in ${(st.elapsedMs / 1000).toFixed(1)} s: rss ${s.rssKiB} KiB (anon ${s.anonKiB}), fds ${s.fds}, ` +
          `${st.connections} connections, ${st.ringRequests} ring requests`);
      },
    });
    let stats: FuzzStats;
    try {
      stats = await fz.run();
    } catch (e) {
      await new Promise((r) => setTimeout(r, 200)); // let the exit event of a dead daemon arrive
      const why = !daemon.alive() ? `daemon died (${daemon.exitInfo()})` : load && !load.running() ? 'vhost-load stopped' : '';
      console.error(`[fuzz] FAILED${why ? ` (${why})` : ''}; daemon log tail:\n${daemon.log().split('\n').slice(-40).join('\n')}`);
      if (load && !load.running()) console.error(`[fuzz] vhost-load output:\n${(await load.finish()).out.slice(-3000)}`);
      throw e;
    }
    expect(daemon.alive(), `daemon: ${daemon.exitInfo()}`).toBe(true);

    // the victim still serves a fresh, correct front end
    const note = victimRoundTrip(daemon.socket(VICTIM), SEED + 1);

    // the bystander never noticed
    let loadSummary = 'skipped';
    if (load) {
      const r = await load.finish();
      expect(r.result, `vhost-load printed no result:\n${r.out.slice(-2000)}`).toBeTruthy();
      expect(r.code, `vhost-load exit ${r.code}:\n${r.out.slice(-2000)}`).toBe(0);
      expect(r.result.errors).toBe(0);
      expect(r.result.verify.mismatches).toBe(0);
      expect(r.result.verify.sectors_checked).toBeGreaterThan(0);
      loadSummary = `${r.result.total.ios} I/Os (${Math.round(r.result.iops)} IOPS), ${r.result.verify.sectors_checked} sectors verified, ` +
        `0 errors, 0 mismatches`;
    }
    // bounded resources: the victim is disconnected now, so its fds and mappings must be gone
    sleepSync(1);
    const after = await settle(daemon.pid, before, 5000);
    const half = rss.find((x) => x.done >= (CASES - FIRST) / 2) ?? { done: 0, kib: before.rssKiB };
    console.log(`[fuzz] seed ${SEED}: ${stats.cases} cases in ${(stats.elapsedMs / 1000).toFixed(1)} s ` +
      `(${Math.round(stats.cases / (stats.elapsedMs / 1000))}/s) ${JSON.stringify(stats.byFamily)}\n` +
      `[fuzz]   ${stats.messages} hostile messages, ${stats.replies} answers (${stats.acksOk} acks ok, ${stats.acksRefused} refused), ` +
      `${stats.closedByTarget} connections closed by the target, ${stats.connections} connections\n` +
      `[fuzz]   rings: ${stats.ringRequests} requests, ${stats.ringCompleted} completed (${stats.ringStatusErr} with an error status), ` +
      `${stats.ringRestarts} queue restarts, ${stats.probes} probe requests\n` +
      `[fuzz]   daemon rss ${before.rssKiB} -> ${half.kib} (after ${half.done} cases) -> ${after.rssKiB} KiB, fds ${before.fds} -> ${after.fds}, threads ${before.threads} -> ${after.threads}, ` +
      `fuzzer memfd mappings left ${mappingsOf(daemon.pid, 'fuzz')}\n` +
      `[fuzz]   bystander: ${loadSummary}${note ? `\n[fuzz]   note: ${note}` : ''}`);
    if (after.fds > before.fds + FD_SLACK) {
      console.error(`[fuzz] daemon fds before: ${JSON.stringify(kindsBefore)}\n[fuzz] daemon fds after: ${JSON.stringify(fdKinds(daemon.pid))}`);
    }
    const maps = mappingsOf(daemon.pid, 'fuzz');
    expect(maps, 'guest memory of disconnected front ends still mapped in the daemon').toBe(0);
    expect(after.fds, 'fd leak in the daemon').toBeLessThanOrEqual(before.fds + FD_SLACK);
    expect(after.rssKiB - before.rssKiB, 'RSS growth over the run').toBeLessThan(RSS_SLACK_KIB);
    expect(after.rssKiB - half.kib, 'RSS growth over the second half of the run').toBeLessThan(RSS_SECOND_HALF_KIB);
    expect(stats.cases).toBe(CASES - FIRST);
  }, 30 * 60_000);
});
