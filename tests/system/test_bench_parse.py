"""Host-side tests of the bench's parsers, on output captured from real
runs (tests/system/fixtures/): iperf3 -J documents from the guests, a
console block as the guest printed it, and two hypervisor statistics
reports taken around a 4-stream run. Run by `make test-host`."""

import json
import os
import re
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_iperf import decode_block, keep, summarise  # noqa: E402
from bench_report import exit_costs  # noqa: E402
from bench_stats import parse_stats, stats_delta  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def load(name):
    with open(os.path.join(FIX, name)) as fh:
        return json.load(fh)


def raw(name):
    with open(os.path.join(FIX, name), "rb") as fh:
        return fh.read()


class IperfSummary(unittest.TestCase):
    def test_tcp_one_stream(self):
        s = summarise(load("iperf3-tcp1.json"))
        self.assertEqual((s["protocol"], s["streams"], s["reverse"]), ("TCP", 1, False))
        self.assertTrue(s["complete"])
        self.assertIsNone(s["error"])
        # end.sum_received.bits_per_second / 1e6, end.sum_sent.retransmits
        self.assertAlmostEqual(s["received_mbps"], 183.83639365107915)
        self.assertAlmostEqual(s["sent_mbps"], 185.12430187516758)
        self.assertEqual(s["retransmits"], 0)
        self.assertEqual((s["duration"], s["omit"]), (3, 1))
        # Four one-second intervals, the first in the warm-up; t accumulates.
        self.assertEqual([iv["omitted"] for iv in s["intervals"]], [True, False, False, False])
        ts = [iv["t"] for iv in s["intervals"]]
        self.assertEqual(ts, sorted(ts))
        self.assertAlmostEqual(ts[-1], sum(iv["seconds"] for iv in s["intervals"]), places=2)
        self.assertTrue(all(iv["mbps"] > 100 for iv in s["intervals"]))

    def test_udp_loss_is_the_receivers(self):
        s = summarise(load("iperf3-udp.json"))
        self.assertEqual(s["protocol"], "UDP")
        self.assertAlmostEqual(s["target_mbps"], 100.0)
        self.assertAlmostEqual(s["sent_mbps"], 65.46729109599128)
        self.assertAlmostEqual(s["received_mbps"], 51.20739721005177)
        self.assertEqual((s["lost_packets"], s["packets"]), (3645, 16861))
        self.assertAlmostEqual(s["lost_percent"], 21.587207580692922)
        self.assertNotIn("retransmits", s)

    def test_stalled_run_keeps_its_intervals_and_error(self):
        doc = load("iperf3-tcpR-stalled.json")
        s = summarise(doc)
        self.assertTrue(s["reverse"])
        self.assertEqual(s["error"], "interrupt - the client has terminated")
        mbps = [iv["mbps"] for iv in s["intervals"]]
        self.assertEqual(len(mbps), 4)
        self.assertTrue(all(m > 30 for m in mbps[:3]))
        self.assertEqual(mbps[3], 0)  # the stall: 29 s without a byte
        self.assertGreater(s["intervals"][3]["seconds"], 29)
        self.assertEqual(keep(doc)["error"], s["error"])
        self.assertNotIn("streams", keep(doc)["end"])


