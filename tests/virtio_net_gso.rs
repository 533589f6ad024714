//! TCP segmentation offload: TCP/IPv4 (with IP options) and TCP/IPv6
//! frames with TCP options, built by an independent packet library
//! (`etherparse`) and given the header and checksum field Linux leaves
//! on a TSO packet (`NEEDS_CSUM`, `gso_type`, `gso_size`, `csum_start` /
//! `csum_offset`, pseudo-header sum of the whole TCP length in the
//! field, `hdr_len` only a hint), go through header validation, the
//! transmit and receive frame kinds and the software segmenter; the
//! library checks every segment (lengths, IPv4 header checksum, TCP
//! checksum, sequence numbers, flags, payload). Random sizes and MSS
//! values too. Hostile headers are each refused with their own error;
//! a receiver gets a frame whole only with the proof that it negotiated
//! receive segmentation offload for the frame's IP version.
//!
//! Over 800 lines because every case shares the Linux-style frame
//! builder and the per-segment checker; the hostile cases are one table
//! per layer (header fields, frame contents).

mod support;

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, NetHeaders, PacketBuilder, PacketHeaders, TcpHeader,
    TcpOptionElement, TransportHeader,
};
use hypervisor::net::{FrameMeta, GsoKind, MAX_FRAME_SIZE, MAX_GSO_FRAME_SIZE};
use hypervisor::virtio::net::feature::{
    CSUM, GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, HOST_TSO4, HOST_TSO6,
};
use hypervisor::virtio::net::offload::{
    GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, HDR_F_DATA_VALID, HDR_F_NEEDS_CSUM,
};
use hypervisor::virtio::net::{
    FrameKind, GuestTso, HeaderError, NetHdr, RxFrame, RxFrameKind, TxFrame, TxHeader, TxOffload,
};
use hypervisor::virtio::regs::feature::VERSION_1;
use hypervisor::virtio::{Features, Negotiating};
use support::XorShift;
use support::{fold, words};
use zerocopy::little_endian::U16;

/// `bits` (and `VERSION_1`) as negotiated with a device offering them.
fn features(bits: u64) -> Features {
    let bits = bits | VERSION_1;
    let mut n = Negotiating::new();
    n.write_driver_features(0, bits as u32);
    n.write_driver_features(1, (bits >> 32) as u32);
    n.accept_features(bits).unwrap().features()
}

fn tso_both() -> TxOffload {
    TxOffload::negotiated(features(CSUM | HOST_TSO4 | HOST_TSO6))
}

/// What to build.
#[derive(Clone, Debug)]
struct Spec {
    v6: bool,
    /// IPv4 option bytes (a multiple of 4, at most 40).
    ip_options: usize,
    /// TCP options: 0, 12 (NOP NOP timestamps, as Linux) or 40 bytes.
    tcp_options: usize,
    payload: usize,
    mss: u16,
    seq: u32,
    ip_id: u16,
    fin: bool,
    psh: bool,
    cwr: bool,
}

impl Spec {
    fn new(v6: bool, payload: usize, mss: u16) -> Self {
        Spec {
            v6,
            ip_options: if v6 { 0 } else { 8 },
            tcp_options: 12,
            payload,
            mss,
            seq: 0xffff_f000, // wraps within the first 64 KiB
            ip_id: 0xfffe,    // wraps after two segments
            fin: true,
            psh: true,
            cwr: true,
        }
    }
}

