#!/usr/bin/env bash
# Build a Debian unstable (sid) chroot holding QEMU with the vfio-user-pci
# device (QEMU >= 10.1; sid has 11.x), used by the NVMe-over-vfio-user e2e test.
# Bookworm's QEMU 7.2 has no vfio-user-pci.
#
# Output: ${VHOSTD_QEMU_SID:-$HOME/.cache/vhostd-qemu-sid}/
#   root/        the chroot (debootstrap --variant=minbase sid)
#   stamp        written last; its presence means the chroot is complete
#   qemu.env     QEMU_VERSION=..., ROOT=...
#
# Idempotent: exits at once when the stamp exists and the chroot's QEMU runs.
# Usage: build-qemu-sid.sh [--force]      (needs root: debootstrap + chroot)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VHOSTD_QEMU_SID:-$HOME/.cache/vhostd-qemu-sid}"
ROOT="$CACHE/root"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1
log() { echo "[build-qemu-sid] $*" >&2; }
PATH="$PATH:/sbin:/usr/sbin"

if [[ $(id -u) -ne 0 ]]; then
  log "must run as root (debootstrap and chroot)"; exit 2
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

qemu_ok() {
  [[ -x "$ROOT/usr/bin/qemu-system-x86_64" ]] &&
    chroot "$ROOT" /usr/bin/qemu-system-x86_64 -device help 2>/dev/null | grep -q '"vfio-user-pci"'
}

if [[ $FORCE -eq 0 && -f "$CACHE/stamp" && "$CACHE/stamp" -nt "$HERE/build-qemu-sid.sh" ]] && qemu_ok; then
  log "up to date: $CACHE ($(grep QEMU_VERSION "$CACHE/qemu.env" 2>/dev/null || true))"
  exit 0
fi
rm -f "$CACHE/stamp"

# ---- the mirror apt uses here -------------------------------------------------
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] || continue
  # deb822: the URIs line of a stanza whose Suites are Debian's (not -security)
  m=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 !~ /security/ && u ~ /debian/) {print u; exit} }' "$f")
  [[ -n "$m" ]] && { mirror="$m"; break; }
done
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
mirror="${VHOSTD_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
log "mirror: $mirror"

# ---- debootstrap --------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

umount_all() {
  for m in "$ROOT/proc" "$ROOT/sys" "$ROOT/dev/pts" "$ROOT/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
trap umount_all EXIT

if [[ ! -f "$ROOT/.debootstrap-done" ]]; then
  umount_all
  rm -rf "$ROOT"
  log "debootstrap sid into $ROOT (a few minutes)"
  # the mirror snapshot's Release file may be expired: debootstrap does not
  # check Valid-Until, apt inside the chroot is told not to below.
  debootstrap --variant=minbase sid "$ROOT" "$mirror" >&2
  touch "$ROOT/.debootstrap-done"
fi

cat >"$ROOT/etc/apt/apt.conf.d/99vhostd" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
echo "deb $mirror sid main" >"$ROOT/etc/apt/sources.list"

mount --bind /proc "$ROOT/proc"
log "apt-get install qemu-system-x86 (chroot)"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false update -qq >&2
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
  apt-get -o Acquire::Check-Valid-Until=false install -y --no-install-recommends qemu-system-x86 >&2
chroot "$ROOT" apt-get clean >&2 || true
umount_all

if ! qemu_ok; then
  log "chroot QEMU has no vfio-user-pci device"; exit 1
fi
ver=$(chroot "$ROOT" /usr/bin/qemu-system-x86_64 --version | head -1)
log "built: $ver"
{ echo "QEMU_VERSION=$ver"; echo "ROOT=$ROOT"; } >"$CACHE/qemu.env"
touch "$CACHE/stamp"
