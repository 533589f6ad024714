//! Counters: everything the device refused or repaired is counted, so that
//! nothing a guest does wrong is silently ignored.
//!
//! The structs are plain `Copy` data: tests compare fields, the console's
//! stats command prints them with their [`Display`](core::fmt::Display)
//! implementations. Counters saturate instead of wrapping or panicking.
//! They survive device resets (they describe the device's whole life).

use core::fmt;

use super::MAX_QUEUES;
use super::error::{ChainError, TransitionError};

/// Adds one to a counter, saturating.
pub(crate) fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// Malformed chains of one queue, by reason (see [`ChainError`]). Each was
/// completed with length 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MalformedStats {
    /// [`ChainError::IndexOutOfRange`].
    pub index_out_of_range: u64,
    /// [`ChainError::TooLong`] (includes loops).
    pub too_long: u64,
    /// [`ChainError::DescriptorUnreadable`].
    pub descriptor_unreadable: u64,
    /// [`ChainError::Indirect`].
    pub indirect: u64,
    /// [`ChainError::UnknownFlags`].
    pub unknown_flags: u64,
    /// [`ChainError::ZeroLength`].
    pub zero_length: u64,
    /// [`ChainError::BufferOutOfRange`].
    pub buffer_out_of_range: u64,
    /// [`ChainError::ReadableAfterWritable`].
    pub readable_after_writable: u64,
    /// [`ChainError::LengthOverflow`].
    pub length_overflow: u64,
    /// The most recent error, with its details.
    pub last: Option<ChainError>,
}

impl MalformedStats {
    /// Counts `error`.
    pub(crate) fn record(&mut self, error: ChainError) {
        let counter = match error {
            ChainError::IndexOutOfRange { .. } => &mut self.index_out_of_range,
            ChainError::TooLong { .. } => &mut self.too_long,
            ChainError::DescriptorUnreadable { .. } => &mut self.descriptor_unreadable,
            ChainError::Indirect { .. } => &mut self.indirect,
            ChainError::UnknownFlags { .. } => &mut self.unknown_flags,
            ChainError::ZeroLength { .. } => &mut self.zero_length,
            ChainError::BufferOutOfRange { .. } => &mut self.buffer_out_of_range,
            ChainError::ReadableAfterWritable { .. } => &mut self.readable_after_writable,
            ChainError::LengthOverflow { .. } => &mut self.length_overflow,
        };
        bump(counter);
        self.last = Some(error);
    }

    /// All malformed chains, whatever the reason.
    pub fn total(&self) -> u64 {
        [
            self.index_out_of_range,
            self.too_long,
            self.descriptor_unreadable,
            self.indirect,
            self.unknown_flags,
            self.zero_length,
            self.buffer_out_of_range,
            self.readable_after_writable,
            self.length_overflow,
        ]
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

/// Counters of one virtqueue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Well-formed chains returned to the used ring (by `complete` or drop).
    pub chains_completed: u64,
    /// Of those, chains a backend dropped without calling `complete`.
    pub completed_on_drop: u64,
    /// Chains a backend gave back to the available ring untouched, to take
    /// again later (a transmitter waiting for room at its destination).
    pub put_back: u64,
    /// Malformed chains, completed with length 0.
    pub malformed: MalformedStats,
    /// `avail.idx` jumps larger than the queue size (each faults the queue).
    pub avail_index_jumps: u64,
    /// Batches after which a used-buffer interrupt was sent.
    pub interrupts_sent: u64,
    /// Batches whose interrupt the driver suppressed (`NO_INTERRUPT`).
    pub interrupts_suppressed: u64,
}

/// Register accesses the transport refused, by reason. A refused read
/// returns 0; a refused write changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterStats {
    /// Not a 32-bit aligned access to a control register, or a config
    /// access that is not 1, 2 or 4 bytes naturally aligned.
    pub bad_width: u64,
    /// No register at that offset (or beyond the device's config space).
    pub unknown_offset: u64,
    /// A read of a write-only register or a write to a read-only one.
    pub wrong_direction: u64,
    /// A register not writable in the current state (queue registers
    /// outside configuration, a ready queue's frozen registers, driver
    /// features after FEATURES_OK, a notify before DRIVER_OK, ...).
    pub wrong_state: u64,
    /// A value the register does not accept (QueueNum 0, too large or not
    /// a power of two; QueueReady other than 0/1; a queue index that does
    /// not exist; a config write the device does not accept).
    pub bad_value: u64,
}

