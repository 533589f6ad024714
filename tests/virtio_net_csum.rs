//! virtio-net transmit checksum offload (`VIRTIO_NET_F_CSUM`) through the
//! MMIO transport: frames built by an independent packet library
//! (`etherparse`: TCP with options and UDP, over IPv4 and IPv6, odd and
//! even lengths) are sent with the partial checksum Linux leaves
//! (pseudo-header sum in the field, `NEEDS_CSUM`, `csum_start` /
//! `csum_offset`), and arrive with the checksum the library computes;
//! hostile headers (every field out of range) are dropped, counted and
//! never forwarded. A receiver that negotiated `GUEST_CSUM` gets the
//! partial frame with `NEEDS_CSUM` and the checksum position (also in a
//! merged header, also from a flood that another receiver gets complete).

mod support;

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};
use hypervisor::net::{MacAddr, NetSwitch};
use hypervisor::virtio::net::feature::{CSUM, GUEST_CSUM};
use hypervisor::virtio::net::{NET_HDR_LEN, NetHdr, RX_QUEUE, TX_QUEUE, VirtioNet, drain_rx};
use hypervisor::virtio::regs::feature;
use support::{Buf, Driver, new_switch};
use support::{fold, words};
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, IntoBytes};

const RX: u16 = RX_QUEUE;
const TX: u16 = TX_QUEUE;

/// VM `vm`'s device on `sw`, negotiated with what it offers minus `drop`
/// (and `EVENT_IDX`).
fn vm_with(sw: &'static NetSwitch, vm: usize, drop: u64) -> Driver<VirtioNet> {
    let mut drv = support::net_vm_raw(sw, vm);
    let offered = drv.device_features();
    assert_eq!(offered & (CSUM | GUEST_CSUM), CSUM | GUEST_CSUM, "offered");
    drv.handshake(offered & !feature::EVENT_IDX & !drop, &[256, 256]);
    drv
}

fn mac(vm: usize) -> MacAddr {
    VirtioNet::mac_for_vm(vm)
}

/// Sends `frame` behind `hdr` (header and frame in separate descriptors).
fn send(drv: &mut Driver<VirtioNet>, hdr: &NetHdr, frame: &[u8]) {
    let h = drv.alloc(NET_HDR_LEN as u64);
    drv.mem.write(h, hdr.as_bytes()).unwrap();
    let f = drv.alloc(frame.len() as u64);
    drv.mem.write(f, frame).unwrap();
    drv.add_chain(
        TX,
        &[Buf::r(h, NET_HDR_LEN as u32), Buf::r(f, frame.len() as u32)],
    );
    drv.notify(TX);
}

/// Every frame waiting for `drv`, delivered (one 2 KiB buffer each), with
/// its header.
fn receive_with_headers(drv: &mut Driver<VirtioNet>) -> Vec<(NetHdr, Vec<u8>)> {
    let port = drv.dev.backend().port();
    let ring = drv.dev.backend().switch().ring(port).unwrap();
    // One buffer per waiting frame, so none is left over for the next call.
    let bufs: Vec<(u16, u64)> = (0..ring.len())
        .map(|_| {
            let b = drv.alloc(2048);
            (drv.add_chain(RX, &[Buf::w(b, 2048)]), b)
        })
        .collect();
    drv.with_ctx(|dev, ctx| drain_rx(dev, ring, ctx));
    drv.take_used(RX)
        .into_iter()
        .map(|(id, len)| {
            let addr = bufs.iter().find(|b| u32::from(b.0) == id).unwrap().1;
            let bytes = drv.read_mem(addr, len as usize);
            let hdr = NetHdr::read_from_bytes(&bytes[..NET_HDR_LEN]).unwrap();
            (hdr, bytes[NET_HDR_LEN..].to_vec())
        })
        .collect()
}

/// Every frame waiting for `drv`; each header must be the plain one.
fn receive_all(drv: &mut Driver<VirtioNet>) -> Vec<Vec<u8>> {
    receive_with_headers(drv)
        .into_iter()
        .map(|(hdr, frame)| {
            assert_eq!(hdr, NetHdr::rx(), "no flags on RX");
            frame
        })
        .collect()
}

