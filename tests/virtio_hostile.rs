//! Hostile drivers: malformed chains, index jumps and bad queue layouts,
//! each with its exact outcome (error, counter, used-ring entry) and a
//! check that the device keeps working (or, for faults, recovers after a
//! reset).

mod support;

use hypervisor::virtio::blk::{MemDisk, VirtioBlk, request_type, status};
use hypervisor::virtio::regs::{InterruptStatus, offset};
use hypervisor::virtio::ring::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use hypervisor::virtio::{ChainError, QueueStats, TransitionRefusal};
use support::{Buf, DRIVER_OK, Driver, FEATURES_OK, NEEDS_RESET, RAM_BASE, RAM_SIZE};

const QSIZE: u16 = 128;

fn blk() -> VirtioBlk {
    VirtioBlk::new(MemDisk::new(Box::leak(
        vec![0u8; 64 * 512].into_boxed_slice(),
    )))
}

fn live_driver() -> Driver<VirtioBlk> {
    let mut drv = Driver::new(blk());
    drv.handshake_all(&[QSIZE]);
    drv
}

fn queue_stats(drv: &Driver<VirtioBlk>) -> QueueStats {
    drv.dev.stats().queues[0]
}

/// A valid FLUSH must still complete with OK.
fn assert_still_works(drv: &mut Driver<VirtioBlk>) {
    let hdr = drv.alloc(16);
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&request_type::FLUSH.to_le_bytes());
    drv.mem.write(hdr, &bytes).unwrap();
    let st = drv.alloc(1);
    drv.mem.write(st, &[0xff]).unwrap();
    let head = drv.add_chain(0, &[Buf::r(hdr, 16), Buf::w(st, 1)]);
    drv.notify(0);
    assert_eq!(drv.take_used(0), vec![(u32::from(head), 1)]);
    assert_eq!(drv.read_mem(st, 1), vec![status::OK]);
}

/// Offers `head` (descriptors already written), notifies, and checks the
/// chain came back with length 0 and was counted as `expected`.
fn assert_malformed(drv: &mut Driver<VirtioBlk>, head: u16, expected: ChainError) {
    let before = queue_stats(drv);
    drv.offer(0, head);
    drv.notify(0);
    assert_eq!(
        drv.take_used(0),
        vec![(u32::from(head), 0)],
        "completed with length 0"
    );
    let after = queue_stats(drv);
    assert_eq!(after.malformed.last, Some(expected));
    assert_eq!(after.malformed.total(), before.malformed.total() + 1);
    assert_eq!(
        after.chains_completed, before.chains_completed,
        "not a processed chain"
    );
    assert_still_works(drv);
}

#[test]
fn descriptor_loop() {
    let mut drv = live_driver();
    let buf = drv.alloc(64);
    drv.put_desc(0, 100, buf, 16, DESC_F_NEXT, 101);
    drv.put_desc(0, 101, buf, 16, DESC_F_NEXT, 100);
    assert_malformed(&mut drv, 100, ChainError::TooLong { limit: 64 });
    assert_eq!(queue_stats(&drv).malformed.too_long, 1);
    // A self-loop in a small queue ends at the queue size.
    let mut drv = Driver::new(blk());
    drv.handshake_all(&[8]);
    let buf = drv.alloc(64);
    drv.put_desc(0, 5, buf, 16, DESC_F_NEXT, 5);
    assert_malformed(&mut drv, 5, ChainError::TooLong { limit: 8 });
}

#[test]
fn buffer_outside_ram() {
    let mut drv = live_driver();
    let end = RAM_BASE + RAM_SIZE;
    drv.put_desc(0, 100, end, 16, 0, 0);
    assert_malformed(
        &mut drv,
        100,
        ChainError::BufferOutOfRange {
            index: 100,
            addr: end,
            len: 16,
        },
    );
    // Straddling the end of RAM.
    drv.put_desc(0, 100, end - 8, 16, 0, 0);
    assert_malformed(
        &mut drv,
        100,
        ChainError::BufferOutOfRange {
            index: 100,
            addr: end - 8,
            len: 16,
        },
    );
    // Below RAM, in the second descriptor.
    let hdr = drv.alloc(16);
    drv.put_desc(0, 100, hdr, 16, DESC_F_NEXT, 101);
    drv.put_desc(0, 101, 0x1000, 512, DESC_F_WRITE, 0);
    assert_malformed(
        &mut drv,
        100,
        ChainError::BufferOutOfRange {
            index: 101,
            addr: 0x1000,
            len: 512,
        },
    );
    // addr + len overflows u64.
    drv.put_desc(0, 100, u64::MAX - 3, 16, 0, 0);
    assert_malformed(
        &mut drv,
        100,
        ChainError::BufferOutOfRange {
            index: 100,
            addr: u64::MAX - 3,
            len: 16,
        },
    );
    assert_eq!(queue_stats(&drv).malformed.buffer_out_of_range, 4);
}

