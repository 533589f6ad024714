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
//! | `chain` (private) | the chain walk, [`Reader`] / [`Writer`], completion, [`LiveQueue`] and the [`QueueRole`]s |
//! | [`error`] | every error type (a leaf: it imports nothing from `virtio`) |
//! | [`device`] | the [`VirtioDevice`] trait a backend implements |
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
//!    [`QueueLayout`]; a chain is validated by the walk and becomes a set
//!    of checked buffers that never leave the virtio core; the negotiated
//!    feature set is a [`Features`] that
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
//! 6. **A chain is completed exactly once, and only when its work is
//!    whole.** A device only ever holds a chain in its typestate
//!    ([`QueueRole`]), whose last state alone can complete it, by value.
//!    Dropping an unfinished chain returns it with used length 0 (and is
//!    counted in [`QueueStats::completed_on_drop`]), so the driver always
//!    gets its descriptors back, once, and never sees partial work.
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
//! | [`LiveQueue`]`<R>` | [`LiveQueues::queue`]`::<R>` | [`LiveQueue::pop`]: `R`'s entry state |
//! | [`TxChain`](net::TxChain)`<HeaderPending>` | a [`net::Transmit`] queue | `read_header` → `FrameReady`: `read_frame` → `FrameRead`: `complete` |
//! | [`RxChain`](net::RxChain)`<Empty>` | a [`net::Receive`] queue | `write_header` → `HeaderWritten`: `write_frame` → `FrameWritten`: `complete` |
//! | [`BlkRequest`](blk::BlkRequest)`<HeaderPending>` | a [`blk::Requests`] queue | `read_header` → `Data`: [`Reader`] / [`Writer`] → `finish` (status) → `StatusWritten`: `complete` |
//! | [`Reader`] | a state that reads (e.g. `BlkRequest<Data>::data_in`) | copying *out of* the device-readable part |
//! | [`Writer`] | a state that writes (e.g. `BlkRequest<Data>::data_out`) | copying *into* the device-writable part |
//!
//! The raw descriptor chain and its guest addresses are private to this
//! module: a backend gets a queue only in one of the roles above, so the
//! order each device's protocol requires is the only order that compiles
//! (`tests/compile_fail/` holds one misuse per file, checked against the
//! compiler's exact output).
//!
//! The lifecycle, step by step (the transport drives it from the Status
//! register; each step consumes the previous state):
//!
//! ```
//! use hypervisor::virtio::Negotiating;
//! use hypervisor::virtio::regs::feature::VERSION_1;
//!
//! let mut negotiating = Negotiating::new();
//! negotiating.write_driver_features(1, (VERSION_1 >> 32) as u32);
//! // FEATURES_OK: only accepted features become `Features`.
//! let negotiated = negotiating.accept_features(VERSION_1).unwrap();
//! assert!(negotiated.features().contains(VERSION_1));
//! // DRIVER_OK: only a `Negotiated` can go live.
//! let live = negotiated.go_live();
//! assert!(!live.has_queue(0), "no queue was made ready");
//! ```
//!
//! # Writing a backend
//!
//! A backend implements [`VirtioDevice`]: its device ID and queue count,
//! the device-specific features it offers, its configuration space, and
//! what to do when the driver notifies a queue. For each notified queue it
//! takes the queue in its role, pops chains in the role's entry state and
//! walks each through the typestate to completion. It never raises
//! interrupts: when the batch ends, the transport sends one used-buffer
//! interrupt unless the driver suppressed it.
//!
//! Work that does not start with a notification (a frame arriving for a
//! network device) goes through [`VirtioMmioTransport::with_live`], which
//! lends the same queues to a closure if, and only if, the device is Live.
//!
//! The example is a loopback network device: the driver sends a frame on
//! the TX queue (12-byte header, then the frame, device-readable) and the
//! run loop delivers it back on the RX queue (header, then frame, written
//! into a device-writable buffer only if both fit). Every typestate step
//! is a line of the example.
//!
//! ```
//! use hypervisor::virtio::net::{NetHdr, Receive, RX_QUEUE, Transmit, TX_QUEUE};
//! use hypervisor::virtio::{LiveQueues, VirtioDevice, VirtioMmioTransport, read_config_bytes};
//!
//! /// Remembers the last frame sent on TX.
//! #[derive(Default)]
//! struct Loopback {
//!     pending: Option<([u8; 64], usize)>,
//!     refused: u64,
//! }
//!
//! impl VirtioDevice for Loopback {
//!     const DEVICE_ID: u32 = 1;
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
//!         if queue != TX_QUEUE {
//!             return; // RX buffers are consumed by the run loop.
//!         }
//!         let Some(mut tx) = queues.queue::<Transmit>(TX_QUEUE) else { return };
//!         // Each chain arrives as a `TxChain<HeaderPending>`.
//!         while let Some(packet) = tx.pop() {
//!             // Step 1: the header, whole or not at all (a refusal
//!             // completes the chain with used length 0).
//!             let Ok((_hdr, frame_ready)) = packet.read_header() else {
//!                 self.refused += 1;
//!                 continue;
//!             };
//!             // Step 2: the frame, into a bounded buffer (never truncated).
//!             let mut frame = [0u8; 64];
//!             let Ok((len, frame_read)) = frame_ready.read_frame(&mut frame) else {
//!                 self.refused += 1;
//!                 continue;
//!             };
//!             // Step 3: completion (TX writes nothing: used length 0).
//!             assert_eq!(frame_read.complete(), 0);
//!             self.pending = Some((frame, len));
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
//! // The driver sends "hello" on TX: a 12-byte header, then the frame.
//! mem.write(0x4000_8000, &[0; 12]).unwrap();
//! mem.write(0x4000_8100, b"hello").unwrap();
//! # put(1, 0, 0x4000_8000, 12, DESC_F_NEXT, 1);
//! # put(1, 1, 0x4000_8100, 5, 0, 0);
//! # offer(1, 0);
//! dev.write(offset::QUEUE_NOTIFY, AccessSize::Word, u64::from(TX_QUEUE), &mut ctx);
//! assert_eq!(dev.backend().pending.map(|(_, n)| n), Some(5));
//!
//! // The driver posts one 64-byte receive buffer on RX ...
//! # put(0, 0, 0x4000_9000, 64, DESC_F_WRITE, 0);
//! # offer(0, 0);
//! // ... and the run loop delivers the frame back.
//! if dev.has_available(RX_QUEUE, &mem) {
//!     dev.with_live(&mut ctx, |lo, queues| {
//!         let Some((frame, n)) = lo.pending.take() else { return };
//!         let Some(mut rx) = queues.queue::<Receive>(RX_QUEUE) else { return };
//!         // Each buffer arrives as an `RxChain<Empty>`.
//!         let Some(buffer) = rx.pop() else { return };
//!         // Step 1: the header, only if header and frame both fit.
//!         let header_written = buffer.write_header(&NetHdr::rx(), &frame[..n]).unwrap();
//!         // Step 2: the frame reserved by step 1.
//!         let frame_written = header_written.write_frame().unwrap();
//!         // Step 3: completion with the length written: 12 + 5.
//!         assert_eq!(frame_written.complete(), 17);
//!     });
//! }
//! let mut echoed = [0u8; 17];
//! mem.read(0x4000_9000, &mut echoed).unwrap();
//! assert_eq!(&echoed[10..], b"\x01\0hello"); // num_buffers = 1, then the frame
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
//!   `VIRTIO_F_INDIRECT_DESC` is never offered. Neither are packed rings
//!   or any other transport feature; the transport masks them out of
//!   whatever a backend offers and offers `VERSION_1` and `EVENT_IDX`
//!   (`used_event` / `avail_event`, for every backend: see [`queue`]).
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
//!   A chain returned before its typestate finished reports 0.
//! - **Interrupts** are one edge per batch of work (a `QueueNotify` or a
//!   `with_live` call) that completed chains, unless every such queue has
//!   `VIRTQ_AVAIL_F_NO_INTERRUPT` set. The edge is raised even if the
//!   InterruptStatus bit is already pending, so no completion can be
//!   missed by an edge-triggered GIC line.
//! - **Work per batch** is bounded: a queue yields at most one queue size
//!   of chains per batch (see [`LiveQueue::pop`]).
//!
//! [`GuestMemory`]: crate::guest_memory::GuestMemory
//! [`QueueStats::completed_on_drop`]: stats::QueueStats::completed_on_drop

pub mod blk;
mod chain;
pub mod device;
pub mod error;
pub mod lifecycle;
pub mod net;
pub mod queue;
pub mod ring;
pub mod stats;
pub mod transport;

pub use hal::virtio_mmio as regs;
pub use hal::virtio_mmio::{DeviceStatus, InterruptStatus};

pub use chain::{
    LiveQueue, MAX_CHAIN_DESCRIPTORS, MAX_SPREAD_CHAINS, QueueRole, Reader, SpreadError, Writer,
};
pub use device::{VirtioDevice, read_config_bytes};
pub use error::{
    BufferError, ChainError, FeatureError, QueueError, QueueFault, RingPart, TransitionError,
    TransitionRefusal,
};
pub use lifecycle::{DeviceState, Features, Live, LiveQueues, Negotiated, Negotiating};
pub use queue::{QueueConfig, QueueLayout};
pub use stats::{DeviceStats, MalformedStats, QueueStats, RegisterStats, TransportStats};
pub use transport::VirtioMmioTransport;

/// Most queues one device may declare ([`VirtioDevice::QUEUE_COUNT`]).
pub const MAX_QUEUES: usize = 8;

/// Default `QueueNumMax` of every queue.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
