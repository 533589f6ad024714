//! Descriptor chains: the walk that validates them, the Readable/Writable
//! split that a backend works with, and completion.
//!
//! # The walk
//! [`walk`] follows a chain from its head through the descriptor table and
//! checks every rule before the device touches a single buffer:
//!
//! | rule | error |
//! |---|---|
//! | head and every `next` index < queue size | [`ChainError::IndexOutOfRange`] |
//! | at most min(queue size, [`MAX_CHAIN_DESCRIPTORS`]) descriptors (so a loop ends) | [`ChainError::TooLong`] |
//! | no `VIRTQ_DESC_F_INDIRECT` (the feature is never offered) | [`ChainError::Indirect`] |
//! | no undefined flag bits | [`ChainError::UnknownFlags`] |
//! | no zero-length buffer | [`ChainError::ZeroLength`] |
//! | each buffer entirely inside guest RAM, no address overflow | [`ChainError::BufferOutOfRange`] |
//! | every device-readable buffer before any device-writable one | [`ChainError::ReadableAfterWritable`] |
//! | total length fits in a `u32` | [`ChainError::LengthOverflow`] |
//!
//! Each descriptor is read from guest memory exactly once, into a
//! hypervisor-owned copy; the checked copy is what the device uses, so the
//! guest rewriting a descriptor after the walk changes nothing (no
//! double-fetch).
//!
//! **Zero-length descriptors** are refused. The spec does not give them a
//! meaning, Linux never produces them, and QEMU treats them as a fatal
//! driver error; refusing them also guarantees that every buffer a
//! [`Reader`] or [`Writer`] steps through makes progress.
//!
//! **Loops** are not detected separately: a loop is a chain longer than the
//! queue, so it ends with [`ChainError::TooLong`] after at most
//! queue-size descriptor reads.
//!
//! # Readable and writable parts
//! A valid chain is a device-readable part followed by a device-writable
//! part. A [`Chain`] hands them out as two different types: a [`Reader`]
//! can only copy *out of* the readable part, a [`Writer`] can only copy
//! *into* the writable part. There is no way to write to a buffer the
//! driver marked read-only or to read back what the driver gave for
//! writing. Both are sequential cursors that copy whole slices through
//! [`GuestMemory`] (never byte by byte), and both refuse a fixed-size
//! request that does not fit *before* copying anything, so a header is
//! never half-read and a too-small buffer is never half-filled.
//!
//! # Completion
//! A chain reaches the used ring exactly once. [`Chain::complete`] consumes
//! the chain and publishes it with the number of bytes written through its
//! [`Writer`] (the used `len` is a fact the chain knows, not a parameter a
//! backend could get wrong); only a typestate's final state calls it. A
//! refusal calls [`Chain::discard`] (used length 0). A chain dropped before
//! either is returned by its destructor with used length 0 — never the
//! partial length written so far — and counted in
//! [`QueueStats::completed_on_drop`], so an early return neither leaks the
//! driver's descriptors nor shows it a half-filled buffer.
//!
//! # Roles
//! This module is private to `virtio`: devices never see a [`Chain`] or a
//! guest address. A [`LiveQueue`] is borrowed in a [`QueueRole`], and
//! [`LiveQueue::pop`] wraps each chain in that role's first typestate.

use core::fmt;
use core::marker::PhantomData;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::error::{BufferError, ChainError, QueueFault};
use super::queue::{QueueLayout, Virtqueue};
use super::ring::{DESC_F_INDIRECT, DESC_F_KNOWN, DESC_F_NEXT, DESC_F_WRITE, Descriptor};
use super::stats::{QueueStats, bump};
use crate::guest_memory::{GuestMemory, GuestRange, MemError};

mod spread;

pub use spread::{MAX_SPREAD_CHAINS, SpreadError};

/// Most descriptors the device accepts in one chain.
///
/// The spec lets a device set "a reasonable limit" (2.7.4.1). Linux uses at
/// most `MAX_SKB_FRAGS + 2` (19) for a virtio-net packet and `seg_max + 2`
/// for a virtio-blk request (the block device advertises
/// `seg_max = MAX_CHAIN_DESCRIPTORS - 2`). The limit keeps a chain a
/// fixed-size value (no allocation).
pub const MAX_CHAIN_DESCRIPTORS: usize = 64;