/// Turns a complete frame into what Linux transmits with checksum
/// offload: the transport checksum field holds the folded pseudo-header
/// sum (not inverted); returns the header that says so.
fn make_partial(frame: &mut [u8]) -> NetHdr {
    let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let (pseudo, l3_len) = match &h.net {
        Some(NetHeaders::Ipv4(ip, _)) => (
            words(&ip.source) + words(&ip.destination) + u64::from(ip.protocol.0),
            ip.header_len(),
        ),
        Some(NetHeaders::Ipv6(ip, _)) => (
            words(&ip.source) + words(&ip.destination) + u64::from(ip.next_header.0),
            ip.header_len(),
        ),
        _ => panic!("not IP"),
    };
    let (l4_len, offset) = match &h.transport {
        Some(TransportHeader::Tcp(t)) => (t.header_len() + h.payload.slice().len(), 16),
        Some(TransportHeader::Udp(u)) => (usize::from(u.length), 6),
        _ => panic!("not TCP or UDP"),
    };
    let start = 14 + l3_len;
    let field = fold(pseudo + l4_len as u64);
    frame[start + offset..start + offset + 2].copy_from_slice(&field.to_be_bytes());
    NetHdr {
        flags: 1,
        csum_start: U16::new(start as u16),
        csum_offset: U16::new(offset as u16),
        ..NetHdr::default()
    }
}

/// The checksum in `frame`'s transport header and the one `etherparse`
/// computes for it.
fn checksums(frame: &[u8]) -> (u16, u16) {
    let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Tcp(t))) => {
            (t.checksum, t.calc_checksum_ipv4(ip, payload).unwrap())
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Tcp(t))) => {
            (t.checksum, t.calc_checksum_ipv6(ip, payload).unwrap())
        }
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) => {
            (u.checksum, u.calc_checksum_ipv4(ip, payload).unwrap())
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Udp(u))) => {
            (u.checksum, u.calc_checksum_ipv6(ip, payload).unwrap())
        }
        other => panic!("unexpected headers {other:?}"),
    }
}

const TCP_OPTIONS: [TcpOptionElement; 4] = [
    TcpOptionElement::MaximumSegmentSize(1460),
    TcpOptionElement::WindowScale(7),
    TcpOptionElement::SelectiveAcknowledgementPermitted,
    TcpOptionElement::Timestamp(0x0102_0304, 0x0506_0708),
];

/// The frames of the test: TCP with options and UDP over IPv4 and IPv6,
/// payloads of odd and even lengths up to a full frame.
fn frames(src: MacAddr, dst: MacAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, len) in [0usize, 1, 2, 101, 1000, 1400].into_iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
        let v4 = || PacketBuilder::ethernet2(src, dst).ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64);
        let v6 = || {
            PacketBuilder::ethernet2(src, dst).ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                64,
            )
        };
        let mut push = |write: &dyn Fn(&mut Vec<u8>)| {
            let mut f = Vec::new();
            write(&mut f);
            if f.len() <= 1514 {
                out.push(f);
            }
        };
        push(&|f| {
            v4().tcp(40000, 5201, 7 + i as u32, 64240)
                .options(&TCP_OPTIONS)
                .unwrap()
                .write(f, &payload)
                .unwrap()
        });
        push(&|f| {
            v6().tcp(40001, 5201, 9 + i as u32, 64240)
                .options(&TCP_OPTIONS[..2])
                .unwrap()
                .write(f, &payload)
                .unwrap()
        });
        push(&|f| v4().udp(5353, 5353).write(f, &payload).unwrap());
        push(&|f| v6().udp(5353, 5353).write(f, &payload).unwrap());
    }
    out
}

