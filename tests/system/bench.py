#!/usr/bin/env python3
"""`make bench`: boot time, inter-VM latency, inter-VM throughput and the
cost per frame under the hypervisor, each next to the same guest on plain
QEMU (no hypervisor) measured in the same invocation.

Setups (every one run --runs times, in alternating order, so that slow drift
of the machine affects hypervisor and baseline alike):

  boot-hv       1 VM under the hypervisor, QEMU start -> GUEST-READY
  boot-plain    the same kernel, initramfs and memory on plain QEMU
                (-M virt,gic-version=3 -cpu cortex-a72, QEMU's own DTB)
  pair-timeslice  2 VMs, both time-sliced on one pCPU, `hvtest=bench`
  pair-per-pcpu   2 VMs, one per pCPU, `hvtest=bench`
  pair-plain    2 plain QEMUs linked by -netdev socket on 127.0.0.1, `hvtest=bench`

In a pair, the guests' /init (hvtest=bench) pings 10.0.0.1 -> 10.0.0.2, then
each side prints BENCH-TCP-READY and waits for a line on its console: the
harness takes a snapshot of the hypervisor's counters (Ctrl-\\ s), types
"go" to the server and then to the client, the client sends --mb MiB with
busybox nc and the server counts and times them; after both report, a
second snapshot is taken and the difference gives exits and interrupts per
frame.

Output: a table on stdout, BUILD/bench/results.json (every raw sample,
medians, min/max, ratios, versions, machine load) and BUILD/bench/ratios.svg.
Every QEMU runs under `timeout` in its own process group; only those groups
are ever killed.
"""