/// One checked buffer of a chain: a guest-physical range inside RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    gpa: u64,
    len: u32,
}

impl Segment {
    #[cfg(test)]
    /// Guest-physical address of the first byte.
    pub const fn gpa(&self) -> u64 {
        self.gpa
    }

    #[cfg(test)]
    /// Length in bytes (never 0).
    pub const fn len(&self) -> u32 {
        self.len
    }

    #[cfg(test)]
    /// Always false: zero-length buffers are refused by the walk.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl From<GuestRange> for Segment {
    fn from(range: GuestRange) -> Self {
        Segment {
            gpa: range.gpa(),
            len: range.len(),
        }
    }
}

/// The checked buffers of one chain: readable segments, then writable ones.
#[derive(Clone, Debug)]
pub struct ChainBuffers {
    segments: [Segment; MAX_CHAIN_DESCRIPTORS],
    count: usize,
    readable: usize,
    readable_bytes: u32,
    writable_bytes: u32,
}

impl ChainBuffers {
    fn empty() -> Self {
        ChainBuffers {
            segments: [Segment::default(); MAX_CHAIN_DESCRIPTORS],
            count: 0,
            readable: 0,
            readable_bytes: 0,
            writable_bytes: 0,
        }
    }

    /// The device-readable segments, in chain order.
    pub fn readable(&self) -> &[Segment] {
        self.segments.get(..self.readable).unwrap_or(&[])
    }

    /// The device-writable segments, in chain order.
    pub fn writable(&self) -> &[Segment] {
        self.segments.get(self.readable..self.count).unwrap_or(&[])
    }

    #[cfg(test)]
    /// Number of descriptors in the chain.
    pub fn descriptor_count(&self) -> usize {
        self.count
    }

    #[cfg(test)]
    /// Total bytes of the readable part.
    pub fn readable_len(&self) -> u32 {
        self.readable_bytes
    }

    #[cfg(test)]
    /// Total bytes of the writable part.
    pub fn writable_len(&self) -> u32 {
        self.writable_bytes
    }
}

/// Walks and validates the chain starting at `head` (see the module docs
/// for the rules). Reads each descriptor once; never reads more than
/// min(queue size, [`MAX_CHAIN_DESCRIPTORS`]) of them.
pub fn walk(
    mem: &GuestMemory,
    layout: &QueueLayout,
    head: u16,
) -> Result<ChainBuffers, ChainError> {
    let size = layout.size();
    let limit = usize::from(size).min(MAX_CHAIN_DESCRIPTORS);
    let mut buffers = ChainBuffers::empty();
    let mut total: u32 = 0;
    let mut index = head;
    loop {
        let Some(desc_gpa) = layout.descriptor_gpa(index) else {
            return Err(ChainError::IndexOutOfRange { index, size });
        };
        if buffers.count >= limit {
            return Err(ChainError::TooLong { limit });
        }
        let desc: Descriptor = mem
            .read_obj(desc_gpa)
            .map_err(|_| ChainError::DescriptorUnreadable { index })?;
        let flags = desc.flags.get();
        let len = desc.len.get();
        let addr = desc.addr.get();
        if flags & DESC_F_INDIRECT != 0 {
            return Err(ChainError::Indirect { index });
        }
        if flags & !DESC_F_KNOWN != 0 {
            return Err(ChainError::UnknownFlags { index, flags });
        }
        if len == 0 {
            return Err(ChainError::ZeroLength { index });
        }
        let range = mem
            .check(addr, u64::from(len))
            .map_err(|_| ChainError::BufferOutOfRange { index, addr, len })?;
        let writable = flags & DESC_F_WRITE != 0;
        if !writable && buffers.writable_bytes > 0 {
            return Err(ChainError::ReadableAfterWritable { index });
        }
        total = total
            .checked_add(len)
            .ok_or(ChainError::LengthOverflow { index })?;
        // `count < limit <= MAX_CHAIN_DESCRIPTORS`, so the slot exists.
        let Some(slot) = buffers.segments.get_mut(buffers.count) else {
            return Err(ChainError::TooLong { limit });
        };
        *slot = Segment::from(range);
        buffers.count += 1;
        if writable {
            buffers.writable_bytes += len; // <= total, cannot overflow
        } else {
            buffers.readable += 1;
            buffers.readable_bytes += len;
        }
        if flags & DESC_F_NEXT == 0 {
            return Ok(buffers);
        }
        index = desc.next.get();
    }
}