/// A TSO frame as Linux hands it to virtio-net: the IP length field
/// covers the whole frame, the IPv4 header checksum is valid, the TCP
/// checksum field holds the folded pseudo-header sum with the whole TCP
/// length (`__tcp_v4_send_check` on the GSO packet), not inverted.
/// Returns the frame, its header (with `hdr_len` = the whole frame, as
/// `skb_headlen` of a linear packet) and the payload.
fn linux_tso_frame(s: &Spec) -> (Vec<u8>, NetHdr, Vec<u8>) {
    let payload: Vec<u8> = (0..s.payload)
        .map(|i| (i as u8) ^ (i >> 8) as u8 ^ 0x5a)
        .collect();
    let eth = PacketBuilder::ethernet2([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]);
    let ip = if s.v6 {
        eth.ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 2],
            64,
        )
    } else {
        let mut h = Ipv4Header {
            source: [10, 0, 0, 1],
            destination: [10, 0, 0, 2],
            time_to_live: 64,
            protocol: IpNumber::TCP,
            identification: s.ip_id,
            dont_fragment: true,
            ..Default::default()
        };
        // NOPs, then a router alert (type 148, length 4).
        let mut opts = vec![1u8; s.ip_options];
        if s.ip_options >= 4 {
            opts[s.ip_options - 4..].copy_from_slice(&[148, 4, 0, 0]);
        }
        h.options = opts[..].try_into().unwrap();
        eth.ip(IpHeaders::Ipv4(h, Default::default()))
    };
    let mut tcp = ip.tcp(40_000, 5201, s.seq, 502).ack(0x1234_5678);
    tcp = match s.tcp_options {
        0 => tcp,
        12 => tcp
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(0x0102_0304, 0x0506_0708),
            ])
            .unwrap(),
        _ => tcp.options_raw(&[1u8; 40]).unwrap(),
    };
    if s.fin {
        tcp = tcp.fin();
    }
    if s.psh {
        tcp = tcp.psh();
    }
    if s.cwr {
        tcp = tcp.cwr();
    }
    let tcp = tcp.ece();
    let mut frame = Vec::new();
    tcp.write(&mut frame, &payload).unwrap();

    let ip_len = if s.v6 { 40 } else { 20 + s.ip_options };
    let tcp_start = 14 + ip_len;
    let tcp_len = frame.len() - tcp_start;
    let (src, dst) = if s.v6 {
        (&frame[22..38], &frame[38..54])
    } else {
        (&frame[26..30], &frame[30..34])
    };
    let pseudo = fold(words(src) + words(dst) + 6 + tcp_len as u64);
    frame[tcp_start + 16..tcp_start + 18].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = NetHdr {
        flags: HDR_F_NEEDS_CSUM,
        gso_type: if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: U16::new(frame.len().min(0xffff) as u16),
        gso_size: U16::new(s.mss),
        csum_start: U16::new(tcp_start as u16),
        csum_offset: U16::new(16),
        num_buffers: U16::new(0),
    };
    (frame, hdr, payload)
}

/// Validates `frame` behind `hdr` under `offload`, then classifies it on
/// the transmit path (must be a GSO frame) and returns what the switch
/// queues.
fn transmit(hdr: &NetHdr, offload: TxOffload, frame: &mut [u8]) -> FrameMeta {
    let header = TxHeader::validate_frame(hdr, offload, frame).expect("valid TSO header");
    let len = frame.len();
    match TxFrame::classify(frame, &header, len) {
        Some(FrameKind::Gso(gso)) => {
            let (bytes, meta) = gso.gso();
            assert_eq!(bytes.len(), len);
            meta
        }
        other => panic!("not a GSO frame: {other:?}"),
    }
}

fn validate(hdr: &NetHdr, offload: TxOffload, frame: &[u8]) -> Result<FrameMeta, HeaderError> {
    TxHeader::validate_frame(hdr, offload, frame).map(|h| h.meta())
}

/// Cuts the frame into segments and checks every one of them against
/// the original with the library; returns the number of segments.
fn segment_and_check(s: &Spec) -> usize {
    let (mut frame, hdr, payload) = linux_tso_frame(s);
    let meta = transmit(&hdr, tso_both(), &mut frame);
    let Some(RxFrameKind::Gso(gso)) = RxFrame::classify(&frame, meta) else {
        panic!("queued frame is not GSO");
    };
    let FrameMeta::Gso { hdr_len, .. } = meta else {
        unreachable!()
    };
    let segmenter = gso.segmenter();
    let count = segmenter.segment_count();
    assert_eq!(count, s.payload.div_ceil(usize::from(s.mss)), "{s:?}");
    let mut buf = [0u8; MAX_FRAME_SIZE];
    let segments: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            segmenter
                .segment_into(i, &mut buf)
                .expect("segment")
                .bytes()
                .to_vec()
        })
        .collect();
    check_segments(s, &frame, usize::from(hdr_len), &payload, &segments);
    assert!(segmenter.segment_into(count, &mut buf).is_none());
    count
}

