//! Tests of `vswitch`.

use super::*;

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

fn mac(n: u8) -> MacAddr {
    [0x02, 0, 0, 0, 0, n]
}

#[test]
fn learning_flooding_and_filtering() {
    let rings: [NetRxRing<4>; 3] = [const { NetRxRing::new() }; 3];
    let sw = VSwitch::new(&rings);
    for p in 0..3 {
        sw.add_port(p, PortConfig::OPEN).unwrap();
    }
    // Unknown unicast floods to everyone but the source.
    assert_eq!(sw.forward(0, &frame(mac(9), mac(0), 60)), 0b110);
    assert_eq!(sw.lookup(&mac(0)), Some(0));
    // Known unicast goes to its port only.
    assert_eq!(sw.forward(2, &frame(mac(0), mac(2), 60)), 0b001);
    // A station moves.
    assert_eq!(sw.forward(1, &frame(BROADCAST, mac(0), 60)), 0b101);
    assert_eq!(sw.lookup(&mac(0)), Some(1));
    // Known destination on the source port: filtered, counted.
    assert_eq!(sw.forward(1, &frame(mac(0), mac(7), 60)), 0);
    assert_eq!(sw.port_stats(1).tx_no_destination, 1);
    // Group source addresses are not learned.
    sw.forward(2, &frame(BROADCAST, [0x03, 0, 0, 0, 0, 1], 60));
    assert_eq!(sw.lookup(&[0x03, 0, 0, 0, 0, 1]), None);
    let snap = sw.snapshot();
    assert_eq!(snap.moves, 1);
    assert_eq!(snap.clock, 5);
}

#[test]
fn locked_but_unlearned_destination_is_not_flooded() {
    let rings: [NetRxRing<4>; 3] = [const { NetRxRing::new() }; 3];
    let sw = VSwitch::new(&rings);
    for p in 0..3 {
        sw.add_port(p, PortConfig::locked_to(mac(p as u8))).unwrap();
    }
    // vm0 -> vm1 before vm1 ever transmitted: vm1 only, vm2 sees nothing.
    assert_eq!(sw.lookup(&mac(1)), None);
    assert_eq!(sw.forward(0, &frame(mac(1), mac(0), 60)), 0b010);
    assert!(rings[2].is_empty());
    assert_eq!(rings[1].len(), 1);
    assert_eq!(sw.port_stats(2).rx_queued_frames, 0);
    // A station nobody owns is still flooded; a lock on the source port
    // itself is filtered like a learned one.
    assert_eq!(sw.forward(0, &frame(mac(9), mac(0), 60)), 0b110);
    assert_eq!(sw.forward(0, &frame(mac(0), mac(0), 60)), 0);
    assert_eq!(sw.port_stats(0).tx_no_destination, 1);
    // The lock wins over a table entry an open port created by
    // sending with the locked address.
    sw.add_port(2, PortConfig::OPEN).unwrap();
    sw.forward(2, &frame(BROADCAST, mac(1), 60));
    assert_eq!(sw.lookup(&mac(1)), Some(2));
    assert_eq!(sw.forward(0, &frame(mac(1), mac(0), 60)), 0b010);
}