/// Position of a cursor inside a list of segments.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    /// Index of the current segment.
    seg: usize,
    /// Offset inside the current segment.
    offset: u32,
    /// Bytes stepped over so far (read, written, skipped).
    done: u32,
}

impl Cursor {
    /// Steps over up to `want` bytes, calling `copy(gpa, at, n)` for each
    /// contiguous piece, where `at` is the offset into the caller's slice.
    /// Returns the number of bytes stepped over. Each iteration moves to
    /// the next segment or copies at least one byte, so the loop is bounded
    /// by `segments.len() + want`.
    fn step(
        &mut self,
        segments: &[Segment],
        want: usize,
        mut copy: impl FnMut(u64, usize, usize) -> Result<(), MemError>,
    ) -> Result<usize, MemError> {
        let mut moved = 0usize;
        while moved < want {
            let Some(seg) = segments.get(self.seg) else {
                break;
            };
            let left = seg.len.saturating_sub(self.offset);
            if left == 0 {
                self.seg += 1;
                self.offset = 0;
                continue;
            }
            let n = (left as usize).min(want - moved);
            copy(seg.gpa + u64::from(self.offset), moved, n)?;
            moved += n;
            // `n <= left <= u32::MAX` and `done + n <= total length <= u32::MAX`.
            self.offset += n as u32;
            self.done += n as u32;
        }
        Ok(moved)
    }
}

/// Read-only cursor over a chain's device-readable part.
///
/// There is deliberately no way to write through a `Reader`.
pub struct Reader<'c> {
    mem: &'c GuestMemory,
    segments: &'c [Segment],
    total: u32,
    cursor: &'c mut Cursor,
}

impl Reader<'_> {
    /// Total bytes of the readable part.
    pub fn len(&self) -> u32 {
        self.total
    }

    /// True if the chain has no readable part.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes not yet read (or skipped).
    pub fn remaining(&self) -> u32 {
        self.total.saturating_sub(self.cursor.done)
    }

    /// Bytes read (or skipped) so far.
    pub fn consumed(&self) -> u32 {
        self.cursor.done
    }

    /// Copies up to `buf.len()` bytes into `buf`; returns how many (fewer
    /// only when the readable part ends).
    pub fn read_into(&mut self, buf: &mut [u8]) -> Result<usize, BufferError> {
        let mem = self.mem;
        let n = self.cursor.step(self.segments, buf.len(), |gpa, at, n| {
            // `step` guarantees `at + n <= buf.len()`.
            mem.read(gpa, &mut buf[at..at + n])
        })?;
        Ok(n)
    }

    /// Copies up to `buf.len()` bytes into `buf` without moving the
    /// cursor (the next read starts at the same place); returns how many.
    pub fn peek_into(&mut self, buf: &mut [u8]) -> Result<usize, BufferError> {
        let saved = *self.cursor;
        let read = self.read_into(buf);
        *self.cursor = saved;
        read
    }

    /// Fills all of `buf`, or reads nothing and returns
    /// [`BufferError::TooShort`].
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BufferError> {
        self.ensure(buf.len())?;
        self.read_into(buf).map(|_| ())
    }

    /// Reads a plain-old-data object (a request header, say), or reads
    /// nothing and returns [`BufferError::TooShort`].
    pub fn read_obj<T: FromBytes + IntoBytes>(&mut self) -> Result<T, BufferError> {
        let mut value = T::new_zeroed();
        self.read_exact(value.as_mut_bytes())?;
        Ok(value)
    }

    /// Steps over `n` bytes without reading them, or over nothing and
    /// returns [`BufferError::TooShort`].
    pub fn skip(&mut self, n: u32) -> Result<(), BufferError> {
        self.ensure(n as usize)?;
        self.cursor
            .step(self.segments, n as usize, |_, _, _| Ok(()))?;
        Ok(())
    }

    fn ensure(&self, wanted: usize) -> Result<(), BufferError> {
        ensure_room(wanted, self.remaining())
    }
}

