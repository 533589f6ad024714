"""The report of `make bench`: figures (medians, min..max, ratios hypervisor
/ plain QEMU) from the raw runs, the table, results.json and the two
charts. Also used alone by `bench.py --report results.json`."""

import json
import os
import statistics

from bench_stats import DROP_REASONS, EXIT_REASONS, IRQ_KINDS, LATER_DROP_REASONS
from bench_svg import ratio_chart, timeline_chart

PAIRS = ("pair-timeslice", "pair-per-pcpu", "pair-plain")
HV_PAIRS = PAIRS[:2]
PLACEMENT = {"pair-timeslice": "timeslice", "pair-per-pcpu": "per-pcpu"}
LABEL = {"boot-hv": "hypervisor", "boot-plain": "plain QEMU",
         "pair-timeslice": "hv timeslice", "pair-per-pcpu": "hv per-pcpu", "pair-plain": "plain QEMU"}
PHASE_TITLE = {"tcp1": "TCP, 1 stream", "tcp4": "TCP, 4 streams (-P 4)", "tcpR": "TCP, reverse (-R)",
               "udp": "UDP at {udp}", "udp0": "UDP unlimited (-b 0)", "load": "TCP -R -P 4 during the ping under load"}


def log(msg):
    print(f"bench: {msg}", flush=True)


# ───────────────────────────── figures ─────────────────────────────

def summary(samples):
    s = [x for x in samples if x is not None]
    if not s:
        return {"samples": [], "n": 0, "median": None, "min": None, "max": None}
    return {"samples": s, "n": len(s), "median": statistics.median(s), "min": min(s), "max": max(s)}


def ratio(num, den, paired_num, paired_den):
    """Ratio of medians, plus the min..max of the per-repetition ratios
    (hypervisor and baseline of the same repetition)."""
    out = {"median_ratio": None, "paired": [], "paired_min": None, "paired_max": None}
    if num["median"] is not None and den["median"]:
        out["median_ratio"] = num["median"] / den["median"]
    pr = [x / y for x, y in zip(paired_num, paired_den) if x is not None and y]
    if pr:
        out.update(paired=pr, paired_min=min(pr), paired_max=max(pr))
    return out


def dig(x, *path):
    for k in path:
        if isinstance(x, dict) and k in x:
            x = x[k]
        else:
            return None
    return x


def per_frame(key):
    def get(r):
        h = dig(r, "phases", "tcp4", "hv")
        v = key(h) if h else None
        return v / h["frames_forwarded"] if v is not None and h["frames_forwarded"] else None
    return get


# Bytes of a full-size Ethernet frame: the unit of "exits per frame's worth".
FULL_FRAME = 1514


def exits_per_full_frame(r):
    """VM exits per 1514 bytes forwarded during the 4-stream run."""
    h = dig(r, "phases", "tcp4", "hv")
    if not h or not h.get("bytes_forwarded"):
        return None
    return h["exits_total"] / (h["bytes_forwarded"] / FULL_FRAME)


def time_split(part):
    """During the 4-stream run, the share (%) of the pCPUs that ran the VMs
    spent idle, in the vCPUs' runs (the guest and the handling of each of
    its exits, frame copies included: the statistics' run-ms) or elsewhere
    in the hypervisor (scheduling, delivery into RX queues, housekeeping).
    A pCPU idle 95 % of the time or more ran no VM."""
    def get(r):
        h = dig(r, "phases", "tcp4", "hv")
        cpus = (h or {}).get("cpu_ms") or {}
        used = [c for c in cpus.values() if c["up_ms"] and c["idle_ms"] < 0.95 * c["up_ms"]]
        up = sum(c["up_ms"] for c in used)
        if not up:
            return None
        idle = 100 * sum(c["idle_ms"] for c in used) / up
        guest = min(100 * sum(h["guest_ms_by_vm"].values()) / up, 100 - idle)
        return {"idle": idle, "guest": guest, "hypervisor": 100 - idle - guest}[part]
    return get


