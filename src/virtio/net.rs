//! virtio-net (device ID 1, virtio 1.2 section 5.1) connected to the
//! in-hypervisor [`VSwitch`].
//!
//! # What the device offers
//! - Features: `VERSION_1 | MAC | STATUS | MRG_RXBUF | CSUM | GUEST_CSUM |
//!   HOST_TSO4 | HOST_TSO6 | GUEST_TSO4 | GUEST_TSO6` (and the transport's
//!   `RING_EVENT_IDX`): checksum and TCP segmentation offload both ways
//!   ([`offload`], [`gso`]); no ECN, no UFO, no control queue, one queue
//!   pair. A device made [`VirtioNet::without_offloads`] (boot option
//!   `net_offloads`) offers [`PLAIN_FEATURES`] only. Every frame is an
//!   Ethernet frame of at most [`MAX_FRAME_SIZE`] bytes, or up to
//!   [`MAX_GSO_FRAME_SIZE`] for a TSO frame, behind a 12-byte [`NetHdr`]
//!   (`virtio_net_hdr_v1`, the header size whenever `VERSION_1` is
//!   negotiated, with or without `MRG_RXBUF`).
//! - Queues: [`RX_QUEUE`] (0) and [`TX_QUEUE`] (1), each at most
//!   [`QUEUE_SIZE_MAX`] entries.
//! - Configuration space ([`NetConfig`], 8 bytes): `mac` (6 bytes,
//!   `52:54:00:00:00:(vm+1)`, see [`VirtioNet::mac_for_vm`]) then `status`
//!   (little-endian u16, [`LINK_UP`]). Linux reads `mac` byte by byte
//!   (`virtio_cread_bytes`) and `status` as one u16; any naturally aligned
//!   1-, 2- or 4-byte read inside the 8 bytes works. Reads past the end (or
//!   straddling it) are refused by the transport, read 0 and are counted in
//!   [`RegisterStats::unknown_offset`](super::RegisterStats::unknown_offset);
//!   unaligned accesses are refused and counted as `bad_width`; writes are
//!   refused (the configuration is read-only) and counted.
//!
//! # TX (guest → switch), on a TX notify
//! Each available chain goes through the [`TxChain`] typestate: the header
//! is read first, then the frame, both from the device-readable part only
//! (header and frame may share a descriptor or be split anywhere; the
//! [`Reader`](super::Reader) copies across descriptors in slices). The
//! switch routes the frame by its Ethernet header ([`VSwitch::route_at`]),
//! then the frame is copied **once**, straight into its place in the
//! receiver's port ring ([`VSwitch::deliver_with`]), where its virtio-net
//! header is validated against the copy (which the guest can no longer
//! change; the addresses routed by must still be there). The chain is
//! completed with used length 0 and the transport interrupts the guest
//! once per batch unless it suppressed interrupts. Refused, completed and
//! counted on the port ([`Counter`]):
//! - a chain with device-writable buffers, or whose readable part is
//!   shorter than the header: `TxMalformed` (so is a frame the guest
//!   changed while it was copied);
//! - a frame longer than [`MAX_FRAME_SIZE`] (or [`MAX_GSO_FRAME_SIZE`] for
//!   a TSO frame): `TxTooLong` (never truncated);
//! - an invalid header for its frame: `TxBadHeader`.
//!
//! A unicast frame whose receiver's ring is full is **put back** in the
//! available ring unread and the transmitter waits (see the
//! [`net`](crate::net) module's delivery policy): [`retry_tx`] carries on
//! once the receiver took frames (it wakes its waiters) or after at most
//! [`WAIT_POLL_MS`]; a receiver that took nothing for [`STALL_MS`] is
//! marked stalled and its frames are dropped (`rx-stalled`).
//!
//! The ports that received frames accumulate until the run loop calls
//! [`VirtioNet::take_kicked_ports`] to kick the CPUs running them.
//!
//! # Transmit rate limit: backpressure
//! A device made with [`VirtioNet::with_limits`] and a non-zero rate holds
//! a [`TokenBucket`]. Before taking each chain it asks the bucket; without
//! tokens it stops and **leaves the chains in the available ring** (they
//! are neither read nor completed, so nothing is dropped and the guest's
//! TX queue fills up and stops its stack, as a slow link would). The pause
//! is counted once (`TxRatePaused`) and its end published as the port's
//! retry time ([`VSwitch::set_tx_retry`]); the run loop calls
//! [`retry_tx`] once that time has passed, which carries on where the
//! notify stopped. Notifications keep their meaning: the device never
//! sets `VIRTQ_USED_F_NO_NOTIFY`, a notify during a pause finds the bucket
//! still paused and takes nothing, and completed chains raise the used
//! interrupt as usual (unless the guest suppressed it).
//!
//! # RX (port ring → guest)
//! Frames wait in the port's [`NetRxRing`] until the guest has a receive
//! buffer. [`drain_rx`] (the run loop, before entering the VM) and an RX
//! notify (the guest just posted buffers) move as many frames as there are
//! buffers, oldest first, each through the [`RxChain`] typestate: header
//! ([`NetHdr::rx`]: `num_buffers = 1`, everything else 0), then the frame,
//! into the device-writable part only, then completion with used length
//! 12 + frame length. With `MRG_RXBUF` negotiated, header and frame fill
//! as many RX chains as they need instead
//! ([`LiveQueue::receive_merged`](super::LiveQueue::receive_merged)):
//! each chain to its writable capacity, in order, `num_buffers` = the
//! number of chains, each chain's used
//! length the bytes written into it, all of them published to the used
//! ring at once (so the driver, which takes `num_buffers - 1` more used
//! entries after the first, never sees part of a frame). A frame that
//! needs more chains than are available waits in the ring; the chains
//! looked at are put back untouched. Linux's mergeable buffers hold a
//! whole frame, so it sees `num_buffers = 1`; smaller buffers (at most
//! [`MAX_SPREAD_CHAINS`](super::MAX_SPREAD_CHAINS) per frame) work too.
//! A frame leaves its ring only once it is injected
//! (peek, then commit), so a burst that fits the ring is never lost. One
//! interrupt per batch, not per frame.
//!
//! # Decisions
//! - **Undersized RX buffer** without `MRG_RXBUF` (writable part smaller
//!   than 12 + frame): the
//!   buffer is returned at once with used length 0 (nothing is written:
//!   never half-filled), the frame is **dropped** and counted as
//!   `RxNoRoom` on the port. Linux without `MRG_RXBUF` posts
//!   12 + 1518-byte buffers, so only a buggy or hostile driver gets here; it
//!   sees a zero-length completion and counts an `rx_length_error`, as with
//!   QEMU, which also drops a packet that does not fit. Dropping (rather
//!   than keeping the frame for the next buffer) guarantees progress: a
//!   guest posting only small buffers cannot wedge its ring. With
//!   `MRG_RXBUF` a frame is dropped the same way (its chains returned with
//!   used length 0, `RxNoRoom`) only when the first chain cannot hold the
//!   header, the frame would need more than `MAX_SPREAD_CHAINS` chains, or
//!   a malformed or unwritable chain follows the first.
//! - **Reset with frames queued**: frames **stay queued** in the port ring
//!   (up to its depth; later ones are dropped as `RxRingFull`) and are
//!   delivered, in order, as soon as the driver has re-initialised the
//!   device and posted receive buffers. Reset forgets the negotiated
//!   features only; the ring belongs to the switch port, not to the device
//!   generation.
//! - **Header contents on TX** are validated before the frame is
//!   published to any receiver ([`offload`]): an invalid header drops the
//!   frame (`TxBadHeader`); with `CSUM` negotiated a `NEEDS_CSUM` frame is
//!   queued with its checksum position, and each receiving port gets it
//!   as is behind `NEEDS_CSUM` if its driver negotiated `GUEST_CSUM`, or
//!   with the checksum completed in software otherwise; a TSO frame is
//!   queued whole with its segmentation metadata.
//! - **Readable buffers in an RX chain** are ignored (never read); the
//!   frame goes into the writable part.
//!
//! # The typestate
//! Virtio ordering (header before frame; completion only after the whole
//! packet is written) is enforced by the types: each step consumes the
//! chain and returns it in the next state, and only the final state (or an
//! explicit `discard`) can complete it.
//!
//! ```
//! use hypervisor::virtio::net::{Empty, NetHdr, RxChain, RxError};
//!
//! fn deliver(rx: RxChain<'_, Empty>, frame: &[u8]) -> Result<u32, RxError> {
//!     Ok(rx.write_header(&NetHdr::rx(), frame)?.write_frame()?.complete())
//! }
//! ```
//!
//! Writing the frame before the header, completing before the frame, using
//! a chain after completion: none of these compiles. Each misuse is a file
//! in `tests/compile_fail/` whose exact compiler output is checked by
//! `tests/typestate_compile_fail.rs`.
//!
//! Dropping a chain before its last state returns it with used length 0
//! (counted in [`QueueStats::completed_on_drop`](super::QueueStats)), never
//! with the bytes written so far: a buffer is never half-filled in the
//! driver's eyes.

