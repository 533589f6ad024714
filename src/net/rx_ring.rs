//! [`NetRxRing`]: a lock-free ring of whole Ethernet frames of any size up
//! to [`MAX_GSO_FRAME_SIZE`], one per switch port.
//!
//! The producers are the senders' transmit paths (one at a time: each
//! store or [`Reservation`] holds the ring's producer flag); the consumer
//! is the destination VM's run loop, which moves frames into the guest's
//! RX virtqueue.
//!
//! # Capacity
//! A ring holds at most `N` frames and `B` bytes of frame data. Frame
//! counters are free-running, so `N` slots hold exactly `N` frames. Data
//! is stored contiguously, each frame starting on a 64-byte boundary;
//! a frame that does not fit before the end of the byte area starts at its
//! beginning instead (the skipped tail counts as used until the frame is
//! taken). So a ring takes any mix of small and large frames: hundreds of
//! ACKs, or a handful of 64 KiB segmentation-offload frames.
//!
//! # One copy: reserve, fill, commit
//! [`NetRxRing::reserve`] hands the producer the frame's place in the ring
//! as a `&mut [u8]` ([`Reservation`]), so a sender copies a frame straight
//! from its guest's buffers into the receiver's ring; [`Reservation::commit`]
//! publishes it, dropping the reservation abandons it (nothing is
//! published). [`NetRxRing::try_store_meta`] is reserve + copy + commit.
//!
//! # Peek, then commit
//! A frame must stay queued while the guest has posted no receive buffer,
//! and leave the ring only once it has been injected. [`NetRxRing::peek_with`]
//! lends the oldest frame to a closure *in place* (no intermediate copy)
//! and removes it only if the closure says so.
//!
//! # Soundness without trusting callers
//! The single-producer / single-consumer contract is enforced, not merely
//! documented: each side holds a flag while it touches the ring. A second
//! producer that races in either waits for the flag ([`NetRxRing::reserve_wait`],
//! what the switch uses: several senders may target one port) or backs off
//! (`try_store*` and [`NetRxRing::reserve`] return [`StoreError::Busy`]);
//! a second consumer backs off (`take`/`peek_with` return `None`). So no
//! safe use of the ring can make two contexts access one frame's bytes at
//! once.
//!
//! # Memory
//! The hypervisor's rings ([`PORT_RX`](super::PORT_RX)) are
//! [`NET_RX_DEPTH`] frames and [`NET_RX_BYTES`] bytes deep, one per
//! possible VM, in `.bss`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Largest Ethernet frame carried (no FCS, no VLAN tag, no jumbo frames).
pub const MAX_FRAME_SIZE: usize = 1514;

/// Largest frame a segmentation-offload (GSO) packet can be: an Ethernet
/// header plus the largest IP packet (total length 65,535). Such a frame
/// is one TCP stream's data to be cut into [`MAX_FRAME_SIZE`] frames by
/// whoever receives it ([`FrameMeta::Gso`]).
pub const MAX_GSO_FRAME_SIZE: usize = 14 + 65_535;

/// Smallest frame the switch accepts: an Ethernet header.
pub const MIN_FRAME_SIZE: usize = 14;

/// Frames each hypervisor port ring ([`PORT_RX`](super::PORT_RX)) holds at
/// most, while the destination VM is not running or has no receive
/// buffers posted (its bytes, [`NET_RX_BYTES`], are usually the limit).
pub const NET_RX_DEPTH: usize = 256;

/// Bytes of frame data in each hypervisor port ring: six of the largest
/// segmentation-offload frames, or about 250 full-size frames.
pub const NET_RX_BYTES: usize = 384 * 1024;

/// Bytes of frame data of a [`NetRxRing`] that does not say: 16 full-size
/// frames, small enough for a test's stack (and too small for a
/// segmentation-offload frame, which such a ring refuses as
/// [`StoreError::BadLength`]).
pub const DEFAULT_RING_BYTES: usize = 16 * (MAX_FRAME_SIZE + 2) + 16 * 64;

/// The longest frame a ring of `B` bytes takes.
const fn longest_frame(b: usize) -> usize {
    let room = b - FRAME_ALIGN;
    if room < MAX_GSO_FRAME_SIZE {
        room
    } else {
        MAX_GSO_FRAME_SIZE
    }
}

