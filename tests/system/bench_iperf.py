"""iperf3 results for `make bench`.

The guest prints each `iperf3 -J` output gzip'ed and base64'ed (printable
ASCII only, whatever the console does to other bytes) between

    BENCH-IPERF-BEGIN phase=<p> rc=<n> seconds=<s> limit=<s> tries=<n> bytes=<n> gz=<n> md5=<hex>
    BENCH-B64 <base64> ...
    BENCH-IPERF-END phase=<p>

`decode_block` gets the JSON back out of a console buffer and `summarise`
reduces it to the figures the bench reports.
"""

import base64
import gzip
import hashlib
import json
import re


def decode_block(buf, prefix, phase):
    """Finds phase `phase`'s block in `buf` (bytes; console lines carry
    `prefix`) and returns a dict: rc, seconds, limit, tries, json (the
    parsed document, or None) and problem (why there is no JSON, or None).
    Returns None if the block is not complete in `buf`."""
    p = re.escape(prefix.encode())
    begin = re.search(rb"(?m)^" + p + rb"BENCH-IPERF-BEGIN phase=" + re.escape(phase.encode()) +
                      rb" rc=(\d+) seconds=(\S+) limit=(\d+) tries=(\S+) bytes=(\d+) gz=(\d+) "
                      rb"md5=([0-9a-f]{32})\r?\n", buf)
    if not begin:
        return None
    end = re.compile(rb"(?m)^" + p + rb"BENCH-IPERF-END phase=" + re.escape(phase.encode()) + rb"\r?\n")
    e = end.search(buf, begin.end())
    if not e:
        return None
    body = buf[begin.end():e.start()]
    b64 = b"".join(m.group(1) for m in re.finditer(rb"(?m)^" + p + rb"BENCH-B64 ([A-Za-z0-9+/=]+)\r?$", body))
    out = {"rc": int(begin.group(1)), "seconds": _num(begin.group(2)), "limit": int(begin.group(3)),
           "tries": _num(begin.group(4)), "json_bytes": int(begin.group(5)), "json": None, "problem": None}
    gz_len, md5 = int(begin.group(6)), begin.group(7).decode()
    try:
        gz = base64.b64decode(b64, validate=True)
    except ValueError as exc:
        out["problem"] = f"base64: {exc}"
        return out
    if len(gz) != gz_len or hashlib.md5(gz).hexdigest() != md5:
        out["problem"] = f"the console garbled the block ({len(gz)} of {gz_len} bytes, md5 differs)"
        return out
    text = gzip.decompress(gz).decode("utf-8", "replace")
    if not text.strip():
        out["problem"] = "iperf3 printed nothing"
        return out
    try:
        out["json"] = json.loads(text)
    except ValueError as exc:
        out["problem"] = f"iperf3 output is not JSON ({exc})"
        out["text"] = text[:2000]
    return out


def _num(b):
    try:
        return float(b)
    except ValueError:
        return None


def _mbps(section):
    bps = (section or {}).get("bits_per_second")
    return bps / 1e6 if isinstance(bps, (int, float)) else None


def summarise(doc):
    """The figures of one iperf3 -J document (client side):

    protocol, streams, reverse, duration, omit, target_mbps;
    sent_mbps / received_mbps (end.sum_sent / end.sum_received: the
    sender's and the receiver's rate over the measured seconds, warm-up
    excluded); retransmits (TCP, sender side: also with -R, where the
    server sends); for UDP lost_packets, packets, lost_percent and jitter_ms
    as the receiver counted them; error (iperf3's own message, if any);
    complete (both sums present); intervals: one per report interval, in
    order, with t = seconds since the first interval began, the interval's
    Mbit/s (as the client measured it: sent with the client sending,
    received with -R) and whether it was in the warm-up (-O).
    """
    start = doc.get("start", {})
    ts = start.get("test_start", {})
    end = doc.get("end", {}) or {}
    proto = ts.get("protocol")
    sent = end.get("sum_sent")
    recv = end.get("sum_received")
    if proto == "UDP" and recv is None:
        recv = end.get("sum")  # before iperf3 3.10 the receiver's figures were in end.sum
    s = {
        "protocol": proto,
        "streams": ts.get("num_streams"),
        "reverse": bool(ts.get("reverse")),
        "duration": ts.get("duration"),
        "omit": ts.get("omit"),
        "target_mbps": ts.get("target_bitrate", 0) / 1e6 if ts.get("target_bitrate") else None,
        "sent_mbps": _mbps(sent),
        "received_mbps": _mbps(recv),
        "seconds": (recv or {}).get("seconds"),
        "error": doc.get("error"),
        "complete": sent is not None and recv is not None,
    }
    if proto == "TCP":
        s["retransmits"] = (sent or {}).get("retransmits")
    elif proto == "UDP":
        for k in ("lost_packets", "packets", "lost_percent", "jitter_ms"):
            s[k] = (recv or {}).get(k)
    intervals, t = [], 0.0
    for iv in doc.get("intervals", []):
        sm = iv.get("sum") or {}
        secs = sm.get("seconds")
        if not isinstance(secs, (int, float)):
            continue
        t += secs
        intervals.append({"t": round(t, 3), "seconds": round(secs, 3), "mbps": _mbps(sm),
                          "omitted": bool(sm.get("omitted"))})
    s["intervals"] = intervals
    return s


def keep(doc):
    """What results.json keeps of a document: the test parameters, the
    summary sections (`end` without the per-stream details) and the error."""
    end = dict(doc.get("end", {}) or {})
    end.pop("streams", None)
    return {"test_start": doc.get("start", {}).get("test_start"), "end": end, "error": doc.get("error")}
