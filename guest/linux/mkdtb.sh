#!/bin/sh
# mkdtb.sh OUT.dtb VM_ID NCPUS INITRD_START INITRD_END "BOOTARGS" [MEM_SIZE]
#
# Preprocesses guest.dts (next to this script) with cpp and compiles it with dtc.
#   VM_ID         integer, appears in the model string
#   NCPUS         1..4
#   INITRD_START  guest-physical address (e.g. 0x48000000), or "none" for no initrd
#   INITRD_END    guest-physical end address (exclusive), or "+FILE" meaning
#                 INITRD_START + size of FILE
#   BOOTARGS      kernel command line (empty string = the default
#                 "console=ttyAMA0 earlycon=pl011,0x09000000 nokaslr")
#   MEM_SIZE      RAM size in bytes (default 0x10000000)
# Fails on any dtc warning unless DTC_ALLOW_WARNINGS=1. Extra dtc flags: $DTC_FLAGS.
set -eu

usage() {
    echo "usage: $0 OUT.dtb VM_ID NCPUS INITRD_START INITRD_END \"BOOTARGS\" [MEM_SIZE]" >&2
    exit 2
}
[ $# -ge 6 ] && [ $# -le 7 ] || usage
OUT=$1 VM_ID=$2 NCPUS=$3 INITRD_START=$4 INITRD_END=$5 BOOTARGS=$6 MEM_SIZE=${7:-0x10000000}
HERE=$(cd "$(dirname "$0")" && pwd)
DTS="$HERE/guest.dts"
DEFAULT_BOOTARGS="console=ttyAMA0 earlycon=pl011,0x09000000 nokaslr"

die() { echo "mkdtb: ERROR: $*" >&2; exit 1; }
isnum() {
    case "$1" in
        0x|0X|"") return 1 ;;
        0[xX]*) case "${1#0[xX]}" in *[!0-9a-fA-F]*) return 1 ;; esac ;;
        *[!0-9]*) return 1 ;;
    esac
}

isnum "$VM_ID" || die "VM_ID '$VM_ID' is not a number"
case "$NCPUS" in 1|2|3|4) ;; *) die "NCPUS must be 1..4 (got '$NCPUS')" ;; esac
isnum "$MEM_SIZE" || die "MEM_SIZE '$MEM_SIZE' is not a number"

set -- -DVM_ID="$VM_ID" -DNCPUS="$NCPUS" -DMEM_SIZE="$MEM_SIZE"
case "$INITRD_START" in
    none|"") ;;
    *)
        isnum "$INITRD_START" || die "INITRD_START '$INITRD_START' is not a number"
        case "$INITRD_END" in
            +*)
                f=${INITRD_END#+}
                [ -f "$f" ] || die "INITRD_END: no such file '$f'"
                INITRD_END=$(printf '0x%x' $(( INITRD_START + $(wc -c < "$f") )))
                ;;
        esac
        isnum "$INITRD_END" || die "INITRD_END '$INITRD_END' is not a number"
        [ $((INITRD_END)) -gt $((INITRD_START)) ] || die "INITRD_END must be above INITRD_START"
        set -- "$@" -DINITRD_START="$INITRD_START" -DINITRD_END="$INITRD_END"
        ;;
esac
[ -n "$BOOTARGS" ] || BOOTARGS=$DEFAULT_BOOTARGS
# Make BOOTARGS a valid dts string literal: escape backslashes and quotes.
esc=$(printf '%s' "$BOOTARGS" | sed 's/\\/\\\\/g; s/"/\\"/g')
set -- "$@" -DBOOTARGS="\"$esc\""

tmp=$(mktemp "${TMPDIR:-/tmp}/mkdtb.XXXXXX")
trap 'rm -f "$tmp" "$tmp.dts" "$tmp.err"' EXIT
cpp -nostdinc -undef -x assembler-with-cpp -P "$@" "$DTS" > "$tmp.dts" ||
    die "cpp failed on $DTS"
# shellcheck disable=SC2086
dtc -I dts -O dtb ${DTC_FLAGS:-} -o "$tmp" "$tmp.dts" 2> "$tmp.err" || {
    cat "$tmp.err" >&2
    die "dtc failed"
}
if [ -s "$tmp.err" ]; then
    cat "$tmp.err" >&2
    [ "${DTC_ALLOW_WARNINGS:-0}" = 1 ] || die "dtc printed warnings (set DTC_ALLOW_WARNINGS=1 to accept)"
fi
chmod 0644 "$tmp"
mv "$tmp" "$OUT"
trap - EXIT
rm -f "$tmp.dts" "$tmp.err"
