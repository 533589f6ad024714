//! virtio-net through the MMIO transport with simulated drivers: TX split
//! anywhere, RX through `drain_rx` and RX notifies, hostile chains,
//! undersized buffers, bursts, ring-full drops, interrupt suppression,
//! reset with frames queued, kicks, the source-MAC lock, the attach helper,
//! a two-VM exchange and the transmit rate limit's backpressure.

mod support;

use hypervisor::devices::{DeviceManager, NetAttachError, attach_virtio_net_to};
use hypervisor::mmio::AccessSize;
use std::sync::atomic::{AtomicU64, Ordering};

use hypervisor::net::{
    BROADCAST, Clock, MAX_FRAME_SIZE, MAX_PORTS, MacAddr, NetSwitch, PortConfig, PortError,
};
use hypervisor::platform;
use hypervisor::virtio::VirtioMmioTransport;
use hypervisor::virtio::net::feature::MRG_RXBUF;
use hypervisor::virtio::net::{
    DrainOutcome, NET_HDR_LEN, NetDeviceReport, NetHdr, OFFERED_FEATURES, RX_QUEUE, TX_QUEUE,
    VirtioNet, drain_rx, retry_tx,
};
use hypervisor::virtio::regs::{feature, offset};
use support::{Buf, Driver, XorShift, new_switch};
use zerocopy::IntoBytes;

const RX: u16 = RX_QUEUE;
const TX: u16 = TX_QUEUE;
/// What Linux posts without MRG_RXBUF: header + 1518 (Ethernet + VLAN).
const LINUX_RX_BUF: u32 = 12 + 1518;

/// VM `vm`'s device, initialised like Linux does (all features offered,
/// 256-entry queues).
fn vm(sw: &'static NetSwitch, vm: usize) -> Driver<VirtioNet> {
    let mut drv = support::net_vm_raw(sw, vm);
    drv.handshake_all(&[256, 256]);
    drv
}

/// VM `vm`'s device, initialised without `MRG_RXBUF` (one RX chain per
/// frame, as Linux without mergeable buffers; `tests/virtio_net_mrg.rs`
/// covers the merged path).
fn vm_plain(sw: &'static NetSwitch, vm: usize) -> Driver<VirtioNet> {
    let mut drv = support::net_vm_raw(sw, vm);
    let features = drv.device_features() & !feature::EVENT_IDX & !MRG_RXBUF;
    drv.handshake(features, &[256, 256]);
    drv
}

fn mac(vm: usize) -> MacAddr {
    VirtioNet::mac_for_vm(vm)
}

/// An Ethernet frame of `len` bytes with a payload pattern from `tag`.
fn eth(dst: MacAddr, src: MacAddr, len: usize, tag: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    if len > 14 {
        f[14] = tag;
    }
    f
}

/// Header + frame as the driver lays them out.
fn packet(frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; NET_HDR_LEN];
    p.extend_from_slice(frame);
    p
}

/// Puts `bytes` into readable descriptors cut at `cuts`; offers the chain.
fn tx_chain(drv: &mut Driver<VirtioNet>, bytes: &[u8], cuts: &[usize]) {
    let mut bufs = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
        if end > start {
            let addr = drv.alloc((end - start) as u64);
            drv.mem.write(addr, &bytes[start..end]).unwrap();
            bufs.push(Buf::r(addr, (end - start) as u32));
        }
        start = end;
    }
    drv.add_chain(TX, &bufs);
}

/// Sends `frame` in one descriptor (header included) and notifies.
fn send(drv: &mut Driver<VirtioNet>, frame: &[u8]) {
    tx_chain(drv, &packet(frame), &[]);
    drv.notify(TX);
}

/// Posts one writable buffer of `len` bytes filled with 0xee (no notify).
fn post_rx_quiet(drv: &mut Driver<VirtioNet>, len: u32) -> u64 {
    let buf = drv.alloc(u64::from(len));
    drv.mem.fill(buf, u64::from(len), 0xee).unwrap();
    drv.add_chain(RX, &[Buf::w(buf, len)]);
    buf
}

/// The run loop's RX drain for `drv`'s port.
fn drain(drv: &mut Driver<VirtioNet>) -> DrainOutcome {
    let port = drv.dev.backend().port();
    let ring = drv.dev.backend().switch().ring(port).unwrap();
    drv.with_ctx(|dev, ctx| drain_rx(dev, ring, ctx))
}

