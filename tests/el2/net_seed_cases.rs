//! The seed plan's three network unit tests (NetRxRing, VSwitch,
//! VirtioNet) with every one of their assertions, plus a few more switch
//! and configuration-space cases, written once as `fn() -> TestResult`.
//!
//! Included by the in-QEMU suite (`tests/el2/net_seed.rs`, `make run`) and
//! by the host test `tests/net_seed.rs`. No allocation: everything lives on
//! the stack (an 8-slot ring is 12 KiB) or in the hypervisor's statics.
#![allow(dead_code)]

use hypervisor::guest_memory::GuestMemory;
use hypervisor::irq::RecordingIrqSink;
use hypervisor::mmio::{AccessSize, DeviceContext, MmioDevice};
use hypervisor::net::{
    BROADCAST, MAC_TABLE_SIZE, MAX_FRAME_SIZE, MacAddr, NetRxRing, PORT_RX, PortConfig, VSWITCH,
    VSwitch,
};
use hypervisor::platform;
use hypervisor::selftest::TestResult;
use hypervisor::virtio::VirtioDevice;
use hypervisor::virtio::VirtioMmioTransport;
use hypervisor::virtio::net::VirtioNet;
use hypervisor::virtio::regs::offset;
use hypervisor::{check, check_eq};

/// The seed's ring depth.
const SEED_DEPTH: usize = 8;

/// A 64-byte frame `dst <- src`.
fn frame64(dst: MacAddr, src: MacAddr) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

// ── Seed Task 2: NetRxRing ───────────────────────────────────────────

/// Seed "NetRxRing Test", all 8 assertions, on an 8-slot ring.
pub fn net_rx_ring_seed() -> TestResult {
    let ring: NetRxRing<SEED_DEPTH> = NetRxRing::new();
    let mut buf = [0u8; MAX_FRAME_SIZE];

    // Test 1: empty ring take() -> None.
    check!(ring.take(&mut buf).is_none());

    // Test 2: store + take round trip.
    let frame = [0xAA; 64];
    check!(ring.store(&frame));
    check_eq!(ring.take(&mut buf), Some(64));
    check_eq!(buf[0], 0xAA);
    check_eq!(buf[63], 0xAA);

    // Test 3: take empties the ring.
    check!(ring.take(&mut buf).is_none());

    // Test 4: 8 frames fit an 8-slot ring.
    let frame = [0xBB; 100];
    for _ in 0..8 {
        check!(ring.store(&frame));
    }

    // Test 5: the 9th is refused.
    check!(!ring.store(&frame));

    // Test 6: take one, store one (wrap-around).
    check_eq!(ring.take(&mut buf), Some(100));
    check!(ring.store(&frame));
    Ok(())
}

// ── Seed Task 3: VSwitch ─────────────────────────────────────────────

