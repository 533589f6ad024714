//! Checksum offload (`VIRTIO_NET_F_CSUM`, `VIRTIO_NET_F_GUEST_CSUM`): the
//! validated TX header and the frame-kind typestate on both paths.
//!
//! # The header, validated before anything is forwarded
//! [`TxHeader::validate`] turns the raw [`NetHdr`] a driver wrote (every
//! field a zerocopy little-endian type) into a `TxHeader`, or refuses it
//! with a [`HeaderError`]; the frame is then dropped and counted
//! (`TxBadHeader`), never forwarded. The rules (virtio 1.2 §5.1.6.2):
//! - `flags`: 0, or `NEEDS_CSUM` and only if `CSUM` was negotiated;
//!   `DATA_VALID`, `RSC_INFO` and unknown bits are refused (a driver never
//!   sets them on transmit);
//! - `gso_type`: `GSO_NONE` only (no TSO is offered), and `gso_size` 0;
//! - with `NEEDS_CSUM`: `csum_start` inside the frame and the 2-byte
//!   checksum at `csum_start + csum_offset` inside it too;
//! - `hdr_len` is a hint without GSO and `num_buffers` is unused on
//!   transmit: both are ignored.
//!
//! # The frame kind is in the type
//! [`TxFrame::classify`] gives a [`TxFrame`]`<`[`Plain`]`>` or a
//! [`TxFrame`]`<`[`NeedsChecksum`]`>`. Only a plain frame has
//! [`TxFrame::bytes`], what [`VSwitch::forward_at`] takes; a
//! needs-checksum frame enters the switch only with its metadata
//! ([`TxFrame::partial`] → [`VSwitch::forward_meta_at`], queued as
//! [`FrameMeta::PartialChecksum`]) or once completed
//! ([`TxFrame::complete_checksum`]). Forwarding it as plain does not
//! compile (`tests/compile_fail/tx_forward_needs_checksum.rs`).
//!
//! On the receive side a queued frame is an [`RxFrame`] of either kind
//! ([`RxFrame::classify`]), and what goes into the guest is a
//! [`Deliverable`] (header + frame). A plain frame has
//! [`RxFrame::deliverable`]; a needs-checksum frame only
//! [`RxFrame::deliverable_to`], which takes a [`GuestCsum`] (made only
//! from negotiated features that contain `GUEST_CSUM`) and keeps
//! `NEEDS_CSUM`, `csum_start` and `csum_offset` in the header for the
//! driver, or [`RxFrame::complete_into`], which completes the checksum in
//! a copy for a driver without it. So each port gets a partial frame only
//! in a form it negotiated; handing one over without the proof does not
//! compile (`tests/compile_fail/rx_partial_without_guest_csum.rs`). A
//! flooded frame is queued once per port and takes each port's form.
//! The switch's capture records partial frames as they were sent (their
//! checksum fields hold the pseudo-header sum).

use core::fmt;
use core::marker::PhantomData;

use zerocopy::little_endian::U16;

use super::{NetHdr, feature};
#[cfg(doc)]
use crate::net::VSwitch;
use crate::net::{FrameMeta, MAX_FRAME_SIZE};
use crate::virtio::Features;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the
/// end of the frame is to be completed and stored at
/// `csum_start + csum_offset`.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID` (receive only).
pub const HDR_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;

/// Why a TX header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// `flags` has bits other than `NEEDS_CSUM`.
    Flags(u8),
    /// `NEEDS_CSUM` without `VIRTIO_NET_F_CSUM` negotiated.
    ChecksumNotNegotiated,
    /// `gso_type` is not `GSO_NONE` (no segmentation offload is offered).
    GsoType(u8),
    /// `gso_size` is not 0 without GSO.
    GsoSize(u16),
    /// The checksum start or its 2-byte field lies outside the frame.
    ChecksumOutside {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderError::Flags(v) => write!(f, "header flags {v:#x} refused"),
            HeaderError::ChecksumNotNegotiated => {
                write!(f, "NEEDS_CSUM without VIRTIO_NET_F_CSUM")
            }
            HeaderError::GsoType(v) => write!(f, "gso_type {v:#x} refused"),
            HeaderError::GsoSize(v) => write!(f, "gso_size {v} without GSO"),
            HeaderError::ChecksumOutside { start, offset, len } => write!(
                f,
                "checksum at {start}+{offset} outside the {len}-byte frame"
            ),
        }
    }
}