/// Why [`NetRxRing::try_store`] did not store a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The ring already holds `N` frames, or has no room for this frame's
    /// bytes.
    Full,
    /// The frame is empty or longer than [`MAX_FRAME_SIZE`] (longer than
    /// [`MAX_GSO_FRAME_SIZE`] for a [`FrameMeta::Gso`] frame).
    BadLength(usize),
    /// Another producer is storing right now (impossible when producers are
    /// serialized, as the switch does).
    Busy,
    /// The frame's metadata does not fit it ([`FrameMeta::fits`]).
    BadMeta,
}

/// The protocol of a segmentation-offload frame (`gso_type` without the
/// ECN bit, virtio 1.2 section 5.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4 (`VIRTIO_NET_HDR_GSO_TCPV4`).
    Tcp4,
    /// TCP over IPv6 (`VIRTIO_NET_HDR_GSO_TCPV6`).
    Tcp6,
}

/// What travels with a frame besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameMeta {
    /// A complete frame.
    #[default]
    Plain,
    /// The transport checksum is partial (the sender offloaded it): the
    /// ones' complement sum from `start` to the end of the frame is still
    /// to be folded, inverted and stored at `start + offset`, by the
    /// receiver's driver (if it negotiated it) or before delivery.
    PartialChecksum {
        /// First byte summed.
        start: u16,
        /// Position of the 2-byte checksum field, from `start`.
        offset: u16,
    },
    /// A TCP segmentation-offload frame (longer than the MTU allows): its
    /// TCP payload is to be cut into segments of `gso_size` bytes, each
    /// behind a copy of the first `hdr_len` bytes (Ethernet, IP and TCP
    /// headers) with lengths, sequence numbers and checksums fixed up, by
    /// the receiver's driver (if it negotiated `GUEST_TSO*`) or before
    /// delivery. The TCP checksum is partial, as in
    /// [`FrameMeta::PartialChecksum`].
    Gso {
        /// IPv4 or IPv6.
        kind: GsoKind,
        /// Bytes of headers in front of the TCP payload.
        hdr_len: u16,
        /// TCP payload bytes per segment (the MSS).
        gso_size: u16,
        /// First byte summed (the TCP header).
        start: u16,
        /// Position of the TCP checksum field, from `start`.
        offset: u16,
    },
}

impl FrameMeta {
    /// True if the metadata fits a frame of `len` bytes: a partial
    /// checksum starts inside it and its 2-byte field lies inside it.
    pub fn fits(&self, len: usize) -> bool {
        match *self {
            FrameMeta::Plain => true,
            FrameMeta::PartialChecksum { start, offset } => {
                usize::from(start) < len && usize::from(start) + usize::from(offset) + 2 <= len
            }
            FrameMeta::Gso {
                hdr_len,
                gso_size,
                start,
                offset,
                ..
            } => {
                gso_size > 0
                    && usize::from(start) + usize::from(offset) + 2 <= usize::from(hdr_len)
                    && usize::from(hdr_len) < len
            }
        }
    }
}

/// Where one queued frame's bytes are.
#[derive(Clone, Copy)]
struct Slot {
    /// Free-running byte position of the frame's first byte.
    start: usize,
    len: u32,
    meta: FrameMeta,
}

impl Slot {
    const EMPTY: Slot = Slot {
        start: 0,
        len: 0,
        meta: FrameMeta::Plain,
    };
}

/// Alignment of each frame's first byte in the byte area.
const FRAME_ALIGN: usize = 64;

/// A ring of up to `N` whole frames in `B` bytes (see the
/// [module docs](self)).
pub struct NetRxRing<const N: usize, const B: usize = DEFAULT_RING_BYTES> {
    slots: [UnsafeCell<Slot>; N],
    data: UnsafeCell<[u8; B]>,
    /// Frames taken so far (advanced only by the consumer).
    head: AtomicUsize,
    /// Frames stored so far (advanced only by the producer).
    tail: AtomicUsize,
    /// Byte position up to which the consumer has freed the data area.
    freed: AtomicUsize,
    /// Byte position where the producer stores next.
    filled: AtomicUsize,
    /// Held by the one producer while it stores.
    producing: AtomicBool,
    /// Held by the one consumer while it reads or removes the front frame.
    consuming: AtomicBool,
}

