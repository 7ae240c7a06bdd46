#!/usr/bin/env bash
# Build the e2e test guest (Debian kernel + busybox/fio initramfs) into a cache
# directory outside the repo. Idempotent: skips work when the stamp matches.
#
# Output (in $VHOSTD_GUEST_CACHE, default ~/.cache/vhostd-guest):
#   vmlinuz            guest kernel
#   initrd.base.gz     gzip'd newc cpio (per-test /test.sh is appended by the harness)
#   initrd.base.cpio   same, uncompressed (faster to boot under TCG)
#   stamp              inputs fingerprint; guest.env: KVER=..., paths
#
# Usage: build-guest.sh [--force]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VHOSTD_GUEST_CACHE:-$HOME/.cache/vhostd-guest}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { echo "[build-guest] $*" >&2; }

# Wanted modules, by name; deps are resolved from modules.dep. The *_generic
# crypto providers are soft deps of crc-t10dif/crc64-rocksoft (sd_mod, nvme-core).
WANT_MODULES=(
  crct10dif_generic crc64_rocksoft_generic crc32c_generic
  virtio_ring virtio virtio_pci
  virtio_blk
  scsi_mod sd_mod virtio_scsi
  nvme_core nvme
)

# ---- host tools -------------------------------------------------------------
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have fio || need_pkgs+=(fio)
[[ -x /bin/busybox && "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" == *installed* ]] || need_pkgs+=(busybox-static)
have cpio || need_pkgs+=(cpio)
have xz || need_pkgs+=(xz-utils)
have depmod || [[ -x /sbin/depmod ]] || need_pkgs+=(kmod)
have qemu-system-x86_64 || need_pkgs+=(qemu-system-x86)
have qemu-storage-daemon || need_pkgs+=(qemu-system-common)
if ((${#need_pkgs[@]})); then
  log "installing: ${need_pkgs[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi
PATH="$PATH:/sbin:/usr/sbin"

# one build at a time (parallel test workers may all call this)
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# fast path: nothing (apt lists, installed packages, these scripts) changed since the last build
if [[ $FORCE -eq 0 && -f "$CACHE/stamp" && -f "$CACHE/initrd.base.cpio" \
      && "$CACHE/stamp" -nt /var/lib/apt/lists && "$CACHE/stamp" -nt /var/lib/dpkg/status \
      && "$CACHE/stamp" -nt "$HERE/build-guest.sh" && "$CACHE/stamp" -nt "$HERE/init" ]]; then
  log "up to date: $CACHE"
  exit 0
fi

# ---- inputs fingerprint -----------------------------------------------------
KPKG="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [[ -z "$KPKG" ]]; then
  log "apt-cache knows no linux-image-amd64; running apt-get update"
  apt-get update -qq
  KPKG="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
fi
[[ -n "$KPKG" ]] || { log "cannot resolve linux-image-amd64 dependency"; exit 1; }
KPKG_VER="$(apt-cache policy "$KPKG" | awk '/Candidate:/ {print $2}')"
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
STAMP="$(
  {
    echo "format=1"
    echo "kernel=$KPKG=$KPKG_VER"
    echo "fio=$(pkgver fio) busybox=$(pkgver busybox-static)"
    echo "modules=${WANT_MODULES[*]}"
    sha256sum "$HERE/build-guest.sh" "$HERE/init" | awk '{print $1}'
  } | sha256sum | awk '{print $1}'
)"

if [[ $FORCE -eq 0 && -f "$CACHE/stamp" && "$(cat "$CACHE/stamp")" == "$STAMP" \
      && -f "$CACHE/vmlinuz" && -f "$CACHE/initrd.base.gz" && -f "$CACHE/initrd.base.cpio" ]]; then
  touch "$CACHE/stamp" # re-arm the fast path
  log "up to date: $CACHE"
  exit 0
fi

log "building guest into $CACHE (kernel $KPKG $KPKG_VER)"
WORK="$(mktemp -d "$CACHE/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ---- kernel -----------------------------------------------------------------
DEBDIR="$CACHE/debs"; mkdir -p "$DEBDIR"
DEB="$(ls "$DEBDIR/${KPKG}_"*"_amd64.deb" 2>/dev/null | grep -F "_${KPKG_VER//:/%3a}_" | head -n1 || true)"
if [[ -z "$DEB" ]]; then
  rm -f "$DEBDIR/${KPKG}_"*.deb
  # _apt must be able to write into the download dir (else apt warns and runs unsandboxed)
  chmod 0777 "$WORK"
  (cd "$WORK" && apt-get download -q "$KPKG=$KPKG_VER" >&2)
  mv "$WORK/${KPKG}_"*.deb "$DEBDIR/"
  DEB="$(ls "$DEBDIR/${KPKG}_"*.deb | head -n1)"
fi
log "unpacking $(basename "$DEB")"
dpkg -x "$DEB" "$WORK/k"
KVER="$(ls "$WORK/k/lib/modules" | head -n1)"
MODDIR="$WORK/k/lib/modules/$KVER"
cp "$WORK/k/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
# the package ships no modules.dep (postinst runs depmod): generate it
[[ -f "$MODDIR/modules.dep" ]] || depmod -b "$WORK/k" "$KVER"

# ---- initramfs tree ---------------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules,lib64}
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
  [[ -e "$R/bin/$a" ]] || ln -s busybox "$R/bin/$a"
done
cp "$HERE/init" "$R/init"; chmod 755 "$R/init"

# fio + every shared library it needs (real files, at the paths ldd reports)
FIO="$(command -v fio)"
cp -L "$FIO" "$R/usr/bin/fio"
ldd "$FIO" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
# modules in dependency order (DFS over modules.dep); built-ins are skipped
declare -A DEP SEEN
while IFS= read -r line; do
  DEP["${line%%:*}"]="${line#*:}"
done < "$MODDIR/modules.dep"
declare -A BYNAME
for path in "${!DEP[@]}"; do
  n="$(basename "$path")"; n="${n%%.ko*}"; BYNAME["${n//-/_}"]="$path"
done
ORDER=()
visit() {
  local p="$1" d
  [[ -n "${SEEN[$p]:-}" ]] && return; SEEN["$p"]=1
  for d in ${DEP[$p]}; do visit "$d"; done
  ORDER+=("$p")
}
for m in "${WANT_MODULES[@]}"; do
  key="${m//-/_}"
  if [[ -n "${BYNAME[$key]:-}" ]]; then
    visit "${BYNAME[$key]}"
  elif grep -qE "/${m//_/[-_]}\.ko" "$MODDIR/modules.builtin" 2>/dev/null; then
    log "module $m is built in"
  else
    log "WARNING: module $m not found"
  fi
done
: > "$R/etc/modules.order"
for p in "${ORDER[@]}"; do
  n="$(basename "$p")"; n="${n%%.ko*}.ko"
  case "$p" in
    *.ko.xz) xz -dc "$MODDIR/$p" > "$R/lib/modules/$n" ;;
    *.ko.zst) zstd -dcq "$MODDIR/$p" > "$R/lib/modules/$n" ;;
    *.ko.gz) gzip -dc "$MODDIR/$p" > "$R/lib/modules/$n" ;;
    *) cp "$MODDIR/$p" "$R/lib/modules/$n" ;;
  esac
  echo "/lib/modules/$n" >> "$R/etc/modules.order"
done
log "modules: $(xargs -n1 basename < "$R/etc/modules.order" | tr '\n' ' ')"

echo "$KVER" > "$R/etc/kver"
# ---- pack -------------------------------------------------------------------
# Both forms: .gz is the canonical (small) one; the plain .cpio boots ~3 s faster
# under TCG (no in-guest inflate), so the harness prefers it.
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) > "$WORK/initrd.base.cpio"
gzip -1 -c "$WORK/initrd.base.cpio" > "$WORK/initrd.base.gz"

mv -f "$WORK/vmlinuz" "$CACHE/vmlinuz"
mv -f "$WORK/initrd.base.gz" "$WORK/initrd.base.cpio" "$CACHE/"
printf 'KVER=%s\nKPKG=%s=%s\nVMLINUZ=%s\nINITRD_GZ=%s\nINITRD_CPIO=%s\n' "$KVER" "$KPKG" "$KPKG_VER" \
  "$CACHE/vmlinuz" "$CACHE/initrd.base.gz" "$CACHE/initrd.base.cpio" > "$CACHE/guest.env"
echo "$STAMP" > "$CACHE/stamp"
log "done: $(du -h "$CACHE/initrd.base.gz" | cut -f1) initrd, kernel $KVER"