use core::fmt;

mod chains;
mod checksum;
pub mod gso;
pub mod offload;
mod tx_header;

pub use chains::{
    Empty, FrameRead, FrameReady, FrameWritten, HeaderPending, HeaderWritten, Receive, RxChain,
    RxError, Transmit, TxChain, TxError,
};

pub use gso::Segmenter;
pub use offload::{
    ChecksumAt, Deliverable, FrameKind, Gso, GuestCsum, GuestTso, HeaderError, NeedsChecksum,
    Plain, RxFrame, RxFrameKind, TxFrame, TxHeader, TxOffload,
};

use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::chain::SpreadError;
use super::device::{VirtioDevice, read_config_bytes};
use super::lifecycle::{Features, LiveQueues};
use super::regs;
use super::transport::VirtioMmioTransport;
use crate::mmio::DeviceContext;
#[cfg(doc)]
use crate::net::VSwitch;
use crate::net::{
    Clock, Counter, Delivery, FrameMeta, MAX_FRAME_SIZE, MAX_GSO_FRAME_SIZE, MAX_PORTS,
    MIN_FRAME_SIZE, Mac, MacAddr, NET_RX_BYTES, NET_RX_DEPTH, NetRxRing, NetSwitch, PortMask,
    PortStats, TokenBucket, VSWITCH, port_bit,
};

