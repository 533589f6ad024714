"""The hypervisor's own counters for `make bench`: parsing one console
statistics report (Ctrl-\\ s), taking a clean snapshot, and the difference
between two snapshots (VM exits by reason, interrupts injected and
delivered, frames through the switch and its drops by reason)."""

import re
import time

from hvrun import ESCAPE

EXIT_REASONS = ("hvc", "smc", "mmio", "wfi", "wfe", "sysreg", "irq", "faults")
DROP_REASONS = ("too_short", "too_long", "malformed", "mac_lock", "no_destination", "ring_full",
                "no_room", "write_failed")
# Drop reasons only newer reports have (0 when a report lacks them).
LATER_DROP_REASONS = ("bad_header", "rx_stalled")
IRQ_KINDS = ("sgi", "ppi", "spi")


class StatsError(Exception):
    """No clean statistics report could be taken."""


MAC = r"[0-9a-fA-F:]{17}"
_LINES = [
    ("switch", r"vswitch: (?P<ports>\d+) ports, \d+/\d+ MAC entries, (?P<seen>\d+) frames seen, "
               r"(?P<unknown>\d+) from unknown ports(?:, capture (?:on|off|unavailable))?"),
    ("port", rf"port (?P<port>\d+): (?:mac-lock {MAC}|open)"
             r"(?:, vlan \d+, rate (?:unlimited|\d+ Mbit/s \(burst \d+ bytes\)))?, ring \d+/\d+"),
    ("traffic", r"  tx (?P<tx_frames>\d+) frames (?P<tx_bytes>\d+) bytes \| rx (?P<rx_frames>\d+) frames "
                r"(?P<rx_bytes>\d+) bytes \(queued (?P<queued_frames>\d+) frames (?P<queued_bytes>\d+) bytes\)"),
    # The VLAN and rate reasons (after mac-lock) are in newer reports only.
    ("drops", r"  drops: " + " ".join(rf"{r.replace('_', '-')} (?P<{r}>\d+)" for r in DROP_REASONS[:4])
              + r"(?: vlan (?P<vlan>\d+) vlan-tagged (?P<vlan_tagged>\d+) rate (?P<rate>\d+))? "
              + " ".join(rf"{r.replace('_', '-')} (?P<{r}>\d+)" for r in DROP_REASONS[4:])
              # Header validation and the stalled-receiver bound: newer reports only.
              + r"(?: bad-header (?P<bad_header>\d+))?(?: rx-stalled (?P<rx_stalled>\d+))?"),
    # Backpressure: newer reports only; values not used by the bench.
    ("waits", r"  tx paused by the rate limit \d+ times(?:, waited for a full receiver (?P<waited>\d+) "
              r"times; segmented for this port (?P<segmented>\d+))?"),
    ("mactable", r"mac table: learned \d+ moved \d+ evicted \d+"),
    ("macentry", rf"  {MAC} port \d+ age \d+"),
    ("exits", r"vm(?P<vm>\d+) exits: " + " ".join(rf"{r}=(?P<{r}>\d+)" for r in EXIT_REASONS)),
    ("vcpu", r"vm(?P<vm>\d+) vcpu(?P<vcpu>\d+): \w+(?: in-wfi)? pc=0x[0-9a-f]+ pending-irqs=\d+ "
             r"deliverable=(?:true|false) timer-ctl=0x[0-9a-f]+ picked=(?P<picks>\d+) "
             r"entries=(?P<entries>\d+)(?: (?:guest|run)-ms=(?P<guest_ms>\d+))?"),
    # A pCPU's idle time and the counter's time (newer reports).
    ("cpu", r"cpu(?P<cpu>\d+) idle-ms=(?P<idle_ms>\d+)(?: up-ms=(?P<up_ms>\d+))?"),
    ("vgic", r"vm(?P<vm>\d+) vgic: delivered sgi=(?P<sgi>\d+) ppi=(?P<ppi>\d+) spi=(?P<spi>\d+); .*"),
    ("uart", r"vm(?P<vm>\d+) uart: tx (?P<tx>\d+) \(dropped \d+\), rx (?P<rx>\d+) \(overflow \d+, "
             r"empty reads \d+\), bad accesses \d+"),
    ("net", rf"vm(?P<vm>\d+) virtio-net: virtio-net port (?P<port>\d+) mac {MAC} (?:live|down), ring \d+/\d+"
            r"(?:, tx (?:unlimited|limit \d+ bytes/s burst \d+ tokens -?\d+(?: \(paused\))?))?"),
    ("transport", r"  resets=\d+ refused-status=\d+ refused-features=\d+ refused-queues=\d+ needs-reset=\d+ "
                  r"config-irq=(?P<config_irq>\d+) refused-regs=\d+ \(width=\d+ offset=\d+ direction=\d+ "
                  r"state=\d+ value=\d+\)"),
    ("queue", r"  q(?P<q>\d+): chains=(?P<chains>\d+) dropped=\d+ jumps=\d+ irq=(?P<irq>\d+) "
              r"suppressed=(?P<suppressed>\d+) malformed=\d+ \(index=\d+ long=\d+ unreadable=\d+ "
              r"indirect=\d+ flags=\d+ zero=\d+ range=\d+ order=\d+ overflow=\d+\)"),
    # Another VM-level line (console, trapped registers, ...): ends the
    # context of a virtio-net block, values not used.
    ("vmother", r"vm(?P<vm>\d+) [a-z][a-z -]*: .*"),
]
HV_LINES = [(kind, re.compile(rx + r"$")) for kind, rx in _LINES]


