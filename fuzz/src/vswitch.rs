//! Target `vswitch`: the L2 switch with 2–4 ports, spoofed, broadcast,
//! multicast, unknown and self-addressed frames, MAC floods (more sources
//! than table entries), ports added, relocked and removed, rings filled and
//! drained. An independent model of the documented forwarding rules (MAC
//! locks, learning with oldest-first eviction, flooding) predicts the set of
//! ports each frame reaches; the switch must agree exactly, never deliver
//! to the source port or a port that was not added, and every ring must
//! hand out exactly the frames the model queued for it, in order.
//! (The switch has no VLANs: every added port is in one broadcast domain.)

use arbitrary::Arbitrary;
use hypervisor::net::{
    MAC_TABLE_SIZE, MAX_FRAME_SIZE, MIN_FRAME_SIZE, MacAddr, NetRxRing, PortConfig, VSwitch,
};
use std::collections::VecDeque;

/// Ring depth (small, so rings fill up).
const DEPTH: usize = 4;

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

fn lock_mac(port: usize) -> MacAddr {
    [0x52, 0x54, 0, 0, 0, port as u8 + 1]
}

/// One operation.
#[derive(Arbitrary, Debug)]
pub enum SwitchOp {
    /// `forward(src % ports, frame)`.
    Forward {
        /// Source port (may be one that was not added).
        src: u8,
        /// Destination MAC.
        dst: MacChoice,
        /// Source MAC.
        from: MacChoice,
        /// Length (wraps at 1600).
        len: u16,
        /// Payload byte.
        fill: u8,
    },
    /// The same source sends `count` frames from fresh stations.
    Flood {
        /// Source port.
        src: u8,
        /// Frames.
        count: u8,
    },
    /// Add (or reconfigure) a port, locked to its MAC or open.
    AddPort {
        /// Port.
        port: u8,
        /// Locked?
        locked: bool,
    },
    /// Remove a port.
    RemovePort(u8),
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

/// The model.
struct Model {
    ports: Vec<Option<PortConfig>>,
    /// (mac, port, stamp) in table-slot order.
    table: Vec<Option<(MacAddr, usize, u64)>>,
    clock: u64,
    rings: Vec<VecDeque<Vec<u8>>>,
}

impl Model {
    fn new(ports: usize) -> Self {
        Model {
            ports: vec![None; ports],
            table: vec![None; MAC_TABLE_SIZE],
            clock: 0,
            rings: vec![VecDeque::new(); ports],
        }
    }

    fn active(&self) -> u32 {
        (0..self.ports.len())
            .filter(|&p| self.ports[p].is_some())
            .fold(0, |m, p| m | 1 << p)
    }

    fn learn(&mut self, mac: MacAddr, port: usize) {
        let now = self.clock;
        if let Some((_, p, stamp)) = self.table.iter_mut().flatten().find(|e| e.0 == mac) {
            *p = port;
            *stamp = now;
            return;
        }
        if let Some(free) = self.table.iter_mut().find(|e| e.is_none()) {
            *free = Some((mac, port, now));
            return;
        }
        let oldest = self
            .table
            .iter_mut()
            .min_by_key(|e| e.map_or(0, |(_, _, s)| s))
            .expect("table has entries");
        *oldest = Some((mac, port, now));
    }

    /// The ports `frame` from `src` must reach.
    fn forward(&mut self, src: usize, frame: &[u8]) -> u32 {
        self.clock += 1;
        let Some(Some(config)) = self.ports.get(src).copied() else {
            return 0;
        };
        if frame.len() < MIN_FRAME_SIZE || frame.len() > MAX_FRAME_SIZE {
            return 0;
        }
        let dst: MacAddr = frame[0..6].try_into().expect("6 bytes");
        let from: MacAddr = frame[6..12].try_into().expect("6 bytes");
        if config.mac_lock.is_some_and(|m| m != from) {
            return 0;
        }
        if from[0] & 1 == 0 {
            self.learn(from, src);
        }
        let active = self.active();
        let owner = self
            .ports
            .iter()
            .position(|p| p.is_some_and(|c| c.mac_lock == Some(dst)))
            .or_else(|| {
                self.table
                    .iter()
                    .flatten()
                    .find(|e| e.0 == dst)
                    .map(|e| e.1)
            });
        let targets = if dst[0] & 1 != 0 {
            active
        } else {
            owner.map_or(active, |p| 1 << p)
        } & active
            & !(1 << src);
        let mut delivered = 0;
        for p in 0..self.ports.len() {
            if targets & 1 << p != 0 && self.rings[p].len() < DEPTH {
                self.rings[p].push_back(frame.to_vec());
                delivered |= 1 << p;
            }
        }
        delivered
    }

    fn remove(&mut self, port: usize) {
        self.ports[port] = None;
        for e in &mut self.table {
            if e.is_some_and(|(_, p, _)| p == port) {
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
                len,
                fill,
            } => {
                let src = usize::from(src) % (ports + 1); // one beyond: never added
                let mut frame = vec![fill; usize::from(len) % 1600];
                let header: Vec<u8> = dst
                    .resolve(ports)
                    .into_iter()
                    .chain(from.resolve(ports))
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
                    forward(&switch, &mut model, src, &frame);
                }
            }
            SwitchOp::AddPort { port, locked } => {
                let port = usize::from(port) % ports;
                let config = if locked {
                    PortConfig::locked_to(lock_mac(port))
                } else {
                    PortConfig::OPEN
                };
                switch.add_port(port, config).expect("port in range");
                model.ports[port] = Some(config);
            }
            SwitchOp::RemovePort(port) => {
                let port = usize::from(port) % ports;
                switch.remove_port(port);
                model.remove(port);
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
        for (p, r) in model.rings.iter().enumerate() {
            assert_eq!(rings[p].len(), r.len(), "port {p}: frames queued");
        }
    }
}

fn forward(switch: &VSwitch<'_, DEPTH>, model: &mut Model, src: usize, frame: &[u8]) {
    let active = model.active();
    let got = switch.forward(src, frame);
    assert_eq!(got & 1 << src, 0, "delivered to the source port {src}");
    assert_eq!(got & !active, 0, "delivered to a port that was not added");
    let want = model.forward(src, frame);
    assert_eq!(
        got,
        want,
        "frame from port {src} dst {:x?} src {:x?}: delivered to {got:#b}, model says {want:#b}",
        frame.get(0..6),
        frame.get(6..12)
    );
}
