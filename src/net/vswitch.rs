//! The L2 learning switch that connects the VMs' virtio-net devices.
//!
//! (About 1,000 lines on purpose: forwarding, VLANs, the MAC lock,
//! learning and eviction, the per-reason counters and their report are one
//! set of rules read together under one lock; capture, rate limits and the
//! port rings already live in their own modules, the tests in
//! `vswitch_tests.rs`.)
//!
//! # Forwarding
//! [`VSwitch::forward`] takes a frame transmitted by the VM on `src_port`:
//!
//! 1. frames shorter than [`MIN_FRAME_SIZE`] (an Ethernet header) or longer
//!    than [`MAX_FRAME_SIZE`] are dropped and counted;
//! 2. if the port has a source-MAC lock ([`PortConfig::mac_lock`]), a frame
//!    whose source MAC is not the port's own is dropped and counted, so a
//!    guest cannot take over another VM's MAC table entry;
//! 3. every port is an access port of one VLAN ([`PortConfig::vlan`],
//!    default [`DEFAULT_VLAN`]): a frame that carries an 802.1Q or 802.1ad
//!    tag (EtherType 0x8100, 0x88a8 or 0x9100) is dropped and counted
//!    (`vlan-tagged`), so a guest cannot hop VLANs by double tagging;
//! 4. the source MAC is learned on `src_port` in the port's VLAN (unless
//!    it is a group address, which no station owns); a MAC seen on another
//!    port of that VLAN moves;
//! 5. a unicast destination that is some port's source-MAC lock goes to
//!    that port only, learned or not (the lock says who owns the address,
//!    so traffic to a VM that has not transmitted yet never reaches a third
//!    VM) — and if that port is in another VLAN, nowhere: the frame is
//!    dropped and counted (`vlan`); otherwise a group destination (I/G
//!    bit, `dst[0] & 1`: broadcast and multicast) and an unknown unicast
//!    destination are flooded to every port of the VLAN but the source,
//!    and a unicast destination learned in the VLAN goes to its port only;
//! 6. a frame is never delivered back to its source port (a known unicast
//!    destination on the source port is filtered and counted);
//! 7. each destination gets its own copy in its [`NetRxRing`]; a full ring
//!    drops that copy and counts it on the destination port.
//!
//! # Capture
//! A switch built with [`VSwitch::with_capture`] records every frame a
//! known port transmits, with its verdict (forwarded, or dropped and why),
//! into a [`CaptureSink`] while capture is on ([`VSwitch::set_capture`]).
//! With capture off the cost is one relaxed atomic load per frame.
//!
//! # Transmit rate limits
//! A port's [`PortConfig::rate_mbit`] is enforced by its transmitter (the
//! virtio-net device holds the token bucket and leaves frames in the
//! guest's TX queue while the port has no tokens); the switch keeps the
//! port's retry time ([`VSwitch::set_tx_retry`]) so that the run loop can
//! come back then, and shows the limit in its statistics.
//!
//! `forward` returns the [`PortMask`] of ports that received the frame, so
//! the caller can kick the physical CPUs running those VMs.
//!
//! # Ports
//! Ports are the VMs: port `n` is VM `n` and its ring is `rings[n]`. Ports
//! are added at run time ([`VSwitch::add_port`]); a frame from a port that
//! was never added is dropped and counted, and flooding only reaches added
//! ports. The number of usable ports is the number of rings, at most
//! [`MAX_PORTS`].
//!
//! # MAC table
//! [`MAC_TABLE_SIZE`] entries. Each entry carries the switch clock (frames
//! forwarded so far) of when it was last learned or refreshed; its *age*
//! is the clock now minus that stamp. When the table is full, learning a
//! new MAC **evicts the oldest entry** (least recently learned or
//! refreshed), counted in [`SwitchSnapshot::evictions`]. An evicted station
//! is simply unknown again: frames to it are flooded until it transmits
//! (unless its address is a port's lock: then they still go to that port).
//!
//! # Concurrency
//! `forward` may run on several physical CPUs at once (several VMs
//! transmitting). It takes the switch's spin lock around learning and
//! storing, so each port ring keeps exactly one producer at a time. Per-port
//! counters are atomics: the destination VM's run loop updates its RX
//! counters without the lock. The lock is a spin lock: `forward` must not
//! be called from an interrupt handler that can preempt a `forward` on the
//! same CPU (the hypervisor handles exits with interrupts masked).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use super::capture::{CaptureSink, DropReason, Verdict};
use super::rate::TokenBucket;
use super::rx_ring::{
    DEFAULT_RING_BYTES, FrameMeta, MAX_FRAME_SIZE, MAX_GSO_FRAME_SIZE, MIN_FRAME_SIZE, NetRxRing,
    StoreError,
};
use crate::platform::MAX_VMS;

/// Most ports a switch has: one per VM.
pub const MAX_PORTS: usize = MAX_VMS;

/// Entries in the MAC table.
pub const MAC_TABLE_SIZE: usize = 32;

/// A set of ports, bit `n` = port `n`.
pub type PortMask = u32;

const _: () = assert!(MAX_PORTS <= PortMask::BITS as usize);

/// An Ethernet MAC address.
pub type MacAddr = [u8; 6];

/// The broadcast address.
pub const BROADCAST: MacAddr = [0xff; 6];