#[test]
fn partial_checksums_are_completed_as_an_independent_parser_computes_them() {
    let sw = new_switch();
    // The receiver did not negotiate GUEST_CSUM: the switch completes.
    let mut vm0 = vm_with(sw, 0, GUEST_CSUM);
    let mut vm1 = vm_with(sw, 1, 0);
    assert!(vm1.dev.backend().features().unwrap().contains(CSUM));
    let originals = frames(mac(1), mac(0));
    assert_eq!(originals.len(), 24);
    let mut got = Vec::new();
    for chunk in originals.chunks(4) {
        for original in chunk {
            let (stored, computed) = checksums(original);
            assert_eq!(stored, computed, "the library's frame is consistent");
            let mut partial = original.clone();
            let hdr = make_partial(&mut partial);
            assert_ne!(checksums(&partial).0, stored, "really partial");
            send(&mut vm1, &hdr, &partial);
        }
        got.extend(receive_all(&mut vm0));
    }
    assert_eq!(got.len(), originals.len());
    for (received, original) in got.iter().zip(&originals) {
        let (stored, computed) = checksums(received);
        assert_eq!(stored, computed, "checksum completed");
        assert_eq!(received, original, "and nothing else changed");
    }
    let s = sw.port_stats(1);
    assert_eq!((s.tx_frames, s.tx_bad_header), (24, 0));
}

#[test]
fn a_plain_header_forwards_the_frame_untouched() {
    let sw = new_switch();
    let mut vm0 = vm_with(sw, 0, 0);
    let mut vm1 = vm_with(sw, 1, 0);
    let mut frame = frames(mac(1), mac(0)).remove(4);
    // A wrong checksum is not the device's business without NEEDS_CSUM;
    // hdr_len and num_buffers are ignored on transmit.
    frame[50] ^= 0xff;
    let hdr = NetHdr {
        hdr_len: U16::new(54),
        num_buffers: U16::new(3),
        ..NetHdr::default()
    };
    send(&mut vm1, &hdr, &frame);
    assert_eq!(receive_all(&mut vm0), vec![frame]);
}

#[test]
fn hostile_headers_are_dropped_counted_and_never_forwarded() {
    let sw = new_switch();
    let mut vm0 = vm_with(sw, 0, GUEST_CSUM);
    let mut vm1 = vm_with(sw, 1, 0);
    let mut frame = frames(mac(1), mac(0)).remove(0);
    let good = make_partial(&mut frame);
    let len = frame.len() as u16;
    let with = |f: &dyn Fn(&mut NetHdr)| {
        let mut h = good;
        f(&mut h);
        h
    };
    let hostile = [
        with(&|h| h.flags = 2),       // DATA_VALID on TX
        with(&|h| h.flags = 4),       // RSC_INFO
        with(&|h| h.flags = 0x81),    // unknown bit
        with(&|h| h.gso_type = 1),    // TCPV4 without TSO
        with(&|h| h.gso_type = 0x80), // ECN bit alone
        with(&|h| h.gso_type = 0xff),
        with(&|h| h.gso_size = U16::new(1448)), // GSO size without GSO
        with(&|h| h.csum_start = U16::new(len)), // start past the end
        with(&|h| h.csum_start = U16::new(0xffff)),
        with(&|h| h.csum_offset = U16::new(len)), // field past the end
        with(&|h| h.csum_offset = U16::new(0xffff)),
        with(&|h| {
            // Field's last byte one past the end.
            h.csum_start = U16::new(len - 2);
            h.csum_offset = U16::new(1);
        }),
    ];
    for h in &hostile {
        send(&mut vm1, h, &frame);
    }
    let used = vm1.take_used(TX);
    assert_eq!(used.len(), hostile.len(), "every chain returned");
    assert!(used.iter().all(|u| u.1 == 0));
    assert!(receive_all(&mut vm0).is_empty(), "nothing forwarded");
    let s = sw.port_stats(1);
    assert_eq!((s.tx_bad_header, s.tx_frames), (hostile.len() as u64, 0));
    // The edge that is still inside, then the good header, go through.
    let edge = with(&|h| {
        h.csum_start = U16::new(len - 2);
        h.csum_offset = U16::new(0);
    });
    send(&mut vm1, &edge, &frame);
    send(&mut vm1, &good, &frame);
    let got = receive_all(&mut vm0);
    assert_eq!(got.len(), 2);
    assert_eq!(checksums(&got[1]).0, checksums(&got[1]).1);
    assert_eq!(sw.port_stats(1).tx_bad_header, hostile.len() as u64);
}

