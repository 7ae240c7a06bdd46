// qemu-storage-daemon drivers: null-co and raw file (io_uring), vhost-user-blk export.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startDaemon } from "./spawn-target.js";
import type { DriverEnv, TargetDriver } from "./target.js";

const QUEUES = 2;

function qsdArgv(blockdev: string, node: string, socket: string): string[] {
  return [
    "qemu-storage-daemon",
    "--object", "iothread,id=io0",
    "--blockdev", blockdev,
    "--export", `type=vhost-user-blk,id=e0,node-name=${node},addr.type=unix,addr.path=${socket},` +
      `writable=on,num-queues=${QUEUES},iothread=io0`,
  ];
}

export function qsdNull(env: DriverEnv): TargetDriver {
  return {
    name: "qsd-null",
    start: (dir) => {
      const sock = join(dir, "qsd.sock");
      const bd = "driver=null-co,node-name=n0,size=1073741824,read-zeroes=on";
      return startDaemon(env, dir, "qsd-null", qsdArgv(bd, "n0", sock), sock, 10_000);
    },
  };
}

/** `qsd-file:PATH` (page cache) or `qsd-file-direct:PATH` (cache.direct=on, O_DIRECT). */
export function qsdFile(env: DriverEnv, name: string, path: string, direct: boolean): TargetDriver {
  return {
    name,
    start: async (dir) => {
      if (!path || !existsSync(path)) throw new Error(`${name}: file '${path}' does not exist (create it, e.g. truncate -s 1G FILE)`);
      const sock = join(dir, "qsd.sock");
      const bd = `driver=file,node-name=f0,filename=${path},aio=io_uring,cache.direct=${direct ? "on" : "off"}`;
      const argv = qsdArgv(bd, "d0", sock);
      argv.splice(argv.indexOf("--export"), 0, "--blockdev", "driver=raw,node-name=d0,file=f0");
      return startDaemon(env, dir, "qsd-file", argv, sock, 10_000);
    },
  };
}
