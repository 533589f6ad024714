//! virtio-net with `VIRTIO_NET_F_MRG_RXBUF` through the MMIO transport and
//! a simulated driver: a frame spread over several RX chains (single and
//! multi-descriptor), `num_buffers` and the used length of every chain,
//! frames waiting until enough buffers are posted (and the chains taken
//! meanwhile put back), a first buffer too small for the header, a frame
//! needing more chains than allowed, a malformed chain in the middle, and
//! random buffer sizes reassembled the way Linux does.

mod support;

use hypervisor::net::{MAX_FRAME_SIZE, MacAddr, NetSwitch};
use hypervisor::virtio::MAX_SPREAD_CHAINS;
use hypervisor::virtio::net::feature::MRG_RXBUF;
use hypervisor::virtio::net::{
    DrainOutcome, NET_HDR_LEN, NetHdr, RX_QUEUE, TX_QUEUE, VirtioNet, drain_rx,
};
use hypervisor::virtio::regs::feature;
use support::{Buf, Driver, XorShift, new_switch};
use zerocopy::{FromBytes, IntoBytes};

const RX: u16 = RX_QUEUE;
const TX: u16 = TX_QUEUE;

/// VM `vm`'s device on `sw`, negotiated with `MRG_RXBUF` (and without
/// `EVENT_IDX`, so interrupts follow the flag words).
fn vm(sw: &'static NetSwitch, vm: usize) -> Driver<VirtioNet> {
    let mut drv = support::net_vm_raw(sw, vm);
    let features = drv.device_features() & !feature::EVENT_IDX;
    assert_ne!(features & MRG_RXBUF, 0, "MRG_RXBUF is offered");
    drv.handshake(features, &[256, 256]);
    assert!(drv.dev.backend().features().unwrap().contains(MRG_RXBUF));
    drv
}

fn mac(vm: usize) -> MacAddr {
    VirtioNet::mac_for_vm(vm)
}

fn eth(dst: MacAddr, src: MacAddr, len: usize, tag: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ tag ^ (i >> 8) as u8)
        .collect();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// Sends `frame` from `drv` (one descriptor, header included).
fn send(drv: &mut Driver<VirtioNet>, frame: &[u8]) {
    let mut pkt = vec![0u8; NET_HDR_LEN];
    pkt.extend_from_slice(frame);
    let addr = drv.alloc(pkt.len() as u64);
    drv.mem.write(addr, &pkt).unwrap();
    drv.add_chain(TX, &[Buf::r(addr, pkt.len() as u32)]);
    drv.notify(TX);
}

/// One posted RX chain: its head and its writable descriptors.
#[derive(Clone, Debug)]
struct Posted {
    head: u16,
    parts: Vec<(u64, u32)>,
}

impl Posted {
    fn capacity(&self) -> u32 {
        self.parts.iter().map(|p| p.1).sum()
    }

    /// The first `len` bytes written into the chain, across descriptors.
    fn read(&self, drv: &Driver<VirtioNet>, len: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut left = len as usize;
        for &(addr, cap) in &self.parts {
            let n = left.min(cap as usize);
            out.extend(drv.read_mem(addr, n));
            left -= n;
        }
        assert_eq!(left, 0, "used length beyond the chain's capacity");
        out
    }
}

/// Posts one RX chain of writable descriptors of the given sizes, filled
/// with 0xee (no notify).
fn post(drv: &mut Driver<VirtioNet>, sizes: &[u32]) -> Posted {
    let parts: Vec<(u64, u32)> = sizes
        .iter()
        .map(|&len| {
            let addr = drv.alloc(u64::from(len));
            drv.mem.fill(addr, u64::from(len), 0xee).unwrap();
            (addr, len)
        })
        .collect();
    let bufs: Vec<Buf> = parts.iter().map(|&(a, l)| Buf::w(a, l)).collect();
    let head = drv.add_chain(RX, &bufs);
    Posted { head, parts }
}

fn drain(drv: &mut Driver<VirtioNet>) -> DrainOutcome {
    let port = drv.dev.backend().port();
    let ring = drv.dev.backend().switch().ring(port).unwrap();
    drv.with_ctx(|dev, ctx| drain_rx(dev, ring, ctx))
}