#[test]
fn head_index_out_of_range() {
    let mut drv = live_driver();
    // The head is echoed in the used ring as given: one used entry per
    // available entry, so the driver's accounting never drifts.
    assert_malformed(
        &mut drv,
        QSIZE,
        ChainError::IndexOutOfRange {
            index: QSIZE,
            size: QSIZE,
        },
    );
    assert_malformed(
        &mut drv,
        u16::MAX,
        ChainError::IndexOutOfRange {
            index: u16::MAX,
            size: QSIZE,
        },
    );
}

#[test]
fn next_index_out_of_range() {
    let mut drv = live_driver();
    let buf = drv.alloc(16);
    drv.put_desc(0, 100, buf, 16, DESC_F_NEXT, 200);
    assert_malformed(
        &mut drv,
        100,
        ChainError::IndexOutOfRange {
            index: 200,
            size: QSIZE,
        },
    );
    assert_eq!(queue_stats(&drv).malformed.index_out_of_range, 1);
}

#[test]
fn writable_before_readable() {
    let mut drv = live_driver();
    let buf = drv.alloc(64);
    drv.put_desc(0, 100, buf, 16, DESC_F_NEXT, 101);
    drv.put_desc(0, 101, buf + 16, 16, DESC_F_WRITE | DESC_F_NEXT, 102);
    drv.put_desc(0, 102, buf + 32, 16, DESC_F_NEXT, 103);
    drv.put_desc(0, 103, buf + 48, 1, DESC_F_WRITE, 0);
    assert_malformed(
        &mut drv,
        100,
        ChainError::ReadableAfterWritable { index: 102 },
    );
    // Nothing was written into the writable buffer.
    assert_eq!(drv.read_mem(buf + 16, 16), vec![0; 16]);
}

#[test]
fn zero_length_descriptor() {
    let mut drv = live_driver();
    let buf = drv.alloc(16);
    drv.put_desc(0, 100, buf, 16, DESC_F_NEXT, 101);
    drv.put_desc(0, 101, buf, 0, DESC_F_WRITE, 0);
    assert_malformed(&mut drv, 100, ChainError::ZeroLength { index: 101 });
    assert_eq!(queue_stats(&drv).malformed.zero_length, 1);
}

#[test]
fn total_length_overflows_u32() {
    // 4 GiB of guest RAM (backed lazily): a 3 GiB and a 2 GiB buffer each
    // fit in RAM, together they do not fit a u32.
    let mut drv = Driver::with_ram(blk(), 1 << 32);
    drv.handshake_all(&[QSIZE]);
    drv.put_desc(0, 100, RAM_BASE, 0xc000_0000, DESC_F_NEXT, 101);
    drv.put_desc(0, 101, RAM_BASE, 0x8000_0000, DESC_F_WRITE, 0);
    assert_malformed(&mut drv, 100, ChainError::LengthOverflow { index: 101 });
}

#[test]
fn indirect_flag_is_refused() {
    let mut drv = live_driver();
    let table = drv.alloc(64);
    drv.put_desc(0, 100, table, 64, DESC_F_INDIRECT, 0);
    assert_malformed(&mut drv, 100, ChainError::Indirect { index: 100 });
    assert_eq!(queue_stats(&drv).malformed.indirect, 1);
}

#[test]
fn unknown_descriptor_flags_are_refused() {
    let mut drv = live_driver();
    let buf = drv.alloc(16);
    drv.put_desc(0, 100, buf, 16, 0x8000 | DESC_F_NEXT, 101);
    assert_malformed(
        &mut drv,
        100,
        ChainError::UnknownFlags {
            index: 100,
            flags: 0x8001,
        },
    );
}

#[test]
fn many_malformed_chains_in_one_notify_all_come_back() {
    let mut drv = live_driver();
    for head in 100..110u16 {
        drv.put_desc(0, head, 0, 16, 0, 0);
        drv.offer(0, head);
    }
    drv.notify(0);
    let used = drv.take_used(0);
    assert_eq!(used, (100..110u32).map(|h| (h, 0)).collect::<Vec<_>>());
    assert_eq!(queue_stats(&drv).malformed.buffer_out_of_range, 10);
    assert_eq!(drv.edges(), 1, "one interrupt for the batch");
    assert_still_works(&mut drv);
}

