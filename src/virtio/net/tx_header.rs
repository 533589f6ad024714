//! The TX header rules: [`TxHeader::validate_frame`] turns a driver's raw
//! [`NetHdr`] and the frame behind it into a [`TxHeader`] (the frame's
//! [`FrameMeta`]) or a [`HeaderError`]. A segmentation-offload frame is
//! parsed here (Ethernet, IPv4 or IPv6, TCP) rather than trusted; the
//! rules are listed in the [`offload`](super::offload) module docs, which
//! re-export everything public here.

use core::fmt;

use super::{NetHdr, feature};
use crate::net::{FrameMeta, GsoKind, MAX_FRAME_SIZE, MAX_GSO_FRAME_SIZE};
use crate::virtio::Features;

/// Smallest `gso_size` accepted: one frame then makes at most about 1,000
/// segments (a receiver without TSO gets each as a frame). Linux never
/// uses an MSS below 88 bytes (`TCP_MIN_MSS`).
pub const MIN_GSO_SIZE: u16 = 64;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the
/// end of the frame is to be completed and stored at
/// `csum_start + csum_offset`.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID` (receive only).
pub const HDR_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP segmentation over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UDP fragmentation (refused, not offered).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: TCP segmentation over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation (refused, not offered).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: flag in `gso_type`, the TCP stream uses ECN
/// (refused: `HOST_ECN` is not offered).
pub const GSO_ECN: u8 = 0x80;

/// Position of the TCP checksum field in the TCP header.
pub const TCP_CSUM_OFFSET: u16 = 16;

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV6_LEN: usize = 40;
const PROTO_TCP: u8 = 6;

