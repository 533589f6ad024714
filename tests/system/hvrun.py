#!/usr/bin/env python3
"""Run Linux guests under the hypervisor in QEMU: interactively, or as the
automated system tests behind `make test-linux` and `make test-multi-vm`.

Every run gets a directory under BUILD/run/NAME with the generated boot
configuration (hv.conf), one device tree per VM and the full console log.
QEMU is always bounded by a timeout and only the QEMU processes this script
started are ever killed.
"""

import argparse
import hashlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKDTB = os.path.join(ROOT, "guest", "linux", "mkdtb.sh")

# Host-physical staging addresses (src/platform.rs).
CONFIG_ADDR = 0x4400_0000
DTB_BASE = 0x4410_0000
DTB_STRIDE = 0x10_0000
KERNEL_ADDR = 0x4800_0000
INITRD_ADDR = 0x5000_0000
DISK_ADDR = 0x5800_0000
# Guest-physical placement (src/platform.rs).
GUEST_INITRD_GPA = 0x4800_0000
DEFAULT_MEM = 0x1000_0000
DEFAULT_BOOTARGS = "console=ttyAMA0 earlycon=pl011,0x09000000 nokaslr"
ESCAPE = b"\x1c"  # console escape key (Ctrl-\)
# The CPU model QEMU emulates (the Makefile passes QEMU_CPU).
DEFAULT_CPU = os.environ.get("QEMU_CPU") or "cortex-a72"


def log(msg):
    print(f"hvrun: {msg}", flush=True)


class RunConfig:
    """Everything one QEMU run needs."""

    def __init__(self, args, name, vms=None, vcpus=None, placement=None, append=None,
                 kernel=None, initrd=None, disk="default", smp=None, net_vlans=None,
                 net_rate_mbit=None, net_capture=None, vm_append=None, net_offloads=None):
        self.hv = args.hv
        self.build = args.build
        self.name = name
        self.vms = vms or args.vms
        self.vcpus = vcpus or args.vcpus
        self.placement = placement or args.placement
        self.kernel = kernel or args.kernel
        self.initrd = initrd if initrd is not None else args.initrd
        self.disk = args.disk if disk == "default" else disk
        self.mem = args.mem
        self.append = args.append if append is None else append
        # Extra kernel arguments of single VMs: {vm: "args"}.
        self.vm_append = vm_append or {}
        self.smp = smp or args.smp
        self.qemu = args.qemu
        self.cpu = args.cpu
        self.dir = os.path.join(self.build, "run", name)
        # The switch: per-VM VLANs and TX limits ("1,1,2", "0,50"), capture file.
        self.net_vlans = net_vlans if net_vlans is not None else getattr(args, "net_vlans", "")
        self.net_rate_mbit = (net_rate_mbit if net_rate_mbit is not None
                              else getattr(args, "net_rate_mbit", ""))
        self.net_capture = net_capture if net_capture is not None else getattr(args, "net_capture", "")
        self.net_offloads = (net_offloads if net_offloads is not None
                             else getattr(args, "net_offloads", ""))

    def bootargs(self, vm=None):
        extra = " ".join(filter(None, (self.append.strip(), self.vm_append.get(vm, "").strip())))
        return DEFAULT_BOOTARGS + (" " + extra if extra else "")

    def prepare(self):
        """Writes the device trees and the boot configuration; returns the
        QEMU command line."""
        os.makedirs(self.dir, exist_ok=True)
        for path, what in ((self.hv, "hypervisor image"), (self.kernel, "kernel Image")):
            if not path or not os.path.isfile(path):
                sys.exit(f"hvrun: {what} not found: {path}")
        if self.initrd and not os.path.isfile(self.initrd):
            sys.exit(f"hvrun: initramfs not found: {self.initrd}")
        if self.disk and not os.path.isfile(self.disk):
            sys.exit(f"hvrun: disk image not found: {self.disk}")
        initrd_size = os.path.getsize(self.initrd) if self.initrd else 0
        dtbs = []
        for vm in range(self.vms):
            dtb = os.path.join(self.dir, f"vm{vm}.dtb")
            initrd_end = "none" if not self.initrd else hex(GUEST_INITRD_GPA + initrd_size)
            cmd = [MKDTB, dtb, str(vm), str(self.vcpus), hex(GUEST_INITRD_GPA), initrd_end,
                   self.bootargs(vm), hex(self.mem)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"hvrun: building {dtb} failed:\n{res.stdout}{res.stderr}")
            dtbs.append(dtb)
        conf = [
            "hvconf=1",
            f"placement={self.placement}",
            f"vms={self.vms}",
            f"vcpus={self.vcpus}",
            f"mem={hex(self.mem)}",
            f"kernel={hex(KERNEL_ADDR)},{os.path.getsize(self.kernel)}",
        ]
        if self.initrd:
            conf.append(f"initrd={hex(INITRD_ADDR)},{initrd_size}")
        if self.disk:
            conf.append(f"disk={hex(DISK_ADDR)},{os.path.getsize(self.disk)}")
        for vm, dtb in enumerate(dtbs):
            conf.append(f"dtb{vm}={hex(DTB_BASE + vm * DTB_STRIDE)},{os.path.getsize(dtb)}")
        if self.net_vlans:
            conf.append(f"net_vlans={self.net_vlans}")
        if self.net_rate_mbit:
            conf.append(f"net_rate_mbit={self.net_rate_mbit}")
        if self.net_offloads:
            conf.append(f"net_offloads={self.net_offloads}")
        if self.net_capture:
            # QEMU opens it (semihosting), relative to its own directory:
            # the hypervisor gets an absolute path.
            path = os.path.abspath(self.net_capture)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            conf.append(f"net_capture={path}")
        conf_path = os.path.join(self.dir, "hv.conf")
        with open(conf_path, "wb") as f:
            f.write(("\n".join(conf) + "\n").encode() + b"\0")
        # `-nic none`: without it the virt machine adds a virtio-net-pci NIC
        # whose option ROM (efi-virtio.rom) must exist on the host; the
        # guests' network is the hypervisor's own virtio-net.
        qemu = [self.qemu, "-M", "virt,virtualization=on,gic-version=3", "-cpu", self.cpu,
                "-smp", str(self.smp), "-m", "2G", "-nographic", "-nic", "none", "-semihosting",
                "-kernel", self.hv]

        def loader(path, addr):
            return ["-device", f"loader,file={path},addr={hex(addr)},force-raw=on"]

        qemu += loader(conf_path, CONFIG_ADDR)
        for vm, dtb in enumerate(dtbs):
            qemu += loader(dtb, DTB_BASE + vm * DTB_STRIDE)
        qemu += loader(self.kernel, KERNEL_ADDR)
        if self.initrd:
            qemu += loader(self.initrd, INITRD_ADDR)
        if self.disk:
            qemu += loader(self.disk, DISK_ADDR)
        return qemu