#[test]
fn lengths_unknown_ports_and_range() {
    let rings: [NetRxRing<4>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    assert_eq!(
        sw.add_port(2, PortConfig::OPEN),
        Err(PortError::OutOfRange { port: 2, ports: 2 })
    );
    sw.add_port(0, PortConfig::OPEN).unwrap();
    assert_eq!(sw.forward(1, &frame(BROADCAST, mac(1), 60)), 0);
    assert_eq!(sw.snapshot().unknown_source, 1);
    assert_eq!(sw.forward(0, &[0u8; 13]), 0);
    assert_eq!(sw.forward(0, &vec![0u8; MAX_FRAME_SIZE + 1]), 0);
    let s = sw.port_stats(0);
    assert_eq!((s.tx_too_short, s.tx_too_long, s.tx_frames), (1, 1, 0));
    // A single port: a flood reaches nobody, counted.
    assert_eq!(sw.forward(0, &frame(BROADCAST, mac(0), 14)), 0);
    assert_eq!(sw.port_stats(0).tx_no_destination, 1);
    assert_eq!(sw.port_stats(0).tx_frames, 1);
}

#[test]
fn eviction_takes_the_least_recently_refreshed() {
    let rings: [NetRxRing<1>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    sw.add_port(0, PortConfig::OPEN).unwrap();
    sw.add_port(1, PortConfig::OPEN).unwrap();
    for i in 0..MAC_TABLE_SIZE as u8 {
        sw.forward(0, &frame(BROADCAST, mac(i), 60));
    }
    // Refresh the first one: the second becomes the oldest.
    sw.forward(0, &frame(BROADCAST, mac(0), 60));
    sw.forward(1, &frame(BROADCAST, mac(200), 60));
    assert_eq!(sw.lookup(&mac(0)), Some(0));
    assert_eq!(sw.lookup(&mac(1)), None, "evicted");
    assert_eq!(sw.lookup(&mac(200)), Some(1));
    let snap = sw.snapshot();
    assert_eq!(snap.evictions, 1);
    assert_eq!(snap.entries().count(), MAC_TABLE_SIZE);
}

#[test]
fn remove_port_forgets_its_stations() {
    let rings: [NetRxRing<2>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    sw.add_port(0, PortConfig::OPEN).unwrap();
    sw.add_port(1, PortConfig::OPEN).unwrap();
    sw.forward(0, &frame(BROADCAST, mac(0), 60));
    sw.forward(1, &frame(BROADCAST, mac(1), 60));
    sw.remove_port(1);
    assert_eq!(sw.lookup(&mac(1)), None);
    assert!(rings[1].is_empty());
    assert_eq!(sw.ports(), 0b01);
    assert_eq!(sw.forward(0, &frame(mac(1), mac(0), 60)), 0);
}

#[test]
fn reset_port_forgets_and_drops_but_keeps_the_lock() {
    let rings: [NetRxRing<4>; 3] = [const { NetRxRing::new() }; 3];
    let sw = VSwitch::new(&rings);
    for p in 0..3 {
        sw.add_port(p, PortConfig::locked_to(mac(p as u8))).unwrap();
    }
    sw.forward(1, &frame(BROADCAST, mac(1), 60));
    sw.forward(2, &frame(BROADCAST, mac(2), 60));
    sw.forward(0, &frame(mac(1), mac(0), 60));
    sw.forward(2, &frame(mac(1), mac(2), 60));
    assert_eq!(rings[1].len(), 3);
    let before = sw.port_stats(1);
    assert_eq!(sw.reset_port(1), 3);
    assert!(rings[1].is_empty());
    assert_eq!(sw.lookup(&mac(1)), None, "learned entry forgotten");
    assert_eq!(sw.lookup(&mac(2)), Some(2), "other ports keep theirs");
    assert_eq!(sw.port_config(1), Some(PortConfig::locked_to(mac(1))));
    assert_eq!(sw.port_stats(1), before, "counters stay");
    // The lock still holds: vm1's MAC sent from port 2 is refused, and
    // frames for it reach port 1 only.
    sw.forward(2, &frame(BROADCAST, mac(1), 60));
    assert_eq!(sw.port_stats(2).tx_mac_lock, 1);
    assert_eq!(sw.forward(0, &frame(mac(1), mac(0), 60)), 0b010);
    assert_eq!(sw.reset_port(7), 0, "a port that does not exist");
}

/// Ports 0 and 1 in VLAN 1, port 2 in VLAN 2, all MAC-locked.
fn vlan_switch(rings: &[NetRxRing<8>]) -> VSwitch<'_, 8> {
    let sw = VSwitch::new(rings);
    for (p, vlan) in [(0, 1), (1, 1), (2, 2)] {
        let config = PortConfig::locked_to(mac(p as u8)).with_vlan(vlan);
        sw.add_port(p, config).unwrap();
    }
    sw
}

#[test]
fn vlans_keep_floods_and_unicast_apart() {
    let rings: [NetRxRing<8>; 3] = [const { NetRxRing::new() }; 3];
    let sw = vlan_switch(&rings);
    // Broadcast from port 0 reaches port 1 only; from port 2 nobody.
    assert_eq!(sw.forward(0, &frame(BROADCAST, mac(0), 60)), 0b010);
    assert_eq!(sw.forward(2, &frame(BROADCAST, mac(2), 60)), 0);
    assert_eq!(sw.port_stats(2).tx_no_destination, 1);
    // Unicast to a port of the other VLAN (its locked MAC): dropped
    // and counted as `vlan`, both ways, learned or not.
    assert_eq!(sw.forward(0, &frame(mac(2), mac(0), 60)), 0);
    assert_eq!(sw.forward(2, &frame(mac(0), mac(2), 60)), 0);
    assert_eq!(sw.port_stats(0).tx_vlan, 1);
    assert_eq!(sw.port_stats(2).tx_vlan, 1);
    assert!(rings[2].is_empty(), "vlan 2 never saw a frame of vlan 1");
    assert_eq!(rings[0].len(), 0);
    // Same VLAN: unicast works.
    assert_eq!(sw.forward(1, &frame(mac(0), mac(1), 60)), 0b001);
    let s = sw.port_stats(0);
    assert_eq!(s.drops(), 1);
}

#[test]
fn learning_is_per_vlan() {
    let rings: [NetRxRing<8>; 4] = [const { NetRxRing::new() }; 4];
    let sw = VSwitch::new(&rings);
    for (p, vlan) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
        sw.add_port(p, PortConfig::OPEN.with_vlan(vlan)).unwrap();
    }
    // The same station address appears in both VLANs: two entries,
    // no move between VLANs.
    sw.forward(1, &frame(BROADCAST, mac(9), 60));
    sw.forward(3, &frame(BROADCAST, mac(9), 60));
    assert_eq!(sw.lookup_in(1, &mac(9)), Some(1));
    assert_eq!(sw.lookup_in(2, &mac(9)), Some(3));
    assert_eq!(sw.snapshot().moves, 0);
    // Unicast to it goes to the port of the sender's VLAN.
    assert_eq!(sw.forward(0, &frame(mac(9), mac(0), 60)), 0b0010);
    assert_eq!(sw.forward(2, &frame(mac(9), mac(2), 60)), 0b1000);
    // An address learned only in VLAN 2 is unknown in VLAN 1: flooded
    // within VLAN 1.
    sw.forward(3, &frame(BROADCAST, mac(7), 60));
    assert_eq!(sw.lookup_in(1, &mac(7)), None);
    assert_eq!(sw.forward(0, &frame(mac(7), mac(0), 60)), 0b0010);
}

#[test]
fn tagged_frames_are_dropped_on_access_ports() {
    let rings: [NetRxRing<8>; 3] = [const { NetRxRing::new() }; 3];
    let sw = vlan_switch(&rings);
    for tpid in [[0x81, 0x00], [0x88, 0xa8], [0x91, 0x00]] {
        // A tag asking for VLAN 2, sent from VLAN 1: dropped, counted.
        let mut f = frame(mac(2), mac(0), 64);
        f[12..14].copy_from_slice(&tpid);
        f[14..16].copy_from_slice(&2u16.to_be_bytes());
        assert!(is_tagged(&f));
        assert_eq!(sw.forward(0, &f), 0);
    }
    let s = sw.port_stats(0);
    assert_eq!((s.tx_vlan_tagged, s.tx_frames, s.tx_vlan), (3, 0, 0));
    assert!(rings.iter().all(NetRxRing::is_empty));
    // An untagged IPv4 frame is fine.
    let mut f = frame(mac(1), mac(0), 64);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    assert!(!is_tagged(&f));
    assert_eq!(sw.forward(0, &f), 0b010);
}

/// A sink that keeps what it is given.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(usize, u64, usize, Verdict)>>);

impl CaptureSink for Recorder {
    fn record(&self, port: usize, now: u64, frame: &[u8], verdict: Verdict) {
        self.0
            .lock()
            .unwrap()
            .push((port, now, frame.len(), verdict));
    }

    fn record_part(&self, port: usize, now: u64, _data: &[u8], len: usize, verdict: Verdict) {
        self.0.lock().unwrap().push((port, now, len, verdict));
    }
}

#[test]
fn capture_sees_every_frame_with_its_verdict() {
    let rings: [NetRxRing<1>; 3] = [const { NetRxRing::new() }; 3];
    let rec = Recorder::default();
    let sw = VSwitch::with_capture(&rings, &rec);
    for (p, vlan) in [(0, 1), (1, 1), (2, 2)] {
        let config = PortConfig::locked_to(mac(p as u8)).with_vlan(vlan);
        sw.add_port(p, config).unwrap();
    }
    // Off: nothing recorded.
    sw.forward_at(0, &frame(mac(1), mac(0), 60), 5);
    assert!(rec.0.lock().unwrap().is_empty());
    assert!(!sw.capture_enabled());
    assert_eq!(sw.set_capture(true), 1);
    assert_eq!(sw.snapshot().capture, Some(true));
    sw.forward_at(0, &frame(mac(1), mac(0), 70), 10); // ring of port 1 full
    sw.forward_at(0, &frame(mac(2), mac(0), 60), 11); // other VLAN
    sw.forward_at(0, &frame(mac(1), mac(9), 60), 12); // spoofed
    sw.forward_at(0, &[0u8; 10], 13); // too short
    sw.forward_at(1, &frame(mac(0), mac(1), 80), 14); // delivered
    sw.forward_at(3, &frame(mac(0), mac(1), 80), 15); // unknown port
    let clock = sw.set_capture(false);
    sw.forward_at(1, &frame(mac(0), mac(1), 80), 16);
    use DropReason as D;
    let got = rec.0.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            (0, 10, 70, Verdict::Dropped(D::RingFull)),
            (0, 11, 60, Verdict::Dropped(D::Vlan)),
            (0, 12, 60, Verdict::Dropped(D::MacLock)),
            (0, 13, 10, Verdict::Dropped(D::TooShort)),
            (1, 14, 80, Verdict::Forwarded),
        ]
    );
    // Every frame seen while on, except the unknown port's.
    assert_eq!(clock, 7);
    assert_eq!(got.len() as u64, clock - 1 - sw.snapshot().unknown_source);
    // A switch without a sink cannot turn capture on.
    let plain = VSwitch::new(&rings);
    plain.set_capture(true);
    assert!(!plain.capture_enabled());
    assert_eq!(plain.snapshot().capture, None);
}