def guest_irqs_per_frame(r):
    g = dig(r, "phases", "tcp4", "guest")
    return g["irqs"] / g["frames_sent"] if g and g["frames_sent"] else None


class Row:
    """One line of the table: `get(result)` of every column's run; `src`
    maps a column to the setup it is taken from (default: the column's own
    pair); `phase` failed -> no number (with strict) and a failure count."""

    def __init__(self, key, label, get, better=None, digits=2, phase=None, strict=True, src=None, hv_only=False):
        self.key, self.label, self.get, self.better, self.digits = key, label, get, better, digits
        self.phase, self.strict, self.src = phase, strict, src
        self.cols = tuple(src) if src else (HV_PAIRS if hv_only else PAIRS)


def rows(a):
    def ph(phase, *path):
        return lambda r: dig(r, "phases", phase, *path)

    out = {"boot": [
        Row("boot_1vm", "1 VM (1 vCPU): start -> GUEST-READY, s", lambda r: r["ready_s"], "lower",
            src={"pair-timeslice": "boot-hv", "pair-plain": "boot-plain"}),
        Row("boot_2vm", "2 VMs: start -> both GUEST-READY, s", lambda r: dig(r, "boot", "both_ready_s"), "lower"),
    ], "latency": [
        Row(f"ping_idle_{k}", f"idle {k}, ms", ph("ping", "ping", k), "lower", 3, "ping") for k in ("min", "avg", "max")
    ] + [
        Row(f"ping_load_{k}", f"under load {k}, ms", ph("load", "ping", k), "lower", 3, "load", strict=False)
        for k in ("min", "avg", "max")
    ] + [
        Row("ping_load_lost", "under load, pings lost %", ph("load", "ping", "lost_percent"), None, 1, "load",
            strict=False),
    ], "tcp": [], "udp": [], "cost": [], "integrity": [
        Row("nc_md5", f"nc {a.mb} MiB: md5 equal on both sides", lambda r: 1 if dig(r, "phases", "nc", "md5_equal")
            else None, None, 0, "nc"),
        Row("nc_mbps", "nc (busybox, not a net figure), Mbit/s", ph("nc", "mbps"), "higher", 1, "nc"),
    ]}
    for p, name in (("tcp1", "1 stream"), ("tcp4", "4 streams (-P 4)"), ("tcpR", "reverse (-R)"),
                    ("load", "-R -P 4 while pinging")):
        out["tcp"].append(Row(f"{p}_mbps", f"{name}, Mbit/s", ph(p, "summary", "received_mbps"), "higher", 1, p))
        out["tcp"].append(Row(f"{p}_retr", f"{name}, retransmits", ph(p, "summary", "retransmits"), None, 0, p))
    for p, name in (("udp", f"at {a.udp}bit/s"), ("udp0", "unlimited (-b 0)")):
        out["udp"].append(Row(f"{p}_sent", f"{name}: sent, Mbit/s", ph(p, "summary", "sent_mbps"), "higher", 1, p))
        out["udp"].append(Row(f"{p}_recv", f"{name}: received, Mbit/s", ph(p, "summary", "received_mbps"),
                              "higher", 1, p))
        out["udp"].append(Row(f"{p}_loss", f"{name}: lost %", ph(p, "summary", "lost_percent"), None, 2, p))
    c = out["cost"]
    c.append(Row("frames", "frames forwarded by the switch", ph("tcp4", "hv", "frames_forwarded"), None, 0, "tcp4",
                 hv_only=True))
    c.append(Row("guest_frames", "frames sent by the guests (eth0)", ph("tcp4", "guest", "frames_sent"), None, 0,
                 "tcp4"))
    c.append(Row("exits_pf", "VM exits / frame", per_frame(lambda h: h["exits_total"]), None, 3, "tcp4",
                 hv_only=True))
    c.append(Row("exits_p1514", "VM exits / 1514 bytes forwarded", exits_per_full_frame, None, 3, "tcp4",
                 hv_only=True))
    for r in EXIT_REASONS:
        c.append(Row(f"exits_pf_{r}", f"  {r}", per_frame(lambda h, r=r: h["exits"][r]), None, 3, "tcp4",
                     hv_only=True))
    c.append(Row("virtio_irqs_pf", "virtio-net irqs injected / frame", per_frame(lambda h: h["virtio_net_irqs"]),
                 None, 3, "tcp4", hv_only=True))
    c.append(Row("delivered_pf", "virtual irqs delivered / frame", per_frame(lambda h: h["irqs_delivered_total"]),
                 None, 3, "tcp4", hv_only=True))
    for k, name in (("spi", "devices (SPI)"), ("ppi", "timer (PPI)"), ("sgi", "IPIs (SGI)")):
        c.append(Row(f"delivered_pf_{k}", f"  {name}", per_frame(lambda h, k=k: h["irqs_delivered"][k]), None, 3,
                     "tcp4", hv_only=True))
    c.append(Row("drops", "switch drops (frames)", ph("tcp4", "hv", "drops_total"), None, 0, "tcp4", hv_only=True))
    for r in DROP_REASONS + LATER_DROP_REASONS:
        c.append(Row(f"drops_{r}", f"  {r.replace('_', '-')}", ph("tcp4", "hv", "drops", r), None, 0, "tcp4",
                     hv_only=True))
    c.append(Row("guest_irqs_pf", "virtio irqs the guests saw / frame sent", guest_irqs_per_frame, "lower", 3,
                 "tcp4"))
    c.append(Row("time_idle", "time of the VMs' pCPUs: idle, %", time_split("idle"), None, 1, "tcp4",
                 hv_only=True))
    c.append(Row("time_guest", "  in vCPU runs (guest + its exits), %", time_split("guest"), None, 1, "tcp4",
                 hv_only=True))
    c.append(Row("time_hv", "  between runs (delivery, scheduling), %", time_split("hypervisor"), None, 1, "tcp4",
                 hv_only=True))
    return out