/// Takes every frame waiting in `port`'s ring of `sw`.
fn ring_frames(sw: &NetSwitch, port: usize) -> Vec<Vec<u8>> {
    let ring = sw.ring(port).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_FRAME_SIZE];
    while let Some(n) = ring.take(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// The packet delivered into the RX buffer at `addr` with used length `len`.
fn received(drv: &Driver<VirtioNet>, addr: u64, len: u32) -> (Vec<u8>, Vec<u8>) {
    let bytes = drv.read_mem(addr, len as usize);
    let (hdr, frame) = bytes.split_at(NET_HDR_LEN);
    (hdr.to_vec(), frame.to_vec())
}

// ── Negotiation and configuration ─────────────────────────────────────

#[test]
fn offers_exactly_its_features_and_two_256_queues() {
    let sw = new_switch();
    let mut drv = support::net_vm_raw(sw, 0);
    assert_eq!(drv.read(offset::DEVICE_ID), 1);
    assert_eq!(drv.device_features(), OFFERED_FEATURES | feature::EVENT_IDX);
    assert_eq!(
        OFFERED_FEATURES,
        feature::VERSION_1
            | (1 << 5)
            | (1 << 16)
            | (1 << 15)
            | 1
            | 2
            | (1 << 7)
            | (1 << 8)
            | (1 << 11)
            | (1 << 12),
        "VERSION_1 | MAC | STATUS | MRG_RXBUF | CSUM | GUEST_CSUM | GUEST_TSO4/6 | HOST_TSO4/6"
    );
    for (q, max) in [(0, 256), (1, 256), (2, 0)] {
        drv.write(offset::QUEUE_SEL, q);
        drv.set_status(support::ACK);
        assert_eq!(drv.read(offset::QUEUE_NUM_MAX), max, "queue {q}");
    }
    // Asking for ECN or UFO (not offered) is refused.
    assert!(!drv.negotiate(feature::VERSION_1 | (1 << 9)));
    assert!(!drv.negotiate(feature::VERSION_1 | (1 << 14)));
    drv.handshake_all(&[256, 256]);
    assert_eq!(
        drv.dev.backend().features().map(|f| f.bits()),
        Some(OFFERED_FEATURES)
    );
}

#[test]
fn config_mac_and_status_at_widths_1_2_4() {
    let sw = new_switch();
    let mut drv = vm(sw, 3);
    let cfg = [0x52, 0x54, 0, 0, 0, 4, 1, 0];
    let bytes: Vec<u8> = (0..8)
        .map(|i| drv.read_sized(offset::CONFIG + i, AccessSize::Byte) as u8)
        .collect();
    assert_eq!(bytes, cfg);
    for i in (0..8).step_by(2) {
        assert_eq!(
            drv.read_sized(offset::CONFIG + i as u64, AccessSize::Half),
            u64::from(u16::from_le_bytes([cfg[i], cfg[i + 1]]))
        );
    }
    for i in (0..8).step_by(4) {
        assert_eq!(
            drv.read_sized(offset::CONFIG + i as u64, AccessSize::Word),
            u64::from(u32::from_le_bytes(cfg[i..i + 4].try_into().unwrap()))
        );
    }
    assert_eq!(drv.dev.stats().transport.registers.unknown_offset, 0);
    assert_eq!(drv.read_sized(offset::CONFIG + 8, AccessSize::Half), 0);
    assert_eq!(drv.read_sized(offset::CONFIG + 12, AccessSize::Word), 0);
    assert_eq!(drv.dev.stats().transport.registers.unknown_offset, 2);
}

// ── TX ───────────────────────────────────────────────────────────────

#[test]
fn tx_header_and_frame_split_at_every_point() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let _vm1 = vm(sw, 1);
    let frame = eth(mac(1), mac(0), 60, 7);
    let pkt = packet(&frame);
    let mut expected = 0;
    // Two descriptors, cut anywhere (cut 12: header alone, then frame).
    for cut in 1..pkt.len() {
        tx_chain(&mut vm0, &pkt, &[cut]);
        vm0.notify(TX);
        expected += 1;
        assert_eq!(ring_frames(sw, 1), vec![frame.clone()], "cut at {cut}");
    }
    // Three descriptors, cut at every pair of points around the header.
    for a in 1..16 {
        for b in a + 1..20 {
            tx_chain(&mut vm0, &pkt, &[a, b]);
            expected += 1;
        }
        vm0.notify(TX);
        let got = ring_frames(sw, 1);
        assert!(got.iter().all(|f| *f == frame), "cuts at {a}, b");
    }
    // Single descriptor.
    send(&mut vm0, &frame);
    expected += 1;
    assert_eq!(ring_frames(sw, 1), vec![frame.clone()]);
    let s = sw.port_stats(0);
    assert_eq!(s.tx_frames, expected);
    assert_eq!(s.tx_bytes, expected * 60);
    assert_eq!(s.drops(), 0);
    assert_eq!(sw.port_stats(1).rx_queued_frames, expected);
}

#[test]
fn tx_completes_with_length_zero_and_one_interrupt_per_notify() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let _vm1 = vm(sw, 1);
    for tag in 0..5 {
        tx_chain(&mut vm0, &packet(&eth(BROADCAST, mac(0), 100, tag)), &[]);
    }
    vm0.notify(TX);
    let used = vm0.take_used(TX);
    assert_eq!(used.len(), 5);
    assert!(used.iter().all(|&(_, len)| len == 0));
    assert_eq!(vm0.edges(), 1);
    assert_eq!(ring_frames(sw, 1).len(), 5);
    // Suppressed: completed, no interrupt.
    vm0.set_no_interrupt(TX, true);
    send(&mut vm0, &eth(BROADCAST, mac(0), 100, 9));
    assert_eq!(vm0.take_used(TX).len(), 1);
    assert_eq!(vm0.edges(), 1);
    assert_eq!(vm0.dev.stats().queues[TX as usize].interrupts_suppressed, 1);
}

