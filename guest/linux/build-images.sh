#!/usr/bin/env bash
# build-images.sh OUT_DIR
#
# Builds the guest-side images for the hypervisor's Linux guests from Debian
# bookworm arm64 packages:
#   OUT_DIR/Image              arm64 kernel Image (Debian linux-image-*-cloud-arm64)
#   OUT_DIR/System.map         its System.map (map guest PCs to symbols)
#   OUT_DIR/initramfs.cpio.gz  busybox-static + virtio modules + linux/init, plus
#                              iperf3 and ethtool with the shared libraries they
#                              need (newc, gzip)
#   OUT_DIR/disk.img           deterministic 8 MiB raw disk for virtio-blk
#   OUT_DIR/disk.md5           md5 hex digest of disk.img (digest only)
# Downloads are cached in OUT_DIR/cache (delete it to pick up newer packages).
# Idempotent: an output is rebuilt only when it is missing or one of its inputs
# changed (path, size or mtime differ from what the output was built from).
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
PYHELP="$HERE/guestimg.py"
INIT_SRC="$HERE/init"

ARCH=arm64
META_PKG=linux-image-cloud-arm64
BB_PKG=busybox-static
# Module set; the load order is computed from their .modinfo depends= strings.
MODULES="virtio_ring virtio virtio_mmio failover net_failover virtio_net virtio_blk"
# Applets /init and the tests rely on (all other applets are linked too).
REQUIRED_APPLETS="sh ash mount mkdir cat echo ip ping nc md5sum dd insmod sleep seq head wc cmp
  hexdump nproc setsid cttyhack poweroff reboot uname ls ps dmesg grep awk sed tr cut date time
  timeout usleep sync free top kill true false test [ [[ mkfifo tee printf"
# Dynamically linked tools: their packages and the libraries' packages. Only
# the programs below and the closure of their DT_NEEDED libraries (plus the
# dynamic loader) go into the initramfs, not the packages' other files.
TOOL_PKGS="iperf3 libiperf0 libsctp1 libc6 libssl3 ethtool libmnl0"
# PACKAGE:PATH-IN-PACKAGE:PATH-IN-INITRAMFS (/usr/bin is a link to /bin).
TOOL_PROGS="iperf3:usr/bin/iperf3:bin/iperf3 ethtool:sbin/ethtool:bin/ethtool"
TOOL_LIBDIR=lib/aarch64-linux-gnu
DISK_SIZE=$((8 * 1024 * 1024))
DISK_SEED="hv-guest-disk-v1"

log() { echo "build-images: $*" >&2; }
die() { echo "build-images: ERROR: $*" >&2; exit 1; }

for t in apt-get apt-cache dpkg-deb python3; do
    command -v "$t" >/dev/null 2>&1 || die "required tool '$t' not found"
done
[ -f "$PYHELP" ] || die "missing $PYHELP"
[ -f "$INIT_SRC" ] || die "missing $INIT_SRC"

mkdir -p "$1"
OUT=$(cd "$1" && pwd)
CACHE="$OUT/cache"
STAMPS="$CACHE/stamps"
mkdir -p "$CACHE" "$STAMPS"

# ------------------------------------------------------------------ helpers
# fingerprint FILE... : identity of the inputs (path, size, mtime).
fingerprint() { stat -L -c '%n %s %Y' "$@"; }

# up_to_date NAME OUTPUT KEY : true if OUTPUT exists and was built from KEY.
up_to_date() {
    [ -e "$2" ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$3" ]
}
mark_built() { printf '%s\n' "$2" > "$STAMPS/$1"; }

# cached_deb PKG : newest cached .deb of PKG (empty if none).
cached_deb() {
    local f
    f=$(ls -1 "$CACHE/${1}_"*"_${ARCH}.deb" 2>/dev/null | sort -V | tail -n 1 || true)
    printf '%s' "$f"
}

# fetch PKG [VERSION] : make sure a .deb of PKG is in the cache, print its path.
fetch() {
    local pkg=$1 ver=${2:-} deb dl
    deb=$(cached_deb "$pkg")
    if [ -n "$deb" ]; then printf '%s\n' "$deb"; return; fi
    log "downloading $pkg:$ARCH${ver:+=$ver}"
    # apt-get download drops privileges to _apt when run as root: download in a
    # fresh directory _apt may write to, then move the .deb into the cache.
    dl=$(mktemp -d "${TMPDIR:-/tmp}/guest-apt.XXXXXX")
    chmod 0755 "$dl"
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
    if ! (cd "$dl" && apt-get download -q "$pkg:$ARCH${ver:+=$ver}") >&2; then
        rm -rf "$dl"
        die "apt-get download $pkg:$ARCH failed (is 'dpkg --add-architecture $ARCH' done and 'apt-get update' run?)"
    fi
    deb=$(ls -1 "$dl/${pkg}_"*"_${ARCH}.deb" 2>/dev/null | head -n 1 || true)
    [ -n "$deb" ] || { rm -rf "$dl"; die "apt-get download $pkg:$ARCH produced no .deb"; }
    mv "$deb" "$CACHE/"
    rm -rf "$dl"
    cached_deb "$pkg"; echo
}

# extract DEB : dpkg-deb -x into the cache once, print the directory.
extract() {
    local deb=$1 dir
    dir="$CACHE/x-$(basename "$deb" .deb)"
    if [ ! -f "$dir/.extracted" ]; then
        log "extracting $(basename "$deb")"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        dpkg-deb -x "$deb" "$dir.tmp"
        touch "$dir.tmp/.extracted"
        mv "$dir.tmp" "$dir"
    fi
    printf '%s\n' "$dir"
}

# ------------------------------------------------------------------ packages
# The kernel package is whatever the linux-image-cloud-arm64 metapackage depends
# on right now (ABI number not hard-coded).
# apt-cache takes ~2 s here, so the answer is cached and asked again only when
# the apt lists changed since (i.e. after an apt-get update).
KPKG_CACHE="$CACHE/kernel-package"
APT_LISTS=/var/lib/apt/lists
KPKG=""
if [ -s "$KPKG_CACHE" ] && [ -z "$(find "$APT_LISTS" -maxdepth 1 -name '*Packages*' -newer "$KPKG_CACHE" 2>/dev/null | head -n 1)" ]; then
    KPKG=$(cat "$KPKG_CACHE")
else
    KPKG=$(apt-cache depends "$META_PKG:$ARCH" 2>/dev/null |
           awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9].*-cloud-arm64/ { sub(/:.*/, "", $2); print $2; exit }' || true)
    [ -n "$KPKG" ] && printf '%s\n' "$KPKG" > "$KPKG_CACHE"
fi
if [ -z "$KPKG" ]; then
    # No apt lists (offline?): fall back to the Depends of a cached metapackage.
    meta=$(cached_deb "$META_PKG")
    [ -n "$meta" ] || die "cannot resolve the kernel package: 'apt-cache depends $META_PKG:$ARCH' found nothing and no cached $META_PKG .deb (run 'dpkg --add-architecture $ARCH && apt-get update')"
    KPKG=$(dpkg-deb -f "$meta" Depends | tr ',|' '\n\n' | sed 's/[ (].*//; s/^ *//' | grep -E '^linux-image-[0-9].*-cloud-arm64' | head -n 1 || true)
    [ -n "$KPKG" ] || die "cannot find the kernel dependency in $meta"
    log "apt-cache unavailable; using cached metapackage -> $KPKG"
fi

fetch "$META_PKG" > /dev/null   # kept for the offline fallback above
KDEB=$(fetch "$KPKG")
BBDEB=$(fetch "$BB_PKG")
KDIR=$(extract "$KDEB")
BBDIR=$(extract "$BBDEB")
TOOL_DEBS=""
TOOL_DIRS=""
for p in $TOOL_PKGS; do
    deb=$(fetch "$p")
    dir=$(extract "$deb")
    TOOL_DEBS="$TOOL_DEBS $deb"
    TOOL_DIRS="$TOOL_DIRS${TOOL_DIRS:+:}$dir"
    printf -v "TOOLDIR_${p//[^a-zA-Z0-9]/_}" '%s' "$dir"   # the package's directory
done

# ------------------------------------------------------------------ kernel
VMLINUZ=$(ls -1 "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
[ -n "$VMLINUZ" ] || die "no boot/vmlinuz-* in $KDEB"
KVER=${VMLINUZ##*/vmlinuz-}
SYSMAP="$KDIR/boot/System.map-$KVER"
[ -f "$SYSMAP" ] || die "no boot/System.map-$KVER in $KDEB"
MODDIR=""
for d in "$KDIR/lib/modules/$KVER" "$KDIR/usr/lib/modules/$KVER"; do
    [ -d "$d" ] && MODDIR=$d && break
done
[ -n "$MODDIR" ] || die "no lib/modules/$KVER in $KDEB"

key=$(fingerprint "$VMLINUZ")
if ! up_to_date Image "$OUT/Image" "$key"; then
    tmp="$OUT/Image.tmp"
    if [ "$(head -c 2 "$VMLINUZ" | od -An -tx1 | tr -d ' \n')" = "1f8b" ]; then
        log "vmlinuz is gzip-compressed; decompressing"
        gzip -dc "$VMLINUZ" > "$tmp"
    else
        cp "$VMLINUZ" "$tmp"
    fi
    magic=$(dd if="$tmp" bs=1 skip=56 count=4 2>/dev/null || true)
    if [ "$magic" != "ARMd" ]; then
        rm -f "$tmp"
        die "$VMLINUZ is not an arm64 Linux Image: expected magic 'ARMd' at offset 0x38, found '$(printf '%s' "$magic" | od -An -c | tr -s ' ')'"
    fi
    mv "$tmp" "$OUT/Image"
    mark_built Image "$key"
    log "built Image ($KVER)"
fi

# Debian's image package ships only a placeholder System.map ("The real
# System.map is in the linux-image-<version>-dbg package"). With
# GUEST_SYSMAP=dbg, fetch the matching -dbg package once (~260 MB),
# stream out just boot/System.map-$KVER (it sits near the start of the
# archive) into the cache and delete the .deb again.
REAL_SYSMAP="$CACHE/System.map-$KVER"
if [ ! -s "$REAL_SYSMAP" ] && [ "$(wc -c < "$SYSMAP")" -lt 4096 ] &&
   [ "${GUEST_SYSMAP:-placeholder}" = dbg ]; then
    kver_deb=$(dpkg-deb -f "$KDEB" Version)
    if dbgdeb=$( (fetch "$KPKG-dbg" "$kver_deb") ); then
        log "extracting System.map-$KVER from $(basename "$dbgdeb")"
        dpkg-deb --fsys-tarfile "$dbgdeb" 2>/dev/null |
            python3 "$PYHELP" tarextract "usr/lib/debug/boot/System.map-$KVER" "$REAL_SYSMAP" || true
        rm -f "$dbgdeb"
    fi
    if [ ! -s "$REAL_SYSMAP" ]; then
        log "WARNING: could not get the real System.map from $KPKG-dbg=$kver_deb; OUT_DIR/System.map is Debian's placeholder"
        rm -f "$REAL_SYSMAP"
    fi
fi
[ -s "$REAL_SYSMAP" ] && SYSMAP=$REAL_SYSMAP
key=$(fingerprint "$SYSMAP")
if ! up_to_date System.map "$OUT/System.map" "$key"; then
    cp "$SYSMAP" "$OUT/System.map.tmp" && mv "$OUT/System.map.tmp" "$OUT/System.map"
    mark_built System.map "$key"
fi

# ------------------------------------------------------------------ initramfs
BUSYBOX="$BBDIR/bin/busybox"
[ -f "$BUSYBOX" ] || die "no bin/busybox in $BBDEB"
KOS=""
for m in $MODULES; do
    ko=$(find "$MODDIR" -name "$m.ko" -print -quit)
    [ -n "$ko" ] || die "module $m.ko not found under $MODDIR (compressed modules are not supported)"
    KOS="$KOS $ko"
done
# shellcheck disable=SC2086
key=$(fingerprint "$SELF" "$PYHELP" "$INIT_SRC" "$BUSYBOX" $KOS $TOOL_DEBS)
if ! up_to_date initramfs "$OUT/initramfs.cpio.gz" "$key"; then
    ROOT="$CACHE/initramfs-root"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"/{bin,dev,etc,lib/modules,mnt,proc,root,run,sys,tmp,usr,var}
    chmod 1777 "$ROOT/tmp"
    chmod 0700 "$ROOT/root"
    ln -s bin "$ROOT/sbin"
    ln -s ../bin "$ROOT/usr/bin"
    ln -s ../bin "$ROOT/usr/sbin"
    install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
    applets=$(python3 "$PYHELP" applets "$BUSYBOX")
    for a in $REQUIRED_APPLETS; do
        printf '%s\n' "$applets" | grep -qxF -- "$a" || die "busybox lacks the required applet '$a'"
    done
    n=0
    while IFS= read -r a; do
        case "$a" in ''|busybox|linuxrc) continue ;; esac
        ln -s busybox "$ROOT/bin/$a"
        n=$((n + 1))
    done <<< "$applets"
    # shellcheck disable=SC2086
    order=$(python3 "$PYHELP" modorder --builtin "$MODDIR/modules.builtin" $KOS)
    for ko in $KOS; do install -m 0644 "$ko" "$ROOT/lib/modules/"; done
    printf '%s\n' "$order" > "$ROOT/etc/modules.order"
    # After the applet links: elfinstall refuses to replace an existing file,
    # so a program never silently shadows a busybox applet.
    progs=""
    for t in $TOOL_PROGS; do
        IFS=: read -r p src dest <<< "$t"
        v="TOOLDIR_${p//[^a-zA-Z0-9]/_}"
        progs="$progs ${!v}/$src=$dest"
    done
    # shellcheck disable=SC2086
    python3 "$PYHELP" elfinstall "$ROOT" "$TOOL_LIBDIR" "$TOOL_DIRS" $progs >&2 ||
        die "installing $TOOL_PROGS into the initramfs failed (see above)"
    install -m 0755 "$INIT_SRC" "$ROOT/init"
    {
        echo "KERNEL_PACKAGE=$KPKG"
        echo "KERNEL_DEB=$(basename "$KDEB")"
        echo "KERNEL_RELEASE=$KVER"
        echo "BUSYBOX_DEB=$(basename "$BBDEB")"
        for deb in $TOOL_DEBS; do echo "TOOL_DEB=$(basename "$deb")"; done
    } > "$ROOT/etc/guest-release"
    echo "hvguest" > "$ROOT/etc/hostname"
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"
    printf 'root:x:0:\n' > "$ROOT/etc/group"
    python3 "$PYHELP" mkcpio "$ROOT" "$OUT/initramfs.cpio.gz" \
        --dev /dev/console:c:5:1:0600 --dev /dev/null:c:1:3:0666 >&2
    mark_built initramfs "$key"
    log "built initramfs: $n applet links, module order: $(printf '%s ' $order)"
fi

# ------------------------------------------------------------------ disk
key="size=$DISK_SIZE seed=$DISK_SEED $(fingerprint "$PYHELP")"
if ! up_to_date disk "$OUT/disk.img" "$key" || [ ! -s "$OUT/disk.md5" ]; then
    sum=$(python3 "$PYHELP" mkdisk "$OUT/disk.img" "$DISK_SIZE" "$DISK_SEED")
    printf '%s\n' "$sum" > "$OUT/disk.md5"
    mark_built disk "$key"
    log "built disk.img (md5 $sum)"
fi

# ------------------------------------------------------------------ summary
echo "kernel: $KPKG ($KVER) from $(basename "$KDEB")"
echo "busybox: $(basename "$BBDEB")"
echo "tools: $(for deb in $TOOL_DEBS; do printf '%s ' "$(basename "$deb")"; done)"
for f in Image System.map initramfs.cpio.gz disk.img disk.md5; do
    printf '%-40s %10s bytes\n' "$OUT/$f" "$(stat -c %s "$OUT/$f")"
done
isz=$(stat -c %s "$OUT/initramfs.cpio.gz")
printf 'default placement: Image@0x40200000 DTB@0x47e00000 initrd 0x48000000..0x%x\n' $((0x48000000 + isz))