#[test]
fn avail_index_jump_faults_the_queue_and_needs_reset() {
    let mut drv = live_driver();
    assert_still_works(&mut drv);
    let edges = drv.edges();
    drv.ack_interrupt();
    // The driver claims QSIZE + 1 new entries.
    drv.set_avail_idx(0, 1 + QSIZE + 1);
    drv.notify(0);
    assert!(
        drv.take_used(0).is_empty(),
        "nothing consumed from a jumped ring"
    );
    assert_eq!(queue_stats(&drv).avail_index_jumps, 1);
    assert_eq!(drv.status(), DRIVER_OK | NEEDS_RESET);
    assert_eq!(
        drv.read(offset::INTERRUPT_STATUS),
        InterruptStatus::CONFIG_CHANGE.bits()
    );
    assert_eq!(drv.edges(), edges + 1, "config-change interrupt");
    assert_eq!(drv.dev.stats().transport.needs_reset, 1);
    // The queue stays stopped: a further notify does nothing, and is not
    // counted twice.
    drv.notify(0);
    assert!(drv.take_used(0).is_empty());
    assert_eq!(queue_stats(&drv).avail_index_jumps, 1);
    assert_eq!(drv.dev.stats().transport.needs_reset, 1);
    assert!(!drv.dev.has_available(0, &drv.mem));
    // Reset recovers.
    drv.set_status(0);
    assert_eq!(drv.status(), 0);
    assert_eq!(drv.read(offset::INTERRUPT_STATUS), 0);
    drv.handshake_all(&[QSIZE]);
    assert_still_works(&mut drv);
}

#[test]
fn avail_index_going_backwards_is_a_jump() {
    let mut drv = live_driver();
    assert_still_works(&mut drv);
    assert_still_works(&mut drv);
    drv.set_avail_idx(0, 1);
    drv.notify(0);
    assert_eq!(queue_stats(&drv).avail_index_jumps, 1);
    assert_ne!(drv.status() & NEEDS_RESET, 0);
}

#[test]
fn exactly_a_full_ring_is_not_a_jump() {
    let mut drv = Driver::new(blk());
    drv.handshake_all(&[4]);
    let hdr = drv.alloc(16);
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&request_type::FLUSH.to_le_bytes());
    drv.mem.write(hdr, &bytes).unwrap();
    let st = drv.alloc(1);
    drv.put_desc(0, 0, hdr, 16, DESC_F_NEXT, 1);
    drv.put_desc(0, 1, st, 1, DESC_F_WRITE, 0);
    // Four available entries in a four-entry ring (all naming the same
    // chain, which only the ring-index logic cares about here).
    for _ in 0..4 {
        drv.offer(0, 0);
    }
    drv.notify(0);
    assert_eq!(drv.take_used(0), vec![(0, 1); 4]);
    assert_eq!(queue_stats(&drv).avail_index_jumps, 0);
    assert_eq!(drv.status() & NEEDS_RESET, 0);
}

/// Sets up queue 0 with `tweak` applied to the standard placement; returns
/// what QueueReady reads back.
fn try_queue(drv: &mut Driver<VirtioBlk>, tweak: impl FnOnce(&mut support::DriverQueue)) -> u32 {
    assert!(drv.negotiate(drv.dev.offered_features()));
    let mut q = Driver::<VirtioBlk>::queue_at(0, QSIZE);
    tweak(&mut q);
    drv.write_queue_registers(0, &q);
    drv.write(offset::QUEUE_READY, 1);
    drv.read(offset::QUEUE_READY)
}

#[test]
fn descriptor_table_outside_ram() {
    let mut drv = Driver::new(blk());
    let ready = try_queue(&mut drv, |q| q.desc = RAM_BASE + RAM_SIZE - 16 * 64);
    assert_eq!(ready, 0, "QueueReady stays 0");
    assert_eq!(drv.dev.stats().transport.queue_layouts_refused, 1);
    assert_eq!(drv.status(), FEATURES_OK | NEEDS_RESET);
    // DRIVER_OK is refused while the device needs a reset.
    drv.set_status(FEATURES_OK | NEEDS_RESET | 4);
    assert_eq!(drv.status(), FEATURES_OK | NEEDS_RESET);
    assert!(!drv.dev.is_live());
    assert_eq!(
        drv.dev
            .stats()
            .transport
            .last_refused_transition
            .map(|e| e.reason),
        Some(TransitionRefusal::NeedsReset)
    );
    // Used ring entirely outside, avail ring overflowing the address space.
    let ready = try_queue(&mut drv, |q| q.used = RAM_BASE + RAM_SIZE);
    assert_eq!(ready, 0);
    let ready = try_queue(&mut drv, |q| q.avail = u64::MAX - 1);
    assert_eq!(ready, 0);
    assert_eq!(drv.dev.stats().transport.queue_layouts_refused, 3);
    // A reset and a valid layout work.
    drv.handshake_all(&[QSIZE]);
    assert_still_works(&mut drv);
}

#[test]
fn misaligned_rings() {
    let mut drv = Driver::new(blk());
    assert_eq!(try_queue(&mut drv, |q| q.desc += 8), 0);
    assert_eq!(try_queue(&mut drv, |q| q.avail += 1), 0);
    assert_eq!(try_queue(&mut drv, |q| q.used += 2), 0);
    assert_eq!(drv.dev.stats().transport.queue_layouts_refused, 3);
    // Minimum alignments are enough: desc 16, avail 2, used 4.
    assert_eq!(
        try_queue(&mut drv, |q| {
            q.desc += 16;
            q.avail += 2;
            q.used += 4;
        }),
        1
    );
    assert_eq!(drv.status() & NEEDS_RESET, 0);
}
