//! Tests of `queue`.

use super::*;

const BASE: u64 = 0x4000_0000;

fn mem(size: usize) -> GuestMemory {
    GuestMemory::from_static(BASE, Box::leak(vec![0u8; size].into_boxed_slice()))
}

fn config(size: u16) -> QueueConfig {
    QueueConfig {
        size,
        desc: BASE,
        driver: BASE + 0x1000,
        device: BASE + 0x2000,
    }
}

#[test]
fn sizes() {
    assert_eq!(check_queue_size(0, 256), Err(QueueError::SizeZero));
    assert_eq!(check_queue_size(1, 256), Ok(1));
    assert_eq!(check_queue_size(256, 256), Ok(256));
    assert_eq!(
        check_queue_size(512, 256),
        Err(QueueError::SizeTooLarge {
            size: 512,
            max: 256
        })
    );
    assert_eq!(
        check_queue_size(100, 256),
        Err(QueueError::SizeNotPowerOfTwo { size: 100 })
    );
    assert_eq!(
        check_queue_size(0x1_0000, u16::MAX),
        Err(QueueError::SizeTooLarge {
            size: 0x1_0000,
            max: u16::MAX
        })
    );
    assert_eq!(
        check_queue_size(65535, u16::MAX),
        Err(QueueError::SizeTooLarge {
            size: 65535,
            max: u16::MAX
        })
    );
}

#[test]
fn valid_layout() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(16), 256, &m).unwrap();
    assert_eq!(layout.size(), 16);
    assert_eq!(layout.descriptor_gpa(15), Some(BASE + 15 * 16));
    assert_eq!(layout.descriptor_gpa(16), None);
    assert_eq!(layout.avail_entry_gpa(17), BASE + 0x1000 + 4 + 2);
    assert_eq!(layout.used_elem_gpa(16), BASE + 0x2000 + 4);
}

#[test]
fn misaligned_parts() {
    let m = mem(0x4000);
    let mut c = config(16);
    c.desc += 8;
    assert_eq!(
        QueueLayout::validate(&c, 256, &m),
        Err(QueueError::Misaligned {
            part: RingPart::DescriptorTable,
            gpa: BASE + 8
        })
    );
    let mut c = config(16);
    c.driver += 1;
    assert!(matches!(
        QueueLayout::validate(&c, 256, &m),
        Err(QueueError::Misaligned {
            part: RingPart::AvailRing,
            ..
        })
    ));
    let mut c = config(16);
    c.device += 2;
    assert!(matches!(
        QueueLayout::validate(&c, 256, &m),
        Err(QueueError::Misaligned {
            part: RingPart::UsedRing,
            ..
        })
    ));
}

#[test]
fn parts_outside_ram() {
    let m = mem(0x4000);
    let mut c = config(16);
    c.device = BASE + 0x4000 - 16; // used ring for 16 entries needs 134 bytes
    assert_eq!(
        QueueLayout::validate(&c, 256, &m),
        Err(QueueError::OutsideRam {
            part: RingPart::UsedRing,
            gpa: BASE + 0x4000 - 16,
            len: 6 + 8 * 16
        })
    );
    let mut c = config(16);
    c.desc = !15u64;
    assert!(matches!(
        QueueLayout::validate(&c, 256, &m),
        Err(QueueError::OutsideRam {
            part: RingPart::DescriptorTable,
            ..
        })
    ));
    let mut c = config(16);
    c.driver = 0;
    assert!(matches!(
        QueueLayout::validate(&c, 256, &m),
        Err(QueueError::OutsideRam {
            part: RingPart::AvailRing,
            ..
        })
    ));
}

#[test]
fn jump_faults_queue_once() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(4), 256, &m).unwrap();
    let mut vq = Virtqueue::new(0, layout, false);
    let mut stats = QueueStats::default();
    m.write_obj(BASE + 0x1000 + 2, &U16::new(5)).unwrap();
    assert!(vq.has_available(&m));
    assert_eq!(vq.next_head(&m, &mut stats), None);
    assert_eq!(stats.avail_index_jumps, 1);
    assert_eq!(
        vq.take_new_fault(),
        Some(QueueFault::AvailIndexJump {
            avail_idx: 5,
            next_avail: 0
        })
    );
    assert_eq!(vq.take_new_fault(), None);
    assert!(!vq.has_available(&m));
    assert_eq!(vq.next_head(&m, &mut stats), None);
    assert_eq!(stats.avail_index_jumps, 1, "a faulted queue is not re-read");
}

