//! The virtio-mmio register state machine: status transitions, feature
//! negotiation, queue configuration rules, access widths, reset.

mod support;

use hypervisor::mmio::{AccessSize, MmioDevice};
use hypervisor::virtio::regs::{InterruptStatus, feature, offset};
use hypervisor::virtio::{
    DeviceState, Features, LiveQueues, TransitionRefusal, VirtioDevice, read_config_bytes,
};
use support::{ACK, DRIVER, DRIVER_OK, Driver, FEATURES_OK};

/// A probe backend: two queues, a small config space with one writable
/// byte, and a record of what the transport asked of it.
#[derive(Default)]
struct Probe {
    config: [u8; 8],
    activated: Option<Features>,
    resets: u32,
    notified: Vec<u16>,
}

const PROBE_FEATURES: u64 = 0b101 | feature::INDIRECT_DESC | feature::EVENT_IDX | (1 << 55);

impl VirtioDevice for Probe {
    const DEVICE_ID: u32 = 42;
    const QUEUE_COUNT: u16 = 2;

    fn device_features(&self) -> u64 {
        PROBE_FEATURES
    }

    fn queue_max_size(&self, queue: u16) -> u16 {
        if queue == 0 { 64 } else { 100 }
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool {
        read_config_bytes(&self.config, offset, data)
    }

    fn write_config(&mut self, offset: u32, data: &[u8]) -> bool {
        if offset == 7 && data.len() == 1 {
            self.config[7] = data[0];
            true
        } else {
            false
        }
    }

    fn activate(&mut self, features: Features) {
        self.activated = Some(features);
    }

    fn queue_notify(&mut self, queue: u16, _queues: &mut LiveQueues<'_>) {
        self.notified.push(queue);
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.activated = None;
    }
}

fn driver() -> Driver<Probe> {
    Driver::new(Probe {
        config: [1, 2, 3, 4, 5, 6, 7, 8],
        ..Probe::default()
    })
}

fn refused_transitions(drv: &Driver<Probe>) -> u64 {
    drv.dev.stats().transport.refused_status_transitions
}

fn last_refusal(drv: &Driver<Probe>) -> Option<TransitionRefusal> {
    drv.dev
        .stats()
        .transport
        .last_refused_transition
        .map(|e| e.reason)
}

#[test]
fn transport_features_are_masked_and_version_1_added() {
    let mut drv = driver();
    assert_eq!(
        drv.device_features(),
        0b101 | (1 << 55) | feature::VERSION_1 | feature::EVENT_IDX
    );
    // Feature words beyond 1 read as 0.
    drv.write(offset::DEVICE_FEATURES_SEL, 2);
    assert_eq!(drv.read(offset::DEVICE_FEATURES), 0);
}

#[test]
fn queue_num_max_is_a_power_of_two_or_zero() {
    let mut drv = driver();
    drv.write(offset::QUEUE_SEL, 0);
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 64);
    drv.write(offset::QUEUE_SEL, 1);
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 64, "100 rounds down to 64");
    drv.write(offset::QUEUE_SEL, 2);
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 0);
    drv.write(offset::QUEUE_SEL, u32::MAX);
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 0);
}

#[test]
fn legal_path_activates_backend_with_negotiated_features() {
    let mut drv = driver();
    drv.handshake(feature::VERSION_1 | 0b100, &[64, 32]);
    assert_eq!(
        drv.dev.backend().activated.map(|f| f.bits()),
        Some(feature::VERSION_1 | 0b100)
    );
    assert!(matches!(drv.dev.state(), DeviceState::Live(_)));
    assert_eq!(refused_transitions(&drv), 0);
    drv.notify(1);
    assert_eq!(drv.dev.backend().notified, vec![1]);
}