/// True for a group (broadcast or multicast) address: the I/G bit.
pub const fn is_group(mac: &MacAddr) -> bool {
    mac[0] & 1 != 0
}

/// `aa:bb:cc:dd:ee:ff` formatting for a [`MacAddr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub MacAddr);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Bit of `port` in a [`PortMask`] (0 for a port beyond the mask).
pub const fn port_bit(port: usize) -> PortMask {
    if port < PortMask::BITS as usize {
        1 << port
    } else {
        0
    }
}

/// The VLAN of a port unless configured otherwise.
pub const DEFAULT_VLAN: u16 = 1;
/// Largest VLAN ID (4095 is reserved).
pub const MAX_VLAN: u16 = 4094;

/// EtherTypes of VLAN tags (802.1Q, 802.1ad, the old QinQ value).
pub const VLAN_TAG_TYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// True if `frame` carries a VLAN tag (its EtherType is one of
/// [`VLAN_TAG_TYPES`]).
pub fn is_tagged(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some(&[hi, lo]) => VLAN_TAG_TYPES.contains(&u16::from_be_bytes([hi, lo])),
        _ => false,
    }
}

/// How a port is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Source-MAC lock: if set, frames from this port whose source MAC is
    /// not this address are dropped (and counted). On for VM ports.
    pub mac_lock: Option<MacAddr>,
    /// The port's access VLAN (`1..=`[`MAX_VLAN`]): it exchanges frames
    /// with ports of the same VLAN only.
    pub vlan: u16,
    /// Transmit limit in Mbit/s (0: unlimited), enforced by the port's
    /// transmitter (see the module docs).
    pub rate_mbit: u32,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self::OPEN
    }
}

impl PortConfig {
    /// No source-MAC lock: any source MAC is accepted (test ports);
    /// VLAN [`DEFAULT_VLAN`], no rate limit.
    pub const OPEN: PortConfig = PortConfig {
        mac_lock: None,
        vlan: DEFAULT_VLAN,
        rate_mbit: 0,
    };

    /// A VM port: only frames from `mac` are accepted.
    pub const fn locked_to(mac: MacAddr) -> Self {
        PortConfig {
            mac_lock: Some(mac),
            ..Self::OPEN
        }
    }

    /// This configuration in VLAN `vlan`.
    pub const fn with_vlan(self, vlan: u16) -> Self {
        PortConfig { vlan, ..self }
    }

    /// This configuration with a transmit limit of `mbit` Mbit/s.
    pub const fn with_rate(self, mbit: u32) -> Self {
        PortConfig {
            rate_mbit: mbit,
            ..self
        }
    }
}

/// Why a port could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortError {
    /// The switch has no ring for this port.
    OutOfRange {
        /// The refused port.
        port: usize,
        /// Ports the switch has.
        ports: usize,
    },
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PortError::OutOfRange { port, ports } => {
                write!(f, "port {port} out of range (switch has {ports} ports)")
            }
        }
    }
}

/// One learned MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    /// The station's address.
    pub mac: MacAddr,
    /// The VLAN it was learned in.
    pub vlan: u16,
    /// The port it was last seen on.
    pub port: usize,
    /// Switch clock when it was last learned or refreshed.
    pub stamp: u64,
}

/// The per-port counters, by index into [`PortCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Frames the VM transmitted that entered the switch.
    TxFrames,
    /// Bytes of those frames.
    TxBytes,
    /// TX frames shorter than an Ethernet header (dropped).
    TxTooShort,
    /// TX frames longer than [`MAX_FRAME_SIZE`] (dropped, never truncated).
    TxTooLong,
    /// TX chains that are not a virtio-net packet: header missing or cut
    /// short, or device-writable buffers in a TX chain (dropped).
    TxMalformed,
    /// TX frames whose source MAC is not the port's (source-MAC lock).
    TxMacLock,
    /// Accepted TX frames no port could receive: no other port, or a known
    /// destination on the source port itself.
    TxNoDestination,
    /// Frames the switch queued in this port's ring.
    RxQueuedFrames,
    /// Bytes of those frames.
    RxQueuedBytes,
    /// Frames for this port dropped because its ring was full.
    RxRingFull,
    /// Frames injected into the guest's RX queue.
    RxFrames,
    /// Bytes of those frames (without the virtio-net header).
    RxBytes,
    /// Frames dropped because the guest's RX buffer was too small for
    /// header + frame (the buffer is returned with length 0).
    RxNoRoom,
    /// Frames dropped because writing guest memory failed (impossible for
    /// a validated chain; counted rather than assumed).
    RxWriteFailed,
    /// TX frames that carried a VLAN tag (dropped: access ports only).
    TxVlanTagged,
    /// TX frames for a port of another VLAN (dropped).
    TxVlan,
    /// Times the port's transmitter paused because its rate limit had no
    /// tokens left (the frames waited in the guest's TX queue).
    TxRatePaused,
    /// TX frames dropped by the rate limit (none while the transmitter
    /// can hold frames back).
    TxRateDropped,
    /// TX frames whose virtio-net header was invalid for them (flags, GSO
    /// fields or checksum position; dropped, never forwarded).
    TxBadHeader,
    /// Times the port's transmitter waited because the only destination
    /// of its next frame had a full ring (the frame stayed in the guest's
    /// TX queue).
    TxWaited,
    /// Frames for this port dropped because it took no frame for longer
    /// than a sender may wait ([`VSwitch::mark_stalled`]).
    RxStalled,
    /// Segmentation-offload frames cut into segments in software for
    /// this port (its driver did not negotiate receiving them whole).
    RxSegmented,
}