#[test]
fn exactly_size_pending_is_not_a_jump() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(4), 256, &m).unwrap();
    let mut vq = Virtqueue::new(0, layout, false);
    let mut stats = QueueStats::default();
    m.write_obj(BASE + 0x1000 + 2, &U16::new(4)).unwrap();
    for _ in 0..4 {
        assert!(vq.next_head(&m, &mut stats).is_some());
    }
    assert_eq!(vq.next_head(&m, &mut stats), None);
    assert_eq!(stats.avail_index_jumps, 0);
}

#[test]
fn budget_limits_heads_per_batch() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(2), 256, &m).unwrap();
    let mut vq = Virtqueue::new(0, layout, false);
    let mut stats = QueueStats::default();
    m.write_obj(BASE + 0x1000 + 2, &U16::new(2)).unwrap();
    assert!(vq.next_head(&m, &mut stats).is_some());
    assert!(vq.next_head(&m, &mut stats).is_some());
    // The driver adds two more while the batch runs.
    m.write_obj(BASE + 0x1000 + 2, &U16::new(4)).unwrap();
    assert_eq!(vq.next_head(&m, &mut stats), None);
    assert!(vq.has_available(&m));
    vq.refill_budget();
    assert!(vq.next_head(&m, &mut stats).is_some());
}

#[test]
fn used_ring_wraps_and_publishes_index() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(2), 256, &m).unwrap();
    let mut vq = Virtqueue::new(0, layout, false);
    for i in 0..5u16 {
        vq.push_used(&m, i, u32::from(i) * 10);
    }
    assert_eq!(m.read_obj::<U16>(BASE + 0x2000 + 2).unwrap().get(), 5);
    // Entry for idx 4 landed in slot 0.
    let e: UsedElem = m.read_obj(BASE + 0x2000 + 4).unwrap();
    assert_eq!((e.id.get(), e.len.get()), (4, 40));
    let e: UsedElem = m.read_obj(BASE + 0x2000 + 12).unwrap();
    assert_eq!((e.id.get(), e.len.get()), (3, 30));
}

#[test]
fn notify_decision_honours_no_interrupt() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(2), 256, &m).unwrap();
    let mut vq = Virtqueue::new(0, layout, false);
    assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Nothing);
    vq.push_used(&m, 0, 0);
    assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Interrupt);
    assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Nothing);
    m.write_obj(BASE + 0x1000, &U16::new(AVAIL_F_NO_INTERRUPT))
        .unwrap();
    vq.push_used(&m, 1, 0);
    assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Suppressed);
}

/// `used_event` / `avail_event` of a `config(size)` queue at `BASE`.
fn used_event_at(size: u16) -> u64 {
    BASE + 0x1000 + 4 + 2 * u64::from(size)
}

fn avail_event_at(size: u16) -> u64 {
    BASE + 0x2000 + 4 + 8 * u64::from(size)
}

#[test]
fn need_event_matches_the_spec_examples_and_wraps() {
    // The event position passed by moving old -> new (exclusive of new).
    assert!(vring_need_event(5, 6, 5));
    assert!(!vring_need_event(6, 6, 5), "new itself is not passed");
    assert!(!vring_need_event(4, 6, 5), "already behind old");
    assert!(vring_need_event(7, 10, 5));
    assert!(!vring_need_event(5, 5, 5), "no movement passes nothing");
    // Across 65535 -> 0.
    assert!(vring_need_event(65535, 2, 65534));
    assert!(vring_need_event(0, 2, 65534));
    assert!(vring_need_event(1, 2, 65534));
    assert!(!vring_need_event(2, 2, 65534));
    assert!(!vring_need_event(65533, 2, 65534));
    // Exhaustively against the plain definition (offset of the event
    // from old smaller than the distance moved), for every event and
    // a spread of old/new pairs including the wrap.
    for old in [0u16, 1, 100, 32767, 65530, 65535] {
        for moved in [0u16, 1, 2, 7, 256, 65535] {
            let new = old.wrapping_add(moved);
            for event in 0..=u16::MAX {
                let expected = event.wrapping_sub(old) < moved;
                assert_eq!(vring_need_event(event, new, old), expected);
            }
        }
    }
}