/// Where a partial checksum is completed: from `start` to the end of the
/// frame, stored at `start + offset` (both checked inside the frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumAt {
    start: usize,
    offset: usize,
}

impl ChecksumAt {
    /// First byte summed.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Position of the checksum field, from [`ChecksumAt::start`].
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// A TX header that passed [`TxHeader::validate`] for a frame of a given
/// length; the only way to classify a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxHeader {
    checksum: Option<ChecksumAt>,
}

impl TxHeader {
    /// Checks `hdr` for a frame of `frame_len` bytes, `csum`: whether
    /// `VIRTIO_NET_F_CSUM` was negotiated (see the [module docs](self)).
    pub fn validate(hdr: &NetHdr, csum: bool, frame_len: usize) -> Result<Self, HeaderError> {
        if hdr.flags & !HDR_F_NEEDS_CSUM != 0 {
            return Err(HeaderError::Flags(hdr.flags));
        }
        if hdr.gso_type != GSO_NONE {
            return Err(HeaderError::GsoType(hdr.gso_type));
        }
        if hdr.gso_size.get() != 0 {
            return Err(HeaderError::GsoSize(hdr.gso_size.get()));
        }
        if hdr.flags & HDR_F_NEEDS_CSUM == 0 {
            return Ok(TxHeader { checksum: None });
        }
        if !csum {
            return Err(HeaderError::ChecksumNotNegotiated);
        }
        let (start, offset) = (hdr.csum_start.get(), hdr.csum_offset.get());
        let field_end = usize::from(start) + usize::from(offset) + 2;
        if usize::from(start) >= frame_len || field_end > frame_len {
            return Err(HeaderError::ChecksumOutside {
                start,
                offset,
                len: frame_len,
            });
        }
        Ok(TxHeader {
            checksum: Some(ChecksumAt {
                start: usize::from(start),
                offset: usize::from(offset),
            }),
        })
    }

    /// The checksum to complete, if the frame needs one.
    pub fn checksum(&self) -> Option<ChecksumAt> {
        self.checksum
    }
}

/// Frame kind: complete as it is, deliverable to any port.
#[derive(Debug)]
pub struct Plain;

/// Frame kind: carries a partial checksum still to be completed.
#[derive(Debug)]
pub struct NeedsChecksum;

/// A transmitted frame of kind `K` ([`Plain`] or [`NeedsChecksum`]),
/// borrowed from the transmit buffer.
#[derive(Debug)]
pub struct TxFrame<'b, K> {
    data: &'b mut [u8],
    checksum: Option<ChecksumAt>,
    kind: PhantomData<K>,
}

/// What [`TxFrame::classify`] found.
#[derive(Debug)]
pub enum FrameKind<'b> {
    /// No offload: forward as it is.
    Plain(TxFrame<'b, Plain>),
    /// `NEEDS_CSUM`: complete the checksum before forwarding.
    NeedsChecksum(TxFrame<'b, NeedsChecksum>),
}

impl<'b> TxFrame<'b, Plain> {
    /// Classifies `bytes` by its validated header. A header validated for
    /// a different length is refused (`None`): its checksum position was
    /// checked against that length only.
    pub fn classify(
        bytes: &'b mut [u8],
        header: &TxHeader,
        validated_len: usize,
    ) -> Option<FrameKind<'b>> {
        if bytes.len() != validated_len {
            return None;
        }
        Some(match header.checksum {
            None => FrameKind::Plain(TxFrame {
                data: bytes,
                checksum: None,
                kind: PhantomData,
            }),
            Some(at) => FrameKind::NeedsChecksum(TxFrame {
                data: bytes,
                checksum: Some(at),
                kind: PhantomData,
            }),
        })
    }

    /// The frame, as the switch forwards it.
    pub fn bytes(&self) -> &[u8] {
        self.data
    }
}