const COUNTERS: usize = Counter::RxSegmented as usize + 1;

/// Lock-free counters of one port (see [`Counter`]).
pub struct PortCounters {
    values: [AtomicU64; COUNTERS],
}

impl Default for PortCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl PortCounters {
    /// All zero.
    pub const fn new() -> Self {
        PortCounters {
            values: [const { AtomicU64::new(0) }; COUNTERS],
        }
    }

    /// Adds `n` to `counter` (one atomic add; a u64 never wraps in
    /// practice).
    pub fn add(&self, counter: Counter, n: u64) {
        if let Some(value) = self.values.get(counter as usize) {
            value.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Counts one frame of `len` bytes on a frames/bytes counter pair.
    pub fn frame(&self, frames: Counter, bytes: Counter, len: usize) {
        self.bump(frames);
        self.add(bytes, len as u64);
    }

    /// The current value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values
            .get(counter as usize)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    /// Sets every counter to 0.
    pub fn clear(&self) {
        for value in &self.values {
            value.store(0, Ordering::Relaxed);
        }
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> PortStats {
        use Counter as C;
        PortStats {
            tx_frames: self.get(C::TxFrames),
            tx_bytes: self.get(C::TxBytes),
            tx_too_short: self.get(C::TxTooShort),
            tx_too_long: self.get(C::TxTooLong),
            tx_malformed: self.get(C::TxMalformed),
            tx_mac_lock: self.get(C::TxMacLock),
            tx_no_destination: self.get(C::TxNoDestination),
            rx_queued_frames: self.get(C::RxQueuedFrames),
            rx_queued_bytes: self.get(C::RxQueuedBytes),
            rx_ring_full: self.get(C::RxRingFull),
            rx_frames: self.get(C::RxFrames),
            rx_bytes: self.get(C::RxBytes),
            rx_no_room: self.get(C::RxNoRoom),
            rx_write_failed: self.get(C::RxWriteFailed),
            tx_vlan_tagged: self.get(C::TxVlanTagged),
            tx_vlan: self.get(C::TxVlan),
            tx_rate_paused: self.get(C::TxRatePaused),
            tx_rate_dropped: self.get(C::TxRateDropped),
            tx_bad_header: self.get(C::TxBadHeader),
            tx_waited: self.get(C::TxWaited),
            rx_stalled: self.get(C::RxStalled),
            rx_segmented: self.get(C::RxSegmented),
        }
    }
}

impl fmt::Debug for PortCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// A copy of one port's counters (field meanings: [`Counter`]). "tx" is
/// what the VM sent, "rx" what it is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PortStats {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_too_short: u64,
    pub tx_too_long: u64,
    pub tx_malformed: u64,
    pub tx_mac_lock: u64,
    pub tx_no_destination: u64,
    pub rx_queued_frames: u64,
    pub rx_queued_bytes: u64,
    pub rx_ring_full: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_no_room: u64,
    pub rx_write_failed: u64,
    pub tx_vlan_tagged: u64,
    pub tx_vlan: u64,
    pub tx_rate_paused: u64,
    pub tx_rate_dropped: u64,
    pub tx_bad_header: u64,
    pub tx_waited: u64,
    pub rx_stalled: u64,
    pub rx_segmented: u64,
}

impl PortStats {
    /// Every frame dropped on this port, whatever the reason.
    pub fn drops(&self) -> u64 {
        [
            self.tx_too_short,
            self.tx_too_long,
            self.tx_malformed,
            self.tx_mac_lock,
            self.tx_no_destination,
            self.rx_ring_full,
            self.rx_no_room,
            self.rx_write_failed,
            self.tx_vlan_tagged,
            self.tx_vlan,
            self.tx_rate_dropped,
            self.tx_bad_header,
            self.rx_stalled,
        ]
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

impl fmt::Display for PortStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  tx {} frames {} bytes | rx {} frames {} bytes (queued {} frames {} bytes)",
            self.tx_frames,
            self.tx_bytes,
            self.rx_frames,
            self.rx_bytes,
            self.rx_queued_frames,
            self.rx_queued_bytes
        )?;
        writeln!(
            f,
            "  drops: too-short {} too-long {} malformed {} mac-lock {} vlan {} vlan-tagged {} \
             rate {} no-destination {} ring-full {} no-room {} write-failed {} bad-header {} \
             rx-stalled {}",
            self.tx_too_short,
            self.tx_too_long,
            self.tx_malformed,
            self.tx_mac_lock,
            self.tx_vlan,
            self.tx_vlan_tagged,
            self.tx_rate_dropped,
            self.tx_no_destination,
            self.rx_ring_full,
            self.rx_no_room,
            self.rx_write_failed,
            self.tx_bad_header,
            self.rx_stalled
        )?;
        write!(
            f,
            "  tx paused by the rate limit {} times, waited for a full receiver {} times; \
             segmented for this port {}",
            self.tx_rate_paused, self.tx_waited, self.rx_segmented
        )
    }
}

/// Everything behind the switch lock.
#[derive(Debug)]
struct State {
    ports: [Option<PortConfig>; MAX_PORTS],
    table: [Option<MacEntry>; MAC_TABLE_SIZE],
    /// Frames offered to `forward` so far (the MAC table's clock).
    clock: u64,
    unknown_source: u64,
    learned: u64,
    moves: u64,
    evictions: u64,
}

impl State {
    const fn new() -> Self {
        State {
            ports: [None; MAX_PORTS],
            table: [None; MAC_TABLE_SIZE],
            clock: 0,
            unknown_source: 0,
            learned: 0,
            moves: 0,
            evictions: 0,
        }
    }