class Console:
    """A QEMU process whose console is read line by line and logged."""

    def __init__(self, cmd, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.buf = b""
        self.pos = {}  # per-pattern search start

    def elapsed(self):
        return time.monotonic() - self.start

    def pump(self, timeout):
        """Reads whatever QEMU printed within `timeout` seconds; returns False
        at end of output."""
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return True
        data = os.read(self.proc.stdout.fileno(), 65536)
        if not data:
            return False
        self.buf += data
        self.log.write(data)
        self.log.flush()
        return True

    def text(self):
        return self.buf.decode("utf-8", "replace")

    def wait_for(self, pattern, timeout, since=0):
        """Waits until `pattern` (regex) appears in the output after byte
        offset `since`; returns the match or None on timeout/exit."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        while True:
            m = rx.search(self.buf, since)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.pump(min(left, 0.5)):
                m = rx.search(self.buf, since)
                return m

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def type_line(self, text, delay=0.02):
        """Types a command like a person would (byte by byte, the guest's
        UART FIFO is 32 bytes deep)."""
        for ch in text.encode():
            self.send(bytes([ch]))
            time.sleep(delay)
        self.send(b"\n")

    def focus(self, vm):
        self.send(ESCAPE + str(vm).encode())

    def exited(self):
        return self.proc.poll() is not None

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pump(0.2) and self.exited():
                break
            if self.exited():
                while self.pump(0.05):
                    if self.exited() and not select.select([self.proc.stdout], [], [], 0)[0]:
                        break
                break
        return self.proc.poll()

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        while self.pump(0):
            pass
        self.log.close()


class Check:
    """Collects test results; every check is counted, none is assumed."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.notes = []

    def ok(self, cond, what):
        if cond:
            self.passed += 1
            log(f"  ok   {what}")
        else:
            self.failed += 1
            log(f"  FAIL {what}")
        return cond

    def note(self, text):
        self.notes.append(text)
        log(f"  note {text}")


def expected_disk_md5(disk):
    md5 = hashlib.md5()
    with open(disk, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
    return md5.hexdigest()


def vm_line(vm, body):
    """Regex for a console line of VM `vm` containing `body` (a regex)."""
    return rf"\[vm{vm}\] {body}"


# Warnings a guest kernel prints with a call trace on some CPU models, under
# plain QEMU as well: Linux 6.1 complains once per DMA-capable device when the
# cache writeback granule exceeds its ARCH_DMA_MINALIGN of 128 bytes, as on
# the A64FX (256-byte lines). Not a fault of the hypervisor.
KNOWN_WARNINGS = [b"ARCH_DMA_MINALIGN smaller than CTR_EL0.CWG"]


def unexpected_call_traces(buf):
    """Kernel call traces in `buf` other than those of KNOWN_WARNINGS."""
    return buf.count(b"Call trace") - sum(buf.count(w) for w in KNOWN_WARNINGS)


def shell_status(con, vm, command, tag, pattern, timeout=30):
    """Types `command` into the focused shell of `vm`; returns its exit status
    (text, '?' if it never ended) and the first group of `pattern` in its
    output (None if absent)."""
    mark = len(con.buf)
    con.type_line(f"{command}; echo {tag}-RC-$?")
    rc = con.wait_for(vm_line(vm, rf"{tag}-RC-(\d+)"), timeout, since=mark)
    out = con.wait_for(vm_line(vm, pattern), 1, since=mark)
    return (rc.group(1).decode() if rc else "?"), (out.group(1).decode() if out else None)


def boot_single(args, check, vcpus, timeout, name=None):
    """Boots one VM with `vcpus` vCPUs and checks it end to end; returns
    the seconds from QEMU start to GUEST-READY (None if not reached)."""
    cfg = RunConfig(args, name or f"linux-{vcpus}cpu", vms=1, vcpus=vcpus, placement="timeslice")
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        m = con.wait_for(vm_line(0, r"GUEST-READY ip=(\S+) nproc=(\d+) "), timeout)
        if not check.ok(m is not None, f"{vcpus} vCPU: guest reached GUEST-READY within {timeout}s"):
            log(f"  console log: {con.log_path}")
            return
        ready = con.elapsed()
        check.note(f"{vcpus} vCPU: boot to GUEST-READY in {ready:.1f} s")
        nproc = int(m.group(2))
        check.ok(nproc == vcpus, f"{vcpus} vCPU: nproc in the guest is {nproc}")
        text = con.text()
        check.ok(re.search(vm_line(0, r"\[\s*[\d.]+\] virtio_blk virtio0"), text) is not None,
                 f"{vcpus} vCPU: Linux probed virtio_blk virtio0")
        check.ok(re.search(vm_line(0, r"VIRTIO-DEV virtio1 device=0x0001 .*driver=virtio_net"), text)
                 is not None, f"{vcpus} vCPU: Linux probed virtio_net virtio1")
        check.ok(m.group(1) == b"10.0.0.1", f"{vcpus} vCPU: eth0 up as {m.group(1).decode()}")
        if cfg.disk:
            md5 = re.search(vm_line(0, r"BLK-MD5 ([0-9a-f]{32})\r?\n"), text)
            want = expected_disk_md5(cfg.disk)
            check.ok(md5 is not None and md5.group(1) == want,
                     f"{vcpus} vCPU: /dev/vda checksum {md5.group(1) if md5 else 'missing'} == image {want}")
            check.ok(vm_line(0, "BLK-RW ok") in text or re.search(vm_line(0, "BLK-RW ok"), text),
                     f"{vcpus} vCPU: write and read-back of /dev/vda")
            check.ok(re.search(vm_line(0, "BLK-RESTORE ok"), text) is not None,
                     f"{vcpus} vCPU: restored block reads back")
        # Type into the shell: the console input path.
        con.wait_for(vm_line(0, r"[^\n]*# "), 30)
        time.sleep(0.5)
        mark = len(con.buf)
        con.type_line("uname -a; echo TYPED-$((40+2))")
        m2 = con.wait_for(vm_line(0, r"TYPED-42"), 30, since=mark)
        check.ok(m2 is not None, f"{vcpus} vCPU: typed command ran in the guest shell")
        # The dynamically linked tools in the image (glibc, loader, libraries).
        rc, ver = shell_status(con, 0, "iperf3 --version", "IPERF", r"iperf (3\.\d+)")
        check.ok(rc == "0" and ver is not None,
                 f"{vcpus} vCPU: iperf3 --version runs (version {ver or '?'}, exit {rc})")
        rc, feat = shell_status(con, 0, "ethtool -k eth0", "ETHTOOL", r"rx-checksumming: (on|off)")
        check.ok(rc == "0" and feat is not None,
                 f"{vcpus} vCPU: ethtool -k eth0 lists the features (rx-checksumming: {feat or '?'}, exit {rc})")
        check.ok(b"soft lockup" not in con.buf and b"rcu_sched detected stalls" not in con.buf
                 and unexpected_call_traces(con.buf) == 0,
                 f"{vcpus} vCPU: no soft lockup, RCU stall or kernel call trace")
        mark = len(con.buf)
        con.type_line("grep -E 'arch_timer|uart-pl011' /proc/interrupts")
        m3 = con.wait_for(vm_line(0, r"\s*\d+:\s+(\d+)(\s+\d+)*\s+GICv3\s+27 Level\s+arch_timer"), 30, since=mark)
        check.ok(m3 is not None and int(m3.group(1)) > 0, f"{vcpus} vCPU: timer interrupts counting")
    finally:
        con.close()
    if check.failed:
        log(f"  console log: {con.log_path}")
    return ready


def bad_image_case(args, check, name, mutate, expect):
    """Boots with a broken kernel image; the hypervisor must say what is
    wrong and exit with status 2 before any guest runs."""
    bad_dir = os.path.join(args.build, "run", name)
    os.makedirs(bad_dir, exist_ok=True)
    bad = os.path.join(bad_dir, "Image")
    shutil.copyfile(args.kernel, bad)
    with open(bad, "r+b") as f:
        mutate(f)
    cfg = RunConfig(args, name, vms=1, vcpus=1, placement="timeslice", kernel=bad)
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        status = con.wait_exit(60)
    finally:
        con.close()
    text = con.text()
    check.ok(status == 2, f"{name}: QEMU exit status {status} == 2")
    check.ok(re.search(expect, text) is not None, f"{name}: message matches /{expect}/")
    check.ok("[vm0]" not in text, f"{name}: no guest ran")
    if check.failed:
        log(f"  console log: {con.log_path}")


def cmd_test_linux(args):
    check = Check("test-linux")
    for vcpus in (1, 4):
        boot_single(args, check, vcpus, args.timeout)

    def wrong_magic(f):
        f.seek(0x38)
        f.write(b"XXXX")

    def too_large(f):
        f.seek(0x10)
        f.write((0x0800_0000).to_bytes(8, "little"))  # image_size = 128 MiB

    bad_image_case(args, check, "bad-magic", wrong_magic, r"FATAL: .*magic")
    bad_image_case(args, check, "too-large", too_large, r"FATAL: .*image_size")
    return finish(check)


def wait_all(con, check, vms, pattern, timeout, what):
    """Waits for `pattern` on every VM's console; returns the matches."""
    found = {}
    deadline = time.monotonic() + timeout
    for vm in range(vms):
        left = max(1, deadline - time.monotonic())
        m = con.wait_for(vm_line(vm, pattern), left)
        check.ok(m is not None, f"vm{vm}: {what}")
        found[vm] = m
    return found


def boot_to_shells(con, check, vms, timeout, label):
    """Waits until every VM reached GUEST-READY (each a counted check) and
    printed its shell prompt; False if one did not get ready."""
    ready = wait_all(con, check, vms, r"GUEST-READY ip=(\S+) ", timeout, f"{label}: GUEST-READY")
    if not all(ready.values()):
        return False
    for vm in range(vms):
        con.wait_for(vm_line(vm, r"[^\n]*# "), 30)
    return True


def typed(con, vm, command, expect, timeout=60):
    """Focuses `vm`, types `command` and waits for `expect` on its console."""
    mark = len(con.buf)
    con.focus(vm)
    focus = con.wait_for(rf"\[hv\] console focus: vm{vm}", 10, since=mark)
    mark = len(con.buf)
    time.sleep(0.3)
    con.type_line(command)
    return focus, con.wait_for(vm_line(vm, expect), timeout, since=mark)


# What `ethtool -k eth0` shows with every offload the device offers
# negotiated, and with none offered (NET_OFFLOADS=..,0) and
# `virtio_net.csum=0 virtio_net.gso=0`.
OFFLOADS_ON = {"rx-checksumming": "on", "tx-checksumming": "on", "tcp-segmentation-offload": "on"}
OFFLOADS_OFF = {"tx-checksumming": "off", "tcp-segmentation-offload": "off"}
NO_OFFLOAD_ARGS = "virtio_net.csum=0 virtio_net.gso=0"


def switch_counters(con, check, label):
    """Asks for the statistics (Ctrl-\\ s) and returns {port: {counter:
    value}} from the switch's drop and wait lines, or None."""
    mark = len(con.buf)
    con.send(ESCAPE + b"s")
    # A whole report that starts after the request (an earlier one may
    # still be printing).
    report = con.wait_for(rb"\[hv\] vswitch: [^\n]*\n(?:[^\n]*\n)*?\[hv\] mac table: learned", 20, since=mark)
    if report is None:
        check.ok(False, f"{label}: Ctrl-\\ s printed the switch counters")
        return None
    ports = {}
    text = report.group(0).decode(errors="replace")
    for m in re.finditer(r"\[hv\] port (\d+): [^\n]*\n\[hv\]\s+tx [^\n]*\n\[hv\]\s+drops: ([^\n]*)\n"
                         r"\[hv\]\s+tx paused by the rate limit (\d+) times, waited for a full receiver "
                         r"(\d+) times; segmented for this port (\d+)", text):
        drops = {k: int(v) for k, v in re.findall(r"([a-z-]+) (\d+)", m.group(2))}
        ports[int(m.group(1))] = {"drops": drops, "waited": int(m.group(4)), "segmented": int(m.group(5))}
    return ports


def net_pair_scenario(args, check, placement, vm_append=None, offloads=None, net_offloads=""):
    """Two VMs run the guest's `hvtest=net` script: pings both ways over
    IPv4 and IPv6, a full 1514-byte frame each way, iperf3 with 4 TCP
    streams for 8 s in each direction, then a 16 MiB TCP transfer whose
    md5 must match on both sides; the switch must have dropped nothing;
    then the console is switched between them. `vm_append` gives single
    VMs extra kernel arguments, `offloads` what each VM's ethtool must
    show ({vm: {feature: state}})."""
    label = f"2 VMs {placement}" + (" vm1 without offloads" if vm_append else "")
    name = f"multi-vm-{placement}" + ("-nooffload" if vm_append else "")
    cfg = RunConfig(args, name, vms=2, vcpus=1, placement=placement, vm_append=vm_append,
                    net_offloads=net_offloads,
                    append=("hvtest=net hviperf=1 hvtest_iperf=8 hvtest_iperf_r=1 hvipv6=1 "
                            + args.append).strip())
    offloads = offloads or {0: OFFLOADS_ON, 1: OFFLOADS_ON}
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        ready = wait_all(con, check, 2, r"GUEST-READY ip=(\S+) nproc=(\d+) ", args.timeout,
                         f"{label}: GUEST-READY")
        if not all(ready.values()):
            return
        check.note(f"{label}: both VMs at GUEST-READY after {con.elapsed():.1f} s")
        for vm in (0, 1):
            check.ok(ready[vm].group(1) == f"10.0.0.{vm + 1}".encode(),
                     f"{label}: vm{vm} eth0 is 10.0.0.{vm + 1} (got {ready[vm].group(1).decode()})")
            check.ok(re.search(vm_line(vm, r"VIRTIO-DEV virtio1 device=0x0001 .*driver=virtio_net"),
                               con.text()) is not None, f"{label}: vm{vm} probed virtio_net virtio1")
            shown = re.search(vm_line(vm, r"OFFLOADS ([^\r\n]*)"), con.text())
            line = shown.group(1) if shown else ""
            line = line.decode(errors="replace") if isinstance(line, bytes) else line
            got = dict(re.findall(r"([a-z-]+)=(\w+)", line))
            want = offloads.get(vm, {})
            check.ok(all(got.get(k) == v for k, v in want.items()),
                     f"{label}: vm{vm} ethtool -k shows " + ", ".join(f"{k} {v}" for k, v in want.items())
                     + f" (got {line.strip() if shown else 'no OFFLOADS line'})")
        ping = con.wait_for(vm_line(0, r"PING-RESULT (\d+)/5 rtt=(\S+)\r?\n"), 120)
        check.ok(ping is not None and ping.group(1) == b"5", f"{label}: vm0 ping -c 5 10.0.0.2 got 5/5")
        if ping:
            check.note(f"{label}: ping RTT min/avg/max {ping.group(2).decode()} ms")
        big = con.wait_for(vm_line(0, r"PING-BIG (\d+)/3\r?\n"), 60)
        check.ok(big is not None and big.group(1) == b"3", f"{label}: 1514-byte frames vm0 -> vm1 (ping -s 1472) 3/3")
        big1 = con.wait_for(vm_line(1, r"PING-BIG-FROM-SERVER (\d+)/3\r?\n"), 60)
        check.ok(big1 is not None and big1.group(1) == b"3", f"{label}: 1514-byte frames vm1 -> vm0 3/3")
        ping6 = con.wait_for(vm_line(0, r"PING6-RESULT (\d+)/3 rtt=(\S+)\r?\n"), 60)
        check.ok(ping6 is not None and ping6.group(1) == b"3", f"{label}: vm0 ping6 fd00::2 got 3/3")
        for suffix, direction in (("", "vm0 -> vm1"), ("-R", "vm1 -> vm0")):
            iperf = con.wait_for(vm_line(0, rf"IPERF-RESULT{suffix} rc=(\d+) streams=4 seconds=8 "
                                            r"sender_mbps=(\S+) receiver_mbps=(\S+) retransmits=(\S+)\r?\n"), 120)
            check.ok(iperf is not None and iperf.group(1) == b"0" and _positive(iperf.group(3)),
                     f"{label}: iperf3 -P 4 -t 8 {direction} completed "
                     f"({iperf.group(0).decode().strip() if iperf else 'no IPERF-RESULT within 120 s'})")
            ext = con.wait_for(vm_line(0, rf"IPERF-TCPEXT{suffix} loss_probes=(\d+) timeouts=(\d+) "
                                          r"spurious_rtos=(\d+)"), 10)
            if iperf:
                why = (f" (the sender's tail-loss probes {ext.group(1).decode()}, timeouts "
                       f"{ext.group(2).decode()}, of them spurious {ext.group(3).decode()})"
                       if ext and not suffix else "")
                check.note(f"{label}: iperf3 -P 4 {direction}: {iperf.group(3).decode()} Mbit/s received, "
                           f"{iperf.group(4).decode()} retransmits{why}")
            if iperf and not suffix:
                # Lossless switching: what the sender retransmitted were
                # tail-loss probes (an ACK late because the peer VM was not
                # running), never a segment the path lost.
                retr = int(iperf.group(4)) if iperf.group(4).isdigit() else -1
                probes, timeouts = (int(ext.group(1)), int(ext.group(2))) if ext else (-1, -1)
                check.ok(0 <= retr <= probes and timeouts == 0,
                         f"{label}: iperf3 {direction}: every retransmit a tail-loss probe, no timeout "
                         f"({retr} retransmits, {probes} probes, {timeouts} timeouts)")
        sent = con.wait_for(vm_line(0, r"NC-SENT bytes=(\d+) md5=([0-9a-f]+) seconds=([\d.]+)\r?\n"), 300)
        recv = con.wait_for(vm_line(1, r"NC-RECV bytes=(\d+) md5=([0-9a-f]+)\r?\n"), 120)
        ok = (sent is not None and recv is not None and int(sent.group(1)) >= 16 << 20
              and sent.group(1) == recv.group(1) and sent.group(2) == recv.group(2))
        check.ok(ok, f"{label}: 16 MiB TCP transfer arrived complete with the same md5 "
                     f"({sent.group(1).decode() if sent else '?'} / {recv.group(1).decode() if recv else '?'} bytes)")
        if sent:
            secs = float(sent.group(3))
            check.note(f"{label}: TCP transfer {int(sent.group(1)) / (1 << 20):.0f} MiB in {secs:.1f} s "
                       f"= {int(sent.group(1)) / (1 << 20) / max(secs, 0.001):.2f} MiB/s")
        for vm in (0, 1):
            done = con.wait_for(vm_line(vm, r"HVTEST-DONE role=\S+ result=(\w+)\r?\n"), 60)
            check.ok(done is not None and done.group(1) == b"ok", f"{label}: vm{vm} HVTEST-DONE result=ok")
        # The console: switch focus and type into each VM.
        con.wait_for(vm_line(1, r"[^\n]*# "), 30)
        for vm in (1, 0):
            focus, echo = typed(con, vm, f"echo FOCUS-$((40+{vm}))", rf"FOCUS-{40 + vm}")
            check.ok(focus is not None, f"{label}: Ctrl-\\ {vm} printed the focus change to vm{vm}")
            check.ok(echo is not None, f"{label}: typed command ran in vm{vm}")
        # The statistics command shows the switch's counters.
        mark = len(con.buf)
        con.send(ESCAPE + b"s")
        stats = con.wait_for(rb"\[hv\] port 1: .*\n\[hv\]\s+tx (\d+) frames \d+ bytes \| rx (\d+) frames", 20,
                             since=mark)
        check.ok(stats is not None and int(stats.group(1)) > 0 and int(stats.group(2)) > 10000,
                 f"{label}: Ctrl-\\ s prints switch counters (port 1 rx frames "
                 f"{stats.group(2).decode() if stats else '?'})")
        ports = switch_counters(con, check, label)
        if ports is not None:
            drops = {f"port {p} {k}": v for p, c in ports.items() for k, v in c["drops"].items() if v}
            check.ok(len(ports) == 2 and not drops,
                     f"{label}: the switch dropped nothing ({drops or 'all drop counters 0'}; "
                     f"senders waited {sum(c['waited'] for c in ports.values())} times)")
            if vm_append:
                seg = ports.get(1, {}).get("segmented", 0)
                check.ok(seg > 0, f"{label}: the switch segmented {seg} offload frames for vm1")
        check.ok(b"soft lockup" not in con.buf and b"Call trace" not in con.buf,
                 f"{label}: no soft lockup or kernel call trace")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")


def _positive(text):
    try:
        return float(text) > 0
    except (TypeError, ValueError):
        return False


def percentile(values, pct):
    """Nearest-rank percentile of `values` (non-empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# Two scheduler slices (10 ms each): the bound on a ping's RTT while the
# other VM is busy.
TWO_SLICES_MS = 20.0
HOG_PINGS = 100


def hog_phase(con, check, label, hog, pinger, load, load_name):
    """Starts `load` in VM `hog`'s shell, pings it from VM `pinger`, asks
    for the statistics, then stops the load."""
    mark = len(con.buf)
    _, pid = typed(con, hog, f"{load} & echo HOG-PID-$!", r"HOG-PID-(\d+)", 30)
    if not check.ok(pid is not None, f"{label}: {load_name} started in vm{hog}"):
        return
    time.sleep(1.0)  # the load is running
    dst = f"10.0.0.{hog + 1}"
    mark = len(con.buf)
    focus, summary = typed(con, pinger, f"ping -c {HOG_PINGS} -i 0.05 {dst}",
                           r"(\d+) packets transmitted, (\d+) packets received", 60 + HOG_PINGS)
    check.ok(focus is not None, f"{label}: the console switched to vm{pinger} while vm{hog} was busy")
    rtts = [float(m.group(1)) for m in re.finditer(
        vm_line(pinger, r"\d+ bytes from [\d.]+: seq=\d+ ttl=\d+ time=([\d.]+) ms").encode(),
        con.buf[mark:])]
    received = int(summary.group(2)) if summary else 0
    check.ok(summary is not None and received == HOG_PINGS and len(rtts) == HOG_PINGS,
             f"{label}: vm{pinger} pinged busy vm{hog} ({load_name}): {received}/{HOG_PINGS} replies, 0 lost")
    if rtts:
        p99 = percentile(rtts, 99)
        check.ok(p99 <= TWO_SLICES_MS,
                 f"{label}: RTT p99 {p99:.1f} ms <= two slices ({TWO_SLICES_MS:.0f} ms); "
                 f"median {percentile(rtts, 50):.1f} ms")
    # The console's own command while the load runs.
    mark = len(con.buf)
    con.send(ESCAPE + b"s")
    stats = con.wait_for(rf"\[hv\] vm{hog} exits: ", 10, since=mark)
    check.ok(stats is not None, f"{label}: Ctrl-\\ s answered while vm{hog} was busy")
    _, gone = typed(con, hog, f"kill {pid.group(1).decode()}; echo HOG-KILLED-$?", r"HOG-KILLED-(\d+)", 30)
    check.ok(gone is not None and gone.group(1) == b"0", f"{label}: {load_name} in vm{hog} stopped")


def busy_neighbour_scenario(args, check, placement):
    """Isolation under load: a busy VM (a shell busy loop, then a kernel-busy
    dd) must not freeze the other one: no lost pings, RTT within two
    slices, and the console answers; both ways round."""
    label = f"busy neighbour {placement}"
    cfg = RunConfig(args, f"busy-{placement}", vms=2, vcpus=1, placement=placement)
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        if not boot_to_shells(con, check, 2, args.timeout, label):
            return
        # Warm up ARP both ways so the first ping measures the scheduler.
        for src, dst in ((0, 2), (1, 1)):
            typed(con, src, f"ping -c 1 -W 5 10.0.0.{dst} >/dev/null; echo ARP-{src}-$?", rf"ARP-{src}-\d", 30)
        loads = (("while :; do :; done", "shell busy loop"),
                 ("dd if=/dev/zero of=/dev/null bs=1M", "kernel-busy dd"))
        for hog, pinger in ((1, 0), (0, 1)):
            for load, name in loads:
                hog_phase(con, check, label, hog, pinger, load, name)
        check.ok(b"soft lockup" not in con.buf and b"Call trace" not in con.buf,
                 f"{label}: no soft lockup or kernel call trace")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")


def three_vm_scenario(args, check):
    """Three VMs on two pCPUs (VM 0 and 2 time-slice on pCPU 0, VM 1 has
    pCPU 1): every pair can reach each other through the switch; then VM 2
    makes an access no device claims, is stopped, and the others go on."""
    label = "3 VMs per-pcpu"
    cfg = RunConfig(args, "three-vms", vms=3, vcpus=1, placement="per-pcpu")
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        ready = wait_all(con, check, 3, r"GUEST-READY ip=(\S+) ", args.timeout, f"{label}: GUEST-READY")
        if not all(ready.values()):
            return
        check.note(f"{label}: all VMs at GUEST-READY after {con.elapsed():.1f} s")
        for vm in range(3):
            con.wait_for(vm_line(vm, r"[^\n]*# "), 30)
        for src, dst in ((0, 3), (2, 2), (1, 3)):
            _, m = typed(con, src, f"ping -c 3 -W 2 10.0.0.{dst} | grep -o '[0-9] packets received'",
                         r"(\d) packets received\r?\n", 60)
            check.ok(m is not None and m.group(1) == b"3", f"{label}: vm{src} ping 10.0.0.{dst} 3/3")
        # VM 2 reads a guest-physical address no device claims.
        mark = len(con.buf)
        con.focus(2)
        time.sleep(0.3)
        con.type_line("devmem 0x0c000000 32")
        stop = con.wait_for(r"\[hv\] vm2 STOPPED: .*guest-physical 0xc000000, which no device claims", 30,
                            since=mark)
        check.ok(stop is not None, f"{label}: vm2's bad access is reported and vm2 stopped")
        _, alive = typed(con, 0, "ping -c 2 -W 2 10.0.0.2 | grep -o '[0-9] packets received'; echo STILL-$((6*7))",
                         r"STILL-42", 60)
        check.ok(alive is not None, f"{label}: vm0 keeps running after vm2 stopped")
        check.ok(re.search(vm_line(0, r"2 packets received"), con.text()[-4000:]) is not None,
                 f"{label}: vm0 still reaches vm1")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")


def reboot_scenario(args, check):
    """Per-VM lifecycle with two VMs on one pCPU: vm0 pings vm1 all along;
    vm1 writes a marker to /dev/vda and runs `reboot -f`: only vm1
    restarts, pings resume once it is back (the downtime is reported), the
    marker survived; then vm1 runs `poweroff -f` and vm0 keeps running;
    finally `Ctrl-\ k 0` stops vm0 and the run ends cleanly."""
    label = "reboot"
    cfg = RunConfig(args, "reboot", vms=2, vcpus=1, placement="timeslice")
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        if not boot_to_shells(con, check, 2, args.timeout, label):
            return
        marker = f"REBOOT-MARK-{os.getpid()}"
        _, wrote = typed(con, 1, f"echo {marker} | dd of=/dev/vda bs=512 seek=16000 conv=notrunc,fsync "
                                 f"2>/dev/null; sync; echo WROTE-$((40+2))", r"WROTE-42", 60)
        check.ok(wrote is not None, f"{label}: vm1 wrote a marker to /dev/vda")
        # vm0 pings vm1 five times a second, in the foreground, all along.
        _, first = typed(con, 0, "ping -i 0.2 10.0.0.2", r"64 bytes from 10\.0\.0\.2: seq=\d+", 60)
        check.ok(first is not None, f"{label}: vm0 pings vm1")
        mark = len(con.buf)
        con.focus(1)
        time.sleep(0.3)
        con.type_line("reboot -f")
        reset = con.wait_for(r"\[hv\] vm1 reset by its guest: restarting", 60, since=mark)
        t_reset = con.elapsed()
        check.ok(reset is not None, f"{label}: vm1's PSCI SYSTEM_RESET restarts vm1 only")
        done = con.wait_for(r"\[hv\] vm1 restarted \(restart 1, (\d+) ms\)", 60, since=mark)
        check.ok(done is not None, f"{label}: vm1 rebuilt by the hypervisor")
        if done:
            check.note(f"{label}: vm1 RAM cleared and images reloaded in {done.group(1).decode()} ms")
        again = con.wait_for(vm_line(1, r"GUEST-READY ip=10\.0\.0\.2 "), args.timeout, since=mark)
        t_ready = con.elapsed()
        check.ok(again is not None, f"{label}: vm1 booted again to GUEST-READY")
        check.ok(re.search(rb"\[hv\] vm0 (STOPPED|powered off|reset)", con.buf) is None,
                 f"{label}: vm0 never stopped")
        # vm0's ping: replies before the reboot, a gap, replies again.
        back = con.wait_for(vm_line(0, r"64 bytes from 10\.0\.0\.2: seq=\d+"), 60, since=again.end() if again else mark)
        check.ok(back is not None, f"{label}: vm0's pings are answered again after vm1 is back")
        seqs = [int(m) for m in re.findall(rb"\[vm0\] 64 bytes from 10\.0\.0\.2: seq=(\d+)", con.buf)]
        gaps = [b - a for a, b in zip(seqs, seqs[1:])]
        if back and gaps:
            missed = max(gaps) - 1
            check.ok(missed > 0, f"{label}: vm0's replies paused while vm1 restarted ({missed} pings missed)")
            check.note(f"{label}: ping downtime about {missed * 0.2:.1f} s ({missed} pings at 5/s unanswered); "
                       f"vm1 from reset to GUEST-READY in about {t_ready - t_reset:.1f} s")
        _, read = typed(con, 1, "dd if=/dev/vda bs=512 skip=16000 count=1 2>/dev/null | head -c 40; echo",
                        rf"{marker}", 60)
        check.ok(read is not None, f"{label}: vm1 reads back what it wrote to /dev/vda before the reboot")
        # vm1 powers off; vm0 keeps running.
        mark = len(con.buf)
        con.focus(1)
        time.sleep(0.3)
        con.type_line("poweroff -f")
        off = con.wait_for(r"\[hv\] vm1 powered off", 60, since=mark)
        check.ok(off is not None, f"{label}: vm1 powered off")
        con.focus(0)
        time.sleep(0.5)
        con.send(b"\x03")
        _, alive = typed(con, 0, "echo ALIVE-$((6*7))", r"ALIVE-42", 60)
        check.ok(alive is not None and not con.exited(), f"{label}: vm0 keeps running after vm1 powered off")
        mark = len(con.buf)
        con.send(ESCAPE + b"s")
        st0 = con.wait_for(r"\[hv\] vm0 state: running, restarts 0", 20, since=mark)
        st1 = con.wait_for(r"\[hv\] vm1 state: powered off, restarts 1", 20, since=mark)
        check.ok(st0 is not None and st1 is not None,
                 f"{label}: Ctrl-\\ s shows each VM's state and restart count")
        # Ctrl-\ k 0: the last VM stops and the run ends successfully.
        mark = len(con.buf)
        con.send(ESCAPE + b"k0")
        confirm = con.wait_for(r"\[hv\] console: stopping vm0", 20, since=mark)
        stopped = con.wait_for(r"\[hv\] vm0 stopped from the console", 20, since=mark)
        check.ok(confirm is not None and stopped is not None, f"{label}: Ctrl-\\ k 0 confirms and stops vm0")
        status = con.wait_exit(30)
        check.ok(status == 0 and re.search(rb"all VMs stopped \(0 unsuccessfully\)", con.buf) is not None,
                 f"{label}: the run ends when every VM is off (exit status {status})")
        check.note(f"{label}: scenario took {con.elapsed():.0f} s")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")


def pcapng_packets(path):
    """The Enhanced Packet Blocks of a pcapng file as (interface, length,
    comment); an independent reader for the capture checks."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    out, at = [], 0
    while at + 12 <= len(data):
        kind, total = struct.unpack_from("<II", data, at)
        if total < 12 or at + total > len(data):
            break
        if kind == 6:
            iface, _, _, caplen, _ = struct.unpack_from("<IIIII", data, at + 8)
            o, comment = at + 28 + (caplen + 3) // 4 * 4, ""
            while o + 4 <= at + total - 4:
                code, length = struct.unpack_from("<HH", data, o)
                if code == 0:
                    break
                if code == 1:
                    comment = data[o + 4:o + 4 + length].decode("utf-8", "replace")
                o += 4 + (length + 3) // 4 * 4
            out.append((iface, caplen, comment))
        at += total
    return out


def port_drops(text, port):
    """(vlan, vlan-tagged) drops of switch port `port` in the statistics text."""
    m = re.search(rf"\[hv\] port {port}: [^\n]*\n(?:\[hv\][^\n]*\n)*?\[hv\]\s+drops: [^\n]* vlan (\d+) "
                  rf"vlan-tagged (\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def vlan_capture_scenario(args, check):
    """Three VMs with NET_VLANS=1,1,2 and the capture on from boot: vm0
    reaches vm1 (VLAN 1) but not vm2 (VLAN 2), neither by ARP nor with a
    static ARP entry (those unicast frames are dropped and counted as
    `vlan`); Ctrl-\ c turns the capture off and reports the frames
    recorded, which `tcpdump -r` reads back: the echo requests and replies
    between 10.0.0.1 and 10.0.0.2, and as many frames as the switch saw."""
    label = "vlans+capture"
    cfg = RunConfig(args, "vlan-capture", vms=3, vcpus=1, placement="per-pcpu", net_vlans="1,1,2")
    capture = os.path.join(cfg.dir, "capture.pcapng")
    cfg.net_capture = capture
    if os.path.exists(capture):
        os.remove(capture)
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    off = None
    try:
        # Printed at boot, before the console prefixes hypervisor lines.
        on = con.wait_for(r"capture: on, every frame of the switch to (\S+) ", 60)
        check.ok(on is not None and on.group(1).decode() == os.path.abspath(capture),
                 f"{label}: capture opened at boot")
        ready = wait_all(con, check, 3, r"GUEST-READY ip=(\S+) ", args.timeout, f"{label}: GUEST-READY")
        if not all(ready.values()):
            return
        for vm in range(3):
            con.wait_for(vm_line(vm, r"[^\n]*# "), 30)
        received = r"(\d) packets received\r?\n"
        _, m = typed(con, 0, "ping -c 3 -W 2 10.0.0.2 | grep -o '[0-9] packets received'", received, 60)
        check.ok(m is not None and m.group(1) == b"3", f"{label}: vm0 -> vm1 (same VLAN) ping 3/3")
        _, m = typed(con, 0, "ping -c 2 -W 1 10.0.0.3 | grep -o '[0-9] packets received'", received, 60)
        check.ok(m is not None and m.group(1) == b"0", f"{label}: vm0 -> vm2 (other VLAN) ping 0/2 (no ARP answer)")
        _, m = typed(con, 0, "arp -s 10.0.0.3 52:54:00:00:00:03; ping -c 3 -W 1 10.0.0.3 | "
                             "grep -o '[0-9] packets received'", received, 60)
        check.ok(m is not None and m.group(1) == b"0",
                 f"{label}: vm0 -> vm2 with a static ARP entry: 0/3 (unicast across VLANs dropped)")
        _, m = typed(con, 2, "arp -s 10.0.0.1 52:54:00:00:00:01; ping -c 2 -W 1 10.0.0.1 | "
                             "grep -o '[0-9] packets received'", received, 60)
        check.ok(m is not None and m.group(1) == b"0", f"{label}: vm2 -> vm0 with a static ARP entry: 0/2")
        time.sleep(0.5)
        mark = len(con.buf)
        con.send(ESCAPE + b"c")
        off = con.wait_for(r"\[hv\] capture: off at switch frame (\d+); (\d+) frames recorded, (\d+) lost", 20,
                           since=mark)
        check.ok(off is not None and off.group(1) == off.group(2) and off.group(3) == b"0",
                 f"{label}: Ctrl-\\ c turned the capture off; every frame the switch saw was recorded "
                 f"({off.group(0).decode() if off else 'no report'})")
        mark = len(con.buf)
        con.send(ESCAPE + b"s")
        con.wait_for(r"\[hv\] mac table:", 20, since=mark)
        text = con.buf[mark:].decode("utf-8", "replace")
        check.ok(re.search(r"capture off", text) is not None and
                 re.search(r"\[hv\] port 2: mac-lock 52:54:00:00:00:03, vlan 2, rate unlimited", text) is not None,
                 f"{label}: Ctrl-\\ s shows the capture state and port 2 in VLAN 2")
        d0, d2 = port_drops(text, 0), port_drops(text, 2)
        check.ok(d0 is not None and d0[0] >= 3 and d2 is not None and d2[0] >= 2,
                 f"{label}: vlan drops counted on port 0 ({d0}) and port 2 ({d2})")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")
    if off is None or not os.path.exists(capture):
        check.ok(False, f"{label}: capture file {capture} written")
        return
    res = subprocess.run(["tcpdump", "-r", capture, "-n", "-tt"], capture_output=True, text=True)
    lines = res.stdout.splitlines()
    check.ok(res.returncode == 0, f"{label}: tcpdump -r reads the capture (exit {res.returncode}"
                                  f"{': ' + res.stderr.strip() if res.returncode else ''})")
    requests = [l for l in lines if "IP 10.0.0.1 > 10.0.0.2: ICMP echo request" in l]
    replies = [l for l in lines if "IP 10.0.0.2 > 10.0.0.1: ICMP echo reply" in l]
    check.ok(len(requests) >= 3 and len(replies) >= 3,
             f"{label}: tcpdump shows {len(requests)} echo requests 10.0.0.1 > 10.0.0.2 and "
             f"{len(replies)} replies")
    recorded = int(off.group(2))
    check.ok(len(lines) == recorded, f"{label}: tcpdump reads {len(lines)} frames, the switch counted {recorded}")
    packets = pcapng_packets(capture)
    vlan_drops = [p for p in packets if p[2] == "dropped: vlan"]
    check.ok(len(vlan_drops) >= 5 and {p[0] for p in vlan_drops} == {0, 2},
             f"{label}: the capture marks {len(vlan_drops)} frames 'dropped: vlan' on interfaces "
             f"{sorted({p[0] for p in vlan_drops})}")
    if lines:
        check.note(f"{label}: capture {os.path.getsize(capture)} bytes, {len(lines)} frames; first: {lines[0]}")


def rate_scenario(args, check):
    """Two VMs on their own pCPUs with vm1's transmit limited
    (NET_RATE_MBIT=0,N; N = --rate-test-mbit): iperf3 from vm1 stays
    within 15% of N Mbit/s and the limit shows in the statistics, without
    drops; iperf3 from vm0 (unlimited) runs clearly above N."""
    limit = args.rate_test_mbit
    label = f"rate 0,{limit}"
    cfg = RunConfig(args, "rate", vms=2, vcpus=1, placement="per-pcpu", net_rate_mbit=f"0,{limit}",
                    append=("hviperf=1 " + args.append).strip())
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    try:
        ready = wait_all(con, check, 2, r"IPERF-SERVER ok", args.timeout, f"{label}: iperf3 server up")
        if not all(ready.values()):
            return
        for vm in range(2):
            con.wait_for(vm_line(vm, r"[^\n]*# "), 30)
        sender = r"[^\n]* ([\d.]+) Mbits/sec\s+\d*\s*sender\r?\n"
        rates = {}
        for src, dst in ((1, 1), (0, 2)):
            _, m = typed(con, src, f"iperf3 -c 10.0.0.{dst} -t 6 -O 1 -f m | grep sender", sender, 60)
            rates[src] = float(m.group(1)) if m else None
        r1, r0 = rates[1], rates[0]
        check.ok(r1 is not None and abs(r1 - limit) <= 0.15 * limit,
                 f"{label}: vm1 (limited) sends at {r1} Mbit/s, within 15% of {limit}")
        check.ok(r0 is not None and r0 > 1.5 * limit,
                 f"{label}: vm0 (unlimited) sends at {r0} Mbit/s, above the limit")
        mark = len(con.buf)
        con.send(ESCAPE + b"s")
        con.wait_for(r"\[hv\] mac table:", 20, since=mark)
        text = con.buf[mark:].decode("utf-8", "replace")
        p1 = re.search(rf"\[hv\] port 1: [^\n]*, vlan 1, rate {limit} Mbit/s \(burst \d+ bytes\)", text)
        paused = re.search(r"\[hv\] port 1: [^\n]*\n(?:\[hv\][^\n]*\n)*?\[hv\]\s+tx paused by the rate limit (\d+) "
                           r"times", text)
        drops = re.search(r"\[hv\] port 1: [^\n]*\n(?:\[hv\][^\n]*\n)*?\[hv\]\s+drops: [^\n]* rate (\d+) ", text)
        check.ok(p1 is not None and paused is not None and int(paused.group(1)) > 0
                 and drops is not None and drops.group(1) == "0",
                 f"{label}: Ctrl-\\ s shows port 1's limit, {paused.group(1) if paused else '?'} pauses "
                 f"(backpressure) and {drops.group(1) if drops else '?'} rate drops")
        if r0 and r1:
            check.note(f"{label}: iperf3 vm1 {r1} Mbit/s (limit {limit}), vm0 {r0} Mbit/s")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")


def cmd_test_boot(args):
    """One Linux boot (`--vcpus` vCPUs) checked end to end."""
    check = Check("test-boot")
    boot_single(args, check, args.vcpus, args.timeout)
    return finish(check)


def cmd_test_multi_vm(args):
    check = Check("test-multi-vm")
    only = set(filter(None, args.only.split(",")))
    if not only or "net" in only:
        for placement in ("timeslice", "per-pcpu"):
            net_pair_scenario(args, check, placement)
    if not only or "nooffload" in only:
        # One VM without checksum or segmentation offload (its driver told
        # not to use them, its device not offering them): the switch
        # completes checksums and cuts the other's offload frames for it.
        net_pair_scenario(args, check, "per-pcpu", vm_append={1: NO_OFFLOAD_ARGS},
                          offloads={0: OFFLOADS_ON, 1: OFFLOADS_OFF}, net_offloads="1,0")
    if not only or "busy" in only:
        for placement in ("timeslice", "per-pcpu"):
            busy_neighbour_scenario(args, check, placement)
    if not only or "three" in only:
        three_vm_scenario(args, check)
    if not only or "reboot" in only:
        reboot_scenario(args, check)
    if not only or {"vlan", "capture"} & only:
        vlan_capture_scenario(args, check)
    if not only or "rate" in only:
        rate_scenario(args, check)
    return finish(check)


# QEMU CPU models `make test-cpus` runs on (QEMU 7.2): Armv8.0 cores to
# SVE, pointer authentication and BTI.
CPU_MODELS = ["cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "a64fx",
              "max,pauth-impdef=on"]


def vm_text(buf, vm):
    """What VM `vm` printed: its console lines without the prefix, joined
    without line breaks (on a loaded machine the console may break a line
    the VM is still writing, at any character)."""
    return b"".join(re.findall(rb"^\[vm%d\] ([^\r\n]*)" % vm, buf, re.M))


def wait_vm_text(con, vm, pattern, timeout):
    """Waits until `pattern` (bytes regex) matches VM `vm`'s own output;
    returns the match or None on timeout/exit."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, vm_text(con.buf, vm))
        left = deadline - time.monotonic()
        if m or left <= 0 or not con.pump(min(1.0, left)):
            return m


def ping_pair(args, check, name, timeout):
    """Two 1-vCPU VMs on one pCPU run the guest's hvtest=net with a 1 MiB
    transfer: both reach GUEST-READY, vm0 pings vm1 5/5, both report
    HVTEST-DONE ok. Returns the seconds until both were ready (or None)."""
    cfg = RunConfig(args, name, vms=2, vcpus=1, placement="timeslice",
                    append=("hvtest=net hvtest_mb=1 " + args.append).strip())
    con = Console(cfg.prepare(), os.path.join(cfg.dir, "console.log"))
    ready_s = None
    try:
        ready = wait_all(con, check, 2, r"GUEST-READY ip=(\S+) nproc=(\d+) ", timeout, "2 VMs: GUEST-READY")
        if not all(ready.values()):
            return None
        ready_s = con.elapsed()
        ping = con.wait_for(vm_line(0, r"PING-RESULT (\d+)/5 rtt=(\S+)\r?\n"), 120)
        check.ok(ping is not None and ping.group(1) == b"5", "2 VMs: vm0 ping -c 5 10.0.0.2 got 5/5")
        for vm in (0, 1):
            done = wait_vm_text(con, vm, rb"HVTEST-DONE role=\w+ result=(ok|fail)", 180)
            check.ok(done is not None and done.group(1) == b"ok", f"2 VMs: vm{vm} HVTEST-DONE result=ok")
        check.ok(unexpected_call_traces(con.buf) == 0 and re.search(rb"\[hv\] vm\d STOPPED", con.buf) is None,
                 "2 VMs: no kernel call trace, no VM stopped")
    finally:
        con.close()
        if check.failed:
            log(f"  console log: {con.log_path}")
    return ready_s


def cpu_cells(args, cpu, vcpu_counts):
    """Linux with each of `vcpu_counts` vCPUs, then the two-VM ping, on the
    QEMU CPU model `cpu`; returns [(what, passed, seconds to ready)]."""
    run_args = argparse.Namespace(**vars(args))
    run_args.cpu = cpu
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cpu).strip("-")
    cells = []
    for n in vcpu_counts:
        check = Check(f"{cpu} Linux {n} vCPU")
        log(f"-cpu {cpu}: Linux with {n} vCPU(s)")
        secs = boot_single(run_args, check, n, args.timeout, name=f"cpu-{slug}-linux-{n}cpu")
        cells.append((f"Linux {n} vCPU", check.failed == 0 and check.passed > 0, secs))
    check = Check(f"{cpu} 2-VM ping")
    log(f"-cpu {cpu}: two VMs on one pCPU, ping")
    secs = ping_pair(run_args, check, f"cpu-{slug}-ping", args.timeout)
    cells.append(("2-VM ping", check.failed == 0 and check.passed > 0, secs))
    return cells


def cpu_matrix(rows):
    """The result table: one row per CPU model, a cell per run with pass or
    FAIL and the seconds from QEMU start to GUEST-READY."""
    heads = [what for what, _, _ in rows[0][1]]
    table = [["CPU model"] + heads]
    for cpu, cells in rows:
        table.append([cpu] + [("pass" if ok else "FAIL") + (f" {secs:5.1f} s" if secs is not None else "")
                              for _, ok, secs in cells])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_test_cpus(args, models):
    counts = [int(n) for n in args.vcpu_counts.split(",") if n]
    rows = [(cpu, cpu_cells(args, cpu, counts)) for cpu in models]
    matrix = cpu_matrix(rows)
    path = os.path.join(args.build, "run", "cpu-matrix.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(matrix + "\n")
    print("\nboot seconds: QEMU start to GUEST-READY (both VMs for the ping)", flush=True)
    print(matrix, flush=True)
    failed = sum(not ok for _, cells in rows for _, ok, _ in cells)
    log(f"test-cpus: {len(rows)} CPU model(s), {failed} failed run(s) (matrix: {path})")
    return 0 if failed == 0 else 1


def cmd_run(args):
    cfg = RunConfig(args, args.name or f"interactive-{args.vms}vm-{args.vcpus}cpu")
    cmd = cfg.prepare() + args.qemu_extra.split()
    if args.print_cmd:
        print(" ".join(cmd))
        return 0
    log(f"{cfg.vms} VM(s), {cfg.vcpus} vCPU(s) each, placement {cfg.placement}")
    log("console: Ctrl-\\ then 0-9 focuses a VM, n next VM, s statistics, c capture on/off, r N restarts VM N, "
        "k N stops it, h help; Ctrl-A X quits QEMU")
    if cfg.net_capture:
        log(f"capture: every frame of the switch to {os.path.abspath(cfg.net_capture)} "
            f"(read it with tcpdump -r or wireshark)")
    log(f"boot configuration and device trees: {cfg.dir}")
    sys.stdout.flush()
    if args.timeout:
        cmd = ["timeout", "--foreground", str(args.timeout)] + cmd
    os.execvp(cmd[0], cmd)


def finish(check):
    log(f"{check.name}: {check.passed} passed, {check.failed} failed")
    for note in check.notes:
        log(f"{check.name}: {note}")
    return 0 if check.failed == 0 and check.passed > 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hv", required=True, help="hypervisor ELF")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", default="")
    ap.add_argument("--disk", default="")
    ap.add_argument("--append", default="", help="extra kernel command line for every VM")
    ap.add_argument("--vms", type=int, default=1, choices=range(1, 5), help="VMs (1-4)")
    ap.add_argument("--vcpus", type=int, default=1, choices=range(1, 5), help="vCPUs per VM (1-4)")
    ap.add_argument("--placement", default="timeslice", choices=["timeslice", "per-pcpu"])
    ap.add_argument("--mem", type=lambda s: int(s, 0), default=DEFAULT_MEM)
    ap.add_argument("--smp", type=int, default=2, help="QEMU (physical) CPUs")
    ap.add_argument("--qemu", default="qemu-system-aarch64")
    ap.add_argument("--cpu", default=DEFAULT_CPU, help="QEMU CPU model (default: $QEMU_CPU or cortex-a72)")
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--name", default="")
    ap.add_argument("--qemu-extra", default="", help="extra QEMU arguments (e.g. '-s' for gdb)")
    ap.add_argument("--only", default="",
                    help="test-multi-vm: comma-separated scenarios (net,nooffload,busy,three,reboot,capture,vlan,rate)")
    ap.add_argument("--net-capture", default="", help="run: write every frame of the switch to this file (pcapng)")
    ap.add_argument("--net-vlans", default="", help="run: access VLAN of each VM's port, e.g. 1,1,2")
    ap.add_argument("--net-rate-mbit", default="", help="run: transmit limit of each VM's port in Mbit/s, e.g. 0,50")
    ap.add_argument("--net-offloads", default="",
                    help="run: offer each VM checksum and segmentation offload (1) or not (0), e.g. 1,0")
    ap.add_argument("--rate-test-mbit", type=int, default=50,
                    help="test-multi-vm rate scenario: vm1's limit (below what the VMs reach unlimited)")
    ap.add_argument("--print-cmd", action="store_true", help="print the QEMU command instead of running it")
    ap.add_argument("--vcpu-counts", default="1,4", help="test-cpu(s): vCPU counts of the Linux boots")
    ap.add_argument("--models", default=" ".join(CPU_MODELS),
                    help="test-cpus: space-separated QEMU CPU models")
    ap.add_argument("command", choices=["run", "test-boot", "test-linux", "test-multi-vm", "test-cpu",
                                        "test-cpus"])
    args = ap.parse_args()
    args.initrd = args.initrd or None
    args.disk = args.disk or None
    if args.command != "run":
        # The tests set the switch's options per scenario.
        for knob, flag in (("net_capture", "NET_CAPTURE"), ("net_vlans", "NET_VLANS"),
                           ("net_rate_mbit", "NET_RATE_MBIT"), ("net_offloads", "NET_OFFLOADS")):
            if getattr(args, knob):
                log(f"{flag} applies to the run targets; {args.command} ignores it")
                setattr(args, knob, "")
    if args.command == "run":
        return cmd_run(args)
    if args.command in ("test-cpu", "test-cpus"):
        return cmd_test_cpus(args, [args.cpu] if args.command == "test-cpu" else args.models.split())
    return {"test-boot": cmd_test_boot, "test-linux": cmd_test_linux,
            "test-multi-vm": cmd_test_multi_vm}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
