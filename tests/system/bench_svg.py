"""The two charts of `make bench`, as hand-written SVG: the hypervisor /
plain-QEMU ratios (bars on a log2 axis) and iperf3's throughput second by
second for every setup (one panel per iperf3 phase)."""

import html
import math

COLOURS = {"pair-timeslice": "#d9582b", "pair-per-pcpu": "#2b7bd9", "pair-plain": "#333333"}


def _esc(s):
    return html.escape(str(s))


def _svg(width, height, body):
    return "\n".join([f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                      f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
                      '<rect width="100%" height="100%" fill="white"/>'] + body + ["</svg>"]) + "\n"


def ratio_chart(bars, path, subtitle):
    """`bars`: (label, ratio dict with median_ratio/paired/paired_min/
    paired_max, better = "lower" | "higher" | None). One horizontal bar per
    ratio from 1x, on a log2 axis."""
    vals = [v for _, r, _ in bars for v in (r.get("median_ratio"), r.get("paired_min"), r.get("paired_max")) if v]
    lo2 = math.floor(math.log2(min([0.5] + vals)))
    hi2 = math.ceil(math.log2(max([2.0] + vals)))
    left, width, top, rowh = 270, 480, 78, 32
    height = top + rowh * len(bars) + 40

    def x(v):
        return left + (math.log2(v) - lo2) / (hi2 - lo2) * width

    out = ['<text x="10" y="22" font-size="15" font-weight="bold">hypervisor / plain QEMU, same invocation</text>',
           '<text x="10" y="40" fill="#555">1x = as plain QEMU. Green: the hypervisor does better, red: worse, '
           'blue: a cost, not a speed. Whiskers: per-run ratios.</text>',
           f'<text x="10" y="56" fill="#555" font-size="10">{_esc(subtitle)}</text>']
    for e in range(lo2, hi2 + 1):
        v = 2.0 ** e
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{top + rowh * len(bars)}" '
                   f'stroke="{"#000" if e == 0 else "#ddd"}" stroke-width="{2 if e == 0 else 1}"/>')
        out.append(f'<text x="{x(v):.1f}" y="{top + rowh * len(bars) + 16}" text-anchor="middle">{v:g}x</text>')
    for i, (label, r, better) in enumerate(bars):
        y = top + i * rowh
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{_esc(label)}</text>')
        out.append(f'<text x="{left - 8}" y="{y + 28}" text-anchor="end" fill="#888" font-size="10">'
                   f'{_esc(better + " is better" if better else "fewer = less work")}</text>')
        v = r.get("median_ratio")
        if not v:
            out.append(f'<text x="{x(1) + 6:.1f}" y="{y + 20}" fill="#b00">{_esc(r.get("note") or "n/a")}</text>')
            continue
        colour = "#79b" if better is None else (
            "#4a9" if ((v <= 1) if better == "lower" else (v >= 1)) else "#d75")
        x0, x1 = sorted((x(1), x(v)))
        out.append(f'<rect x="{x0:.1f}" y="{y + 6}" width="{max(x1 - x0, 1):.1f}" height="18" fill="{colour}"/>')
        right = x1
        if r.get("paired_min") and r.get("paired_max") and len(r.get("paired", [])) > 1:
            out.append(f'<line x1="{x(r["paired_min"]):.1f}" y1="{y + 15}" x2="{x(r["paired_max"]):.1f}" '
                       f'y2="{y + 15}" stroke="#222" stroke-width="1.5"/>')
            right = max(right, x(r["paired_max"]))
        out.append(f'<text x="{right + 6:.1f}" y="{y + 20}">{v:.2f}x</text>')
    with open(path, "w") as fh:
        fh.write(_svg(left + width + 90, height, out))


