//! Checksum and TCP segmentation offload (`CSUM`, `GUEST_CSUM`,
//! `HOST_TSO4`/`6`, `GUEST_TSO4`/`6`): the validated TX header and the
//! frame-kind typestate on both paths.
//!
//! # The header, validated before anything is forwarded
//! [`TxHeader::validate_frame`] turns the raw [`NetHdr`] a driver wrote
//! (every field a zerocopy little-endian type) and the frame behind it
//! into a `TxHeader` under the negotiated [`TxOffload`], or refuses it
//! with a [`HeaderError`] (one variant per rule); the frame is then
//! dropped and counted (`TxBadHeader`), never forwarded. The rules
//! (virtio 1.2 §5.1.6.2, §5.1.6.2.1):
//! - `flags`: 0, or `NEEDS_CSUM` and only if `CSUM` was negotiated;
//!   `DATA_VALID`, `RSC_INFO` and unknown bits are refused (a driver never
//!   sets them on transmit);
//! - `gso_type`: `GSO_NONE`, or `GSO_TCPV4` / `GSO_TCPV6` only if
//!   `HOST_TSO4` / `HOST_TSO6` was negotiated (TSO counts only with the
//!   `CSUM` it requires, §5.1.3.1); the ECN flag (0x80) is refused
//!   (`HOST_ECN` is not offered), and so are UDP (3), UDP_L4 (5) and
//!   unknown types;
//! - without GSO: `gso_size` 0; with `NEEDS_CSUM`, `csum_start` inside
//!   the frame and the 2-byte checksum at `csum_start + csum_offset`
//!   inside it too; the frame is at most [`MAX_FRAME_SIZE`] (the caller's
//!   check);
//! - with GSO: `NEEDS_CSUM` is required and the frame itself is parsed,
//!   since `hdr_len` is only a hint (without `GUEST_HDRLEN`, which is not
//!   offered, Linux puts `skb_headlen` there, which can include payload).
//!   The frame is at most [`MAX_GSO_FRAME_SIZE`]; its Ethernet type is
//!   IPv4 (0x0800) for TCPV4 and IPv6 (0x86dd) for TCPV6 (a VLAN tag is
//!   refused); an IPv4 header has version 4, IHL ≥ 5, protocol TCP, and is
//!   not a fragment (DF is fine, options are kept); an IPv6 header has
//!   version 6 and next header TCP (extension headers are refused); the
//!   IP length field (IPv4 total length, IPv6 payload length) matches the
//!   frame exactly (Linux sets it to the whole GSO packet's length; a
//!   mismatch is refused, not recomputed, as it means the driver and the
//!   frame disagree); the TCP header has a data offset ≥ 5 and lies
//!   inside the frame, and at least one payload byte follows it;
//!   `csum_start` is the start of the TCP header and `csum_offset` 16;
//!   `gso_size` ≥ 1 and headers + `gso_size` ≤ [`MAX_FRAME_SIZE`], so
//!   every segment is a normal frame. A payload of at most `gso_size`
//!   (one segment) is valid. The real header length goes into
//!   [`FrameMeta::Gso`]`::hdr_len`;
//! - `hdr_len` (a hint) and `num_buffers` (unused on transmit) are
//!   otherwise ignored.
//!
//! [`TxHeader::validate`] is the same check with checksum offload only
//! (it needs just the frame's length).
//!
//! The TCP checksum field of a TSO frame holds what Linux leaves there:
//! the folded pseudo-header sum over the *whole* TCP length (header and
//! all payload), not inverted (`__tcp_v4_send_check` /
//! `__tcp_v6_send_check` with the GSO packet's length; Linux's own
//! `tcp_gso_segment` swaps that length for each segment's). The frame is
//! forwarded with that field as it is: a driver that takes the frame
//! whole expects exactly that, and the software segmenter ignores the
//! field and computes every segment's checksum in full.
//!
//! # The frame kind is in the type
//! [`TxFrame::classify`] gives a [`TxFrame`]`<`[`Plain`]`>`, a
//! [`TxFrame`]`<`[`NeedsChecksum`]`>` or a [`TxFrame`]`<`[`Gso`]`>`.
//! Only a plain frame has [`TxFrame::bytes`], what
//! [`VSwitch::forward_at`] takes; a needs-checksum frame enters the
//! switch only with its metadata ([`TxFrame::partial`] →
//! [`VSwitch::forward_meta_at`], queued as
//! [`FrameMeta::PartialChecksum`]) or once completed
//! ([`TxFrame::complete_checksum`]); a GSO frame only with its metadata
//! ([`TxFrame::gso`], queued as [`FrameMeta::Gso`]). Forwarding either as
//! plain does not compile (`tests/compile_fail/tx_forward_needs_checksum.rs`,
//! `tx_forward_gso.rs`).
//!
//! On the receive side a queued frame is an [`RxFrame`] of one of the
//! three kinds ([`RxFrame::classify`]; a GSO frame is parsed again and
//! must match its metadata), and what goes into the guest is a
//! [`Deliverable`] (header + frame). A plain frame has
//! [`RxFrame::deliverable`]. A needs-checksum frame has only
//! `deliverable_to`, which takes a [`GuestCsum`] (made only from
//! negotiated features that contain `GUEST_CSUM`) and keeps
//! `NEEDS_CSUM`, `csum_start` and `csum_offset` in the header for the
//! driver, or [`RxFrame::complete_into`], which completes the checksum in
//! a copy for a driver without it. A GSO frame has only `deliverable_to`
//! taking a [`GuestTso`] (made only from features with `GUEST_CSUM` and
//! `GUEST_TSO4` or `GUEST_TSO6`; `None` if the proof does not cover the
//! frame's IP version), whose header carries `NEEDS_CSUM`, `gso_type`,
//! `gso_size`, the real `hdr_len` and the checksum position, or
//! [`RxFrame::segmenter`], which cuts it into plain segments
//! ([`gso`](super::gso)). So each port gets a partial or GSO frame only
//! in a form it negotiated; handing one over without the proof does not
//! compile (`tests/compile_fail/rx_partial_without_guest_csum.rs`,
//! `rx_gso_without_guest_tso.rs`, `rx_gso_with_guest_csum.rs`). A
//! flooded frame is queued once per port and takes each port's form.
//! The switch's capture records partial and GSO frames as they were sent
//! (their checksum fields hold the pseudo-header sum).