def find_run(runs, unit, rep):
    found = None
    for run in runs:
        if run["unit"] == unit and run["rep"] == rep:
            found = run
    return found


def row_figures(runs, reps, row):
    """Per column: the summary over the runs, failures, per-run values; and
    the ratios hypervisor / plain QEMU."""
    cols = {}
    for col in row.cols:
        unit = row.src[col] if row.src else col
        vals, failed, errors = [], 0, []
        for rep in range(reps):
            run = find_run(runs, unit, rep)
            v = None
            if run is None:
                pass
            elif not run["ok"]:
                failed += 1
                errors.append(run["error"])
            else:
                res = run["result"]
                phase = dig(res, "phases", row.phase) if row.phase else None
                phase_failed = row.phase is not None and not (phase or {}).get("ok")
                if not (phase_failed and row.strict):
                    try:
                        v = row.get(res)
                    except (KeyError, TypeError, ZeroDivisionError):
                        v = None
                if phase_failed and v is None:
                    failed += 1
                    errors.append((phase or {}).get("error", "no result"))
            vals.append(v)
        s = summary(vals)
        s.update(failed=failed, per_run=vals, errors=errors)
        cols[col] = s
    out = {"label": row.label, "better": row.better, "columns": cols}
    if row.better and "pair-plain" in cols:
        out["ratio"] = {col: ratio(cols[col], cols["pair-plain"], cols[col]["per_run"], cols["pair-plain"]["per_run"])
                        for col in HV_PAIRS if col in cols}
    return out


def boot_exits(runs, reps):
    """VM exits by reason until GUEST-READY (1 VM) and until the first phase
    (2 VMs): medians over the runs."""
    out = {}
    for unit, path in (("boot-hv", ("hv",)), ("pair-timeslice", ("boot", "hv")), ("pair-per-pcpu", ("boot", "hv"))):
        hs = [dig(r["result"], *path) for r in runs if r["unit"] == unit and r["ok"]]
        hs = [h for h in hs if h]
        if not hs:
            continue
        secs = [r["result"].get("ready_s") if unit == "boot-hv" else dig(r["result"], "boot", "both_ready_s")
                for r in runs if r["unit"] == unit and r["ok"]]
        out[unit] = {"total": summary([h["exits_total"] for h in hs]),
                     "by_reason": {k: summary([h["exits"][k] for h in hs]) for k in EXIT_REASONS},
                     "seconds": summary(secs),
                     "irqs_delivered": {k: summary([h["irqs_delivered"][k] for h in hs]) for k in IRQ_KINDS}}
    return out