def _nice_step(hi, ticks=5):
    raw = hi / ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def timeline_chart(panels, labels, path, subtitle, tcap):
    """`panels`: (title, [(setup, run name, intervals, failed: str or
    None)]) with intervals as from bench_iperf.summarise. One panel per
    iperf3 phase: Mbit/s over seconds, a step line per setup and run (each
    interval drawn over its own seconds, so a long empty interval shows as a
    flat stretch at 0), the warm-up (-O) shaded, a failed run dashed and
    marked with an X where it ends. Time is cut at `tcap` seconds (the
    guest's limit for one iperf3 run)."""
    cols, pw, ph = 2, 440, 210
    ml, mr, mt, mb = 56, 16, 34, 40
    top = 96
    rows = (len(panels) + cols - 1) // cols
    width = cols * (ml + pw + mr) + 10
    height = top + rows * (mt + ph + mb) + 10
    out = ['<text x="10" y="22" font-size="15" font-weight="bold">iperf3 throughput, second by second</text>',
           '<text x="10" y="40" fill="#555">As the client measured it (sent by the client; received with -R). '
           'Grey: warm-up (-O), not in the averages. Dashed, X: the run failed there.</text>',
           f'<text x="10" y="56" fill="#555" font-size="10">{_esc(subtitle)}</text>']
    lx = 10
    for setup, colour in COLOURS.items():
        out.append(f'<line x1="{lx}" y1="74" x2="{lx + 24}" y2="74" stroke="{colour}" stroke-width="2.5"/>')
        out.append(f'<text x="{lx + 30}" y="78">{_esc(labels.get(setup, setup))}</text>')
        lx += 30 + 8 * len(labels.get(setup, setup)) + 30
    for i, (title, series) in enumerate(panels):
        ox = 10 + (i % cols) * (ml + pw + mr) + ml
        oy = top + (i // cols) * (mt + ph + mb) + mt
        pts = [iv for _, _, ivs, _ in series for iv in ivs if iv.get("mbps") is not None]
        tmax = min(max([iv["t"] for iv in pts] + [1.0]), tcap)
        ymax = max([iv["mbps"] for iv in pts] + [1.0]) * 1.1
        ystep = _nice_step(ymax)
        ymax = math.ceil(ymax / ystep) * ystep
        tstep = _nice_step(tmax, 6)

        def sx(t, ox=ox, tmax=tmax):
            return ox + t / tmax * pw

        def sy(v, oy=oy, ymax=ymax):
            return oy + ph - v / ymax * ph

        out.append(f'<text x="{ox}" y="{oy - 10}" font-weight="bold">{_esc(title)}</text>')
        omit = max([iv["t"] for _, _, ivs, _ in series for iv in ivs if iv.get("omitted")] + [0.0])
        if omit > 0:
            out.append(f'<rect x="{ox}" y="{oy}" width="{sx(min(omit, tmax)) - ox:.1f}" height="{ph}" fill="#eee"/>')
        k = 0
        while k * ystep <= ymax + 1e-9:
            y = sy(k * ystep)
            out.append(f'<line x1="{ox}" y1="{y:.1f}" x2="{ox + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            out.append(f'<text x="{ox - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{k * ystep:g}</text>')
            k += 1
        k = 0
        while k * tstep <= tmax + 1e-9:
            xx = sx(k * tstep)
            out.append(f'<line x1="{xx:.1f}" y1="{oy + ph}" x2="{xx:.1f}" y2="{oy + ph + 4}" stroke="#000"/>')
            out.append(f'<text x="{xx:.1f}" y="{oy + ph + 16}" text-anchor="middle" font-size="10">{k * tstep:g}</text>')
            k += 1
        out.append(f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#000"/>')
        out.append(f'<text x="{ox + pw / 2}" y="{oy + ph + 32}" text-anchor="middle" font-size="11">seconds</text>')
        out.append(f'<text x="{ox - 42}" y="{oy + ph / 2}" text-anchor="middle" font-size="11" '
                   f'transform="rotate(-90 {ox - 42} {oy + ph / 2})">Mbit/s</text>')
        if not series:
            out.append(f'<text x="{ox + pw / 2}" y="{oy + ph / 2}" text-anchor="middle" fill="#888">no data</text>')
        for setup, _name, ivs, failed in series:
            colour = COLOURS.get(setup, "#888")
            xy = []
            for iv in ivs:
                if iv.get("mbps") is None or iv["t"] - iv["seconds"] >= tmax:
                    continue
                xy += [(sx(iv["t"] - iv["seconds"]), sy(iv["mbps"])), (sx(min(iv["t"], tmax)), sy(iv["mbps"]))]
            dash = ' stroke-dasharray="5,3"' if failed else ""
            if len(xy) > 1:
                pts_s = " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
                out.append(f'<polyline points="{pts_s}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            if failed:
                px, py = xy[-1] if xy else (sx(0), sy(0))
                out.append(f'<path d="M{px - 5:.1f},{py - 5:.1f} l10,10 m0,-10 l-10,10" stroke="{colour}" '
                           f'stroke-width="2.5"/>')
                out.append(f'<text x="{min(px + 8, ox + pw - 4):.1f}" y="{max(py - 8, oy + 12):.1f}" font-size="10" '
                           f'fill="{colour}" text-anchor="{"end" if px + 8 > ox + pw - 120 else "start"}">'
                           f'{_esc(labels.get(setup, setup))}: failed</text>')
    with open(path, "w") as fh:
        fh.write(_svg(width, height, out))
