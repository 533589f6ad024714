//! Target `gso`: TCP segmentation offload headers and the software
//! segmenter. A frame is built from structured fields (IPv4 with options
//! or IPv6, TCP with options, a payload, a segment size), then damaged by
//! arbitrary byte writes and header-field overrides, and validated.
//! Invariants, checked independently of the implementation: validation
//! never panics; an accepted GSO frame is queued as a GSO frame and its
//! metadata is accepted again on receive; it makes
//! ⌈payload / gso_size⌉ segments, each at most 1514 bytes; the segments'
//! payloads are the frame's payload in order; every segment's IPv4 header
//! checksum and TCP checksum verify (ones' complement sum 0xffff) and its
//! IP length field matches it. Arbitrary metadata on the receive side
//! never panics either.

use arbitrary::Arbitrary;
use hypervisor::net::{FrameMeta, GsoKind, MAX_FRAME_SIZE};
use hypervisor::virtio::net::offload::{GSO_TCPV4, GSO_TCPV6, HDR_F_NEEDS_CSUM};
use hypervisor::virtio::net::{FrameKind, NetHdr, RxFrame, RxFrameKind, TxFrame, TxHeader};
use hypervisor::virtio::net::{TxOffload, feature};
use hypervisor::virtio::regs::feature::VERSION_1;
use hypervisor::virtio::{Features, Negotiating};
use zerocopy::little_endian::U16;

/// One input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    v6: bool,
    /// IPv4 option words (0..=10).
    ip_option_words: u8,
    /// TCP option words (0..=10).
    tcp_option_words: u8,
    /// Payload length (taken modulo 6000).
    payload: u16,
    gso_size: u16,
    seq: u32,
    ip_id: u16,
    tcp_flags: u8,
    /// Byte writes into the frame after it is built (offset modulo its
    /// length).
    damage: Vec<(u16, u8)>,
    /// Header fields replacing the correct ones.
    flags: Option<u8>,
    gso_type: Option<u8>,
    csum_start: Option<u16>,
    csum_offset: Option<u16>,
    /// Negotiated `HOST_TSO4`, `HOST_TSO6`, `CSUM` (bits 0..2; inverted,
    /// so 0 negotiates all three).
    not_negotiated: u8,
    /// Metadata handed to the receive side as is.
    raw_meta: (bool, u16, u16, u16, u16),
}

fn features(bits: u64) -> Features {
    let bits = bits | VERSION_1;
    let mut n = Negotiating::new();
    n.write_driver_features(0, bits as u32);
    n.write_driver_features(1, (bits >> 32) as u32);
    n.accept_features(bits).expect("offered").features()
}

fn sum16(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn build(input: &Input) -> (Vec<u8>, NetHdr, usize, usize) {
    let ip_len = if input.v6 {
        40
    } else {
        20 + 4 * usize::from(input.ip_option_words % 11)
    };
    let tcp_len = 20 + 4 * usize::from(input.tcp_option_words % 11);
    let payload = usize::from(input.payload) % 6000;
    let tcp_start = 14 + ip_len;
    let hdr_len = tcp_start + tcp_len;
    let mut f = vec![0u8; hdr_len + payload];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    let total = f.len() - 14;
    if input.v6 {
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22] = 0xfd; // fd00::1 to fd00::2
        f[37] = 1;
        f[38] = 0xfd;
        f[53] = 2;
    } else {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x40 | (ip_len / 4) as u8;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[18..20].copy_from_slice(&input.ip_id.to_be_bytes());
        f[20] = 0x40;
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..tcp_start].fill(1); // NOP options
    }
    f[tcp_start..tcp_start + 2].copy_from_slice(&40000u16.to_be_bytes());
    f[tcp_start + 2..tcp_start + 4].copy_from_slice(&5201u16.to_be_bytes());
    f[tcp_start + 4..tcp_start + 8].copy_from_slice(&input.seq.to_be_bytes());
    f[tcp_start + 12] = ((tcp_len / 4) as u8) << 4;
    f[tcp_start + 13] = input.tcp_flags;
    f[tcp_start + 20..hdr_len].fill(1);
    for (i, b) in f[hdr_len..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ (i >> 8) as u8;
    }
    let hdr = NetHdr {
        flags: input.flags.unwrap_or(HDR_F_NEEDS_CSUM),
        gso_type: input
            .gso_type
            .unwrap_or(if input.v6 { GSO_TCPV6 } else { GSO_TCPV4 }),
        hdr_len: U16::new(0),
        gso_size: U16::new(input.gso_size),
        csum_start: U16::new(input.csum_start.unwrap_or(tcp_start as u16)),
        csum_offset: U16::new(input.csum_offset.unwrap_or(16)),
        num_buffers: U16::new(0),
    };
    for &(at, v) in &input.damage {
        let len = f.len();
        f[usize::from(at) % len] = v;
    }
    (f, hdr, tcp_start, hdr_len)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    accepted(data);
}