#[test]
fn every_illegal_status_transition_is_refused() {
    let mut drv = driver();
    // (status to reach first, value written, expected refusal)
    let cases: &[(u32, u32, TransitionRefusal)] = &[
        (0, DRIVER & !ACK, TransitionRefusal::OutOfOrder), // DRIVER without ACK
        (0, 8, TransitionRefusal::OutOfOrder),             // FEATURES_OK first
        (0, 4, TransitionRefusal::OutOfOrder),             // DRIVER_OK first
        (0, DRIVER, TransitionRefusal::SeveralBits),       // ACK|DRIVER at once
        (ACK, ACK | 8, TransitionRefusal::OutOfOrder),     // skip DRIVER
        (ACK, ACK | 4, TransitionRefusal::OutOfOrder),
        (DRIVER, DRIVER | 4, TransitionRefusal::OutOfOrder), // skip FEATURES_OK
        (DRIVER, FEATURES_OK | 4, TransitionRefusal::SeveralBits),
        (DRIVER, ACK, TransitionRefusal::ClearsBits),
        (DRIVER, 2, TransitionRefusal::ClearsBits),
        (FEATURES_OK, DRIVER, TransitionRefusal::ClearsBits),
        (ACK, ACK | 16, TransitionRefusal::UndefinedBits),
        (ACK, ACK | 32, TransitionRefusal::UndefinedBits),
        (ACK, 0x101, TransitionRefusal::UndefinedBits),
        (ACK, u32::MAX, TransitionRefusal::UndefinedBits),
    ];
    for (i, &(reach, written, reason)) in cases.iter().enumerate() {
        drv.set_status(0);
        for step in [ACK, DRIVER, FEATURES_OK] {
            if reach & step == step {
                if step == FEATURES_OK {
                    drv.write_driver_features(feature::VERSION_1);
                }
                drv.set_status(step);
            }
        }
        assert_eq!(drv.status(), reach, "case {i}: setup");
        let before = refused_transitions(&drv);
        drv.set_status(written);
        assert_eq!(
            drv.status(),
            reach,
            "case {i}: status unchanged after {written:#x}"
        );
        assert_eq!(refused_transitions(&drv), before + 1, "case {i}: counted");
        assert_eq!(last_refusal(&drv), Some(reason), "case {i}");
    }
    // From Live: clearing bits, and anything but reset after FAILED.
    drv.handshake(feature::VERSION_1, &[64]);
    drv.set_status(FEATURES_OK);
    assert_eq!(last_refusal(&drv), Some(TransitionRefusal::ClearsBits));
    drv.set_status(DRIVER_OK | 128);
    assert_eq!(drv.status(), DRIVER_OK | 128);
    drv.set_status(DRIVER_OK | 128 | 64);
    assert_eq!(
        drv.status(),
        DRIVER_OK | 128,
        "driver cannot set NEEDS_RESET"
    );
    drv.set_status(ACK | 128);
    assert_eq!(last_refusal(&drv), Some(TransitionRefusal::ClearsBits));
    assert_eq!(drv.status(), DRIVER_OK | 128);
    drv.set_status(0);
    assert_eq!(drv.status(), 0);
}

#[test]
fn rewriting_the_current_status_is_harmless() {
    let mut drv = driver();
    drv.set_status(ACK);
    drv.set_status(ACK);
    assert_eq!(drv.status(), ACK);
    assert_eq!(refused_transitions(&drv), 0);
}

#[test]
fn failed_stops_the_device_until_reset() {
    let mut drv = driver();
    drv.handshake(feature::VERSION_1, &[64]);
    drv.set_status(DRIVER_OK | 128);
    assert!(matches!(drv.dev.state(), DeviceState::Failed(_)));
    assert!(!drv.dev.is_live());
    drv.notify(0);
    assert!(drv.dev.backend().notified.is_empty());
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, 1);
    assert_eq!(drv.with_ctx(|dev, ctx| dev.with_live(ctx, |_, _| ())), None);
    // FAILED during negotiation too.
    drv.set_status(0);
    drv.set_status(ACK);
    drv.set_status(ACK | 128);
    assert_eq!(drv.status(), ACK | 128);
    drv.set_status(DRIVER | 128);
    assert_eq!(last_refusal(&drv), Some(TransitionRefusal::AfterFailed));
}

#[test]
fn features_not_offered_leave_features_ok_clear() {
    let mut drv = driver();
    // A bit the device never offered.
    assert!(!drv.negotiate(feature::VERSION_1 | 0b010));
    assert_eq!(drv.status(), DRIVER);
    assert_eq!(drv.dev.stats().transport.features_refused, 1);
    // A transport bit the backend set but the transport masks out.
    assert!(!drv.negotiate(feature::VERSION_1 | feature::INDIRECT_DESC));
    // EVENT_IDX is the transport's own: offered whatever the backend says.
    assert!(drv.negotiate(feature::VERSION_1 | feature::EVENT_IDX));
    // A bit in feature word 2.
    drv.set_status(0);
    drv.set_status(ACK);
    drv.set_status(DRIVER);
    drv.write_driver_features(feature::VERSION_1);
    drv.write(offset::DRIVER_FEATURES_SEL, 2);
    drv.write(offset::DRIVER_FEATURES, 1);
    drv.set_status(FEATURES_OK);
    assert_eq!(drv.status(), DRIVER);
    // The driver may fix its selection and try again without a reset.
    drv.set_status(0);
    drv.set_status(ACK);
    drv.set_status(DRIVER);
    drv.write_driver_features(feature::VERSION_1 | 0b110);
    drv.set_status(FEATURES_OK);
    assert_eq!(drv.status(), DRIVER, "0b010 still not offered");
    drv.write_driver_features(feature::VERSION_1 | 0b100);
    drv.set_status(FEATURES_OK);
    assert_eq!(drv.status(), FEATURES_OK);
    assert_eq!(drv.dev.stats().transport.features_refused, 4);
}