/// `Ok` if `wanted` bytes fit in the `remaining` ones, else
/// [`BufferError::TooShort`] (nothing is copied then).
fn ensure_room(wanted: usize, remaining: u32) -> Result<(), BufferError> {
    if wanted > remaining as usize {
        return Err(BufferError::TooShort { wanted, remaining });
    }
    Ok(())
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("len", &self.total)
            .field("consumed", &self.cursor.done)
            .finish()
    }
}

/// Write-only cursor over a chain's device-writable part.
///
/// Writes are sequential from the first writable byte, so
/// [`Writer::written`] is exactly the prefix the device wrote: the value
/// the used ring's `len` must report (spec 2.7.8.2).
pub struct Writer<'c> {
    mem: &'c GuestMemory,
    segments: &'c [Segment],
    total: u32,
    cursor: &'c mut Cursor,
}

impl Writer<'_> {
    /// Total bytes of the writable part.
    pub fn capacity(&self) -> u32 {
        self.total
    }

    /// Bytes that can still be written.
    pub fn remaining(&self) -> u32 {
        self.total.saturating_sub(self.cursor.done)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u32 {
        self.cursor.done
    }

    /// Copies as much of `data` as fits; returns how many bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, BufferError> {
        let mem = self.mem;
        let n = self.cursor.step(self.segments, data.len(), |gpa, at, n| {
            // `step` guarantees `at + n <= data.len()`.
            mem.write(gpa, &data[at..at + n])
        })?;
        Ok(n)
    }

    /// Copies all of `data`, or nothing and returns
    /// [`BufferError::TooShort`] (a too-small buffer is never half-filled).
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), BufferError> {
        self.ensure(data.len())?;
        self.write(data).map(|_| ())
    }

    /// Writes a plain-old-data object (a header, a status byte), or nothing
    /// and returns [`BufferError::TooShort`].
    pub fn write_obj<T: IntoBytes + Immutable>(&mut self, value: &T) -> Result<(), BufferError> {
        self.write_all(value.as_bytes())
    }

    /// Writes `n` copies of `byte`, or nothing and returns
    /// [`BufferError::TooShort`].
    pub fn fill(&mut self, byte: u8, n: u32) -> Result<(), BufferError> {
        self.ensure(n as usize)?;
        let mem = self.mem;
        self.cursor.step(self.segments, n as usize, |gpa, _, n| {
            mem.fill(gpa, n as u64, byte)
        })?;
        Ok(())
    }

    fn ensure(&self, wanted: usize) -> Result<(), BufferError> {
        ensure_room(wanted, self.remaining())
    }
}

impl fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("capacity", &self.total)
            .field("written", &self.cursor.done)
            .finish()
    }
}

/// A validated descriptor chain taken from a live queue (private to the
/// virtio core).
///
/// Devices never see a `Chain`: a queue hands each one to the device's
/// typestate entry point ([`QueueRole::Entry`]), which decides in which
/// order the parts may be read and written and when the chain may be
/// completed. Cursor positions persist across calls, so a typestate can
/// read a header in one step and continue where it stopped in the next.
#[must_use = "a chain must be completed to return it to the driver"]
pub struct Chain<'c> {
    queue: &'c mut Virtqueue,
    stats: &'c mut QueueStats,
    mem: &'c GuestMemory,
    head: u16,
    buffers: ChainBuffers,
    read: Cursor,
    write: Cursor,
    completed: bool,
}