// SAFETY: slot `i % N` is written only by the producer and only while
// `i` is outside `head..tail` (free), and read only by the consumer while
// inside it; likewise the bytes of the data area between `freed` and the
// next store's end are written only by the producer, and the bytes of a
// queued frame (inside `freed..filled`) only read by the consumer. The
// producer publishes a frame with a Release store of `tail` that the
// consumer observes with an Acquire load; the consumer frees it with
// Release stores of `freed` and `head` that the producer observes with
// Acquire loads. The `producing`/`consuming` flags (Acquire on taking,
// Release on giving back) guarantee there is at most one producer and one
// consumer at any moment, whatever safe code calls. So no slot or byte is
// ever accessed by two contexts at once, and both are plain data (`Send`).
unsafe impl<const N: usize, const B: usize> Sync for NetRxRing<N, B> {}

impl<const N: usize, const B: usize> Default for NetRxRing<N, B> {
    fn default() -> Self {
        Self::new()
    }
}

/// A held side flag, given back on drop (so no early return can leak it).
struct SideGuard<'a>(&'a AtomicBool);

impl<'a> SideGuard<'a> {
    fn try_take(flag: &'a AtomicBool) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SideGuard(flag))
    }

    fn wait_take(flag: &'a AtomicBool) -> Self {
        loop {
            if let Some(guard) = Self::try_take(flag) {
                return guard;
            }
            while flag.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }
}

impl Drop for SideGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A frame's place in a ring, reserved by its producer (see the
/// [module docs](self)): fill [`Reservation::buf`], then
/// [`Reservation::commit`] it with the frame's metadata. Dropping it publishes nothing. While it lives
/// no other producer can store into the ring.
#[must_use = "a reservation publishes nothing until it is committed"]
pub struct Reservation<'r, const N: usize, const B: usize> {
    ring: &'r NetRxRing<N, B>,
    _producer: SideGuard<'r>,
    tail: usize,
    start: usize,
    len: usize,
}

impl<const N: usize, const B: usize> Reservation<'_, N, B> {
    /// The frame's bytes in the ring (their previous contents are
    /// unspecified: fill all of them).
    pub fn buf(&mut self) -> &mut [u8] {
        let base = self.ring.data.get().cast::<u8>();
        // SAFETY: `start % B .. start % B + len` lies inside the B-byte
        // area (`reserve` placed it so) and in its free part (checked
        // against `freed` in `reserve`): the consumer does not read it
        // until `tail` is published by `commit`, and no other producer
        // writes while we hold `producing`. The slice borrows `self`
        // mutably, so it cannot outlive the reservation.
        unsafe { core::slice::from_raw_parts_mut(base.add(self.start % B), self.len) }
    }

    /// Bytes reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the reservation is for an empty frame (never: `reserve`
    /// refuses those).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the frame to the consumer with its `meta`, or refuses it
    /// (nothing published) if the metadata does not fit the frame or the
    /// frame is longer than [`MAX_FRAME_SIZE`] without being a
    /// [`FrameMeta::Gso`] frame.
    pub fn commit(self, meta: FrameMeta) -> Result<(), StoreError> {
        check_len(self.len, meta)?;
        let Some(cell) = self.ring.slots.get(self.tail % N) else {
            return Err(StoreError::Full); // unreachable: tail % N < N
        };
        // SAFETY: slot `tail % N` is free (`reserve` checked `tail - head
        // < N` with `head` loaded Acquire after the consumer's Release);
        // the consumer does not read it until `tail` is published below,
        // and we are the only producer (we hold `producing`).
        unsafe {
            *cell.get() = Slot {
                start: self.start,
                len: self.len as u32, // len <= MAX_GSO_FRAME_SIZE < u32::MAX
                meta,
            };
        }
        self.ring
            .filled
            .store(self.start + self.len, Ordering::Relaxed);
        self.ring
            .tail
            .store(self.tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }
}

/// A frame of `len` bytes may be queued with `meta`.
fn check_len(len: usize, meta: FrameMeta) -> Result<(), StoreError> {
    let limit = match meta {
        FrameMeta::Gso { .. } => MAX_GSO_FRAME_SIZE,
        _ => MAX_FRAME_SIZE,
    };
    if len == 0 || len > limit {
        return Err(StoreError::BadLength(len));
    }
    if !meta.fits(len) {
        return Err(StoreError::BadMeta);
    }
    Ok(())
}

