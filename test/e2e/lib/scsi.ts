// vhost-user-scsi pieces shared by the scsi e2e tests: QEMU args and guest shell helpers.

export interface VhostUserScsiOpts {
  id?: string;
  numQueues?: number;
  /**
   * ms between reconnect attempts when the back end goes away. QEMU >= 9.2 spells it
   * reconnect-ms (11.x refuses the old `reconnect`); vhost-user-scsi reconnects only from 8.2 on.
   */
  reconnectMs?: number;
}

/** -chardev/-device args for a vhost-user-scsi-pci controller. */
export function vhostUserScsiArgs(socket: string, o: VhostUserScsiOpts = {}): string[] {
  const id = o.id ?? "vus0";
  let chardev = `socket,id=${id}c,path=${socket}`;
  if (o.reconnectMs) chardev += `,reconnect-ms=${o.reconnectMs}`;
  return ["-chardev", chardev, "-device", `vhost-user-scsi-pci,id=${id},chardev=${id}c,num_queues=${o.numQueues ?? 1}`];
}

/** Shell helpers: the sd disk of a target (by its H:C:T:L name), and per-target identity lines. */
export const SCSI_PRELUDE = String.raw`
sd_of() { # sd_of TARGET -> sdX (empty if none)
  for d in /sys/block/sd*; do
    [ -e "$d/device" ] || continue
    case "$(basename "$(readlink -f "$d/device")")" in *:0:$1:0) basename "$d"; return 0;; esac
  done
  return 1
}
wait_target() { # wait_target TARGET SECONDS -> sets SD
  n=0
  while ! SD=$(sd_of $1) || [ ! -b /dev/$SD ]; do
    n=$((n+1)); [ $n -gt $(($2*10)) ] && { echo "no disk for target $1 after $2 s"; ls /sys/block; return 1; }
    sleep 0.1
  done
}
ident() { # ident TARGET: KV lines for the target's disk
  s=$(sd_of $1) || return 1
  kv t$1_dev "$s"
  kv t$1_size "$(cat /sys/block/$s/size)"
  kv t$1_lbs "$(cat /sys/block/$s/queue/logical_block_size)"
  kv t$1_vendor "$(cat /sys/block/$s/device/vendor | tr -d ' ')"
  kv t$1_model "$(cat /sys/block/$s/device/model | sed 's/ *$//' | tr ' ' _)"
  kv t$1_pg83 "$(od -An -v -tx1 /sys/block/$s/device/vpd_pg83 | tr -d ' \n')"
}
`;