import argparse
import datetime
import html
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hvrun import (  # noqa: E402
    DEFAULT_BOOTARGS,
    DEFAULT_MEM,
    ESCAPE,
    Console,
    RunConfig,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_REASONS = ("hvc", "smc", "mmio", "wfi", "wfe", "sysreg", "irq", "faults")
PAIRS = ("pair-timeslice", "pair-per-pcpu", "pair-plain")
PLACEMENT = {"pair-timeslice": "timeslice", "pair-per-pcpu": "per-pcpu"}
LABEL = {
    "boot-hv": "hypervisor",
    "boot-plain": "plain QEMU",
    "pair-timeslice": "hv timeslice",
    "pair-per-pcpu": "hv per-pcpu",
    "pair-plain": "plain QEMU",
}


def log(msg):
    print(f"bench: {msg}", flush=True)


class RunFailed(Exception):
    pass


# ───────────────────────────── guests and consoles ─────────────────────────────

class Guest:
    """One VM's console: a Console plus the prefix its lines carry
    (`[vmN] ` under the hypervisor, nothing on plain QEMU). `others` are
    further Consoles (the other plain QEMU) drained while waiting, so that
    no QEMU ever blocks on a full pipe."""

    def __init__(self, con, vm, prefixed, deadline, others=()):
        self.con = con
        self.vm = vm
        self.prefix = f"[vm{vm}] " if prefixed else ""
        self.deadline = deadline
        self.others = list(others)

    def wait(self, body, timeout, what):
        """Waits for a line `body` (regex, anchored at the line start after
        the prefix); raises RunFailed on timeout or QEMU exit."""
        end = min(time.monotonic() + timeout, self.deadline)
        # The whole line must be there: a match on a half-printed line
        # would cut a value short.
        rx = re.compile(rb"(?m)^" + re.escape(self.prefix).encode() + body.encode() + rb"[^\r\n]*\r?\n")
        alive = True
        while True:
            m = rx.search(self.con.buf)
            if m:
                return m
            if not alive or time.monotonic() >= end:
                break
            alive = self.con.pump(0.2)
            for other in self.others:
                drain(other)
        state = "QEMU exited" if self.con.exited() else f"not within {timeout:.0f} s"
        raise RunFailed(f"vm{self.vm}: no {what} ({state}); log: {self.con.log_path}")

    def type_go(self):
        self.con.type_line("go")


def drain(con):
    """Reads whatever `con` has printed, without waiting."""
    while True:
        before = len(con.buf)
        if not con.pump(0) or len(con.buf) == before:
            return


def start_console(cmd, log_path, limit):
    """Starts `cmd` under `timeout` (so it cannot outlive a killed harness)
    in its own process group (Console's start_new_session)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path + ".cmd", "w") as f:
        f.write(" ".join(cmd) + "\n")
    return Console(["timeout", "-k", "5", str(int(limit))] + cmd, log_path)


def plain_cmd(a, vm, netdev, append):
    # The -netdev replaces the virt machine's default PCI NIC (whose option ROM
    # would have to exist on the host); virtio-net-device needs no ROM.
    bootargs = DEFAULT_BOOTARGS + (" " + append if append else "")
    return [a.qemu, "-M", "virt,gic-version=3", "-cpu", a.cpu, "-smp", "1",
            "-m", f"{a.mem >> 20}M", "-nographic", "-no-reboot",
            "-kernel", a.kernel, "-initrd", a.initrd, "-append", bootargs,
            "-device", f"virtio-net-device,netdev=net0,mac=52:54:00:00:00:{vm + 1:02x}",
            "-netdev", netdev]


def hv_config(a, name, vms, placement, append):
    cfg = RunConfig(a, name, vms=vms, vcpus=1, placement=placement, append=append, disk=None)
    cfg.dir = os.path.join(a.out, "runs", name)
    return cfg


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port):
    want = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def bench_append(a):
    return (f"hvtest=bench hvtest_mb={a.mb} hvbench_pings={a.pings} "
            f"hvbench_interval={a.interval} hvbench_go=120 hvtest_wait=120")


# ───────────────────────────── hypervisor statistics ─────────────────────────────

MAC = r"[0-9a-fA-F:]{17}"
HV_LINES = [
    ("switch", r"vswitch: (?P<ports>\d+) ports, \d+/\d+ MAC entries, (?P<seen>\d+) frames seen, "
               r"(?P<unknown>\d+) from unknown ports"),
    ("port", rf"port (?P<port>\d+): (?:mac-lock {MAC}|open), ring \d+/\d+"),
    ("traffic", r"  tx (?P<tx_frames>\d+) frames (?P<tx_bytes>\d+) bytes \| rx (?P<rx_frames>\d+) frames "
                r"(?P<rx_bytes>\d+) bytes \(queued (?P<queued_frames>\d+) frames (?P<queued_bytes>\d+) bytes\)"),
    ("drops", r"  drops: too-short (?P<too_short>\d+) too-long (?P<too_long>\d+) malformed (?P<malformed>\d+) "
              r"mac-lock (?P<mac_lock>\d+) no-destination (?P<no_destination>\d+) ring-full (?P<ring_full>\d+) "
              r"no-room (?P<no_room>\d+) write-failed (?P<write_failed>\d+)"),
    ("mactable", r"mac table: learned \d+ moved \d+ evicted \d+"),
    ("macentry", rf"  {MAC} port \d+ age \d+"),
    ("exits", r"vm(?P<vm>\d+) exits: " + " ".join(rf"{r}=(?P<{r}>\d+)" for r in EXIT_REASONS)),
    ("vcpu", r"vm(?P<vm>\d+) vcpu(?P<vcpu>\d+): \w+(?: in-wfi)? pc=0x[0-9a-f]+ pending-irqs=\d+ "
             r"deliverable=(?:true|false) timer-ctl=0x[0-9a-f]+ picked=(?P<picks>\d+) "
             r"entries=(?P<entries>\d+)"),
    ("vgic", r"vm(?P<vm>\d+) vgic: delivered sgi=(?P<sgi>\d+) ppi=(?P<ppi>\d+) spi=(?P<spi>\d+); .*"),
    ("input", r"vm(?P<vm>\d+) console input: \d+ waiting, \d+ dropped \(the guest was not reading\)"),
    ("uart", r"vm(?P<vm>\d+) uart: tx (?P<tx>\d+) \(dropped \d+\), rx (?P<rx>\d+) \(overflow \d+, "
             r"empty reads \d+\), bad accesses \d+"),
    ("net", rf"vm(?P<vm>\d+) virtio-net: virtio-net port (?P<port>\d+) mac {MAC} (?:live|down), ring \d+/\d+"),
    ("transport", r"  resets=\d+ refused-status=\d+ refused-features=\d+ refused-queues=\d+ needs-reset=\d+ "
                  r"config-irq=(?P<config_irq>\d+) refused-regs=\d+ \(width=\d+ offset=\d+ direction=\d+ "
                  r"state=\d+ value=\d+\)"),
    ("queue", r"  q(?P<q>\d+): chains=(?P<chains>\d+) dropped=\d+ jumps=\d+ irq=(?P<irq>\d+) "
              r"suppressed=(?P<suppressed>\d+) malformed=\d+ \(index=\d+ long=\d+ unreadable=\d+ "
              r"indirect=\d+ flags=\d+ zero=\d+ range=\d+ order=\d+ overflow=\d+\)"),
]
HV_LINES = [(kind, re.compile(rx + r"$")) for kind, rx in HV_LINES]


def ints(m):
    return {k: int(v) for k, v in m.groupdict().items() if v is not None}


def parse_stats(text, vms):
    """Parses the `[hv] ` lines of one Ctrl-\\ s report. Returns (stats,
    None) or (None, reason). With one VM per pCPU, both pCPUs print at the
    same time and their fragments interleave inside lines; every line must
    therefore match its exact format and every expected line be present,
    otherwise the report is refused (and the caller asks again)."""
    sw, ports, vm = None, {}, {}
    ctx = None
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line.startswith("[hv] "):
            continue  # guest output between the report's lines
        body = line[5:]
        for kind, rx in HV_LINES:
            m = rx.match(body)
            if m:
                break
        else:
            return None, f"unrecognised line {body[:80]!r}"
        d = ints(m)
        if kind == "switch":
            if sw is not None:
                return None, "two switch reports"
            sw, ctx = d, ("switch",)
        elif kind == "port":
            ctx = ("port", d["port"])
            if d["port"] in ports:
                return None, "port listed twice"
            ports[d["port"]] = {}
        elif kind in ("traffic", "drops"):
            if ctx and ctx[0] == "port":
                target = ports[ctx[1]]
            elif ctx and ctx[0] == "net":
                target = vm[ctx[1]].setdefault("port", {})
            else:
                return None, f"{kind} line outside a port report"
            if kind in target:
                return None, f"{kind} line twice"
            target[kind] = d
        elif kind == "mactable":
            ctx = ("mac",)
        elif kind == "macentry":
            if ctx != ("mac",):
                return None, "MAC entry outside the MAC table"
        elif kind == "exits":
            v = d.pop("vm")
            if v in vm:
                return None, f"vm{v} reported twice"
            vm[v] = {"exits": d, "queues": {}}
            ctx = ("vm", v)
        elif kind in ("vcpu", "vgic", "input", "uart", "net"):
            v = d.pop("vm")
            if ctx is None or ctx[0] not in ("vm", "net") or ctx[1] != v:
                return None, f"vm{v} {kind} line out of place"
            vm[v][kind] = d
            if kind == "net":
                ctx = ("net", v)
        elif kind in ("transport", "queue"):
            if not ctx or ctx[0] != "net":
                return None, f"{kind} line outside a virtio-net report"
            if kind == "transport":
                vm[ctx[1]]["transport"] = d
            else:
                vm[ctx[1]]["queues"][d.pop("q")] = d
    # Completeness.
    if sw is None or sw["ports"] != vms:
        return None, "switch report missing"
    for p in range(vms):
        if set(ports.get(p, {})) != {"traffic", "drops"}:
            return None, f"switch port {p} incomplete"
    for v in range(vms):
        r = vm.get(v)
        if r is None or not {"exits", "uart", "net", "transport", "port"} <= set(r):
            return None, f"vm{v} report incomplete"
        if set(r["port"]) != {"traffic", "drops"}:
            return None, f"vm{v} port counters incomplete"
    consistent = all(ports[v]["traffic"] == vm[v]["port"]["traffic"] for v in range(vms))
    return {"switch": sw, "ports": ports, "vms": vm, "consistent": consistent}, None


def take_stats(con, vms, deadline, attempts=10):
    """Ctrl-\\ s until a clean report arrives; returns (stats, attempts)."""
    why = "no attempt"
    for attempt in range(1, attempts + 1):
        mark = len(con.buf)
        con.send(ESCAPE + b"s")
        end = min(time.monotonic() + 8, deadline)
        last_len, quiet_since = len(con.buf), time.monotonic()
        stats = None
        while time.monotonic() < end:
            con.pump(0.1)
            if len(con.buf) != last_len:
                last_len, quiet_since = len(con.buf), time.monotonic()
                continue
            if time.monotonic() - quiet_since < 0.5:
                continue
            text = con.buf[mark:].decode("utf-8", "replace")
            stats, why = parse_stats(text[: text.rfind("\n") + 1], vms)
            if stats is not None or time.monotonic() - quiet_since > 2:
                break
        if stats is not None:
            return stats, attempt
        time.sleep(0.2 + 0.3 * attempt)
    raise RunFailed(f"no clean Ctrl-\\ s report in {attempts} attempts (last: {why}); log: {con.log_path}")


def stats_delta(before, after, vms):
    """Counter differences over the TCP phase, summed over the VMs."""
    exits = {r: sum(after["vms"][v]["exits"][r] - before["vms"][v]["exits"][r] for v in range(vms))
             for r in EXIT_REASONS}
    queue_irqs = {}
    for v in range(vms):
        for q, qa in after["vms"][v]["queues"].items():
            qb = before["vms"][v]["queues"].get(q, {"irq": 0, "chains": 0, "suppressed": 0})
            key = f"q{q}"
            queue_irqs[key] = queue_irqs.get(key, 0) + qa["irq"] - qb["irq"]
    config = sum(after["vms"][v]["transport"]["config_irq"] - before["vms"][v]["transport"]["config_irq"]
                 for v in range(vms))
    delivered = sum(after["ports"][p]["traffic"]["rx_frames"] - before["ports"][p]["traffic"]["rx_frames"]
                    for p in range(vms))
    sent = sum(after["ports"][p]["traffic"]["tx_frames"] - before["ports"][p]["traffic"]["tx_frames"]
               for p in range(vms))
    entries = sum(after["vms"][v].get("vcpu", {}).get("entries", 0) - before["vms"][v].get("vcpu", {}).get("entries", 0)
                  for v in range(vms))
    injected = {k: sum(after["vms"][v].get("vgic", {}).get(k, 0) - before["vms"][v].get("vgic", {}).get(k, 0)
                       for v in range(vms))
                for k in ("sgi", "ppi", "spi")}
    return {
        "exits": exits,
        "exits_total": sum(exits.values()),
        "virtio_net_irqs": sum(queue_irqs.values()) + config,
        "virtio_net_irqs_by_queue": queue_irqs,
        "frames_forwarded": delivered,
        "frames_sent_to_switch": sent,
        "guest_entries": entries,
        "irqs_delivered": injected,
        "irqs_delivered_total": sum(injected.values()),
    }


# ───────────────────────────── the runs ─────────────────────────────

def time_boot(a, cmd, log_path, prefixed):
    """Boots one VM with `cmd` and times QEMU start -> GUEST-BOOT and
    -> GUEST-READY. `prefixed`: the console carries `[vm0] ` prefixes (under
    the hypervisor) or not (plain QEMU)."""
    con = start_console(cmd, log_path, a.timeout)
    try:
        g = Guest(con, 0, prefixed, time.monotonic() + a.timeout)
        g.wait(r"GUEST-BOOT", a.timeout, "GUEST-BOOT")
        t_boot = con.elapsed()
        m = g.wait(r"GUEST-READY ip=\S+ nproc=\d+ kernel=(\S+)", a.timeout, "GUEST-READY")
        t_ready = con.elapsed()
        prefix = rb"\[vm0\] " if prefixed else rb""
        up = re.search(rb"(?m)^" + prefix + rb"init: uptime=([\d.]+)s at GUEST-READY", con.buf)
        return {"ready_s": t_ready, "init_s": t_boot, "guest_uptime_s": float(up.group(1)) if up else None,
                "guest_kernel": m.group(1).decode(), "log": con.log_path}
    finally:
        con.close()


def boot_hv(a, name):
    cfg = hv_config(a, name, 1, "timeslice", a.append)
    return time_boot(a, cfg.prepare(), os.path.join(cfg.dir, "console.log"), True)


def boot_plain(a, name):
    d = os.path.join(a.out, "runs", name)
    cmd = plain_cmd(a, 0, "user,id=net0,restrict=on", a.append)
    return time_boot(a, cmd, os.path.join(d, "vm0.log"), False)


def netstat(guest, phase, timeout):
    m = guest.wait(rf"BENCH-NETSTAT role=\w+ phase={phase} rx_packets=(\d+) tx_packets=(\d+) irqs=(\d+) "
                   rf"dev=(\S+) uptime=([\d.]+)", timeout, f"BENCH-NETSTAT phase={phase}")
    return {"rx": int(m.group(1)), "tx": int(m.group(2)), "irqs": int(m.group(3)),
            "dev": m.group(4).decode(), "uptime": float(m.group(5))}


def pair_flow(a, client, server, hv_con=None):
    """Drives one hvtest=bench pair; `hv_con` is the hypervisor's console
    (None on plain QEMU). Returns the run's figures."""
    res = {}
    boot_t = a.timeout
    m = client.wait(r"GUEST-READY ip=10\.0\.0\.1 nproc=\d+ kernel=(\S+)", boot_t, "client GUEST-READY")
    res["guest_kernel"] = m.group(1).decode()
    server.wait(r"GUEST-READY ip=10\.0\.0\.2 ", boot_t, "server GUEST-READY")
    res["both_ready_s"] = (hv_con or client.con).elapsed()
    ping_t = 90 + a.pings * (float(a.interval) + 1.0)
    m = client.wait(r"BENCH-PING n=(\d+) received=(\d+) min=(\S+) avg=(\S+) max=(\S+)", ping_t, "BENCH-PING")
    n, rcv = int(m.group(1)), int(m.group(2))
    if rcv != n:
        raise RunFailed(f"ping: {rcv}/{n} answered; log: {client.con.log_path}")
    res["ping"] = {"n": n, "received": rcv, "min": float(m.group(3)), "avg": float(m.group(4)),
                   "max": float(m.group(5))}
    rtts = []
    for line in re.findall(rb"(?m)^" + re.escape(client.prefix).encode() + rb"BENCH-PING-RTT ([\d. ]+)",
                           client.con.buf):
        rtts += [float(x) for x in line.split()]
    res["ping"]["rtt_ms"] = rtts
    client.wait(r"BENCH-TCP-READY ", 60, "client BENCH-TCP-READY")
    server.wait(r"BENCH-TCP-READY ", 60, "server BENCH-TCP-READY")

    before = None
    if hv_con is not None:
        before, res["stats_attempts_before"] = take_stats(hv_con, 2, client.deadline)
        hv_con.focus(1)
        time.sleep(0.3)
    server.type_go()
    server.wait(r"BENCH-TCP-GO by=console", 30, "server BENCH-TCP-GO by=console")
    ns_server0 = netstat(server, "start", 30)
    if hv_con is not None:
        hv_con.focus(0)
        time.sleep(0.3)
    client.type_go()
    client.wait(r"BENCH-TCP-GO by=console", 30, "client BENCH-TCP-GO by=console")
    ns_client0 = netstat(client, "start", 30)
    tcp_t = 120 + a.mb * 10
    m = server.wait(r"BENCH-TCP bytes=(\d+) seconds=([\d.]+)", tcp_t, "BENCH-TCP")
    nbytes, secs = int(m.group(1)), float(m.group(2))
    ns_server1 = netstat(server, "end", 30)
    server.wait(r"BENCH-TCP-DONE", 30, "BENCH-TCP-DONE")
    m = client.wait(r"BENCH-TCP-SENT bytes=(\d+) seconds=([\d.]+)", 60, "BENCH-TCP-SENT")
    ns_client1 = netstat(client, "end", 30)
    want = a.mb << 20
    if nbytes != want or int(m.group(1)) != want:
        raise RunFailed(f"TCP: received {nbytes} of {want} bytes; log: {client.con.log_path}")
    res["tcp"] = {"bytes": nbytes, "seconds": secs, "mib_s": nbytes / (1 << 20) / max(secs, 0.01),
                  "sender_seconds": float(m.group(2))}
    if hv_con is not None:
        after, res["stats_attempts_after"] = take_stats(hv_con, 2, client.deadline)
        res["hv"] = stats_delta(before, after, 2)
        res["hv"]["snapshots_consistent"] = before["consistent"] and after["consistent"]
        res["hv"]["before"], res["hv"]["after"] = before, after
    guest = {
        "frames_sent": (ns_client1["tx"] - ns_client0["tx"]) + (ns_server1["tx"] - ns_server0["tx"]),
        "frames_received": (ns_client1["rx"] - ns_client0["rx"]) + (ns_server1["rx"] - ns_server0["rx"]),
        "irqs": (ns_client1["irqs"] - ns_client0["irqs"]) + (ns_server1["irqs"] - ns_server0["irqs"]),
        "netstat": {"client": [ns_client0, ns_client1], "server": [ns_server0, ns_server1]},
    }
    res["guest"] = guest
    for g in (client, server):
        d = g.wait(r"HVTEST-DONE role=\w+ result=(\w+)", 30, "HVTEST-DONE")
        if d.group(1) != b"ok":
            raise RunFailed(f"vm{g.vm}: HVTEST-DONE result={d.group(1).decode()}; log: {g.con.log_path}")
    return res


def pair_hv(a, name):
    cfg = hv_config(a, name, 2, PLACEMENT[name.split(".")[0]], (bench_append(a) + " " + a.append).strip())
    con = start_console(cfg.prepare(), os.path.join(cfg.dir, "console.log"), a.timeout)
    try:
        deadline = time.monotonic() + a.timeout
        res = pair_flow(a, Guest(con, 0, True, deadline), Guest(con, 1, True, deadline), hv_con=con)
        res["log"] = con.log_path
        return res
    finally:
        con.close()


def pair_plain(a, name):
    d = os.path.join(a.out, "runs", name)
    append = (bench_append(a) + " " + a.append).strip()
    port = free_port()
    cons = []
    try:
        deadline = time.monotonic() + a.timeout
        cons.append(start_console(plain_cmd(a, 0, f"socket,id=net0,listen=127.0.0.1:{port}", append),
                                  os.path.join(d, "vm0.log"), a.timeout))
        for _ in range(100):
            if port_listening(port) or cons[0].exited():
                break
            time.sleep(0.05)
        if not port_listening(port):
            raise RunFailed(f"plain QEMU vm0 is not listening on 127.0.0.1:{port}; log: {cons[0].log_path}")
        cons.append(start_console(plain_cmd(a, 1, f"socket,id=net0,connect=127.0.0.1:{port}", append),
                                  os.path.join(d, "vm1.log"), a.timeout))
        client = Guest(cons[0], 0, False, deadline, others=[cons[1]])
        server = Guest(cons[1], 1, False, deadline, others=[cons[0]])
        res = pair_flow(a, client, server)
        res["log"] = [c.log_path for c in cons]
        return res
    finally:
        for c in cons:
            c.close()


RUNNERS = {"boot-hv": boot_hv, "boot-plain": boot_plain,
           "pair-timeslice": pair_hv, "pair-per-pcpu": pair_hv, "pair-plain": pair_plain}


# ───────────────────────────── host facts ─────────────────────────────

def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def other_qemus():
    """QEMU processes on the machine that this harness did not start."""
    mine = {os.getpid()}
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in mine:
            continue
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            if not comm.startswith("qemu-system"):
                continue
            stat = open(f"/proc/{pid}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parent = open(f"/proc/{ppid}/stat").read().rsplit(")", 1)[1].split()
            if int(parent[1]) == os.getpid():  # our `timeout` wrapper's child
                continue
            found.append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return found


def cmd_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def host_facts(a):
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "qemu": cmd_out([a.qemu, "--version"]).splitlines()[0] if cmd_out([a.qemu, "--version"]) else "?",
        "host_kernel": platform.release(),
        "host_cpus": os.cpu_count(),
        "host_cpu_model": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                                if ln.startswith("model name")), "?") if os.path.exists("/proc/cpuinfo") else "?",
        "python": platform.python_version(),
        "hypervisor_commit": cmd_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "hypervisor_dirty": bool(cmd_out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])),
        "hypervisor_elf": a.hv,
        "kernel_image": a.kernel,
        "initramfs": a.initrd,
    }