/// The receive queue.
pub const RX_QUEUE: u16 = 0;
/// The transmit queue.
pub const TX_QUEUE: u16 = 1;
/// `QueueNumMax` of both queues.
pub const QUEUE_SIZE_MAX: u16 = 256;

/// virtio-net feature bits (spec 5.1.3), as 64-bit masks.
pub mod feature {
    /// Device handles packets with partial checksum: the switch completes
    /// them (see [`offload`](super::offload)).
    pub const CSUM: u64 = 1 << 0;
    /// Driver handles packets with partial checksum: the switch hands such
    /// frames on as they are (see [`offload`](super::offload)).
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Device reports its maximum MTU (not offered).
    pub const MTU: u64 = 1 << 3;
    /// Driver takes TCP/IPv4 segmentation-offload frames (requires
    /// `GUEST_CSUM`; see [`GuestTso`](super::GuestTso)).
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// Driver takes TCP/IPv6 segmentation-offload frames (requires
    /// `GUEST_CSUM`).
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// Driver takes segmentation-offload frames with ECN (not offered).
    pub const GUEST_ECN: u64 = 1 << 9;
    /// Driver takes UDP fragmentation offload (not offered).
    pub const GUEST_UFO: u64 = 1 << 10;
    /// Device takes TCP/IPv4 segmentation-offload frames (requires `CSUM`;
    /// see [`TxOffload`](super::TxOffload)).
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Device takes TCP/IPv6 segmentation-offload frames (requires
    /// `CSUM`).
    pub const HOST_TSO6: u64 = 1 << 12;
    /// Device takes segmentation-offload frames with ECN (not offered).
    pub const HOST_ECN: u64 = 1 << 13;
    /// Device takes UDP fragmentation offload (not offered).
    pub const HOST_UFO: u64 = 1 << 14;
    /// TCP segmentation offload both ways, IPv4 and IPv6: `HOST_TSO4 |
    /// HOST_TSO6 | GUEST_TSO4 | GUEST_TSO6` (with `CSUM | GUEST_CSUM`,
    /// which they require).
    pub const TSO: u64 = HOST_TSO4 | HOST_TSO6 | GUEST_TSO4 | GUEST_TSO6;
    /// Device has a MAC address in its configuration.
    pub const MAC: u64 = 1 << 5;
    /// Driver can merge receive buffers: a frame may fill several RX
    /// chains, the header's `num_buffers` says how many.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// `status` in the configuration is valid.
    pub const STATUS: u64 = 1 << 16;
    /// Control virtqueue (not offered).
    pub const CTRL_VQ: u64 = 1 << 17;
    /// Multiqueue (not offered).
    pub const MQ: u64 = 1 << 22;
}

/// Everything the device offers: `VERSION_1 | MAC | STATUS | MRG_RXBUF |
/// CSUM | GUEST_CSUM` (the transport adds `RING_EVENT_IDX`).
pub const OFFERED_FEATURES: u64 = regs::feature::VERSION_1
    | feature::MAC
    | feature::STATUS
    | feature::MRG_RXBUF
    | feature::CSUM
    | feature::GUEST_CSUM
    | feature::TSO;

/// What a device made [`VirtioNet::without_offloads`] offers: no checksum
/// or segmentation offload in either direction.
pub const PLAIN_FEATURES: u64 =
    OFFERED_FEATURES & !(feature::CSUM | feature::GUEST_CSUM | feature::TSO);

/// `status` bit: the link is up.
pub const LINK_UP: u16 = 1;

/// `struct virtio_net_hdr_v1`: 12 bytes in front of every frame.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetHdr {
    /// `VIRTIO_NET_HDR_F_*` (0: no offload negotiated).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` (0: none).
    pub gso_type: u8,
    /// Length of the headers to copy for GSO.
    pub hdr_len: U16,
    /// GSO segment size.
    pub gso_size: U16,
    /// Where checksumming starts.
    pub csum_start: U16,
    /// Where to store the checksum, from `csum_start`.
    pub csum_offset: U16,
    /// Number of merged RX buffers (1 without `MRG_RXBUF`).
    pub num_buffers: U16,
}

