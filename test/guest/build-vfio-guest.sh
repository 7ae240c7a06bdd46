#!/usr/bin/env bash
# Build the nested-guest image for the VFIO tests: the shared e2e guest (built by
# build-guest.sh into its own cache, left untouched) plus the modules that a
# user-space NVMe driver over VFIO and a 9p root share need, appended as a second
# cpio archive. Idempotent: skips work when the stamp matches.
#
# Output (in $VHOSTD_VFIO_GUEST_CACHE, default ~/.cache/vhostd-vfio-guest):
#   vmlinuz           the shared guest kernel (copy)
#   initrd.cpio       shared base initramfs + overlay (extra modules, full modules.order)
#   guest.env         KVER=..., paths
#
# Usage: build-vfio-guest.sh [--force]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE_CACHE="${VHOSTD_GUEST_CACHE:-$HOME/.cache/vhostd-guest}"
CACHE="${VHOSTD_VFIO_GUEST_CACHE:-$HOME/.cache/vhostd-vfio-guest}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1
log() { echo "[build-vfio-guest] $*" >&2; }

# vfio + type1 IOMMU backend + vfio-pci; 9p over virtio for the host root share.
EXTRA_MODULES=(vfio vfio_iommu_type1 vfio_pci 9pnet 9pnet_virtio 9p)

VHOSTD_GUEST_CACHE="$BASE_CACHE" bash "$HERE/build-guest.sh"
# shellcheck disable=SC1091
source "$BASE_CACHE/guest.env"
PATH="$PATH:/sbin:/usr/sbin"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

STAMP="$(
  {
    echo "format=1"
    cat "$BASE_CACHE/stamp"
    echo "modules=${EXTRA_MODULES[*]}"
    sha256sum "$HERE/build-vfio-guest.sh" | awk '{print $1}'
  } | sha256sum | awk '{print $1}'
)"
if [[ $FORCE -eq 0 && -f "$CACHE/stamp" && "$(cat "$CACHE/stamp")" == "$STAMP" \
      && -f "$CACHE/initrd.cpio" && -f "$CACHE/vmlinuz" \
      && "$CACHE/initrd.cpio" -nt "$BASE_CACHE/initrd.base.cpio" ]]; then
  log "up to date: $CACHE"
  exit 0
fi

log "building into $CACHE (kernel $KVER)"
WORK="$(mktemp -d "$CACHE/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

DEB="$(ls "$BASE_CACHE/debs/"linux-image-"$KVER"_*.deb | head -n1)"
[[ -f "$DEB" ]] || { log "kernel package for $KVER not in $BASE_CACHE/debs"; exit 1; }
dpkg -x "$DEB" "$WORK/k"
MODDIR="$WORK/k/lib/modules/$KVER"
[[ -f "$MODDIR/modules.dep" ]] || depmod -b "$WORK/k" "$KVER"

# modules the base image already loads (in order)
(cd "$WORK" && cpio --quiet -i --to-stdout etc/modules.order < "$BASE_CACHE/initrd.base.cpio") > "$WORK/base.order"
declare -A HAVE
while read -r p; do n="$(basename "$p")"; HAVE["${n%.ko}"]=1; done < "$WORK/base.order"

# extra modules and their dependencies, in dependency order (DFS over modules.dep)
declare -A DEP SEEN BYNAME
while IFS= read -r line; do DEP["${line%%:*}"]="${line#*:}"; done < "$MODDIR/modules.dep"
for p in "${!DEP[@]}"; do n="$(basename "$p")"; n="${n%%.ko*}"; BYNAME["${n//-/_}"]="$p"; done
ORDER=()
visit() {
  local p="$1" d
  [[ -n "${SEEN[$p]:-}" ]] && return; SEEN["$p"]=1
  for d in ${DEP[$p]}; do visit "$d"; done
  ORDER+=("$p")
}
for m in "${EXTRA_MODULES[@]}"; do
  if [[ -n "${BYNAME[$m]:-}" ]]; then visit "${BYNAME[$m]}"
  elif grep -qE "/${m//_/[-_]}\.ko" "$MODDIR/modules.builtin"; then log "module $m is built in"
  else log "module $m not found in $KVER"; exit 1; fi
done

R="$WORK/overlay"
mkdir -p "$R/lib/modules" "$R/etc"
cp "$WORK/base.order" "$R/etc/modules.order"
added=()
for p in "${ORDER[@]}"; do
  n="$(basename "$p")"; n="${n%%.ko*}.ko"
  [[ -n "${HAVE[${n%.ko}]:-}" ]] && continue
  case "$p" in
    *.ko.xz) xz -dc "$MODDIR/$p" > "$R/lib/modules/$n" ;;
    *.ko.zst) zstd -dcq "$MODDIR/$p" > "$R/lib/modules/$n" ;;
    *.ko.gz) gzip -dc "$MODDIR/$p" > "$R/lib/modules/$n" ;;
    *) cp "$MODDIR/$p" "$R/lib/modules/$n" ;;
  esac
  echo "/lib/modules/$n" >> "$R/etc/modules.order"
  added+=("$n")
done
log "added modules: ${added[*]}"

# base archive, zero padding to 512 bytes, then the overlay (later entries win)
cp "$BASE_CACHE/initrd.base.cpio" "$WORK/initrd.cpio"
size=$(stat -c %s "$WORK/initrd.cpio")
head -c $(( (512 - size % 512) % 512 )) /dev/zero >> "$WORK/initrd.cpio"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >> "$WORK/initrd.cpio"

cp "$BASE_CACHE/vmlinuz" "$WORK/vmlinuz"
mv -f "$WORK/vmlinuz" "$WORK/initrd.cpio" "$CACHE/"
printf 'KVER=%s\nVMLINUZ=%s\nINITRD_CPIO=%s\n' "$KVER" "$CACHE/vmlinuz" "$CACHE/initrd.cpio" > "$CACHE/guest.env"
echo "$STAMP" > "$CACHE/stamp"
log "done: $(du -h "$CACHE/initrd.cpio" | cut -f1) initrd"
