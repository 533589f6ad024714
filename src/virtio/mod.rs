//! Safe virtio-mmio: a guide, and the code it describes.
//!
//! A virtio device shares memory with a driver it cannot trust. The guest
//! writes the descriptors, the ring indices and the buffer addresses, and
//! can change any of them at any moment from another CPU. This module is a
//! virtio 1.2 device side (split virtqueues over the virtio-mmio version 2
//! transport) written so that *no* guest behaviour can make the hypervisor
//! panic, loop forever, touch memory outside the guest's RAM, or write into
//! a buffer the driver handed over for reading. Each of those properties is
//! carried by a type, so a backend author gets them without having to
//! remember them.
//!
//! # Reading order
//!
//! | module | what it holds |
//! |---|---|
//! | [`ring`] | the split-ring wire format as zerocopy structs |
//! | [`queue`] | queue configuration → validated [`QueueLayout`]; taking and returning chains; interrupt suppression |
//! | [`chain`] | the chain walk, [`Reader`] / [`Writer`], completion |
//! | [`lifecycle`] | status transitions; the Negotiating → Negotiated → Live typestate |
//! | [`transport`] | the MMIO register file ([`VirtioMmioTransport`]) |
//! | [`stats`] | counters for everything refused or repaired |
//! | [`blk`] | a complete backend: virtio-blk over an in-memory disk |
//! | [`net`] | virtio-net on the in-hypervisor switch ([`crate::net`]) |
//!
//! Register offsets and status/feature bits are in the `hal` crate
//! ([`regs`]).
//!
//! # The rules
//!
//! 1. **Copy, never reference.** Guest RAM is only reached through
//!    [`GuestMemory`], which copies bytes and plain-old-data objects in and
//!    out of checked ranges. No `&[u8]` into the guest exists, so the guest
//!    changing memory under us can never break a Rust aliasing promise, and
//!    every value is read once into a hypervisor-owned copy that is checked
//!    and then used (no double fetch).
//! 2. **Check once, keep the proof in a type.** A queue's registers are
//!    validated when the driver sets `QueueReady` and become a
//!    [`QueueLayout`]; a chain is validated by [`chain::walk`] and becomes
//!    [`ChainBuffers`]; the negotiated feature set is a [`Features`] that
//!    only negotiation creates. Code that holds one of these does not
//!    re-check, and code that does not hold one cannot proceed.
//! 3. **Bound every loop the guest controls.** A chain walk reads at most
//!    min(queue size, [`MAX_CHAIN_DESCRIPTORS`]) descriptors; a queue
//!    yields at most one queue size of chains (good or malformed) per batch
//!    of work, even if the driver keeps refilling it from another CPU; an
//!    `avail.idx` more than a queue size ahead is refused.
//! 4. **Errors are values, and nothing is silently ignored.** Every
//!    refusal has an error type with the details and a counter in
//!    [`stats`]. A malformed chain is still returned to the driver (used
//!    length 0), so one bad request never stalls the queue.
//! 5. **Order memory like the spec says.** `avail.idx` is read with acquire
//!    before the ring entry and descriptors; the used element is written
//!    before `used.idx` is published with release; a full fence separates
//!    publishing `used.idx` from reading `avail.flags`.
//! 6. **A chain is completed exactly once.** [`Chain::complete`] consumes
//!    the chain; dropping an uncompleted chain completes it too (and is
//!    counted), so the driver always gets its descriptors back, once.
//! 7. **Only a Live device touches its queues.** Queues exist as
//!    [`LiveQueues`] only inside the Live lifecycle state, reached through
//!    FEATURES_OK and DRIVER_OK.
//!
//! # The typestates
//!
//! | type | obtained from | allows |
//! |---|---|---|
//! | [`Negotiating`] | reset | writing driver features |
//! | [`Negotiated`] | [`Negotiating::accept_features`] (FEATURES_OK) | configuring queues |
//! | [`Live`] | [`Negotiated::go_live`] (DRIVER_OK) | lending [`LiveQueues`] to the backend |
//! | [`LiveQueue`] | [`LiveQueues::queue`] | [`LiveQueue::pop`] |
//! | [`Chain`] | [`LiveQueue::pop`] | [`Chain::reader`], [`Chain::writer`], [`Chain::complete`] |
//! | [`Reader`] | [`Chain::reader`] | copying *out of* the device-readable part |
//! | [`Writer`] | [`Chain::writer`] | copying *into* the device-writable part |
//!
//! # Writing a backend
//!
//! A backend implements [`VirtioDevice`]: its device ID and queue count,
//! the device-specific features it offers, its configuration space, and
//! what to do when the driver notifies a queue. For each notified queue it
//! pops chains, reads the request through a [`Reader`], writes the reply
//! through a [`Writer`], and completes the chain. It never raises
//! interrupts: when the batch ends, the transport sends one used-buffer
//! interrupt unless the driver suppressed it.
//!
//! Work that does not start with a notification (a frame arriving for a
//! network device) goes through [`VirtioMmioTransport::with_live`], which
//! lends the same queues to a closure if, and only if, the device is Live.
//!
//! The example is a loopback device with the shape of virtio-net: the
//! driver sends messages on queue 1 (a 4-byte header, then a payload, both
//! device-readable) and the run loop delivers them back on queue 0 (header
//! then payload, written into device-writable buffers, only if the whole
//! message fits).
//!
//! ```
//! use hypervisor::virtio::{LiveQueues, VirtioDevice, VirtioMmioTransport, read_config_bytes};
//! use zerocopy::little_endian::U32;
//!
//! const RX: u16 = 0;
//! const TX: u16 = 1;
//!
//! /// Remembers the last message sent on TX.
//! #[derive(Default)]
//! struct Loopback {
//!     pending: Option<([u8; 64], usize)>,
//!     bad_headers: u64,
//! }
//!
//! impl VirtioDevice for Loopback {
//!     const DEVICE_ID: u32 = 0x1234;
//!     const QUEUE_COUNT: u16 = 2;
//!
//!     fn device_features(&self) -> u64 {
//!         0
//!     }
//!
//!     fn read_config(&self, offset: u32, data: &mut [u8]) -> bool {
//!         read_config_bytes(&[], offset, data)
//!     }
//!
//!     fn queue_notify(&mut self, queue: u16, queues: &mut LiveQueues<'_>) {
//!         if queue != TX {
//!             return; // RX buffers are consumed by the run loop.
//!         }
//!         let Some(mut tx) = queues.queue(TX) else { return };
//!         while let Some(mut chain) = tx.pop() {
//!             let mut request = chain.reader();
//!             // Header first: read whole or not at all.
//!             match request.read_obj::<U32>() {
//!                 Ok(header) if header.get() as usize == request.remaining() as usize => {
//!                     let mut frame = [0u8; 64];
//!                     if let Ok(n) = request.read_into(&mut frame) {
//!                         self.pending = Some((frame, n));
//!                     }
//!                 }
//!                 _ => self.bad_headers += 1,
//!             }
//!             // TX writes nothing: the used length is 0.
//!             chain.complete();
//!         }
//!     }
//!
//!     fn reset(&mut self) {
//!         *self = Self::default();
//!     }
//! }
//!
//! # use hypervisor::guest_memory::GuestMemory;
//! # use hypervisor::irq::RecordingIrqSink;
//! # use hypervisor::mmio::{AccessSize, DeviceContext, MmioDevice};
//! # use hypervisor::virtio::ring::{Descriptor, DESC_F_NEXT, DESC_F_WRITE};
//! # use hypervisor::virtio::regs::{feature, offset};
//! # use zerocopy::little_endian::{U16, U64};
//! # const RAM: u64 = 0x4000_0000;
//! # let mem = GuestMemory::from_static(RAM, Box::leak(vec![0u8; 0x10000].into_boxed_slice()));
//! # let mut irq = RecordingIrqSink::new();
//! # let mut ctx = DeviceContext { mem: &mem, irq: &mut irq, vcpu: 0 };
//! # let mut dev = VirtioMmioTransport::new(0x0a00_0000, 48, Loopback::default());
//! # let mut w = |d: &mut VirtioMmioTransport<Loopback>, ctx: &mut DeviceContext<'_>, off: u64, v: u64| {
//! #     d.write(off, AccessSize::Word, v, ctx)
//! # };
//! # // Handshake: ACKNOWLEDGE, DRIVER, features (VERSION_1), FEATURES_OK.
//! # w(&mut dev, &mut ctx, offset::STATUS, 1);
//! # w(&mut dev, &mut ctx, offset::STATUS, 3);
//! # w(&mut dev, &mut ctx, offset::DRIVER_FEATURES_SEL, 1);
//! # w(&mut dev, &mut ctx, offset::DRIVER_FEATURES, feature::VERSION_1 >> 32);
//! # w(&mut dev, &mut ctx, offset::STATUS, 11);
//! # // Queue q: 8 entries, descriptors at RAM + q*0x1000, avail +0x400, used +0x800.
//! # for q in 0..2u64 {
//! #     let base = RAM + q * 0x1000;
//! #     w(&mut dev, &mut ctx, offset::QUEUE_SEL, q);
//! #     w(&mut dev, &mut ctx, offset::QUEUE_NUM, 8);
//! #     w(&mut dev, &mut ctx, offset::QUEUE_DESC_LOW, base & 0xffff_ffff);
//! #     w(&mut dev, &mut ctx, offset::QUEUE_DRIVER_LOW, (base + 0x400) & 0xffff_ffff);
//! #     w(&mut dev, &mut ctx, offset::QUEUE_DEVICE_LOW, (base + 0x800) & 0xffff_ffff);
//! #     w(&mut dev, &mut ctx, offset::QUEUE_READY, 1);
//! # }
//! # w(&mut dev, &mut ctx, offset::STATUS, 15);
//! # let put = |q: u64, i: u64, addr: u64, len: u32, flags: u16, next: u16| {
//! #     let d = Descriptor { addr: U64::new(addr), len: len.into(), flags: U16::new(flags), next: U16::new(next) };
//! #     mem.write_obj(RAM + q * 0x1000 + i * 16, &d).unwrap();
//! # };
//! # let offer = |q: u64, head: u16| {
//! #     mem.write_obj(RAM + q * 0x1000 + 0x400 + 4, &U16::new(head)).unwrap();
//! #     mem.write_obj(RAM + q * 0x1000 + 0x400 + 2, &U16::new(1)).unwrap();
//! # };
//! // The driver sends "hello" on TX: header (length 5), then the payload.
//! mem.write(0x4000_8000, &[5, 0, 0, 0]).unwrap();
//! mem.write(0x4000_8100, b"hello").unwrap();
//! # put(1, 0, 0x4000_8000, 4, DESC_F_NEXT, 1);
//! # put(1, 1, 0x4000_8100, 5, 0, 0);
//! # offer(1, 0);
//! dev.write(offset::QUEUE_NOTIFY, AccessSize::Word, 1, &mut ctx);
//! assert_eq!(dev.backend().pending.map(|(_, n)| n), Some(5));
//!
//! // The driver posts one 64-byte receive buffer on RX ...
//! # put(0, 0, 0x4000_9000, 64, DESC_F_WRITE, 0);
//! # offer(0, 0);
//! // ... and the run loop delivers the message back.
//! if dev.has_available(RX, &mem) {
//!     dev.with_live(&mut ctx, |lo, queues| {
//!         let Some((frame, n)) = lo.pending else { return };
//!         let Some(mut rx) = queues.queue(RX) else { return };
//!         let Some(mut chain) = rx.pop() else { return };
//!         let mut out = chain.writer();
//!         // Check the whole message fits before writing any of it.
//!         if out.remaining() as usize >= 4 + n {
//!             out.write_obj(&U32::new(n as u32)).unwrap();
//!             out.write_all(&frame[..n]).unwrap();
//!             lo.pending = None;
//!         }
//!         let used_len = chain.complete(); // 9: header + payload
//!         assert_eq!(used_len, 9);
//!     });
//! }
//! let mut echoed = [0u8; 9];
//! mem.read(0x4000_9000, &mut echoed).unwrap();
//! assert_eq!(&echoed, b"\x05\0\0\0hello");
//! // One interrupt per batch: the TX completion and the RX delivery.
//! # drop(ctx);
//! assert_eq!(irq.edges_on(48), 2);
//! ```
//!
//! # Decisions
//!
//! Where the spec leaves a choice, this implementation decides:
//!
//! - **Zero-length descriptors** are malformed ([`ChainError::ZeroLength`]):
//!   the spec gives them no meaning, Linux never sends them, QEMU rejects
//!   them, and refusing them makes every buffer a cursor enters non-empty.
//! - **`VIRTQ_DESC_F_INDIRECT`** is malformed ([`ChainError::Indirect`]):
//!   `VIRTIO_F_INDIRECT_DESC` is never offered. Neither are `EVENT_IDX`,
//!   packed rings or any other transport feature; the transport masks them
//!   out of whatever a backend offers and offers `VERSION_1`.
//! - **Chain length** is limited to [`MAX_CHAIN_DESCRIPTORS`] (and the queue
//!   size); a loop is reported as [`ChainError::TooLong`].
//! - **An `avail.idx` jump** (more than a queue size of new entries, or a
//!   decrement) faults that queue ([`QueueFault::AvailIndexJump`]): it
//!   yields nothing more, the device sets `DEVICE_NEEDS_RESET`
//!   (status bit 64) and sends a configuration-change interrupt (spec
//!   2.1.2). Other queues keep working; the driver is expected to reset.
//! - **An invalid queue layout** at `QueueReady = 1` (bad size, alignment,
//!   or an area outside RAM) leaves `QueueReady` reading 0, is counted, and
//!   sets `DEVICE_NEEDS_RESET`; `DRIVER_OK` is then refused until a reset.
//! - **Status** moves one bit at a time along ACKNOWLEDGE → DRIVER →
//!   FEATURES_OK → DRIVER_OK, or adds FAILED; rewriting the current value
//!   is accepted as a no-op; anything else is refused and counted
//!   ([`TransitionRefusal`]). Features not offered, or a missing
//!   `VERSION_1`, leave FEATURES_OK clear when read back.
//! - **Reset** (Status = 0) drops the lifecycle state (and with it every
//!   queue), clears the selectors, InterruptStatus and
//!   `DEVICE_NEEDS_RESET`, and resets the backend. Counters survive.
//! - **The used length** is the number of bytes written through the
//!   chain's [`Writer`], which writes sequentially from the first
//!   writable byte: exactly the prefix the spec requires `len` to cover.
//! - **Interrupts** are one edge per batch of work (a `QueueNotify` or a
//!   `with_live` call) that completed chains, unless every such queue has
//!   `VIRTQ_AVAIL_F_NO_INTERRUPT` set. The edge is raised even if the
//!   InterruptStatus bit is already pending, so no completion can be
//!   missed by an edge-triggered GIC line.
//! - **Work per batch** is bounded: a queue yields at most one queue size
//!   of chains per batch (see [`LiveQueue::pop`]).
//!
//! [`GuestMemory`]: crate::guest_memory::GuestMemory