def exit_costs(runs):
    """Exit round trips by kind (ns, medians over the runs) and where the
    1-VM boot's time goes (the hypervisor's counter timestamps, s)."""
    ok = [r["result"] for r in runs if r["unit"] == "exit-cost" and r["ok"]]
    kinds = list(dict.fromkeys(k for r in ok for k in r["ns"]))
    boots = [r["result"] for r in runs if r["unit"] == "boot-hv" and r["ok"] and "first_entry_ms" in r["result"]]
    split = {
        "hv_start_s": summary([b["hv_start_ms"] / 1000 for b in boots]),
        "startup_s": summary([(b["first_entry_ms"] - b["hv_start_ms"]) / 1000 for b in boots]),
        "vm_build_s": summary([(b["vms_built_ms"] - b["hv_start_ms"]) / 1000 for b in boots]),
        "guest_s": summary([b["ready_s"] - b["first_entry_ms"] / 1000 for b in boots]),
    }
    # Plain QEMU's whole boot, to set the two parts against (issue 19's
    # target: the whole boot at most 1.25x plain).
    plain = [r["result"]["ready_s"] for r in runs if r["unit"] == "boot-plain" and r["ok"]]
    split["plain_s"] = summary(plain)
    return {"ns": {k: summary([r["ns"].get(k) for r in ok]) for k in kinds}, "boot_split": split}


def figures(runs, reps, a):
    f = {group: {row.key: row_figures(runs, reps, row) for row in rs} for group, rs in rows(a).items()}
    f["boot_exits"] = boot_exits(runs, reps)
    f["exit_cost"] = exit_costs(runs)
    return f


# ───────────────────────────── output ─────────────────────────────

def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if digits == 0 or abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def cell(s, digits=2):
    if s is None:
        return "-"
    if s["n"] == 0:
        return "FAILED" if s.get("failed") else "n/a"
    out = fmt(s["median"], digits) if s["n"] == 1 else \
        f"{fmt(s['median'], digits)} [{fmt(s['min'], digits)}..{fmt(s['max'], digits)}]"
    return out + (f" ({s['failed']} failed)" if s.get("failed") else "")


def rcell(r):
    if not r or r["median_ratio"] is None:
        return "n/a"
    out = f"{r['median_ratio']:.2f}x"
    if len(r["paired"]) > 1:
        out += f" [{r['paired_min']:.2f}..{r['paired_max']:.2f}]"
    return out


COLW = 22


