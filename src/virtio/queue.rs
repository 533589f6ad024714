//! One virtqueue: the driver's configuration, its validation into a
//! [`QueueLayout`], and the device side of the rings (taking heads from the
//! available ring, returning chains to the used ring, deciding whether to
//! interrupt).
//!
//! # Validation happens once, and the type remembers it
//! The driver writes a queue's size and three addresses into registers
//! ([`QueueConfig`]). When it sets `QueueReady`, the transport calls
//! [`QueueLayout::validate`], which checks the size (1..=max, a power of
//! two), each area's alignment (descriptor table 16, available ring 2, used
//! ring 4) and that each whole area lies inside guest RAM. Only a
//! `QueueLayout` can become a live queue, so every later ring access is to
//! an address already known to be inside RAM and aligned; the accesses
//! still go through [`GuestMemory`] and still handle errors, but those
//! errors can no longer happen for a correct layout.
//!
//! # Memory ordering (spec 2.7.13, 2.7.14)
//! - `avail.idx` is read with an acquire load
//!   ([`GuestMemory::load_u16_acquire`]) *before* the ring entry and the
//!   descriptors it covers, so those reads see what the driver wrote
//!   before it published the index.
//! - A used element is written *before* `used.idx` is published with a
//!   release store ([`GuestMemory::store_u16_release`]).
//! - Between publishing `used.idx` and reading `avail.flags` for interrupt
//!   suppression there is a full fence: otherwise the flag read could be
//!   satisfied before the index store is visible, and the device could
//!   skip an interrupt the driver is waiting for (the classic lost wake-up).

use core::sync::atomic::{Ordering, fence};

use zerocopy::little_endian::{U16, U32};

use super::error::{QueueError, QueueFault, RingPart};
use super::ring::{
    self, AVAIL_F_NO_INTERRUPT, AVAIL_RING_ALIGN, DESC_TABLE_ALIGN, Descriptor,
    RING_ENTRIES_OFFSET, RING_IDX_OFFSET, USED_RING_ALIGN, UsedElem,
};
use super::stats::{QueueStats, bump};
use crate::guest_memory::GuestMemory;

/// What the driver wrote into one queue's registers, not yet checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue size (`QueueNum`).
    pub size: u16,
    /// Guest-physical address of the descriptor table (`QueueDesc*`).
    pub desc: u64,
    /// Guest-physical address of the available ring (`QueueDriver*`).
    pub driver: u64,
    /// Guest-physical address of the used ring (`QueueDevice*`).
    pub device: u64,
}

/// Checks a queue size the driver wrote: `1..=max` and a power of two.
///
/// Takes the raw 32-bit register value, so a value that does not even fit
/// in 16 bits is refused as too large rather than truncated.
pub fn check_queue_size(size: u32, max: u16) -> Result<u16, QueueError> {
    if size == 0 {
        return Err(QueueError::SizeZero);
    }
    if size > u32::from(max) || size > u32::from(ring::MAX_QUEUE_SIZE) {
        return Err(QueueError::SizeTooLarge { size, max });
    }
    if !size.is_power_of_two() {
        return Err(QueueError::SizeNotPowerOfTwo { size });
    }
    // `size <= max <= u16::MAX` was checked just above.
    u16::try_from(size).map_err(|_| QueueError::SizeTooLarge { size, max })
}

/// A queue configuration checked against one guest memory: size valid,
/// every area aligned and entirely inside RAM.
///
/// The only way to get one is [`QueueLayout::validate`]; the address
/// helpers below are therefore always in range (`slot` arguments are
/// reduced modulo the size, descriptor indices are bounds-checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
}

