#!/usr/bin/env bash
# Starts a throw-away one-node Ceph cluster for the RBD tests, everything under DIR:
# one monitor on 127.0.0.1 (msgr2, port $CEPH_MON_PORT, default 3300), one OSD on
# memstore (data in RAM: gone when the OSD stops), no manager, authentication off
# ("auth ... required = none": loopback only, nothing to protect), pool `rbd` with one
# replica. Ready when `rbd pool init` has written to the pool (PGs active), ~10 s.
#
#   test/ceph/start-cluster.sh DIR     # prints the path of DIR/ceph.conf when ready
#   test/ceph/stop-cluster.sh DIR      # kills the daemons (data is lost)
#
# Idempotent: a cluster already running in DIR is reused. Installs Debian's ceph-mon,
# ceph-osd and ceph-common with apt when they are missing (needs root).
set -euo pipefail

DIR=${1:?usage: start-cluster.sh DIR}
PORT=${CEPH_MON_PORT:-3300}
MEM_BYTES=${CEPH_MEMSTORE_BYTES:-1073741824}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/ceph.conf
export CEPH_CONF=$CONF

need=()
for p in ceph-mon ceph-osd ceph-common; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "start-cluster.sh: install ${need[*]} (apt-get install ${need[*]}) or run as root" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

alive() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

# Reuse a running cluster (a second call, or a test run after an earlier one).
if alive mon.a && alive osd.0 && timeout 20 rbd -c "$CONF" ls rbd >/dev/null 2>&1; then
  echo "$CONF"; exit 0
fi
"$(dirname "$0")/stop-cluster.sh" "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/log" "$DIR/monmap"
mkdir -p "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/log"

FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
mon data = $DIR/mon
osd data = $DIR/osd
keyring = /dev/null
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = $MEM_BYTES
osd op num shards = 1
osd op num threads per shard = 2
mon osd down out interval = 0
# daemons only: clients (vhostd, rbd) get a per-process socket in run dir
[mon]
admin socket = $DIR/run/\$name.asok
[osd]
admin socket = $DIR/run/\$name.asok
EOF

log() { echo "start-cluster: $*" >&2; }
fail() { log "$*"; tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null || true; exit 1; }

monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mkfs-mon.out" 2>&1 || fail "ceph-mon --mkfs failed (see $DIR/log)"
ceph-mon -c "$CONF" -i a 2>>"$DIR/log/mon.stderr" || fail "ceph-mon did not start (port $PORT in use? set CEPH_MON_PORT)"

OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
ID=$(timeout 30 ceph -c "$CONF" osd new "$OSD_UUID") || fail "the monitor did not answer 'ceph osd new' within 30 s"
[ "$ID" = 0 ] || fail "expected osd id 0, got '$ID'"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/mkfs-osd.out" 2>&1 || fail "ceph-osd --mkfs failed"
ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd.stderr" || fail "ceph-osd did not start"

timeout 30 ceph -c "$CONF" osd pool create rbd 8 8 >/dev/null 2>&1 || fail "could not create pool rbd"
# Readiness: `rbd pool init` writes to the pool, so it returns only once its PGs are active.
timeout 60 rbd -c "$CONF" pool init rbd || fail "'rbd pool init' did not finish within 60 s (OSD not up?)"
echo "$CONF"
