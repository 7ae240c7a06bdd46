// Target name -> driver.
import { fixtureNull } from "./fixture.js";
import { qsdFile, qsdNull } from "./qsd.js";
import type { DriverEnv, TargetDriver } from "./target.js";
import { NVME_TARGET_RE, vhostd, vhostdFile, vhostdNames, vhostdNvme } from "./vhostd.js";

export const TARGET_HELP = "qsd-null, qsd-file:PATH, qsd-file-direct:PATH, vhostd-null, vhostd-malloc, vhostd-scsi-null, vhostd-scsi-malloc, vhostd-file:PATH, fixture-null, " +
  "vhostd-nvme-null, vhostd-nvme-malloc (NVMe over vfio-user, nvme-load; add -shadow or -trap for the other doorbell modes)";

export function makeDriver(env: DriverEnv, name: string): TargetDriver {
  if (name === "qsd-null") return qsdNull(env);
  if (name === "fixture-null") return fixtureNull(env);
  if (vhostdNames.includes(name)) return vhostd(env, name);
  if (NVME_TARGET_RE.test(name)) return vhostdNvme(env, name);
  const m = /^(qsd-file|qsd-file-direct):(.+)$/.exec(name);
  if (m) return qsdFile(env, name, m[2], m[1] === "qsd-file-direct");
  const f = /^vhostd-file:(.+)$/.exec(name);
  if (f) return vhostdFile(env, name, f[1]);
  throw new Error(`unknown target '${name}' (known: ${TARGET_HELP})`);
}
