//! Randomized tests with fixed seeds (own xorshift PRNG): random rings
//! thrown at a live virtio-blk device through the MMIO transport. (The
//! walk and cursor models are unit tests in `src/virtio/chain_tests.rs`:
//! they need the chain's guest addresses, which are private to the
//! virtio core.)

mod support;

use hypervisor::virtio::blk::{MemDisk, VirtioBlk};
use hypervisor::virtio::ring::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use support::{DATA_BASE, Driver, NEEDS_RESET, RAM_BASE, XorShift};

fn random_flags(rng: &mut XorShift) -> u16 {
    let mut flags = 0;
    if rng.chance(75) {
        flags |= DESC_F_NEXT;
    }
    if rng.chance(40) {
        flags |= DESC_F_WRITE;
    }
    if rng.chance(3) {
        flags |= DESC_F_INDIRECT;
    }
    if rng.chance(3) {
        flags |= 1 << (3 + rng.below(13));
    }
    flags
}

// ── Whole rings through the transport ────────────────────────────────

#[test]
fn random_rings_through_the_transport_terminate_and_stay_consistent() {
    const DATA_SPAN: u64 = 1 << 20;
    let mut faults = 0;
    let mut processed = 0u64;
    for seed in 1..=12u64 {
        let mut rng = XorShift::new(seed);
        let disk = MemDisk::new(Box::leak(vec![0u8; 128 * 512].into_boxed_slice()));
        let mut drv = Driver::new(VirtioBlk::new(disk));
        let mut size = 1u16 << (1 + rng.below(6));
        drv.handshake_all(&[size]);
        for round in 0..400 {
            if rng.chance(2) {
                size = 1u16 << (1 + rng.below(6));
                drv.handshake_all(&[size]);
            }
            // Random descriptors: addresses in the data area (so that the
            // device may legitimately write there) or outside RAM.
            for i in 0..size {
                let addr = match rng.below(8) {
                    0 => rng.next_u64(),
                    1 => RAM_BASE + (4 << 20) - rng.below(600),
                    _ => DATA_BASE + rng.below(DATA_SPAN - 2048),
                };
                let len = match rng.below(6) {
                    0 => 16,
                    1 => 1,
                    2 => 512,
                    3 => 1 + rng.below(1024) as u32,
                    4 => rng.below(3) as u32,
                    _ => rng.next_u64() as u32,
                };
                let mut flags = random_flags(&mut rng);
                if rng.chance(30) {
                    flags &= DESC_F_NEXT | DESC_F_WRITE;
                }
                let next = if rng.chance(90) {
                    rng.below(u64::from(size)) as u16
                } else {
                    rng.next_u64() as u16
                };
                // Sometimes a well-formed request header in the buffer.
                if rng.chance(30) && (DATA_BASE..DATA_BASE + DATA_SPAN).contains(&addr) {
                    let kind = [0u32, 1, 4, 8, 99][rng.below(5) as usize];
                    let mut hdr = [0u8; 16];
                    hdr[..4].copy_from_slice(&kind.to_le_bytes());
                    hdr[8..].copy_from_slice(&rng.below(140).to_le_bytes());
                    drv.mem.write(addr, &hdr).unwrap();
                }
                drv.put_desc(0, i, addr, len, flags, next);
            }
            let before_used = drv.used_idx(0);
            let jump = rng.chance(3);
            let added = if jump {
                u64::from(size) + 1 + rng.below(1000)
            } else {
                rng.below(u64::from(size) + 1)
            };
            for _ in 0..added.min(u64::from(size)) {
                let head = if rng.chance(95) {
                    rng.below(u64::from(size)) as u16
                } else {
                    rng.next_u64() as u16
                };
                drv.offer(0, head);
            }
            if jump {
                let idx = before_used.wrapping_add(added as u16);
                drv.set_avail_idx(0, idx);
            }
            // Snapshot what the device must never write: the descriptor
            // table and the available ring.
            let q = drv.queues[0].clone();
            let table = drv.read_mem(q.desc, usize::from(size) * 16);
            let avail = drv.read_mem(q.avail, 6 + 2 * usize::from(size));

            let target = if rng.chance(5) { 3 } else { 0 };
            drv.notify(target);

            assert_eq!(
                drv.read_mem(q.desc, usize::from(size) * 16),
                table,
                "seed {seed} round {round}"
            );
            assert_eq!(drv.read_mem(q.avail, 6 + 2 * usize::from(size)), avail);
            let used = drv.take_used(0);
            processed += used.len() as u64;
            for (_, len) in &used {
                assert!(u64::from(*len) <= u64::from(u32::MAX));
            }
            let faulted = drv.status() & NEEDS_RESET != 0;
            if faulted {
                faults += 1;
                assert!(used.is_empty(), "a jumped ring is not consumed");
                // Recover like a driver would.
                drv.handshake_all(&[size]);
            } else if target == 0 {
                // Every available entry was consumed and completed once.
                assert_eq!(
                    drv.used_idx(0),
                    drv.queues[0].avail_idx,
                    "seed {seed} round {round}"
                );
            }
        }
        let s = drv.dev.stats().queues[0];
        assert!(s.malformed.total() > 0 || s.chains_completed > 0);
    }
    assert!(faults > 10, "jumps exercised: {faults}");
    assert!(processed > 10_000, "chains exercised: {processed}");
}
