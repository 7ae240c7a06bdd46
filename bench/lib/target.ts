// Target driver contract: start() -> running instance with a socket, stop() -> gone.
export interface TargetInstance {
  socket: string;
  /** Extra vhost-load arguments this target needs (e.g. --type scsi). */
  loadArgs?: string[];
  /** load generator for this socket: vhost-load (vhost-user-blk, default) or nvme-load (NVMe over vfio-user) */
  client?: "vhost-load" | "nvme-load";
  stop(): Promise<void>;
}

export interface TargetDriver {
  name: string;        // as given in --targets, e.g. "qsd-file:/tmp/x.img"
  start(workDir: string): Promise<TargetInstance>;
}

export interface DriverEnv {
  repoRoot: string;    // for dist/src/cli/vhostd.js
  fixtureBin: string;  // built test-target
  targetCpu: string;   // taskset list for the target, e.g. "0"
  lifetimeS: number;   // safety-net `timeout` for each target instance
}
