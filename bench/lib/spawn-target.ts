// Shared start/stop logic: pinned, time-limited daemon that serves one socket.
import { join } from "node:path";
import { spawnTracked, stopTracked, tailFile, waitForSocket } from "./proc.js";
import type { DriverEnv, TargetInstance } from "./target.js";

/** Start `argv` under `timeout` + `taskset`, wait for `socket`; errors include the log tail. */
export async function startDaemon(
  env: DriverEnv, workDir: string, label: string, argv: string[], socket: string, startTimeoutMs: number,
): Promise<TargetInstance> {
  const log = join(workDir, `${label.replace(/[^A-Za-z0-9._-]/g, "_")}.log`);
  // `timeout` is a safety net: the daemon dies even if this harness is SIGKILLed.
  const full = ["timeout", "-k", "2", String(env.lifetimeS), "taskset", "-c", env.targetCpu, ...argv];
  const s = spawnTracked(full, log);
  try {
    await waitForSocket(socket, s, startTimeoutMs, label);
  } catch (e) {
    await stopTracked(s, 500);
    const tail = tailFile(log);
    throw new Error(`${(e as Error).message}${tail ? `\n  log ${log}:\n    ${tail.replace(/\n/g, "\n    ")}` : ""}`);
  }
  return { socket, stop: () => stopTracked(s) };
}