pub mod blk;
pub mod chain;
pub mod lifecycle;
pub mod net;
pub mod queue;
pub mod ring;
pub mod stats;
pub mod transport;

pub use hal::virtio_mmio as regs;
pub use hal::virtio_mmio::{DeviceStatus, InterruptStatus};

pub use chain::{
    BufferError, Chain, ChainBuffers, ChainError, MAX_CHAIN_DESCRIPTORS, Reader, Segment, Writer,
};
pub use lifecycle::{
    DeviceState, FeatureError, Features, Live, LiveQueues, Negotiated, Negotiating,
    TransitionError, TransitionRefusal,
};
pub use queue::{LiveQueue, QueueConfig, QueueError, QueueFault, QueueLayout};
pub use stats::{DeviceStats, MalformedStats, QueueStats, RegisterStats, TransportStats};
pub use transport::VirtioMmioTransport;

/// Most queues one device may declare ([`VirtioDevice::QUEUE_COUNT`]).
pub const MAX_QUEUES: usize = 8;

/// Default `QueueNumMax` of every queue.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;

/// A virtio device backend: what makes a block device a block device.
///
/// The transport calls these methods; a backend never sees registers,
/// status bits or raw rings.
pub trait VirtioDevice {
    /// Virtio device ID (1 network, 2 block, ...; see [`regs::device_id`]).
    const DEVICE_ID: u32;
    /// Number of virtqueues (at most [`MAX_QUEUES`], checked at compile
    /// time when the transport is built).
    const QUEUE_COUNT: u16;