/// Size of [`NetHdr`].
pub const NET_HDR_LEN: usize = size_of::<NetHdr>();

const _: () = assert!(NET_HDR_LEN == 12);
const _: () = assert!(core::mem::offset_of!(NetHdr, num_buffers) == 10);

impl NetHdr {
    /// The header of every received frame: `num_buffers = 1`, no offload.
    pub fn rx() -> Self {
        Self::rx_merged(1)
    }

    /// The header of a frame spread over `num_buffers` receive chains
    /// (`MRG_RXBUF`), no offload.
    pub fn rx_merged(num_buffers: u16) -> Self {
        NetHdr {
            num_buffers: U16::new(num_buffers),
            ..NetHdr::default()
        }
    }
}

/// `struct virtio_net_config` up to `status` (the fields of the offered
/// features).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetConfig {
    /// The MAC address.
    pub mac: MacAddr,
    /// [`LINK_UP`].
    pub status: U16,
}

const _: () = assert!(size_of::<NetConfig>() == 8);

// ── The device ────────────────────────────────────────────────────────

/// The virtio-net backend of one VM: switch port `port`.
#[derive(Debug)]
pub struct VirtioNet {
    port: usize,
    mac: MacAddr,
    switch: &'static NetSwitch,
    kicked: PortMask,
    features: Option<Features>,
    /// Timestamps for the capture and time for the rate limit.
    clock: Option<Clock>,
    /// The transmit rate limit, if any.
    bucket: Option<TokenBucket>,
    /// Since when the transmitter waits for room at a destination.
    waiting_since: Option<u64>,
    /// Segments of the frame at the front of the port ring already
    /// delivered (a segmentation-offload frame cut in software for a
    /// driver that takes no such frames, whose RX buffers ran out midway).
    rx_segments_done: usize,
    /// The features offered (without offloads if the VM is configured
    /// so).
    offered: u64,
}

/// How long a transmitter waits for a receiver that takes no frames
/// before that receiver's frames are dropped (`rx-stalled`), in
/// milliseconds.
pub const STALL_MS: u64 = 100;

/// How often a waiting transmitter looks again even if no receiver woke
/// it, in milliseconds.
pub const WAIT_POLL_MS: u64 = 5;

/// What one [`drain_rx`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Frames injected into the guest.
    pub delivered: u32,
    /// Frames dropped because the guest's buffer was too small (or a copy
    /// failed); counted on the port.
    pub dropped: u32,
    /// Frames still waiting in the ring (no more RX buffers, device not
    /// Live, or frames that arrived during the drain).
    pub remaining: usize,
    /// False if the device is not Live (frames then wait in the ring).
    pub live: bool,
}

impl VirtioNet {
    /// The device of VM `vm`, on port `vm` of the hypervisor switch
    /// [`VSWITCH`], with MAC [`VirtioNet::mac_for_vm`]`(vm)`.
    pub fn new(vm: usize) -> Self {
        Self::with_switch(vm, &VSWITCH)
    }

    /// The device of VM `vm` on port `vm` of `switch`.
    pub fn with_switch(vm: usize, switch: &'static NetSwitch) -> Self {
        VirtioNet {
            port: vm,
            mac: Self::mac_for_vm(vm),
            switch,
            kicked: 0,
            features: None,
            clock: None,
            bucket: None,
            waiting_since: None,
            rx_segments_done: 0,
            offered: OFFERED_FEATURES,
        }
    }

    /// The device of VM `vm` on port `vm` of `switch`, reading time from
    /// `clock` (capture timestamps) and limiting its transmit rate to
    /// `rate_mbit` Mbit/s (0: unlimited; see the module docs).
    pub fn with_limits(
        vm: usize,
        switch: &'static NetSwitch,
        rate_mbit: u32,
        clock: Clock,
    ) -> Self {
        VirtioNet {
            clock: Some(clock),
            bucket: TokenBucket::new(rate_mbit, clock.freq, clock.now()),
            ..Self::with_switch(vm, switch)
        }
    }

