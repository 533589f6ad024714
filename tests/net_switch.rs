//! The VSwitch under concurrency: several VMs (threads) transmitting to the
//! same port at once while its consumer drains it. With three or more VMs
//! on several physical CPUs this is the normal case; the switch lock must
//! keep the port ring single-producer.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use hypervisor::net::{
    BROADCAST, MAX_FRAME_SIZE, MAX_PORTS, MacAddr, NetRxRing, PortConfig, VSwitch,
};
use hypervisor::virtio::net::VirtioNet;

const DEPTH: usize = 16;
const PRODUCERS: usize = MAX_PORTS - 1;
const FRAMES_PER_PRODUCER: u32 = 8_000;

fn mac(vm: usize) -> MacAddr {
    VirtioNet::mac_for_vm(vm)
}

/// Frame `seq` of producer `port`: length and every payload byte derive
/// from (port, seq), so corruption or mixing of two frames is detectable.
fn frame(port: usize, seq: u32, dst: MacAddr) -> Vec<u8> {
    let len = 60 + (seq as usize * 13 + port * 101) % (MAX_FRAME_SIZE - 60 + 1);
    let fill = (seq as u8).wrapping_mul(7) ^ port as u8;
    let mut f = vec![fill; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&mac(port));
    f[12] = port as u8;
    f[13..17].copy_from_slice(&seq.to_le_bytes());
    f
}

fn check_frame(f: &[u8], dst: MacAddr) -> (usize, u32) {
    let port = f[12] as usize;
    let seq = u32::from_le_bytes(f[13..17].try_into().unwrap());
    assert!((1..=PRODUCERS).contains(&port), "bad producer {port}");
    assert_eq!(f, &frame(port, seq, dst)[..], "frame corrupted");
    (port, seq)
}

fn stress(unicast: bool) {
    let rings: &'static [NetRxRing<DEPTH>; MAX_PORTS] =
        Box::leak(Box::new([const { NetRxRing::new() }; MAX_PORTS]));
    let sw: &'static VSwitch<'static, DEPTH> = Box::leak(Box::new(VSwitch::new(rings)));
    for port in 0..MAX_PORTS {
        sw.add_port(port, PortConfig::locked_to(mac(port))).unwrap();
    }
    // Port 0 announces itself so that unicast to it is a lookup.
    sw.forward(0, &{
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&BROADCAST);
        f[6..12].copy_from_slice(&mac(0));
        f
    });
    for ring in &rings[1..] {
        ring.clear();
    }
    let dst = if unicast { mac(0) } else { BROADCAST };
    let start = Barrier::new(PRODUCERS + 1);
    let done = AtomicBool::new(false);
    let (received, kicked_zero) = std::thread::scope(|s| {
        let producers: Vec<_> = (1..=PRODUCERS)
            .map(|port| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let mut delivered_to_0 = 0u64;
                    for seq in 0..FRAMES_PER_PRODUCER {
                        let mask = sw.forward(port, &frame(port, seq, dst));
                        delivered_to_0 += u64::from(mask & 1);
                        if mask & 1 == 0 {
                            // Dropped (counted): give the consumer a chance.
                            std::thread::yield_now();
                        }
                        // This VM is also the consumer of its own port
                        // (broadcasts from the others land there).
                        rings[port].clear();
                    }
                    delivered_to_0
                })
            })
            .collect();
        let consumer = s.spawn(|| {
            start.wait();
            let mut buf = [0u8; MAX_FRAME_SIZE];
            let mut next = [0u32; PRODUCERS + 1];
            let mut received = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                match rings[0].take(&mut buf) {
                    Some(n) => {
                        let (port, seq) = check_frame(&buf[..n], dst);
                        // Per producer: increasing (drops leave gaps), so
                        // no frame is duplicated or reordered.
                        assert!(seq >= next[port], "duplicate or reordered frame");
                        next[port] = seq + 1;
                        received += 1;
                    }
                    None if finished => break,
                    None => std::thread::yield_now(),
                }
            }
            received
        });
        let kicked: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        done.store(true, Ordering::Release);
        (consumer.join().unwrap(), kicked)
    });
    let port0 = sw.port_stats(0);
    let sent = PRODUCERS as u64 * u64::from(FRAMES_PER_PRODUCER);
    for port in 1..=PRODUCERS {
        let s = sw.port_stats(port);
        assert_eq!(s.tx_frames, u64::from(FRAMES_PER_PRODUCER));
        assert_eq!(s.tx_mac_lock + s.tx_too_long + s.tx_too_short, 0);
    }
    assert_eq!(received, port0.rx_queued_frames);
    assert_eq!(
        kicked_zero, port0.rx_queued_frames,
        "forward's mask is exact"
    );
    assert_eq!(
        port0.rx_queued_frames + port0.rx_ring_full,
        sent,
        "every frame for port 0 was queued or counted as a ring-full drop"
    );
    assert!(received > 0);
    eprintln!(
        "received {received}, ring-full drops {}",
        port0.rx_ring_full
    );
}

#[test]
fn several_producers_one_port_unicast() {
    stress(true);
}

#[test]
fn several_producers_one_port_broadcast() {
    stress(false);
}
