// A Linux guest in QEMU 11 (vfio-user-pci, from the Debian sid chroot) drives vhostd's
// emulated NVMe controllers with its own nvme driver, in the three doorbell modes of the
// VFIOUSER transport, one guest boot for all three (three vhostd processes, because the
// doorbell options belong to the transport, as in SPDK):
//   mappable  default options: BAR0's doorbell page is a sparse mmap area that QEMU maps,
//             so no doorbell write crosses the socket;
//   shadow    disable_mappable_bar0: the guest uses Doorbell Buffer Config (shadow
//             doorbells + EventIdx) and traps only when vhostd asks for a wake-up;
//   trapped   disable_mappable_bar0 + disable_shadow_doorbells: every doorbell write is a
//             vfio-user REGION_WRITE.
// The same fio verify job runs on each controller, and the test logs the trapped doorbell
// writes per I/O of each mode. The mappable controller also gets the rest of the suite:
// the driver binds, the namespace has the bdev's size and LBA format, more verify jobs.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootGuest, ensureGuest, tempDir, type BootResult, type GuestError } from "./harness.js";
import {
  blockInfo, fioRandWriteVerify, fioSeqVerify, fioUnalignedVerify, guestScript, parseKv, parseSteps, stepOutput,
  type Step,
} from "./lib/fio-jobs.js";
import { ensureQemuSid, useQemuSid, vfioUserPciArgs } from "./lib/qemu-sid.js";
import { startVhostd, type Vhostd } from "./vhostd.js";
import { RpcClient } from "../../src/cli/rpc-client.js";

const BLOCKS = 524288; // 256 MiB of 512-byte blocks (the mappable controller: full suite)
const MODE_BLOCKS = 131072; // 64 MiB for the other two (one 2 x 16 MiB job)

interface Mode {
  key: "mappable" | "shadow" | "trapped";
  /** shell variable prefix in the guest script */
  v: string;
  serial: string;
  nqn: string;
  transport: Record<string, unknown>;
  blocks: number;
}

const MODES: Mode[] = [
  { key: "mappable", v: "MAP", serial: "VHOSTD0001", nqn: "nqn.2019-07.io.spdk:cnode0", transport: {}, blocks: BLOCKS },
  { key: "shadow", v: "SDB", serial: "VHOSTD0002", nqn: "nqn.2019-07.io.spdk:cnode1",
    transport: { disable_mappable_bar0: true }, blocks: MODE_BLOCKS },
  { key: "trapped", v: "TRAP", serial: "VHOSTD0003", nqn: "nqn.2019-07.io.spdk:cnode2",
    transport: { disable_mappable_bar0: true, disable_shadow_doorbells: true }, blocks: MODE_BLOCKS },
];

/** Waits for the three namespaces and finds each by its controller's serial: NS_<v>, CTRL_<v>. */
function findNamespaces(): Step {
  const cases = MODES.map((m) => `${m.serial}) NS_${m.v}=$n; CTRL_${m.v}=$c;;`).join("\n    ");
  const check = MODES.map((m) => `[ -n "$NS_${m.v}" ] || { echo "no namespace of controller ${m.serial}"; ok=1; }`).join("\n");
  return {
    name: "find-namespaces",
    sh: String.raw`
t=0
while [ "$(ls /sys/block | grep -c '^nvme')" -lt ${MODES.length} ]; do
  t=$((t+1)); [ $t -gt 600 ] && { echo "block devices after 60 s: $(ls /sys/block | tr '\n' ' ')"; return 1; }
  sleep 0.1
done
for b in /sys/block/nvme*; do
  n=$(basename $b); c=$(basename $(readlink $b/device))
  case "$(tr -d ' ' < $b/device/serial)" in
    ${cases}
  esac
done
ok=0
${check}
${MODES.map((m) => `kv ns_${m.key} "$NS_${m.v}"`).join("\n")}
kv disks "$(ls /sys/block | grep nvme | tr '\n' ,)"
for n in $NS_MAP $NS_SDB $NS_TRAP; do [ -b /dev/$n ] || { echo "no /dev/$n"; ok=1; }; done
return $ok`,
  };
}

