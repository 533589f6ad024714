#!/usr/bin/env bash
# run-plain-qemu.sh — boot the guest Image + initramfs directly on QEMU (no
# hypervisor): the reference behaviour and baseline timings for the guests the
# hypervisor runs. QEMU's virt machine uses its own generated DTB here.
#
#   run-plain-qemu.sh [options] IMAGES_DIR [EXTRA KERNEL ARGS...]
#
# Options:
#   -n 1|2     number of VMs (default 1). With 2, the VMs are linked by
#              -netdev socket on 127.0.0.1 (vm0 listens, vm1 connects).
#   -s N       vCPUs per VM (default 1)
#   -m SIZE    RAM per VM (default 256M)
#   -a ARGS    extra kernel command-line arguments (e.g. "hvtest=net"); words
#              after IMAGES_DIR are appended too
#   -t SECS    kill the QEMU(s) after SECS (default 300 in automatic mode,
#              none for an interactive single VM)
#   -e         automatic mode even on a terminal: stop as soon as every VM has
#              printed HVTEST-DONE (when hvtest= is given) or GUEST-READY
#   -l DIR     directory for the per-VM console logs vmN.log (default: a new
#              directory under ${TMPDIR:-/tmp})
#   -p PORT    TCP port for the two-VM link (default: a free one)
#   -D SECS    two VMs: start the second VM SECS seconds after the first
#   -R         two VMs: reverse the start order, vm1 (server, 10.0.0.2) starts
#              first and listens, vm0 (client, 10.0.0.1) connects
#   -g         boot with OUR device tree (guest.dts via mkdtb.sh, VM_ID = VM index,
#              NCPUS = -s) instead of QEMU's, with virtio-blk pinned to
#              virtio-mmio slot 0 (0x0a000000) and virtio-net to slot 1
#              (0x0a000200) as under the hypervisor; QEMU still fills in
#              /chosen bootargs + initrd and the memory size. Checks the template.
#   -k FILE    kernel Image  (default IMAGES_DIR/Image, or $GUEST_KERNEL)
#   -i FILE    initramfs     (default IMAGES_DIR/initramfs.cpio.gz, or $GUEST_INITRD)
#   -d FILE    disk image    (default IMAGES_DIR/disk.img); each VM boots a copy
#   -h         help
# Environment: QEMU (binary, default qemu-system-aarch64), QEMU_CPU (CPU model,
# default cortex-a72), QEMU_EXTRA (extra QEMU arguments for every VM, e.g.
# "-d guest_errors -D /tmp/q.log").
#
# Every VM has exactly the devices listed below: its one -netdev replaces the
# virt machine's default PCI NIC, and virtio-*-device on the virtio-mmio bus
# needs no option ROM, so no file from QEMU's firmware directories is used.
#
# Interactive mode (single VM, stdin is a terminal, no -e): QEMU runs in the
# foreground with -nographic; quit with Ctrl-A X. Otherwise (automatic mode)
# console lines are printed as they come ("[vmN] " prefixed with two VMs),
# then a summary with host-side boot times and checks; the exit status is 0
# only if every check passed.
set -euo pipefail

QEMU=${QEMU:-qemu-system-aarch64}
QEMU_CPU=${QEMU_CPU:-cortex-a72}
BASE_APPEND="console=ttyAMA0 earlycon=pl011,0x09000000 nokaslr"
NVMS=1 SMP=1 MEM=256M EXTRA="" TIMEOUT="" AUTO=0 LOGDIR="" PORT="" DELAY=0 REVERSE=0 OWNDTB=0
KERNEL=${GUEST_KERNEL:-} INITRD=${GUEST_INITRD:-} DISK=""

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
die() { echo "run-plain-qemu: ERROR: $*" >&2; exit 1; }

