#!/usr/bin/env bash
# no-firmware.sh — run a command while QEMU's firmware and ROM directories are
# hidden, to prove that no QEMU run needs a file from them (`make
# test-no-firmware`, part of `make test`).
#
#   no-firmware.sh COMMAND [ARGS...]
#
# As root, and where unshare(1) can create a mount namespace, the command runs
# in a private mount namespace in which an empty read-only tmpfs is mounted
# over every firmware directory QEMU searches (`$QEMU -L help`: on Debian
# /usr/share/qemu, /usr/share/seabios, /usr/lib/ipxe/qemu) and over the
# other firmware packages' directories (/usr/share/qemu-efi-aarch64,
# /usr/share/AAVMF, /usr/lib/u-boot) that exist. The rest of the system is
# unchanged and nothing outlives the command. Before the command runs, the
# guard checks itself: every hidden directory must be empty, and QEMU's virt
# machine with its default NIC must fail for want of "efi-virtio.rom".
# The exit status is the command's (1 if the guard's self-check fails).
#
# Without root or a usable unshare(1) it prints why and exits 0 without
# running the command: the same QEMU runs are part of `make test` anyway,
# only the proof that they need no firmware file is missing.
#
# Environment: QEMU (binary, default qemu-system-aarch64), QEMU_CPU (default
# cortex-a72).
set -euo pipefail

QEMU=${QEMU:-qemu-system-aarch64}
QEMU_CPU=${QEMU_CPU:-cortex-a72}
EXTRA_DIRS="/usr/share/qemu-efi-aarch64 /usr/share/AAVMF /usr/lib/u-boot"

note() { echo "firmware guard: $*"; }
skip() {
    note "SKIPPED: $* — the QEMU runs were not checked for firmware or ROM files."
    note "(run as root on a machine where 'unshare -m' works to check them)"
    exit 0
}

[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

if [ -z "${NO_FIRMWARE_INSIDE:-}" ]; then
    [ "$(id -u)" = 0 ] || skip "not running as root (a private mount namespace needs root)"
    command -v unshare >/dev/null || skip "unshare(1) not found"
    unshare -m --propagation private true 2>/dev/null ||
        skip "'unshare -m' is not permitted here (e.g. a container without CAP_SYS_ADMIN)"
    NO_FIRMWARE_INSIDE=1 exec unshare -m --propagation private -- "$0" "$@"
fi

# ── inside the private mount namespace ─────────────────────────────────
dirs=()
while IFS= read -r d; do
    [ -n "$d" ] || continue
    d=$(realpath -m "$d")
    case " ${dirs[*]:-} " in *" $d "*) ;; *) dirs+=("$d") ;; esac
done < <({ "$QEMU" -L help 2>/dev/null || true; printf '%s\n' $EXTRA_DIRS; })
[ ${#dirs[@]} -gt 0 ] || { note "FAILED: '$QEMU -L help' listed no firmware directories"; exit 1; }

hidden=() absent=()
for d in "${dirs[@]}"; do
    if [ -d "$d" ]; then
        mount -t tmpfs -o ro,mode=0755,size=4k qemu-firmware-guard "$d" ||
            { note "FAILED: could not mount an empty directory over $d"; exit 1; }
        if [ -n "$(ls -A "$d")" ]; then note "FAILED: $d is not empty after hiding it"; exit 1; fi
        hidden+=("$d")
    else
        absent+=("$d")
    fi
done
note "hidden (empty, read-only): ${hidden[*]:-none}"
[ ${#absent[@]} -eq 0 ] || note "absent on this machine: ${absent[*]}"

# Self-check: the virt machine's default NIC (virtio-net-pci) needs
# efi-virtio.rom. With the ROM hidden QEMU must stop at once with that error;
# "could not load kernel" would mean it found the ROM. This probe is the one
# QEMU run started deliberately without -nic none: it must fail here.
probe=$(timeout 60 "$QEMU" -M virt -cpu "$QEMU_CPU" -nographic -kernel /nonexistent-firmware-guard-probe \
        </dev/null 2>&1 || true)
if ! grep -q 'failed to find romfile "efi-virtio.rom"' <<<"$probe"; then
    note "FAILED: self-check: QEMU with its default NIC did not miss efi-virtio.rom; it said:"
    printf '%s\n' "$probe" | head -n 5
    exit 1
fi
note "self-check ok: QEMU's default NIC fails here (failed to find romfile \"efi-virtio.rom\")"

note "running: $*"
status=0
"$@" || status=$?
if [ "$status" = 0 ]; then
    note "passed: no QEMU run needed a file from the hidden firmware directories"
else
    note "FAILED: '$*' exited with status $status while QEMU's firmware directories were hidden"
    note "(a QEMU run needing a firmware or ROM file fails with e.g. 'failed to find romfile'; see above)"
fi
exit "$status"