#[test]
fn version_1_must_be_negotiated() {
    let mut drv = driver();
    assert!(!drv.negotiate(0b100));
    assert_eq!(drv.status(), DRIVER);
    assert!(drv.negotiate(feature::VERSION_1));
}

#[test]
fn driver_features_only_between_driver_and_features_ok() {
    let mut drv = driver();
    drv.set_status(ACK);
    drv.write(offset::DRIVER_FEATURES, 1);
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, 1);
    assert!(drv.negotiate(feature::VERSION_1));
    drv.write(offset::DRIVER_FEATURES_SEL, 0);
    drv.write(offset::DRIVER_FEATURES, 0b1);
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, 2);
    // The negotiated set did not change.
    drv.setup_queue(0, 64);
    drv.set_status(DRIVER_OK);
    assert_eq!(
        drv.dev.backend().activated.map(|f| f.bits()),
        Some(feature::VERSION_1)
    );
}

#[test]
fn queue_num_zero_too_big_or_not_power_of_two_is_refused() {
    let mut drv = driver();
    assert!(drv.negotiate(feature::VERSION_1));
    drv.write(offset::QUEUE_SEL, 0);
    for bad in [0u32, 128, 100, 3, 65536, u32::MAX] {
        drv.write(offset::QUEUE_NUM, bad);
    }
    assert_eq!(drv.dev.stats().transport.registers.bad_value, 6);
    drv.write(offset::QUEUE_NUM, 16);
    let DeviceState::Negotiated(n) = drv.dev.state() else {
        panic!("not negotiated")
    };
    assert_eq!(n.queue(0).unwrap().config.size, 16);
    // Untouched queue 1 defaults to its QueueNumMax.
    assert_eq!(n.queue(1).unwrap().config.size, 64);
}

#[test]
fn queue_registers_only_while_configuring() {
    let mut drv = driver();
    let q = Driver::<Probe>::queue_at(0, 64);
    // Before FEATURES_OK.
    drv.set_status(ACK);
    drv.set_status(DRIVER);
    drv.write_queue_registers(0, &q); // QUEUE_SEL is always fine: 7 refusals
    drv.write(offset::QUEUE_READY, 1);
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, 8);
    assert_eq!(drv.read(offset::QUEUE_READY), 0);

    // A ready queue is frozen.
    drv.write_driver_features(feature::VERSION_1);
    drv.set_status(FEATURES_OK);
    drv.setup_queue(0, 64);
    let before = drv.dev.stats().transport.registers.wrong_state;
    drv.write(offset::QUEUE_NUM, 32);
    drv.write(offset::QUEUE_DESC_LOW, 0);
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, before + 2);
    // ... until the driver writes QueueReady = 0.
    drv.write(offset::QUEUE_READY, 0);
    assert_eq!(drv.read(offset::QUEUE_READY), 0);
    drv.write(offset::QUEUE_NUM, 32);
    drv.write(offset::QUEUE_READY, 1);
    assert_eq!(drv.read(offset::QUEUE_READY), 1);
    let DeviceState::Negotiated(n) = drv.dev.state() else {
        panic!("not negotiated")
    };
    assert_eq!(n.queue(0).unwrap().ready().unwrap().size(), 32);

    // After DRIVER_OK nothing about a queue can change.
    drv.set_status(DRIVER_OK);
    let before = drv.dev.stats().transport.registers.wrong_state;
    drv.write_queue_registers(0, &q);
    drv.write(offset::QUEUE_READY, 1);
    drv.write(offset::QUEUE_READY, 0); // stopping a live queue needs RING_RESET
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, before + 9);
    assert_eq!(drv.read(offset::QUEUE_READY), 1);
    // QueueReady = 0 on a queue that is not live is a harmless no-op.
    drv.write(offset::QUEUE_SEL, 1);
    drv.write(offset::QUEUE_READY, 0);
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, before + 9);
    // QueueReset is not available (RING_RESET never offered).
    drv.write(offset::QUEUE_RESET, 1);
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, before + 10);
    assert_eq!(drv.read(offset::QUEUE_RESET), 0);
}