#[test]
fn tx_retry_times_per_port() {
    let rings: [NetRxRing<1>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    assert_eq!(sw.tx_retry(0), None);
    sw.set_tx_retry(0, Some(42));
    assert_eq!((sw.tx_retry(0), sw.tx_retry(1)), (Some(42), None));
    sw.set_tx_retry(0, None);
    assert_eq!(sw.tx_retry(0), None);
    sw.set_tx_retry(9, Some(1));
    assert_eq!(sw.tx_retry(9), None, "no such port");
}

#[test]
fn display_mentions_everything() {
    let rings: [NetRxRing<2>; 3] = [const { NetRxRing::new() }; 3];
    let sw = VSwitch::new(&rings);
    sw.add_port(0, PortConfig::locked_to(mac(1))).unwrap();
    sw.add_port(1, PortConfig::OPEN).unwrap();
    sw.forward(0, &frame(BROADCAST, mac(1), 60));
    sw.forward(0, &frame(BROADCAST, mac(2), 60));
    sw.add_port(2, PortConfig::OPEN.with_vlan(7).with_rate(50))
        .unwrap();
    let text = sw.snapshot().to_string();
    assert!(text.contains("vswitch: 3 ports, 1/32 MAC entries, 2 frames seen"));
    assert!(text.contains("capture unavailable"));
    assert!(text.contains("port 2: open, vlan 7, rate 50 Mbit/s (burst 125000 bytes), ring 0/2"));
    assert!(text.contains("drops: too-short 0 too-long 0 malformed 0 mac-lock 0 vlan 0"));
    assert!(text.contains("port 0: mac-lock 02:00:00:00:00:01, vlan 1, rate unlimited, ring 0/2"));
    assert!(text.contains("port 1: open, vlan 1, rate unlimited, ring 1/2"));
    assert!(text.contains("mac-lock 1"));
    assert!(text.contains("  02:00:00:00:00:01 port 0 age 1"));
}
