// Nested-guest harness for the VFIO tests: a TCG guest with an emulated IOMMU
// (intel-iommu) and an emulated NVMe SSD, which shares the host's root read-only over
// 9p. The test script runs inside a chroot of that root, so the host's node, this
// repository's dist/ and node_modules, and the shared tools are all there; /tmp,
// /var/tmp and /run in the chroot are the guest's own tmpfs.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { spawn } from "node:child_process";
import {
  REPO_ROOT, startGuest, type GuestImage, type RunningGuest, type BootResult,
} from "../harness.js";

export const VFIO_BUILD_SCRIPT = path.join(REPO_ROOT, "test/guest/build-vfio-guest.sh");

/** PCI address the NVMe SSD gets in the guest (slot 4, as in SPDK's examples). */
export const NVME_ADDR = "0000:00:04.0";
/** PCI address of the 9p device: a non-NVMe device for error-path checks. */
export const VIRTFS_ADDR = "0000:00:05.0";

let imagePromise: Promise<GuestImage> | undefined;

/** Builds the VFIO guest image (shared guest + vfio/9p modules) if needed. */
export function ensureVfioGuest(): Promise<GuestImage> {
  imagePromise ??= (async () => {
    await run("bash", [VFIO_BUILD_SCRIPT]);
    const cache = process.env.VHOSTD_VFIO_GUEST_CACHE ?? path.join(process.env.HOME ?? "/root", ".cache/vhostd-vfio-guest");
    const env: Record<string, string> = {};
    for (const line of (await fs.readFile(path.join(cache, "guest.env"), "utf8")).split("\n")) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!;
    }
    return { cacheDir: cache, kernel: env.VMLINUZ!, initrd: env.INITRD_CPIO!, initrdGz: env.INITRD_CPIO!, kver: env.KVER! };
  })();
  imagePromise.catch(() => (imagePromise = undefined));
  return imagePromise;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "inherit", "pipe"] });
    let err = "";
    p.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} failed (${code}):\n${err}`))));
  });
}

export interface NestedGuestOptions {
  /** raw image file on the host for the emulated NVMe SSD (created/resized to nvmeSizeMiB) */
  nvmeImage: string;
  nvmeSizeMiB?: number;
  nvmeSerial?: string;
  /** shell run in the chroot of the host root, cwd = this repository; NVMe bound to vfio-pci first unless bindVfio is false */
  script: string;
  bindVfio?: boolean;
  memMiB?: number;
  smp?: number;
  timeoutMs: number;
  /** IOMMU address width (default 48; 39 shows the error of an IOMMU too narrow for IOVA = hva) */
  iommuAwBits?: 39 | 48;
}

/** QEMU arguments: the IOMMU first (devices created before it would bypass it), the SSD, the root share. */
export function nestedGuestDevices(o: { nvmeImage: string; nvmeSerial: string; awBits?: number }): string[] {
  return [
    // interrupt remapping: vfio-pci refuses MSI-X without it; 48-bit IOVAs: DMA at IOVA = hva
    "-device", `intel-iommu,intremap=on,aw-bits=${o.awBits ?? 48}`,
    "-drive", `file=${o.nvmeImage},if=none,id=nvm0,format=raw,cache=writeback`,
    "-device", `nvme,serial=${o.nvmeSerial},drive=nvm0,addr=04.0`,
    "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
    "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr=05.0",
  ];
}

/** Host directories the guest covers with a tmpfs (writable scratch in a read-only root). */
const SCRATCH_DIRS = ["/tmp", "/var/tmp", "/run"];

/**
 * Guest-side (busybox) part: mounts the host root, binds the SSD to vfio-pci, runs the script in the chroot.
 * A checkout under a scratch directory (CI may clone into /tmp) is bound back over the tmpfs.
 */
export function nestedGuestScript(bindVfio: boolean, repoRoot = REPO_ROOT): string {
  const hidden = SCRATCH_DIRS.some((d) => repoRoot.startsWith(d + "/"));
  return `
set -e
up() { cut -d' ' -f1 /proc/uptime; }
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /host
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -o rbind /dev /host/dev
${hidden ? `mkdir -p /repo && mount -o bind "/host${repoRoot}" /repo\n` : ""}for d in ${SCRATCH_DIRS.join(" ")}; do mount -t tmpfs tmpfs /host$d; done
${hidden ? `mkdir -p "/host${repoRoot}" && mount -o bind /repo "/host${repoRoot}"\n` : ""}cp /inner.sh /inner_lib.sh /host/tmp/
${bindVfio ? `echo "nested: binding ${NVME_ADDR} to vfio-pci"
[ -e /sys/bus/pci/devices/${NVME_ADDR}/driver ] && echo ${NVME_ADDR} > /sys/bus/pci/devices/${NVME_ADDR}/driver/unbind
echo vfio-pci > /sys/bus/pci/devices/${NVME_ADDR}/driver_override
echo ${NVME_ADDR} > /sys/bus/pci/drivers/vfio-pci/bind` : ""}
echo "nested_ready_s=$(up)"
set +e
chroot /host /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/tmp \\
  NVME_ADDR=${NVME_ADDR} VIRTFS_ADDR=${VIRTFS_ADDR} /bin/bash -c 'cd "${repoRoot}" && source /tmp/inner.sh'
rc=$?
echo "nested_end_s=$(up)"
exit $rc
`;
}

/** Shell helpers for scripts in the chroot: /tmp/inner_lib.sh (sourced by the script). */
const INNER_LIB = String.raw`
# pci_rescan ADDR: rescan the bus until ADDR is back (after a remove)
pci_rescan() {
  echo 1 > /sys/bus/pci/rescan
  for i in $(seq 100); do [ -e /sys/bus/pci/devices/$1 ] && return 0; sleep 0.1; done
  echo "pci_rescan: $1 did not come back"; return 1
}
# bind_driver ADDR DRIVER: unbind ADDR from its driver and bind it to DRIVER
bind_driver() {
  [ -e /sys/bus/pci/devices/$1/driver ] && echo $1 > /sys/bus/pci/devices/$1/driver/unbind
  echo $2 > /sys/bus/pci/devices/$1/driver_override
  echo $1 > /sys/bus/pci/drivers/$2/bind
}
`;

export async function startNestedGuest(o: NestedGuestOptions): Promise<RunningGuest> {
  const image = await ensureVfioGuest();
  const fh = await fs.open(o.nvmeImage, "a");
  await fh.truncate((o.nvmeSizeMiB ?? 256) * 1024 * 1024);
  await fh.close();
  const serial = o.nvmeSerial ?? "vhostd-nvme0";
  return startGuest({
    image,
    devices: nestedGuestDevices({ nvmeImage: o.nvmeImage, nvmeSerial: serial, awBits: o.iommuAwBits }),
    script: nestedGuestScript(o.bindVfio !== false),
    files: {
      "inner.sh": `set -o pipefail\nNVME_SERIAL=${serial}\n. /tmp/inner_lib.sh\n${o.script}\n`,
      "inner_lib.sh": INNER_LIB,
    },
    memMiB: o.memMiB ?? 1536,
    smp: o.smp ?? 2,
    timeoutMs: o.timeoutMs,
    append: "intel_iommu=on",
  });
}

export async function bootNestedGuest(o: NestedGuestOptions): Promise<BootResult> {
  return (await startNestedGuest(o)).done;
}
