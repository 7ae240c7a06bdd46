// Linux VFIO and the PCIe NVMe transport against a real (emulated) NVMe SSD: a TCG guest
// with QEMU's intel-iommu and nvme devices runs this repository from the host's root
// (9p, chroot; see lib/nested_guest.ts). The SSD is bound to vfio-pci in the guest.
// Smoke: native/vfio.ts + bdev/nvme/transport_pcie.ts read CAP/VS from BAR0, map DMA
// memory at IOVA = hva and get an Identify Controller through it (the serial QEMU was
// given comes back), refuse bad opens with clear errors, and let a PCI remove complete
// (request interrupt -> BAR0 fenced to all-ones -> device released).
import * as os from "node:os";
import * as path from "node:path";
import * as fs from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootNestedGuest, ensureVfioGuest, NVME_ADDR, VIRTFS_ADDR } from "./lib/nested_guest.js";
import type { BootResult } from "./harness.js";

/** key=value lines (the in-guest programs' output). */
function parseLines(out: string): Record<string, string> {
  const kv: Record<string, string> = {};
  for (const m of out.matchAll(/^([a-z0-9_]+)=(.*)$/gm)) kv[m[1]!] = m[2]!;
  return kv;
}

const skip = process.env.VHOSTD_SKIP_E2E === "1";
const dir = path.join(os.tmpdir(), `vhostd-pcie-${process.pid}`);

describe.skipIf(skip)("PCIe NVMe over VFIO in a nested guest", () => {
  let smoke: BootResult;
  let kv: Record<string, string>;

  beforeAll(async () => {
    await ensureVfioGuest();
    await fs.mkdir(dir, { recursive: true });
    smoke = await bootNestedGuest({
      nvmeImage: path.join(dir, "nvme-smoke.img"),
      nvmeSizeMiB: 64,
      script: `node test/e2e/lib/vfio_smoke.mjs ${NVME_ADDR} "$NVME_SERIAL" ${VIRTFS_ADDR}`,
      timeoutMs: 180_000,
    });
    kv = parseLines(smoke.output);
    console.log(smoke.output);
    console.log(`[pcie] smoke: boot ${smoke.bootMs} ms, guest ${smoke.guestBootS}-${smoke.guestEndS} s, wall ${smoke.wallMs} ms`);
  });

  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("opens the controller through VFIO and reads CAP/VS from the mapped BAR0", () => {
    expect(smoke.rc, smoke.output).toBe(0);
    expect(kv.traddr).toBe(NVME_ADDR);
    expect(Number(kv.bar0_size)).toBeGreaterThanOrEqual(0x2000);
    expect(Number(kv.cap_mqes)).toBeGreaterThan(1);
    expect(kv.vs).toMatch(/^1\.[2-9]\./);
  });

  it("maps DMA memory at IOVA = hva: the controller writes Identify data into it", () => {
    expect(Number(kv.dma_hva)).toBeGreaterThan(2 ** 39); // beyond a 39-bit IOMMU: aw-bits=48 at work
    expect(kv.identify_status).toBe("0x0");
    expect(kv.identify_vid).toBe("0x1b36");
    expect(kv.identify_sn_ok, smoke.output).toBe("1");
    expect(kv.map_idempotent).toBe("1");
    expect(kv.err_map_other_size).toMatch(/already mapped with another size/);
    expect(kv.msix_fds).toBe("1");
    expect(kv.err_too_many_vectors).toMatch(/offers \d+ MSI-X vectors/);
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
    expect(kv.err_after_remove).toMatch(/was removed/);
    expect(kv.smoke_done).toBe("1");
  });
});
