#!/usr/bin/env bash
# vhost-user-blk on Ceph RBD: vhostd's rbd bdev against qemu-storage-daemon's rbd driver
# (qemu-block-extra), same one-node cluster (test/ceph/start-cluster.sh: one memstore OSD),
# same run, targets alternating; vhost-load in --irq mode (polling clients would take the
# CPU the OSD needs). Each target gets its own image, written in full first (librbd reads
# never-written objects as zeros without asking the OSD). Prints the median of REPS runs.
#
#   bench/rbd-compare.sh [REPS=3] [SECONDS=5]
#   WORKLOADS="randread:16" VHOSTD_ARGS="--idle-sleep-ms 0" bench/rbd-compare.sh 1 5
#
# Needs root (installs ceph and qemu-block-extra when missing), a built dist/ and vhost-load.
# The numbers measure the memstore OSD on this machine more than either target.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${1:-3}
SECS=${2:-5}
W=/tmp/vhostd-rbd-bench
VL=${VHOST_LOAD:-$HOME/.cache/vhostd-bench/vhost-load/vhost-load}
[ -x "$VL" ] || node -e "import('$ROOT/dist/bench/lib/build.js').then(m=>m.buildTools())"
dpkg -s qemu-block-extra >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-block-extra >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; "$ROOT/test/ceph/stop-cluster.sh" "$W/ceph" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mkdir -p "$W"
CONF=$("$ROOT/test/ceph/start-cluster.sh" "$W/ceph")
for img in vhostd qsd; do
  rbd -c "$CONF" rm "rbd/$img" >/dev/null 2>&1 || true
  rbd -c "$CONF" create --size 256 "rbd/$img"
  rbd -c "$CONF" bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 --io-total 256M "rbd/$img" >/dev/null
done

rm -rf "$W/vhostd" "$W/qsd"; mkdir -p "$W/vhostd" "$W/qsd"
cat > "$W/vhostd/cfg.json" <<EOF
{"subsystems":[{"subsystem":"bdev","config":[
 {"method":"bdev_rbd_register_cluster","params":{"name":"ceph","config_file":"$CONF"}},
 {"method":"bdev_rbd_create","params":{"name":"Rbd0","pool_name":"rbd","rbd_name":"vhostd","block_size":512,"cluster_name":"ceph"}}]},
 {"subsystem":"vhost_blk","config":[{"method":"vhost_create_blk_controller","params":{"ctrlr":"blk0","dev_name":"Rbd0"}}]}]}
EOF
node "$ROOT/dist/src/cli/vhostd.js" -m 0x1 ${VHOSTD_ARGS:-} -r "$W/vhostd/rpc.sock" -S "$W/vhostd" -c "$W/vhostd/cfg.json" >"$W/vhostd/log" 2>&1 &
pids+=($!)
qemu-storage-daemon --object iothread,id=io0 \
  --blockdev "driver=rbd,node-name=r0,pool=rbd,image=qsd,conf=$CONF,cache.direct=on" \
  --export "type=vhost-user-blk,id=e0,node-name=r0,addr.type=unix,addr.path=$W/qsd/blk0,writable=on,num-queues=1,iothread=io0" \
  >"$W/qsd/log" 2>&1 &
pids+=($!)
for s in "$W/vhostd/blk0" "$W/qsd/blk0"; do for _ in $(seq 200); do [ -S "$s" ] && break; sleep 0.1; done; done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-22s %14s %14s %8s\n' "workload" "vhostd IOPS" "QSD IOPS" "ratio"
for wl in ${WORKLOADS:-randread:1 randread:16 randwrite:1 randwrite:16}; do
  set -- "${wl%:*}" "${wl#*:}"
  for t in vhostd qsd; do : > "$W/$t.iops"; done
  for _ in $(seq "$REPS"); do
    for t in vhostd qsd; do
      "$VL" -s "$W/$t/blk0" -w "$1" -q "$2" -T "$SECS" --size 256M --irq --json 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["iops"])' >> "$W/$t.iops"
    done
  done
  v=$(median < "$W/vhostd.iops"); q=$(median < "$W/qsd.iops")
  printf '%-22s %14.0f %14.0f %8.2f\n' "4k $1 QD$2" "$v" "$q" "$(python3 -c "print($v/$q if $q else 0)")"
done
