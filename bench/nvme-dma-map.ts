// nvme-dma-map: how long a new guest memory table takes to become usable when its I/O
// goes to an NVMe bdev (the memory is DMA-mapped to the NVMe controller first), and
// whether another guest's I/O on the same NVMe controller stalls meanwhile.
//
//   node dist/bench/nvme-dma-map.js [--mem 1g] [--rounds 7] [--time 4] [--json]
//
// A target vhostd (CPU 0) exports two null namespaces over vfio-user; the initiator vhostd
// (CPU 1) attaches them as Nvme0n1/Nvme0n2 and serves vhost-blk controllers A (Nvme0n1),
// B (Nvme0n2) and C (a local null bdev: same memory table, no DMA mapping).
//  1. Map time: a front end connects to B (then C), sends a --mem memory table and times
//     the ack; the median over --rounds, each with a fresh memfd.
//  2. Stall: vhost-load runs 4k random reads on A twice for --time seconds: alone, then
//     while the memory tables of B come and go in a loop. Compared: IOPS, p99, p99.9, max
//     (and, as a peer for the path's cost, the same load on C).
import { parseArgs } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { RpcClient } from "../src/cli/rpc-client.js";
import { memfdCreate, closeQuiet } from "../native/libc.js";
import { spawnTracked, stopAll, waitForSocket, runCaptured } from "./lib/proc.js";
import { buildTools } from "./lib/build.js";
import { VhostMemClient } from "./lib/vhost_mem_client.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const VHOSTD = join(ROOT, "dist/src/cli/vhostd.js");
const NQN = "nqn.2019-07.io.spdk:dmamap";

const { values: a } = parseArgs({ options: {
  mem: { type: "string", default: "1g" }, rounds: { type: "string", default: "7" }, time: { type: "string", default: "4" },
  json: { type: "boolean", default: false },
} });
const MEM = Number(/^(\d+)([mg])$/i.exec(a.mem!)?.[1] ?? NaN) * (a.mem!.toLowerCase().endsWith("g") ? 1 << 30 : 1 << 20);
if (!Number.isFinite(MEM)) throw new Error(`--mem ${a.mem}: give e.g. 512m or 1g`);
const ROUNDS = Number(a.rounds), TIME = Number(a.time);

const median = (x: number[]) => { const s = [...x].sort((p, q) => p - q); return s.length ? s[s.length >> 1] : 0; };

async function call(c: RpcClient, method: string, params?: unknown): Promise<any> { return c.call(method, params); }

async function daemon(dir: string, cpu: number) {
  const sock = join(dir, "rpc.sock");
  const s = spawnTracked(["taskset", "-c", String(cpu), process.execPath, VHOSTD, "-r", sock, "-S", dir, "-m", `[${cpu}]`,
    "--disable-cpumask-locks"], join(dir, "log"));
  await waitForSocket(sock, s, 15_000, `vhostd in ${dir}`);
  return { s, rpc: await RpcClient.connect(sock), dir };
}

/** One memory table handed to a controller and dropped; returns the ms until the ack. */
async function mapOnce(socket: string): Promise<number> {
  const fd = memfdCreate("dmamap-guest", MEM);
  const c = new VhostMemClient(socket);
  try {
    await c.handshake();
    const t0 = performance.now();
    await c.setMemTable(fd, MEM, 0x7f0000000000);
    return performance.now() - t0;
  } finally { c.close(); closeQuiet(fd); }
}