    /// This device without checksum and segmentation offload: it offers
    /// only [`PLAIN_FEATURES`], so its driver sends and receives plain
    /// frames (the switch completes checksums and cuts offload frames
    /// for it).
    pub fn without_offloads(self) -> Self {
        VirtioNet {
            offered: PLAIN_FEATURES,
            ..self
        }
    }

    /// The features this device offers.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    /// The transmit rate limit, if any.
    pub fn rate_limit(&self) -> Option<&TokenBucket> {
        self.bucket.as_ref()
    }

    /// The MAC address of VM `vm`: `52:54:00:00:00:(vm+1)` (the last byte
    /// wraps for VM 255 and up, far beyond `MAX_VMS`).
    pub const fn mac_for_vm(vm: usize) -> MacAddr {
        [0x52, 0x54, 0x00, 0x00, 0x00, (vm as u8).wrapping_add(1)]
    }

    /// This device's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// This device's switch port (= VM index).
    pub fn port(&self) -> usize {
        self.port
    }

    /// The switch this device is connected to.
    pub fn switch(&self) -> &'static NetSwitch {
        self.switch
    }

    /// This device's port ring (frames waiting for the guest).
    pub fn rx_ring(&self) -> Option<&'static NetRxRing<NET_RX_DEPTH, NET_RX_BYTES>> {
        self.switch.ring(self.port)
    }

    /// The configuration space contents.
    pub fn config(&self) -> NetConfig {
        NetConfig {
            mac: self.mac,
            status: U16::new(LINK_UP),
        }
    }

    /// The features negotiated at DRIVER_OK (None before and after reset).
    pub fn features(&self) -> Option<Features> {
        self.features
    }

    /// Ports that received frames from this VM since the last call (to be
    /// kicked by the run loop); clears the set.
    pub fn take_kicked_ports(&mut self) -> PortMask {
        core::mem::take(&mut self.kicked)
    }

    /// This port's counters.
    pub fn stats(&self) -> PortStats {
        self.switch.port_stats(self.port)
    }

    fn count(&self, counter: Counter) {
        if let Some(counters) = self.switch.counters(self.port) {
            counters.bump(counter);
        }
    }

    /// TX notify: forwards every available packet, or as many as the rate
    /// limit admits and the receivers have room for (the rest stay in the
    /// available ring; see the module docs).
    fn transmit(&mut self, queues: &mut LiveQueues<'_>) {
        let Some(mut tx) = queues.queue::<Transmit>(TX_QUEUE) else {
            return;
        };
        let now = self.clock.map_or(0, |c| c.now());
        let mut paused = None;
        loop {
            if let Some(bucket) = self.bucket.as_mut()
                && tx.has_available()
                && let Err(until) = bucket.admit(now)
            {
                if self.switch.tx_retry(self.port).is_none() {
                    self.count(Counter::TxRatePaused);
                }
                paused = Some(until);
                break;
            }
            let Some(chain) = tx.pop() else {
                break;
            };
            if let Some(retry) = self.send(chain, now) {
                paused = Some(retry);
                break;
            }
        }
        self.switch.set_tx_retry(self.port, paused);
    }

    /// Sends one TX packet; returns when to try again if it has to wait
    /// for room at its destination (it is then back in the available
    /// ring).
    fn send(&mut self, chain: TxChain<'_, HeaderPending>, now: u64) -> Option<u64> {
        let (hdr, mut ready) = match chain.read_header() {
            Ok(read) => read,
            Err(e) => {
                self.count_tx_error(e);
                return None;
            }
        };
        let len = ready.frame_len() as usize;
        let mut head = [0u8; MIN_FRAME_SIZE];
        let seen = match ready.peek_frame(&mut head) {
            Ok(n) => n,
            Err(e) => {
                ready.discard();
                self.count_tx_error(e);
                return None;
            }
        };
        let max_len = if hdr.gso_type == offload::GSO_NONE {
            MAX_FRAME_SIZE
        } else {
            MAX_GSO_FRAME_SIZE
        };
        let head = head.get(..seen).unwrap_or(&[]);
        let Ok(route) = self.switch.route_at(self.port, head, len, max_len, now) else {
            // Dropped by the switch (counted there).
            ready.discard();
            return None;
        };
        let offload = self
            .features
            .map_or(TxOffload::checksum_only(false), TxOffload::negotiated);
        let mut chain = Some(ready);
        let fill = |buf: &mut [u8]| -> Result<FrameMeta, TxError> {
            let Some(ready) = chain.take() else {
                return Err(TxError::TooLong { len: len as u32 }); // unreachable
            };
            let (n, done) = ready.read_frame(buf)?;
            done.complete();
            // The guest may have rewritten its buffer since the switch saw
            // the addresses: the copy must be what was routed.
            if n != buf.len() || buf.get(..head.len()) != Some(head) {
                return Err(TxError::Changed);
            }
            // Validated on the copy in the receiver's ring, which the guest
            // cannot change any more.
            let header =
                TxHeader::validate_frame(&hdr, offload, buf).map_err(TxError::BadHeader)?;
            match TxFrame::classify(buf, &header, n) {
                Some(FrameKind::Plain(_)) => Ok(FrameMeta::Plain),
                // Each receiver completes it or hands it on.
                Some(FrameKind::NeedsChecksum(partial)) => Ok(partial.partial().1),
                // Each receiver takes it whole or segmented.
                Some(FrameKind::Gso(gso)) => Ok(gso.gso().1),
                None => Err(TxError::Changed), // unreachable: validated for `n`
            }
        };
        let delivery = self
            .switch
            .deliver_with(self.port, route, len, now, true, fill);
        // Not read (blocked or dropped for want of room): give it back or
        // complete it.
        let unread = chain.take();
        match delivery {
            Ok(Delivery::Queued(ports)) => {
                self.kicked |= ports;
                self.waiting_since = None;
                if let Some(bucket) = self.bucket.as_mut() {
                    bucket.consume(len);
                }
            }
            Ok(Delivery::Dropped(_)) => {
                self.waiting_since = None;
                if let Some(rest) = unread {
                    rest.discard();
                }
            }
            Ok(Delivery::Blocked { port }) => {
                if self.waiting_since.is_none() {
                    self.count(Counter::TxWaited);
                }
                let since = *self.waiting_since.get_or_insert(now);
                let freq = self.clock.map_or(0, |c| c.freq);
                let give_up = since.saturating_add(freq / 1000 * STALL_MS);
                if let Some(rest) = unread {
                    if now >= give_up {
                        // The receiver took nothing for the whole bound:
                        // its frames are dropped from now on (`rx-stalled`)
                        // until it takes one again; this one is retried
                        // at once and dropped.
                        self.switch.mark_stalled(port);
                        self.waiting_since = None;
                        rest.put_back();
                        return Some(now);
                    }
                    rest.put_back();
                }
                return Some(give_up.min(now.saturating_add(freq / 1000 * WAIT_POLL_MS)));
            }
            Err(e) => {
                self.waiting_since = None;
                self.count_tx_error(e);
            }
        }
        None
    }

    fn count_tx_error(&self, e: TxError) {
        self.count(match e {
            TxError::BadHeader(_) => Counter::TxBadHeader,
            TxError::TooLong { .. } => Counter::TxTooLong,
            _ => Counter::TxMalformed,
        });
    }

    /// Moves frames from `ring` into RX buffers while both last; returns
    /// (delivered, dropped).
    fn inject<const N: usize, const B: usize>(
        &mut self,
        ring: &NetRxRing<N, B>,
        queues: &mut LiveQueues<'_>,
    ) -> (u32, u32) {
        let Some(mut rx) = queues.queue::<Receive>(RX_QUEUE) else {
            return (0, 0);
        };
        let counters = self.switch.counters(self.port);
        let (mut delivered, mut dropped) = (0u32, 0u32);
        let merged = self
            .features
            .is_some_and(|f| f.contains(feature::MRG_RXBUF));
        let guest_csum = self.features.and_then(GuestCsum::negotiated);
        let guest_tso = self.features.and_then(GuestTso::negotiated);
        // A partial checksum completed, or a segment cut, for a driver
        // without GUEST_CSUM or GUEST_TSO*.
        let mut completed = [0u8; MAX_FRAME_SIZE];
        let progress = &mut self.rx_segments_done;
        // At most one ring's worth: producers refilling the ring meanwhile
        // cannot keep this loop going.
        for _ in 0..N {
            let consumed = ring.peek_meta_with(|raw, meta| {
                let deliver = match RxFrame::classify(raw, meta) {
                    Some(RxFrameKind::Plain(plain)) => plain.deliverable(),
                    Some(RxFrameKind::NeedsChecksum(partial)) => match &guest_csum {
                        Some(proof) => partial.deliverable_to(proof),
                        None => partial.complete_into(&mut completed).deliverable(),
                    },
                    Some(RxFrameKind::Gso(gso)) => {
                        if let Some(whole) = guest_tso.as_ref().and_then(|p| gso.deliverable_to(p))
                        {
                            whole
                        } else {
                            // Cut in software, segment by segment; a frame
                            // whose segments did not all find buffers stays
                            // at the front and carries on from there.
                            let cut = gso.segmenter();
                            let count = cut.segment_count();
                            while *progress < count {
                                let Some(segment) = cut.segment_into(*progress, &mut completed)
                                else {
                                    break; // unreachable: index < count
                                };
                                let deliver = segment.deliverable();
                                let outcome = put(&mut rx, &deliver, merged);
                                if let Outcome::Waiting = outcome {
                                    return false;
                                }
                                match outcome.count(counters, deliver.frame().len()) {
                                    true => delivered += 1,
                                    false => dropped += 1,
                                }
                                *progress += 1;
                            }
                            *progress = 0;
                            if let Some(c) = counters {
                                c.bump(Counter::RxSegmented);
                            }
                            return true;
                        }
                    }
                    // Unreachable: the ring refuses metadata that does
                    // not fit its frame.
                    None => {
                        Outcome::Dropped(Counter::RxWriteFailed).count(counters, 0);
                        dropped += 1;
                        return true;
                    }
                };
                let outcome = put(&mut rx, &deliver, merged);
                if let Outcome::Waiting = outcome {
                    return false; // the frame stays at the front of the ring
                }
                match outcome.count(counters, deliver.frame().len()) {
                    true => delivered += 1,
                    false => dropped += 1,
                }
                true
            });
            if consumed != Some(true) {
                break;
            }
        }
        if delivered + dropped > 0 {
            // Room again: wake the senders that waited for it.
            let waiters = self.switch.take_waiters(self.port);
            for port in (0..MAX_PORTS).filter(|p| waiters & port_bit(*p) != 0) {
                self.switch.set_tx_retry(port, Some(0));
            }
            self.kicked |= waiters;
        }
        (delivered, dropped)
    }
}