/// Checks `segments` cut from the TSO frame `frame` (built from `s`, with
/// `hdr_len` bytes of headers and `payload`) with etherparse: lengths,
/// IPv4 header checksum and ID, TCP checksum, sequence numbers, flags,
/// every other header field copied, and the payload in order.
fn check_segments(s: &Spec, frame: &[u8], hdr_len: usize, payload: &[u8], segments: &[Vec<u8>]) {
    let original = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let count = segments.len();
    let mss = usize::from(s.mss);
    let Some(TransportHeader::Tcp(tcp0)) = &original.transport else {
        panic!()
    };
    let mut joined = Vec::with_capacity(s.payload);
    for (i, seg) in segments.iter().enumerate() {
        let want_payload = mss.min(s.payload - i * mss);
        assert_eq!(seg.len(), hdr_len + want_payload, "segment {i} of {s:?}");
        assert!(seg.len() <= MAX_FRAME_SIZE);
        let h = PacketHeaders::from_ethernet_slice(seg).unwrap();
        let data = h.payload.slice();
        assert_eq!(data.len(), want_payload);
        let Some(TransportHeader::Tcp(tcp)) = &h.transport else {
            panic!("segment {i}: not TCP")
        };
        let sum = match (&h.net, &original.net) {
            (Some(NetHeaders::Ipv4(ip, _)), Some(NetHeaders::Ipv4(ip0, _))) => {
                assert_eq!(usize::from(ip.total_len), seg.len() - 14);
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "segment {i}");
                assert_eq!(ip.identification, ip0.identification.wrapping_add(i as u16));
                assert_eq!(ip.options, ip0.options);
                let fixed = Ipv4Header {
                    total_len: ip0.total_len,
                    identification: ip0.identification,
                    header_checksum: ip0.header_checksum,
                    ..ip.clone()
                };
                assert_eq!(&fixed, ip0, "other IPv4 fields copied");
                tcp.calc_checksum_ipv4(ip, data).unwrap()
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(NetHeaders::Ipv6(ip0, _))) => {
                assert_eq!(usize::from(ip.payload_length), seg.len() - 54);
                let mut fixed = ip.clone();
                fixed.payload_length = ip0.payload_length;
                assert_eq!(&fixed, ip0, "other IPv6 fields copied");
                tcp.calc_checksum_ipv6(ip, data).unwrap()
            }
            _ => panic!("segment {i}: IP version changed"),
        };
        // 0 and 0xffff are the same checksum; the segmenter sends 0xffff.
        assert!(
            tcp.checksum == sum || (tcp.checksum == 0xffff && sum == 0),
            "segment {i}: TCP checksum {:#06x}, expected {sum:#06x}",
            tcp.checksum
        );
        assert_eq!(
            tcp.sequence_number,
            tcp0.sequence_number.wrapping_add((i * mss) as u32)
        );
        let last = i + 1 == count;
        assert_eq!(tcp.fin, s.fin && last, "FIN only on the last segment");
        assert_eq!(tcp.psh, s.psh && last, "PSH only on the last segment");
        assert_eq!(tcp.cwr, s.cwr && i == 0, "CWR only on the first segment");
        let fixed = TcpHeader {
            sequence_number: tcp0.sequence_number,
            fin: tcp0.fin,
            psh: tcp0.psh,
            cwr: tcp0.cwr,
            checksum: tcp0.checksum,
            ..tcp.clone()
        };
        assert_eq!(&fixed, tcp0, "other TCP fields and options copied");
        joined.extend_from_slice(data);
    }
    assert_eq!(joined, payload, "the segments carry the payload, in order");
}

#[test]
fn tcp4_with_ip_and_tcp_options_is_cut_into_valid_segments() {
    // Linux's usual MSS with timestamps over a 1500 MTU: 1448.
    assert_eq!(segment_and_check(&Spec::new(false, 64_000, 1440)), 45);
    assert_eq!(segment_and_check(&Spec::new(false, 3 * 1440, 1440)), 3);
    assert_eq!(segment_and_check(&Spec::new(false, 3 * 1440 + 1, 1440)), 4);
    let mut no_opts = Spec::new(false, 10_001, 1460);
    no_opts.ip_options = 0;
    no_opts.tcp_options = 0;
    assert_eq!(segment_and_check(&no_opts), 7);
}

#[test]
fn tcp6_with_tcp_options_is_cut_into_valid_segments() {
    assert_eq!(segment_and_check(&Spec::new(true, 60_000, 1428)), 43);
    assert_eq!(segment_and_check(&Spec::new(true, 2857, 1428)), 3);
}

#[test]
fn the_largest_frame_and_the_largest_segments() {
    // IPv4 total length 65,535 with 40 bytes of IP and TCP options each.
    let mut s = Spec::new(false, 65_535 - 60 - 60, 0);
    s.ip_options = 40;
    s.tcp_options = 40;
    s.mss = (MAX_FRAME_SIZE - (14 + 60 + 60)) as u16;
    assert_eq!(
        segment_and_check(&s),
        s.payload.div_ceil(usize::from(s.mss))
    );
    // IPv6: the payload length does not count the IPv6 header, so the
    // frame limit comes first.
    let s6 = Spec::new(true, MAX_GSO_FRAME_SIZE - 14 - 40 - 32, 1428);
    let (frame, hdr, _) = linux_tso_frame(&s6);
    assert_eq!(frame.len(), MAX_GSO_FRAME_SIZE);
    segment_and_check(&s6);
    let (frame, hdr6, _) = linux_tso_frame(&Spec {
        payload: s6.payload + 1,
        ..s6
    });
    assert_eq!(
        validate(&hdr6, tso_both(), &frame),
        Err(HeaderError::GsoFrameTooLong(MAX_GSO_FRAME_SIZE + 1))
    );
    let _ = hdr;
}

