//! Inter-VM networking: per-port frame rings and the L2 virtual switch.
//!
//! Each VM has one virtio-net device ([`VirtioNet`], virtio-mmio slot 1:
//! 0x0a00_0200, INTID 49) on switch port `vm`, with MAC
//! `52:54:00:00:00:(vm+1)` locked to that port. The hypervisor has one
//! switch, [`VSWITCH`], whose port `n` delivers into [`PORT_RX`]`[n]`.
//!
//! # The path of a frame
//! TX: the guest notifies its TX queue → MMIO exit → transport →
//! [`VirtioNet`] reads the header and the frame's Ethernet header →
//! [`VSwitch::route_at`] (under the switch's lock: learn the source MAC,
//! pick destinations) → [`VSwitch::deliver_with`] reserves the frame's
//! place in the destination's [`NetRxRing`] and the device copies the
//! frame there straight from the guest's buffers (one copy, no switch lock
//! held), validates its header on that copy and commits it → the exit
//! returns; the run loop calls [`VirtioNet::take_kicked_ports`] and kicks
//! the CPUs running those VMs.
//!
//! # Delivery policy: lossless between live VMs
//! - **Unicast** (one known destination): a frame for a full ring is not
//!   dropped. It stays in the sender's TX queue (the chain is put back
//!   unread), the sender stops taking frames and registers as a waiter on
//!   that port; the receiver, as soon as it takes frames, wakes its
//!   waiters ([`VSwitch::take_waiters`]: their retry time becomes "now"
//!   and their CPUs are kicked), and they carry on in order. The guest
//!   sees a slow link: its TX queue fills and its qdisc holds back, as
//!   with a real NIC. Counted per sender as `waited`.
//! - **A receiver that takes nothing** (no RX buffers, stopped, reset, or
//!   busy elsewhere) for [`STALL_MS`] while a sender waits is marked
//!   stalled ([`VSwitch::mark_stalled`]); from then on frames for it are
//!   dropped and counted (`rx-stalled`) instead of waiting, until it takes
//!   a frame again. So it holds up a sender's traffic to other ports for
//!   at most that long. A waiting sender looks again at least every
//!   [`WAIT_POLL_MS`] even if no wake-up comes.
//! - **Floods** (broadcast, multicast, unknown unicast) never wait: a
//!   destination whose ring is full (or busy) misses the frame, counted
//!   there (`ring-full`).
//! - **Frames the switch refuses** (too short or long, MAC lock, VLAN,
//!   no destination, invalid virtio-net header) are dropped and counted on
//!   the sender's port, never forwarded.
//!
//! RX: before entering a VM, its run loop calls [`drain_rx`], which moves
//! the frames waiting in `PORT_RX[vm]` into the guest's receive buffers and
//! raises INTID 49 once. Frames wait in the ring while the guest has no
//! buffers; an RX notify (the guest posting buffers) also drains.
//!
//! # What the run loop calls
//! ```no_run
//! use hypervisor::devices::{DeviceManager, attach_virtio_net};
//! use hypervisor::mmio::DeviceContext;
//! use hypervisor::net::{PORT_RX, VSWITCH};
//! use hypervisor::virtio::net::{NetDeviceReport, drain_rx};
//!
//! fn boot(devices: &mut DeviceManager, vm: usize) {
//!     // Device in slot 1 + switch port `vm` with its MAC lock.
//!     attach_virtio_net(devices, vm).expect("virtio-net");
//! }
//!
//! fn before_entering(devices: &mut DeviceManager, vm: usize, ctx: &mut DeviceContext<'_>) {
//!     if let Some(net) = devices.virtio_net() {
//!         let outcome = drain_rx(net, &PORT_RX[vm], ctx);
//!         let _ = outcome.remaining; // frames still waiting for buffers
//!     }
//! }
//!
//! fn after_mmio_exit(devices: &mut DeviceManager, kick: impl Fn(usize)) {
//!     if let Some(net) = devices.virtio_net() {
//!         let ports = net.backend_mut().take_kicked_ports();
//!         (0..32).filter(|p| ports & (1 << p) != 0).for_each(kick);
//!     }
//! }
//!
//! fn console_stats(devices: &mut DeviceManager) {
//!     // The switch: every port's counters and the MAC table.
//!     hypervisor::hv_println!("{}", VSWITCH.snapshot());
//!     // One VM's device: its port plus the transport's counters.
//!     if let Some(net) = devices.virtio_net() {
//!         hypervisor::hv_println!("{}", NetDeviceReport(net));
//!     }
//! }
//! ```

pub mod capture;
pub mod pcapng;
pub mod rate;
pub mod rx_ring;
pub mod vswitch;

pub use capture::{CaptureRing, CaptureSink, CaptureStats, DropReason, Verdict};
pub use rate::{Clock, TokenBucket};
pub use rx_ring::{
    DEFAULT_RING_BYTES, FrameMeta, GsoKind, MAX_FRAME_SIZE, MAX_GSO_FRAME_SIZE, MIN_FRAME_SIZE,
    NET_RX_BYTES, NET_RX_DEPTH, NetRxRing, Reservation, StoreError,
};
pub use vswitch::{
    BROADCAST, Counter, DEFAULT_VLAN, Delivery, MAC_TABLE_SIZE, MAX_PORTS, MAX_VLAN, Mac, MacAddr,
    MacEntry, PortConfig, PortCounters, PortError, PortMask, PortReport, PortStats, Route,
    SwitchSnapshot, VSwitch, is_group, is_tagged, port_bit,
};

/// Switch type the hypervisor's virtio-net devices are connected to.
pub type NetSwitch = VSwitch<'static, NET_RX_DEPTH, NET_RX_BYTES>;

/// The port rings of the hypervisor switch: `PORT_RX[n]` holds the frames
/// waiting for VM `n` (producer: [`VSWITCH`]; consumer: VM `n`'s run loop
/// through [`drain_rx`]).
pub static PORT_RX: [NetRxRing<NET_RX_DEPTH, NET_RX_BYTES>; MAX_PORTS] =
    [const { NetRxRing::new() }; MAX_PORTS];

/// Bytes of the hypervisor's capture ring ([`CAPTURE`]): about 80 full
/// frames; the run loop drains it to the capture file at least every
/// 10 ms while it holds anything, and at once when it is a quarter full.
pub const CAPTURE_RING_SIZE: usize = 128 * 1024;

/// The hypervisor's packet capture ring (see [`capture`]); [`VSWITCH`]
/// records into it while capture is on.
pub static CAPTURE: CaptureRing<CAPTURE_RING_SIZE> = CaptureRing::new();

/// The hypervisor's switch, over [`PORT_RX`], capturing into [`CAPTURE`].
/// Ports are added by
/// [`attach_virtio_net`](crate::devices::attach_virtio_net) (or
/// [`VSwitch::add_port`]).
pub static VSWITCH: NetSwitch = VSwitch::with_capture(&PORT_RX, &CAPTURE);

#[cfg(doc)]
use crate::virtio::net::{STALL_MS, VirtioNet, WAIT_POLL_MS, drain_rx};
