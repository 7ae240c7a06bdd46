// Linux VFIO and the PCIe NVMe transport against a real (emulated) NVMe SSD: a TCG guest
// with QEMU's intel-iommu and nvme devices runs this repository from the host's root
// (9p, chroot; see lib/nested_guest.ts). The SSD is bound to vfio-pci in the guest.
// Smoke: native/vfio.ts + bdev/nvme/transport_pcie.ts read CAP/VS from BAR0, map DMA
// memory at IOVA = hva and get an Identify Controller through it (the serial QEMU was
// given comes back), refuse bad opens with clear errors, and let a PCI remove complete
// (request interrupt -> BAR0 fenced to all-ones -> device released).
// One guest boot runs both parts (smoke, then rescan + rebind, then full).
// Full: vhostd in the guest attaches the SSD (bdev_nvme_attach_controller -t PCIe), serves
// Nvme0n1 as a vhost-blk controller, and ../shared/tools/vhost-load --verify drives it with
// zero errors; then the SSD is removed with I/O in flight (the I/O fails, vhostd lives);
// then the kernel nvme driver takes the rescanned disk and fio runs the bench workload
// (vhost-blk on Nvme0n1 vs the kernel driver, same disk, same guest run, as a ratio).
import * as os from "node:os";
import * as path from "node:path";
import * as fs from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootNestedGuest, ensureVfioGuest, NVME_ADDR, VIRTFS_ADDR } from "./lib/nested_guest.js";
import type { BootResult } from "./harness.js";
import { vhostLoad } from "../lib/vhost_load.js";

/** key=value lines (the in-guest programs' output). */
function parseLines(out: string): Record<string, string> {
  const kv: Record<string, string> = {};
  for (const m of out.matchAll(/^([a-z0-9_]+)=(.*)$/gm)) kv[m[1]!] = m[2]!;
  return kv;
}

const skip = process.env.VHOSTD_SKIP_E2E === "1";
const dir = path.join(os.tmpdir(), `vhostd-pcie-${process.pid}`);
const vl = vhostLoad();

let booted: Promise<{ run: BootResult; kv: Record<string, string> }> | undefined;

/** Boots the nested guest once for both describe blocks. */
function guestRun(): Promise<{ run: BootResult; kv: Record<string, string> }> {
  booted ??= (async () => {
    await ensureVfioGuest();
    await fs.mkdir(dir, { recursive: true });
    const full = vl.bin
      ? `pci_rescan $NVME_ADDR && bind_driver $NVME_ADDR vfio-pci && ` +
        `VHOST_LOAD=${vl.bin} BENCH_S=\${BENCH_S:-8} node test/e2e/lib/pcie_e2e.mjs`
      : `echo "full part skipped: ${vl.why}"`;
    const run = await bootNestedGuest({
      nvmeImage: path.join(dir, "nvme.img"),
      nvmeSizeMiB: 128,
      script: `node test/e2e/lib/vfio_smoke.mjs $NVME_ADDR "$NVME_SERIAL" $VIRTFS_ADDR | sed 's/^/smoke_/'\n` +
        `echo "smoke_rc=$?"\n${full}`,
      timeoutMs: 360_000,
    });
    console.log(run.output);
    console.log(`[pcie] boot ${run.bootMs} ms, guest ${run.guestBootS}-${run.guestEndS} s, wall ${run.wallMs} ms`);
    const kv = parseLines(run.output);
    const v = Number(kv.bench_vhost_iops), k = Number(kv.bench_kernel_iops);
    if (v > 0 && k > 0) {
      console.log(`[pcie] bench (TCG: says little about speed): randread 4k QD32, vhost-blk on Nvme0n1 ${v} IOPS ` +
        `(p50 ${kv.bench_vhost_lat_p50_us} us), kernel nvme driver + fio ${k} IOPS (p50 ${kv.bench_kernel_lat_p50_us} us), ` +
        `ratio ${(v / k).toFixed(2)}`);
    }
    return { run, kv };
  })();
  return booted;
}

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe.skipIf(skip)("PCIe NVMe over VFIO in a nested guest: smoke (native/vfio.ts, transport_pcie.ts)", () => {
  let smoke: BootResult;
  let kv: Record<string, string>;

  beforeAll(async () => {
    const g = await guestRun();
    smoke = g.run;
    kv = Object.fromEntries(Object.entries(g.kv).filter(([k]) => k.startsWith("smoke_")).map(([k, v]) => [k.slice(6), v]));
  });

  it("opens the controller through VFIO and reads CAP/VS from the mapped BAR0", () => {
    expect(kv.rc, smoke.output).toBe("0");
    expect(kv.traddr).toBe(NVME_ADDR);
    expect(Number(kv.bar0_size)).toBeGreaterThanOrEqual(0x2000);
    expect(Number(kv.cap_mqes)).toBeGreaterThan(1);
    expect(kv.vs).toMatch(/^1\.[2-9]\./);
  });

  it("maps DMA memory at IOVA = hva: the controller writes Identify data into it and interrupts", () => {
    expect(Number(kv.dma_hva)).toBeGreaterThan(2 ** 39); // beyond a 39-bit IOMMU: aw-bits=48 at work
    expect(kv.identify_status).toBe("0x0");
    expect(kv.identify_vid).toBe("0x1b36");
    expect(kv.identify_sn_ok, smoke.output).toBe("1");
    expect(kv.map_idempotent).toBe("1");
    expect(kv.err_map_other_size).toMatch(/already mapped with another size/);
    expect(kv.msix_fds).toBe("1");
    expect(kv.msix_vector0_signalled).toBe("1"); // the completion's MSI-X message reached its eventfd
    expect(kv.err_too_many_vectors).toMatch(/offers \d+ MSI-X vectors/);
  });

  it("reset (VFIO_DEVICE_RESET): the controller comes back disabled and works again", () => {
    expect(kv.cc_after_reset).toBe("0x0");
    expect(Number(kv.csts_after_reset) & 1).toBe(0);
    expect(kv.identify_after_reset_ok, smoke.output).toBe("1");
  });

  it("refuses bad opens with errors that say what to do", () => {
    expect(kv.err_second_open).toMatch(/in use by another process or controller/);
    expect(kv.err_bad_addr).toMatch(/is not a PCI address/);
    expect(kv.err_absent).toMatch(/no PCI device at 0000:00:1e\.0 \(NVMe controllers present: 0000:00:04\.0\)/);
    expect(kv.err_not_nvme).toMatch(/is not an NVMe controller/);
  });

  it("hot-remove: the kernel's remove completes, BAR0 reads all-ones, later calls fail cleanly", () => {
    expect(kv.removed_reason).toMatch(/asked for the device back/);
    expect(kv.csts_after_remove).toBe("0xffffffff");
    expect(kv.remove_write).toBe("ok");
    expect(kv.device_gone).toBe("1");
    expect(kv.irq_fds_open_after_remove).toBe("1");
    expect(kv.err_after_remove).toMatch(/was removed/);
    expect(kv.smoke_done).toBe("1");
  });
});