/// Why a TX header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// `flags` has bits other than `NEEDS_CSUM`.
    Flags(u8),
    /// `NEEDS_CSUM` without `VIRTIO_NET_F_CSUM` negotiated.
    ChecksumNotNegotiated,
    /// `gso_type` (without the ECN flag) is neither `GSO_NONE` nor TCP:
    /// UDP (3), UDP_L4 (5) or unknown.
    GsoType(u8),
    /// `GSO_TCPV4` / `GSO_TCPV6` without `HOST_TSO4` / `HOST_TSO6`
    /// negotiated (the value is `gso_type`).
    GsoNotNegotiated(u8),
    /// `gso_type` has the ECN flag (`HOST_ECN` is not offered).
    GsoEcn(u8),
    /// A GSO header without `NEEDS_CSUM` (the spec requires it).
    GsoWithoutChecksum,
    /// `gso_size` is not 0 without GSO.
    GsoSize(u16),
    /// `gso_size` is below [`MIN_GSO_SIZE`] with GSO (0 included): one
    /// frame would become too many segments.
    SegmentTooSmall(u16),
    /// Headers plus `gso_size` exceed [`MAX_FRAME_SIZE`]: the segments
    /// would not be normal frames.
    SegmentTooLong {
        /// `gso_size`.
        gso_size: u16,
        /// The real header length (Ethernet, IP and TCP).
        hdr_len: usize,
    },
    /// A GSO frame longer than [`MAX_GSO_FRAME_SIZE`].
    GsoFrameTooLong(usize),
    /// The checksum start or its 2-byte field lies outside the frame.
    ChecksumOutside {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// GSO: `csum_start` is not where the TCP header starts.
    ChecksumStart {
        /// `csum_start`.
        start: u16,
        /// The start of the TCP header.
        expected: usize,
    },
    /// GSO: `csum_offset` is not 16 (the TCP checksum field).
    ChecksumOffset(u16),
    /// GSO: the Ethernet type does not match `gso_type` (IPv4 for TCPV4,
    /// IPv6 for TCPV6; VLAN tags are not accepted either).
    EtherType(u16),
    /// GSO: the IP version in the header does not match the Ethernet type.
    IpVersion(u8),
    /// GSO: an IPv4 header length (IHL) below 5 words.
    Ipv4Ihl(u8),
    /// GSO: an IPv4 fragment (MF set or a fragment offset; the value is
    /// the flags and offset field).
    Ipv4Fragment(u16),
    /// GSO: the IPv4 protocol is not TCP.
    NotTcp(u8),
    /// GSO: the IPv6 next header is not TCP (extension headers are
    /// refused).
    Ipv6NextHeader(u8),
    /// GSO: the IP length field (IPv4 total length, IPv6 payload length)
    /// does not match the frame.
    IpLength {
        /// The field.
        field: u16,
        /// What the frame length gives.
        expected: usize,
    },
    /// GSO: a TCP data offset below 5 words.
    TcpDataOffset(u8),
    /// GSO: the headers end past the frame (truncated frame).
    HeadersOutside {
        /// Where the header being parsed ends.
        end: usize,
        /// Frame length.
        len: usize,
    },
    /// GSO: nothing after the headers (no payload to segment).
    GsoNoPayload,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderError::Flags(v) => write!(f, "header flags {v:#x} refused"),
            HeaderError::ChecksumNotNegotiated => {
                write!(f, "NEEDS_CSUM without VIRTIO_NET_F_CSUM")
            }
            HeaderError::GsoType(v) => write!(f, "gso_type {v:#x} refused"),
            HeaderError::GsoNotNegotiated(v) => write!(f, "gso_type {v:#x} not negotiated"),
            HeaderError::GsoEcn(v) => write!(f, "gso_type {v:#x} with ECN refused"),
            HeaderError::GsoWithoutChecksum => write!(f, "GSO without NEEDS_CSUM"),
            HeaderError::GsoSize(v) => write!(f, "gso_size {v} without GSO"),
            HeaderError::SegmentTooSmall(v) => {
                write!(f, "gso_size {v} below the minimum {MIN_GSO_SIZE}")
            }
            HeaderError::SegmentTooLong { gso_size, hdr_len } => write!(
                f,
                "gso_size {gso_size} behind {hdr_len} header bytes exceeds {MAX_FRAME_SIZE}"
            ),
            HeaderError::GsoFrameTooLong(len) => write!(f, "GSO frame of {len} bytes"),
            HeaderError::ChecksumOutside { start, offset, len } => write!(
                f,
                "checksum at {start}+{offset} outside the {len}-byte frame"
            ),
            HeaderError::ChecksumStart { start, expected } => {
                write!(f, "csum_start {start}, TCP header at {expected}")
            }
            HeaderError::ChecksumOffset(v) => write!(f, "csum_offset {v} is not TCP's 16"),
            HeaderError::EtherType(v) => write!(f, "ethertype {v:#06x} does not match gso_type"),
            HeaderError::IpVersion(v) => write!(f, "IP version {v} does not match"),
            HeaderError::Ipv4Ihl(v) => write!(f, "IPv4 IHL {v}"),
            HeaderError::Ipv4Fragment(v) => write!(f, "IPv4 fragment (field {v:#06x})"),
            HeaderError::NotTcp(v) => write!(f, "IPv4 protocol {v} is not TCP"),
            HeaderError::Ipv6NextHeader(v) => write!(f, "IPv6 next header {v} is not TCP"),
            HeaderError::IpLength { field, expected } => {
                write!(f, "IP length field {field}, frame gives {expected}")
            }
            HeaderError::TcpDataOffset(v) => write!(f, "TCP data offset {v}"),
            HeaderError::HeadersOutside { end, len } => {
                write!(f, "headers end at {end} past the {len}-byte frame")
            }
            HeaderError::GsoNoPayload => write!(f, "GSO frame without payload"),
        }
    }
}

/// Where a partial checksum is completed: from `start` to the end of the
/// frame, stored at `start + offset` (both checked inside the frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumAt {
    pub(super) start: usize,
    pub(super) offset: usize,
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

/// The transmit offloads one port's driver negotiated: what
/// [`TxHeader::validate_frame`] accepts.
///
/// TSO counts only together with `CSUM`, which the spec makes it depend
/// on (virtio 1.2 §5.1.3.1): a driver that accepted `HOST_TSO4` without
/// `CSUM` gets its GSO headers refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    csum: bool,
    tso4: bool,
    tso6: bool,
}