while getopts "n:s:m:a:t:el:p:D:Rgk:i:d:h" o; do
    case "$o" in
        n) NVMS=$OPTARG ;;
        s) SMP=$OPTARG ;;
        m) MEM=$OPTARG ;;
        a) EXTRA="$EXTRA $OPTARG" ;;
        t) TIMEOUT=$OPTARG ;;
        e) AUTO=1 ;;
        l) LOGDIR=$OPTARG ;;
        p) PORT=$OPTARG ;;
        D) DELAY=$OPTARG ;;
        R) REVERSE=1 ;;
        g) OWNDTB=1 ;;
        k) KERNEL=$OPTARG ;;
        i) INITRD=$OPTARG ;;
        d) DISK=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
IMAGES=${1:-}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] && EXTRA="$EXTRA $*"

case "$NVMS" in 1|2) ;; *) die "-n must be 1 or 2" ;; esac
[ -n "$IMAGES" ] || { [ -n "$KERNEL" ] && [ -n "$INITRD" ] && [ -n "$DISK" ]; } || usage
KERNEL=${KERNEL:-$IMAGES/Image}
INITRD=${INITRD:-$IMAGES/initramfs.cpio.gz}
DISK=${DISK:-$IMAGES/disk.img}
for f in "$KERNEL" "$INITRD" "$DISK"; do [ -f "$f" ] || die "missing $f (run build-images.sh first)"; done
command -v "$QEMU" >/dev/null || die "$QEMU not found"
DISK_MD5=""
[ -f "${DISK%.img}.md5" ] && DISK_MD5=$(cut -d' ' -f1 < "${DISK%.img}.md5")

# shellcheck disable=SC2086,SC2116  # squeeze whitespace
APPEND="$BASE_APPEND${EXTRA:+ $(echo $EXTRA)}"
HVTEST=""
for w in $APPEND; do case "$w" in hvtest=*) HVTEST=${w#hvtest=} ;; esac; done

if [ "$NVMS" = 1 ] && [ "$AUTO" = 0 ] && [ -t 0 ]; then
    INTERACTIVE=1
else
    INTERACTIVE=0
    TIMEOUT=${TIMEOUT:-300}
fi

FIRST=0
[ "$REVERSE" = 1 ] && FIRST=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/plain-qemu.XXXXXX")
LOGDIR=${LOGDIR:-$WORK}
mkdir -p "$LOGDIR"

mem_bytes() { # QEMU -m size (default unit MiB) -> bytes
    case "$1" in
        *[gG]) echo $(( ${1%[gG]} * 1024 * 1024 * 1024 )) ;;
        *[mM]) echo $(( ${1%[mM]} * 1024 * 1024 )) ;;
        *) echo $(( $1 * 1024 * 1024 )) ;;
    esac
}

qemu_args() { # VM index -> QEMU argv (one per line)
    local i=$1 blkbus="" netbus=""
    if [ "$OWNDTB" = 1 ]; then
        "$(dirname "$0")/mkdtb.sh" "$WORK/vm$i.dtb" "$i" "$SMP" none none "$APPEND" "$(mem_bytes "$MEM")" >&2 ||
            die "mkdtb.sh failed"
        printf '%s\n' -dtb "$WORK/vm$i.dtb"
        blkbus=",bus=virtio-mmio-bus.0" netbus=",bus=virtio-mmio-bus.1"
    fi
    printf '%s\n' -M virt,gic-version=3 -cpu "$QEMU_CPU" -smp "$SMP" -m "$MEM" \
        -nographic -no-reboot -nic none \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND" \
        -drive "file=$WORK/disk$i.img,format=raw,if=none,id=hd0" \
        -device "virtio-blk-device,drive=hd0$blkbus" \
        -device "virtio-net-device,netdev=net0,mac=52:54:00:00:00:0$((i + 1))$netbus" \
        -pidfile "$WORK/vm$i.pid"
    if [ "$NVMS" = 1 ]; then
        # No peer: a slirp stack cut off from the host and the outside world.
        printf '%s\n' -netdev user,id=net0,restrict=on
    elif [ "$i" = "$FIRST" ]; then
        printf '%s\n' -netdev "socket,id=net0,listen=127.0.0.1:$PORT"
    else
        printf '%s\n' -netdev "socket,id=net0,connect=127.0.0.1:$PORT"
    fi
    # shellcheck disable=SC2086
    [ -n "${QEMU_EXTRA:-}" ] && printf '%s\n' $QEMU_EXTRA
    return 0
}

