//! The virtio-net chain typestates (see the [parent module](super)):
//! TX chains ([`TxChain`]: header, then frame, then completion), RX chains
//! ([`RxChain`]: header, then frame, then completion) and the merged
//! receive of `MRG_RXBUF` ([`LiveQueue::receive_merged`]).

use core::fmt;
use core::marker::PhantomData;

use super::offload::{Deliverable, HeaderError};
use super::{NET_HDR_LEN, NetHdr};
use crate::virtio::chain::{Chain, LiveQueue, QueueRole, SpreadError, sealed};
use crate::virtio::error::BufferError;

// ── TX typestate ──────────────────────────────────────────────────────

/// TX state: nothing read yet.
#[derive(Debug)]
pub struct HeaderPending;
/// TX state: the header was read; the frame follows.
#[derive(Debug)]
pub struct FrameReady;
/// TX state: the frame was read; only completion remains.
#[derive(Debug)]
pub struct FrameRead;

/// Why a TX chain was refused. The chain has been completed (used length
/// 0) by the time this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// The chain has device-writable buffers: not a TX packet.
    WritableBuffers {
        /// Bytes of writable buffers.
        writable: u32,
    },
    /// The readable part is shorter than the header.
    ShortHeader {
        /// Bytes of the readable part.
        readable: u32,
    },
    /// The frame is longer than the buffer it must fit in.
    TooLong {
        /// Frame length (readable part minus the header).
        len: u32,
    },
    /// Guest memory refused a copy (impossible for a validated chain).
    Memory(BufferError),
    /// The header is invalid for the frame (see [`TxHeader::validate`](super::TxHeader::validate)).
    BadHeader(HeaderError),
    /// The guest changed the frame while it was being forwarded (its
    /// addresses differ from those the switch routed by, or it got
    /// shorter).
    Changed,
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TxError::WritableBuffers { writable } => {
                write!(f, "TX chain has {writable} device-writable bytes")
            }
            TxError::ShortHeader { readable } => {
                write!(f, "TX chain of {readable} bytes has no whole header")
            }
            TxError::TooLong { len } => write!(f, "TX frame of {len} bytes is too long"),
            TxError::Memory(e) => write!(f, "TX copy failed: {e}"),
            TxError::BadHeader(e) => write!(f, "TX header refused: {e}"),
            TxError::Changed => write!(f, "TX frame changed while it was forwarded"),
        }
    }
}

/// The role of the TX queue: every chain it yields is a
/// [`TxChain`]`<`[`HeaderPending`]`>`.
#[derive(Debug)]
pub enum Transmit {}

impl sealed::Enter for Transmit {
    fn enter(chain: Chain<'_>) -> TxChain<'_, HeaderPending> {
        TxChain {
            chain,
            state: PhantomData,
        }
    }
}

impl QueueRole for Transmit {
    type Entry<'c> = TxChain<'c, HeaderPending>;
}

/// A TX chain in state `S`: [`HeaderPending`] → [`FrameReady`] →
/// [`FrameRead`] → completed. A refusal at any step completes the chain
/// (used length 0); so does dropping it.
#[must_use = "a TX chain must be read to the end and completed, or discarded"]
#[derive(Debug)]
pub struct TxChain<'c, S> {
    chain: Chain<'c>,
    state: PhantomData<S>,
}

impl<'c, S> TxChain<'c, S> {
    fn into_state<T>(self) -> TxChain<'c, T> {
        TxChain {
            chain: self.chain,
            state: PhantomData,
        }
    }

    /// Returns the chain to the driver now (used length 0: a TX chain is
    /// never written).
    pub fn discard(self) -> u32 {
        self.chain.discard()
    }

    fn refuse(self, error: TxError) -> TxError {
        self.discard();
        error
    }
}

impl<'c> TxChain<'c, HeaderPending> {
    /// Bytes of the readable part: header plus frame.
    pub fn packet_len(&self) -> u32 {
        self.chain.readable_len()
    }

    /// Reads the header (whole, or nothing). Refuses a chain with
    /// device-writable buffers (not a TX packet) or without a whole header.
    ///
    /// The header is returned so that a later offload path can pick the
    /// next state from it (`flags`, `gso_type`); without offloads every
    /// frame continues as a plain frame ([`FrameReady`]).
    pub fn read_header(mut self) -> Result<(NetHdr, TxChain<'c, FrameReady>), TxError> {
        let writable = self.chain.writable_len();
        if writable != 0 {
            return Err(self.refuse(TxError::WritableBuffers { writable }));
        }
        match self.chain.reader().read_obj::<NetHdr>() {
            Ok(hdr) => Ok((hdr, self.into_state())),
            Err(BufferError::TooShort { remaining, .. }) => {
                Err(self.refuse(TxError::ShortHeader {
                    readable: remaining,
                }))
            }
            Err(e) => Err(self.refuse(TxError::Memory(e))),
        }
    }
}

impl<'c> TxChain<'c, FrameReady> {
    /// Copies the frame's first `buf.len()` bytes (fewer if it is shorter)
    /// into `buf` without consuming them; returns how many.
    pub fn peek_frame(&mut self, buf: &mut [u8]) -> Result<usize, TxError> {
        self.chain.reader().peek_into(buf).map_err(TxError::Memory)
    }

    /// Gives the packet back to the guest's available ring untouched (not
    /// completed): the next pop of the TX queue returns it again. For a
    /// frame that has to wait for room at its destination.
    pub fn put_back(self) {
        self.chain.put_back();
    }

    /// Length of the frame: the readable bytes after the header.
    pub fn frame_len(&mut self) -> u32 {
        self.chain.reader().remaining()
    }