#[test]
fn event_idx_interrupts_only_when_used_event_is_passed_across_the_wrap() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(4), 256, &m).unwrap();
    let mut vq = Virtqueue::new(0, layout, true);
    // Start a few entries before the 16-bit wrap, as after 65530 uses.
    vq.next_used = 65530;
    // NO_INTERRUPT is ignored with EVENT_IDX (spec 2.7.7.2).
    m.write_obj(BASE + 0x1000, &U16::new(AVAIL_F_NO_INTERRUPT))
        .unwrap();
    m.write_obj(used_event_at(4), &U16::new(0)).unwrap();
    vq.push_used(&m, 0, 0);
    assert_eq!(
        vq.take_notify_decision(&m),
        NotifyDecision::Interrupt,
        "the first decision always interrupts"
    );
    let mut interrupts = Vec::new();
    // used_event = 2 (after the wrap): entries at 65531..=1 pass
    // silently, the one at 2 interrupts.
    m.write_obj(used_event_at(4), &U16::new(2)).unwrap();
    for _ in 0..8 {
        vq.push_used(&m, 0, 0);
        let placed_at = vq.next_used.wrapping_sub(1);
        if vq.take_notify_decision(&m) == NotifyDecision::Interrupt {
            interrupts.push(placed_at);
        }
    }
    assert_eq!(interrupts, [2]);
    // A batch of three whose middle entry is at used_event.
    let at = vq.next_used.wrapping_add(1);
    m.write_obj(used_event_at(4), &U16::new(at)).unwrap();
    for _ in 0..3 {
        vq.push_used(&m, 0, 0);
    }
    assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Interrupt);
    // Nothing used: no decision at all.
    assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Nothing);
}

#[test]
fn avail_event_asks_for_the_next_publish_and_reports_untaken_chains() {
    let m = mem(0x4000);
    let layout = QueueLayout::validate(&config(4), 256, &m).unwrap();
    let mut stats = QueueStats::default();
    // Without EVENT_IDX nothing is written.
    let mut plain = Virtqueue::new(0, layout, false);
    m.write_obj(BASE + 0x1000 + 2, &U16::new(3)).unwrap();
    assert_eq!(plain.publish_avail_event(&m), 0);
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 0);

    let mut vq = Virtqueue::new(0, layout, true);
    vq.next_avail = 65534;
    m.write_obj(BASE + 0x1000 + 2, &U16::new(65534)).unwrap();
    // A batch that never asked for a chain leaves avail_event alone.
    assert_eq!(vq.publish_avail_event(&m), 0);
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 0);
    // One that found the ring empty asks for the next publish.
    assert_eq!(vq.next_head(&m, &mut stats), None);
    assert_eq!(vq.publish_avail_event(&m), 0);
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 65534);
    vq.refill_budget();
    // The driver publishes 4 across the wrap; the batch takes them
    // all and then finds the ring empty.
    m.write_obj(BASE + 0x1000 + 2, &U16::new(2)).unwrap();
    for _ in 0..4 {
        assert!(vq.next_head(&m, &mut stats).is_some());
    }
    assert_eq!(vq.next_head(&m, &mut stats), None);
    assert_eq!(vq.publish_avail_event(&m), 0);
    vq.refill_budget();
    assert!(vq.last_batch_wanted_more());
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 2);
    // A batch whose budget runs out while the driver keeps publishing:
    // the chains left over are reported (they get no notification).
    m.write_obj(BASE + 0x1000 + 2, &U16::new(6)).unwrap();
    for _ in 0..4 {
        assert!(vq.next_head(&m, &mut stats).is_some());
    }
    m.write_obj(BASE + 0x1000 + 2, &U16::new(8)).unwrap();
    assert_eq!(vq.next_head(&m, &mut stats), None, "budget spent");
    assert_eq!(vq.publish_avail_event(&m), 2);
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 8);
    vq.refill_budget();
    assert!(vq.last_batch_wanted_more());
    // A batch that takes one chain and stops on its own (a paused
    // transmitter) did not want more: avail_event stays behind, so the
    // driver's next publish does not notify.
    assert!(vq.next_head(&m, &mut stats).is_some());
    m.write_obj(BASE + 0x1000 + 2, &U16::new(9)).unwrap();
    assert_eq!(vq.publish_avail_event(&m), 0);
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 6);
    vq.refill_budget();
    assert!(!vq.last_batch_wanted_more());
    // Its avail_event is one behind the device (7 - 1): no publish
    // within a queue size of it notifies.
    for published in 10..=7 + 4 {
        assert!(!vring_need_event(6, published, published - 1));
    }
    // A batch that does not touch the queue leaves avail_event alone.
    assert_eq!(vq.publish_avail_event(&m), 0);
    assert_eq!(m.read_obj::<U16>(avail_event_at(4)).unwrap().get(), 6);
    vq.refill_budget();
    assert!(!vq.last_batch_wanted_more());
}