impl RegisterStats {
    /// All refused accesses, whatever the reason.
    pub fn total(&self) -> u64 {
        [
            self.bad_width,
            self.unknown_offset,
            self.wrong_direction,
            self.wrong_state,
            self.bad_value,
        ]
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

/// Counters of one virtio-mmio transport (device-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Refused register accesses.
    pub registers: RegisterStats,
    /// Status writes that did not follow the spec's path.
    pub refused_status_transitions: u64,
    /// The most recent refused status transition.
    pub last_refused_transition: Option<TransitionError>,
    /// FEATURES_OK writes refused because the driver accepted features the
    /// device did not offer or did not accept VERSION_1.
    pub features_refused: u64,
    /// QueueReady=1 writes refused because the queue layout was invalid.
    pub queue_layouts_refused: u64,
    /// Device resets (Status written with 0).
    pub resets: u64,
    /// Times the device set DEVICE_NEEDS_RESET.
    pub needs_reset: u64,
    /// Configuration-change interrupts sent.
    pub config_interrupts: u64,
}

/// Everything one virtio-mmio device counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Device-wide counters.
    pub transport: TransportStats,
    /// Per-queue counters (index = queue index).
    pub queues: [QueueStats; MAX_QUEUES],
}

impl fmt::Display for MalformedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed={} (index={} long={} unreadable={} indirect={} flags={} zero={} range={} order={} overflow={})",
            self.total(),
            self.index_out_of_range,
            self.too_long,
            self.descriptor_unreadable,
            self.indirect,
            self.unknown_flags,
            self.zero_length,
            self.buffer_out_of_range,
            self.readable_after_writable,
            self.length_overflow
        )
    }
}

impl fmt::Display for QueueStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chains={} dropped={} jumps={} irq={} suppressed={} {}",
            self.chains_completed,
            self.completed_on_drop,
            self.avail_index_jumps,
            self.interrupts_sent,
            self.interrupts_suppressed,
            self.malformed
        )
    }
}

impl fmt::Display for RegisterStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused-regs={} (width={} offset={} direction={} state={} value={})",
            self.total(),
            self.bad_width,
            self.unknown_offset,
            self.wrong_direction,
            self.wrong_state,
            self.bad_value
        )
    }
}

impl fmt::Display for TransportStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resets={} refused-status={} refused-features={} refused-queues={} needs-reset={} config-irq={} {}",
            self.resets,
            self.refused_status_transitions,
            self.features_refused,
            self.queue_layouts_refused,
            self.needs_reset,
            self.config_interrupts,
            self.registers
        )
    }
}

impl fmt::Display for DeviceStats {
    /// One line for the transport, then one per queue that saw any
    /// activity.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.transport)?;
        for (index, queue) in self.queues.iter().enumerate() {
            if *queue != QueueStats::default() {
                write!(f, "\n  q{index}: {queue}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_by_reason() {
        let mut m = MalformedStats::default();
        m.record(ChainError::ZeroLength { index: 3 });
        m.record(ChainError::ZeroLength { index: 4 });
        m.record(ChainError::TooLong { limit: 8 });
        assert_eq!(m.zero_length, 2);
        assert_eq!(m.too_long, 1);
        assert_eq!(m.total(), 3);
        assert_eq!(m.last, Some(ChainError::TooLong { limit: 8 }));
    }

    #[test]
    fn counters_saturate() {
        let mut c = u64::MAX;
        bump(&mut c);
        assert_eq!(c, u64::MAX);
    }

    #[test]
    fn display_mentions_active_queues_only() {
        let mut s = DeviceStats::default();
        s.queues[1].chains_completed = 7;
        let text = format!("{s}");
        assert!(text.contains("q1: chains=7"));
        assert!(!text.contains("q0:"));
    }
}
