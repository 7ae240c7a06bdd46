#!/usr/bin/env bash
# Stops the cluster start-cluster.sh started in DIR (SIGTERM, then SIGKILL after 5 s).
# The memstore OSD's data is lost. Only the daemons whose pid files are in DIR/run are touched.
set -uo pipefail
DIR=${1:?usage: stop-cluster.sh DIR}
pids=()
for f in "$DIR"/run/osd.0.pid "$DIR"/run/mon.a.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  # only a ceph daemon started with this directory's config
  if grep -qa -- "$DIR/ceph.conf" "/proc/$p/cmdline" 2>/dev/null; then kill "$p" 2>/dev/null && pids+=("$p"); fi
  rm -f "$f"
done
for _ in $(seq 50); do
  left=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
  [ $left = 0 ] && exit 0
  sleep 0.1
done
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
exit 0