/// The seed's "VSwitch Test" body, all 6 assertions, on any switch with at
/// least two ports (their rings must hold at least one frame).
pub fn vswitch_seed_on<const N: usize, const B: usize>(sw: &VSwitch<'_, N, B>) -> TestResult {
    // Setup: register 2 ports (open: the test sends from arbitrary MACs).
    sw.reset();
    check!(sw.add_port(0, PortConfig::OPEN).is_ok());
    check!(sw.add_port(1, PortConfig::OPEN).is_ok());
    let (Some(rx0), Some(rx1)) = (sw.ring(0), sw.ring(1)) else {
        check!(false);
        return Ok(());
    };
    let mut drain_buf = [0u8; MAX_FRAME_SIZE];
    while rx0.take(&mut drain_buf).is_some() {}
    while rx1.take(&mut drain_buf).is_some() {}

    let mac0 = [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x00];
    let mac1 = [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x01];
    let mut buf = [0u8; MAX_FRAME_SIZE];

    // Test 1: unknown unicast floods every port but the source.
    let frame0 = frame64([0x11, 0x22, 0x33, 0x44, 0x55, 0x66], mac0);
    sw.forward(0, &frame0);
    check!(rx1.take(&mut buf).is_some());
    check!(rx0.take(&mut buf).is_none());

    // Test 2: the source MAC was learned on port 0: precise forward.
    sw.forward(1, &frame64(mac0, mac1));
    check!(rx0.take(&mut buf).is_some());

    // Test 3: broadcast floods every port but the source.
    sw.forward(0, &frame64(BROADCAST, mac0));
    check!(rx1.take(&mut buf).is_some());
    check!(rx0.take(&mut buf).is_none());

    // Test 4: no self-delivery (destination learned on the source port).
    sw.forward(0, &frame64(mac0, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66]));
    check!(rx0.take(&mut buf).is_none());

    // Test 5: the MAC table holds 16 entries.
    sw.reset();
    check!(sw.add_port(0, PortConfig::OPEN).is_ok());
    check!(sw.add_port(1, PortConfig::OPEN).is_ok());
    while rx0.take(&mut drain_buf).is_some() {}
    while rx1.take(&mut drain_buf).is_some() {}
    for i in 0..16u8 {
        sw.forward(0, &frame64(BROADCAST, [0x02, 0, 0, 0, 0, i]));
    }
    while rx1.take(&mut drain_buf).is_some() {}
    sw.forward(
        1,
        &frame64([0x02, 0, 0, 0, 0, 0x00], [0x02, 0, 0, 0, 0, 0xFF]),
    );
    check!(rx0.take(&mut buf).is_some());
    // Beyond the seed: all 16 are really in the table, on port 0, and the
    // last frame went to port 0 only (a lookup, not a flood).
    for i in 0..16u8 {
        check_eq!(sw.lookup(&[0x02, 0, 0, 0, 0, i]), Some(0));
    }
    check!(rx1.is_empty());
    sw.reset();
    Ok(())
}

