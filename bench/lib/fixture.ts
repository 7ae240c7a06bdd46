// fixture-null: vhost-load's bundled `test-target --null` (trivial polling blk target).
import { join } from "node:path";
import { startDaemon } from "./spawn-target.js";
import type { DriverEnv, TargetDriver } from "./target.js";

export function fixtureNull(env: DriverEnv): TargetDriver {
  const queues = 2;
  return {
    name: "fixture-null",
    start: (dir) => {
      const sock = join(dir, "fixture.sock");
      const argv = [env.fixtureBin, "--socket", sock, "--type", "blk", "--null", "--size", "1073741824", "--queues", String(queues)];
      return startDaemon(env, dir, "fixture-null", argv, sock, 10_000);
    },
  };
}