impl TxOffload {
    /// The offloads in `features`: `CSUM`, and `HOST_TSO4` / `HOST_TSO6`
    /// if `CSUM` is there too.
    pub fn negotiated(features: Features) -> Self {
        let csum = features.contains(feature::CSUM);
        TxOffload {
            csum,
            tso4: csum && features.contains(feature::HOST_TSO4),
            tso6: csum && features.contains(feature::HOST_TSO6),
        }
    }

    /// Checksum offload only (or nothing, if `csum` is false).
    pub fn checksum_only(csum: bool) -> Self {
        TxOffload {
            csum,
            ..TxOffload::default()
        }
    }

    /// True if `VIRTIO_NET_F_CSUM` was negotiated.
    pub fn checksum(&self) -> bool {
        self.csum
    }

    /// True if segmentation of `kind` frames was negotiated.
    pub fn tso(&self, kind: GsoKind) -> bool {
        match kind {
            GsoKind::Tcp4 => self.tso4,
            GsoKind::Tcp6 => self.tso6,
        }
    }
}

/// Where the headers of a TCP segmentation-offload frame are, as parsed
/// from the frame itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TcpFrame {
    /// Start of the TCP header (after Ethernet and IP).
    pub(super) tcp_start: usize,
    /// End of the TCP header: the real header length.
    pub(super) hdr_len: usize,
}

fn be16(frame: &[u8], at: usize) -> u16 {
    frame
        .get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

fn byte(frame: &[u8], at: usize) -> u8 {
    frame.get(at).copied().unwrap_or(0)
}

fn inside(end: usize, len: usize) -> Result<(), HeaderError> {
    if end > len {
        return Err(HeaderError::HeadersOutside { end, len });
    }
    Ok(())
}

/// Parses a TCP segmentation-offload frame of `kind`: Ethernet, then an
/// IPv4 header (with options) or an IPv6 header without extension
/// headers, whose length field matches the frame, then a TCP header
/// (with options), then at least one byte of payload.
pub(super) fn parse_tcp_frame(kind: GsoKind, frame: &[u8]) -> Result<TcpFrame, HeaderError> {
    let len = frame.len();
    if len > MAX_GSO_FRAME_SIZE {
        return Err(HeaderError::GsoFrameTooLong(len));
    }
    inside(ETH_LEN, len)?;
    let ethertype = be16(frame, 12);
    let tcp_start = match kind {
        GsoKind::Tcp4 => {
            if ethertype != ETHERTYPE_IPV4 {
                return Err(HeaderError::EtherType(ethertype));
            }
            inside(ETH_LEN + 20, len)?;
            let version_ihl = byte(frame, ETH_LEN);
            if version_ihl >> 4 != 4 {
                return Err(HeaderError::IpVersion(version_ihl >> 4));
            }
            let ihl = version_ihl & 0xf;
            if ihl < 5 {
                return Err(HeaderError::Ipv4Ihl(ihl));
            }
            let ip_end = ETH_LEN + usize::from(ihl) * 4;
            inside(ip_end, len)?;
            let proto = byte(frame, ETH_LEN + 9);
            if proto != PROTO_TCP {
                return Err(HeaderError::NotTcp(proto));
            }
            // MF (0x2000) or a fragment offset; DF (0x4000) is fine.
            let frag = be16(frame, ETH_LEN + 6);
            if frag & 0x3fff != 0 {
                return Err(HeaderError::Ipv4Fragment(frag));
            }
            let field = be16(frame, ETH_LEN + 2);
            if usize::from(field) != len - ETH_LEN {
                return Err(HeaderError::IpLength {
                    field,
                    expected: len - ETH_LEN,
                });
            }
            ip_end
        }
        GsoKind::Tcp6 => {
            if ethertype != ETHERTYPE_IPV6 {
                return Err(HeaderError::EtherType(ethertype));
            }
            let ip_end = ETH_LEN + IPV6_LEN;
            inside(ip_end, len)?;
            let version = byte(frame, ETH_LEN) >> 4;
            if version != 6 {
                return Err(HeaderError::IpVersion(version));
            }
            let next = byte(frame, ETH_LEN + 6);
            if next != PROTO_TCP {
                return Err(HeaderError::Ipv6NextHeader(next));
            }
            let field = be16(frame, ETH_LEN + 4);
            if usize::from(field) != len - ip_end {
                return Err(HeaderError::IpLength {
                    field,
                    expected: len - ip_end,
                });
            }
            ip_end
        }
    };
    inside(tcp_start + 20, len)?;
    let data_offset = byte(frame, tcp_start + 12) >> 4;
    if data_offset < 5 {
        return Err(HeaderError::TcpDataOffset(data_offset));
    }
    let hdr_len = tcp_start + usize::from(data_offset) * 4;
    inside(hdr_len, len)?;
    if hdr_len == len {
        return Err(HeaderError::GsoNoPayload);
    }
    Ok(TcpFrame { tcp_start, hdr_len })
}

/// True if `meta` is a [`FrameMeta::Gso`] that `frame` bears out: the
/// frame parses as its kind, and the header length, checksum position
/// and segment size are what validation would have given.
pub(super) fn gso_meta_matches(frame: &[u8], meta: FrameMeta) -> bool {
    let FrameMeta::Gso {
        kind,
        hdr_len,
        gso_size,
        start,
        offset,
    } = meta
    else {
        return false;
    };
    parse_tcp_frame(kind, frame).is_ok_and(|tcp| {
        tcp.tcp_start == usize::from(start)
            && offset == TCP_CSUM_OFFSET
            && tcp.hdr_len == usize::from(hdr_len)
            && gso_size > 0
            && tcp.hdr_len + usize::from(gso_size) <= MAX_FRAME_SIZE
    })
}

/// A TX header that passed [`TxHeader::validate_frame`] (or
/// [`TxHeader::validate`]) for a frame of a given length; the only way to
/// classify a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxHeader {
    meta: FrameMeta,
}