def table(f, meta, a):
    lines = []
    w = lines.append
    w("")
    w(f"make bench: {meta['runs']} run(s) per setup; a cell is the median [min..max] over the runs; FAILED: no run")
    w("succeeded (see the failures below). ratio = hypervisor / plain QEMU (median of hypervisor / median of")
    w("baseline [min..max of the per-run ratios]); '-': no such figure without the hypervisor.")
    w(f"{meta['qemu']}, -cpu {meta['qemu_cpu']}; guest kernel {meta.get('guest_kernel', '?')}; host "
      f"{meta['host_kernel']}, {meta['host_cpus']} CPUs; load avg {meta['loadavg_start']} -> {meta['loadavg_end']}; "
      f"other QEMUs: {meta['other_qemus_start']} at start, {meta['other_qemus_end']} at end")
    head = f"   {'':<46}" + "".join(f"{LABEL[p]:<{COLW}}" for p in PAIRS) + "ratio timeslice / per-pcpu"

    def show(group, skip_zero=False):
        for key, r in f[group].items():
            cols = r["columns"]
            if skip_zero and key.rsplit("_", 1)[-1] not in ("pf", "drops") and \
                    not any(c["median"] for c in cols.values()) and not any(c["failed"] for c in cols.values()):
                continue
            digits = next((row.digits for row in rows(a)[group] if row.key == key), 2)
            if key == "nc_md5":
                vals = {p: ("ok" if c["n"] and not c["failed"] else
                            ("MISMATCH/FAILED" if c["failed"] else "n/a")) for p, c in cols.items()}
            else:
                vals = {p: cell(c, digits) for p, c in cols.items()}
            line = f"   {r['label']:<46}" + "".join(f"{vals.get(p, '-'):<{COLW}}" for p in PAIRS)
            if "ratio" in r:
                line += " / ".join(rcell(r["ratio"].get(p)) for p in HV_PAIRS)
            w(line)

    w("")
    w("1. Boot (lower is better; the 1-VM boot under the hypervisor is in the timeslice column)")
    w(head)
    show("boot")
    be = f["boot_exits"]
    if "boot-hv" in be:
        e = be["boot-hv"]
        tot, secs = e["total"]["median"], e["seconds"]["median"]
        w(f"   VM exits until GUEST-READY, 1 VM: {fmt(tot, 0)} ({fmt(tot / secs if secs else None, 0)} per second "
          f"of boot), by reason:")
        parts = [f"{k} {fmt(v['median'], 0)} ({100 * v['median'] / tot:.0f} %)"
                 for k, v in sorted(e["by_reason"].items(), key=lambda kv: -(kv[1]["median"] or 0))
                 if v["median"] and tot]
        w("     " + ", ".join(parts))
        w("     (mmio: device registers the hypervisor emulates - UART, virtio, GIC distributor; sysreg: trapped")
        w("     system registers; wfi: the vCPU idles; irq: a physical interrupt while the guest ran; hvc: PSCI)")
    ec = f.get("exit_cost", {})
    bs = ec.get("boot_split", {})
    if bs.get("guest_s", {}).get("n"):
        w(f"   1-VM boot under the hypervisor, by the counter: hypervisor start at {cell(bs['hv_start_s'])} s; "
          f"start -> first guest entry {cell(bs['startup_s'])} s")
        w(f"     (building the VM: {cell(bs['vm_build_s'])} s); first entry -> GUEST-READY {cell(bs['guest_s'])} s")
        plain = bs.get("plain_s", {})
        if plain.get("n") and plain["median"]:
            p = plain["median"]
            w(f"     medians against plain QEMU's whole boot ({fmt(p)} s): start -> first entry "
              f"{fmt(bs['startup_s']['median'] / p)}x, first entry -> GUEST-READY {fmt(bs['guest_s']['median'] / p)}x")
    if ec.get("ns"):
        w("   VM exit round trip, ns of counter time per iteration of a tiny guest's loop (hypervisor-exitbench):")
        w("     " + ", ".join(f"{k} {cell(v, 0)}" for k, v in ec["ns"].items()))
        w("     (ram-read: the same loop without an exit; wfi-timer: WFI until the timer armed 1 us before)")
    for p in HV_PAIRS:
        if p in be:
            e = be[p]
            w(f"   VM exits until the first phase, 2 VMs {PLACEMENT[p]}: {fmt(e['total']['median'], 0)} (" +
              ", ".join(f"{k} {fmt(v['median'], 0)}" for k, v in e["by_reason"].items() if v["median"]) + ")")
    w("")
    w(f"2. Latency: ping 10.0.0.1 -> 10.0.0.2 every {a.interval:g} s; idle: {a.pings} pings; under load: while")
    w("   10.0.0.2 sends to 10.0.0.1 with iperf3 -R -P 4 (lower is better)")
    w(head)
    show("latency")
    w("")
    w(f"3. TCP, iperf3 -t {a.time} -O {a.omit} (warm-up excluded), 10.0.0.1 -> 10.0.0.2 unless -R; the receiver's")
    w("   Mbit/s (higher is better) and the sender's retransmitted segments")
    w(head)
    show("tcp")
    w("")
    w(f"4. UDP, iperf3 -u -t {a.time} -O {a.omit}: sent and received Mbit/s (higher is better), datagrams lost")
    w(head)
    show("udp")
    w("")
    w("5. Cost per frame during the 4-stream TCP run (both VMs summed; counters right before and after it)")
    w(head)
    show("cost", skip_zero=True)
    w("   (exits, injected and delivered interrupts are the hypervisor's own counters: '-' on plain QEMU;")
    w("   the guests' own count of virtio interrupts per frame they sent compares with plain QEMU)")
    w("")
    w("6. Integrity")
    w(head)
    show("integrity")
    w("")
    w("7. Targets of the inter-VM data path (per placement; medians)")
    lines.extend(targets(f))
    return "\n".join(line.rstrip() for line in lines)


