//! `VIRTIO_F_EVENT_IDX` (virtio 1.2 2.7.7, 2.7.10) through the MMIO
//! transport, both directions, with a simulated driver that decides its
//! notifications the way Linux's `virtqueue_kick_prepare` does, across the
//! 16-bit index wrap: virtio-net TX completions, RX deliveries, and the
//! notifications the device asks for with `avail_event`.

mod support;

use hypervisor::net::{MacAddr, NetSwitch, PortConfig};
use hypervisor::virtio::net::{NET_HDR_LEN, RX_QUEUE, TX_QUEUE, VirtioNet, drain_rx};
use hypervisor::virtio::regs::feature;
use support::{Buf, Driver, new_switch};

const RX: u16 = RX_QUEUE;
const TX: u16 = TX_QUEUE;

/// VM `vm`'s device on `sw`, Live with `EVENT_IDX` and queues of `size`.
fn vm(sw: &'static NetSwitch, vm: usize, size: u16) -> Driver<VirtioNet> {
    let mut drv = support::net_vm_raw(sw, vm);
    drv.handshake_event_idx(&[size, size]);
    let features = drv.dev.backend().features().unwrap();
    assert!(features.contains(feature::EVENT_IDX));
    drv
}

fn mac(vm: usize) -> MacAddr {
    VirtioNet::mac_for_vm(vm)
}

/// Header + a 60-byte frame from VM 0 to VM 1 whose byte 14 is `tag`.
fn packet(tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; NET_HDR_LEN + 60];
    p[NET_HDR_LEN..NET_HDR_LEN + 6].copy_from_slice(&mac(1));
    p[NET_HDR_LEN + 6..NET_HDR_LEN + 12].copy_from_slice(&mac(0));
    p[NET_HDR_LEN + 14] = tag;
    p
}

/// Whether moving an index from `old` to `new` passed `event`, written as
/// the plain definition (offset of the event from `old` smaller than the
/// distance moved), independent of the device's formula.
fn passes(event: u16, old: u16, new: u16) -> bool {
    event.wrapping_sub(old) < new.wrapping_sub(old)
}

/// TX across the wrap of both indices: the driver publishes batches of 1
/// to 5 chains and kicks only when `avail_event` says so (exactly once per
/// batch, on its first chain, because the device asks for the next publish
/// after every batch); it sets `used_event` somewhere before, inside or
/// after each batch and gets an interrupt exactly when the device's used
/// index passed it. Every frame arrives, in order.
#[test]
fn tx_notifications_follow_both_event_indices_across_the_wrap() {
    let sw = new_switch();
    let mut drv = vm(sw, 0, 8);
    // A port for the destination, so every frame lands in its ring.
    sw.add_port(1, PortConfig::locked_to(mac(1))).unwrap();
    let ring = sw.ring(1).unwrap();
    let slots: Vec<u64> = (0..8)
        .map(|_| drv.alloc((NET_HDR_LEN + 60) as u64))
        .collect();
    let (mut avail, mut used) = (0u16, 0u16);
    let (mut kicks, mut interrupts, mut expected_interrupts) = (0u32, 0u32, 0u32);
    let mut sent = 0u32;
    let mut frame = [0u8; 1600];
    let mut round = 0u32;
    while sent < 70_000 {
        let batch = 1 + round % 5;
        // Where the driver wants its next interrupt, relative to the used
        // index now: 0..=6 (so before, inside or after the batch).
        let want = used.wrapping_add((round % 7) as u16);
        drv.set_used_event(TX, want);
        let mut kicked = false;
        for k in 0..batch {
            let tag = (sent + k) as u8;
            let addr = slots[((sent + k) % 8) as usize];
            drv.mem.write(addr, &packet(tag)).unwrap();
            drv.add_chain(TX, &[Buf::r(addr, (NET_HDR_LEN + 60) as u32)]);
            let old = avail;
            avail = avail.wrapping_add(1);
            // Linux: publish, fence, read avail_event, kick if passed.
            if passes(drv.avail_event(TX), old, avail) {
                assert_eq!(k, 0, "only the first chain of a batch needs a kick");
                kicked = true;
            }
        }
        assert!(kicked, "round {round}: a batch without a kick would stall");
        kicks += 1;
        let edges_before = drv.edges();
        drv.notify(TX);
        let new_used = used.wrapping_add(batch as u16);
        assert_eq!(drv.used_idx(TX), new_used);
        // The first decision interrupts; later ones exactly when passed.
        if round == 0 || passes(want, used, new_used) {
            expected_interrupts += 1;
        }
        interrupts += drv.edges() - edges_before;
        assert_eq!(interrupts, expected_interrupts, "round {round}");
        assert_eq!(
            drv.avail_event(TX),
            avail,
            "device asks for the next publish"
        );
        drv.take_used(TX);
        used = new_used;
        for k in 0..batch {
            let n = ring.take(&mut frame).expect("frame forwarded");
            assert_eq!(n, 60);
            assert_eq!(frame[14], (sent + k) as u8);
        }
        sent += batch;
        round += 1;
    }
    assert!(avail < 10_000 && used == avail, "indices wrapped: {avail}");
    assert_eq!(kicks, round);
    assert!(interrupts < round, "used_event suppressed some interrupts");
    // used_event 0..=6 ahead against batches of 1..=5: 15 of 35 pass.
    assert!(interrupts > round / 3, "and let the others through");
}