# ---------------------------------------------------------------- interactive
if [ "$INTERACTIVE" = 1 ]; then
    cp "$DISK" "$WORK/disk0.img"
    mapfile -t args < <(qemu_args 0)
    echo "run-plain-qemu: interactive VM (Ctrl-A X quits), log: $LOGDIR/vm0.log" >&2
    set +e
    if [ -n "$TIMEOUT" ]; then
        timeout --foreground -k 5 "$TIMEOUT" "$QEMU" "${args[@]}" | tee "$LOGDIR/vm0.log"
    else
        "$QEMU" "${args[@]}" | tee "$LOGDIR/vm0.log"
    fi
    rc=${PIPESTATUS[0]}
    rm -f "$WORK/disk0.img"
    [ "$LOGDIR" = "$WORK" ] || rm -rf "$WORK"
    exit "$rc"
fi

# ---------------------------------------------------------------- automatic
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# console VM_INDEX START_TIME: copy QEMU's output to vmN.log, print it (prefixed with two
# VMs) and note when the marker lines arrive.
console() {
    local i=$1 t0=$2 prefix="" line log="$LOGDIR/vm$1.log"
    [ "$NVMS" = 2 ] && prefix="[vm$i] "
    : > "$log"
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >> "$log"
        printf '%s%s\n' "$prefix" "$line"
        case "$line" in
            GUEST-BOOT*) elapsed "$t0" > "$WORK/vm$i.t-boot" ;;
            GUEST-READY*) elapsed "$t0" > "$WORK/vm$i.t-ready" ;;
            HVTEST-DONE*) elapsed "$t0" > "$WORK/vm$i.t-done" ;;
        esac
    done
}

