#!/usr/bin/env python3
"""`make bench`: boot time, inter-VM latency, iperf3 throughput and the cost
per frame under the hypervisor, each next to the same guest on plain QEMU
(no hypervisor) measured in the same invocation.

Setups (every one run --runs times, in alternating order, so that slow drift
of the machine affects hypervisor and baseline alike):

  exit-cost       VM exit round trips by kind (MMIO read/write, HVC, WFI
                  woken by the timer) next to a RAM read, in ns of counter
                  time: a tiny guest through the run loop (hypervisor-exitbench)
  boot-hv         1 VM under the hypervisor: QEMU start -> GUEST-READY, then
                  the hypervisor's VM exits by reason (Ctrl-\\ s)
  boot-plain      the same kernel, initramfs and memory on plain QEMU
                  (-M virt,gic-version=3 -cpu $QEMU_CPU, QEMU's own DTB)
  pair-timeslice  2 VMs time-sliced on one pCPU, `hvtest=bench`
  pair-per-pcpu   2 VMs, one per pCPU, `hvtest=bench`
  pair-plain      2 plain QEMUs linked by -netdev socket on 127.0.0.1, `hvtest=bench`

In a pair, the client's /init (10.0.0.1) runs the phases one after the
other (--phases): idle ping; iperf3 TCP 1 stream, reverse, UDP at a fixed
rate and unlimited; the nc integrity check; iperf3 TCP 4 streams; ping while
`iperf3 -R -P 4` runs. Before and after each phase it prints BENCH-WAIT and
waits for a line on its console: around the 4-stream run the harness takes
the hypervisor's counters (Ctrl-\\ s) and the guests' eth0 counters there.
The phases that can hang run last. A phase that fails (iperf3 exit status,
guest timeout, no output) is reported as failed with its log; a guest that
stops answering ends its setup after that phase's time limit, and the bench
goes on with the next setup.

Output: the table on stdout and in BUILD/bench/table.txt, BUILD/bench/
results.json (raw samples, iperf3 JSON summaries, counter snapshots),
BUILD/bench/ratios.svg and BUILD/bench/throughput.svg; per run, the console
logs, QEMU command lines and iperf3 JSON files in BUILD/bench/runs/<run>/.
Every QEMU runs under `timeout` in its own process group; only those groups
are ever killed.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_iperf import decode_block, keep, summarise  # noqa: E402
from bench_report import PLACEMENT, log, write_outputs  # noqa: E402
from bench_stats import StatsError, stats_delta, take_stats  # noqa: E402
from hvrun import DEFAULT_BOOTARGS, DEFAULT_MEM, Console, RunConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHASES = ("ping", "tcp1", "tcpR", "udp", "udp0", "nc", "tcp4", "load")
IPERF_PHASES = ("tcp1", "tcpR", "udp", "udp0", "tcp4", "load")
SNAPSHOT_PHASES = ("tcp4",)  # the hypervisor's counters are taken around these


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
        self.prefixed = prefixed
        self.prefix = f"[vm{vm}] " if prefixed else ""
        self.deadline = deadline
        self.others = list(others)

    def wait(self, body, timeout, what, since=0):
        """Waits for a whole line `body` (regex, anchored at the line start
        after the prefix) after byte `since` of the output; raises RunFailed
        on timeout or QEMU exit."""
        end = min(time.monotonic() + timeout, self.deadline)
        rx = re.compile(rb"(?m)^" + re.escape(self.prefix).encode() + body.encode() + rb"[^\r\n]*\r?\n")
        alive = True
        while True:
            m = rx.search(self.con.buf, since)
            if m:
                return m
            if not alive or time.monotonic() >= end:
                break
            alive = self.con.pump(0.2)
            for other in self.others:
                drain(other)
        state = "QEMU exited" if self.con.exited() else f"not within {timeout:.0f} s"
        raise RunFailed(f"vm{self.vm}: no {what} ({state}); log: {self.con.log_path}")

    def type(self, line):
        """Types `line` on this VM's console (switching the hypervisor's
        console input to this VM first)."""
        if self.prefixed and getattr(self.con, "bench_focus", 0) != self.vm:
            self.con.focus(self.vm)
            self.con.bench_focus = self.vm
            self.con.pump(0.3)
        self.con.type_line(line)


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
    # `-nic none`: no default PCI NIC (its option ROM need not exist on the
    # host); the guest's NIC is an MMIO virtio-net-device, which needs no ROM.
    bootargs = DEFAULT_BOOTARGS + (" " + append if append else "")
    return [a.qemu, "-M", "virt,gic-version=3", "-cpu", a.cpu, "-smp", "1",
            "-m", f"{a.mem >> 20}M", "-nographic", "-no-reboot", "-nic", "none",
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


def iperf_limit(a):
    """The guest's limit for one iperf3 run (init: IPERF_LIMIT)."""
    return a.time + a.omit + 30