/// What became of one delivery into the guest.
enum Outcome {
    /// Written and completed.
    Delivered,
    /// Not enough receive buffers yet: nothing was taken.
    Waiting,
    /// Dropped, counted under this counter.
    Dropped(Counter),
}

impl Outcome {
    /// Counts a finished delivery of `len` frame bytes on the port;
    /// returns true if it was delivered. `Waiting` counts nothing.
    fn count(self, counters: Option<&crate::net::PortCounters>, len: usize) -> bool {
        let Some(c) = counters else {
            return matches!(self, Outcome::Delivered);
        };
        match self {
            Outcome::Delivered => {
                c.frame(Counter::RxFrames, Counter::RxBytes, len);
                true
            }
            Outcome::Dropped(counter) => {
                c.bump(counter);
                false
            }
            Outcome::Waiting => false,
        }
    }
}

/// Writes one header + frame into the guest's receive queue: spread over
/// as many chains as it needs with `MRG_RXBUF` (`merged`), else into one
/// chain that must hold it all.
fn put(rx: &mut super::LiveQueue<'_, Receive>, deliver: &Deliverable<'_>, merged: bool) -> Outcome {
    if merged {
        return match rx.receive_merged(deliver) {
            Ok(_) => Outcome::Delivered,
            Err(SpreadError::Waiting) => Outcome::Waiting,
            Err(SpreadError::Memory(_)) => Outcome::Dropped(Counter::RxWriteFailed),
            Err(_) => Outcome::Dropped(Counter::RxNoRoom),
        };
    }
    let Some(buffer) = rx.pop() else {
        return Outcome::Waiting;
    };
    let result = buffer
        .write_header(&deliver.header(1), deliver.frame())
        .and_then(RxChain::write_frame);
    match result {
        Ok(done) => {
            done.complete();
            Outcome::Delivered
        }
        Err(RxError::NoRoom { .. }) => Outcome::Dropped(Counter::RxNoRoom),
        Err(RxError::Memory(_)) => Outcome::Dropped(Counter::RxWriteFailed),
    }
}