PIDS=()
cleanup() {
    local i p
    for i in $(seq 0 $((NVMS - 1))); do
        p=$(cat "$WORK/vm$i.pid" 2>/dev/null || true)
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f "$WORK"/disk*.img
    [ "$LOGDIR" = "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_vm() {
    local i=$1
    cp "$DISK" "$WORK/disk$i.img"
    mapfile -t args < <(qemu_args "$i")
    (timeout -k 5 "$TIMEOUT" "$QEMU" "${args[@]}" < /dev/null 2>&1; echo $? > "$WORK/vm$i.rc") |
        console "$i" "$EPOCHREALTIME" &
    PIDS+=($!)
}

port_listening() { # is 127.0.0.1:$1 in LISTEN state?
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}

echo "run-plain-qemu: logs in $LOGDIR, timeout ${TIMEOUT}s" >&2
if [ "$NVMS" = 2 ]; then
    if [ -z "$PORT" ]; then
        PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    echo "run-plain-qemu: 2 VMs, link 127.0.0.1:$PORT (vm$FIRST listens), append: $APPEND" >&2
    start_vm "$FIRST"
    for _ in $(seq 100); do port_listening "$PORT" && break; sleep 0.1; done
    port_listening "$PORT" || die "vm$FIRST QEMU is not listening on 127.0.0.1:$PORT"
    if [ "$DELAY" != 0 ]; then
        echo "run-plain-qemu: starting vm$((1 - FIRST)) in ${DELAY}s" >&2
        sleep "$DELAY"
    fi
    start_vm $((1 - FIRST))
else
    echo "run-plain-qemu: 1 VM, append: $APPEND" >&2
    start_vm 0
fi

want=t-ready
[ -n "$HVTEST" ] && want=t-done
while :; do
    all=1 exited=0
    for i in $(seq 0 $((NVMS - 1))); do
        [ -f "$WORK/vm$i.$want" ] || all=0
        [ -f "$WORK/vm$i.rc" ] && exited=1
    done
    [ "$all" = 1 ] && break
    [ "$exited" = 1 ] && sleep 1 && break     # one QEMU ended: let the other's output drain
    sleep 0.2
done
sleep 0.5
for i in $(seq 0 $((NVMS - 1))); do
    p=$(cat "$WORK/vm$i.pid" 2>/dev/null || true)
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()

# ---------------------------------------------------------------- summary
set +e
ok=1
check() { # CONDITION-RESULT MESSAGE
    if [ "$1" = 0 ]; then echo "  ok    $2"; else echo "  FAIL  $2"; ok=0; fi
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" "$1" | head -n 1; }
echo
echo "==== run-plain-qemu summary ($NVMS VM(s), -smp $SMP, append: $APPEND)"
for i in $(seq 0 $((NVMS - 1))); do
    log="$LOGDIR/vm$i.log"
    tb=$(cat "$WORK/vm$i.t-boot" 2>/dev/null || echo -)
    tr_=$(cat "$WORK/vm$i.t-ready" 2>/dev/null || echo -)
    td=$(cat "$WORK/vm$i.t-done" 2>/dev/null || echo -)
    echo "vm$i: host seconds from QEMU start: GUEST-BOOT $tb, GUEST-READY $tr_${HVTEST:+, HVTEST-DONE $td}  (log $log)"
    grep -E '^(GUEST-READY|BLK-|PEER-|PING-|NC-|HVTEST-|MODULES)' "$log" | sed 's/^/    /' || true
    grep -q '^GUEST-READY ' "$log"; check $? "vm$i GUEST-READY"
    ! grep -q '^MODLOAD FAIL' "$log"; check $? "vm$i modules loaded"
    if grep -q '^BLK-MD5 ' "$log"; then
        if [ -n "$DISK_MD5" ]; then
            [ "$(sed -n 's/^BLK-MD5 //p' "$log" | head -n 1)" = "$DISK_MD5" ]; check $? "vm$i BLK-MD5 = disk.md5"
        fi
        grep -q '^BLK-RW ok' "$log"; check $? "vm$i BLK-RW ok"
        grep -q '^BLK-RESTORE ok' "$log"; check $? "vm$i BLK-RESTORE ok"
        if [ -n "$DISK_MD5" ] && [ -f "$WORK/disk$i.img" ]; then
            [ "$(md5sum < "$WORK/disk$i.img" | cut -d' ' -f1)" = "$DISK_MD5" ]; check $? "vm$i disk copy unchanged on the host"
        fi
    fi
    if [ -n "$HVTEST" ]; then
        grep -q '^HVTEST-DONE .*result=ok' "$log"; check $? "vm$i HVTEST-DONE result=ok"
    fi
done
if [ "$NVMS" = 2 ] && [ "$HVTEST" = net ]; then
    c="$LOGDIR/vm0.log" s="$LOGDIR/vm1.log"
    grep -q '^PING-RESULT 5/5' "$c"; check $? "PING-RESULT 5/5"
    grep -q '^PING-BIG 3/3' "$c"; check $? "PING-BIG 3/3"
    grep -q '^PING-BIG-FROM-SERVER 3/3' "$s"; check $? "PING-BIG-FROM-SERVER 3/3"
    sb=$(grep '^NC-SENT' "$c" | head -n 1 > "$WORK/sent"; field "$WORK/sent" bytes)
    sm=$(field "$WORK/sent" md5); ss=$(field "$WORK/sent" seconds)
    rb=$(grep '^NC-RECV' "$s" | head -n 1 > "$WORK/recv"; field "$WORK/recv" bytes)
    rm_=$(field "$WORK/recv" md5)
    [ -n "$sb" ] && [ "$sb" != 0 ] && [ "$sb" = "$rb" ]; check $? "NC bytes sent=$sb received=$rb"
    [ -n "$sm" ] && [ "$sm" = "$rm_" ]; check $? "NC md5 sent=$sm received=$rm_"
    if [ -n "$ss" ] && [ -n "$sb" ]; then
        awk -v n="$sb" -v s="$ss" 'BEGIN { if (s > 0) printf "  rate  %.1f Mbit/s (%.2f MiB/s) over %s s\n", n*8/s/1e6, n/s/1048576, s }'
    fi
fi
if [ "$ok" = 1 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
[ "$ok" = 1 ]