/// The seed's VSwitch test on a fresh switch with two 8-slot rings.
pub fn vswitch_seed() -> TestResult {
    let rings: [NetRxRing<SEED_DEPTH>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    vswitch_seed_on(&sw)
}

/// The seed's VSwitch test on the hypervisor's own `VSWITCH` / `PORT_RX`
/// (reset before and after).
pub fn vswitch_seed_global() -> TestResult {
    let result = vswitch_seed_on(&VSWITCH);
    VSWITCH.reset();
    check!(PORT_RX.iter().all(NetRxRing::is_empty));
    result
}

// ── Seed Task 4: VirtioNet ───────────────────────────────────────────

/// Seed "VirtioNet Device Test", all 8 assertions (the features are also
/// checked as the transport offers them).
pub fn virtio_net_seed() -> TestResult {
    let net = VirtioNet::new(0);

    // Test 1: device ID.
    check_eq!(VirtioNet::DEVICE_ID, 1);

    // Test 2: VERSION_1 | MAC | STATUS | MRG_RXBUF | CSUM | GUEST_CSUM
    // (+ the transport's EVENT_IDX), no GSO.
    let version_1: u64 = 1 << 32;
    let event_idx: u64 = 1 << 29;
    let mac: u64 = 1 << 5;
    let status: u64 = 1 << 16;
    let mrg_rxbuf: u64 = 1 << 15;
    let csum: u64 = 1 << 0;
    let guest_csum: u64 = 1 << 1;
    let features = net.device_features();
    check_eq!(features & version_1, version_1);
    check_eq!(features & mac, mac);
    check_eq!(features & status, status);
    check_eq!(features & csum, csum);
    check_eq!(features & guest_csum, guest_csum);
    let tso: u64 = (1 << 7) | (1 << 8) | (1 << 11) | (1 << 12); // GUEST_TSO4/6, HOST_TSO4/6
    check_eq!(features & tso, tso);
    check_eq!(features & ((1 << 9) | (1 << 13)), 0); // no ECN
    let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
    let transport = VirtioMmioTransport::new(base, intid, VirtioNet::new(0));
    check_eq!(
        transport.offered_features(),
        version_1 | event_idx | mac | status | mrg_rxbuf | csum | guest_csum | tso
    );

    // Test 3: two queues (RX, TX), 256 entries each.
    check_eq!(VirtioNet::QUEUE_COUNT, 2);
    check_eq!(transport.queue_max_size(0), 256);
    check_eq!(transport.queue_max_size(1), 256);
    check_eq!(transport.queue_max_size(2), 0);

    // Test 4: MAC bytes of VM 0: 52:54:00:00:00:01.
    let mut byte = [0u8; 1];
    check!(net.read_config(0, &mut byte));
    check_eq!(byte[0], 0x52);
    check!(net.read_config(5, &mut byte));
    check_eq!(byte[0], 0x01);

    // Test 5: status = LINK_UP.
    let mut half = [0u8; 2];
    check!(net.read_config(6, &mut half));
    check_eq!(u16::from_le_bytes(half), 1);

    // Test 6: mac_for_vm.
    check_eq!(
        VirtioNet::mac_for_vm(0),
        [0x52, 0x54, 0x00, 0x00, 0x00, 0x01]
    );
    check_eq!(
        VirtioNet::mac_for_vm(1),
        [0x52, 0x54, 0x00, 0x00, 0x00, 0x02]
    );
    Ok(())
}

// ── Beyond the seed ──────────────────────────────────────────────────

/// The configuration space through the MMIO transport at every width
/// Linux uses; unaligned and out-of-range reads are refused and counted.
pub fn config_reads_at_every_width() -> TestResult {
    let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
    check_eq!((base, intid), (0x0a00_0200, 49));
    let mut dev = VirtioMmioTransport::new(base, intid, VirtioNet::new(1));
    let mem = GuestMemory::empty();
    let mut irq = RecordingIrqSink::new();
    let mut ctx = DeviceContext {
        mem: &mem,
        irq: &mut irq,
        vcpu: 0,
    };
    let cfg = [0x52u8, 0x54, 0, 0, 0, 2, 1, 0];
    check_eq!(dev.read(offset::DEVICE_ID, AccessSize::Word, &mut ctx), 1);
    for (i, want) in (0u64..).zip(cfg) {
        check_eq!(
            dev.read(offset::CONFIG + i, AccessSize::Byte, &mut ctx),
            u64::from(want)
        );
    }
    for i in (0u64..8).step_by(2) {
        let want = u16::from_le_bytes([cfg[i as usize], cfg[i as usize + 1]]);
        check_eq!(
            dev.read(offset::CONFIG + i, AccessSize::Half, &mut ctx),
            u64::from(want)
        );
    }
    check_eq!(
        dev.read(offset::CONFIG, AccessSize::Word, &mut ctx),
        0x0000_5452
    );
    check_eq!(
        dev.read(offset::CONFIG + 4, AccessSize::Word, &mut ctx),
        0x0001_0200
    );
    let registers = dev.stats().transport.registers;
    check_eq!(registers.bad_width + registers.unknown_offset, 0);
    // Past the end: 0, counted.
    check_eq!(dev.read(offset::CONFIG + 8, AccessSize::Byte, &mut ctx), 0);
    check_eq!(dev.read(offset::CONFIG + 8, AccessSize::Word, &mut ctx), 0);
    check_eq!(dev.stats().transport.registers.unknown_offset, 2);
    // Unaligned: 0, counted.
    check_eq!(dev.read(offset::CONFIG + 5, AccessSize::Half, &mut ctx), 0);
    check_eq!(dev.stats().transport.registers.bad_width, 1);
    // Read-only: a write changes nothing and is counted.
    dev.write(offset::CONFIG, AccessSize::Byte, 0xff, &mut ctx);
    check_eq!(dev.read(offset::CONFIG, AccessSize::Byte, &mut ctx), 0x52);
    check_eq!(dev.stats().transport.registers.wrong_direction, 1);
    Ok(())
}

/// A locked VM port drops (and counts) frames with another source MAC, so
/// a guest cannot steal another VM's MAC table entry.
pub fn mac_lock_drops_spoofed_frames() -> TestResult {
    let rings: [NetRxRing<SEED_DEPTH>; 3] = [const { NetRxRing::new() }; 3];
    let sw = VSwitch::new(&rings);
    let macs = [
        VirtioNet::mac_for_vm(0),
        VirtioNet::mac_for_vm(1),
        VirtioNet::mac_for_vm(2),
    ];
    for (port, mac) in macs.iter().enumerate() {
        check!(sw.add_port(port, PortConfig::locked_to(*mac)).is_ok());
    }
    // VM 1 announces itself.
    check_eq!(sw.forward(1, &frame64(BROADCAST, macs[1])), 0b101);
    check_eq!(sw.lookup(&macs[1]), Some(1));
    // VM 2 pretends to be VM 1: dropped, counted, the entry stays.
    check_eq!(sw.forward(2, &frame64(BROADCAST, macs[1])), 0);
    check_eq!(sw.forward(2, &frame64(macs[0], macs[1])), 0);
    check_eq!(sw.port_stats(2).tx_mac_lock, 2);
    check_eq!(sw.port_stats(2).tx_frames, 0);
    check_eq!(sw.lookup(&macs[1]), Some(1));
    // Its own MAC is fine.
    check_eq!(sw.forward(2, &frame64(macs[1], macs[2])), 0b010);
    check_eq!(sw.port_stats(2).tx_frames, 1);
    check_eq!(sw.port_stats(1).rx_queued_frames, 1);
    Ok(())
}

/// A full MAC table evicts its oldest (least recently refreshed) entry.
pub fn mac_table_full_evicts_oldest() -> TestResult {
    let rings: [NetRxRing<1>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    check!(sw.add_port(0, PortConfig::OPEN).is_ok());
    check!(sw.add_port(1, PortConfig::OPEN).is_ok());
    let mac = |i: usize| [0x02, 0, 0, 0, (i >> 8) as u8, i as u8];
    for i in 0..MAC_TABLE_SIZE {
        sw.forward(0, &frame64(BROADCAST, mac(i)));
    }
    check_eq!(sw.snapshot().entries().count(), MAC_TABLE_SIZE);
    check_eq!(sw.snapshot().evictions, 0);
    // Refresh entry 0; entry 1 is now the oldest.
    sw.forward(0, &frame64(BROADCAST, mac(0)));
    sw.forward(1, &frame64(BROADCAST, mac(1000)));
    check_eq!(sw.lookup(&mac(1000)), Some(1));
    check_eq!(sw.lookup(&mac(0)), Some(0));
    check_eq!(sw.lookup(&mac(1)), None);
    check_eq!(sw.lookup(&mac(2)), Some(0));
    let snap = sw.snapshot();
    check_eq!(snap.evictions, 1);
    check_eq!(snap.entries().count(), MAC_TABLE_SIZE);
    // Ages: entry 0 was refreshed 1 frame ago, the newcomer 0 frames ago.
    let age_of = |m: MacAddr| snap.entries().find(|e| e.mac == m).map(|e| snap.age(e));
    check_eq!(age_of(mac(1000)), Some(0));
    check_eq!(age_of(mac(0)), Some(1));
    Ok(())
}

/// A full port ring drops further frames for that port and counts them on
/// it; the frames already queued are intact and in order.
pub fn ring_full_drops_are_counted() -> TestResult {
    let rings: [NetRxRing<SEED_DEPTH>; 2] = [const { NetRxRing::new() }; 2];
    let sw = VSwitch::new(&rings);
    check!(sw.add_port(0, PortConfig::OPEN).is_ok());
    check!(sw.add_port(1, PortConfig::OPEN).is_ok());
    for i in 0..SEED_DEPTH as u8 + 3 {
        let mut f = frame64(BROADCAST, [0x02, 0, 0, 0, 0, 1]);
        f[20] = i;
        let expected = if usize::from(i) < SEED_DEPTH { 0b10 } else { 0 };
        check_eq!(sw.forward(0, &f), expected);
    }
    let stats = sw.port_stats(1);
    check_eq!(stats.rx_ring_full, 3);
    check_eq!(stats.rx_queued_frames, SEED_DEPTH as u64);
    check_eq!(stats.rx_queued_bytes, 64 * SEED_DEPTH as u64);
    check_eq!(sw.port_stats(0).tx_frames, SEED_DEPTH as u64 + 3);
    let mut buf = [0u8; MAX_FRAME_SIZE];
    for i in 0..SEED_DEPTH as u8 {
        check_eq!(rings[1].take(&mut buf), Some(64));
        check_eq!(buf[20], i);
    }
    check!(rings[1].is_empty());
    Ok(())
}