/// Reads the frames out of the used ring as Linux's `receive_mergeable`
/// does: the first chain's header says how many chains the frame has, and
/// the next `num_buffers - 1` used entries carry the rest. `posted` maps
/// heads to chains; returns each frame with its per-chain used lengths.
fn reassemble(
    drv: &Driver<VirtioNet>,
    used: &[(u32, u32)],
    posted: &[Posted],
) -> Vec<(Vec<u8>, Vec<u32>)> {
    let chain = |id: u32| posted.iter().find(|p| u32::from(p.head) == id).unwrap();
    let mut frames = Vec::new();
    let mut i = 0;
    while i < used.len() {
        let (id, len) = used[i];
        assert!(len as usize >= NET_HDR_LEN, "first chain holds the header");
        let bytes = chain(id).read(drv, len);
        let hdr = NetHdr::read_from_bytes(&bytes[..NET_HDR_LEN]).unwrap();
        let n = usize::from(hdr.num_buffers.get());
        assert_eq!(hdr, NetHdr::rx_merged(n as u16), "only num_buffers set");
        assert!(i + n <= used.len(), "all {n} chains are published together");
        let mut frame = bytes[NET_HDR_LEN..].to_vec();
        let mut lens = vec![len];
        for &(id, len) in &used[i + 1..i + n] {
            frame.extend(chain(id).read(drv, len));
            lens.push(len);
        }
        frames.push((frame, lens));
        i += n;
    }
    frames
}

#[test]
fn a_frame_spreads_over_small_chains_with_num_buffers_and_used_lengths() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), 1000, 7);
    send(&mut vm1, &frame);
    // 12 + 1000 = 1012 bytes: 256 + (100 + 156) + 256 + 244 of a 300.
    let posted = vec![
        post(&mut vm0, &[256]),
        post(&mut vm0, &[100, 156]),
        post(&mut vm0, &[256]),
        post(&mut vm0, &[300]),
        post(&mut vm0, &[300]),
    ];
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (1, 0, 0));
    let used = vm0.take_used(RX);
    let heads: Vec<u32> = used.iter().map(|u| u.0).collect();
    let want: Vec<u32> = posted[..4].iter().map(|p| u32::from(p.head)).collect();
    assert_eq!(heads, want, "the first four chains, in order");
    let lens: Vec<u32> = used.iter().map(|u| u.1).collect();
    assert_eq!(lens, [256, 256, 256, 244]);
    let frames = reassemble(&vm0, &used, &posted);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, frame);
    // Past the used length the last chain is untouched.
    assert_eq!(vm0.read_mem(posted[3].parts[0].0 + 244, 56), vec![0xee; 56]);
    assert_eq!(vm0.edges(), 1, "one interrupt for the frame");
    let s = sw.port_stats(0);
    assert_eq!((s.rx_frames, s.rx_bytes, s.rx_no_room), (1, 1000, 0));
}

#[test]
fn a_frame_that_fits_one_buffer_has_num_buffers_1() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frames: Vec<Vec<u8>> = [60usize, 1514, 14]
        .iter()
        .enumerate()
        .map(|(i, &len)| eth(mac(0), mac(1), len, i as u8))
        .collect();
    for f in &frames {
        send(&mut vm1, f);
    }
    // Linux's mergeable buffers are at least one full frame.
    let posted: Vec<Posted> = (0..3).map(|_| post(&mut vm0, &[1536])).collect();
    vm0.notify(RX);
    let used = vm0.take_used(RX);
    let lens: Vec<u32> = used.iter().map(|u| u.1).collect();
    assert_eq!(lens, [12 + 60, 12 + 1514, 12 + 14]);
    let got = reassemble(&vm0, &used, &posted);
    for ((frame, lens), want) in got.iter().zip(&frames) {
        assert_eq!(frame, want);
        assert_eq!(lens.len(), 1);
    }
}