/// Injects frames waiting in `ring` (this device's port ring,
/// [`VirtioNet::rx_ring`] / `PORT_RX[vm]`) into the guest's RX queue: as
/// many as the guest has posted buffers for, oldest first, with one
/// interrupt for the whole batch (unless the guest suppressed it). Frames
/// without a buffer stay queued. Cheap when the ring is empty (no queue
/// access at all); does nothing but report while the device is not Live.
///
/// Call it from the run loop before entering the VM, and after the VM's
/// CPU was kicked because [`VSwitch::forward`] delivered to its port.
pub fn drain_rx<const N: usize, const B: usize>(
    transport: &mut VirtioMmioTransport<VirtioNet>,
    ring: &NetRxRing<N, B>,
    ctx: &mut DeviceContext<'_>,
) -> DrainOutcome {
    if ring.is_empty() {
        return DrainOutcome {
            live: transport.is_live(),
            ..DrainOutcome::default()
        };
    }
    let done = transport.with_live(ctx, |net, queues| net.inject(ring, queues));
    let (delivered, dropped) = done.unwrap_or_default();
    DrainOutcome {
        delivered,
        dropped,
        remaining: ring.len(),
        live: done.is_some(),
    }
}

/// Carries on with a transmitter the rate limit paused, once its retry
/// time (the port's [`VSwitch::tx_retry`]) is at or before `now`: forwards
/// what the limit now admits, completes those chains and interrupts the
/// guest as a TX notify would. Returns true if it ran. Does nothing before
/// the retry time; a device that is not Live just forgets the pause.
///
/// Call it from the run loop before entering the VM, and make sure the
/// loop wakes up at the retry time.
pub fn retry_tx(
    transport: &mut VirtioMmioTransport<VirtioNet>,
    ctx: &mut DeviceContext<'_>,
    now: u64,
) -> bool {
    let (switch, port) = (transport.backend().switch, transport.backend().port);
    if switch.tx_retry(port).is_none_or(|at| at > now) {
        return false;
    }
    switch.set_tx_retry(port, None);
    transport
        .with_live(ctx, |net, queues| net.transmit(queues))
        .is_some()
}