#[test]
fn tx_hostile_chains_are_refused_counted_and_returned() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let _vm1 = vm(sw, 1);
    let frame = eth(BROADCAST, mac(0), 60, 1);
    // (a) A TX chain with a device-writable descriptor after the packet.
    let p = vm0.alloc(72);
    vm0.mem.write(p, &packet(&frame)).unwrap();
    let w = vm0.alloc(64);
    vm0.mem.fill(w, 64, 0xee).unwrap();
    vm0.add_chain(TX, &[Buf::r(p, 72), Buf::w(w, 64)]);
    // (b) Only a writable descriptor.
    vm0.add_chain(TX, &[Buf::w(w, 64)]);
    // (c) Shorter than the header, split in two.
    let h = vm0.alloc(8);
    vm0.add_chain(TX, &[Buf::r(h, 5), Buf::r(h + 5, 3)]);
    // (d) One byte too long.
    tx_chain(&mut vm0, &packet(&eth(BROADCAST, mac(0), 1515, 2)), &[700]);
    // (e) Header only: an empty frame; (f) 13 bytes: no Ethernet header.
    tx_chain(&mut vm0, &packet(&[]), &[]);
    tx_chain(&mut vm0, &packet(&frame[..13]), &[]);
    // (g) Exactly the maximum: fine.
    let max = eth(BROADCAST, mac(0), MAX_FRAME_SIZE, 3);
    tx_chain(&mut vm0, &packet(&max), &[12, 1000]);
    // (h) A zero-length descriptor: refused by the chain walk itself.
    vm0.add_chain(TX, &[Buf::r(p, 72), Buf::r(p, 0)]);
    vm0.notify(TX);

    let s = sw.port_stats(0);
    assert_eq!(s.tx_malformed, 3, "(a) (b) (c)");
    assert_eq!(s.tx_too_long, 1, "(d)");
    assert_eq!(s.tx_too_short, 2, "(e) (f)");
    assert_eq!(s.tx_frames, 1, "(g)");
    assert_eq!(ring_frames(sw, 1), vec![max]);
    let q = vm0.dev.stats().queues[TX as usize];
    assert_eq!(q.malformed.zero_length, 1, "(h)");
    let used = vm0.take_used(TX);
    assert_eq!(used.len(), 8, "every chain is returned");
    assert!(used.iter().all(|&(_, len)| len == 0));
    assert_eq!(vm0.read_mem(w, 64), vec![0xee; 64], "TX never writes");
    assert_eq!(vm0.edges(), 1);
}

// ── RX ───────────────────────────────────────────────────────────────

#[test]
fn rx_writes_header_then_frame_and_interrupts_once() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), 98, 4);
    send(&mut vm1, &frame);
    assert_eq!(vm1.dev.backend_mut().take_kicked_ports(), 0b01);
    assert_eq!(sw.ring(0).unwrap().len(), 1);
    let buf = post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    let out = drain(&mut vm0);
    assert_eq!(
        out,
        DrainOutcome {
            delivered: 1,
            dropped: 0,
            remaining: 0,
            live: true
        }
    );
    let used = vm0.take_used(RX);
    assert_eq!(used, vec![(0, 12 + 98)]);
    let (hdr, got) = received(&vm0, buf, used[0].1);
    assert_eq!(hdr, NetHdr::rx().as_bytes());
    assert_eq!(&hdr[10..12], &[1, 0], "num_buffers = 1");
    assert_eq!(got, frame);
    assert_eq!(vm0.read_mem(buf + 110, 8), vec![0xee; 8]);
    assert_eq!(vm0.edges(), 1);
    let s = sw.port_stats(0);
    assert_eq!((s.rx_frames, s.rx_bytes), (1, 98));
    // Nothing left: a drain touches nothing and raises nothing.
    assert_eq!(drain(&mut vm0).delivered, 0);
    assert_eq!(vm0.edges(), 1);
}

#[test]
fn rx_into_buffers_split_at_every_point() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frame = eth(mac(0), mac(1), 64, 5);
    let total = (NET_HDR_LEN + frame.len()) as u32;
    for cut in 1..total {
        send(&mut vm1, &frame);
        let a = vm0.alloc(u64::from(cut));
        let b = vm0.alloc(u64::from(total - cut + 10));
        vm0.add_chain(RX, &[Buf::w(a, cut), Buf::w(b, total - cut + 10)]);
        assert_eq!(drain(&mut vm0).delivered, 1, "cut at {cut}");
        assert_eq!(vm0.take_used(RX).last().unwrap().1, total);
        let mut bytes = vm0.read_mem(a, cut as usize);
        bytes.extend(vm0.read_mem(b, (total - cut) as usize));
        assert_eq!(&bytes[..NET_HDR_LEN], NetHdr::rx().as_bytes());
        assert_eq!(&bytes[NET_HDR_LEN..], &frame[..], "cut at {cut}");
    }
    // A maximum frame exactly fills the spec's minimum buffer (1526).
    let max = eth(mac(0), mac(1), MAX_FRAME_SIZE, 6);
    send(&mut vm1, &max);
    let buf = post_rx_quiet(&mut vm0, 1526);
    assert_eq!(drain(&mut vm0).delivered, 1);
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].1, 1526);
    assert_eq!(received(&vm0, buf, 1526).1, max);
}