# ───────────────────────────── figures ─────────────────────────────

def summary(samples):
    s = [x for x in samples if x is not None]
    if not s:
        return {"samples": [], "n": 0, "median": None, "min": None, "max": None}
    return {"samples": s, "n": len(s), "median": statistics.median(s), "min": min(s), "max": max(s)}


def ratio(num, den, paired_num=None, paired_den=None):
    """Ratio of medians, plus the min..max of the per-repetition ratios
    (hypervisor and baseline of the same repetition)."""
    out = {"median_ratio": None, "paired": [], "paired_min": None, "paired_max": None}
    if num["median"] is not None and den["median"]:
        out["median_ratio"] = num["median"] / den["median"]
    if paired_num is not None:
        pr = [x / y for x, y in zip(paired_num, paired_den) if x is not None and y]
        if pr:
            out.update(paired=pr, paired_min=min(pr), paired_max=max(pr))
    return out


def per_rep(runs, unit, key, reps):
    out = []
    for r in range(reps):
        v = None
        for run in runs:
            if run["unit"] == unit and run["rep"] == r and run["ok"]:
                v = key(run["result"])
        out.append(v)
    return out


def figures(runs, reps):
    f = {}
    bh = per_rep(runs, "boot-hv", lambda x: x["ready_s"], reps)
    bp = per_rep(runs, "boot-plain", lambda x: x["ready_s"], reps)
    f["boot"] = {"unit": "s", "hv": summary(bh), "plain": summary(bp)}
    f["boot"]["ratio"] = ratio(f["boot"]["hv"], f["boot"]["plain"], bh, bp)

    lat = {"unit": "ms"}
    for p in PAIRS:
        lat[p] = {k: summary(per_rep(runs, p, lambda x, k=k: x["ping"][k], reps)) for k in ("min", "avg", "max")}
    base = per_rep(runs, "pair-plain", lambda x: x["ping"]["avg"], reps)
    for p in PAIRS[:2]:
        lat[p]["ratio_avg"] = ratio(lat[p]["avg"], lat["pair-plain"]["avg"],
                                    per_rep(runs, p, lambda x: x["ping"]["avg"], reps), base)
    f["latency"] = lat

    thr = {"unit": "MiB/s"}
    for p in PAIRS:
        thr[p] = summary(per_rep(runs, p, lambda x: x["tcp"]["mib_s"], reps))
    base = per_rep(runs, "pair-plain", lambda x: x["tcp"]["mib_s"], reps)
    for p in PAIRS[:2]:
        thr[p]["ratio"] = ratio(thr[p], thr["pair-plain"], per_rep(runs, p, lambda x: x["tcp"]["mib_s"], reps), base)
    f["throughput"] = thr

    cost = {}
    for p in PAIRS:
        c = {}

        def per(x, key):
            fr = x["hv"]["frames_forwarded"]
            return key(x["hv"]) / fr if fr else None

        if p != "pair-plain":
            c["frames_forwarded"] = summary(per_rep(runs, p, lambda x: x["hv"]["frames_forwarded"], reps))
            c["exits_per_frame"] = summary(per_rep(runs, p, lambda x: per(x, lambda h: h["exits_total"]), reps))
            c["exits_per_frame_by_reason"] = {
                r: summary(per_rep(runs, p, lambda x, r=r: per(x, lambda h: h["exits"][r]), reps))
                for r in EXIT_REASONS}
            c["virtio_irqs_per_frame"] = summary(
                per_rep(runs, p, lambda x: per(x, lambda h: h["virtio_net_irqs"]), reps))
            c["entries_per_frame"] = summary(per_rep(runs, p, lambda x: per(x, lambda h: h["guest_entries"]), reps))
            c["delivered_per_frame"] = summary(
                per_rep(runs, p, lambda x: per(x, lambda h: h["irqs_delivered_total"]), reps))
            c["delivered_per_frame_by_kind"] = {
                k: summary(per_rep(runs, p, lambda x, k=k: per(x, lambda h: h["irqs_delivered"][k]), reps))
                for k in ("sgi", "ppi", "spi")}
        c["guest_frames"] = summary(per_rep(runs, p, lambda x: x["guest"]["frames_sent"], reps))
        c["guest_irqs_per_frame"] = summary(per_rep(
            runs, p, lambda x: x["guest"]["irqs"] / x["guest"]["frames_sent"] if x["guest"]["frames_sent"] else None,
            reps))
        cost[p] = c
    base = per_rep(runs, "pair-plain", lambda x: x["guest"]["irqs"] / x["guest"]["frames_sent"]
                   if x["guest"]["frames_sent"] else None, reps)
    for p in PAIRS[:2]:
        cost[p]["guest_irqs_ratio"] = ratio(
            cost[p]["guest_irqs_per_frame"], cost["pair-plain"]["guest_irqs_per_frame"],
            per_rep(runs, p, lambda x: x["guest"]["irqs"] / x["guest"]["frames_sent"]
                    if x["guest"]["frames_sent"] else None, reps), base)
    f["cost"] = cost
    return f