#[test]
fn a_payload_within_one_segment_is_one_segment_with_every_flag() {
    for v6 in [false, true] {
        assert_eq!(segment_and_check(&Spec::new(v6, 1000, 1400)), 1);
        assert_eq!(segment_and_check(&Spec::new(v6, 1400, 1400)), 1);
        assert_eq!(segment_and_check(&Spec::new(v6, 1, 64)), 1);
    }
}

#[test]
fn random_sizes_and_segment_sizes() {
    let mut rng = XorShift::new(0x7504_6e7a);
    let mut segments = 0;
    for case in 0..300 {
        let v6 = rng.chance(50);
        let ip_options = if v6 { 0 } else { 4 * rng.below(11) as usize };
        let tcp_options = [0, 12, 40][rng.below(3) as usize];
        let hdr_len = 14 + if v6 { 40 } else { 20 + ip_options } + 20 + tcp_options;
        let max_mss = (MAX_FRAME_SIZE - hdr_len) as u64;
        // Mostly realistic MSS values, sometimes the smallest accepted
        // ones (on small frames, to keep the segment count sane).
        let mss = if rng.chance(20) {
            64 + rng.below(64)
        } else {
            max_mss - rng.below(max_mss / 2)
        };
        let max_payload = (65_535 - (hdr_len - 14)) as u64;
        let payload = if mss < 128 {
            1 + rng.below(mss * 40)
        } else {
            1 + rng.below(max_payload)
        };
        let s = Spec {
            v6,
            ip_options,
            tcp_options,
            payload: payload as usize,
            mss: mss as u16,
            seq: rng.next_u64() as u32,
            ip_id: rng.next_u64() as u16,
            fin: rng.chance(50),
            psh: rng.chance(50),
            cwr: rng.chance(50),
        };
        let n = segment_and_check(&s);
        assert!(n >= 1, "case {case}");
        segments += n;
    }
    assert!(segments > 3000, "{segments} segments checked");
}

#[test]
fn segments_can_be_taken_in_any_order_and_again() {
    let (mut frame, hdr, _) = linux_tso_frame(&Spec::new(false, 5000, 1000));
    let meta = transmit(&hdr, tso_both(), &mut frame);
    let Some(RxFrameKind::Gso(gso)) = RxFrame::classify(&frame, meta) else {
        panic!()
    };
    let seg = gso.segmenter();
    let mut a = [0u8; MAX_FRAME_SIZE];
    let mut b = [0u8; MAX_FRAME_SIZE];
    let third = seg.segment_into(3, &mut a).unwrap().bytes().to_vec();
    seg.segment_into(0, &mut b).unwrap();
    let again = seg.segment_into(3, &mut b).unwrap().bytes().to_vec();
    assert_eq!(
        third, again,
        "segment 3 does not depend on what came before"
    );
}

// ── Hostile headers ───────────────────────────────────────────────────

/// A valid TCP/IPv4 frame (8 bytes of IP options, 12 of TCP options)
/// and its header; headers end at 14 + 28 + 32 = 74.
fn base4() -> (Vec<u8>, NetHdr) {
    let (f, h, _) = linux_tso_frame(&Spec::new(false, 3000, 1000));
    (f, h)
}

fn base6() -> (Vec<u8>, NetHdr) {
    let (f, h, _) = linux_tso_frame(&Spec::new(true, 3000, 1000));
    (f, h)
}

fn set16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// `frame` cut to `len` bytes, its IPv4 total length made to match.
fn truncated4(frame: &[u8], len: usize) -> Vec<u8> {
    let mut f = frame[..len].to_vec();
    if len >= 18 {
        set16(&mut f, 16, (len - 14) as u16);
    }
    f
}

#[test]
fn a_valid_header_gives_the_real_header_length_whatever_hdr_len_says() {
    let (f, h) = base4();
    for hint in [0u16, 1, 54, 74, 1514, 0xffff] {
        let hdr = NetHdr {
            hdr_len: U16::new(hint),
            ..h
        };
        assert_eq!(
            validate(&hdr, tso_both(), &f),
            Ok(FrameMeta::Gso {
                kind: GsoKind::Tcp4,
                hdr_len: 74,
                gso_size: 1000,
                start: 42,
                offset: 16
            }),
            "hdr_len {hint}"
        );
    }
    let (f6, h6) = base6();
    assert_eq!(
        validate(&h6, tso_both(), &f6),
        Ok(FrameMeta::Gso {
            kind: GsoKind::Tcp6,
            hdr_len: 14 + 40 + 32,
            gso_size: 1000,
            start: 54,
            offset: 16
        })
    );
}