/// RX across the wrap: the driver keeps 4 buffers posted and asks for an
/// interrupt at a moving `used_event`; `drain_rx` delivers one to three
/// frames per batch and interrupts exactly when the used index passed it.
/// A refill never kicks while buffers are in reserve (the device did not
/// find the ring empty); once the device ran out of buffers with a frame
/// waiting, the next refill kicks and that notify delivers the frame.
#[test]
fn rx_interrupts_follow_used_event_across_the_wrap() {
    let sw = new_switch();
    let mut rx = vm(sw, 1, 4);
    sw.add_port(0, PortConfig::locked_to(mac(0))).unwrap();
    let ring = sw.ring(1).unwrap();
    let bufs: Vec<u64> = (0..4).map(|_| rx.alloc(1600)).collect();
    let mut posted = 0u32;
    for &b in &bufs {
        rx.add_chain(RX, &[Buf::w(b, 1600)]);
        posted += 1;
    }
    let (mut used, mut delivered) = (0u16, 0u32);
    let (mut interrupts, mut expected) = (0u32, 0u32);
    let mut refill_kicks = 0u32;
    let mut round = 0u32;
    while delivered < 66_000 {
        let batch = 1 + round % 3;
        for k in 0..batch {
            let tag = (delivered + k) as u8;
            let mut f = packet(tag)[NET_HDR_LEN..].to_vec();
            f[14] = tag;
            assert!(sw.forward(0, &f) & (1 << 1) != 0);
        }
        let want = used.wrapping_add((round % 5) as u16);
        rx.set_used_event(RX, want);
        let before = rx.edges();
        let outcome = rx.with_ctx(|dev, ctx| drain_rx(dev, ring, ctx));
        assert_eq!(outcome.delivered, batch);
        assert_eq!(outcome.remaining, 0);
        let new_used = used.wrapping_add(batch as u16);
        if round == 0 || passes(want, used, new_used) {
            expected += 1;
        }
        interrupts += rx.edges() - before;
        assert_eq!(interrupts, expected, "round {round}");
        for (k, (id, len)) in rx.take_used(RX).into_iter().enumerate() {
            assert_eq!(len as usize, NET_HDR_LEN + 60);
            let b = bufs[id as usize % 4];
            let got = rx.read_mem(b + NET_HDR_LEN as u64 + 14, 1)[0];
            assert_eq!(got, (delivered + k as u32) as u8);
            // Refill the buffer; kick only if avail_event says so.
            let old = posted as u16;
            rx.add_chain(RX, &[Buf::w(b, 1600)]);
            posted += 1;
            if passes(rx.avail_event(RX), old, posted as u16) {
                refill_kicks += 1;
                rx.notify(RX);
            }
        }
        used = new_used;
        delivered += batch;
        round += 1;
    }
    assert!(used < 1000, "used index wrapped: {used}");
    assert!(interrupts < round && interrupts > round / 3);
    assert_eq!(refill_kicks, 0, "buffers were always in reserve");

    // Starve the device: 5 frames for 4 buffers. The fifth waits in the
    // port ring, the device found the RX ring empty and asked for the next
    // publish: the first refill kicks and its notify delivers the frame.
    for k in 0..5u8 {
        let mut f = packet(k)[NET_HDR_LEN..].to_vec();
        f[14] = 200 + k;
        sw.forward(0, &f);
    }
    let outcome = rx.with_ctx(|dev, ctx| drain_rx(dev, ring, ctx));
    assert_eq!((outcome.delivered, outcome.remaining), (4, 1));
    let done = rx.take_used(RX);
    let old = posted as u16;
    let (id, _) = done[0];
    rx.add_chain(RX, &[Buf::w(bufs[id as usize % 4], 1600)]);
    posted += 1;
    assert!(
        passes(rx.avail_event(RX), old, posted as u16),
        "refill kicks"
    );
    rx.notify(RX);
    assert_eq!(ring.len(), 0, "the waiting frame was delivered on the kick");
    let (id, len) = rx.take_used(RX)[0];
    assert_eq!(len as usize, NET_HDR_LEN + 60);
    let got = rx.read_mem(bufs[id as usize % 4] + NET_HDR_LEN as u64 + 14, 1)[0];
    assert_eq!(got, 204);
    // The next refills find the device not waiting: no kicks.
    for &(id, _) in &done[1..] {
        let old = posted as u16;
        rx.add_chain(RX, &[Buf::w(bufs[id as usize % 4], 1600)]);
        posted += 1;
        assert!(!passes(rx.avail_event(RX), old, posted as u16));
    }
}