#[test]
fn queue_index_out_of_range_and_bad_ready_values() {
    let mut drv = driver();
    assert!(drv.negotiate(feature::VERSION_1));
    drv.write(offset::QUEUE_SEL, 2);
    drv.write(offset::QUEUE_NUM, 16);
    drv.write(offset::QUEUE_READY, 1);
    assert_eq!(drv.read(offset::QUEUE_READY), 0);
    drv.write(offset::QUEUE_SEL, 0);
    drv.write(offset::QUEUE_READY, 2);
    assert_eq!(drv.dev.stats().transport.registers.bad_value, 3);
    assert_eq!(drv.read(offset::QUEUE_READY), 0);
}

#[test]
fn notify_rules() {
    let mut drv = driver();
    drv.notify(0); // before DRIVER_OK
    assert_eq!(drv.dev.stats().transport.registers.wrong_state, 1);
    drv.handshake(feature::VERSION_1, &[64]); // only queue 0 enabled
    drv.notify(1); // exists, not enabled
    drv.notify(2); // does not exist
    drv.write(offset::QUEUE_NOTIFY, 0x1_0000);
    assert_eq!(drv.dev.stats().transport.registers.bad_value, 3);
    drv.notify(0);
    assert_eq!(drv.dev.backend().notified, vec![0]);
    assert_eq!(drv.edges(), 0, "nothing completed, no interrupt");
}

#[test]
fn reset_clears_everything_but_the_counters() {
    let mut drv = driver();
    drv.handshake(feature::VERSION_1, &[64, 64]);
    drv.with_ctx(|dev, ctx| dev.with_live(ctx, |_, queues| queues.notify_config_change()));
    assert_eq!(
        drv.read(offset::INTERRUPT_STATUS),
        InterruptStatus::CONFIG_CHANGE.bits()
    );
    assert_eq!(drv.read(offset::CONFIG_GENERATION), 1);
    drv.write(offset::DEVICE_FEATURES_SEL, 1);
    drv.write(offset::QUEUE_SEL, 1);
    let resets_before = drv.dev.backend().resets;

    drv.set_status(0);
    assert_eq!(drv.status(), 0);
    assert!(matches!(drv.dev.state(), DeviceState::Negotiating(_)));
    assert_eq!(drv.read(offset::INTERRUPT_STATUS), 0);
    assert_eq!(drv.dev.backend().resets, resets_before + 1);
    assert_eq!(drv.dev.backend().activated, None);
    // Selectors are back to 0.
    assert_eq!(
        drv.read(offset::DEVICE_FEATURES),
        (drv.dev.offered_features() as u32)
    );
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 64);
    for q in 0..2 {
        drv.write(offset::QUEUE_SEL, q);
        assert_eq!(drv.read(offset::QUEUE_READY), 0, "queue {q} forgotten");
    }
    assert!(!drv.dev.has_available(0, &drv.mem));
    // Counters survive.
    assert_eq!(drv.dev.stats().transport.config_interrupts, 1);
    // The driver negotiates afresh: old driver features are gone.
    drv.set_status(ACK);
    drv.set_status(DRIVER);
    drv.set_status(FEATURES_OK);
    assert_eq!(
        drv.status(),
        DRIVER,
        "no features accepted yet: VERSION_1 missing"
    );
}

#[test]
fn non_32_bit_register_accesses_are_refused() {
    let mut drv = driver();
    drv.set_status(ACK);
    for size in [AccessSize::Byte, AccessSize::Half, AccessSize::Double] {
        assert_eq!(drv.read_sized(offset::MAGIC_VALUE, size), 0);
        assert_eq!(drv.read_sized(offset::STATUS, size), 0);
        drv.write_sized(offset::STATUS, size, u64::from(DRIVER));
    }
    assert_eq!(drv.status(), ACK, "no narrow write took effect");
    // Misaligned 32-bit accesses.
    assert_eq!(drv.read_sized(offset::STATUS + 1, AccessSize::Word), 0);
    drv.write_sized(offset::STATUS + 2, AccessSize::Word, u64::from(DRIVER));
    assert_eq!(drv.status(), ACK);
    assert_eq!(drv.dev.stats().transport.registers.bad_width, 11);
}