# ───────────────────────────── output ─────────────────────────────

def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def cell(s, digits=2):
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} [{fmt(s['min'], digits)}..{fmt(s['max'], digits)}]"


def rcell(r):
    if r["median_ratio"] is None:
        return "n/a"
    out = f"{r['median_ratio']:.2f}x"
    if len(r["paired"]) > 1:
        out += f" [{r['paired_min']:.2f}..{r['paired_max']:.2f}]"
    return out


def table(f, meta):
    lines = []
    w = lines.append
    w("")
    w(f"make bench: {meta['runs']} run(s) per setup; each cell is median [min..max] over the runs;")
    w("ratio = hypervisor / plain QEMU: median of hypervisor / median of baseline [min..max of the per-run ratios]")
    w(f"{meta['qemu']}; guest kernel {meta.get('guest_kernel', '?')}; host {meta['host_kernel']}, "
      f"{meta['host_cpus']} CPUs; load avg {meta['loadavg_start']} -> {meta['loadavg_end']}; "
      f"other QEMUs running: {meta['other_qemus_start']} at start, {meta['other_qemus_end']} at end")
    w("")
    b = f["boot"]
    w("1. Boot: QEMU start -> GUEST-READY, 1 VM, 1 vCPU, 256 MiB (s, lower is better)")
    w(f"   {'hypervisor':<16}{cell(b['hv']):<28}")
    w(f"   {'plain QEMU':<16}{cell(b['plain']):<28}")
    w(f"   {'ratio':<16}{rcell(b['ratio'])}")
    w("")
    lat = f["latency"]
    w(f"2. Latency: ping 10.0.0.1 -> 10.0.0.2, {meta['pings']} pings every {meta['interval']} s (ms, lower is better)")
    w(f"   {'':<16}{'min':<24}{'avg':<24}{'max':<24}ratio avg")
    for p in PAIRS:
        r = rcell(lat[p]["ratio_avg"]) if "ratio_avg" in lat[p] else "(baseline)"
        w(f"   {LABEL[p]:<16}{cell(lat[p]['min'], 3):<24}{cell(lat[p]['avg'], 3):<24}{cell(lat[p]['max'], 3):<24}{r}")
    w("")
    thr = f["throughput"]
    w(f"3. Throughput: {meta['mb']} MiB over TCP (busybox nc), timed by the receiver (MiB/s, higher is better)")
    for p in PAIRS:
        r = rcell(thr[p]["ratio"]) if "ratio" in thr[p] else "(baseline)"
        w(f"   {LABEL[p]:<16}{cell(thr[p]):<28}{r}")
    w("")
    c = f["cost"]
    w("4. Cost per frame during the TCP run (go -> done; both VMs summed)")
    w(f"   {'':<36}{'hv timeslice':<26}{'hv per-pcpu':<26}{'plain QEMU'}")

    def row(label, getter, digits=2, plain=True):
        vals = []
        for p in PAIRS:
            if p == "pair-plain" and not plain:
                vals.append("-")
            else:
                vals.append(cell(getter(c[p]), digits))
        w(f"   {label:<36}{vals[0]:<26}{vals[1]:<26}{vals[2]}")

    row("frames forwarded (switch)", lambda x: x["frames_forwarded"], 0, plain=False)
    row("frames sent (guests' eth0)", lambda x: x["guest_frames"], 0)
    row("VM exits / frame", lambda x: x["exits_per_frame"], plain=False)
    for r in EXIT_REASONS:
        if any(c[p]["exits_per_frame_by_reason"][r]["median"] for p in PAIRS[:2]):
            row(f"  {r}", lambda x, r=r: x["exits_per_frame_by_reason"][r], 3, plain=False)
    row("virtio-net irqs injected / frame", lambda x: x["virtio_irqs_per_frame"], 3, plain=False)
    row("virtual irqs delivered / frame", lambda x: x["delivered_per_frame"], 3, plain=False)
    for k, label in (("spi", "devices (SPI)"), ("ppi", "timer (PPI)"), ("sgi", "IPIs (SGI)")):
        row(f"  {label}", lambda x, k=k: x["delivered_per_frame_by_kind"][k], 3, plain=False)
    row("virtio irqs seen by guests / frame", lambda x: x["guest_irqs_per_frame"], 3)
    w(f"   {'ratio of irqs seen by guests':<36}{rcell(c['pair-timeslice']['guest_irqs_ratio']):<26}"
      f"{rcell(c['pair-per-pcpu']['guest_irqs_ratio']):<26}(baseline)")
    w("   (plain QEMU has no hypervisor exits: '-')")
    return "\n".join(line.rstrip() for line in lines)