def phase_budget(a, ph):
    """How long the harness waits for a phase before it gives the setup up."""
    if ph == "ping":
        return 60 + a.pings * (a.interval + 2)
    if ph == "nc":
        return 120 + a.mb * 10
    return iperf_limit(a) + 10 + 40


def run_limit(a):
    """Limit for one pair's QEMU run: boot plus every phase's budget."""
    if a.timeout:
        return a.timeout
    return 240 + sum(phase_budget(a, ph) + 150 for ph in a.phases)


def bench_append(a):
    return (f"hvtest=bench hvtest_mb={a.mb} hvbench_pings={a.pings} hvbench_interval={a.interval:g} "
            f"hvbench_time={a.time} hvbench_omit={a.omit} hvbench_udp={a.udp} "
            f"hvbench_phases={','.join(a.phases)} hvbench_go=300 hvbench_idle=1200 hvtest_wait=120")


# ───────────────────────────── boot ─────────────────────────────

def time_boot(a, con, prefixed):
    """Times QEMU start -> GUEST-BOOT and -> GUEST-READY of one VM."""
    g = Guest(con, 0, prefixed, time.monotonic() + a.boot_timeout)
    g.wait(r"GUEST-BOOT", a.boot_timeout, "GUEST-BOOT")
    t_boot = con.elapsed()
    m = g.wait(r"GUEST-READY ip=\S+ nproc=\d+ kernel=(\S+)", a.boot_timeout, "GUEST-READY")
    t_ready = con.elapsed()
    up = re.search(rb"(?m)^" + re.escape(g.prefix).encode() + rb"init: uptime=([\d.]+)s at GUEST-READY", con.buf)
    return {"ready_s": t_ready, "init_s": t_boot, "guest_uptime_s": float(up.group(1)) if up else None,
            "guest_kernel": m.group(1).decode(), "log": con.log_path}


def boot_hv(a, name):
    cfg = hv_config(a, name, 1, "timeslice", a.append)
    con = start_console(cfg.prepare(), os.path.join(cfg.dir, "console.log"), a.boot_timeout + 60)
    try:
        res = time_boot(a, con, True)
        # The hypervisor's counter timestamps (ms since the machine's reset):
        # its start, VMs built (RAM, images, devices), the first guest entry.
        m = re.search(rb"boot timing: started at (\d+) ms, VMs built at (\d+) ms", con.buf)
        e = re.search(rb"vm0: first guest entry at (\d+) ms", con.buf)
        if m and e:
            res["hv_start_ms"], res["vms_built_ms"] = int(m.group(1)), int(m.group(2))
            res["first_entry_ms"] = int(e.group(1))
        # Everything since the hypervisor started; taken right after
        # GUEST-READY (the idle shell adds timer exits until then).
        try:
            stats, res["stats_attempts"] = take_stats(con, 1, time.monotonic() + 60)
            res["hv"] = stats_delta(None, stats, 1)
            res["hv"]["taken_at_s"] = round(con.elapsed(), 2)
        except StatsError as e:
            res["hv_error"] = str(e)
        return res
    finally:
        con.close()


def boot_plain(a, name):
    d = os.path.join(a.out, "runs", name)
    cmd = plain_cmd(a, 0, "user,id=net0,restrict=on", a.append)
    con = start_console(cmd, os.path.join(d, "vm0.log"), a.boot_timeout + 60)
    try:
        return time_boot(a, con, False)
    finally:
        con.close()