describe.skipIf(skip || !vl.bin)("PCIe NVMe over VFIO in a nested guest: vhostd, vhost-blk on Nvme0n1", () => {
  let run: BootResult;
  let kv: Record<string, string>;
  const j = (k: string) => JSON.parse(kv[k] ?? "null");

  beforeAll(async () => {
    ({ run, kv } = await guestRun());
  });

  it("attaches the SSD over PCIe: Nvme0n1 with the disk's size", () => {
    expect(j("attach"), run.output).toEqual({ ok: true, r: ["Nvme0n1"] });
    expect(j("bdev")).toMatchObject({ block_size: 512, num_blocks: (128 * 1024 * 1024) / 512 });
    expect(j("controllers").r[0].ctrlrs[0]).toMatchObject({ state: "enabled", trid: { trtype: "PCIe", traddr: NVME_ADDR } });
    expect(j("vhost_ctrlr").ok).toBe(true);
  });

  it("vhost-load --verify through vhost-blk on Nvme0n1: no errors, no mismatches", () => {
    expect(kv.verify_code, run.output).toBe("0");
    expect(j("verify")).toMatchObject({ errors: 0, mismatches: 0 });
    expect(j("verify").checked).toBeGreaterThan(0);
    expect(kv.verify_mix_code).toBe("0");
    expect(j("verify_mix")).toMatchObject({ errors: 0, mismatches: 0 });
    expect(j("verify_mix").checked).toBeGreaterThan(0);
  });

  it("bench: both paths ran on the same disk (figures printed above)", () => {
    expect(kv.bench_vhost_code).toBe("0");
    expect(Number(kv.bench_vhost_iops)).toBeGreaterThan(0);
    expect(kv.kernel_driver).toBe("nvme");
    expect(Number(kv.bench_kernel_iops)).toBeGreaterThan(0);
  });

  it("hot-remove with I/O in flight: the removal completes, the I/O fails, vhostd lives on", () => {
    expect(kv.remove_rc).toBe("0");
    expect(Number(kv.remove_ms)).toBeLessThan(15_000);
    // the run in flight: some reads before, errors after, and it ended at its --time, not at its --io-timeout
    expect(kv.inflight_code, run.output).toBe("4");
    expect(j("inflight").ios).toBeGreaterThan(0);
    expect(j("inflight").errors).toBeGreaterThan(0);
    expect(Number(kv.inflight_after_remove_ms)).toBeLessThan(25_000);
    // a new front end on the controller of the removed SSD: connects, its I/O fails
    expect(kv.after_code, kv.after).toBe("4");
    expect(j("after")).toMatchObject({ ios: 0 });
    expect(j("after").errors).toBeGreaterThan(0);
    expect(kv.vhostd_alive).toBe("1");
    expect(kv.rpc_after_remove).toBe("1");
    expect(j("controllers_after_remove").r[0].ctrlrs[0].state).toBe("failed");
  });

  it("after removal: detach refused while in use, then detached; vhostd stops cleanly", () => {
    expect(j("detach_in_use").err).toMatch(/in use by vhost controller vhost\.0/);
    expect(j("vhost_delete").ok).toBe(true);
    expect(j("detach").ok, kv.detach).toBe(true);
    expect(j("bdevs_after_detach")).not.toContain("Nvme0n1");
    expect(kv.vhostd_exit).toBe("0");
  });
});