impl<const N: usize, const B: usize> NetRxRing<N, B> {
    /// An empty ring (usable in a `static`).
    pub const fn new() -> Self {
        const {
            assert!(N > 0, "a NetRxRing needs at least one slot");
            assert!(
                B >= MAX_FRAME_SIZE + FRAME_ALIGN && B % FRAME_ALIGN == 0,
                "a NetRxRing must hold a full-size frame"
            );
        };
        NetRxRing {
            slots: [const { UnsafeCell::new(Slot::EMPTY) }; N],
            data: UnsafeCell::new([0; B]),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
            filled: AtomicUsize::new(0),
            producing: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
        }
    }

    /// Number of slots: the most frames the ring holds.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes of frame data the ring holds at most.
    pub const fn byte_capacity(&self) -> usize {
        B
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(N)
    }

    /// Bytes of the data area in use (frames waiting, with their
    /// alignment and any skipped tail).
    pub fn bytes_used(&self) -> usize {
        let freed = self.freed.load(Ordering::Acquire);
        let filled = self.filled.load(Ordering::Acquire);
        filled.wrapping_sub(freed).min(B)
    }

    /// True if no frame is waiting (the run loop's fast-path check).
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) == self.tail.load(Ordering::Acquire)
    }

    /// True if the ring holds `N` frames.
    pub fn is_full(&self) -> bool {
        self.len() >= N
    }

    /// Where a frame of `len` bytes would start if stored after `filled`,
    /// and whether it fits while the consumer has freed up to `freed`.
    fn place(filled: usize, freed: usize, len: usize) -> Option<usize> {
        let aligned = filled.next_multiple_of(FRAME_ALIGN);
        let offset = aligned % B;
        let start = if offset + len > B {
            aligned + (B - offset) // wrap to the start of the area
        } else {
            aligned
        };
        (start + len - freed <= B).then_some(start)
    }

    /// Producer side: reserves room for a frame of `len` bytes (at most
    /// [`MAX_GSO_FRAME_SIZE`], and at most the ring's bytes less 64), or
    /// says why not. Backs off with
    /// [`StoreError::Busy`] if another producer holds the ring.
    pub fn reserve(&self, len: usize) -> Result<Reservation<'_, N, B>, StoreError> {
        Self::check(len)?;
        let guard = SideGuard::try_take(&self.producing).ok_or(StoreError::Busy)?;
        self.reserve_with(guard, len)
    }

    /// [`NetRxRing::reserve`], waiting for another producer to finish
    /// instead of backing off (the producer flag is held only while one
    /// frame is copied in).
    pub fn reserve_wait(&self, len: usize) -> Result<Reservation<'_, N, B>, StoreError> {
        Self::check(len)?;
        self.reserve_with(SideGuard::wait_take(&self.producing), len)
    }

    fn check(len: usize) -> Result<(), StoreError> {
        if len == 0 || len > longest_frame(B) {
            return Err(StoreError::BadLength(len));
        }
        Ok(())
    }

    fn reserve_with<'r>(
        &'r self,
        guard: SideGuard<'r>,
        len: usize,
    ) -> Result<Reservation<'r, N, B>, StoreError> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= N {
            return Err(StoreError::Full);
        }
        let filled = self.filled.load(Ordering::Relaxed);
        let freed = self.freed.load(Ordering::Acquire);
        let start = Self::place(filled, freed, len).ok_or(StoreError::Full)?;
        Ok(Reservation {
            ring: self,
            _producer: guard,
            tail,
            start,
            len,
        })
    }

    /// Producer side: copies `frame` into the ring, or says why not.
    pub fn try_store(&self, frame: &[u8]) -> Result<(), StoreError> {
        self.try_store_meta(frame, FrameMeta::Plain)
    }

    /// Producer side: copies `frame` and its `meta` into the ring, or says
    /// why not (metadata that does not fit the frame is refused, so every
    /// queued frame's metadata is consistent with it; a frame longer than
    /// [`MAX_FRAME_SIZE`] is accepted only as a [`FrameMeta::Gso`] frame).
    pub fn try_store_meta(&self, frame: &[u8], meta: FrameMeta) -> Result<(), StoreError> {
        check_len(frame.len(), meta)?;
        let mut place = self.reserve(frame.len())?;
        place.buf().copy_from_slice(frame);
        place.commit(meta)
    }

    /// Producer side: copies `frame` into the ring; false if the ring is
    /// full, the frame is empty or longer than [`MAX_FRAME_SIZE`] (or
    /// another producer is busy; see [`NetRxRing::try_store`]).
    pub fn store(&self, frame: &[u8]) -> bool {
        self.try_store(frame).is_ok()
    }

    /// Consumer side: lends the oldest frame to `f` in place; removes it if
    /// `f` returns true, leaves it at the front otherwise.
    ///
    /// Returns `None` (without calling `f`) if the ring is empty or another
    /// consumer is busy, else `Some(what f returned)`.
    pub fn peek_with(&self, f: impl FnOnce(&[u8]) -> bool) -> Option<bool> {
        self.peek_meta_with(|frame, _| f(frame))
    }

    /// [`NetRxRing::peek_with`], lending the frame's [`FrameMeta`] too
    /// (it always fits the frame).
    pub fn peek_meta_with(&self, f: impl FnOnce(&[u8], FrameMeta) -> bool) -> Option<bool> {
        let _consumer = SideGuard::try_take(&self.consuming)?;
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let cell = self.slots.get(head % N)?;
        // SAFETY: we are the only consumer (we hold `consuming`).
        // Slot `head % N` is inside `head..tail`: published by the producer's
        // Release store of `tail` (observed above with Acquire); the producer
        // does not write it again until `head` moves past it, which only we
        // do, after `f` has returned and the borrow ended.
        let slot = unsafe { *cell.get() };
        let base = self.data.get().cast::<u8>();
        let offset = slot.start % B;
        let len = (slot.len as usize).min(B - offset);
        // SAFETY: the frame's bytes `offset..offset + len` lie inside the
        // area (clamped above; `reserve` placed them so) and were written
        // before the producer's Release store of `tail` observed above; the
        // producer does not write them again until `freed` passes them,
        // which only we do below, after the borrow ended.
        let frame = unsafe { core::slice::from_raw_parts(base.add(offset), len) };
        let consume = f(frame, slot.meta);
        if consume {
            self.freed
                .store(slot.start + slot.len as usize, Ordering::Release);
            self.head.store(head.wrapping_add(1), Ordering::Release);
        }
        Some(consume)
    }

    /// Consumer side: copies the oldest frame into `buf` and removes it;
    /// returns its length. `None` if the ring is empty, or if `buf` is
    /// shorter than the frame (which then stays queued: frames are never
    /// truncated).
    pub fn take(&self, buf: &mut [u8]) -> Option<usize> {
        let mut len = None;
        self.peek_with(|frame| match buf.get_mut(..frame.len()) {
            Some(dst) => {
                dst.copy_from_slice(frame);
                len = Some(frame.len());
                true
            }
            None => false,
        })?;
        len
    }

    /// Consumer side: removes the oldest frame without reading it; true if
    /// there was one.
    pub fn discard_front(&self) -> bool {
        self.peek_with(|_| true).unwrap_or(false)
    }

    /// Consumer side: removes every waiting frame (at most `N`: a producer
    /// storing concurrently cannot keep this looping); returns how many.
    pub fn clear(&self) -> usize {
        (0..N).take_while(|_| self.discard_front()).count()
    }
}