impl TxHeader {
    /// Checks `hdr` for a frame of `frame_len` bytes with checksum offload
    /// only (`csum`: whether `VIRTIO_NET_F_CSUM` was negotiated): every
    /// `gso_type` but `GSO_NONE` is refused. The same as
    /// [`TxHeader::validate_frame`] with [`TxOffload::checksum_only`],
    /// which needs only the frame's length.
    pub fn validate(hdr: &NetHdr, csum: bool, frame_len: usize) -> Result<Self, HeaderError> {
        let offload = TxOffload::checksum_only(csum);
        match Self::gso_kind(hdr, offload)? {
            None => Self::validate_no_gso(hdr, csum, frame_len),
            // Unreachable: no TSO in `offload`.
            Some(_) => Err(HeaderError::GsoNotNegotiated(hdr.gso_type)),
        }
    }

    /// Checks `hdr` for `frame` under the negotiated `offload` (see the
    /// [`offload`](super::offload) module docs for the rules). A frame
    /// without GSO must be at most [`MAX_FRAME_SIZE`] long (the caller
    /// checks it); a GSO frame at most [`MAX_GSO_FRAME_SIZE`] (checked
    /// here).
    pub fn validate_frame(
        hdr: &NetHdr,
        offload: TxOffload,
        frame: &[u8],
    ) -> Result<Self, HeaderError> {
        let Some(kind) = Self::gso_kind(hdr, offload)? else {
            return Self::validate_no_gso(hdr, offload.csum, frame.len());
        };
        if hdr.flags & HDR_F_NEEDS_CSUM == 0 {
            return Err(HeaderError::GsoWithoutChecksum);
        }
        let gso_size = hdr.gso_size.get();
        if gso_size < MIN_GSO_SIZE {
            return Err(HeaderError::SegmentTooSmall(gso_size));
        }
        let tcp = parse_tcp_frame(kind, frame)?;
        let (start, offset) = (hdr.csum_start.get(), hdr.csum_offset.get());
        if usize::from(start) != tcp.tcp_start {
            return Err(HeaderError::ChecksumStart {
                start,
                expected: tcp.tcp_start,
            });
        }
        if offset != TCP_CSUM_OFFSET {
            return Err(HeaderError::ChecksumOffset(offset));
        }
        if tcp.hdr_len + usize::from(gso_size) > MAX_FRAME_SIZE {
            return Err(HeaderError::SegmentTooLong {
                gso_size,
                hdr_len: tcp.hdr_len,
            });
        }
        Ok(TxHeader {
            meta: FrameMeta::Gso {
                kind,
                // At most 14 + 60 + 60 bytes.
                hdr_len: tcp.hdr_len as u16,
                gso_size,
                start,
                offset,
            },
        })
    }

