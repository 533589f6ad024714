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
//!   With `VIRTIO_F_EVENT_IDX` the same fence separates `used.idx` from
//!   the read of `used_event`, and `avail_event` from the re-read of
//!   `avail.idx` (the driver does the mirror image: publish `avail.idx`,
//!   fence, read `avail_event`).
//!
//! # Event index (`VIRTIO_F_EVENT_IDX`, spec 2.7.7, 2.7.10)
//! When the driver negotiated it, both directions use event indices
//! instead of the flag words:
//! - **Used-buffer notifications** (device → driver): the driver writes
//!   `used_event` (the 16-bit word after the available ring's entries).
//!   Once per batch the device compares it with the used index it reached
//!   and the one it had at its previous decision, [`vring_need_event`]:
//!   it interrupts if a used entry was placed at position `used_event`
//!   during the batch, and stays quiet otherwise. `avail.flags` is
//!   ignored. The very first decision always interrupts (as QEMU does).
//! - **Available-buffer notifications** (driver → device): at the end of
//!   a batch in which the backend asked the queue for a chain and found
//!   none (the ring was empty, or the batch's budget was spent), the device
//!   writes `avail_event` (the word after the used ring's entries) = the
//!   `avail.idx` it reads then, so the driver notifies on its next publish
//!   and not on every one (`Virtqueue::publish_avail_event`). After a
//!   full fence it reads `avail.idx` again and repeats if the driver
//!   published meanwhile; chains published before the write get no
//!   notification and are reported, and the transport runs another round
//!   for them (`VirtioMmioTransport`'s notify). A batch that took chains
//!   and stopped on its own (RX frames ran out while buffers are left; a
//!   paused transmitter, which has its retry time) sets `avail_event` one
//!   behind the device's position, which the driver's publishes cannot
//!   pass (they stay within a queue size of it): the driver does not
//!   notify while the device has work in reserve, which is what saves the
//!   exits (an RX refill with buffers still posted costs nothing). A queue
//!   the batch did not touch keeps its `avail_event`.
//!
//! All indices are free-running `u16`s; every comparison is a wrapping
//! subtraction, so the arithmetic is the same before and after 65535.

use core::sync::atomic::{Ordering, fence};

use zerocopy::little_endian::{U16, U32};

use super::error::{QueueError, QueueFault, RingPart};
use super::ring::{
    self, AVAIL_F_NO_INTERRUPT, AVAIL_RING_ALIGN, DESC_TABLE_ALIGN, Descriptor,
    RING_ENTRIES_OFFSET, RING_IDX_OFFSET, USED_RING_ALIGN, UsedElem,
};

/// The event-index test of virtio 1.2 2.7.10 (Linux's `vring_need_event`):
/// true if `event` lies in `[old, new)` of the free-running `u16` index
/// space, i.e. if moving an index from `old` to `new` passed position
/// `event`. All arithmetic wraps, so it holds across 65535 → 0.
///
/// The device asks it with the driver's `used_event` about the used
/// entries it added since its last decision; the driver asks it with the
/// device's `avail_event` about the entries it just published.
pub const fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}
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

    /// `used_event`: the word after the available ring's entries.
    fn used_event_gpa(&self) -> u64 {
        self.avail + RING_ENTRIES_OFFSET + u64::from(self.size) * 2
    }

    /// `avail_event`: the word after the used ring's entries.
    fn avail_event_gpa(&self) -> u64 {
        self.used + RING_ENTRIES_OFFSET + u64::from(self.size) * size_of::<UsedElem>() as u64
    }
}

/// Whether a used-buffer interrupt should be sent after a batch of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotifyDecision {
    /// Nothing was added to the used ring since the last decision.
    Nothing,
    /// Used buffers were added and the driver wants an interrupt.
    Interrupt,
    /// Used buffers were added but `VIRTQ_AVAIL_F_NO_INTERRUPT` is set,
    /// or (with `EVENT_IDX`) none of them was at `used_event`.
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
    /// True if the current batch asked for a head and found none (the ring
    /// was empty or the budget spent).
    wanted_more: bool,
    /// [`Virtqueue::wanted_more`] of the last finished batch.
    last_wanted_more: bool,
    /// True if the current batch asked this queue for a head at all.
    touched: bool,
    /// `VIRTIO_F_EVENT_IDX` was negotiated: `used_event` and
    /// `avail_event` replace the flag words.
    event_idx: bool,
    /// The used index at the previous interrupt decision (`None` before
    /// the first one), for [`vring_need_event`].
    signalled_used: Option<u16>,
}

impl Virtqueue {
    /// A queue that starts at ring position 0, as after every reset;
    /// `event_idx`: `VIRTIO_F_EVENT_IDX` was negotiated.
    pub(crate) fn new(index: u16, layout: QueueLayout, event_idx: bool) -> Self {
        Virtqueue {
            index,
            layout,
            next_avail: 0,
            next_used: 0,
            fault: None,
            fault_reported: false,
            used_since_decision: false,
            budget: layout.size,
            wanted_more: false,
            last_wanted_more: false,
            touched: false,
            event_idx,
            signalled_used: None,
        }
    }