/// Console text for one VM's virtio-net device: MAC, state, its port's
/// counters and ring, then the transport's counters (refused registers,
/// malformed chains per queue, interrupts).
#[derive(Clone, Copy)]
pub struct NetDeviceReport<'a>(pub &'a VirtioMmioTransport<VirtioNet>);

impl fmt::Display for NetDeviceReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = self.0.backend();
        let queued = net.rx_ring().map_or(0, NetRxRing::len);
        write!(
            f,
            "virtio-net port {} mac {} {}, ring {queued}/{NET_RX_DEPTH}",
            net.port,
            Mac(net.mac),
            if self.0.is_live() { "live" } else { "down" },
        )?;
        match &net.bucket {
            Some(b) => writeln!(
                f,
                ", tx limit {} bytes/s burst {} tokens {}{}",
                b.rate(),
                b.burst(),
                b.tokens(),
                if net.switch.tx_retry(net.port).is_some() {
                    " (paused)"
                } else {
                    ""
                }
            )?,
            None => writeln!(f, ", tx unlimited")?,
        }
        writeln!(f, "{}", net.stats())?;
        write!(f, "  {}", self.0.stats())
    }
}

impl VirtioDevice for VirtioNet {
    const DEVICE_ID: u32 = regs::device_id::NET;
    const QUEUE_COUNT: u16 = 2;

    fn device_features(&self) -> u64 {
        self.offered
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool {
        read_config_bytes(self.config().as_bytes(), offset, data)
    }

    fn activate(&mut self, features: Features) {
        self.features = Some(features);
    }

    fn queue_notify(&mut self, queue: u16, queues: &mut LiveQueues<'_>) {
        match queue {
            TX_QUEUE => self.transmit(queues),
            // New receive buffers: deliver what has been waiting for them.
            RX_QUEUE => {
                if let Some(ring) = self.rx_ring() {
                    self.inject(ring, queues);
                }
            }
            _ => {}
        }
    }

    /// Forgets the negotiated features and a rate-limit pause (the queues
    /// it waited on are gone). Frames queued for this port stay queued
    /// (see the module docs), and kicks not yet taken are kept.
    fn reset(&mut self) {
        self.features = None;
        self.waiting_since = None;
        // A frame cut midway starts again from its first segment (a reset
        // driver has lost nothing it would miss; a restarted VM's ring was
        // emptied).
        self.rx_segments_done = 0;
        self.switch.set_tx_retry(self.port, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes() {
        let net = VirtioNet::new(2);
        let mut b = [0u8; 8];
        assert!(net.read_config(0, &mut b));
        assert_eq!(b, [0x52, 0x54, 0, 0, 0, 3, 1, 0]);
        let mut w = [0u8; 4];
        assert!(net.read_config(4, &mut w));
        assert_eq!(w, [0, 3, 1, 0]);
        assert!(!net.read_config(6, &mut w), "straddles the end");
        assert!(!net.read_config(8, &mut [0u8; 1]));
    }

    #[test]
    fn header_layout() {
        let hdr = NetHdr::rx();
        assert_eq!(hdr.as_bytes(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn macs() {
        assert_eq!(VirtioNet::mac_for_vm(0), [0x52, 0x54, 0, 0, 0, 1]);
        assert_eq!(VirtioNet::mac_for_vm(3), [0x52, 0x54, 0, 0, 0, 4]);
        assert_eq!(VirtioNet::mac_for_vm(255), [0x52, 0x54, 0, 0, 0, 0]);
    }
}