impl<'c> Chain<'c> {
    pub(crate) fn new(
        queue: &'c mut Virtqueue,
        stats: &'c mut QueueStats,
        mem: &'c GuestMemory,
        head: u16,
        buffers: ChainBuffers,
    ) -> Self {
        Chain {
            queue,
            stats,
            mem,
            head,
            buffers,
            read: Cursor::default(),
            write: Cursor::default(),
            completed: false,
        }
    }

    /// Index of the chain's first descriptor (what the used ring reports).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Total bytes of the readable part.
    pub fn readable_len(&self) -> u32 {
        self.buffers.readable_bytes
    }

    /// Total bytes of the writable part.
    pub fn writable_len(&self) -> u32 {
        self.buffers.writable_bytes
    }

    /// Bytes written through [`Chain::writer`] so far.
    pub fn written(&self) -> u32 {
        self.write.done
    }

    /// The readable part, continuing where the last reader stopped.
    pub fn reader(&mut self) -> Reader<'_> {
        self.split().0
    }

    /// The writable part, continuing where the last writer stopped.
    pub fn writer(&mut self) -> Writer<'_> {
        self.split().1
    }

    /// The writable part without its last `reserved` bytes (e.g. a
    /// virtio-blk status byte that must stay last).
    pub fn writer_reserving(&mut self, reserved: u32) -> Writer<'_> {
        let mut writer = self.writer();
        writer.total = writer.total.saturating_sub(reserved);
        writer
    }

    /// Both parts at once (e.g. read a request, write its reply).
    pub fn split(&mut self) -> (Reader<'_>, Writer<'_>) {
        let (readable, writable) = (self.buffers.readable(), self.buffers.writable());
        (
            Reader {
                mem: self.mem,
                segments: readable,
                total: self.buffers.readable_bytes,
                cursor: &mut self.read,
            },
            Writer {
                mem: self.mem,
                segments: writable,
                total: self.buffers.writable_bytes,
                cursor: &mut self.write,
            },
        )
    }

    /// Returns the chain to the driver through the used ring, reporting the
    /// bytes written through its [`Writer`]; returns that length. Only a
    /// typestate's final state calls this.
    ///
    /// Whether the driver gets an interrupt is decided by the transport
    /// once the current batch of work ends.
    pub fn complete(mut self) -> u32 {
        let len = self.write.done;
        self.publish(len)
    }

    /// Gives the chain back to the available ring untouched: it is not
    /// completed, and the next pop of this queue returns it again (the
    /// driver cannot tell it was looked at). Only the chain popped last can
    /// be put back, and this is the one: a chain borrows its queue until
    /// it is finished. Nothing may have been written into it.
    pub fn put_back(mut self) {
        self.completed = true;
        self.queue.rewind(1);
        bump(&mut self.stats.put_back);
    }

    /// Returns the chain with used length 0, whatever was written: a
    /// refused or abandoned request never reports partial work.
    pub fn discard(mut self) -> u32 {
        self.publish(0)
    }

    fn publish(&mut self, len: u32) -> u32 {
        self.completed = true;
        self.queue.push_used(self.mem, self.head, len);
        bump(&mut self.stats.chains_completed);
        len
    }
}

impl Drop for Chain<'_> {
    /// A chain dropped before its typestate finished is returned with used
    /// length 0 (never the partial length written so far) and counted in
    /// [`QueueStats::completed_on_drop`].
    fn drop(&mut self) {
        if !self.completed {
            bump(&mut self.stats.completed_on_drop);
            self.publish(0);
        }
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("head", &self.head)
            .field("descriptors", &self.buffers.count)
            .field("readable_len", &self.buffers.readable_bytes)
            .field("writable_len", &self.buffers.writable_bytes)
            .field("read", &self.read.done)
            .field("written", &self.write.done)
            .finish()
    }
}

pub(super) mod sealed {
    use super::{Chain, QueueRole};