# The data path's targets: throughput at least this many times the plain
# pair's, at most one VM exit per full frame's worth of bytes, nothing
# dropped or retransmitted.
THROUGHPUT_TARGET = 5.0
EXITS_TARGET = 1.0


def targets(f):
    """One line per target and placement: what was reached, met or missed,
    and for a miss what the other figures of the same runs point at."""
    out = []
    for p in HV_PAIRS:
        name = PLACEMENT[p]
        exits = f["cost"]["exits_p1514"]["columns"].get(p, {}).get("median")
        drops = f["cost"]["drops"]["columns"].get(p, {}).get("median")
        split = {k: f["cost"][f"time_{k}"]["columns"].get(p, {}).get("median") for k in ("idle", "guest", "hv")}
        for key, what in (("tcp1_mbps", "iperf3 1 stream"), ("tcp4_mbps", "iperf3 -P 4")):
            r = f["tcp"][key].get("ratio", {}).get(p) or {}
            got = r.get("median_ratio")
            if got is None:
                out.append(f"   {name}: {what} >= {THROUGHPUT_TARGET:g}x plain: no figure (failed run)")
                continue
            verdict = "met" if got >= THROUGHPUT_TARGET else "MISSED"
            line = f"   {name}: {what} >= {THROUGHPUT_TARGET:g}x plain: {got:.2f}x, {verdict}"
            if got < THROUGHPUT_TARGET:
                line += "; limit: " + throughput_limit(exits, drops, split)
            out.append(line)
        if exits is None:
            out.append(f"   {name}: <= {EXITS_TARGET:g} VM exit per 1514 bytes: no figure")
        else:
            verdict = "met" if exits <= EXITS_TARGET else "MISSED"
            out.append(f"   {name}: <= {EXITS_TARGET:g} VM exit per 1514 bytes forwarded (-P 4): {exits:.3f}, {verdict}")
        retr = [f["tcp"][k]["columns"].get(p, {}).get("median") for k in ("tcp1_retr", "tcp4_retr")]
        bad = drops is None or drops > 0 or any(x is None or x > 0 for x in retr)
        out.append(f"   {name}: 0 switch drops and 0 retransmits (1 and 4 streams): drops {fmt(drops, 0)}, "
                   f"retransmits {' / '.join(fmt(x, 0) for x in retr)}, {'MISSED' if bad else 'met'}"
                   + ("; retransmits without drops are the guests' TCP timers (the switch lost nothing)"
                      if not (drops is None or drops > 0) and bad else ""))
    return out


def throughput_limit(exits, drops, split):
    """What the same runs' counters say about a throughput miss."""
    if drops:
        return f"the switch dropped {drops:.0f} frames (retransmits follow)"
    if exits is not None and exits > EXITS_TARGET:
        return f"{exits:.2f} VM exits per 1514 bytes (each costs microseconds of emulated time)"
    if None in split.values():
        return "no drops and few exits; no time split in this report"
    busy = "CPU time" if split["idle"] < 10 else "not CPU time alone"
    return (f"{busy}: the VMs' pCPUs were idle {split['idle']:.0f} %, in vCPU runs (guest and exit handling, "
            f"frame copies) {split['guest']:.0f} % and between runs {split['hv']:.0f} % of the 4-stream run, "
            "with no drops and few exits")