use core::marker::PhantomData;

use zerocopy::little_endian::U16;

use super::checksum;
use super::tx_header::gso_meta_matches;
pub use super::tx_header::{
    ChecksumAt, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, HDR_F_DATA_VALID,
    HDR_F_NEEDS_CSUM, HeaderError, MIN_GSO_SIZE, TCP_CSUM_OFFSET, TxHeader, TxOffload,
};
use super::{NetHdr, feature};
use crate::net::{FrameMeta, GsoKind, MAX_FRAME_SIZE};
#[cfg(doc)]
use crate::net::{MAX_GSO_FRAME_SIZE, VSwitch};
use crate::virtio::Features;

/// Frame kind: complete as it is, deliverable to any port.
#[derive(Debug)]
pub struct Plain;

/// Frame kind: carries a partial checksum still to be completed.
#[derive(Debug)]
pub struct NeedsChecksum;

/// Frame kind: a TCP segmentation-offload frame, longer than a normal
/// frame, still to be cut into segments (with a partial TCP checksum).
#[derive(Debug)]
pub struct Gso;

/// A transmitted frame of kind `K` ([`Plain`], [`NeedsChecksum`] or
/// [`Gso`]), borrowed from the transmit buffer; `meta` is what its header
/// said (validated against it).
#[derive(Debug)]
pub struct TxFrame<'b, K> {
    data: &'b mut [u8],
    meta: FrameMeta,
    kind: PhantomData<K>,
}