#[test]
fn hostile_header_fields_are_each_refused_with_their_error() {
    let (f, h) = base4();
    let with = |change: fn(&mut NetHdr)| {
        let mut hdr = h;
        change(&mut hdr);
        validate(&hdr, tso_both(), &f)
    };
    type Change = fn(&mut NetHdr);
    let cases: Vec<(Change, HeaderError)> = vec![
        (|h| h.gso_type = GSO_UDP, HeaderError::GsoType(GSO_UDP)),
        (
            |h| h.gso_type = GSO_UDP_L4,
            HeaderError::GsoType(GSO_UDP_L4),
        ),
        (|h| h.gso_type = 2, HeaderError::GsoType(2)),
        (|h| h.gso_type = 6, HeaderError::GsoType(6)),
        (|h| h.gso_type = 0x7f, HeaderError::GsoType(0x7f)),
        (|h| h.gso_type = GSO_ECN, HeaderError::GsoType(GSO_ECN)),
        (|h| h.gso_type = 0xff, HeaderError::GsoType(0xff)),
        (
            |h| h.gso_type = GSO_TCPV4 | GSO_ECN,
            HeaderError::GsoEcn(GSO_TCPV4 | GSO_ECN),
        ),
        (|h| h.flags = 0, HeaderError::GsoWithoutChecksum),
        (
            |h| h.flags = HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID,
            HeaderError::Flags(HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID),
        ),
        (
            |h| h.gso_size = U16::new(0),
            HeaderError::SegmentTooSmall(0),
        ),
        (
            |h| h.gso_size = U16::new(63),
            HeaderError::SegmentTooSmall(63),
        ),
        (
            |h| h.gso_size = U16::new(1514 - 74 + 1),
            HeaderError::SegmentTooLong {
                gso_size: 1441,
                hdr_len: 74,
            },
        ),
        (
            |h| h.gso_size = U16::new(0xffff),
            HeaderError::SegmentTooLong {
                gso_size: 0xffff,
                hdr_len: 74,
            },
        ),
        (
            |h| h.csum_start = U16::new(41),
            HeaderError::ChecksumStart {
                start: 41,
                expected: 42,
            },
        ),
        (
            |h| h.csum_start = U16::new(34),
            HeaderError::ChecksumStart {
                start: 34,
                expected: 42,
            },
        ),
        (
            |h| h.csum_start = U16::new(0xffff),
            HeaderError::ChecksumStart {
                start: 0xffff,
                expected: 42,
            },
        ),
        (
            |h| h.csum_offset = U16::new(6),
            HeaderError::ChecksumOffset(6),
        ),
        (
            |h| h.csum_offset = U16::new(17),
            HeaderError::ChecksumOffset(17),
        ),
    ];
    for (i, (change, want)) in cases.into_iter().enumerate() {
        assert_eq!(with(change), Err(want), "case {i}");
    }
    // The largest segment size that fits is accepted.
    assert!(with(|h| h.gso_size = U16::new(1514 - 74)).is_ok());
}

#[test]
fn gso_is_refused_unless_negotiated_for_its_ip_version() {
    let (f4, h4) = base4();
    let (f6, h6) = base6();
    let only4 = TxOffload::negotiated(features(CSUM | HOST_TSO4));
    let only6 = TxOffload::negotiated(features(CSUM | HOST_TSO6));
    assert!(validate(&h4, only4, &f4).is_ok());
    assert!(validate(&h6, only6, &f6).is_ok());
    assert_eq!(
        validate(&h6, only4, &f6),
        Err(HeaderError::GsoNotNegotiated(GSO_TCPV6))
    );
    assert_eq!(
        validate(&h4, only6, &f4),
        Err(HeaderError::GsoNotNegotiated(GSO_TCPV4))
    );
    let csum_only = TxOffload::negotiated(features(CSUM));
    assert_eq!(
        validate(&h4, csum_only, &f4),
        Err(HeaderError::GsoNotNegotiated(GSO_TCPV4))
    );
    assert_eq!(
        validate(&h4, TxOffload::checksum_only(true), &f4),
        Err(HeaderError::GsoNotNegotiated(GSO_TCPV4))
    );
    // HOST_TSO4 without the CSUM it requires: NEEDS_CSUM is refused.
    let tso_no_csum = TxOffload::negotiated(features(HOST_TSO4 | HOST_TSO6));
    assert!(!tso_no_csum.tso(GsoKind::Tcp4));
    assert_eq!(
        validate(&h4, tso_no_csum, &f4),
        Err(HeaderError::ChecksumNotNegotiated)
    );
    // The checksum-only check refuses every GSO type.
    assert_eq!(
        TxHeader::validate(&h4, true, f4.len()),
        Err(HeaderError::GsoNotNegotiated(GSO_TCPV4))
    );
}