#[test]
fn rx_undersized_buffer_is_returned_empty_and_the_frame_dropped() {
    let sw = new_switch();
    let mut vm0 = vm_plain(sw, 0);
    let mut vm1 = vm(sw, 1);
    let first = eth(mac(0), mac(1), 200, 1);
    let second = eth(mac(0), mac(1), 200, 2);
    send(&mut vm1, &first);
    send(&mut vm1, &second);
    let small = post_rx_quiet(&mut vm0, 12 + 199);
    let good = post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.dropped, out.remaining), (1, 1, 0));
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), 2);
    assert_eq!(used[0].1, 0, "nothing written into the small buffer");
    assert_eq!(
        vm0.read_mem(small, 211),
        vec![0xee; 211],
        "never half-filled"
    );
    assert_eq!(received(&vm0, good, used[1].1).1, second);
    let s = sw.port_stats(0);
    assert_eq!((s.rx_no_room, s.rx_frames), (1, 1));
    assert_eq!(vm0.edges(), 1);
}

#[test]
fn burst_waits_for_buffers_then_arrives_in_order() {
    const BURST: usize = 64;
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let frames: Vec<_> = (0..BURST)
        .map(|i| eth(mac(0), mac(1), 60 + i * 20, i as u8))
        .collect();
    for f in &frames {
        tx_chain(&mut vm1, &packet(f), &[]);
    }
    vm1.notify(TX);
    assert_eq!(sw.ring(0).unwrap().len(), BURST);
    // The run loop drains before the guest posted anything: frames wait.
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.remaining), (0, BURST));
    assert_eq!(vm0.edges(), 0);
    // Linux posts its buffers and notifies once: everything is injected in
    // that batch, in order, with one interrupt.
    let bufs: Vec<_> = (0..BURST)
        .map(|_| post_rx_quiet(&mut vm0, LINUX_RX_BUF))
        .collect();
    vm0.notify(RX);
    assert!(sw.ring(0).unwrap().is_empty());
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), BURST);
    for ((f, buf), (_, len)) in frames.iter().zip(&bufs).zip(&used) {
        assert_eq!(received(&vm0, *buf, *len).1, *f);
    }
    assert_eq!(vm0.edges(), 1);
    let s = sw.port_stats(0);
    assert_eq!(
        (s.rx_frames, s.rx_ring_full, s.drops()),
        (BURST as u64, 0, 0)
    );
}

#[test]
fn drain_injects_a_batch_with_one_interrupt_and_leaves_the_rest() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    for i in 0..10 {
        send(&mut vm1, &eth(mac(0), mac(1), 80, i));
    }
    let mut bufs: Vec<_> = (0..6)
        .map(|_| post_rx_quiet(&mut vm0, LINUX_RX_BUF))
        .collect();
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.remaining), (6, 4));
    assert_eq!(vm0.edges(), 1);
    bufs.extend((0..4).map(|_| post_rx_quiet(&mut vm0, LINUX_RX_BUF)));
    let out = drain(&mut vm0);
    assert_eq!((out.delivered, out.remaining), (4, 0));
    assert_eq!(vm0.edges(), 2);
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), 10);
    for (i, ((_, len), buf)) in used.iter().zip(&bufs).enumerate() {
        assert_eq!(received(&vm0, *buf, *len).1[14], i as u8, "in order");
    }
}

/// Fills port 0's ring to its last `room` full-size frames from an open
/// test port 3 (no VM behind it), so frames from VM 1 soon find it full.
fn fill_ring_of_vm0(sw: &NetSwitch, room: usize) {
    sw.add_port(3, PortConfig::OPEN).unwrap();
    let ring = sw.ring(0).unwrap();
    let per_frame = MAX_FRAME_SIZE.next_multiple_of(64);
    let frames = (ring.byte_capacity() / per_frame).min(ring.capacity()) - room - ring.len();
    for i in 0..frames {
        let f = eth(mac(0), [0x02, 0, 0, 0, 0, 3], MAX_FRAME_SIZE, i as u8);
        assert_eq!(sw.forward(3, &f), 0b0001, "prefill frame {i}");
    }
}

/// VM `vm` with a clock read from [`FAKE_NOW`] (microseconds), no rate
/// limit.
fn vm_with_clock(sw: &'static NetSwitch, vm: usize) -> Driver<VirtioNet> {
    let clock = Clock {
        now: fake_now,
        freq: 1_000_000,
    };
    let mut drv = support::net_vm_raw(sw, vm);
    let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
    drv.dev = VirtioMmioTransport::new(base, intid, VirtioNet::with_limits(vm, sw, 0, clock));
    drv.handshake_all(&[256, 256]);
    drv
}