    /// How a role turns a raw chain into its entry state. Only the virtio
    /// core implements it, so no code outside `virtio` sees a [`Chain`].
    pub trait Enter {
        /// Wraps `chain` in the role's first typestate.
        fn enter(chain: Chain<'_>) -> <Self as QueueRole>::Entry<'_>
        where
            Self: QueueRole;
    }
}

/// What a queue of a given device yields: the first state of that
/// device's typestate.
///
/// The roles are [`net::Transmit`](super::net::Transmit)
/// ([`TxChain`](super::net::TxChain)`<HeaderPending>`),
/// [`net::Receive`](super::net::Receive)
/// ([`RxChain`](super::net::RxChain)`<Empty>`) and
/// [`blk::Requests`](super::blk::Requests)
/// ([`BlkRequest`](super::blk::BlkRequest)`<HeaderPending>`). The trait is
/// sealed: a backend picks one of these, it cannot define a role that
/// hands out the raw chain.
pub trait QueueRole: sealed::Enter {
    /// The typestate every chain of this queue starts in.
    type Entry<'c>;
}

/// A live queue lent to a backend in role `R`: [`LiveQueue::pop`] yields
/// `R`'s entry state.
///
/// Obtained from [`LiveQueues::queue`](super::LiveQueues::queue), which
/// only exists while the device is Live.
pub struct LiveQueue<'a, R> {
    vq: &'a mut Virtqueue,
    stats: &'a mut QueueStats,
    mem: &'a GuestMemory,
    role: PhantomData<fn() -> R>,
}

impl<'a, R: QueueRole> LiveQueue<'a, R> {
    pub(crate) fn new(
        vq: &'a mut Virtqueue,
        stats: &'a mut QueueStats,
        mem: &'a GuestMemory,
    ) -> Self {
        LiveQueue {
            vq,
            stats,
            mem,
            role: PhantomData,
        }
    }

    /// Index of this queue (0-based, as in `QueueSel`).
    pub fn index(&self) -> u16 {
        self.vq.index()
    }

    /// Queue size the driver chose.
    pub fn size(&self) -> u16 {
        self.vq.layout().size()
    }

    /// True if the driver has made at least one chain available that the
    /// device has not taken yet. Cheap: one acquire load of `avail.idx`.
    pub fn has_available(&self) -> bool {
        self.vq.has_available(self.mem)
    }

    /// Why the queue stopped, if it did (it then never yields chains again
    /// until the driver resets the device).
    pub fn fault(&self) -> Option<QueueFault> {
        self.vq.fault()
    }

    /// Takes the next well-formed chain from the available ring, in the
    /// role's entry state.
    ///
    /// Malformed chains are not returned: each one is completed at once
    /// with length 0 (so the driver gets its descriptors back and the queue
    /// keeps moving) and counted in [`QueueStats::malformed`] by reason.
    ///
    /// At most one queue size of heads (good or malformed) is taken per
    /// batch of work, however often `pop` is called, so a driver refilling
    /// the ring from another CPU cannot keep the hypervisor in a
    /// `while let Some(chain) = queue.pop()` loop. Nothing is lost: the
    /// device never sets `VIRTQ_USED_F_NO_NOTIFY`, so without `EVENT_IDX`
    /// chains added after the budget ran out come with a notification of
    /// their own; with `EVENT_IDX` the transport runs further bounded
    /// rounds of a notify for them (see [`queue`](super::queue)); and the
    /// run loop can check [`LiveQueue::has_available`].
    ///
    /// The returned state borrows this queue: finish (complete or drop)
    /// it before taking the next one.
    pub fn pop(&mut self) -> Option<R::Entry<'_>> {
        self.pop_chain().map(R::enter)
    }

    fn pop_chain(&mut self) -> Option<Chain<'_>> {
        loop {
            let head = self.vq.next_head(self.mem, self.stats)?;
            match walk(self.mem, self.vq.layout(), head) {
                Ok(buffers) => {
                    return Some(Chain::new(self.vq, self.stats, self.mem, head, buffers));
                }
                Err(error) => {
                    self.stats.malformed.record(error);
                    self.vq.push_used(self.mem, head, 0);
                }
            }
        }
    }
}

impl<R> fmt::Debug for LiveQueue<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveQueue")
            .field("queue", &self.vq)
            .finish()
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod random_tests;

#[cfg(test)]
#[path = "chain_unit_tests.rs"]
mod tests;