#[test]
fn hostile_frames_are_each_refused_with_their_error() {
    let (f, h) = base4();
    let (f6, h6) = base6();
    let mut h6_on_4 = h;
    h6_on_4.gso_type = GSO_TCPV6;
    let check = |frame: &[u8], hdr: &NetHdr, want: HeaderError, what: &str| {
        assert_eq!(validate(hdr, tso_both(), frame), Err(want), "{what}");
    };
    let changed = |frame: &[u8], at: usize, v: u8| {
        let mut c = frame.to_vec();
        c[at] = v;
        c
    };
    check(
        &changed(&f, 12, 0x86),
        &h,
        HeaderError::EtherType(0x8600),
        "ethertype 0x8600",
    );
    let mut vlan = f.clone();
    set16(&mut vlan, 12, 0x8100);
    check(&vlan, &h, HeaderError::EtherType(0x8100), "VLAN tag");
    check(
        &f,
        &h6_on_4,
        HeaderError::EtherType(0x0800),
        "TCPV6 on IPv4",
    );
    let mut h4_on_6 = h6;
    h4_on_6.gso_type = GSO_TCPV4;
    check(
        &f6,
        &h4_on_6,
        HeaderError::EtherType(0x86dd),
        "TCPV4 on IPv6",
    );
    check(
        &changed(&f, 14, 0x67),
        &h,
        HeaderError::IpVersion(6),
        "v6 byte",
    );
    check(&changed(&f, 14, 0x44), &h, HeaderError::Ipv4Ihl(4), "IHL 4");
    check(&changed(&f, 14, 0x40), &h, HeaderError::Ipv4Ihl(0), "IHL 0");
    let mut mf = f.clone();
    set16(&mut mf, 20, 0x2000);
    check(&mf, &h, HeaderError::Ipv4Fragment(0x2000), "MF");
    let mut offset = f.clone();
    set16(&mut offset, 20, 0x4001);
    check(&offset, &h, HeaderError::Ipv4Fragment(0x4001), "offset");
    check(&changed(&f, 23, 17), &h, HeaderError::NotTcp(17), "UDP");
    for delta in [-1i32, 1, -1000] {
        let mut bad = f.clone();
        let field = (f.len() as i32 - 14 + delta) as u16;
        set16(&mut bad, 16, field);
        let expected = f.len() - 14;
        check(
            &bad,
            &h,
            HeaderError::IpLength { field, expected },
            "total length",
        );
    }
    check(
        &changed(&f6, 14, 0x40),
        &h6,
        HeaderError::IpVersion(4),
        "v4",
    );
    check(
        &changed(&f6, 20, 0),
        &h6,
        HeaderError::Ipv6NextHeader(0),
        "hop-by-hop",
    );
    check(
        &changed(&f6, 20, 43),
        &h6,
        HeaderError::Ipv6NextHeader(43),
        "routing header",
    );
    check(
        &changed(&f6, 20, 17),
        &h6,
        HeaderError::Ipv6NextHeader(17),
        "UDP",
    );
    let mut jumbo = f6.clone();
    set16(&mut jumbo, 18, 0);
    check(
        &jumbo,
        &h6,
        HeaderError::IpLength {
            field: 0,
            expected: f6.len() - 54,
        },
        "payload length 0",
    );
    // TCP data offset (byte 12 of the TCP header at 42).
    check(
        &changed(&f, 54, 0x40),
        &h,
        HeaderError::TcpDataOffset(4),
        "4",
    );
    check(
        &changed(&f, 54, 0x00),
        &h,
        HeaderError::TcpDataOffset(0),
        "0",
    );
    // A data offset of 15 words (60 bytes) past a 10-byte payload.
    let short = truncated4(&f, 74 + 10);
    check(
        &changed(&short, 54, 0xf0),
        &h,
        HeaderError::HeadersOutside { end: 102, len: 84 },
        "TCP header past the frame",
    );
    // Truncated frames (IP length made to match).
    for (len, end) in [
        (0, 14),
        (13, 14),
        (14, 34),
        (33, 34),
        (41, 42),
        (42, 62),
        (61, 62),
        (73, 74),
    ] {
        check(
            &truncated4(&f, len),
            &h,
            HeaderError::HeadersOutside { end, len },
            "truncated",
        );
    }
    check(
        &truncated4(&f, 74),
        &h,
        HeaderError::GsoNoPayload,
        "no payload",
    );
    let too_long = vec![0u8; MAX_GSO_FRAME_SIZE + 1];
    check(
        &too_long,
        &h,
        HeaderError::GsoFrameTooLong(MAX_GSO_FRAME_SIZE + 1),
        "too long",
    );
}