#[test]
fn needs_csum_without_csum_negotiated_is_refused() {
    let sw = new_switch();
    let mut vm0 = vm_with(sw, 0, GUEST_CSUM);
    let mut vm1 = vm_with(sw, 1, CSUM);
    assert!(!vm1.dev.backend().features().unwrap().contains(CSUM));
    let mut frame = frames(mac(1), mac(0)).remove(8);
    let hdr = make_partial(&mut frame);
    send(&mut vm1, &hdr, &frame);
    assert!(receive_all(&mut vm0).is_empty());
    assert_eq!(sw.port_stats(1).tx_bad_header, 1);
    send(&mut vm1, &NetHdr::default(), &frame);
    assert_eq!(
        receive_all(&mut vm0),
        vec![frame],
        "plain frames still pass"
    );
}

#[test]
fn a_guest_csum_port_gets_the_partial_frame_and_where_to_complete_it() {
    let sw = new_switch();
    let mut vm0 = vm_with(sw, 0, 0);
    let mut vm1 = vm_with(sw, 1, 0);
    assert!(vm0.dev.backend().features().unwrap().contains(GUEST_CSUM));
    for original in frames(mac(1), mac(0)) {
        let mut partial = original.clone();
        let sent = make_partial(&mut partial);
        send(&mut vm1, &sent, &partial);
        let got = receive_with_headers(&mut vm0);
        assert_eq!(got.len(), 1);
        let (hdr, frame) = &got[0];
        assert_eq!(frame, &partial, "handed on as it was sent");
        assert_eq!(
            (
                hdr.flags,
                hdr.csum_start,
                hdr.csum_offset,
                hdr.num_buffers.get()
            ),
            (1, sent.csum_start, sent.csum_offset, 1)
        );
        assert_eq!(
            (hdr.gso_type, hdr.gso_size.get(), hdr.hdr_len.get()),
            (0, 0, 0)
        );
    }
}

/// One broadcast, two receivers: each gets the form it negotiated.
#[test]
fn a_flooded_partial_frame_takes_each_receivers_form() {
    let sw = new_switch();
    let mut with = vm_with(sw, 0, 0);
    let mut without = vm_with(sw, 2, GUEST_CSUM);
    let mut sender = vm_with(sw, 1, 0);
    let original = frames(mac(1), [0xff; 6]).remove(16);
    let mut partial = original.clone();
    let hdr = make_partial(&mut partial);
    send(&mut sender, &hdr, &partial);
    let a = receive_with_headers(&mut with);
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].0.flags, &a[0].1), (1, &partial));
    assert_eq!(receive_all(&mut without), vec![original]);
}

/// With MRG_RXBUF a partial frame spread over small chains carries both
/// NEEDS_CSUM and num_buffers in its one header.
#[test]
fn a_partial_frame_over_merged_buffers_keeps_its_checksum_fields() {
    let sw = new_switch();
    let mut vm0 = vm_with(sw, 0, 0);
    let mut vm1 = vm_with(sw, 1, 0);
    let mut partial = frames(mac(1), mac(0)).remove(20);
    let sent = make_partial(&mut partial);
    send(&mut vm1, &sent, &partial);
    let need = NET_HDR_LEN + partial.len();
    let chains = need.div_ceil(512);
    let bufs: Vec<(u16, u64)> = (0..chains)
        .map(|_| {
            let b = vm0.alloc(512);
            (vm0.add_chain(RX, &[Buf::w(b, 512)]), b)
        })
        .collect();
    vm0.notify(RX);
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), chains);
    let mut bytes = Vec::new();
    for ((id, len), (head, addr)) in used.iter().zip(&bufs) {
        assert_eq!(*id, u32::from(*head));
        bytes.extend(vm0.read_mem(*addr, *len as usize));
    }
    let hdr = NetHdr::read_from_bytes(&bytes[..NET_HDR_LEN]).unwrap();
    assert_eq!(
        (hdr.flags, hdr.csum_start, hdr.csum_offset),
        (1, sent.csum_start, sent.csum_offset)
    );
    assert_eq!(usize::from(hdr.num_buffers.get()), chains);
    assert_eq!(&bytes[NET_HDR_LEN..], &partial[..]);
}