#[test]
fn a_full_ring_makes_the_sender_wait_and_loses_nothing() {
    let _clock = FAKE_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    FAKE_NOW.store(1_000, Ordering::SeqCst);
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm_with_clock(sw, 1);
    fill_ring_of_vm0(sw, 6);
    let sent: Vec<_> = (0..10)
        .map(|i| eth(mac(0), mac(1), MAX_FRAME_SIZE, 100 + i))
        .collect();
    for f in &sent {
        tx_chain(&mut vm1, &packet(f), &[]);
    }
    vm1.notify(TX);
    // Six fit; the other four stay in VM 1's TX queue, unread.
    assert_eq!(vm1.take_used(TX).len(), 6);
    let s1 = sw.port_stats(1);
    assert_eq!((s1.tx_frames, s1.tx_waited, s1.drops()), (6, 1, 0));
    assert_eq!(sw.port_stats(0).rx_ring_full, 0);
    assert_eq!(sw.waiters(0), 0b0010);
    let retry = sw.tx_retry(1).expect("the sender waits");
    assert!(retry > 1_000 && retry <= 1_000 + 5_000, "{retry}");
    // A notify while the ring is still full takes nothing and counts no
    // new wait.
    vm1.notify(TX);
    assert!(vm1.take_used(TX).is_empty());
    assert_eq!(sw.port_stats(1).tx_waited, 1);
    // VM 0 takes frames: the waiting sender is to be woken, at once.
    let total = sw.ring(0).unwrap().len();
    let mut bufs: Vec<u64> = (0..total)
        .map(|_| post_rx_quiet(&mut vm0, LINUX_RX_BUF))
        .collect();
    assert_eq!(drain(&mut vm0).delivered as usize, total);
    assert_eq!(vm0.dev.backend_mut().take_kicked_ports(), 0b0010);
    assert_eq!(sw.tx_retry(1), Some(0));
    assert_eq!(sw.waiters(0), 0);
    assert!(vm1.with_ctx(|dev, ctx| retry_tx(dev, ctx, 2_000)));
    assert_eq!(vm1.take_used(TX).len(), 4);
    assert_eq!(sw.tx_retry(1), None);
    // Every frame arrives, in order, none dropped anywhere.
    bufs.extend((0..4).map(|_| post_rx_quiet(&mut vm0, LINUX_RX_BUF)));
    assert_eq!(drain(&mut vm0).delivered, 4);
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), total + 4);
    let from_vm1: Vec<Vec<u8>> = used
        .iter()
        .zip(&bufs)
        .map(|((_, len), buf)| received(&vm0, *buf, *len).1)
        .filter(|f| f[6..12] == mac(1))
        .collect();
    assert_eq!(from_vm1, sent, "all ten, intact and in order");
    let s0 = sw.port_stats(0);
    assert_eq!(s0.rx_frames, total as u64 + 4);
    assert_eq!((s0.drops(), sw.port_stats(1).drops()), (0, 0));
    assert_eq!(sw.port_stats(1).tx_frames, 10);
}

#[test]
fn a_receiver_that_takes_nothing_is_dropped_after_the_bound_and_others_go_on() {
    let _clock = FAKE_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let set = |t: u64| FAKE_NOW.store(t, Ordering::SeqCst);
    set(1_000);
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm_with_clock(sw, 1);
    let mut vm2 = vm(sw, 2);
    // VM 2 announces itself so that VM 1's frames for it are unicast.
    send(&mut vm2, &eth(BROADCAST, mac(2), 60, 0));
    assert_eq!(sw.lookup(&mac(2)), Some(2));
    fill_ring_of_vm0(sw, 2);
    for i in 0..5 {
        tx_chain(
            &mut vm1,
            &packet(&eth(mac(0), mac(1), MAX_FRAME_SIZE, i)),
            &[],
        );
    }
    tx_chain(&mut vm1, &packet(&eth(mac(2), mac(1), 80, 9)), &[]);
    vm1.notify(TX);
    assert_eq!(vm1.take_used(TX).len(), 2);
    // Before the bound: still waiting, nothing dropped.
    set(1_000 + 99_000);
    assert!(vm1.with_ctx(|dev, ctx| retry_tx(dev, ctx, 100_000)));
    assert!(vm1.take_used(TX).is_empty());
    assert_eq!(sw.port_stats(0).rx_stalled, 0);
    let retry = sw.tx_retry(1).unwrap();
    assert!(
        retry <= 1_000 + 100_000,
        "woken by the bound at the latest: {retry}"
    );
    // Past the bound (100 ms): VM 0 is stalled, its frames are dropped and
    // counted, and VM 1's frame for VM 2 goes through.
    set(1_000 + 100_000);
    assert!(vm1.with_ctx(|dev, ctx| retry_tx(dev, ctx, 101_000)));
    let _ = sw.tx_retry(1).map(|at| {
        assert!(at <= 101_000);
        vm1.with_ctx(|dev, ctx| retry_tx(dev, ctx, 101_000))
    });
    assert_eq!(vm1.take_used(TX).len(), 4);
    assert!(sw.is_stalled(0));
    assert_eq!(sw.port_stats(0).rx_stalled, 3);
    assert_eq!(sw.ring(2).unwrap().len(), 1, "the frame for VM 2");
    assert_eq!(sw.tx_retry(1), None);
    // Once VM 0 takes frames again it is no longer stalled: frames for it
    // queue (and wait) as before.
    post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    assert_eq!(drain(&mut vm0).delivered, 1);
    assert!(!sw.is_stalled(0));
    send(&mut vm1, &eth(mac(0), mac(1), 60, 7));
    assert_eq!(vm1.take_used(TX).len(), 1);
    assert_eq!(sw.port_stats(0).rx_stalled, 3);
    let _ = &mut vm2;
}

