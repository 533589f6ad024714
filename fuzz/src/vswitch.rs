//! Target `vswitch`: the L2 switch with 2–4 ports, each an access port of
//! VLAN 1, 2 or 3 (possibly with a transmit rate limit); spoofed, tagged
//! (802.1Q, 802.1ad, old QinQ), broadcast, multicast, unknown,
//! self-addressed and other-VLAN frames, MAC floods (more sources than
//! table entries), ports added, moved between VLANs, relocked, reset and
//! removed, rings filled and drained.
//!
//! An independent model of the documented forwarding rules (MAC locks,
//! tagged frames refused, learning per VLAN with oldest-first eviction,
//! a locked destination MAC owned by its port, flooding within the VLAN)
//! predicts the set of ports each frame reaches and every port counter
//! (drops by reason, frames queued, ring-full); the switch must agree
//! exactly. Independently of the model, a delivery must never reach the
//! source port, a port that was not added, a port outside the source's
//! VLAN, or, for a frame addressed to a port's locked MAC, any other port.
//! Every ring must hand out exactly the frames the model queued for it, in
//! order, and every port's configuration reads back as it was set.

use arbitrary::Arbitrary;
use hypervisor::net::{
    MAC_TABLE_SIZE, MAX_FRAME_SIZE, MIN_FRAME_SIZE, MacAddr, NetRxRing, PortConfig, PortStats,
    VSwitch,
};
use std::collections::VecDeque;

/// Ring depth (small, so rings fill up).
const DEPTH: usize = 4;

/// VLANs the ports are spread over (1..=`VLANS`).
const VLANS: u8 = 3;

/// A MAC address drawn from a small pool, so that addresses repeat.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum MacChoice {
    /// The lock of port `n % ports`.
    PortLock(u8),
    /// Broadcast.
    Broadcast,
    /// A multicast address.
    Multicast(u8),
    /// One of 64 unicast stations (more than the table holds).
    Station(u8),
    /// Anything.
    Any([u8; 6]),
}

impl MacChoice {
    fn resolve(self, ports: usize) -> MacAddr {
        match self {
            MacChoice::PortLock(n) => lock_mac(usize::from(n) % ports),
            MacChoice::Broadcast => [0xff; 6],
            MacChoice::Multicast(n) => [0x01, 0x00, 0x5e, 0, 0, n],
            MacChoice::Station(n) => [0x02, 0, 0, 0, 1, n % 64],
            MacChoice::Any(m) => m,
        }
    }
}

/// The EtherType of a frame (bytes 12..14).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum EtherType {
    /// IPv4.
    Ipv4,
    /// ARP.
    Arp,
    /// An 802.1Q VLAN tag.
    Dot1Q,
    /// An 802.1ad service tag.
    Dot1Ad,
    /// The old QinQ tag type.
    QinQ,
    /// Anything.
    Any(u16),
}

impl EtherType {
    fn value(self) -> u16 {
        match self {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Dot1Q => 0x8100,
            EtherType::Dot1Ad => 0x88a8,
            EtherType::QinQ => 0x9100,
            EtherType::Any(t) => t,
        }
    }
}

fn lock_mac(port: usize) -> MacAddr {
    [0x52, 0x54, 0, 0, 0, port as u8 + 1]
}

/// One operation.
#[derive(Arbitrary, Debug)]
pub enum SwitchOp {
    /// `forward(src % (ports + 1), frame)`.
    Forward {
        /// Source port (may be one that was not added).
        src: u8,
        /// Destination MAC.
        dst: MacChoice,
        /// Source MAC.
        from: MacChoice,
        /// EtherType.
        ethertype: EtherType,
        /// Length (wraps at 1600).
        len: u16,
        /// Payload byte.
        fill: u8,
    },
    /// The same source sends `count` broadcasts from fresh stations.
    Flood {
        /// Source port.
        src: u8,
        /// Frames.
        count: u8,
    },
    /// Add (or reconfigure) a port, locked to its MAC or open, in VLAN
    /// `1 + vlan % 3`, with a rate limit of `rate` Mbit/s (0: none).
    AddPort {
        /// Port.
        port: u8,
        /// Locked?
        locked: bool,
        /// VLAN choice.
        vlan: u8,
        /// Transmit limit.
        rate: u8,
    },
    /// Remove a port.
    RemovePort(u8),
    /// Reset a port (its VM restarted).
    ResetPort(u8),
    /// Take up to `n` frames from a port's ring.
    Take {
        /// Port.
        port: u8,
        /// Frames.
        n: u8,
    },
    /// Reset the switch.
    Reset,
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Ports: 2 + `ports % 3`.
    pub ports: u8,
    /// Operations.
    pub ops: Vec<SwitchOp>,
}