def exit_cost(a, name):
    """Times VM exit round trips by kind: the exit-cost image (a tiny guest
    through the production run loop, three rounds), median per kind."""
    d = os.path.join(a.out, "runs", name)
    os.makedirs(d, exist_ok=True)
    cmd = ["timeout", "-k", "5", "300", a.qemu, "-M", "virt,virtualization=on,gic-version=3", "-cpu", a.cpu,
           "-smp", "2", "-m", "2G", "-nographic", "-nic", "none", "-semihosting",
           "-kernel", a.exitbench, "-append", str(a.exit_iterations)]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=360)
    out = p.stdout.decode(errors="replace")
    with open(os.path.join(d, "console.log"), "w") as fh:
        fh.write(out)
    if p.returncode != 0:
        raise RunFailed(f"exit-cost image failed with status {p.returncode} (log: {d}/console.log)")
    ns = {}
    for kind, v in re.findall(r"EXIT-COST round=\d+ kind=(\S+) iterations=\d+ ns=(\d+)", out):
        ns.setdefault(kind, []).append(int(v))
    if not ns:
        raise RunFailed(f"no EXIT-COST lines (log: {d}/console.log)")
    return {"ns": {k: sorted(v)[len(v) // 2] for k, v in ns.items()}, "iterations": a.exit_iterations,
            "log": os.path.join(d, "console.log")}


# ───────────────────────────── a pair ─────────────────────────────

NETSTAT = (r"BENCH-NETSTAT role=\w+ phase={tag} rx_packets=(\d+) tx_packets=(\d+) irqs=(\d+) "
           r"dev=(\S+) uptime=([\d.]+)")


def netstat(guest, tag, timeout):
    m = guest.wait(NETSTAT.format(tag=re.escape(tag)), timeout, f"BENCH-NETSTAT phase={tag}")
    return {"rx": int(m.group(1)), "tx": int(m.group(2)), "irqs": int(m.group(3)),
            "dev": m.group(4).decode(), "uptime": float(m.group(5))}


def ping_result(guest, phase, timeout):
    m = guest.wait(rf"BENCH-PING phase={phase} n=(\d+) received=(\d+) min=(\S+) avg=(\S+) max=(\S+)",
                   timeout, f"BENCH-PING phase={phase}")
    n, rcv = int(m.group(1)), int(m.group(2))

    def num(b):
        return None if b == b"none" else float(b)

    rtts = []
    for line in re.findall(rb"(?m)^" + re.escape(guest.prefix).encode() + rb"BENCH-PING-RTT phase=" +
                           phase.encode() + rb"((?: [\d.]+)+)\r?$", guest.con.buf):
        rtts += [float(x) for x in line.split()]
    return {"n": n, "received": rcv, "lost_percent": 100.0 * (n - rcv) / n if n else None,
            "min": num(m.group(3)), "avg": num(m.group(4)), "max": num(m.group(5)), "rtt_ms": rtts}


class Pair:
    """Drives one hvtest=bench pair through its phases; `hv` is the
    hypervisor's console (None on plain QEMU)."""

    def __init__(self, a, run_dir, client, server, hv=None):
        self.a, self.dir, self.client, self.server, self.hv = a, run_dir, client, server, hv
        self.res = {"boot": {}, "phases": {}, "aborted": None, "iperf_restarts": []}
        self.restart_iperf = False

    def snapshot(self, what):
        if self.hv is None:
            return None
        try:
            stats, tries = take_stats(self.hv, 2, self.client.deadline)
            self.res.setdefault("stats_attempts", {})[what] = tries
            return stats
        except StatsError as e:
            self.res.setdefault("stats_errors", []).append(f"{what}: {e}")
            return None

    def go(self):
        self.client.type("go")

    def server_netstat(self, tag):
        self.server.type(f"netstat {tag}")
        return netstat(self.server, tag, 60)

    def run(self):
        a, c, s = self.a, self.client, self.server
        m = c.wait(r"GUEST-READY ip=10\.0\.0\.1 nproc=\d+ kernel=(\S+)", a.boot_timeout, "client GUEST-READY")
        self.res["guest_kernel"] = m.group(1).decode()
        self.res["boot"]["client_ready_s"] = round(c.con.elapsed(), 3)
        s.wait(r"GUEST-READY ip=10\.0\.0\.2 ", a.boot_timeout, "server GUEST-READY")
        self.res["boot"]["both_ready_s"] = round(c.con.elapsed(), 3)
        current = None
        try:
            for i, ph in enumerate(a.phases):
                current = ph
                c.wait(rf"BENCH-WAIT phase={ph}(?=\r?\n)", 180 if i == 0 else 90, f"BENCH-WAIT phase={ph}")
                if i == 0 and self.hv is not None:
                    st = self.snapshot("boot")
                    if st is not None:
                        self.res["boot"]["hv"] = stats_delta(None, st, 2)
                t0 = time.monotonic()
                out = getattr(self, "phase_" + ("iperf" if ph in IPERF_PHASES else ph))(ph)
                out["wall_s"] = round(time.monotonic() - t0, 1)
                self.res["phases"][ph] = out
                log(f"  {ph}: {brief_phase(ph, out)} ({out['wall_s']:.0f} s)")
            current = "end"
            c.wait(r"BENCH-WAIT phase=end(?=\r?\n)", 90, "BENCH-WAIT phase=end")
            self.go()
            if "nc" in a.phases:
                s.wait(r"BENCH-NC-RECV ", 60, "BENCH-NC-RECV")
            s.type("end")
            for g in (c, s):
                d = g.wait(r"HVTEST-DONE role=\w+ result=(\w+)", 60, "HVTEST-DONE")
                self.res[f"vm{g.vm}_result"] = d.group(1).decode()
        except RunFailed as e:
            self.res["aborted"] = {"phase": current, "error": str(e)}
            if current in a.phases and current not in self.res["phases"]:
                self.res["phases"][current] = {"ok": False, "error": str(e)}
            for ph in a.phases:
                self.res["phases"].setdefault(ph, {"ok": False, "not_run": True,
                                                   "error": f"not run: the setup stopped in {current}"})
            log(f"  {current}: FAILED, setup stopped: {e}")
        return self.res

    def phase_ping(self, ph):
        self.go()
        p = ping_result(self.client, "idle", phase_budget(self.a, ph))
        out = {"ok": p["received"] == p["n"], "ping": p}
        if not out["ok"]:
            out["error"] = f"{p['received']}/{p['n']} pings answered; log: {self.client.con.log_path}"
        return out

    def phase_nc(self, ph):
        self.go()
        m = self.client.wait(r"BENCH-NC-SENT bytes=(\d+) md5=(\S+) seconds=([\d.]+) attempts=(\d+)",
                             phase_budget(self.a, ph), "BENCH-NC-SENT")
        r = self.server.wait(r"BENCH-NC-RECV bytes=(\d+) md5=(\S+) rc=(\d+)", 120, "BENCH-NC-RECV")
        sent = {"bytes": int(m.group(1)), "md5": m.group(2).decode(), "seconds": float(m.group(3)),
                "attempts": int(m.group(4))}
        recv = {"bytes": int(r.group(1)), "md5": r.group(2).decode(), "rc": int(r.group(3))}
        want = self.a.mb << 20
        ok = sent["bytes"] == recv["bytes"] == want and sent["md5"] == recv["md5"]
        out = {"ok": ok, "sent": sent, "received": recv, "md5_equal": sent["md5"] == recv["md5"],
               "mbps": want * 8 / 1e6 / sent["seconds"] if sent["seconds"] > 0 else None}
        if not ok:
            out["error"] = (f"nc: sent {sent['bytes']} bytes md5 {sent['md5']}, received {recv['bytes']} "
                            f"md5 {recv['md5']} (want {want}); log: {self.client.con.log_path}")
        return out

    def phase_iperf(self, ph):
        a, c = self.a, self.client
        snap = ph in SNAPSHOT_PHASES
        before = after = None
        ns = {}
        if self.restart_iperf:
            # The last iperf3 run failed: its server may still be busy with it.
            mark = len(self.server.con.buf)
            self.server.type("iperf-restart")
            m = self.server.wait(r"IPERF-SERVER (ok|fail)", 60, "IPERF-SERVER after iperf-restart", since=mark)
            self.res["iperf_restarts"].append({"before": ph, "result": m.group(1).decode()})
            self.restart_iperf = False
        if snap:
            before = self.snapshot(f"{ph}-start")
            ns["server-start"] = self.server_netstat(f"{ph}-start")
        self.go()
        out = {}
        if ph == "load":
            out["ping"] = ping_result(c, "load", phase_budget(a, ph))
        c.wait(rf"BENCH-WAIT phase={ph}-end(?=\r?\n)", phase_budget(a, ph), f"the end of iperf3 {ph}")
        if snap:
            after = self.snapshot(f"{ph}-end")
            ns["server-end"] = self.server_netstat(f"{ph}-end")
        self.go()
        c.wait(rf"BENCH-IPERF-END phase={ph}(?=\r?\n)", 180, f"BENCH-IPERF-END phase={ph}")
        blk = decode_block(c.con.buf, c.prefix, ph)
        if blk is None:
            raise RunFailed(f"iperf3 {ph}: incomplete output block; log: {c.con.log_path}")
        out.update(rc=blk["rc"], seconds=blk["seconds"], limit=blk["limit"], tries=blk["tries"])
        problems = []
        if blk["rc"] != 0:
            timed_out = blk["seconds"] is not None and blk["seconds"] >= blk["limit"] - 0.5
            problems.append(f"iperf3 exit status {blk['rc']} after {blk['seconds']} s"
                            + (f" (timed out: limit {blk['limit']} s)" if timed_out else ""))
        doc = blk["json"]
        if doc is None:
            problems.append(blk["problem"])
        else:
            path = os.path.join(self.dir, f"iperf3-{ph}.json")
            with open(path, "w") as fh:
                json.dump(doc, fh, indent=1)
            out["json_file"] = path
            out["summary"] = summarise(doc)
            out["iperf3"] = keep(doc)
            if doc.get("error"):
                problems.append(f"iperf3: {doc['error']}")
            elif not out["summary"]["complete"]:
                problems.append("iperf3 reported no end summary")
        out["ok"] = not problems
        self.restart_iperf = bool(problems)
        if problems:
            out["error"] = "; ".join(problems) + f"; log: {c.con.log_path}"
        if snap:
            ns["client-start"] = netstat(c, f"{ph}-start", 5)
            ns["client-end"] = netstat(c, f"{ph}-end", 5)
            out["guest"] = guest_counters(ns)
            if before is not None and after is not None:
                out["hv"] = stats_delta(before, after, 2)
                out["hv"]["snapshots_consistent"] = before["consistent"] and after["consistent"]
                out["hv_snapshots"] = {"before": before, "after": after}
        return out


def guest_counters(ns):
    """Frames and virtio interrupts both guests counted over a phase."""
    d = {k: (ns["client-end"][k] - ns["client-start"][k]) + (ns["server-end"][k] - ns["server-start"][k])
         for k in ("rx", "tx", "irqs")}
    return {"frames_sent": d["tx"], "frames_received": d["rx"], "irqs": d["irqs"], "netstat": ns}


def brief_phase(ph, out):
    if not out.get("ok"):
        return "FAILED: " + out.get("error", "?")
    if ph == "ping":
        return f"RTT avg {out['ping']['avg']:.3f} ms"
    if ph == "nc":
        return f"{out['sent']['bytes']} bytes, md5 equal, {out['mbps']:.1f} Mbit/s"
    s = out["summary"]
    txt = f"{s['received_mbps']:.1f} Mbit/s received"
    if s["protocol"] == "TCP":
        txt += f", {s['retransmits']} retransmits"
    else:
        txt += f", {s['lost_percent']:.2f} % lost"
    if ph == "load":
        txt += f"; ping avg {out['ping']['avg']} ms, {out['ping']['received']}/{out['ping']['n']} answered"
    if "hv" in out:
        h = out["hv"]
        fr = h["frames_forwarded"] or 1
        txt += f"; {h['exits_total'] / fr:.2f} exits/frame"
    return txt


def pair_hv(a, name):
    cfg = hv_config(a, name, 2, PLACEMENT[name.split(".")[0]], (bench_append(a) + " " + a.append).strip())
    limit = run_limit(a)
    con = start_console(cfg.prepare(), os.path.join(cfg.dir, "console.log"), limit)
    try:
        deadline = time.monotonic() + limit
        res = Pair(a, cfg.dir, Guest(con, 0, True, deadline), Guest(con, 1, True, deadline), hv=con).run()
        res["log"] = con.log_path
        return res
    finally:
        con.close()


def pair_plain(a, name):
    d = os.path.join(a.out, "runs", name)
    append = (bench_append(a) + " " + a.append).strip()
    port = free_port()
    limit = run_limit(a)
    cons = []
    try:
        deadline = time.monotonic() + limit
        cons.append(start_console(plain_cmd(a, 0, f"socket,id=net0,listen=127.0.0.1:{port}", append),
                                  os.path.join(d, "vm0.log"), limit))
        for _ in range(100):
            if port_listening(port) or cons[0].exited():
                break
            time.sleep(0.05)
        if not port_listening(port):
            raise RunFailed(f"plain QEMU vm0 is not listening on 127.0.0.1:{port}; log: {cons[0].log_path}")
        cons.append(start_console(plain_cmd(a, 1, f"socket,id=net0,connect=127.0.0.1:{port}", append),
                                  os.path.join(d, "vm1.log"), limit))
        client = Guest(cons[0], 0, False, deadline, others=[cons[1]])
        server = Guest(cons[1], 1, False, deadline, others=[cons[0]])
        res = Pair(a, d, client, server).run()
        res["log"] = [c.log_path for c in cons]
        return res
    finally:
        for c in cons:
            c.close()


RUNNERS = {"exit-cost": exit_cost, "boot-hv": boot_hv, "boot-plain": boot_plain,
           "pair-timeslice": pair_hv, "pair-per-pcpu": pair_hv, "pair-plain": pair_plain}


# ───────────────────────────── host facts ─────────────────────────────

def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def other_qemus():
    """QEMU processes on the machine that this harness did not start."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if not open(f"/proc/{pid}/comm").read().startswith("qemu-system"):
                continue
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
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
    qemu = cmd_out([a.qemu, "--version"])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "qemu": qemu.splitlines()[0] if qemu else "?",
        "qemu_cpu": a.cpu,
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


def brief(unit, r):
    if unit == "exit-cost":
        return ", ".join(f"{k} {v} ns" for k, v in r["ns"].items())
    if unit.startswith("boot"):
        s = f"GUEST-READY after {r['ready_s']:.2f} s"
        if "hv" in r:
            s += f", {r['hv']['exits_total']} VM exits until {r['hv']['taken_at_s']:.1f} s"
        return s
    failed = [ph for ph, p in r["phases"].items() if not p.get("ok")]
    return (f"both ready after {r['boot'].get('both_ready_s', 0):.1f} s; "
            f"{len(r['phases']) - len(failed)} phases ok" + (f", failed: {', '.join(failed)}" if failed else ""))


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
    ap.add_argument("--mb", type=int, default=16, help="MiB of the nc integrity check (default 16)")
    ap.add_argument("--pings", type=int, default=50, help="pings of the idle latency phase (default 50)")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between pings (default 0.2)")
    ap.add_argument("--time", type=int, default=10, help="iperf3 -t, measured seconds (default 10)")
    ap.add_argument("--omit", type=int, default=2, help="iperf3 -O, warm-up seconds (default 2)")
    ap.add_argument("--udp", default="100M", help="iperf3 -b of the fixed-rate UDP phase (default 100M)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"client phases, in order (default {','.join(PHASES)})")
    ap.add_argument("--timeout", type=int, default=0,
                    help="limit for one pair's QEMU run, s (default: from the phases' limits)")
    ap.add_argument("--boot-timeout", type=int, default=240, help="limit for a boot to GUEST-READY, s")
    ap.add_argument("--mem", type=lambda s: int(s, 0), default=DEFAULT_MEM, help="guest RAM (bytes)")
    ap.add_argument("--qemu", default="qemu-system-aarch64")
    ap.add_argument("--cpu", default=os.environ.get("QEMU_CPU") or "cortex-a72", help="QEMU -cpu model")
    ap.add_argument("--exitbench", default="", help="exit-cost image (default: hypervisor-exitbench next to --hv)")
    ap.add_argument("--exit-iterations", type=int, default=5000, help="round trips per kind and round (default 5000)")
    ap.add_argument("--only", default="", help="comma-separated setups to run (default all)")
    ap.add_argument("--report", default="", metavar="RESULTS_JSON",
                    help="run nothing: print the table and draw the charts again from a results.json")
    if "--report" in sys.argv:
        for act in ap._actions:
            act.required = False
    a = ap.parse_args()
    if a.report:
        return report_again(a)
    a.out = a.out or os.path.join(a.build, "bench")
    a.exitbench = a.exitbench or os.path.join(os.path.dirname(a.hv), "hypervisor-exitbench")
    a.phases = [p for p in a.phases.split(",") if p]
    # What RunConfig reads from hvrun's argument namespace.
    a.vms, a.vcpus, a.placement, a.disk, a.smp = 1, 1, "timeslice", None, 2
    for path, what in ((a.hv, "hypervisor ELF"), (a.kernel, "kernel Image"), (a.initrd, "initramfs")):
        if not os.path.isfile(path):
            sys.exit(f"bench: {what} not found: {path}")
    bad = [p for p in a.phases if p not in PHASES]
    if bad or not a.phases:
        sys.exit(f"bench: unknown phase(s) {', '.join(bad)}; known: {', '.join(PHASES)}")
    if a.runs < 1 or a.mb < 1 or a.pings < 1 or a.time < 1 or a.omit < 0:
        sys.exit("bench: --runs, --mb, --pings and --time must be at least 1, --omit at least 0")
    os.makedirs(a.out, exist_ok=True)

    # SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` closes its QEMU.
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    units = ["exit-cost", "boot-hv", "boot-plain", "pair-timeslice", "pair-per-pcpu", "pair-plain"]
    if a.only:
        units = [u for u in units if u in a.only.split(",")]
    meta = host_facts(a)
    meta.update(runs=a.runs, mb=a.mb, pings=a.pings, interval=a.interval, iperf_time=a.time, iperf_omit=a.omit,
                udp_rate=a.udp, phases=a.phases, pair_run_limit_s=run_limit(a), iperf_limit_s=iperf_limit(a),
                loadavg_start=loadavg(), other_qemus_start=len(other_qemus()))
    log(f"{a.runs} run(s) of {', '.join(units)}; phases {','.join(a.phases)}; iperf3 -t {a.time} -O {a.omit}; "
        f"output in {a.out}")
    log(f"{meta['qemu']}, -cpu {a.cpu}; load average {meta['loadavg_start']}; "
        f"other QEMU processes: {meta['other_qemus_start']}")
    t_start = time.monotonic()
    runs = []
    try:
        for rep in range(a.runs):
            for unit in (units if rep % 2 == 0 else units[::-1]):
                name = f"{unit}.{rep + 1}"
                log(f"[{rep + 1}/{a.runs}] {name} ...")
                run = {"unit": unit, "rep": rep, "name": name,
                       "loadavg_before": loadavg(), "other_qemus_before": len(other_qemus())}
                t0 = time.monotonic()
                try:
                    run["result"] = RUNNERS[unit](a, name)
                    run["ok"] = True
                except RunFailed as e:
                    run["ok"], run["error"] = False, str(e)
                run["wall_s"] = round(time.monotonic() - t0, 1)
                run["loadavg_after"] = loadavg()
                runs.append(run)
                log(f"[{rep + 1}/{a.runs}] {name}: " +
                    (brief(unit, run["result"]) if run["ok"] else f"FAILED: {run['error']}") +
                    f" ({run['wall_s']:.0f} s, load {run['loadavg_after'][0]})")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); writing what was measured")
    meta.update(loadavg_end=loadavg(), other_qemus_end=len(other_qemus()),
                duration_s=round(time.monotonic() - t_start, 1))
    kernels = {r["result"].get("guest_kernel") for r in runs if r["ok"]} - {None}
    meta["guest_kernel"] = ", ".join(sorted(kernels)) or "?"
    return write_outputs(a, meta, runs)


def report_again(a):
    with open(a.report) as fh:
        res = json.load(fh)
    meta = res["meta"]
    a.runs, a.mb, a.pings, a.interval = meta["runs"], meta["mb"], meta["pings"], meta["interval"]
    a.time, a.omit, a.udp, a.phases = meta["iperf_time"], meta["iperf_omit"], meta["udp_rate"], meta["phases"]
    a.out = a.out or os.path.dirname(os.path.abspath(a.report))
    return write_outputs(a, meta, res["runs"])


if __name__ == "__main__":
    sys.exit(main())