impl QueueLayout {
    /// Validates `config` for a device whose `QueueNumMax` is `max_size`.
    pub fn validate(
        config: &QueueConfig,
        max_size: u16,
        mem: &GuestMemory,
    ) -> Result<QueueLayout, QueueError> {
        let size = check_queue_size(u32::from(config.size), max_size)?;
        let parts = [
            (
                RingPart::DescriptorTable,
                config.desc,
                DESC_TABLE_ALIGN,
                ring::desc_table_bytes(size),
            ),
            (
                RingPart::AvailRing,
                config.driver,
                AVAIL_RING_ALIGN,
                ring::avail_ring_bytes(size),
            ),
            (
                RingPart::UsedRing,
                config.device,
                USED_RING_ALIGN,
                ring::used_ring_bytes(size),
            ),
        ];
        for (part, gpa, align, len) in parts {
            if gpa % align != 0 {
                return Err(QueueError::Misaligned { part, gpa });
            }
            if !mem.contains(gpa, len) {
                return Err(QueueError::OutsideRam { part, gpa, len });
            }
        }
        Ok(QueueLayout {
            size,
            desc: config.desc,
            avail: config.driver,
            used: config.device,
        })
    }

    /// Number of entries (a power of two).
    pub const fn size(&self) -> u16 {
        self.size
    }

    /// Guest-physical address of the descriptor table.
    pub const fn desc_table(&self) -> u64 {
        self.desc
    }

    /// Guest-physical address of the available ring.
    pub const fn avail_ring(&self) -> u64 {
        self.avail
    }

    /// Guest-physical address of the used ring.
    pub const fn used_ring(&self) -> u64 {
        self.used
    }

    /// Address of descriptor `index`, or `None` if `index >= size`.
    pub fn descriptor_gpa(&self, index: u16) -> Option<u64> {
        (index < self.size).then(|| self.desc + u64::from(index) * size_of::<Descriptor>() as u64)
    }

    /// Ring position of free-running index `idx`.
    fn slot(&self, idx: u16) -> u64 {
        // `size` is a non-zero power of two, so this is `idx % size`.
        u64::from(idx & (self.size - 1))
    }

    fn avail_flags_gpa(&self) -> u64 {
        self.avail
    }

    fn avail_idx_gpa(&self) -> u64 {
        self.avail + RING_IDX_OFFSET
    }

    fn avail_entry_gpa(&self, idx: u16) -> u64 {
        self.avail + RING_ENTRIES_OFFSET + self.slot(idx) * 2
    }

    fn used_idx_gpa(&self) -> u64 {
        self.used + RING_IDX_OFFSET
    }

    fn used_elem_gpa(&self, idx: u16) -> u64 {
        self.used + RING_ENTRIES_OFFSET + self.slot(idx) * size_of::<UsedElem>() as u64
    }
}

/// Whether a used-buffer interrupt should be sent after a batch of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotifyDecision {
    /// Nothing was added to the used ring since the last decision.
    Nothing,
    /// Used buffers were added and the driver wants an interrupt.
    Interrupt,
    /// Used buffers were added but `VIRTQ_AVAIL_F_NO_INTERRUPT` is set.
    Suppressed,
}

/// The device side of one live virtqueue.
#[derive(Debug)]
pub(crate) struct Virtqueue {
    index: u16,
    layout: QueueLayout,
    /// Next available-ring position the device will read.
    next_avail: u16,
    /// Next used-ring position the device will write (shadow of `used.idx`).
    next_used: u16,
    fault: Option<QueueFault>,
    fault_reported: bool,
    used_since_decision: bool,
    /// Heads that may still be taken in the current batch.
    budget: u16,
}

impl Virtqueue {
    /// A queue that starts at ring position 0, as after every reset.
    pub(crate) fn new(index: u16, layout: QueueLayout) -> Self {
        Virtqueue {
            index,
            layout,
            next_avail: 0,
            next_used: 0,
            fault: None,
            fault_reported: false,
            used_since_decision: false,
            budget: layout.size,
        }
    }

    /// Starts a new batch: at most one queue size of heads may be taken.
    pub(crate) fn refill_budget(&mut self) {
        self.budget = self.layout.size;
    }

    pub(crate) fn index(&self) -> u16 {
        self.index
    }

    /// The validated layout this queue runs on.
    pub(super) fn layout(&self) -> &QueueLayout {
        &self.layout
    }

    /// Why the queue stopped, if it did.
    pub(super) fn fault(&self) -> Option<QueueFault> {
        self.fault
    }

    fn break_with(&mut self, fault: QueueFault) {
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
    }