    fn active_mask(&self) -> PortMask {
        (0..MAX_PORTS)
            .filter(|&p| self.ports.get(p).is_some_and(Option::is_some))
            .fold(0, |mask, p| mask | port_bit(p))
    }

    /// The ports of VLAN `vlan`.
    fn vlan_mask(&self, vlan: u16) -> PortMask {
        (0..MAX_PORTS)
            .filter(|&p| {
                self.ports
                    .get(p)
                    .is_some_and(|c| c.is_some_and(|c| c.vlan == vlan))
            })
            .fold(0, |mask, p| mask | port_bit(p))
    }

    /// The VLAN of `port`, if it exists.
    fn vlan_of(&self, port: usize) -> Option<u16> {
        self.ports.get(port).copied().flatten().map(|c| c.vlan)
    }

    /// The port whose source-MAC lock is `mac`, if any.
    fn lock_owner(&self, mac: &MacAddr) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.is_some_and(|c| c.mac_lock == Some(*mac)))
    }

    fn lookup(&self, vlan: Option<u16>, mac: &MacAddr) -> Option<usize> {
        self.table
            .iter()
            .flatten()
            .find(|e| e.mac == *mac && vlan.is_none_or(|v| e.vlan == v))
            .map(|e| e.port)
    }

    /// Learns (or refreshes, or moves) `mac` on `port` in `vlan`; evicts
    /// the oldest entry if the table is full.
    fn learn(&mut self, mac: MacAddr, vlan: u16, port: usize) {
        let now = self.clock;
        if let Some(entry) = self
            .table
            .iter_mut()
            .flatten()
            .find(|e| e.mac == mac && e.vlan == vlan)
        {
            if entry.port != port {
                entry.port = port;
                self.moves = self.moves.saturating_add(1);
            }
            entry.stamp = now;
            return;
        }
        let new = MacEntry {
            mac,
            vlan,
            port,
            stamp: now,
        };
        self.learned = self.learned.saturating_add(1);
        if let Some(free) = self.table.iter_mut().find(|slot| slot.is_none()) {
            *free = Some(new);
            return;
        }
        // Full: replace the least recently learned or refreshed entry.
        let oldest = self
            .table
            .iter_mut()
            .min_by_key(|slot| slot.map_or(0, |e| e.stamp));
        if let Some(slot) = oldest {
            *slot = Some(new);
            self.evictions = self.evictions.saturating_add(1);
        }
    }

    fn forget_port(&mut self, port: usize) {
        for slot in &mut self.table {
            if slot.is_some_and(|e| e.port == port) {
                *slot = None;
            }
        }
    }
}

/// An L2 learning switch over the port rings `rings` (see the
/// [module docs](self)). The hypervisor's instance is
/// [`VSWITCH`](super::VSWITCH); tests build their own.
pub struct VSwitch<'r, const N: usize, const B: usize = DEFAULT_RING_BYTES> {
    rings: &'r [NetRxRing<N, B>],
    state: Mutex<State>,
    counters: [PortCounters; MAX_PORTS],
    /// Where captured frames go, if this switch can capture.
    capture: Option<&'r dyn CaptureSink>,
    /// Capture is on (changed under `state`'s lock, read relaxed per frame).
    capture_on: AtomicBool,
    /// Per port: counter value at which its paused transmitter should be
    /// retried (`u64::MAX`: not paused).
    tx_retry: [AtomicU64; MAX_PORTS],
    /// Per port: the ports whose transmitters wait for room in its ring.
    waiters: [AtomicU32; MAX_PORTS],
    /// Per port: its receiver stopped taking frames for longer than a
    /// sender waits ([`VSwitch::mark_stalled`]); frames for it are dropped
    /// (`rx-stalled`) until it takes one again.
    stalled: [AtomicBool; MAX_PORTS],
}

impl<'r, const N: usize, const B: usize> VSwitch<'r, N, B> {
    /// A switch with no ports added yet; port `n` will deliver into
    /// `rings[n]` (rings beyond [`MAX_PORTS`] are not used).
    pub const fn new(rings: &'r [NetRxRing<N, B>]) -> Self {
        VSwitch {
            rings,
            state: Mutex::new(State::new()),
            counters: [const { PortCounters::new() }; MAX_PORTS],
            capture: None,
            capture_on: AtomicBool::new(false),
            tx_retry: [const { AtomicU64::new(u64::MAX) }; MAX_PORTS],
            waiters: [const { AtomicU32::new(0) }; MAX_PORTS],
            stalled: [const { AtomicBool::new(false) }; MAX_PORTS],
        }
    }

    /// [`VSwitch::new`] with a capture sink (capture starts off).
    pub const fn with_capture(rings: &'r [NetRxRing<N, B>], sink: &'r dyn CaptureSink) -> Self {
        let mut switch = Self::new(rings);
        switch.capture = Some(sink);
        switch
    }