/// What the model knows of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Port {
    /// The only source MAC it may send from, if locked.
    lock: Option<MacAddr>,
    /// Its access VLAN.
    vlan: u16,
    /// Its transmit limit (the switch only keeps it).
    rate: u32,
}

impl Port {
    fn config(self) -> PortConfig {
        let base = match self.lock {
            Some(mac) => PortConfig::locked_to(mac),
            None => PortConfig::OPEN,
        };
        base.with_vlan(self.vlan).with_rate(self.rate)
    }
}

/// A station the model has learned.
#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: MacAddr,
    vlan: u16,
    port: usize,
    stamp: u64,
}

/// The model.
struct Model {
    ports: Vec<Option<Port>>,
    /// Learned stations in table-slot order.
    table: Vec<Option<Entry>>,
    clock: u64,
    rings: Vec<VecDeque<Vec<u8>>>,
    stats: Vec<PortStats>,
}

impl Model {
    fn new(ports: usize) -> Self {
        Model {
            ports: vec![None; ports],
            table: vec![None; MAC_TABLE_SIZE],
            clock: 0,
            rings: vec![VecDeque::new(); ports],
            stats: vec![PortStats::default(); ports],
        }
    }

    fn active(&self) -> u32 {
        (0..self.ports.len())
            .filter(|&p| self.ports[p].is_some())
            .fold(0, |m, p| m | 1 << p)
    }

    /// The added ports of `vlan`.
    fn members(&self, vlan: u16) -> u32 {
        (0..self.ports.len())
            .filter(|&p| self.ports[p].is_some_and(|c| c.vlan == vlan))
            .fold(0, |m, p| m | 1 << p)
    }

    /// The first added port locked to `mac`.
    fn owner(&self, mac: MacAddr) -> Option<usize> {
        (0..self.ports.len()).find(|&p| self.ports[p].is_some_and(|c| c.lock == Some(mac)))
    }

    fn learn(&mut self, mac: MacAddr, vlan: u16, port: usize) {
        let stamp = self.clock;
        let new = Entry {
            mac,
            vlan,
            port,
            stamp,
        };
        let slot = match self
            .table
            .iter()
            .position(|e| e.is_some_and(|e| e.mac == mac && e.vlan == vlan))
        {
            Some(known) => known,
            None => match self.table.iter().position(Option::is_none) {
                Some(free) => free,
                None => (0..self.table.len())
                    .min_by_key(|&i| self.table[i].map_or(0, |e| e.stamp))
                    .expect("table has slots"),
            },
        };
        self.table[slot] = Some(new);
    }

    /// The ports `frame` from `src` must reach; counts like the switch.
    fn forward(&mut self, src: usize, frame: &[u8]) -> u32 {
        self.clock += 1;
        let Some(Some(port)) = self.ports.get(src).copied() else {
            return 0;
        };
        let stats = &mut self.stats[src];
        if frame.len() < MIN_FRAME_SIZE {
            stats.tx_too_short += 1;
            return 0;
        }
        if frame.len() > MAX_FRAME_SIZE {
            stats.tx_too_long += 1;
            return 0;
        }
        let dst: MacAddr = frame[0..6].try_into().expect("6 bytes");
        let from: MacAddr = frame[6..12].try_into().expect("6 bytes");
        if port.lock.is_some_and(|m| m != from) {
            stats.tx_mac_lock += 1;
            return 0;
        }
        if matches!(
            u16::from_be_bytes([frame[12], frame[13]]),
            0x8100 | 0x88a8 | 0x9100
        ) {
            stats.tx_vlan_tagged += 1;
            return 0;
        }
        stats.tx_frames += 1;
        stats.tx_bytes += frame.len() as u64;
        let vlan = port.vlan;
        if from[0] & 1 == 0 {
            self.learn(from, vlan, src);
        }
        let members = self.members(vlan);
        let targets = if dst[0] & 1 != 0 {
            members
        } else if let Some(owner) = self.owner(dst) {
            if self.ports[owner].is_some_and(|c| c.vlan != vlan) {
                self.stats[src].tx_vlan += 1;
                return 0;
            }
            1 << owner
        } else {
            self.table
                .iter()
                .flatten()
                .find(|e| e.mac == dst && e.vlan == vlan)
                .map_or(members, |e| 1 << e.port)
        } & members
            & !(1 << src);
        if targets == 0 {
            self.stats[src].tx_no_destination += 1;
            return 0;
        }
        let mut delivered = 0;
        for p in 0..self.ports.len() {
            if targets & 1 << p == 0 {
                continue;
            }
            if self.rings[p].len() < DEPTH {
                self.rings[p].push_back(frame.to_vec());
                self.stats[p].rx_queued_frames += 1;
                self.stats[p].rx_queued_bytes += frame.len() as u64;
                delivered |= 1 << p;
            } else {
                self.stats[p].rx_ring_full += 1;
            }
        }
        delivered
    }