#[test]
fn the_receive_side_refuses_metadata_the_frame_does_not_bear_out() {
    let (mut f, h) = base4();
    let meta = transmit(&h, tso_both(), &mut f);
    assert!(matches!(
        RxFrame::classify(&f, meta),
        Some(RxFrameKind::Gso(_))
    ));
    let FrameMeta::Gso {
        kind,
        hdr_len,
        gso_size,
        start,
        offset,
    } = meta
    else {
        unreachable!()
    };
    let wrong = [
        FrameMeta::Gso {
            kind: GsoKind::Tcp6,
            hdr_len,
            gso_size,
            start,
            offset,
        },
        FrameMeta::Gso {
            kind,
            hdr_len: hdr_len - 4,
            gso_size,
            start,
            offset,
        },
        FrameMeta::Gso {
            kind,
            hdr_len,
            gso_size: 1514 - hdr_len + 1,
            start,
            offset,
        },
        FrameMeta::Gso {
            kind,
            hdr_len,
            gso_size,
            start: start - 4,
            offset: offset + 4,
        },
    ];
    for (i, m) in wrong.into_iter().enumerate() {
        assert!(RxFrame::classify(&f, m).is_none(), "case {i}");
    }
    // The same bytes with a damaged IP header are refused too.
    let mut bad = f.clone();
    bad[23] = 17;
    assert!(RxFrame::classify(&bad, meta).is_none());
}

// ── Receive segmentation offload ──────────────────────────────────────

#[test]
fn a_gso_frame_goes_whole_only_to_a_driver_that_negotiated_its_kind() {
    assert!(GuestTso::negotiated(features(GUEST_CSUM)).is_none());
    assert!(
        GuestTso::negotiated(features(GUEST_TSO4 | GUEST_TSO6)).is_none(),
        "GUEST_TSO without the GUEST_CSUM it requires"
    );
    let only4 = GuestTso::negotiated(features(GUEST_CSUM | GUEST_TSO4)).unwrap();
    let only6 = GuestTso::negotiated(features(GUEST_CSUM | GUEST_TSO6)).unwrap();
    let (mut f4, h4) = base4();
    let (mut f6, h6) = base6();
    let m4 = transmit(&h4, tso_both(), &mut f4);
    let m6 = transmit(&h6, tso_both(), &mut f6);
    let Some(RxFrameKind::Gso(g4)) = RxFrame::classify(&f4, m4) else {
        panic!()
    };
    let Some(RxFrameKind::Gso(g6)) = RxFrame::classify(&f6, m6) else {
        panic!()
    };
    assert!(g6.deliverable_to(&only4).is_none());
    assert!(g4.deliverable_to(&only6).is_none());
    let d = g4.deliverable_to(&only4).unwrap();
    assert_eq!(d.frame(), &f4[..], "the frame as it was sent");
    assert_eq!(
        d.header(1),
        NetHdr {
            flags: HDR_F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: U16::new(74),
            gso_size: U16::new(1000),
            csum_start: U16::new(42),
            csum_offset: U16::new(16),
            num_buffers: U16::new(1),
        }
    );
    let d6 = g6.deliverable_to(&only6).unwrap();
    assert_eq!(d6.header(2).gso_type, GSO_TCPV6);
    assert_eq!(d6.header(2).hdr_len.get(), 14 + 40 + 32);
    assert_eq!(d6.header(2).num_buffers.get(), 2);
}

// ── Through the switch: two simulated drivers ───────────────────────────

use hypervisor::net::NetSwitch;
use hypervisor::platform;
use hypervisor::virtio::VirtioMmioTransport;
use hypervisor::virtio::net::{NET_HDR_LEN, RX_QUEUE, TX_QUEUE, VirtioNet, drain_rx};
use support::{Buf, Driver};
use zerocopy::{FromBytes, IntoBytes};

/// VM `vm` on `sw`, initialised with every feature its device offers;
/// without offloads if `plain`.
fn driver(sw: &'static NetSwitch, vm: usize, plain: bool) -> Driver<VirtioNet> {
    let mut drv = support::net_vm_raw(sw, vm);
    if plain {
        let net = VirtioNet::with_switch(vm, sw).without_offloads();
        let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
        drv.dev = VirtioMmioTransport::new(base, intid, net);
    }
    drv.handshake_all(&[256, 256]);
    drv
}

/// Sends header + frame in one readable descriptor and notifies.
fn send_packet(drv: &mut Driver<VirtioNet>, hdr: &NetHdr, frame: &[u8]) {
    let mut bytes = hdr.as_bytes().to_vec();
    bytes.extend_from_slice(frame);
    let addr = drv.alloc(bytes.len() as u64);
    drv.mem.write(addr, &bytes).unwrap();
    drv.add_chain(TX_QUEUE, &[Buf::r(addr, bytes.len() as u32)]);
    drv.notify(TX_QUEUE);
}