    /// Turns capture on or off (no effect without a sink); returns the
    /// switch clock at that moment: with capture on from the start,
    /// exactly the frames seen before it went off were offered to the
    /// sink (frames from unknown ports aside).
    pub fn set_capture(&self, on: bool) -> u64 {
        let state = self.state.lock();
        self.capture_on
            .store(on && self.capture.is_some(), Ordering::Relaxed);
        state.clock
    }

    /// Whether capture is on.
    pub fn capture_enabled(&self) -> bool {
        self.capture_on.load(Ordering::Relaxed)
    }

    /// Whether this switch has a capture sink.
    pub fn can_capture(&self) -> bool {
        self.capture.is_some()
    }

    /// Records that `port`'s transmitter is paused until counter value
    /// `at` (`None`: not paused).
    pub fn set_tx_retry(&self, port: usize, at: Option<u64>) {
        if let Some(slot) = self.tx_retry.get(port) {
            slot.store(at.unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// When `port`'s paused transmitter should be retried, if it is paused.
    pub fn tx_retry(&self, port: usize) -> Option<u64> {
        self.tx_retry
            .get(port)
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|&at| at != u64::MAX)
    }

    /// Number of ports this switch can have (its rings, at most
    /// [`MAX_PORTS`]).
    pub fn port_capacity(&self) -> usize {
        self.rings.len().min(MAX_PORTS)
    }

    /// Adds port `port` (or reconfigures it if it exists).
    pub fn add_port(&self, port: usize, config: PortConfig) -> Result<(), PortError> {
        let ports = self.port_capacity();
        if port >= ports {
            return Err(PortError::OutOfRange { port, ports });
        }
        let mut state = self.state.lock();
        if let Some(slot) = state.ports.get_mut(port) {
            *slot = Some(config);
        }
        Ok(())
    }

    /// Removes port `port`: forgets its MAC entries and discards the frames
    /// waiting in its ring (as its consumer; see [`NetRxRing::clear`]).
    /// Its counters are kept.
    pub fn remove_port(&self, port: usize) {
        let mut state = self.state.lock();
        if let Some(slot) = state.ports.get_mut(port) {
            *slot = None;
        }
        state.forget_port(port);
        drop(state);
        if let Some(ring) = self.ring(port) {
            ring.clear();
        }
    }

    /// The port's VM restarted: forgets the MAC entries learned on `port`
    /// and discards the frames waiting in its ring (as its consumer; see
    /// [`NetRxRing::clear`]), like a cable pulled and plugged back in. Its
    /// configuration (the source-MAC lock) and counters stay. Returns the
    /// frames discarded.
    pub fn reset_port(&self, port: usize) -> usize {
        self.state.lock().forget_port(port);
        self.ring(port).map_or(0, NetRxRing::clear)
    }

    /// The configuration of `port`, if it was added.
    pub fn port_config(&self, port: usize) -> Option<PortConfig> {
        self.state.lock().ports.get(port).copied().flatten()
    }

    /// The ports added so far.
    pub fn ports(&self) -> PortMask {
        self.state.lock().active_mask()
    }

    /// Back to the state after construction: no ports, an empty MAC table,
    /// counters zero, and every ring emptied (as its consumer).
    pub fn reset(&self) {
        *self.state.lock() = State::new();
        for counters in &self.counters {
            counters.clear();
        }
        for ring in self.rings {
            ring.clear();
        }
        for (waiters, stalled) in self.waiters.iter().zip(&self.stalled) {
            waiters.store(0, Ordering::Relaxed);
            stalled.store(false, Ordering::Relaxed);
        }
    }

    /// The ring of `port` (its consumer is that VM's run loop).
    pub fn ring(&self, port: usize) -> Option<&NetRxRing<N, B>> {
        self.rings.get(..self.port_capacity())?.get(port)
    }

    /// The counters of `port`.
    pub fn counters(&self, port: usize) -> Option<&PortCounters> {
        self.counters.get(port)
    }

    /// A copy of the counters of `port` (zero for a port that does not
    /// exist).
    pub fn port_stats(&self, port: usize) -> PortStats {
        self.counters
            .get(port)
            .map(PortCounters::snapshot)
            .unwrap_or_default()
    }

    /// The port `mac` was learned on (in any VLAN).
    pub fn lookup(&self, mac: &MacAddr) -> Option<usize> {
        self.state.lock().lookup(None, mac)
    }

    /// The port `mac` was learned on in VLAN `vlan`.
    pub fn lookup_in(&self, vlan: u16, mac: &MacAddr) -> Option<usize> {
        self.state.lock().lookup(Some(vlan), mac)
    }

    /// Switches one frame transmitted on `src_port` (see the
    /// [module docs](self)); returns the ports whose ring received it.
    /// Captured frames get timestamp 0 ([`VSwitch::forward_at`] gives one).
    pub fn forward(&self, src_port: usize, frame: &[u8]) -> PortMask {
        self.forward_at(src_port, frame, 0)
    }

    /// [`VSwitch::forward`] at counter value `now` (the capture's
    /// timestamp).
    pub fn forward_at(&self, src_port: usize, frame: &[u8], now: u64) -> PortMask {
        self.forward_meta_at(src_port, frame, FrameMeta::Plain, now)
    }

    /// [`VSwitch::forward_at`] for a frame with metadata (a partial
    /// checksum, a segmentation-offload frame), queued with the frame for
    /// every destination; each receiver completes it or hands it on to its
    /// driver. Metadata that does not fit the frame is refused by the
    /// rings (counted as `ring-full`; the virtio-net transmitter validates
    /// it first). A full ring drops the frame for that port (`ring-full`):
    /// only [`VSwitch::deliver_with`] can make a sender wait.
    pub fn forward_meta_at(
        &self,
        src_port: usize,
        frame: &[u8],
        meta: FrameMeta,
        now: u64,
    ) -> PortMask {
        let max_len = match meta {
            FrameMeta::Gso { .. } => MAX_GSO_FRAME_SIZE,
            _ => MAX_FRAME_SIZE,
        };
        let Ok(route) = self.route_at(src_port, frame, frame.len(), max_len, now) else {
            return 0;
        };
        let fill = |buf: &mut [u8]| -> Result<FrameMeta, ()> {
            buf.copy_from_slice(frame);
            Ok(meta)
        };
        match self.deliver_with(src_port, route, frame.len(), now, false, fill) {
            Ok(Delivery::Queued(mask)) => mask,
            _ => 0,
        }
    }

    /// The forwarding decision for a frame of `len` bytes (at most
    /// `max_len`) transmitted on `src_port`, of which `head` holds at
    /// least the first [`MIN_FRAME_SIZE`] bytes (the Ethernet header; the
    /// frame itself is read only once it has a place, see
    /// [`VSwitch::deliver_with`]). Learns the source MAC. A frame the
    /// switch drops here (too short or long, MAC lock, VLAN, no
    /// destination) is counted and captured (its `head` only) and
    /// `Err` says why; the caller completes it unread.
    pub fn route_at(
        &self,
        src_port: usize,
        head: &[u8],
        len: usize,
        max_len: usize,
        now: u64,
    ) -> Result<Route, DropReason> {
        let mut state = self.state.lock();
        state.clock = state.clock.wrapping_add(1);
        let (Some(Some(config)), Some(counters)) = (
            state.ports.get(src_port).copied(),
            self.counters.get(src_port),
        ) else {
            state.unknown_source = state.unknown_source.saturating_add(1);
            return Err(DropReason::NoDestination);
        };
        let decision = Self::decide(&mut state, src_port, config, counters, head, len, max_len);
        drop(state);
        if let Err(reason) = decision {
            let shown = head.get(..len.min(head.len())).unwrap_or(head);
            self.capture(src_port, now, shown, len, Verdict::Dropped(reason));
        }
        decision
    }

    fn capture(&self, port: usize, now: u64, data: &[u8], len: usize, verdict: Verdict) {
        // The one cost of capture while it is off: this relaxed load.
        if self.capture_on.load(Ordering::Relaxed)
            && let Some(sink) = self.capture
        {
            sink.record_part(port, now, data, len, verdict);
        }
    }

    /// The forwarding decision for a frame of a known port; counts drops.
    fn decide(
        state: &mut State,
        src_port: usize,
        config: PortConfig,
        counters: &PortCounters,
        head: &[u8],
        len: usize,
        max_len: usize,
    ) -> Result<Route, DropReason> {
        let drop = |counter: Counter, reason: DropReason| {
            counters.bump(counter);
            Err(reason)
        };
        if len < MIN_FRAME_SIZE || head.len() < MIN_FRAME_SIZE {
            return drop(Counter::TxTooShort, DropReason::TooShort);
        }
        if len > max_len.min(MAX_GSO_FRAME_SIZE) {
            return drop(Counter::TxTooLong, DropReason::TooLong);
        }
        let mut dst: MacAddr = [0; 6];
        let mut src: MacAddr = [0; 6];
        dst.copy_from_slice(head.get(0..6).unwrap_or(&[0; 6]));
        src.copy_from_slice(head.get(6..12).unwrap_or(&[0; 6]));
        if config.mac_lock.is_some_and(|own| own != src) {
            return drop(Counter::TxMacLock, DropReason::MacLock);
        }
        if is_tagged(head) {
            return drop(Counter::TxVlanTagged, DropReason::VlanTagged);
        }
        let vlan = config.vlan;
        if !is_group(&src) {
            state.learn(src, vlan, src_port);
        }
        let members = state.vlan_mask(vlan);
        let (targets, flooded) = if is_group(&dst) {
            (members, true)
        } else {
            match state.lock_owner(&dst) {
                // The address belongs to a port of another VLAN.
                Some(port) if state.vlan_of(port) != Some(vlan) => {
                    counters.frame(Counter::TxFrames, Counter::TxBytes, len);
                    return drop(Counter::TxVlan, DropReason::Vlan);
                }
                Some(port) => (port_bit(port), false),
                None => state
                    .lookup(Some(vlan), &dst)
                    .map_or((members, true), |port| (port_bit(port), false)),
            }
        };
        let targets = targets & members & !port_bit(src_port);
        if targets == 0 {
            counters.frame(Counter::TxFrames, Counter::TxBytes, len);
            return drop(Counter::TxNoDestination, DropReason::NoDestination);
        }
        let mut eth = [0u8; MIN_FRAME_SIZE];
        eth.copy_from_slice(head.get(..MIN_FRAME_SIZE).unwrap_or(&[0; MIN_FRAME_SIZE]));
        Ok(Route {
            targets,
            unicast: !flooded && targets.count_ones() == 1,
            src: src_port,
            head: eth,
        })
    }

    /// Delivers a frame of `len` bytes that [`VSwitch::route_at`] routed:
    /// reserves its place in the first destination's ring, lets `fill`
    /// copy the frame there (once, from wherever it is, with no switch
    /// lock held) and say what metadata it is queued with, copies it into
    /// the other destinations' rings (a flood), then publishes it.
    ///
    /// A full ring drops the frame for that port (`ring-full`), except
    /// when `wait` is set and the frame has one destination: then the
    /// frame is not read and [`Delivery::Blocked`] asks the caller to keep
    /// it and try again once the receiver took frames
    /// ([`VSwitch::take_waiters`] tells the receiver whom to wake), unless
    /// that receiver is stalled ([`VSwitch::mark_stalled`]): then the frame
    /// is dropped (`rx-stalled`). `fill`'s error (a frame that turned out
    /// invalid) publishes nothing and is returned for the caller to count.
    pub fn deliver_with<E>(
        &self,
        src_port: usize,
        route: Route,
        len: usize,
        now: u64,
        wait: bool,
        fill: impl FnOnce(&mut [u8]) -> Result<FrameMeta, E>,
    ) -> Result<Delivery, E> {
        let ports = self.port_capacity();
        let mut first = None;
        let mut rest = 0;
        for port in (0..ports).filter(|p| route.targets & port_bit(*p) != 0) {
            let Some(ring) = self.rings.get(port) else {
                continue;
            };
            if first.is_some() {
                rest |= port_bit(port);
                continue;
            }
            match ring.reserve_wait(len) {
                Ok(place) => first = Some((port, place)),
                Err(StoreError::Full) if wait && route.unicast => {
                    if self.is_stalled(port) {
                        self.count(port, Counter::RxStalled);
                        return Ok(self.undelivered(route, len, now, DropReason::Stalled));
                    }
                    // Registered before a last look, so a receiver that
                    // frees room right now still finds us to wake.
                    self.add_waiter(port, src_port);
                    match ring.reserve_wait(len) {
                        Ok(place) => first = Some((port, place)),
                        Err(_) => return Ok(Delivery::Blocked { port }),
                    }
                }
                Err(_) => self.count(port, Counter::RxRingFull),
            }
        }
        let Some((first_port, mut place)) = first else {
            return Ok(self.undelivered(route, len, now, DropReason::RingFull));
        };
        let meta = fill(place.buf())?;
        self.count_sent(src_port, len);
        self.capture(src_port, now, place.buf(), len, Verdict::Forwarded);
        let mut delivered = 0;
        for port in (0..ports).filter(|p| rest & port_bit(*p) != 0) {
            let Some(ring) = self.rings.get(port) else {
                continue;
            };
            // Never waits while holding `place`: two senders flooding in
            // opposite port order cannot wait for each other.
            let stored = ring.reserve(len).and_then(|mut copy| {
                copy.buf().copy_from_slice(place.buf());
                copy.commit(meta)
            });
            match stored {
                Ok(()) => {
                    self.count_queued(port, len);
                    delivered |= port_bit(port);
                }
                Err(_) => self.count(port, Counter::RxRingFull),
            }
        }
        match place.commit(meta) {
            Ok(()) => {
                self.count_queued(first_port, len);
                delivered |= port_bit(first_port);
            }
            Err(_) => self.count(first_port, Counter::RxRingFull),
        }
        Ok(if delivered == 0 {
            Delivery::Dropped(DropReason::RingFull)
        } else {
            Delivery::Queued(delivered)
        })
    }

    /// A routed frame no port could take: counted as sent, captured with
    /// its header only.
    fn undelivered(&self, route: Route, len: usize, now: u64, reason: DropReason) -> Delivery {
        self.count_sent(route.src, len);
        self.capture(route.src, now, &route.head, len, Verdict::Dropped(reason));
        Delivery::Dropped(reason)
    }

    fn count(&self, port: usize, counter: Counter) {
        if let Some(c) = self.counters.get(port) {
            c.bump(counter);
        }
    }

    fn count_sent(&self, port: usize, len: usize) {
        if let Some(c) = self.counters.get(port) {
            c.frame(Counter::TxFrames, Counter::TxBytes, len);
        }
    }

    fn count_queued(&self, port: usize, len: usize) {
        if let Some(c) = self.counters.get(port) {
            c.frame(Counter::RxQueuedFrames, Counter::RxQueuedBytes, len);
        }
        // A receiver that gets frames again is no longer stalled for
        // others only once it takes them (`take_waiters`).
    }

    fn add_waiter(&self, port: usize, waiter: usize) {
        if let Some(w) = self.waiters.get(port) {
            w.fetch_or(port_bit(waiter), Ordering::AcqRel);
        }
    }

    /// Receiver side, after `port`'s consumer took frames from its ring:
    /// the port is no longer stalled, and the ports whose transmitters
    /// waited for room in it are returned (and forgotten) to be woken.
    pub fn take_waiters(&self, port: usize) -> PortMask {
        if let Some(flag) = self.stalled.get(port) {
            flag.store(false, Ordering::Relaxed);
        }
        self.waiters
            .get(port)
            .map_or(0, |w| w.swap(0, Ordering::AcqRel))
    }

    /// Ports whose transmitters wait for room in `port`'s ring.
    pub fn waiters(&self, port: usize) -> PortMask {
        self.waiters
            .get(port)
            .map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Sender side: `port`'s receiver took no frame for longer than a
    /// sender may wait; until it takes one again, frames that would wait
    /// for it are dropped and counted (`rx-stalled`) instead.
    pub fn mark_stalled(&self, port: usize) {
        if let Some(flag) = self.stalled.get(port) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `port` is marked stalled ([`VSwitch::mark_stalled`]).
    pub fn is_stalled(&self, port: usize) -> bool {
        self.stalled
            .get(port)
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// A consistent copy of the switch state and counters, for printing
    /// (take it, then print without holding the lock).
    pub fn snapshot(&self) -> SwitchSnapshot {
        let state = self.state.lock();
        let mut ports = [None; MAX_PORTS];
        for (port, slot) in ports.iter_mut().enumerate() {
            if let Some(Some(config)) = state.ports.get(port) {
                *slot = Some(PortReport {
                    config: *config,
                    stats: self.port_stats(port),
                    queued: self.ring(port).map_or(0, NetRxRing::len),
                });
            }
        }
        SwitchSnapshot {
            ports,
            table: state.table,
            clock: state.clock,
            ring_depth: N,
            unknown_source: state.unknown_source,
            learned: state.learned,
            moves: state.moves,
            evictions: state.evictions,
            capture: self.capture.map(|_| self.capture_enabled()),
        }
    }
}

impl<const N: usize, const B: usize> fmt::Debug for VSwitch<'_, N, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VSwitch")
            .field("ports", &self.port_capacity())
            .field("ring_depth", &N)
            .finish_non_exhaustive()
    }
}

/// Where a frame goes ([`VSwitch::route_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination ports (never empty, never the source).
    pub targets: PortMask,
    /// One known destination (not a flood): the frame may wait for it.
    pub unicast: bool,
    /// The source port.
    pub src: usize,
    /// The frame's Ethernet header (what the decision was made on).
    pub head: [u8; MIN_FRAME_SIZE],
}

/// What [`VSwitch::deliver_with`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for these ports.
    Queued(PortMask),
    /// Dropped (counted), for this reason.
    Dropped(DropReason),
    /// The only destination's ring is full: the frame was not read; keep
    /// it and retry once `port` took frames.
    Blocked {
        /// The destination waited for.
        port: usize,
    },
}

/// One port in a [`SwitchSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortReport {
    /// Its configuration.
    pub config: PortConfig,
    /// Its counters.
    pub stats: PortStats,
    /// Frames waiting in its ring.
    pub queued: usize,
}