#[test]
fn wrong_direction_and_unknown_offsets() {
    let mut drv = driver();
    for wo in [
        offset::QUEUE_NOTIFY,
        offset::INTERRUPT_ACK,
        offset::QUEUE_DESC_LOW,
        offset::QUEUE_SEL,
    ] {
        assert_eq!(drv.read(wo), 0);
    }
    for ro in [
        offset::MAGIC_VALUE,
        offset::DEVICE_ID,
        offset::INTERRUPT_STATUS,
        offset::CONFIG_GENERATION,
    ] {
        drv.write(ro, 7);
    }
    assert_eq!(drv.read(offset::DEVICE_ID), 42);
    assert_eq!(drv.dev.stats().transport.registers.wrong_direction, 8);
    for hole in [0x018u64, 0x040, 0x0e0, 0x0f8] {
        assert_eq!(drv.read(hole), 0);
        drv.write(hole, 1);
    }
    assert_eq!(drv.dev.stats().transport.registers.unknown_offset, 8);
    // Shared memory: none, so length and base read as all ones.
    drv.write(offset::SHM_SEL, 0);
    assert_eq!(drv.read(offset::SHM_LEN_LOW), u32::MAX);
    assert_eq!(drv.read(offset::SHM_BASE_HIGH), u32::MAX);
    assert_eq!(drv.dev.stats().transport.registers.total(), 16);
}

#[test]
fn config_space_reads_writes_and_widths() {
    let mut drv = driver();
    assert_eq!(
        drv.read_sized(offset::CONFIG + 4, AccessSize::Word),
        0x0807_0605
    );
    assert_eq!(drv.read_sized(offset::CONFIG + 6, AccessSize::Half), 0x0807);
    assert_eq!(drv.read_sized(offset::CONFIG + 3, AccessSize::Byte), 4);
    drv.write_sized(offset::CONFIG + 7, AccessSize::Byte, 0xaa);
    assert_eq!(drv.read_sized(offset::CONFIG + 7, AccessSize::Byte), 0xaa);
    drv.write_sized(offset::CONFIG, AccessSize::Word, 0);
    assert_eq!(drv.dev.stats().transport.registers.wrong_direction, 1);
    assert_eq!(drv.read_sized(offset::CONFIG + 8, AccessSize::Byte), 0);
    assert_eq!(drv.dev.stats().transport.registers.unknown_offset, 1);
}

#[test]
fn live_only_apis_refuse_when_not_live() {
    let mut drv = driver();
    assert_eq!(drv.with_ctx(|dev, ctx| dev.with_live(ctx, |_, _| 1)), None);
    assert!(!drv.dev.has_available(0, &drv.mem));
    assert!(drv.negotiate(feature::VERSION_1));
    drv.setup_queue(0, 64);
    assert_eq!(drv.with_ctx(|dev, ctx| dev.with_live(ctx, |_, _| 1)), None);
    drv.set_status(DRIVER_OK);
    assert_eq!(
        drv.with_ctx(|dev, ctx| dev.with_live(ctx, |_, _| 1)),
        Some(1)
    );
}

#[test]
fn config_change_bumps_generation_and_interrupts() {
    let mut drv = driver();
    drv.handshake(feature::VERSION_1, &[64]);
    assert_eq!(drv.read(offset::CONFIG_GENERATION), 0);
    drv.with_ctx(|dev, ctx| {
        dev.with_live(ctx, |probe, queues| {
            probe.config[0] = 99;
            queues.notify_config_change();
        })
    });
    assert_eq!(drv.read(offset::CONFIG_GENERATION), 1);
    assert_eq!(drv.edges(), 1);
    assert_eq!(drv.ack_interrupt(), InterruptStatus::CONFIG_CHANGE.bits());
    assert_eq!(drv.read(offset::INTERRUPT_STATUS), 0);
    assert_eq!(drv.read_sized(offset::CONFIG, AccessSize::Byte), 99);
}

#[test]
fn region_and_intid_follow_the_slot() {
    let drv = driver();
    assert_eq!(drv.dev.region().base, 0x0a00_0000);
    assert_eq!(drv.dev.region().size, 0x200);
    assert_eq!(drv.dev.intid(), 48);
}