    /// The GSO kind `hdr` asks for (`None`: `GSO_NONE`), if acceptable
    /// under `offload` and `flags` are known.
    fn gso_kind(hdr: &NetHdr, offload: TxOffload) -> Result<Option<GsoKind>, HeaderError> {
        if hdr.flags & !HDR_F_NEEDS_CSUM != 0 {
            return Err(HeaderError::Flags(hdr.flags));
        }
        if hdr.flags & HDR_F_NEEDS_CSUM != 0 && !offload.csum {
            return Err(HeaderError::ChecksumNotNegotiated);
        }
        let kind = match hdr.gso_type & !GSO_ECN {
            GSO_NONE if hdr.gso_type == GSO_NONE => return Ok(None),
            GSO_TCPV4 => GsoKind::Tcp4,
            GSO_TCPV6 => GsoKind::Tcp6,
            _ => return Err(HeaderError::GsoType(hdr.gso_type)),
        };
        if !offload.tso(kind) {
            return Err(HeaderError::GsoNotNegotiated(hdr.gso_type));
        }
        if hdr.gso_type & GSO_ECN != 0 {
            return Err(HeaderError::GsoEcn(hdr.gso_type));
        }
        Ok(Some(kind))
    }

    fn validate_no_gso(hdr: &NetHdr, csum: bool, frame_len: usize) -> Result<Self, HeaderError> {
        if hdr.gso_size.get() != 0 {
            return Err(HeaderError::GsoSize(hdr.gso_size.get()));
        }
        if hdr.flags & HDR_F_NEEDS_CSUM == 0 {
            return Ok(TxHeader {
                meta: FrameMeta::Plain,
            });
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
            meta: FrameMeta::PartialChecksum { start, offset },
        })
    }

    /// The checksum to complete, if the frame needs one (a GSO frame's
    /// TCP checksum too).
    pub fn checksum(&self) -> Option<ChecksumAt> {
        match self.meta {
            FrameMeta::Plain => None,
            FrameMeta::PartialChecksum { start, offset } | FrameMeta::Gso { start, offset, .. } => {
                Some(ChecksumAt {
                    start: usize::from(start),
                    offset: usize::from(offset),
                })
            }
        }
    }

    /// What travels with the frame through the switch.
    pub fn meta(&self) -> FrameMeta {
        self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::little_endian::U16;

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
    fn gso_types_without_tso_are_refused_by_the_checksum_only_check() {
        for (gso_type, want) in [
            (GSO_TCPV4, HeaderError::GsoNotNegotiated(GSO_TCPV4)),
            (GSO_TCPV6, HeaderError::GsoNotNegotiated(GSO_TCPV6)),
            (GSO_UDP, HeaderError::GsoType(GSO_UDP)),
            (GSO_ECN, HeaderError::GsoType(GSO_ECN)),
            (2, HeaderError::GsoType(2)),
        ] {
            let h = NetHdr {
                gso_type,
                ..hdr(1, 34, 16)
            };
            assert_eq!(TxHeader::validate(&h, true, 100), Err(want));
        }
    }
}