impl<'b> TxFrame<'b, NeedsChecksum> {
    /// Completes the checksum in place (ones' complement sum from the
    /// start, which includes the pseudo-header sum the driver stored in
    /// the field, folded and inverted, 0 sent as 0xffff as Linux's
    /// `skb_checksum_help` does); the frame is then plain.
    pub fn complete_checksum(self) -> TxFrame<'b, Plain> {
        if let Some(at) = self.checksum {
            complete_checksum(self.data, at);
        }
        TxFrame {
            data: self.data,
            checksum: None,
            kind: PhantomData,
        }
    }
}

impl<K> TxFrame<'_, K> {
    /// Frame length.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl<'b> TxFrame<'b, NeedsChecksum> {
    /// The frame and its partial checksum, as the switch queues them for
    /// every destination (each receiver completes the checksum, or hands
    /// it to a driver that negotiated `GUEST_CSUM`; see [`RxFrame`]).
    pub fn partial(&self) -> (&[u8], FrameMeta) {
        let meta = self.checksum.map_or(FrameMeta::Plain, |at| {
            // Both were u16 in the header.
            FrameMeta::PartialChecksum {
                start: at.start as u16,
                offset: at.offset as u16,
            }
        });
        (self.data, meta)
    }
}

// ── Receive side ──────────────────────────────────────────────────────

/// Proof that a port's driver negotiated `VIRTIO_NET_F_GUEST_CSUM`: the
/// only way to hand it a frame whose checksum is partial.
#[derive(Clone, Copy, Debug)]
pub struct GuestCsum(());

impl GuestCsum {
    /// The proof, if `features` contain `GUEST_CSUM`.
    pub fn negotiated(features: Features) -> Option<Self> {
        features
            .contains(feature::GUEST_CSUM)
            .then_some(GuestCsum(()))
    }
}

/// A queued frame of kind `K` on its way into a guest.
#[derive(Debug)]
pub struct RxFrame<'f, K> {
    data: &'f [u8],
    checksum: Option<ChecksumAt>,
    kind: PhantomData<K>,
}

/// What [`RxFrame::classify`] found.
#[derive(Debug)]
pub enum RxFrameKind<'f> {
    /// Complete: deliverable to any guest.
    Plain(RxFrame<'f, Plain>),
    /// Partial checksum: deliverable as is only with [`GuestCsum`],
    /// otherwise completed first.
    NeedsChecksum(RxFrame<'f, NeedsChecksum>),
}

/// Header and frame in the form the receiving port negotiated; the
/// header's `num_buffers` is filled in at delivery.
#[derive(Clone, Copy, Debug)]
pub struct Deliverable<'f> {
    header: NetHdr,
    frame: &'f [u8],
}

impl<'f> Deliverable<'f> {
    /// The header, with `num_buffers`.
    pub fn header(&self, num_buffers: u16) -> NetHdr {
        NetHdr {
            num_buffers: U16::new(num_buffers),
            ..self.header
        }
    }

    /// The frame.
    pub fn frame(&self) -> &'f [u8] {
        self.frame
    }
}

impl<'f> RxFrame<'f, Plain> {
    /// Classifies a queued frame by its metadata; `None` if the metadata
    /// does not fit the frame (the port rings refuse such frames).
    pub fn classify(data: &'f [u8], meta: FrameMeta) -> Option<RxFrameKind<'f>> {
        if !meta.fits(data.len()) {
            return None;
        }
        Some(match meta {
            FrameMeta::Plain => RxFrameKind::Plain(RxFrame {
                data,
                checksum: None,
                kind: PhantomData,
            }),
            FrameMeta::PartialChecksum { start, offset } => RxFrameKind::NeedsChecksum(RxFrame {
                data,
                checksum: Some(ChecksumAt {
                    start: usize::from(start),
                    offset: usize::from(offset),
                }),
                kind: PhantomData,
            }),
            // No GSO frame is queued yet (none is accepted on transmit).
            FrameMeta::Gso { .. } => return None,
        })
    }

    /// A complete frame goes to any guest behind a header without flags.
    pub fn deliverable(&self) -> Deliverable<'f> {
        Deliverable {
            header: NetHdr::rx(),
            frame: self.data,
        }
    }
}

