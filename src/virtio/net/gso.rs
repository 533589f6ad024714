//! Software TCP segmentation: cuts a segmentation-offload frame
//! ([`RxFrame`]`<`[`Gso`]`>`) into plain Ethernet frames of at most
//! [`MAX_FRAME_SIZE`] bytes, for a receiver whose driver did not
//! negotiate `GUEST_TSO4`/`GUEST_TSO6` (see [`offload`](super::offload)).
//!
//! # One segment at a time, any segment
//! [`RxFrame::segmenter`] gives a [`Segmenter`]; it knows the number of
//! segments up front ([`Segmenter::segment_count`]) and writes segment
//! `i` into a caller's [`MAX_FRAME_SIZE`] buffer on demand
//! ([`Segmenter::segment_into`]), so a receiver that runs out of buffers
//! after segment `i` can take `i + 1..` later from the same queued frame.
//! Each segment is built with two slice copies (headers, then its slice
//! of the payload) and one checksum pass over its TCP part.
//!
//! # Each segment, as Linux's software GSO makes it
//! Segment `i` carries payload bytes `i * gso_size ..` (at most
//! `gso_size`, the last one the rest) behind a copy of the headers with
//! (`inet_gso_segment`, `tcp_gso_segment`):
//! - IPv4: total length of the segment, identification that of the
//!   frame plus `i` (wrapping; Linux increments it per segment unless the
//!   stream asked for a fixed ID, which virtio cannot say), header
//!   checksum recomputed; options copied as they are;
//! - IPv6: payload length of the segment;
//! - TCP: sequence number + `i * gso_size` (wrapping); `FIN` and `PSH`
//!   only on the last segment, `CWR` only on the first; every other
//!   field and the options (timestamps, ...) copied as they are;
//! - TCP checksum computed in full (pseudo-header with the segment's TCP
//!   length, TCP header, payload; 0 sent as 0xffff). Whatever the field
//!   held in the frame is ignored: Linux stores the pseudo-header sum of
//!   the whole frame's TCP length there (`__tcp_v4_send_check` with the
//!   GSO packet's length; `tcp_gso_segment` later swaps that length for
//!   each segment's), but nothing here depends on it.

use super::checksum::{finish, fold, ones_sum};
#[cfg(doc)]
use super::offload::TxHeader;
use super::offload::{Gso, Plain, RxFrame};
use crate::net::{FrameMeta, GsoKind, MAX_FRAME_SIZE};

const ETH_LEN: usize = 14;
const PROTO_TCP: u64 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Cuts one [`Gso`] frame into plain segments (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Segmenter<'f> {
    frame: &'f [u8],
    kind: GsoKind,
    /// Start of the TCP header.
    tcp_start: usize,
    /// End of the TCP header (validated: + `mss` ≤ `MAX_FRAME_SIZE`).
    hdr_len: usize,
    /// Payload bytes per segment (≥ 1).
    mss: usize,
    count: usize,
}

impl<'f> RxFrame<'f, Gso> {
    /// The segmenter of this frame.
    pub fn segmenter(&self) -> Segmenter<'f> {
        let frame = self.raw();
        // The metadata was checked against the frame by `classify`.
        let (kind, tcp_start, hdr_len, mss) = match self.meta() {
            FrameMeta::Gso {
                kind,
                start,
                hdr_len,
                gso_size,
                ..
            } => (
                kind,
                usize::from(start),
                usize::from(hdr_len),
                usize::from(gso_size).max(1),
            ),
            _ => (GsoKind::Tcp4, 0, frame.len(), 1),
        };
        let payload = frame.len().saturating_sub(hdr_len);
        Segmenter {
            frame,
            kind,
            tcp_start,
            hdr_len,
            mss,
            count: payload.div_ceil(mss),
        }
    }
}

fn get_be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |w| u16::from_be_bytes([w[0], w[1]]))
}

fn put_be16(b: &mut [u8], at: usize, v: u16) {
    if let Some(dst) = b.get_mut(at..at + 2) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

impl Segmenter<'_> {
    /// How many segments the frame makes (at least 1): its payload
    /// divided by `gso_size`, rounded up.
    pub fn segment_count(&self) -> usize {
        self.count
    }

    /// IPv4 or IPv6.
    pub fn kind(&self) -> GsoKind {
        self.kind
    }

    /// Writes segment `index` (from 0) into `buf`: a complete Ethernet
    /// frame of at most [`MAX_FRAME_SIZE`] bytes with every length,
    /// sequence number, flag and checksum fixed up (see the module docs).
    /// `None` if `index` is not below [`Segmenter::segment_count`].
    pub fn segment_into<'b>(
        &self,
        index: usize,
        buf: &'b mut [u8; MAX_FRAME_SIZE],
    ) -> Option<RxFrame<'b, Plain>> {
        if index >= self.count {
            return None;
        }
        let (hdr_len, tcp_start) = (self.hdr_len, self.tcp_start);
        let from = hdr_len + index * self.mss;
        let payload = self
            .frame
            .get(from..(from + self.mss).min(self.frame.len()))?;
        let seg_len = hdr_len + payload.len();
        let seg = buf.get_mut(..seg_len)?;
        seg.get_mut(..hdr_len)?
            .copy_from_slice(self.frame.get(..hdr_len)?);
        seg.get_mut(hdr_len..)?.copy_from_slice(payload);

        let tcp_len = seg_len - tcp_start;
        let pseudo = match self.kind {
            GsoKind::Tcp4 => {
                let ip = seg.get_mut(ETH_LEN..tcp_start)?;
                put_be16(ip, 2, (seg_len - ETH_LEN) as u16);
                put_be16(ip, 4, get_be16(ip, 4).wrapping_add(index as u16));
                put_be16(ip, 10, 0);
                // As Linux's `ip_send_check`: 0 stays 0.
                let ip_csum = !fold(ones_sum(ip));
                put_be16(ip, 10, ip_csum);
                // Source and destination address, protocol, TCP length.
                ones_sum(ip.get(12..20)?) + PROTO_TCP + tcp_len as u64
            }
            GsoKind::Tcp6 => {
                let ip = seg.get_mut(ETH_LEN..tcp_start)?;
                put_be16(ip, 4, tcp_len as u16);
                ones_sum(ip.get(8..40)?) + PROTO_TCP + tcp_len as u64
            }
        };
        let tcp = seg.get_mut(tcp_start..)?;
        let seq = tcp
            .get(4..8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let sent = (index * self.mss) as u32;
        tcp.get_mut(4..8)?
            .copy_from_slice(&seq.wrapping_add(sent).to_be_bytes());
        let flags = tcp.get_mut(13)?;
        if index + 1 < self.count {
            *flags &= !(TCP_FIN | TCP_PSH);
        }
        if index > 0 {
            *flags &= !TCP_CWR;
        }
        put_be16(tcp, 16, 0);
        let tcp_csum = finish(pseudo + ones_sum(tcp));
        put_be16(tcp, 16, tcp_csum);
        Some(RxFrame::segment(seg))
    }
}