class ConsoleBlock(unittest.TestCase):
    def test_decodes_a_block_as_printed(self):
        buf = b"[vm0] some earlier line\r\n" + raw("console-iperf-tcp4.txt")
        b = decode_block(buf, "[vm0] ", "tcp4")
        self.assertIsNone(b["problem"])
        self.assertEqual((b["rc"], b["limit"], b["tries"]), (0, 34, 1))
        s = summarise(b["json"])
        self.assertEqual((s["protocol"], s["streams"]), ("TCP", 4))
        self.assertTrue(s["complete"])
        self.assertGreater(s["received_mbps"], 0)

    def test_wrong_prefix_or_phase_finds_nothing(self):
        buf = raw("console-iperf-tcp4.txt")
        self.assertIsNone(decode_block(buf, "[vm1] ", "tcp4"))
        self.assertIsNone(decode_block(buf, "[vm0] ", "tcp1"))

    def test_incomplete_block_is_not_decoded(self):
        buf = raw("console-iperf-tcp4.txt")
        self.assertIsNone(decode_block(buf[: buf.rindex(b"[vm0] BENCH-IPERF-END")], "[vm0] ", "tcp4"))

    def test_a_lost_line_is_detected(self):
        lines = raw("console-iperf-tcp4.txt").split(b"\n")
        del lines[3]  # one BENCH-B64 line
        b = decode_block(b"\n".join(lines), "[vm0] ", "tcp4")
        self.assertIsNone(b["json"])
        self.assertIn("garbled", b["problem"])

    def test_kernel_lines_inside_the_block_are_skipped(self):
        lines = raw("console-iperf-tcp4.txt").split(b"\n")
        lines.insert(5, b"[vm0] [   51.000000] virtio_net virtio0: a kernel message\r")
        b = decode_block(b"\n".join(lines), "[vm0] ", "tcp4")
        self.assertIsNone(b["problem"])


class HypervisorStats(unittest.TestCase):
    def test_parse_and_delta(self):
        before, why = parse_stats(raw("hv-stats-before.txt").decode(), 2)
        self.assertIsNone(why)
        after, why = parse_stats(raw("hv-stats-after.txt").decode(), 2)
        self.assertIsNone(why)
        self.assertTrue(before["consistent"] and after["consistent"])
        self.assertEqual(before["vms"][0]["exits"]["mmio"], 117991)
        d = stats_delta(before, after, 2)
        # Port rx frames: 19019 - 17457 (port 0) + 54610 - 35967 (port 1).
        self.assertEqual(d["frames_forwarded"], (19019 - 17457) + (54610 - 35967))
        self.assertEqual(d["exits"]["mmio"], (129286 - 117991) + (56076 - 49679))
        self.assertEqual(d["drops"]["ring_full"], 1017 - 675)
        self.assertEqual(d["drops_total"], d["drops"]["ring_full"])
        self.assertEqual(d["irqs_delivered"]["spi"], (24731 - 21018) + (7046 - 4977))
        self.assertEqual(d["virtio_net_irqs_by_queue"]["q1"], (23090 - 19895) + (4161 - 2599))
        self.assertEqual(d["exits_total"], sum(d["exits"].values()))

    def test_unknown_lines_are_skipped_missing_ones_refused(self):
        text = raw("hv-stats-after.txt").decode()
        extra = text.replace("[hv] vm0 vcpu0:", "[hv] vm0 trapped sysregs: pmu=0 debug=0 raz-wi=0\r\n"
                             "[hv] vm0 console output: 1 lines\r\n[hv] vm0 vcpu0:")
        base, _ = parse_stats(text, 2)
        s, why = parse_stats(extra, 2)
        self.assertIsNone(why)
        self.assertEqual(s["ignored_lines"], base["ignored_lines"] + 2)
        self.assertEqual(s["vms"], base["vms"])
        missing = "".join(ln for ln in text.splitlines(True) if "vm1 uart:" not in ln)
        s, why = parse_stats(missing, 2)
        self.assertIsNone(s)
        self.assertIn("vm1", why)

    def test_reports_with_vlans_limits_and_capture(self):
        """The switch's newer lines (capture state, VLAN and limit per
        port, vlan/rate drop reasons, rate pauses, the TX limit of a
        device) parse to the same figures."""
        text = raw("hv-stats-after.txt").decode()
        new = re.sub(r"(from unknown ports)", r"\1, capture off", text)
        new = re.sub(r"(port 0: mac-lock [0-9a-f:]+), ring", r"\1, vlan 1, rate unlimited, ring", new)
        new = re.sub(r"(port 1: mac-lock [0-9a-f:]+), ring",
                     r"\1, vlan 2, rate 50 Mbit/s (burst 125000 bytes), ring", new)
        new = re.sub(r"(mac-lock \d+) (no-destination)", r"\1 vlan 3 vlan-tagged 0 rate 0 \2", new)
        new = re.sub(r"(virtio-net port 0 [^\r\n]*ring \d+/\d+)", r"\1, tx unlimited", new)
        new = re.sub(r"(virtio-net port 1 [^\r\n]*ring \d+/\d+)",
                     r"\1, tx limit 6250000 bytes/s burst 125000 tokens -300 (paused)", new)
        new = re.sub(r"(\[hv\]   drops: [^\r\n]*)(\r?\n)", r"\1\2[hv]   tx paused by the rate limit 7 times\2", new)
        self.assertNotEqual(new, text)
        self.assertIn("vlan 3 vlan-tagged", new)
        self.assertIn("(paused)", new)
        old, why = parse_stats(text, 2)
        self.assertIsNone(why)
        s, why = parse_stats(new, 2)
        self.assertIsNone(why)
        new_keys = ("vlan", "vlan_tagged", "rate")

        def strip(d):
            if isinstance(d, dict):
                return {k: strip(v) for k, v in d.items() if k not in new_keys}
            return d

        self.assertEqual(strip(s["vms"]), old["vms"])
        self.assertIn("'vlan': 3", repr(s["vms"]))

    def test_time_split_between_two_reports(self):
        """Guest time per vCPU and idle/elapsed time per pCPU (newer
        reports) give where the pCPUs' time went between two reports."""
        def newer(name, guest, idle, up):
            text = raw(name).decode()
            text = re.sub(r"(vm(\d) vcpu0: [^\r\n]*entries=\d+)",
                          lambda m: f"{m.group(1)} run-ms={guest[int(m.group(2))]}", text)
            cpu_lines = "".join(f"[hv] cpu{c} idle-ms={idle[c]} up-ms={up}\n" for c in (0, 1))
            return text.replace("[hv] vswitch:", cpu_lines + "[hv] vswitch:", 1)
        before, why = parse_stats(newer("hv-stats-before.txt", [100, 200], [10, 20], 1000), 2)
        self.assertIsNone(why)
        after, why = parse_stats(newer("hv-stats-after.txt", [700, 500], [60, 420], 2000), 2)
        self.assertIsNone(why)
        d = stats_delta(before, after, 2)
        self.assertEqual(d["guest_ms_by_vm"], {0: 600, 1: 300})
        self.assertEqual(d["cpu_ms"], {0: {"idle_ms": 50, "up_ms": 1000}, 1: {"idle_ms": 400, "up_ms": 1000}})