impl<'f> RxFrame<'f, NeedsChecksum> {
    /// The frame as is, behind `NEEDS_CSUM` with its `csum_start` and
    /// `csum_offset`: only for a driver that negotiated `GUEST_CSUM`.
    pub fn deliverable_to(&self, _proof: &GuestCsum) -> Deliverable<'f> {
        let at = self.checksum.unwrap_or(ChecksumAt {
            start: 0,
            offset: 0,
        });
        Deliverable {
            header: NetHdr {
                flags: HDR_F_NEEDS_CSUM,
                csum_start: U16::new(at.start as u16),
                csum_offset: U16::new(at.offset as u16),
                ..NetHdr::rx()
            },
            frame: self.data,
        }
    }

    /// Copies the frame into `buf` and completes its checksum there (for
    /// a driver without `GUEST_CSUM`); the copy is plain.
    pub fn complete_into(self, buf: &mut [u8; MAX_FRAME_SIZE]) -> RxFrame<'_, Plain> {
        let len = self.data.len().min(MAX_FRAME_SIZE);
        let copy = &mut buf[..len];
        copy.copy_from_slice(self.data.get(..len).unwrap_or(&[]));
        if let Some(at) = self.checksum {
            complete_checksum(copy, at);
        }
        RxFrame {
            data: copy,
            checksum: None,
            kind: PhantomData,
        }
    }
}

/// Ones' complement sum of `data` as big-endian 16-bit words (an odd
/// last byte padded with 0), not yet folded.
fn ones_sum(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut sum: u64 = words
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a ones' complement sum to 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Completes the checksum of `frame` at `at` (see
/// [`TxFrame::complete_checksum`]).
fn complete_checksum(frame: &mut [u8], at: ChecksumAt) {
    let sum = fold(ones_sum(frame.get(at.start..).unwrap_or(&[])));
    let value = match !sum {
        0 => 0xffff,
        v => v,
    };
    let field = at.start + at.offset;
    if let Some(dst) = frame.get_mut(field..field + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(flags: u8, start: u16, offset: u16) -> NetHdr {
        NetHdr {
            flags,
            csum_start: U16::new(start),
            csum_offset: U16::new(offset),
            ..NetHdr::default()
        }
    }

    #[test]
    fn checksum_positions_are_checked_at_the_edges() {
        assert!(TxHeader::validate(&hdr(1, 34, 16), true, 52).is_ok());
        assert!(TxHeader::validate(&hdr(1, 50, 0), true, 52).is_ok());
        assert_eq!(
            TxHeader::validate(&hdr(1, 51, 0), true, 52),
            Err(HeaderError::ChecksumOutside {
                start: 51,
                offset: 0,
                len: 52
            })
        );
        assert!(TxHeader::validate(&hdr(1, 52, 0), true, 52).is_err());
        assert!(TxHeader::validate(&hdr(1, 0xffff, 0xffff), true, 1514).is_err());
        assert_eq!(
            TxHeader::validate(&hdr(1, 34, 16), false, 52),
            Err(HeaderError::ChecksumNotNegotiated)
        );
    }

    #[test]
    fn the_sum_matches_rfc1071() {
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(
            fold(ones_sum(&[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
        assert_eq!(fold(ones_sum(&[0xff])), 0xff00);
        let mut frame = [0u8; 8];
        frame[4] = 0xff;
        frame[5] = 0xff;
        // Summing to 0xffff gives !0 = 0, sent as 0xffff.
        let mut f = frame;
        complete_checksum(
            &mut f,
            ChecksumAt {
                start: 0,
                offset: 6,
            },
        );
        assert_eq!(&f[6..], &[0xff, 0xff]);
    }
}