    /// True if `avail.idx` differs from the device's position (a jump also
    /// counts: [`Virtqueue::next_head`] will then detect and report it).
    pub(crate) fn has_available(&self, mem: &GuestMemory) -> bool {
        self.fault.is_none()
            && mem
                .load_u16_acquire(self.layout.avail_idx_gpa())
                .is_ok_and(|idx| idx != self.next_avail)
    }

    /// Takes the next head index from the available ring, if any.
    ///
    /// Returns `None` when the ring is empty, the queue is faulted or this
    /// batch's budget is spent; an index jump faults the queue (and is
    /// counted) instead of being used.
    pub(super) fn next_head(&mut self, mem: &GuestMemory, stats: &mut QueueStats) -> Option<u16> {
        if self.fault.is_some() || self.budget == 0 {
            return None;
        }
        // Acquire: the ring entry and descriptors below are read after this.
        let avail_idx = match mem.load_u16_acquire(self.layout.avail_idx_gpa()) {
            Ok(idx) => idx,
            Err(e) => {
                self.break_with(QueueFault::RingAccess(e));
                return None;
            }
        };
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return None;
        }
        if pending > self.layout.size {
            bump(&mut stats.avail_index_jumps);
            self.break_with(QueueFault::AvailIndexJump {
                avail_idx,
                next_avail: self.next_avail,
            });
            return None;
        }
        let head = match mem.read_obj::<U16>(self.layout.avail_entry_gpa(self.next_avail)) {
            Ok(head) => head.get(),
            Err(e) => {
                self.break_with(QueueFault::RingAccess(e));
                return None;
            }
        };
        self.next_avail = self.next_avail.wrapping_add(1);
        self.budget -= 1;
        Some(head)
    }

    /// Returns chain `head` to the driver with `len` bytes written: the used
    /// element first, then `used.idx` with release semantics.
    pub(crate) fn push_used(&mut self, mem: &GuestMemory, head: u16, len: u32) {
        let elem = UsedElem {
            id: U32::new(u32::from(head)),
            len: U32::new(len),
        };
        let published = mem
            .write_obj(self.layout.used_elem_gpa(self.next_used), &elem)
            .and_then(|()| {
                mem.store_u16_release(self.layout.used_idx_gpa(), self.next_used.wrapping_add(1))
            });
        match published {
            Ok(()) => {
                self.next_used = self.next_used.wrapping_add(1);
                self.used_since_decision = true;
            }
            Err(e) => self.break_with(QueueFault::RingAccess(e)),
        }
    }

    /// Decides (once per batch) whether the used buffers added since the
    /// last decision warrant an interrupt.
    pub(crate) fn take_notify_decision(&mut self, mem: &GuestMemory) -> NotifyDecision {
        if !core::mem::take(&mut self.used_since_decision) {
            return NotifyDecision::Nothing;
        }
        // Full fence: `used.idx` must be visible before `avail.flags` is read.
        fence(Ordering::SeqCst);
        match mem.load_u16_acquire(self.layout.avail_flags_gpa()) {
            Ok(flags) if flags & AVAIL_F_NO_INTERRUPT != 0 => NotifyDecision::Suppressed,
            // An unreadable flag word cannot suppress: interrupt.
            _ => NotifyDecision::Interrupt,
        }
    }

    /// The fault that stopped this queue, returned once so that the
    /// transport reports it (DEVICE_NEEDS_RESET) exactly once.
    pub(crate) fn take_new_fault(&mut self) -> Option<QueueFault> {
        if self.fault_reported {
            return None;
        }
        let fault = self.fault?;
        self.fault_reported = true;
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
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
        let mut vq = Virtqueue::new(0, layout);
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
        let mut vq = Virtqueue::new(0, layout);
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
        let mut vq = Virtqueue::new(0, layout);
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
        let mut vq = Virtqueue::new(0, layout);
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
        let mut vq = Virtqueue::new(0, layout);
        assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Nothing);
        vq.push_used(&m, 0, 0);
        assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Interrupt);
        assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Nothing);
        m.write_obj(BASE + 0x1000, &U16::new(AVAIL_F_NO_INTERRUPT))
            .unwrap();
        vq.push_used(&m, 1, 0);
        assert_eq!(vq.take_notify_decision(&m), NotifyDecision::Suppressed);
    }
}