def failures(runs):
    out = []
    for run in runs:
        if not run["ok"]:
            out.append(f"{run['name']}: {run['error']}")
            continue
        for ph, p in (run["result"].get("phases") or {}).items():
            if not p.get("ok"):
                out.append(f"{run['name']} {ph}: {p.get('error')}")
    return out


def charts(f, runs, meta, a, out_dir):
    sub = (f"{meta['date']}; {meta['qemu']}, -cpu {meta['qemu_cpu']}; {meta['runs']} run(s); "
           f"load average {meta['loadavg_start'][0]} -> {meta['loadavg_end'][0]}")
    bars = []

    def bar(label, group, key, better, col):
        r = f[group][key]
        rr = dict(r.get("ratio", {}).get(col) or {"median_ratio": None})
        if not rr.get("median_ratio"):
            failed = r["columns"][col]["failed"] or r["columns"]["pair-plain"]["failed"]
            rr["note"] = "FAILED" if failed else "n/a"
        bars.append((label, rr, better))

    bar("boot, 1 VM", "boot", "boot_1vm", "lower", "pair-timeslice")
    for col in HV_PAIRS:
        bar(f"boot, 2 VMs, {PLACEMENT[col]}", "boot", "boot_2vm", "lower", col)
    for key, name, group, better in (("ping_idle_avg", "ping avg idle", "latency", "lower"),
                                     ("ping_load_avg", "ping avg under load", "latency", "lower"),
                                     ("tcp1_mbps", "TCP 1 stream", "tcp", "higher"),
                                     ("tcp4_mbps", "TCP 4 streams", "tcp", "higher"),
                                     ("tcpR_mbps", "TCP reverse", "tcp", "higher"),
                                     ("udp_recv", f"UDP {a.udp} received", "udp", "higher"),
                                     ("udp0_recv", "UDP unlimited received", "udp", "higher"),
                                     ("guest_irqs_pf", "guest irqs / frame (4 streams)", "cost", None)):
        for col in HV_PAIRS:
            bar(f"{name}, {PLACEMENT[col]}", group, key, better, col)
    ratio_chart(bars, os.path.join(out_dir, "ratios.svg"), sub)

    panels = []
    for ph in ("tcp1", "tcp4", "tcpR", "load", "udp", "udp0"):
        if ph not in a.phases:
            continue
        series = []
        for run in runs:
            if run["unit"] not in PAIRS or not run["ok"]:
                continue
            p = dig(run["result"], "phases", ph) or {}
            ivs = dig(p, "summary", "intervals") or []
            if p.get("not_run"):
                continue
            series.append((run["unit"], run["name"], ivs, None if p.get("ok") else (p.get("error") or "failed")))
        panels.append((PHASE_TITLE[ph].format(udp=f"{a.udp}bit/s"), series))
    timeline_chart(panels, LABEL, os.path.join(out_dir, "throughput.svg"), sub, meta["iperf_limit_s"])



def write_outputs(a, meta, runs):
    """The table (stdout and table.txt), results.json and both charts."""
    os.makedirs(a.out, exist_ok=True)
    f = figures(runs, a.runs, a)
    fails = failures(runs)
    text = table(f, meta, a)
    if fails:
        text += "\n\nFailures (each with its log):\n" + "\n".join(f"   {x}" for x in fails)
    print(text, flush=True)
    jpath = os.path.join(a.out, "results.json")
    with open(jpath, "w") as fh:
        json.dump({"meta": meta, "figures": f, "failures": fails, "runs": runs}, fh, indent=1)
    with open(os.path.join(a.out, "table.txt"), "w") as fh:
        fh.write(text.lstrip("\n") + "\n")
    charts(f, runs, meta, a, a.out)
    log(f"{len(runs)} runs in {meta['duration_s']:.0f} s, {len(fails)} failure(s)")
    log(f"wrote {jpath}, {os.path.join(a.out, 'table.txt')}, {os.path.join(a.out, 'ratios.svg')} and "
        f"{os.path.join(a.out, 'throughput.svg')}")
    return 1 if fails else 0