#[test]
fn rx_interrupt_suppression_is_honoured() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    vm0.set_no_interrupt(RX, true);
    send(&mut vm1, &eth(mac(0), mac(1), 60, 0));
    send(&mut vm1, &eth(mac(0), mac(1), 60, 1));
    post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    assert_eq!(drain(&mut vm0).delivered, 2);
    assert_eq!(vm0.take_used(RX).len(), 2);
    assert_eq!(vm0.edges(), 0);
    assert_eq!(vm0.dev.stats().queues[RX as usize].interrupts_suppressed, 1);
    vm0.set_no_interrupt(RX, false);
    send(&mut vm1, &eth(mac(0), mac(1), 60, 2));
    post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    assert_eq!(drain(&mut vm0).delivered, 1);
    assert_eq!(vm0.edges(), 1);
}

#[test]
fn reset_keeps_queued_frames_until_the_driver_is_back() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    send(&mut vm1, &eth(mac(0), mac(1), 60, 1));
    send(&mut vm1, &eth(mac(0), mac(1), 60, 2));
    vm0.set_status(0); // the driver resets the device
    // Frames keep arriving while the device is down.
    send(&mut vm1, &eth(mac(0), mac(1), 60, 3));
    let out = drain(&mut vm0);
    assert_eq!(
        out,
        DrainOutcome {
            delivered: 0,
            dropped: 0,
            remaining: 3,
            live: false
        }
    );
    assert_eq!(vm0.dev.backend().features(), None);
    // The driver re-initialises, then posts buffers.
    vm0.handshake_all(&[256, 256]);
    assert_eq!(drain(&mut vm0).remaining, 3, "no buffers yet");
    let bufs: Vec<_> = (0..3)
        .map(|_| post_rx_quiet(&mut vm0, LINUX_RX_BUF))
        .collect();
    vm0.notify(RX);
    let used = vm0.take_used(RX);
    assert_eq!(used.len(), 3);
    for (i, ((_, len), buf)) in used.iter().zip(&bufs).enumerate() {
        assert_eq!(received(&vm0, *buf, *len).1[14], i as u8 + 1);
    }
    assert_eq!(sw.port_stats(0).drops(), 0);
}

#[test]
fn rx_notify_with_nothing_queued_completes_nothing() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    vm0.notify(RX);
    assert_eq!(vm0.used_idx(RX), 0);
    assert_eq!(vm0.edges(), 0);
    assert_eq!(
        drain(&mut vm0),
        DrainOutcome {
            live: true,
            ..DrainOutcome::default()
        }
    );
}

// ── Switch behaviour through the devices ──────────────────────────────

#[test]
fn kicked_ports_name_the_receivers() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let mut vm2 = vm(sw, 2);
    send(&mut vm0, &eth(BROADCAST, mac(0), 60, 0));
    assert_eq!(vm0.dev.backend_mut().take_kicked_ports(), 0b110);
    assert_eq!(vm0.dev.backend_mut().take_kicked_ports(), 0);
    send(&mut vm2, &eth(mac(0), mac(2), 60, 0));
    assert_eq!(vm2.dev.backend_mut().take_kicked_ports(), 0b001);
    // VM 2 is learned now: unicast to it reaches port 2 only.
    send(&mut vm1, &eth(mac(2), mac(1), 60, 0));
    send(&mut vm1, &eth(mac(0), mac(1), 60, 0));
    assert_eq!(vm1.dev.backend_mut().take_kicked_ports(), 0b101);
    // A frame nobody can take kicks nobody.
    sw.remove_port(0);
    sw.remove_port(2);
    send(&mut vm1, &eth(BROADCAST, mac(1), 60, 0));
    assert_eq!(vm1.dev.backend_mut().take_kicked_ports(), 0);
    assert_eq!(sw.port_stats(1).tx_no_destination, 1);
}

#[test]
fn source_mac_lock_stops_a_guest_spoofing_another() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let mut vm2 = vm(sw, 2);
    send(&mut vm1, &eth(BROADCAST, mac(1), 60, 0));
    ring_frames(sw, 0);
    ring_frames(sw, 2);
    // VM 0 claims VM 1's MAC to steal its traffic.
    send(&mut vm0, &eth(BROADCAST, mac(1), 60, 0));
    send(&mut vm0, &eth(mac(2), [0x02, 0, 0, 0, 0, 9], 60, 0));
    assert_eq!(sw.port_stats(0).tx_mac_lock, 2);
    assert_eq!(vm0.dev.backend_mut().take_kicked_ports(), 0);
    assert_eq!(sw.lookup(&mac(1)), Some(1), "VM 1's entry is intact");
    // Traffic for VM 1 still reaches VM 1.
    send(&mut vm2, &eth(mac(1), mac(2), 60, 0));
    assert_eq!(ring_frames(sw, 1).len(), 1);
    assert!(ring_frames(sw, 0).is_empty());
}