#[test]
fn a_frame_waits_until_enough_chains_are_posted() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), MAX_FRAME_SIZE, 3);
    send(&mut vm1, &frame);
    // 1526 bytes need four 400-byte chains; post two.
    let mut posted = vec![post(&mut vm0, &[400]), post(&mut vm0, &[400])];
    vm0.notify(RX);
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (0, 0, 1));
    assert!(vm0.take_used(RX).is_empty(), "nothing returned");
    assert_eq!(vm0.edges(), 0);
    posted.push(post(&mut vm0, &[400]));
    posted.push(post(&mut vm0, &[400]));
    vm0.notify(RX);
    let used = vm0.take_used(RX);
    let heads: Vec<u32> = used.iter().map(|u| u.0).collect();
    let want: Vec<u32> = posted.iter().map(|p| u32::from(p.head)).collect();
    assert_eq!(heads, want, "the chains put back are taken again, in order");
    assert_eq!(
        used.iter().map(|u| u.1).collect::<Vec<_>>(),
        [400, 400, 400, 326]
    );
    assert_eq!(reassemble(&vm0, &used, &posted)[0].0, frame);
    assert_eq!(sw.port_stats(0).rx_frames, 1);
    assert_eq!(vm0.edges(), 1);
}

#[test]
fn a_first_chain_smaller_than_the_header_drops_the_frame() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let first = eth(mac(0), mac(1), 100, 1);
    let second = eth(mac(0), mac(1), 100, 2);
    send(&mut vm1, &first);
    send(&mut vm1, &second);
    let tiny = post(&mut vm0, &[NET_HDR_LEN as u32 - 1]);
    let good = post(&mut vm0, &[1536]);
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (1, 1, 0));
    let used = vm0.take_used(RX);
    assert_eq!(used[0], (u32::from(tiny.head), 0));
    assert_eq!(
        vm0.read_mem(tiny.parts[0].0, 11),
        vec![0xee; 11],
        "untouched"
    );
    let got = reassemble(&vm0, &used[1..], std::slice::from_ref(&good));
    assert_eq!(got[0].0, second);
    let s = sw.port_stats(0);
    assert_eq!((s.rx_frames, s.rx_no_room), (1, 1));
}

#[test]
fn a_frame_needing_too_many_chains_is_dropped_and_they_come_back_empty() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), MAX_FRAME_SIZE, 5);
    let next = eth(mac(0), mac(1), 64, 6);
    send(&mut vm1, &frame);
    send(&mut vm1, &next);
    // 1526 bytes in 16-byte chains would take 96 of them.
    let small: Vec<Posted> = (0..MAX_SPREAD_CHAINS + 4)
        .map(|_| post(&mut vm0, &[16]))
        .collect();
    let out = drain(&mut vm0);
    // The 64-byte frame then needs 76 bytes: 5 chains of 16, 4 left.
    assert_eq!((out.delivered, out.dropped, out.remaining), (0, 1, 1));
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), MAX_SPREAD_CHAINS);
    for (u, p) in used.iter().zip(&small) {
        assert_eq!(*u, (u32::from(p.head), 0), "returned with used length 0");
    }
    assert_eq!(sw.port_stats(0).rx_no_room, 1);
    let mut rest = small[MAX_SPREAD_CHAINS..].to_vec();
    rest.push(post(&mut vm0, &[16]));
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (1, 0, 0));
    let used = vm0.take_used(RX);
    assert_eq!(
        used.iter().map(|u| u.1).collect::<Vec<_>>(),
        [16, 16, 16, 16, 12]
    );
    assert_eq!(reassemble(&vm0, &used, &rest)[0].0, next);
}

#[test]
fn a_malformed_chain_after_the_first_drops_the_frame_and_is_counted() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), 500, 9);
    let next = eth(mac(0), mac(1), 60, 10);
    send(&mut vm1, &frame);
    send(&mut vm1, &next);
    let first = post(&mut vm0, &[256]);
    // A chain with a zero-length descriptor is malformed.
    let bad_addr = vm0.alloc(64);
    let bad = vm0.add_chain(RX, &[Buf::w(bad_addr, 0)]);
    let good = post(&mut vm0, &[1536]);
    let before = vm0.dev.stats().queues[usize::from(RX)].malformed.total();
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (1, 1, 0));
    let used = vm0.take_used(RX);
    assert_eq!(
        used[..2],
        [(u32::from(first.head), 0), (u32::from(bad), 0)],
        "the frame's chain empty, then the malformed one"
    );
    let after = vm0.dev.stats().queues[usize::from(RX)].malformed.total();
    assert_eq!(after - before, 1);
    let got = reassemble(&vm0, &used[2..], std::slice::from_ref(&good));
    assert_eq!(got[0].0, next);
}