/// What [`TxFrame::classify`] found.
#[derive(Debug)]
pub enum FrameKind<'b> {
    /// No offload: forward as it is.
    Plain(TxFrame<'b, Plain>),
    /// `NEEDS_CSUM`: complete the checksum before forwarding.
    NeedsChecksum(TxFrame<'b, NeedsChecksum>),
    /// TCP segmentation offload: queue it with its metadata
    /// ([`TxFrame::gso`]).
    Gso(TxFrame<'b, Gso>),
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
        let meta = header.meta();
        Some(match meta {
            FrameMeta::Plain => FrameKind::Plain(TxFrame::new(bytes, meta)),
            FrameMeta::PartialChecksum { .. } => {
                FrameKind::NeedsChecksum(TxFrame::new(bytes, meta))
            }
            FrameMeta::Gso { .. } => FrameKind::Gso(TxFrame::new(bytes, meta)),
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
        if let FrameMeta::PartialChecksum { start, offset } = self.meta {
            checksum::complete(self.data, usize::from(start), usize::from(offset));
        }
        TxFrame::new(self.data, FrameMeta::Plain)
    }

    /// The frame and its partial checksum, as the switch queues them for
    /// every destination (each receiver completes the checksum, or hands
    /// it to a driver that negotiated `GUEST_CSUM`; see [`RxFrame`]).
    pub fn partial(&self) -> (&[u8], FrameMeta) {
        (self.data, self.meta)
    }
}

impl TxFrame<'_, Gso> {
    /// The frame and its [`FrameMeta::Gso`], as the switch queues them for
    /// every destination (each receiver cuts it into segments, or hands it
    /// to a driver that negotiated `GUEST_TSO4`/`GUEST_TSO6`; see
    /// [`RxFrame`]).
    pub fn gso(&self) -> (&[u8], FrameMeta) {
        (self.data, self.meta)
    }
}

impl<'b, K> TxFrame<'b, K> {
    fn new(data: &'b mut [u8], meta: FrameMeta) -> Self {
        TxFrame {
            data,
            meta,
            kind: PhantomData,
        }
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
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

/// Proof that a port's driver negotiated receive segmentation offload
/// (`GUEST_TSO4` and/or `GUEST_TSO6`, each with the `GUEST_CSUM` the spec
/// makes it depend on): the only way to hand it a [`Gso`] frame whole.
///
/// One proof covers both kinds and [`RxFrame::deliverable_to`] checks the
/// frame's kind against it, returning `None` for a kind the driver did
/// not negotiate. The kind is a run-time value (one port ring carries
/// both), so a proof type per kind would only move that `match` to the
/// caller; the `Option` forces the caller to handle the other kind (by
/// segmenting it).
#[derive(Clone, Copy, Debug)]
pub struct GuestTso {
    tso4: bool,
    tso6: bool,
}

impl GuestTso {
    /// The proof, if `features` contain `GUEST_CSUM` and `GUEST_TSO4` or
    /// `GUEST_TSO6`.
    pub fn negotiated(features: Features) -> Option<Self> {
        let csum = features.contains(feature::GUEST_CSUM);
        let proof = GuestTso {
            tso4: csum && features.contains(feature::GUEST_TSO4),
            tso6: csum && features.contains(feature::GUEST_TSO6),
        };
        (proof.tso4 || proof.tso6).then_some(proof)
    }

    /// True if the driver takes `kind` frames whole.
    pub fn covers(&self, kind: GsoKind) -> bool {
        match kind {
            GsoKind::Tcp4 => self.tso4,
            GsoKind::Tcp6 => self.tso6,
        }
    }
}

/// A queued frame of kind `K` on its way into a guest.
#[derive(Debug)]
pub struct RxFrame<'f, K> {
    data: &'f [u8],
    meta: FrameMeta,
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
    /// Segmentation offload: deliverable whole only with [`GuestTso`]
    /// covering its kind, otherwise cut into plain segments
    /// ([`RxFrame::segmenter`]).
    Gso(RxFrame<'f, Gso>),
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

impl<'f, K> RxFrame<'f, K> {
    fn new(data: &'f [u8], meta: FrameMeta) -> Self {
        RxFrame {
            data,
            meta,
            kind: PhantomData,
        }
    }

    /// The frame's bytes, for the segmenter (a GSO frame's bytes are not
    /// deliverable as they are).
    pub(super) fn raw(&self) -> &'f [u8] {
        self.data
    }

    /// The frame's metadata.
    pub fn meta(&self) -> FrameMeta {
        self.meta
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl<'f> RxFrame<'f, Plain> {
    /// Classifies a queued frame by its metadata; `None` if the metadata
    /// does not fit the frame (the port rings refuse such frames). A
    /// [`FrameMeta::Gso`] frame is parsed again and must match its
    /// metadata exactly (as [`TxHeader::validate_frame`] made it), so an
    /// [`RxFrame`]`<`[`Gso`]`>` always has the headers its segmenter
    /// rewrites.
    pub fn classify(data: &'f [u8], meta: FrameMeta) -> Option<RxFrameKind<'f>> {
        if !meta.fits(data.len()) {
            return None;
        }
        Some(match meta {
            FrameMeta::Plain => RxFrameKind::Plain(RxFrame::new(data, meta)),
            FrameMeta::PartialChecksum { .. } => {
                RxFrameKind::NeedsChecksum(RxFrame::new(data, meta))
            }
            FrameMeta::Gso { .. } => {
                if !gso_meta_matches(data, meta) {
                    return None;
                }
                RxFrameKind::Gso(RxFrame::new(data, meta))
            }
        })
    }

    /// A segment the segmenter wrote: complete, plain.
    pub(super) fn segment(data: &'f [u8]) -> Self {
        RxFrame::new(data, FrameMeta::Plain)
    }

    /// The frame.
    pub fn bytes(&self) -> &'f [u8] {
        self.data
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
        let (start, offset) = match self.meta {
            FrameMeta::PartialChecksum { start, offset } => (start, offset),
            _ => (0, 0),
        };
        Deliverable {
            header: NetHdr {
                flags: HDR_F_NEEDS_CSUM,
                csum_start: U16::new(start),
                csum_offset: U16::new(offset),
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
        if let FrameMeta::PartialChecksum { start, offset } = self.meta {
            checksum::complete(copy, usize::from(start), usize::from(offset));
        }
        RxFrame::new(copy, FrameMeta::Plain)
    }
}

impl<'f> RxFrame<'f, Gso> {
    /// IPv4 or IPv6.
    pub fn gso_kind(&self) -> GsoKind {
        match self.meta {
            FrameMeta::Gso { kind, .. } => kind,
            // Unreachable: only a Gso meta makes this kind.
            _ => GsoKind::Tcp4,
        }
    }

    /// The frame whole, behind `NEEDS_CSUM`, its `gso_type`, `gso_size`,
    /// `hdr_len` (the real header length) and checksum position: only
    /// for a driver whose [`GuestTso`] covers the frame's kind (`None`
    /// otherwise; then segment it, [`RxFrame::segmenter`]).
    pub fn deliverable_to(&self, proof: &GuestTso) -> Option<Deliverable<'f>> {
        let FrameMeta::Gso {
            kind,
            hdr_len,
            gso_size,
            start,
            offset,
        } = self.meta
        else {
            return None;
        };
        if !proof.covers(kind) {
            return None;
        }
        Some(Deliverable {
            header: NetHdr {
                flags: HDR_F_NEEDS_CSUM,
                gso_type: match kind {
                    GsoKind::Tcp4 => GSO_TCPV4,
                    GsoKind::Tcp6 => GSO_TCPV6,
                },
                hdr_len: U16::new(hdr_len),
                gso_size: U16::new(gso_size),
                csum_start: U16::new(start),
                csum_offset: U16::new(offset),
                ..NetHdr::rx()
            },
            frame: self.data,
        })
    }
}