#[test]
fn two_vms_exchange_frames_end_to_end() {
    let sw = new_switch();
    let mut vm0 = vm(sw, 0);
    let mut vm1 = vm(sw, 1);
    let b0 = post_rx_quiet(&mut vm0, LINUX_RX_BUF);
    let b1 = post_rx_quiet(&mut vm1, LINUX_RX_BUF);
    vm0.notify(RX);
    vm1.notify(RX);
    // VM 0 asks who has 10.0.0.2 (an ARP request: broadcast, 42 bytes).
    let mut arp = eth(BROADCAST, mac(0), 42, 0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    send(&mut vm0, &arp);
    let kicked = vm0.dev.backend_mut().take_kicked_ports();
    assert_eq!(kicked, 0b10);
    drain(&mut vm1);
    let (_, len) = vm1.take_used(RX)[0];
    assert_eq!(received(&vm1, b1, len).1, arp);
    // VM 1 answers with a unicast: it goes to port 0 only.
    let mut reply = eth(mac(0), mac(1), 42, 1);
    reply[12..14].copy_from_slice(&[0x08, 0x06]);
    send(&mut vm1, &reply);
    assert_eq!(vm1.dev.backend_mut().take_kicked_ports(), 0b01);
    drain(&mut vm0);
    let (_, len) = vm0.take_used(RX)[0];
    assert_eq!(received(&vm0, b0, len).1, reply);
    assert_eq!((vm0.edges(), vm1.edges()), (2, 2), "one TX, one RX each");
    let snapshot = sw.snapshot();
    assert_eq!(snapshot.entries().count(), 2);
    let text = snapshot.to_string();
    assert!(
        text.contains("port 0: mac-lock 52:54:00:00:00:01"),
        "{text}"
    );
    assert!(text.contains("  52:54:00:00:00:02 port 1 age 0"), "{text}");
    let dev = NetDeviceReport(&vm0.dev).to_string();
    assert!(
        dev.starts_with("virtio-net port 0 mac 52:54:00:00:00:01 live, ring 0/256, tx unlimited\n"),
        "{dev}"
    );
    assert!(dev.contains("q1: chains=1"), "{dev}");
    assert!(
        text.contains("tx 1 frames 42 bytes | rx 1 frames 42 bytes"),
        "{text}"
    );
}

#[test]
fn attach_helper_registers_the_device_and_a_locked_port() {
    let sw = new_switch();
    let mut dm = DeviceManager::new();
    attach_virtio_net_to(&mut dm, 1, sw).unwrap();
    let net = dm.virtio_net().unwrap();
    assert_eq!(net.intid(), 49);
    assert_eq!(net.backend().port(), 1);
    assert_eq!(
        sw.port_config(1),
        Some(PortConfig::locked_to([0x52, 0x54, 0, 0, 0, 2]))
    );
    // The device answers at slot 1.
    let mem = hypervisor::guest_memory::GuestMemory::empty();
    let mut irq = hypervisor::irq::RecordingIrqSink::new();
    let mut ctx = hypervisor::mmio::DeviceContext {
        mem: &mem,
        irq: &mut irq,
        vcpu: 0,
    };
    let id = dm.dispatch(
        0x0a00_0200 + offset::DEVICE_ID,
        AccessSize::Word,
        None,
        &mut ctx,
    );
    assert_eq!(id, Some(1));
    let mac5 = dm.dispatch(0x0a00_0305, AccessSize::Byte, None, &mut ctx);
    assert_eq!(mac5, Some(2));
    // Refusals change nothing.
    assert_eq!(
        attach_virtio_net_to(&mut dm, MAX_PORTS, sw),
        Err(NetAttachError::Port(PortError::OutOfRange {
            port: MAX_PORTS,
            ports: MAX_PORTS
        }))
    );
    assert!(matches!(
        attach_virtio_net_to(&mut dm, 2, sw),
        Err(NetAttachError::Device(_))
    ));
    assert_eq!(sw.port_config(2), None, "no port without a device");
    assert_eq!(dm.len(), 1);
}

// ── Randomized ───────────────────────────────────────────────────────

/// Random frame sizes, TX splits and RX buffer sizes (some too small),
/// RX by notify or by the run loop: every frame is delivered intact and in
/// order, dropped for lack of room (and counted), or still queued.
#[test]
fn randomized_traffic_is_delivered_or_counted() {
    let sw = new_switch();
    let mut vm0 = vm_plain(sw, 0);
    let mut vm1 = vm(sw, 1);
    let mut rng = XorShift::new(0x5eed_0001);
    let mut sent = Vec::new();
    let mut delivered = Vec::new();
    let mut no_room = 0usize;
    // Buffers posted and not yet used, in the order the device uses them.
    let mut posted = std::collections::VecDeque::new();
    for _round in 0..40 {
        for _ in 0..rng.below(6) {
            let len = 14 + rng.below((MAX_FRAME_SIZE - 13) as u64) as usize;
            let f = eth(mac(0), mac(1), len, sent.len() as u8);
            let pkt = packet(&f);
            let mut cuts: Vec<usize> = (0..rng.below(4))
                .map(|_| 1 + rng.below(pkt.len() as u64 - 1) as usize)
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            tx_chain(&mut vm1, &pkt, &cuts);
            sent.push(f);
        }
        vm1.notify(TX);
        for _ in 0..rng.below(6) {
            let len = if rng.chance(15) {
                12 + 1 + rng.below(200) as u32
            } else {
                LINUX_RX_BUF
            };
            posted.push_back((post_rx_quiet(&mut vm0, len), len));
        }
        if rng.chance(50) {
            vm0.notify(RX);
        } else {
            drain(&mut vm0);
        }
        for (_, len) in vm0.take_used(RX) {
            let (addr, cap) = posted.pop_front().unwrap();
            if len == 0 {
                no_room += 1;
                assert_eq!(vm0.read_mem(addr, cap as usize), vec![0xee; cap as usize]);
            } else {
                delivered.push(received(&vm0, addr, len).1);
            }
        }
    }
    let s = sw.port_stats(0);
    assert_eq!(s.rx_no_room, no_room as u64);
    assert_eq!(s.rx_frames, delivered.len() as u64);
    assert_eq!(s.rx_ring_full, 0);
    let queued = sw.ring(0).unwrap().len();
    assert_eq!(delivered.len() + no_room + queued, sent.len());
    assert!(
        !delivered.is_empty() && no_room > 0,
        "the seed exercises both"
    );
    // Delivered frames are the sent ones minus the dropped, in order.
    let mut it = sent.iter();
    for d in &delivered {
        assert!(it.any(|s| s == d), "delivered out of order or corrupted");
    }
}

/// The fake clock of the rate-limit and backpressure tests
/// (microseconds); a test that sets it holds [`FAKE_CLOCK`].
static FAKE_NOW: AtomicU64 = AtomicU64::new(0);

/// Serializes the tests that use [`FAKE_NOW`].
static FAKE_CLOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fake_now() -> u64 {
    FAKE_NOW.load(Ordering::SeqCst)
}

#[test]
fn rate_limit_holds_frames_in_the_queue_and_retry_sends_them() {
    let _clock = FAKE_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    const HZ: u64 = 1_000_000;
    let set = |t: u64| FAKE_NOW.store(t, Ordering::SeqCst);
    set(1_000);
    let sw = new_switch();
    // VM 0 limited to 1 Mbit/s = 125 000 bytes/s; burst: two full frames.
    let clock = Clock {
        now: fake_now,
        freq: HZ,
    };
    let mut vm0 = Driver::new(VirtioNet::with_switch(0, sw));
    let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
    vm0.dev = VirtioMmioTransport::new(base, intid, VirtioNet::with_limits(0, sw, 1, clock));
    vm0.intid = intid;
    sw.add_port(0, PortConfig::locked_to(mac(0)).with_rate(1))
        .unwrap();
    vm0.handshake_all(&[256, 256]);
    let _vm1 = vm(sw, 1);
    let burst = vm0.dev.backend().rate_limit().unwrap().burst();
    assert_eq!(burst, 2 * MAX_FRAME_SIZE as u64);
    for tag in 0..10 {
        tx_chain(&mut vm0, &packet(&eth(mac(1), mac(0), 1000, tag)), &[]);
    }
    vm0.notify(TX);
    // The burst (3028 bytes) admits four 1000-byte frames (the last one
    // overdraws); the other six stay in the available ring.
    assert_eq!(vm0.take_used(TX).len(), 4);
    let mut got: Vec<u8> = ring_frames(sw, 1).iter().map(|f| f[14]).collect();
    assert_eq!(got, vec![0, 1, 2, 3]);
    let retry = sw.tx_retry(0).expect("paused");
    assert!(retry > 1_000);
    assert_eq!(sw.port_stats(0).tx_rate_paused, 1);
    // A notify during the pause takes nothing and counts no new pause;
    // neither does a retry before its time.
    set(retry - 1);
    vm0.notify(TX);
    assert!(!vm0.with_ctx(|dev, ctx| retry_tx(dev, ctx, retry - 1)));
    assert!(vm0.take_used(TX).is_empty());
    assert_eq!(sw.port_stats(0).tx_rate_paused, 1);
    // From the retry time on, the run loop's retries drain the queue.
    let mut now = retry;
    let mut retries = 0u64;
    let mut completed = 4;
    while got.len() < 10 {
        set(now);
        assert!(vm0.with_ctx(|dev, ctx| retry_tx(dev, ctx, now)));
        retries += 1;
        got.extend(ring_frames(sw, 1).iter().map(|f| f[14]));
        completed += vm0.take_used(TX).len();
        match sw.tx_retry(0) {
            Some(t) => now = t,
            None => break,
        }
    }
    assert_eq!(got, (0..10).collect::<Vec<u8>>(), "every frame, in order");
    assert_eq!(completed, 10, "every chain completed once it was sent");
    // 10 000 bytes at 125 000 bytes/s after a 3028-byte burst: the last
    // frame left no earlier than the rate allows.
    let min = (10_000 - 1000 - burst) * HZ / 125_000;
    assert!(now - 1_000 >= min, "sent by {now}, rate allows {min}");
    let s = sw.port_stats(0);
    assert_eq!((s.tx_frames, s.drops(), s.tx_rate_dropped), (10, 0, 0));
    assert_eq!(s.tx_rate_paused, retries);
    // Nothing waits any more: no retry is due, and a reset forgets pauses.
    set(now + HZ);
    assert!(!vm0.with_ctx(|dev, ctx| retry_tx(dev, ctx, now + HZ)));
    let text = NetDeviceReport(&vm0.dev).to_string();
    assert!(
        text.contains("tx limit 125000 bytes/s burst 3028"),
        "{text}"
    );
}
