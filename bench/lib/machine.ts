// Machine description printed above the table and stored in the JSON.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg, release } from "node:os";

export interface MachineInfo { cpu: string; cpus: number; kernel: string; node: string; qsd: string; busyBeforePct: number; loadavg: number[] }

function firstLine(cmd: string, args: string[]): string {
  try { return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split("\n")[0].trim(); }
  catch { return "not found"; }
}

function cpuTimes(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Percent of all CPUs busy over `ms` (other work on the machine skews results). */
export async function sampleBusy(ms = 1000): Promise<number> {
  try {
    const a = cpuTimes();
    await new Promise((r) => setTimeout(r, ms));
    const b = cpuTimes();
    return b.total > a.total ? Math.round((100 * (b.busy - a.busy)) / (b.total - a.total)) : NaN;
  } catch { return NaN; }
}

export async function machineInfo(): Promise<MachineInfo> {
  let cpu = "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpu = m[1].trim();
  } catch { /* not Linux */ }
  const qsd = firstLine("qemu-storage-daemon", ["--version"]).replace(/^qemu-storage-daemon version /, "");
  const busyBeforePct = await sampleBusy();
  return { cpu, cpus: cpus().length, kernel: release(), node: process.version, qsd, busyBeforePct, loadavg: loadavg() };
}

export function formatMachine(m: MachineInfo): string {
  const busy = `CPU busy before start ${m.busyBeforePct}% (load ${m.loadavg.map((x) => x.toFixed(2)).join(" ")})`;
  const warn = m.busyBeforePct > 10 ? "\nWARNING: other processes are using the CPUs; numbers will be noisy." : "";
  return `Machine: ${m.cpu}, ${m.cpus} CPUs, Linux ${m.kernel}; Node ${m.node}; qemu-storage-daemon ${m.qsd}\n${busy}${warn}`;
}