/// Random frame sizes and random RX chains (1 to 3 descriptors, 12 to
/// 700 bytes each), drained by notify or by the run loop: every frame
/// arrives intact, in order, in as few chains as their sizes allow, each
/// chain but the last filled to capacity.
#[test]
fn random_chains_carry_every_frame_intact() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let mut rng = XorShift::new(0x3e4d_0002);
    let mut sent = Vec::new();
    let mut posted = Vec::new();
    let mut got = Vec::new();
    let mut multi = 0;
    for round in 0..200u32 {
        for _ in 0..rng.below(3) {
            let len = 14 + rng.below((MAX_FRAME_SIZE - 13) as u64) as usize;
            let f = eth(mac(0), mac(1), len, round as u8);
            send(&mut vm1, &f);
            sent.push(f);
        }
        // The driver reuses descriptors in a cycle of 256: keep fewer
        // than that outstanding.
        let outstanding: usize = posted.iter().map(|p: &Posted| p.parts.len()).sum();
        for _ in 0..if outstanding < 200 { rng.below(6) } else { 0 } {
            let sizes: Vec<u32> = (0..1 + rng.below(3))
                .map(|_| 12 + rng.below(689) as u32)
                .collect();
            posted.push(post(&mut vm0, &sizes));
        }
        if rng.chance(50) {
            vm0.notify(RX);
        } else {
            drain(&mut vm0);
        }
        let used = vm0.take_used(RX);
        for (frame, lens) in reassemble(&vm0, &used, &posted) {
            multi += usize::from(lens.len() > 1);
            assert_eq!(lens.iter().sum::<u32>() as usize, NET_HDR_LEN + frame.len());
            got.push(frame);
        }
        // Heads are reused by the driver only after use; keep the newest.
        posted.retain(|p| !used.iter().any(|u| u.0 == u32::from(p.head)));
    }
    assert_eq!(
        sw.port_stats(0).rx_no_room,
        0,
        "every first chain holds a header"
    );
    let queued = sw.ring(0).unwrap().len();
    assert_eq!(got.len() + queued, sent.len());
    assert_eq!(got, sent[..got.len()], "intact and in order");
    assert!(
        got.len() > 100 && multi > 50,
        "{} frames, {multi} merged",
        got.len()
    );
}

/// Each chain of a merged frame is filled to capacity before the next.
#[test]
fn chains_are_filled_in_order_to_capacity() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), 1200, 4);
    send(&mut vm1, &frame);
    let posted = vec![
        post(&mut vm0, &[13]),
        post(&mut vm0, &[200, 7]),
        post(&mut vm0, &[1]),
        post(&mut vm0, &[2000]),
    ];
    vm0.notify(RX);
    let used = vm0.take_used(RX);
    let caps: Vec<u32> = posted.iter().map(Posted::capacity).collect();
    assert_eq!(
        used.iter().map(|u| u.1).collect::<Vec<_>>(),
        [
            caps[0],
            caps[1],
            caps[2],
            1212 - caps[0] - caps[1] - caps[2]
        ]
    );
    let got = reassemble(&vm0, &used, &posted);
    assert_eq!(got[0].0, frame);
    assert_eq!(NetHdr::rx_merged(4).as_bytes()[10..], [4, 0]);
}

#[test]
fn chains_too_few_for_a_frame_stay_untouched_until_enough_come() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), 1385, 3);
    send(&mut vm1, &frame);
    // One 481-byte chain cannot hold header + 1385 bytes: the frame waits
    // and the chain is not written at all (not even in part).
    let small = post(&mut vm0, &[481]);
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (0, 0, 1));
    assert!(vm0.take_used(RX).is_empty());
    assert_eq!(
        vm0.read_mem(small.parts[0].0, 481),
        vec![0xee; 481],
        "untouched"
    );
    // With a second chain (three descriptors) it goes in, over both.
    let more = post(&mut vm0, &[481, 481, 481]);
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.remaining), (1, 0));
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), 2);
    let got = reassemble(&vm0, &used, &[small, more]);
    assert_eq!(got[0].0, frame);
}