impl<const N: usize, const B: usize> core::fmt::Debug for NetRxRing<N, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetRxRing")
            .field("capacity", &N)
            .field("len", &self.len())
            .field("bytes", &B)
            .field("bytes_used", &self.bytes_used())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_capacity_and_order() {
        let ring: NetRxRing<4> = NetRxRing::new();
        for i in 1..=4u8 {
            assert!(ring.store(&[i; 20]));
        }
        assert!(ring.is_full());
        assert_eq!(ring.try_store(&[9; 20]), Err(StoreError::Full));
        let mut buf = [0u8; MAX_FRAME_SIZE];
        for i in 1..=4u8 {
            assert_eq!(ring.take(&mut buf), Some(20));
            assert_eq!(buf[0], i);
        }
        assert!(ring.is_empty());
        assert_eq!(ring.take(&mut buf), None);
    }

    #[test]
    fn lengths_are_checked() {
        let ring: NetRxRing<2> = NetRxRing::new();
        assert_eq!(ring.try_store(&[]), Err(StoreError::BadLength(0)));
        assert_eq!(
            ring.try_store(&[0; MAX_FRAME_SIZE + 1]),
            Err(StoreError::BadLength(MAX_FRAME_SIZE + 1))
        );
        assert!(ring.store(&[7; MAX_FRAME_SIZE]));
        let mut small = [0u8; 100];
        assert_eq!(ring.take(&mut small), None, "never truncated");
        assert_eq!(ring.len(), 1, "the frame stays queued");
        let mut big = [0u8; MAX_FRAME_SIZE];
        assert_eq!(ring.take(&mut big), Some(MAX_FRAME_SIZE));
        assert_eq!(big, [7; MAX_FRAME_SIZE]);
    }

    #[test]
    fn metadata_travels_with_its_frame_and_must_fit_it() {
        let ring: NetRxRing<2> = NetRxRing::new();
        let partial = FrameMeta::PartialChecksum {
            start: 34,
            offset: 16,
        };
        assert_eq!(
            ring.try_store_meta(&[1; 51], partial),
            Err(StoreError::BadMeta)
        );
        assert!(ring.try_store_meta(&[1; 52], partial).is_ok());
        assert!(ring.store(&[2; 52]));
        assert_eq!(
            ring.peek_meta_with(|f, m| f[0] == 1 && m == partial),
            Some(true)
        );
        assert_eq!(
            ring.peek_meta_with(|f, m| f[0] == 2 && m == FrameMeta::Plain),
            Some(true)
        );
        assert!(
            !FrameMeta::PartialChecksum {
                start: 52,
                offset: 0
            }
            .fits(52)
        );
        assert!(
            FrameMeta::PartialChecksum {
                start: 50,
                offset: 0
            }
            .fits(52)
        );
    }

    #[test]
    fn peek_keeps_until_committed() {
        let ring: NetRxRing<2> = NetRxRing::new();
        assert_eq!(ring.peek_with(|_| true), None);
        assert!(ring.store(b"first frame."));
        assert!(ring.store(b"second frame"));
        assert_eq!(ring.peek_with(|f| f != b"first frame."), Some(false));
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.peek_with(|f| f == b"first frame."), Some(true));
        assert_eq!(ring.peek_with(|f| f == b"second frame"), Some(true));
        assert!(ring.is_empty());
    }

    #[test]
    fn a_second_side_backs_off() {
        let ring: NetRxRing<2> = NetRxRing::new();
        assert!(ring.store(b"x"));
        let nested = ring.peek_with(|_| {
            // A second consumer while the first holds the front frame.
            assert_eq!(ring.peek_with(|_| true), None);
            assert!(!ring.discard_front());
            // The producer side is independent.
            assert!(ring.store(b"y"));
            false
        });
        assert_eq!(nested, Some(false));
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.clear(), 2);
    }

    #[test]
    fn wraps_many_times() {
        let ring: NetRxRing<3> = NetRxRing::new();
        let mut buf = [0u8; 64];
        for i in 0..if cfg!(miri) { 50u32 } else { 1000 } {
            assert!(ring.store(&i.to_le_bytes()));
            assert_eq!(ring.take(&mut buf), Some(4));
            assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), i);
        }
    }

    #[test]
    fn two_threads_move_every_frame_intact() {
        let ring: &'static NetRxRing<8> = Box::leak(Box::new(NetRxRing::new()));
        // Under Miri (every step interpreted) a few dozen frames still wrap
        // the 8-slot ring several times.
        const FRAMES: u32 = if cfg!(miri) { 40 } else { 20_000 };
        let producer = std::thread::spawn(move || {
            for i in 0..FRAMES {
                let len = 14 + (i as usize * 7) % (MAX_FRAME_SIZE - 14);
                let mut frame = vec![(i % 251) as u8; len];
                frame[..4].copy_from_slice(&i.to_le_bytes());
                while !ring.store(&frame) {
                    std::thread::yield_now();
                }
            }
        });
        let mut buf = [0u8; MAX_FRAME_SIZE];
        let mut next = 0u32;
        while next < FRAMES {
            match ring.take(&mut buf) {
                Some(n) => {
                    assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), next);
                    assert_eq!(n, 14 + (next as usize * 7) % (MAX_FRAME_SIZE - 14));
                    assert!(buf[4..n].iter().all(|&b| b == (next % 251) as u8));
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(ring.is_empty());
    }
}