    /// Starts a new batch: at most one queue size of heads may be taken.
    pub(crate) fn refill_budget(&mut self) {
        self.last_wanted_more = core::mem::take(&mut self.wanted_more);
        self.touched = false;
        self.budget = self.layout.size;
    }

    /// True if, in the last finished batch, the backend asked for a chain
    /// and got none because the ring was empty or the batch's budget was
    /// spent: it would have taken more. (A backend that stops on its own,
    /// e.g. a paused transmitter, did not.)
    pub(crate) fn last_batch_wanted_more(&self) -> bool {
        self.last_wanted_more
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
        if self.fault.is_some() {
            return None;
        }
        self.touched = true;
        if self.budget == 0 {
            self.wanted_more = true;
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
            self.wanted_more = true;
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

    /// Gives back the last `n` heads taken by [`Virtqueue::next_head`] in
    /// this batch, none of which was pushed to the used ring: the device
    /// reads them again from the available ring next time (the driver
    /// cannot tell they were looked at). Used when a frame needs more
    /// chains than are available yet.
    pub(crate) fn rewind(&mut self, n: u16) {
        self.next_avail = self.next_avail.wrapping_sub(n);
        self.budget = self.budget.saturating_add(n).min(self.layout.size);
    }

    /// Returns several chains at once: every used element is written
    /// first, then `used.idx` once with release semantics, so the driver
    /// sees all of them or none (a frame spread over several receive
    /// buffers must never be seen in part).
    pub(crate) fn push_used_batch(&mut self, mem: &GuestMemory, used: &[(u16, u32)]) {
        if used.is_empty() {
            return;
        }
        let mut at = self.next_used;
        for &(head, len) in used {
            let elem = UsedElem {
                id: U32::new(u32::from(head)),
                len: U32::new(len),
            };
            if let Err(e) = mem.write_obj(self.layout.used_elem_gpa(at), &elem) {
                self.break_with(QueueFault::RingAccess(e));
                return;
            }
            at = at.wrapping_add(1);
        }
        match mem.store_u16_release(self.layout.used_idx_gpa(), at) {
            Ok(()) => {
                self.next_used = at;
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
        // Full fence: `used.idx` must be visible before `avail.flags` (or
        // `used_event`) is read.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let new = self.next_used;
            let old = self.signalled_used.replace(new);
            return match (old, mem.load_u16_acquire(self.layout.used_event_gpa())) {
                (Some(old), Ok(event)) if !vring_need_event(event, new, old) => {
                    NotifyDecision::Suppressed
                }
                // The first decision, a used entry at `used_event`, or an
                // unreadable `used_event`: interrupt.
                _ => NotifyDecision::Interrupt,
            };
        }
        match mem.load_u16_acquire(self.layout.avail_flags_gpa()) {
            Ok(flags) if flags & AVAIL_F_NO_INTERRUPT != 0 => NotifyDecision::Suppressed,
            // An unreadable flag word cannot suppress: interrupt.
            _ => NotifyDecision::Interrupt,
        }
    }

    /// At the end of a batch, with `EVENT_IDX`, if the backend found this
    /// queue empty (or its budget spent) during the batch: asks the driver
    /// to notify on its next publish by writing `avail_event` = the
    /// current `avail.idx`, then, after a full fence, re-reads `avail.idx`
    /// and repeats (a bounded number of times) if the driver published
    /// meanwhile. If the backend took chains and stopped on its own, sets
    /// `avail_event` one behind its position instead (no notifications
    /// while it has work in reserve). Otherwise (no `EVENT_IDX`, a faulted
    /// queue, a queue the batch did not touch) it does nothing.
    ///
    /// Returns the number of chains the driver has published that the
    /// device has not taken and that get no notification of their own
    /// (0 unless the backend wanted more).
    pub(crate) fn publish_avail_event(&mut self, mem: &GuestMemory) -> u16 {
        if !self.event_idx || self.fault.is_some() || !self.touched {
            return 0;
        }
        if !self.wanted_more {
            let behind = self.next_avail.wrapping_sub(1);
            if let Err(e) = mem.store_u16_release(self.layout.avail_event_gpa(), behind) {
                self.break_with(QueueFault::RingAccess(e));
            }
            return 0;
        }
        let Ok(mut avail_idx) = mem.load_u16_acquire(self.layout.avail_idx_gpa()) else {
            return 0;
        };
        for _ in 0..4 {
            if let Err(e) = mem.store_u16_release(self.layout.avail_event_gpa(), avail_idx) {
                self.break_with(QueueFault::RingAccess(e));
                return 0;
            }
            // Full fence: `avail_event` must be visible before `avail.idx`
            // is read again (the driver fences between its publish and its
            // read of `avail_event`).
            fence(Ordering::SeqCst);
            match mem.load_u16_acquire(self.layout.avail_idx_gpa()) {
                Ok(idx) if idx != avail_idx => avail_idx = idx,
                _ => break,
            }
        }
        avail_idx.wrapping_sub(self.next_avail)
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
#[path = "queue_tests.rs"]
mod tests;