/// Runs one input; true if it made a GSO frame that validation accepted
/// (and whose segments were then checked).
pub fn accepted(data: &[u8]) -> bool {
    let Some(input) = crate::decode::<Input>(data) else {
        return false;
    };
    let (raw_v6, h, g, s, o) = input.raw_meta;
    let (mut frame, hdr, _, _) = build(&input);
    let raw = FrameMeta::Gso {
        kind: if raw_v6 { GsoKind::Tcp6 } else { GsoKind::Tcp4 },
        hdr_len: h,
        gso_size: g,
        start: s,
        offset: o,
    };
    if let Some(RxFrameKind::Gso(gso)) = RxFrame::classify(&frame, raw) {
        check_segments(&frame, raw, &gso.segmenter());
    }

    let n = input.not_negotiated;
    let mut bits = 0;
    for (bit, f) in [
        (1, feature::HOST_TSO4),
        (2, feature::HOST_TSO6),
        (4, feature::CSUM),
    ] {
        if n & bit == 0 {
            bits |= f;
        }
    }
    let offload = TxOffload::negotiated(features(bits));
    let Ok(header) = TxHeader::validate_frame(&hdr, offload, &frame) else {
        return false;
    };
    let len = frame.len();
    let meta = match TxFrame::classify(&mut frame, &header, len) {
        Some(FrameKind::Gso(g)) => g.gso().1,
        Some(_) => return false, // no GSO asked for
        None => panic!("a validated frame must classify"),
    };
    assert!(offload.checksum(), "GSO accepted without CSUM");
    match RxFrame::classify(&frame, meta) {
        Some(RxFrameKind::Gso(gso)) => check_segments(&frame, meta, &gso.segmenter()),
        _ => panic!("validated GSO metadata refused on receive: {meta:?}"),
    }
    true
}

fn check_segments(frame: &[u8], meta: FrameMeta, seg: &hypervisor::virtio::net::Segmenter<'_>) {
    let FrameMeta::Gso {
        kind,
        hdr_len,
        gso_size,
        start,
        ..
    } = meta
    else {
        unreachable!()
    };
    let (hdr_len, mss, tcp) = (
        usize::from(hdr_len),
        usize::from(gso_size),
        usize::from(start),
    );
    assert!(hdr_len + mss <= MAX_FRAME_SIZE);
    let payload = &frame[hdr_len..];
    assert_eq!(seg.segment_count(), payload.len().div_ceil(mss));
    let mut joined = Vec::new();
    let mut buf = [0u8; MAX_FRAME_SIZE];
    for i in 0..seg.segment_count() {
        let s = seg.segment_into(i, &mut buf).expect("segment").bytes();
        assert!(s.len() <= MAX_FRAME_SIZE && s.len() > hdr_len);
        let tcp_len = (s.len() - tcp) as u64;
        let pseudo = match kind {
            GsoKind::Tcp4 => {
                assert_eq!(usize::from(be16(s, 16)), s.len() - 14);
                assert_eq!(fold(sum16(&s[14..tcp])), 0xffff, "IPv4 header checksum");
                sum16(&s[26..34])
            }
            GsoKind::Tcp6 => {
                assert_eq!(usize::from(be16(s, 18)), s.len() - 54);
                sum16(&s[22..54])
            }
        };
        assert_eq!(
            fold(pseudo + 6 + tcp_len + sum16(&s[tcp..])),
            0xffff,
            "TCP checksum of segment {i}"
        );
        joined.extend_from_slice(&s[hdr_len..]);
    }
    assert_eq!(joined, payload);
}