class BootSplit(unittest.TestCase):
    def test_parts_of_the_boot_next_to_plain_qemu(self):
        def hv(ready, start, built, entry):
            return {"unit": "boot-hv", "ok": True,
                    "result": {"ready_s": ready, "hv_start_ms": start, "vms_built_ms": built, "first_entry_ms": entry}}
        runs = [hv(3.0, 2, 302, 305), hv(3.2, 3, 403, 406), hv(2.9, 2, 252, 254),
                {"unit": "boot-plain", "ok": True, "result": {"ready_s": 1.5}},
                {"unit": "boot-plain", "ok": True, "result": {"ready_s": 1.7}},
                {"unit": "boot-plain", "ok": False, "result": {"ready_s": 0.1}}]
        b = exit_costs(runs)["boot_split"]
        self.assertEqual(b["vm_build_s"]["samples"], [0.3, 0.4, 0.25])
        self.assertAlmostEqual(b["startup_s"]["median"], 0.303)
        self.assertAlmostEqual(b["guest_s"]["median"], 2.695)
        # Failed runs are left out.
        self.assertEqual(b["plain_s"]["samples"], [1.5, 1.7])
        self.assertAlmostEqual(b["plain_s"]["median"], 1.6)

if __name__ == "__main__":
    unittest.main()