    /// Copies the whole frame into the front of `buf`; returns its length.
    /// A frame longer than `buf` is refused, not truncated.
    pub fn read_frame(
        mut self,
        buf: &mut [u8],
    ) -> Result<(usize, TxChain<'c, FrameRead>), TxError> {
        let len = self.frame_len();
        let Some(dst) = buf.get_mut(..len as usize) else {
            return Err(self.refuse(TxError::TooLong { len }));
        };
        match self.chain.reader().read_exact(dst) {
            Ok(()) => Ok((len as usize, self.into_state())),
            Err(e) => Err(self.refuse(TxError::Memory(e))),
        }
    }
}

impl TxChain<'_, FrameRead> {
    /// Returns the chain to the driver (used length 0).
    pub fn complete(self) -> u32 {
        self.chain.complete()
    }
}

// ── RX typestate ──────────────────────────────────────────────────────

/// RX state: nothing written.
#[derive(Debug)]
pub struct Empty;
/// RX state: the header was written; `frame` (checked to fit) follows.
#[derive(Debug)]
pub struct HeaderWritten<'f> {
    frame: &'f [u8],
}
/// RX state: header and frame written; ready to complete.
#[derive(Debug)]
pub struct FrameWritten;

/// Why a frame was not written into an RX chain. The chain has been
/// completed by the time this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxError {
    /// The writable part is smaller than header + frame: nothing was
    /// written (used length 0).
    NoRoom {
        /// Bytes needed (12 + frame length).
        needed: usize,
        /// Bytes of the writable part.
        capacity: u32,
    },
    /// Guest memory refused a copy (impossible for a validated chain); the
    /// buffer was returned with used length 0.
    Memory(BufferError),
}

impl fmt::Display for RxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RxError::NoRoom { needed, capacity } => {
                write!(f, "RX buffer of {capacity} bytes, {needed} needed")
            }
            RxError::Memory(e) => write!(f, "RX copy failed: {e}"),
        }
    }
}

/// The role of the RX queue: every chain it yields is an
/// [`RxChain`]`<`[`Empty`]`>`.
#[derive(Debug)]
pub enum Receive {}

impl sealed::Enter for Receive {
    fn enter(chain: Chain<'_>) -> RxChain<'_, Empty> {
        RxChain {
            chain,
            state: Empty,
        }
    }
}

impl QueueRole for Receive {
    type Entry<'c> = RxChain<'c, Empty>;
}

/// An RX chain in state `S`: [`Empty`] → [`HeaderWritten`] →
/// [`FrameWritten`] → completed. A refusal at any step, or dropping the
/// chain before [`FrameWritten`], returns it with used length 0: the
/// driver never sees a half-filled buffer.
#[must_use = "an RX chain must be filled and completed, or discarded"]
#[derive(Debug)]
pub struct RxChain<'c, S> {
    chain: Chain<'c>,
    state: S,
}

impl<'c> RxChain<'c, Empty> {
    /// Bytes of the writable part.
    pub fn capacity(&self) -> u32 {
        self.chain.writable_len()
    }

    /// Returns the buffer unused (used length 0).
    pub fn discard(self) -> u32 {
        self.chain.discard()
    }

    /// Writes `hdr`, reserving room for `frame` right after it: if header
    /// and frame do not both fit, nothing is written and the buffer is
    /// returned with used length 0.
    pub fn write_header<'f>(
        mut self,
        hdr: &NetHdr,
        frame: &'f [u8],
    ) -> Result<RxChain<'c, HeaderWritten<'f>>, RxError> {
        let needed = NET_HDR_LEN.saturating_add(frame.len());
        let capacity = self.capacity();
        if needed > capacity as usize {
            self.discard();
            return Err(RxError::NoRoom { needed, capacity });
        }
        match self.chain.writer().write_obj(hdr) {
            Ok(()) => Ok(RxChain {
                chain: self.chain,
                state: HeaderWritten { frame },
            }),
            Err(e) => {
                self.chain.discard();
                Err(RxError::Memory(e))
            }
        }
    }
}

impl<'c> RxChain<'c, HeaderWritten<'_>> {
    /// Writes the frame reserved by [`RxChain::write_header`].
    pub fn write_frame(mut self) -> Result<RxChain<'c, FrameWritten>, RxError> {
        match self.chain.writer().write_all(self.state.frame) {
            Ok(()) => Ok(RxChain {
                chain: self.chain,
                state: FrameWritten,
            }),
            Err(e) => {
                self.chain.discard();
                Err(RxError::Memory(e))
            }
        }
    }
}

impl RxChain<'_, FrameWritten> {
    /// Returns the buffer to the driver; the used length is header + frame.
    pub fn complete(self) -> u32 {
        self.chain.complete()
    }
}

// ── RX with MRG_RXBUF ─────────────────────────────────────────────────

impl LiveQueue<'_, Receive> {
    /// Delivers `packet` with `MRG_RXBUF`: its header (with
    /// `num_buffers` set) and frame fill as many available chains as they need, in order,
    /// each to its writable capacity; `num_buffers` is that number of
    /// chains, each chain's used length is the bytes written into it, and
    /// all of them reach the used ring together (the driver never sees
    /// part of a frame). Returns the number of chains.
    ///
    /// Ordering needs no typestate here: the virtio core writes the header
    /// last, once the count is known, and publishes only after everything
    /// was written. The errors are those of a spread: with
    /// [`SpreadError::Waiting`] nothing was taken and the frame must wait;
    /// any other error returned the chains taken with used length 0 and
    /// the frame is to be dropped.
    pub fn receive_merged(&mut self, packet: &Deliverable<'_>) -> Result<u16, SpreadError> {
        self.spread(packet.frame(), |n| packet.header(n))
    }
}