function nvmeInfo(): Step {
  return {
    name: "nvme-info",
    sh: String.raw`
c=/sys/class/nvme/$CTRL_MAP
kv driver "$(basename $(readlink $c/device/driver))"
kv model "$(cat $c/model | tr ' ' _)"
kv serial "$(cat $c/serial | tr ' ' _)"
kv subsysnqn "$(cat $c/subsysnqn)"
return 0`,
  };
}

/** The same fio verify job in every mode (2 jobs x 16 MiB, mixed 4k-128k random writes). */
function modeJob(m: Mode): Step {
  return { ...fioRandWriteVerify(`/dev/$NS_${m.v}`, { offset: "0", size: "16m" }), name: `fio-verify-${m.key}` };
}

interface CtrlInfo {
  io_commands: number; admin_commands: number; trapped_doorbell_writes: number; trapped_doorbell_writes_per_io: number | null;
  mappable_doorbells: boolean; shadow_doorbells_offered: boolean; shadow_doorbells_in_use: boolean; interrupts: number;
}

describe.skipIf(process.env.VHOSTD_SKIP_E2E === "1")("vhostd emulated NVMe over vfio-user with a QEMU 11 guest, three doorbell modes", () => {
  let skip = "";
  let dir = "";
  const daemons = new Map<Mode["key"], Vhostd>();
  let res: BootResult | undefined;
  let steps: Record<string, number> = {};
  let cleanup: (() => Promise<void>) | undefined;
  const ctrl = new Map<Mode["key"], CtrlInfo>();
  const suite: Step[] = [
    findNamespaces(),
    nvmeInfo(),
    blockInfo("/dev/$NS_MAP"),
    ...MODES.map(modeJob),
    fioSeqVerify("/dev/$NS_MAP", { offset: "64m", size: "32m" }),
    fioUnalignedVerify("/dev/$NS_MAP", { offset: "100m", size: "8m" }),
  ];
  const logs = () => [...daemons].map(([k, d]) => `--- vhostd (${k}) log ---\n${d.log().slice(-3000)}`).join("\n");

  beforeAll(async () => {
    const q = await ensureQemuSid();
    if ("skip" in q) { skip = q.skip; console.warn(`[e2e] nvme: skipped: ${skip}`); return; }
    await ensureGuest();
    dir = await tempDir("vhostd-nvme-e2e-");
    for (const m of MODES) {
      const d = path.join(dir, m.key);
      await fs.mkdir(path.join(d, "nvme"), { recursive: true });
      daemons.set(m.key, await startVhostd({
        dir: d,
        config: {
          subsystems: [
            { subsystem: "bdev", config: [{ method: "bdev_malloc_create", params: { name: "Malloc0", num_blocks: m.blocks, block_size: 512 } }] },
            {
              subsystem: "nvmf", config: [
                { method: "nvmf_create_transport", params: { trtype: "VFIOUSER", ...m.transport } },
                { method: "nvmf_create_subsystem", params: { nqn: m.nqn, allow_any_host: true, serial_number: m.serial, model_number: "vhostd e2e" } },
                { method: "nvmf_subsystem_add_ns", params: { nqn: m.nqn, namespace: { bdev_name: "Malloc0", nsid: 1 } } },
                { method: "nvmf_subsystem_add_listener", params: { nqn: m.nqn, listen_address: { trtype: "VFIOUSER", traddr: path.join(d, "nvme"), trsvcid: "0" } } },
              ],
            },
          ],
        },
        waitFor: "nvme/cntrl",
      }));
    }
    cleanup = await useQemuSid(q, [dir]);
    try {
      res = await bootGuest({
        devices: MODES.flatMap((m) => vfioUserPciArgs(path.join(dir, m.key, "nvme/cntrl"), `nvme-${m.key}`)),
        script: guestScript(suite),
        timeoutMs: 300_000,
      });
    } catch (e) {
      // keep going: the tests below report the guest's output and the daemons' logs
      const g = e as GuestError;
      res = { rc: -1, output: `${g.message}\n${g.stderr ?? ""}`, serial: g.serial ?? "", guestBootS: 0, guestEndS: 0, wallMs: 0, bootMs: 0 };
    } finally {
      await cleanup();
      cleanup = undefined;
    }
    steps = parseSteps(res.output);
    for (const m of MODES) {
      const c = await RpcClient.connect(daemons.get(m.key)!.rpcSocket);
      try {
        const [s] = (await c.call("nvmf_get_subsystems", { nqn: m.nqn })) as any[];
        ctrl.set(m.key, s.vfio_user_controllers[0]);
      } finally { c.close?.(); }
      const x = ctrl.get(m.key)!;
      const iops = /IOPS=([\d.]+k?)/g;
      const fio = [...stepOutput(res.output, `fio-verify-${m.key}`).matchAll(iops)].map((r) => r[1]).join("/");
      console.log(`[e2e] nvme doorbells ${m.key.padEnd(8)}: io_commands=${x.io_commands} admin=${x.admin_commands} ` +
        `trapped_doorbell_writes=${x.trapped_doorbell_writes} per_io=${x.trapped_doorbell_writes_per_io?.toFixed(4)} ` +
        `shadow_in_use=${x.shadow_doorbells_in_use} interrupts=${x.interrupts} sgl_commands=${x.sgl_commands} ` +
        `sgl_lists=${x.sgl_segment_list_commands} errors=${x.errors} (fio under TCG, IOPS write/read: ${fio || "?"})`);
    }
    console.log(`[e2e] nvme: guest boot ${res.bootMs} ms, whole run ${res.wallMs} ms`);
  }, 25 * 60_000);

  afterAll(async () => {
    await cleanup?.();
    for (const d of daemons.values()) await d.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("guest script succeeds", (t) => {
    if (skip) t.skip();
    expect(res!.rc, res!.output.slice(-4000) + "\n--- serial ---\n" + res!.serial.slice(-4000) + "\n" + logs()).toBe(0);
  });

  for (const s of suite) {
    it(`step ${s.name}`, (t) => {
      if (skip) t.skip();
      expect(steps[s.name], stepOutput(res!.output, s.name) || res!.output.slice(-3000)).toBe(0);
    });
  }

  it("the nvme driver binds; the namespace has the bdev's size and 512-byte LBA format; no multipath heads", (t) => {
    if (skip) t.skip();
    const kv = parseKv(res!.output);
    expect(kv.driver).toBe("nvme");
    // sysfs shows the space-padded identify strings (spaces printed as _ by the script)
    expect(kv.model.replace(/_+$/, "")).toBe("vhostd_e2e");
    expect(kv.serial.replace(/_+$/, "")).toBe("VHOSTD0001");
    expect(kv.subsysnqn).toBe(MODES[0].nqn);
    expect(kv.disks.split(",").filter(Boolean).sort()).toEqual(["nvme0n1", "nvme1n1", "nvme2n1"]);
    expect(Number(kv.size_sectors)).toBe(BLOCKS);
    expect(Number(kv.logical_block_size)).toBe(512);
  });

  it("mappable BAR0 (default): QEMU maps the doorbell page, no doorbell write crosses the socket", (t) => {
    if (skip) t.skip();
    const c = ctrl.get("mappable")!;
    expect(c.mappable_doorbells).toBe(true);
    expect(c.shadow_doorbells_offered).toBe(false); // as in SPDK: shadow doorbells only without a mappable BAR0
    expect(c.io_commands).toBeGreaterThan(1000);
    expect(c.trapped_doorbell_writes).toBe(0);
  });

  it("disable_mappable_bar0: shadow doorbells in use, trapped doorbell writes well below one per I/O", (t) => {
    if (skip) t.skip();
    const c = ctrl.get("shadow")!;
    expect(c.mappable_doorbells).toBe(false);
    expect(c.shadow_doorbells_in_use).toBe(true);
    expect(c.io_commands).toBeGreaterThan(1000);
    expect(c.trapped_doorbell_writes_per_io!).toBeLessThan(0.25);
  });

  it("disable_mappable_bar0 + disable_shadow_doorbells: every doorbell write traps, at least one per I/O", (t) => {
    if (skip) t.skip();
    const c = ctrl.get("trapped")!;
    expect(c.mappable_doorbells).toBe(false);
    expect(c.shadow_doorbells_offered).toBe(false);
    expect(c.shadow_doorbells_in_use).toBe(false);
    expect(c.io_commands).toBeGreaterThan(1000);
    expect(c.trapped_doorbell_writes_per_io!).toBeGreaterThanOrEqual(1);
  });
});