async function main(): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), "vhostd-dmamap-"));
  const tools = buildTools();
  try {
    const tdir = join(base, "t"), hdir = join(base, "h"), vfu = join(base, "vfu");
    for (const d of [tdir, hdir, vfu]) rmSync(d, { recursive: true, force: true });
    const { mkdirSync } = await import("node:fs");
    [tdir, hdir, vfu].forEach((d) => mkdirSync(d));
    const t = await daemon(tdir, 0);
    for (const n of ["N1", "N2"]) await call(t.rpc, "bdev_null_create", { name: n, num_blocks: 262144, block_size: 4096 });
    await call(t.rpc, "nvmf_create_transport", { trtype: "VFIOUSER" });
    await call(t.rpc, "nvmf_create_subsystem", { nqn: NQN, serial_number: "DMAMAP" });
    for (const [i, n] of ["N1", "N2"].entries()) await call(t.rpc, "nvmf_subsystem_add_ns", { nqn: NQN, namespace: { bdev_name: n, nsid: i + 1 } });
    await call(t.rpc, "nvmf_subsystem_add_listener", { nqn: NQN, listen_address: { trtype: "VFIOUSER", traddr: vfu, trsvcid: "0" } });
    const h = await daemon(hdir, 1);
    await call(h.rpc, "bdev_nvme_attach_controller", { name: "Nvme0", trtype: "vfiouser", traddr: vfu });
    await call(h.rpc, "bdev_null_create", { name: "L0", num_blocks: 262144, block_size: 4096 });
    for (const [c, b] of [["A", "Nvme0n1"], ["B", "Nvme0n2"], ["C", "L0"]]) await call(h.rpc, "vhost_create_blk_controller", { ctrlr: c, dev_name: b });

    // 1. map time
    const viaNvme: number[] = [], local: number[] = [];
    for (let i = 0; i < ROUNDS; i++) { viaNvme.push(await mapOnce(join(hdir, "B"))); local.push(await mapOnce(join(hdir, "C"))); }

    // 2. stall: A's I/O alone, then with B's memory tables coming and going
    const load = (ctrlr = "A") => runCaptured([tools.vhostLoad, "--socket", join(hdir, ctrlr), "--json", "--rw", "randread", "--bs", "4k",
      "--qd", "16", "--time", String(TIME), "--warmup", "0.5", "--size", "512m"], (TIME + 30) * 1000);
    const parse = (s: string) => JSON.parse(s.trim().split("\n").reverse().find((l) => l.startsWith("{"))!);
    const localIo = parse((await load("C")).stdout);
    const alone = parse((await load()).stdout);
    let stop = false, maps = 0;
    const during: number[] = [];
    const churn = (async () => { while (!stop) { during.push(await mapOnce(join(hdir, "B"))); maps++; } })();
    const busy = parse((await load()).stdout);
    stop = true;
    await churn;

    const pick = (j: any) => ({ iops: Math.round(j.total?.iops ?? j.iops), p99_us: j.total?.lat_us?.p99 ?? j.lat_us?.p99,
      p999_us: j.total?.lat_us?.p99_9 ?? j.lat_us?.p99_9, max_us: j.total?.lat_us?.max ?? j.lat_us?.max });
    const out = {
      mem_bytes: MEM, rounds: ROUNDS,
      map_ms_median: { via_nvme: +median(viaNvme).toFixed(2), local_only: +median(local).toFixed(2) },
      map_ms_all: { via_nvme: viaNvme.map((x) => +x.toFixed(2)), local_only: local.map((x) => +x.toFixed(2)) },
      local_null_io: pick(localIo),
      other_guest_io: { alone: pick(alone), during_mapping: pick(busy), tables_mapped_meanwhile: maps,
        map_ms_median_meanwhile: +median(during).toFixed(2) },
    };
    if (a.json) console.log(JSON.stringify(out));
    else {
      console.log(`memory table of ${MEM / 2 ** 20} MiB, median of ${ROUNDS}: ${out.map_ms_median.via_nvme} ms with DMA mapping to the NVMe controller, ` +
        `${out.map_ms_median.local_only} ms without (local null bdev)`);
      const f = (x: ReturnType<typeof pick>) => `${x.iops} IOPS, p99 ${x.p99_us} us, p99.9 ${x.p999_us} us, max ${x.max_us} us`;
      console.log(`peer: a local null bdev in the initiator (4k randread qd16): ${f(out.local_null_io)}`);
      console.log(`other guest (Nvme0n1, 4k randread qd16): alone ${f(out.other_guest_io.alone)}`);
      console.log(`  while ${maps} memory tables of ${MEM / 2 ** 20} MiB were mapped and unmapped on Nvme0n2: ${f(out.other_guest_io.during_mapping)}`);
    }
  } finally {
    await stopAll();
    rmSync(base, { recursive: true, force: true });
  }
}

main().catch(async (e) => { console.error(`nvme-dma-map: ${(e as Error).message}`); await stopAll(); process.exit(1); });