    fn forget(&mut self, port: usize) {
        for e in &mut self.table {
            if e.is_some_and(|e| e.port == port) {
                *e = None;
            }
        }
        self.rings[port].clear();
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    let ports = 2 + usize::from(input.ports % 3);
    let rings: Vec<NetRxRing<DEPTH>> = (0..ports).map(|_| NetRxRing::new()).collect();
    let switch = VSwitch::new(&rings);
    let mut model = Model::new(ports);
    let mut station = 0u32;
    let mut buf = [0u8; MAX_FRAME_SIZE];
    for op in input.ops.iter().take(256) {
        match *op {
            SwitchOp::Forward {
                src,
                dst,
                from,
                ethertype,
                len,
                fill,
            } => {
                let src = usize::from(src) % (ports + 1); // one beyond: never added
                let mut frame = vec![fill; usize::from(len) % 1600];
                let header: Vec<u8> = dst
                    .resolve(ports)
                    .into_iter()
                    .chain(from.resolve(ports))
                    .chain(ethertype.value().to_be_bytes())
                    .collect();
                for (b, h) in frame.iter_mut().zip(header) {
                    *b = h;
                }
                forward(&switch, &mut model, src, &frame);
            }
            SwitchOp::Flood { src, count } => {
                let src = usize::from(src) % ports;
                for _ in 0..count % 48 {
                    station += 1;
                    let s = station.to_be_bytes();
                    let mut frame = vec![0u8; 60];
                    frame[0..6].copy_from_slice(&[0xff; 6]);
                    frame[6..12].copy_from_slice(&[0x06, 0, s[0], s[1], s[2], s[3]]);
                    frame[12..14].copy_from_slice(&[0x08, 0x00]);
                    forward(&switch, &mut model, src, &frame);
                }
            }
            SwitchOp::AddPort {
                port,
                locked,
                vlan,
                rate,
            } => {
                let port = usize::from(port) % ports;
                let config = Port {
                    lock: locked.then(|| lock_mac(port)),
                    vlan: u16::from(1 + vlan % VLANS),
                    rate: u32::from(rate),
                };
                switch
                    .add_port(port, config.config())
                    .expect("port in range");
                model.ports[port] = Some(config);
            }
            SwitchOp::RemovePort(port) => {
                let port = usize::from(port) % ports;
                switch.remove_port(port);
                model.ports[port] = None;
                model.forget(port);
            }
            SwitchOp::ResetPort(port) => {
                let port = usize::from(port) % ports;
                let discarded = switch.reset_port(port);
                assert_eq!(
                    discarded,
                    model.rings[port].len(),
                    "port {port}: frames discarded by a port reset"
                );
                model.forget(port);
            }
            SwitchOp::Take { port, n } => {
                let port = usize::from(port) % ports;
                let ring = switch.ring(port).expect("ring");
                for _ in 0..n % 8 {
                    let got = ring.take(&mut buf);
                    let want = model.rings[port].pop_front();
                    assert_eq!(
                        got.map(|n| buf[..n].to_vec()),
                        want,
                        "port {port}: ring content differs from the model"
                    );
                }
            }
            SwitchOp::Reset => {
                switch.reset();
                model = Model::new(ports);
            }
        }
        for (p, ring) in rings.iter().enumerate() {
            assert_eq!(ring.len(), model.rings[p].len(), "port {p}: frames queued");
            assert_eq!(
                switch.port_stats(p),
                model.stats[p],
                "port {p}: counters differ from the model"
            );
            assert_eq!(
                switch.port_config(p),
                model.ports[p].map(Port::config),
                "port {p}: configuration"
            );
        }
    }
}

/// Sends `frame` through the switch from `src` and checks the delivery.
fn forward(switch: &VSwitch<'_, DEPTH>, model: &mut Model, src: usize, frame: &[u8]) {
    let got = switch.forward(src, frame);
    check(model, src, frame, got);
}

/// Checks that the switch delivering `frame` from `src` to `got` obeys
/// the switch's invariants and matches the model exactly (the model
/// advances past the frame).
fn check(model: &mut Model, src: usize, frame: &[u8], got: u32) {
    let active = model.active();
    assert_eq!(got & 1 << src, 0, "delivered to the source port {src}");
    assert_eq!(got & !active, 0, "delivered to a port that was not added");
    if let Some(Some(port)) = model.ports.get(src) {
        let outside = got & !model.members(port.vlan);
        assert_eq!(
            outside, 0,
            "frame from port {src} (vlan {}) delivered outside its VLAN to {outside:#b}",
            port.vlan
        );
    }
    if let Some(owner) = frame
        .get(0..6)
        .and_then(|d| model.owner(d.try_into().expect("6 bytes")))
    {
        assert_eq!(
            got & !(1 << owner),
            0,
            "frame to the locked MAC of port {owner} delivered elsewhere"
        );
    }
    let want = model.forward(src, frame);
    assert_eq!(
        got,
        want,
        "frame from port {src} dst {:x?} src {:x?} type {:x?}: delivered to {got:#b}, \
         model says {want:#b}",
        frame.get(0..6),
        frame.get(6..12),
        frame.get(12..14)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports 0 and 1 in VLAN 1, port 2 in VLAN 2, all locked; the model
    /// is told the VLANs in `model_vlans` (normally the same).
    fn three_ports(
        rings: &[NetRxRing<DEPTH>],
        model_vlans: [u16; 3],
    ) -> (VSwitch<'_, DEPTH>, Model) {
        let switch = VSwitch::new(rings);
        let mut model = Model::new(3);
        for (p, (vlan, model_vlan)) in [1, 1, 2].into_iter().zip(model_vlans).enumerate() {
            let port = Port {
                lock: Some(lock_mac(p)),
                vlan,
                rate: 0,
            };
            switch.add_port(p, port.config()).expect("port in range");
            model.ports[p] = Some(Port {
                vlan: model_vlan,
                ..port
            });
        }
        (switch, model)
    }

    fn frame(dst: MacAddr, src: MacAddr, ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }

    #[test]
    fn the_real_switch_agrees_with_the_model() {
        let rings: Vec<NetRxRing<DEPTH>> = (0..3).map(|_| NetRxRing::new()).collect();
        let (switch, mut model) = three_ports(&rings, [1, 1, 2]);
        let cases = [
            (0, frame([0xff; 6], lock_mac(0), 0x0800), 0b010),
            (0, frame(lock_mac(2), lock_mac(0), 0x0800), 0),
            (0, frame(lock_mac(1), lock_mac(0), 0x8100), 0),
            (2, frame([0xff; 6], lock_mac(2), 0x0806), 0),
            (1, frame(lock_mac(0), lock_mac(1), 0x0800), 0b001),
        ];
        for (src, f, want) in cases {
            let got = switch.forward(src, &f);
            assert_eq!(got, want, "from {src}");
            check(&mut model, src, &f, got);
        }
        for p in 0..3 {
            assert_eq!(switch.port_stats(p), model.stats[p], "port {p}");
        }
        assert_eq!(model.stats[0].tx_vlan, 1);
        assert_eq!(model.stats[0].tx_vlan_tagged, 1);
        assert_eq!(model.stats[2].tx_no_destination, 1);
    }

    #[test]
    #[should_panic(expected = "outside its VLAN")]
    fn a_cross_vlan_delivery_is_caught() {
        let rings: Vec<NetRxRing<DEPTH>> = (0..3).map(|_| NetRxRing::new()).collect();
        let (_switch, mut model) = three_ports(&rings, [1, 1, 2]);
        // A broadcast from port 0 that a broken switch also gave port 2.
        check(&mut model, 0, &frame([0xff; 6], lock_mac(0), 0x0800), 0b110);
    }

    #[test]
    #[should_panic(expected = "model says 0b100")]
    fn a_delivery_set_that_differs_from_the_expectation_is_caught() {
        let rings: Vec<NetRxRing<DEPTH>> = (0..3).map(|_| NetRxRing::new()).collect();
        // The expectation wrongly puts port 2 in VLAN 1: the switch drops
        // a frame from port 0 to port 2's MAC (`vlan`), the model expects
        // it on port 2.
        let (switch, mut model) = three_ports(&rings, [1, 1, 1]);
        forward(
            &switch,
            &mut model,
            0,
            &frame(lock_mac(2), lock_mac(0), 0x0800),
        );
    }
}