/// Posts `n` receive buffers of `len` bytes; returns their addresses.
fn post(drv: &mut Driver<VirtioNet>, n: usize, len: u32) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let addr = drv.alloc(u64::from(len));
            drv.add_chain(RX_QUEUE, &[Buf::w(addr, len)]);
            addr
        })
        .collect()
}

fn drain(drv: &mut Driver<VirtioNet>) -> u32 {
    let ring = drv
        .dev
        .backend()
        .switch()
        .ring(drv.dev.backend().port())
        .unwrap();
    drv.with_ctx(|dev, ctx| drain_rx(dev, ring, ctx)).delivered
}

/// The (header, frame) pairs the driver received into `bufs`.
fn received(drv: &mut Driver<VirtioNet>, bufs: &[u64]) -> Vec<(NetHdr, Vec<u8>)> {
    let used = drv.take_used(RX_QUEUE);
    used.iter()
        .map(|&(id, len)| {
            let addr = bufs[id as usize % bufs.len()];
            let bytes = drv.read_mem(addr, len as usize);
            let hdr = NetHdr::read_from_bytes(&bytes[..NET_HDR_LEN]).unwrap();
            (hdr, bytes[NET_HDR_LEN..].to_vec())
        })
        .collect()
}

#[test]
fn through_the_switch_a_tso_frame_is_cut_for_a_plain_driver_even_across_buffer_shortages() {
    let sw = support::new_switch();
    let mut vm0 = driver(sw, 0, false);
    let mut vm1 = driver(sw, 1, true);
    assert_eq!(
        vm1.dev.backend().offered_features() & (CSUM | GUEST_TSO4),
        0
    );
    let s = Spec::new(false, 10_000, 1400);
    let (frame, hdr, payload) = linux_tso_frame(&s);
    send_packet(&mut vm0, &hdr, &frame);
    assert_eq!(sw.port_stats(0).tx_frames, 1, "{}", sw.port_stats(0));
    assert_eq!(sw.ring(1).unwrap().len(), 1, "queued whole");
    // Three buffers only: three segments go in, the frame stays queued.
    let count = s.payload.div_ceil(1400);
    let mut bufs = post(&mut vm1, 3, 1526);
    assert_eq!(drain(&mut vm1), 3);
    assert_eq!(sw.ring(1).unwrap().len(), 1);
    bufs.extend(post(&mut vm1, 16, 1526));
    assert_eq!(drain(&mut vm1) as usize, count - 3);
    assert!(sw.ring(1).unwrap().is_empty());
    let got = received(&mut vm1, &bufs);
    assert_eq!(got.len(), count);
    assert!(
        got.iter().all(|(h, _)| h.flags == 0 && h.gso_type == 0),
        "plain frames"
    );
    let segments: Vec<Vec<u8>> = got.into_iter().map(|(_, f)| f).collect();
    let hdr_len = 14 + 20 + 8 + 20 + 12;
    check_segments(&s, &frame, hdr_len, &payload, &segments);
    let st = sw.port_stats(1);
    assert_eq!(
        (st.rx_segmented, st.rx_frames, st.drops()),
        (1, count as u64, 0)
    );
}

#[test]
fn through_the_switch_a_tso_frame_goes_whole_to_a_tso_driver() {
    let sw = support::new_switch();
    let mut vm0 = driver(sw, 0, false);
    let mut vm1 = driver(sw, 1, false);
    let s = Spec::new(true, 30_000, 1428);
    let (frame, hdr, _) = linux_tso_frame(&s);
    send_packet(&mut vm0, &hdr, &frame);
    // Mergeable buffers as Linux posts them at first (1518 bytes each):
    // the frame spreads over as many as it needs, in one delivery.
    let bufs = post(&mut vm1, 40, 1518);
    assert_eq!(drain(&mut vm1), 1);
    let used = vm1.take_used(RX_QUEUE);
    let needed = (NET_HDR_LEN + frame.len()).div_ceil(1518);
    assert_eq!(used.len(), needed);
    let mut bytes = Vec::new();
    for &(id, len) in &used {
        bytes.extend(vm1.read_mem(bufs[id as usize % bufs.len()], len as usize));
    }
    let got = NetHdr::read_from_bytes(&bytes[..NET_HDR_LEN]).unwrap();
    assert_eq!(usize::from(got.num_buffers.get()), needed);
    assert_eq!((got.flags, got.gso_type), (HDR_F_NEEDS_CSUM, GSO_TCPV6));
    assert_eq!(got.gso_size.get(), 1428);
    assert_eq!(
        usize::from(got.hdr_len.get()),
        14 + 40 + 20 + 12,
        "the real header length"
    );
    assert_eq!((got.csum_start.get(), got.csum_offset.get()), (54, 16));
    assert_eq!(&bytes[NET_HDR_LEN..], &frame[..], "the frame as sent");
    assert_eq!(sw.port_stats(1).rx_segmented, 0);
}