def svg_chart(f, path, meta):
    """A horizontal bar chart of the ratios on a log2 axis (1.0 = parity)."""
    bars = [("boot time", f["boot"]["ratio"], "lower"),
            ("ping avg, timeslice", f["latency"]["pair-timeslice"]["ratio_avg"], "lower"),
            ("ping avg, per-pcpu", f["latency"]["pair-per-pcpu"]["ratio_avg"], "lower"),
            ("TCP MiB/s, timeslice", f["throughput"]["pair-timeslice"]["ratio"], "higher"),
            ("TCP MiB/s, per-pcpu", f["throughput"]["pair-per-pcpu"]["ratio"], "higher"),
            ("guest irqs/frame, timeslice", f["cost"]["pair-timeslice"]["guest_irqs_ratio"], None),
            ("guest irqs/frame, per-pcpu", f["cost"]["pair-per-pcpu"]["guest_irqs_ratio"], None)]
    vals = [v for _, r, _ in bars for v in (r["median_ratio"], r["paired_min"], r["paired_max"]) if v]
    lo = min([0.25] + vals)
    hi = max([4.0] + vals)
    lo2, hi2 = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
    left, width, top, rowh = 230, 480, 70, 34
    height = top + rowh * len(bars) + 60

    def x(v):
        return left + (math.log2(v) - lo2) / (hi2 - lo2) * width

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">hypervisor / plain QEMU '
           f'(median of {meta["runs"]} runs; whiskers: per-run ratios)</text>',
           f'<text x="10" y="38" fill="#555">1x = same as plain QEMU; green: the hypervisor does better, '
           f'red: worse, blue: neither</text>',
           f'<text x="10" y="53" fill="#555" font-size="10">{html.escape(meta["date"])}; {html.escape(meta["qemu"])}; '
           f'load average {meta["loadavg_start"][0]} -&gt; {meta["loadavg_end"][0]}</text>']
    for e in range(lo2, hi2 + 1):
        v = 2.0 ** e
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 5}" x2="{x(v):.1f}" y2="{top + rowh * len(bars)}" '
                   f'stroke="{"#000" if e == 0 else "#ddd"}" stroke-width="{2 if e == 0 else 1}"/>')
        out.append(f'<text x="{x(v):.1f}" y="{top + rowh * len(bars) + 16}" text-anchor="middle">'
                   f'{v:g}x</text>')
    for i, (label, r, better) in enumerate(bars):
        y = top + i * rowh
        out.append(f'<text x="{left - 8}" y="{y + 20}" text-anchor="end">{html.escape(label)}</text>')
        out.append(f'<text x="{left - 8}" y="{y + 31}" text-anchor="end" fill="#888" font-size="10">'
                   f'{better + " is better" if better else "fewer = less work per frame"}</text>')
        v = r["median_ratio"]
        if not v:
            out.append(f'<text x="{x(1) + 6:.1f}" y="{y + 21}">n/a</text>')
            continue
        if better is None:
            colour = "#79b"
        else:
            colour = "#4a9" if ((v <= 1) if better == "lower" else (v >= 1)) else "#d75"
        x0, x1 = sorted((x(1), x(v)))
        out.append(f'<rect x="{x0:.1f}" y="{y + 8}" width="{max(x1 - x0, 1):.1f}" height="18" '
                   f'fill="{colour}"/>')
        if r["paired_min"] and r["paired_max"] and len(r["paired"]) > 1:
            out.append(f'<line x1="{x(r["paired_min"]):.1f}" y1="{y + 17}" x2="{x(r["paired_max"]):.1f}" '
                       f'y2="{y + 17}" stroke="#222" stroke-width="1.5"/>')
        out.append(f'<text x="{max(x1, x(r["paired_max"] or v)) + 6:.1f}" y="{y + 21}">{v:.2f}x</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


# ───────────────────────────── main ─────────────────────────────

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hv", required=True, help="hypervisor ELF")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default="", help="output directory (default BUILD/bench)")
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--append", default="", help="extra kernel command line for every VM")
    ap.add_argument("--runs", type=int, default=5, help="repetitions of every setup (default 5)")
    ap.add_argument("--mb", type=int, default=32, help="MiB per TCP transfer (default 32)")
    ap.add_argument("--pings", type=int, default=50)
    ap.add_argument("--interval", default="0.2", help="seconds between pings")
    ap.add_argument("--timeout", type=int, default=420, help="limit for one QEMU run, seconds")
    ap.add_argument("--mem", type=lambda s: int(s, 0), default=DEFAULT_MEM, help="guest RAM (bytes)")
    ap.add_argument("--qemu", default="qemu-system-aarch64")
    ap.add_argument("--cpu", default=os.environ.get("QEMU_CPU") or "cortex-a72")
    ap.add_argument("--only", default="", help="comma-separated setups to run (default all)")
    a = ap.parse_args()
    a.out = a.out or os.path.join(a.build, "bench")
    # What RunConfig reads from hvrun's argument namespace.
    a.vms, a.vcpus, a.placement, a.disk, a.smp = 1, 1, "timeslice", None, 2
    for path, what in ((a.hv, "hypervisor ELF"), (a.kernel, "kernel Image"), (a.initrd, "initramfs")):
        if not os.path.isfile(path):
            sys.exit(f"bench: {what} not found: {path}")
    if a.runs < 1 or a.mb < 1 or a.pings < 1:
        sys.exit("bench: --runs, --mb and --pings must be at least 1")
    os.makedirs(a.out, exist_ok=True)

    # SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` closes its QEMU.
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    units = ["boot-hv", "boot-plain", "pair-timeslice", "pair-per-pcpu", "pair-plain"]
    if a.only:
        units = [u for u in units if u in a.only.split(",")]
    meta = host_facts(a)
    meta.update(runs=a.runs, mb=a.mb, pings=a.pings, interval=float(a.interval), run_timeout_s=a.timeout,
                loadavg_start=loadavg(), other_qemus_start=len(other_qemus()))
    log(f"{a.runs} run(s) of {', '.join(units)}; {a.mb} MiB per transfer, {a.pings} pings every {a.interval} s; "
        f"output in {a.out}")
    log(f"{meta['qemu']}; load average {meta['loadavg_start']}; other QEMU processes: {meta['other_qemus_start']}")
    t_start = time.monotonic()
    runs = []
    try:
        for rep in range(a.runs):
            order = units if rep % 2 == 0 else units[::-1]
            for unit in order:
                for attempt in (1, 2):
                    name = f"{unit}.{rep + 1}" + ("" if attempt == 1 else "-retry")
                    run = {"unit": unit, "rep": rep, "attempt": attempt, "name": name,
                           "loadavg_before": loadavg(), "other_qemus_before": len(other_qemus())}
                    t0 = time.monotonic()
                    try:
                        run["result"] = RUNNERS[unit](a, name)
                        run["ok"] = True
                    except RunFailed as e:
                        run["ok"], run["error"] = False, str(e)
                    run["wall_s"] = time.monotonic() - t0
                    run["loadavg_after"] = loadavg()
                    runs.append(run)
                    if run["ok"]:
                        log(f"[{rep + 1}/{a.runs}] {name}: {brief(unit, run['result'])} "
                            f"({run['wall_s']:.0f} s, load {run['loadavg_after'][0]})")
                        break
                    log(f"[{rep + 1}/{a.runs}] {name}: FAILED: {run['error']}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); writing what was measured")
    meta.update(loadavg_end=loadavg(), other_qemus_end=len(other_qemus()),
                duration_s=round(time.monotonic() - t_start, 1))
    kernels = {r["result"].get("guest_kernel") for r in runs if r["ok"]} - {None}
    meta["guest_kernel"] = ", ".join(sorted(kernels)) or "?"
    f = figures(runs, a.runs)
    text = table(f, meta)
    print(text, flush=True)
    results = {"meta": meta, "figures": f, "runs": runs}
    jpath = os.path.join(a.out, "results.json")
    with open(jpath, "w") as fh:
        json.dump(results, fh, indent=1)
    with open(os.path.join(a.out, "table.txt"), "w") as fh:
        fh.write(text.lstrip("\n") + "\n")
    spath = os.path.join(a.out, "ratios.svg")
    svg_chart(f, spath, meta)
    failed = [r["name"] for r in runs if not r["ok"]]
    log(f"{len(runs)} runs in {meta['duration_s']:.0f} s, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}")
    log(f"wrote {jpath}, {os.path.join(a.out, 'table.txt')} and {spath}")
    missing = [u for u in units if not any(r["ok"] and r["unit"] == u for r in runs)]
    if missing:
        log(f"no successful run of: {', '.join(missing)}")
        return 1
    return 0


def brief(unit, r):
    if unit.startswith("boot"):
        return f"GUEST-READY after {r['ready_s']:.2f} s"
    s = f"ping avg {r['ping']['avg']:.3f} ms, TCP {r['tcp']['mib_s']:.2f} MiB/s"
    if "hv" in r:
        h = r["hv"]
        fr = h["frames_forwarded"] or 1
        s += (f", {h['exits_total'] / fr:.2f} exits and {h['virtio_net_irqs'] / fr:.3f} irqs per frame "
              f"(snapshots took {r['stats_attempts_before']}+{r['stats_attempts_after']} tries)")
    return s


if __name__ == "__main__":
    sys.exit(main())