def _ints(m):
    return {k: int(v) for k, v in m.groupdict().items() if v is not None}


def parse_stats(text, vms):
    """Parses the `[hv] ` lines of one Ctrl-\\ s report. Returns (stats,
    None) or (None, reason). Guest lines in between are skipped, and so are
    hypervisor lines of a kind not listed above (counted in `ignored`); the
    report is refused if a line it needs is missing or out of place."""
    sw, ports, vm, cpus, vcpus = None, {}, {}, {}, {}
    ctx = None
    ignored = 0
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line.startswith("[hv] "):
            continue
        body = line[5:]
        for kind, rx in HV_LINES:
            m = rx.match(body)
            if m:
                break
        else:
            ignored += 1
            continue
        d = _ints(m)
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
        elif kind == "cpu":
            cpus[d.pop("cpu")] = d
        elif kind == "vcpu":
            # Its own VM number says whose it is: pCPUs print their VMs'
            # reports at the same time, so lines of two VMs may interleave.
            vcpus[d.pop("vm")] = d
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
        elif kind == "vmother":
            v = d.pop("vm")
            if ctx is not None and ctx[0] in ("vm", "net") and ctx[1] == v:
                ctx = ("vm", v)
            ignored += 1
        elif kind in ("vgic", "uart", "net"):
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
    for v, d in vcpus.items():
        if v in vm:
            vm[v]["vcpu"] = d
    consistent = all(ports[v]["traffic"] == vm[v]["port"]["traffic"] for v in range(vms))
    return {"switch": sw, "ports": ports, "vms": vm, "cpus": cpus, "consistent": consistent,
            "ignored_lines": ignored}, None


def take_stats(con, vms, deadline, attempts=6):
    """Ctrl-\\ s until a clean report arrives; returns (stats, attempts).
    Raises StatsError."""
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
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2 + 0.3 * attempt)
    raise StatsError(f"no clean Ctrl-\\ s report in {attempts} attempts (last: {why}); log: {con.log_path}")


def _sum(after, before, vms, get):
    return sum(get(after, v) - get(before, v) for v in range(vms))


def stats_delta(before, after, vms):
    """Counter differences between two snapshots, summed over the VMs.
    `before` may be None (everything since the hypervisor started)."""
    if before is None:
        before = zero_like(after)
    exits = {r: _sum(after, before, vms, lambda s, v, r=r: s["vms"][v]["exits"][r]) for r in EXIT_REASONS}
    queue_irqs = {}
    for v in range(vms):
        for q, qa in after["vms"][v]["queues"].items():
            qb = before["vms"][v]["queues"].get(q, {"irq": 0})
            queue_irqs[f"q{q}"] = queue_irqs.get(f"q{q}", 0) + qa["irq"] - qb["irq"]
    config = _sum(after, before, vms, lambda s, v: s["vms"][v]["transport"]["config_irq"])
    port = lambda k: _sum(after, before, vms, lambda s, p: s["ports"][p]["traffic"][k])  # noqa: E731
    drops = {r: _sum(after, before, vms, lambda s, p, r=r: s["ports"][p]["drops"].get(r, 0))
             for r in DROP_REASONS + LATER_DROP_REASONS}
    delivered = {k: _sum(after, before, vms, lambda s, v, k=k: s["vms"][v].get("vgic", {}).get(k, 0))
                 for k in IRQ_KINDS}
    return {
        "exits": exits,
        "exits_total": sum(exits.values()),
        "exits_by_vm": {v: sum(after["vms"][v]["exits"][r] - before["vms"][v]["exits"][r] for r in EXIT_REASONS)
                        for v in range(vms)},
        "virtio_net_irqs": sum(queue_irqs.values()) + config,
        "virtio_net_irqs_by_queue": queue_irqs,
        "frames_forwarded": port("rx_frames"),
        "frames_sent_to_switch": port("tx_frames"),
        "bytes_forwarded": port("rx_bytes"),
        "drops": drops,
        "drops_total": sum(drops.values()),
        "guest_entries": _sum(after, before, vms, lambda s, v: s["vms"][v].get("vcpu", {}).get("entries", 0)),
        "irqs_delivered": delivered,
        "irqs_delivered_total": sum(delivered.values()),
        # Where the pCPUs' time went (newer reports only): idle and elapsed
        # counter time per pCPU, guest time per VM, in ms.
        "cpu_ms": {c: {k: a.get(k, 0) - before.get("cpus", {}).get(c, {}).get(k, 0)
                       for k in ("idle_ms", "up_ms")}
                   for c, a in after.get("cpus", {}).items() if "up_ms" in a},
        "guest_ms_by_vm": {v: after["vms"][v].get("vcpu", {}).get("guest_ms", 0)
                           - before["vms"][v].get("vcpu", {}).get("guest_ms", 0) for v in range(vms)},
    }


def zero_like(stats):
    """A snapshot of the same shape with every counter 0."""
    if isinstance(stats, dict):
        return {k: zero_like(v) for k, v in stats.items()}
    if isinstance(stats, bool):
        return stats
    if isinstance(stats, int):
        return 0
    return stats