/// A copy of a switch's state for the console ([`VSwitch::snapshot`]);
/// its `Display` is the `net` stats text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchSnapshot {
    /// Ports that exist, by index.
    pub ports: [Option<PortReport>; MAX_PORTS],
    /// The MAC table.
    pub table: [Option<MacEntry>; MAC_TABLE_SIZE],
    /// The switch clock (frames offered to `forward`).
    pub clock: u64,
    /// Slots per port ring.
    pub ring_depth: usize,
    /// Frames from ports that were never added (dropped).
    pub unknown_source: u64,
    /// New MAC addresses learned.
    pub learned: u64,
    /// Learned addresses seen again on another port.
    pub moves: u64,
    /// Entries evicted because the table was full.
    pub evictions: u64,
    /// Capture on or off; `None` if the switch cannot capture.
    pub capture: Option<bool>,
}

impl SwitchSnapshot {
    /// The learned entries, in table order.
    pub fn entries(&self) -> impl Iterator<Item = &MacEntry> {
        self.table.iter().flatten()
    }

    /// Age of `entry` in switch clock ticks (frames).
    pub fn age(&self, entry: &MacEntry) -> u64 {
        self.clock.wrapping_sub(entry.stamp)
    }
}

impl fmt::Display for SwitchSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = self.ports.iter().flatten().count();
        let entries = self.entries().count();
        let capture = match self.capture {
            Some(true) => "on",
            Some(false) => "off",
            None => "unavailable",
        };
        writeln!(
            f,
            "vswitch: {ports} ports, {entries}/{MAC_TABLE_SIZE} MAC entries, {} frames seen, \
             {} from unknown ports, capture {capture}",
            self.clock, self.unknown_source
        )?;
        for (port, report) in self.ports.iter().enumerate() {
            let Some(report) = report else { continue };
            write!(f, "port {port}: ")?;
            match report.config.mac_lock {
                Some(mac) => write!(f, "mac-lock {}", Mac(mac))?,
                None => write!(f, "open")?,
            }
            write!(f, ", vlan {}", report.config.vlan)?;
            match report.config.rate_mbit {
                0 => write!(f, ", rate unlimited")?,
                mbit => {
                    let burst = TokenBucket::burst_for(u64::from(mbit) * 125_000);
                    write!(f, ", rate {mbit} Mbit/s (burst {burst} bytes)")?;
                }
            }
            writeln!(f, ", ring {}/{}", report.queued, self.ring_depth)?;
            writeln!(f, "{}", report.stats)?;
        }
        writeln!(
            f,
            "mac table: learned {} moved {} evicted {}",
            self.learned, self.moves, self.evictions
        )?;
        for entry in self.entries() {
            writeln!(
                f,
                "  {} port {} age {}",
                Mac(entry.mac),
                entry.port,
                self.age(entry)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "vswitch_tests.rs"]
mod tests;