    /// Device-specific feature bits offered to the driver (bits 0..=23 and
    /// 50..). Transport bits are masked out; `VERSION_1` is added.
    fn device_features(&self) -> u64;

    /// `QueueNumMax` of `queue` (rounded down to a power of two by the
    /// transport).
    fn queue_max_size(&self, queue: u16) -> u16 {
        let _ = queue;
        DEFAULT_QUEUE_SIZE
    }

    /// Fills `data` with the configuration space bytes at `offset`
    /// (little-endian, as the driver sees them). Returns false if the range
    /// is not inside the configuration space; the transport then counts the
    /// access and reads 0. [`read_config_bytes`] does this for a byte
    /// slice.
    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool;

    /// Handles a driver write to the configuration space. Returns false if
    /// the field is read-only or does not exist (counted by the transport).
    fn write_config(&mut self, offset: u32, data: &[u8]) -> bool {
        let _ = (offset, data);
        false
    }

    /// The driver set DRIVER_OK with these features: the device is Live.
    fn activate(&mut self, features: Features) {
        let _ = features;
    }

    /// The driver notified `queue` (which exists and is live). Pop chains
    /// from `queues.queue(queue)`, process them and complete them.
    fn queue_notify(&mut self, queue: u16, queues: &mut LiveQueues<'_>);

    /// The driver reset the device: forget everything negotiated.
    fn reset(&mut self);
}

/// Copies `config[offset..offset + data.len()]` into `data`; false (and
/// `data` untouched) if that range is not inside `config`.
pub fn read_config_bytes(config: &[u8], offset: u32, data: &mut [u8]) -> bool {
    let Ok(start) = usize::try_from(offset) else {
        return false;
    };
    match start
        .checked_add(data.len())
        .and_then(|end| config.get(start..end))
    {
        Some(bytes) => {
            data.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_bounds() {
        let cfg = [1u8, 2, 3, 4, 5, 6];
        let mut out = [0u8; 4];
        assert!(read_config_bytes(&cfg, 2, &mut out));
        assert_eq!(out, [3, 4, 5, 6]);
        assert!(!read_config_bytes(&cfg, 3, &mut out));
        assert!(!read_config_bytes(&cfg, u32::MAX, &mut out));
        let mut one = [0u8; 1];
        assert!(read_config_bytes(&cfg, 5, &mut one));
        assert_eq!(one, [6]);
    }
}
