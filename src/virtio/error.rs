//! Every error type of the virtio core, in one leaf module.
//!
//! The chain walk, the queues, the lifecycle and the counters all name
//! these types; keeping them here (importing nothing from the rest of
//! `virtio`) is what lets those modules depend on each other in one
//! direction only.

use core::fmt;

use hal::virtio_mmio::DeviceStatus;

use crate::guest_memory::MemError;

/// Why a descriptor chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A head or `next` index at or beyond the queue size.
    IndexOutOfRange {
        /// The offending index.
        index: u16,
        /// The queue size.
        size: u16,
    },
    /// More descriptors than `limit` (a loop, or simply too long).
    TooLong {
        /// min(queue size, [`MAX_CHAIN_DESCRIPTORS`](super::MAX_CHAIN_DESCRIPTORS)).
        limit: usize,
    },
    /// The descriptor could not be read (only possible if the descriptor
    /// table were outside RAM, which queue validation rules out).
    DescriptorUnreadable {
        /// Index of the descriptor.
        index: u16,
    },
    /// `VIRTQ_DESC_F_INDIRECT` set, but indirect descriptors were not
    /// negotiated.
    Indirect {
        /// Index of the descriptor.
        index: u16,
    },
    /// Flag bits the split ring does not define.
    UnknownFlags {
        /// Index of the descriptor.
        index: u16,
        /// Its flags.
        flags: u16,
    },
    /// A descriptor with `len == 0`.
    ZeroLength {
        /// Index of the descriptor.
        index: u16,
    },
    /// A buffer not entirely inside guest RAM (including `addr + len`
    /// overflowing 64 bits).
    BufferOutOfRange {
        /// Index of the descriptor.
        index: u16,
        /// Its address.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// A device-readable descriptor after a device-writable one.
    ReadableAfterWritable {
        /// Index of the offending readable descriptor.
        index: u16,
    },
    /// The chain's total length does not fit in a `u32`.
    LengthOverflow {
        /// Index of the descriptor that pushed the total over.
        index: u16,
    },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChainError::IndexOutOfRange { index, size } => {
                write!(f, "descriptor index {index} >= queue size {size}")
            }
            ChainError::TooLong { limit } => write!(f, "chain longer than {limit} descriptors"),
            ChainError::DescriptorUnreadable { index } => {
                write!(f, "descriptor {index} unreadable")
            }
            ChainError::Indirect { index } => {
                write!(f, "descriptor {index} is indirect (not negotiated)")
            }
            ChainError::UnknownFlags { index, flags } => {
                write!(f, "descriptor {index} has unknown flags {flags:#x}")
            }
            ChainError::ZeroLength { index } => write!(f, "descriptor {index} has length 0"),
            ChainError::BufferOutOfRange { index, addr, len } => {
                write!(
                    f,
                    "descriptor {index} buffer {addr:#x}+{len:#x} outside RAM"
                )
            }
            ChainError::ReadableAfterWritable { index } => {
                write!(f, "readable descriptor {index} after a writable one")
            }
            ChainError::LengthOverflow { index } => {
                write!(f, "chain length overflows u32 at descriptor {index}")
            }
        }
    }
}

/// Why a [`Reader`](super::Reader) or [`Writer`](super::Writer) operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferError {
    /// The request needs more bytes than remain in this part; nothing was
    /// read or written.
    TooShort {
        /// Bytes the operation needed.
        wanted: usize,
        /// Bytes that remained.
        remaining: u32,
    },
    /// Guest memory refused the copy (impossible for a validated chain
    /// over the same memory; reported rather than panicking).
    Memory(MemError),
}

impl From<MemError> for BufferError {
    fn from(e: MemError) -> Self {
        BufferError::Memory(e)
    }
}

impl fmt::Display for BufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BufferError::TooShort { wanted, remaining } => {
                write!(f, "needed {wanted} bytes, {remaining} remain")
            }
            BufferError::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// One of the three areas of a split virtqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingPart {
    /// The descriptor table (descriptor area).
    DescriptorTable,
    /// The available ring (driver area).
    AvailRing,
    /// The used ring (device area).
    UsedRing,
}

/// Why a queue configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// A size of 0.
    SizeZero,
    /// A size above the device's `QueueNumMax`.
    SizeTooLarge {
        /// The size the driver asked for.
        size: u32,
        /// The device's maximum.
        max: u16,
    },
    /// A size that is not a power of two (split rings require one).
    SizeNotPowerOfTwo {
        /// The size the driver asked for.
        size: u32,
    },
    /// An area that is not aligned as the spec requires.
    Misaligned {
        /// Which area.
        part: RingPart,
        /// Its guest-physical address.
        gpa: u64,
    },
    /// An area that is not entirely inside guest RAM.
    OutsideRam {
        /// Which area.
        part: RingPart,
        /// Its guest-physical address.
        gpa: u64,
        /// Its length in bytes.
        len: u64,
    },
}

/// Why a live queue stopped processing (it stays stopped until reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueFault {
    /// `avail.idx` moved more than the queue size past the device's
    /// position: the driver claims to have made more buffers available
    /// than the ring can hold, so the ring contents cannot be trusted.
    AvailIndexJump {
        /// The `avail.idx` the driver published.
        avail_idx: u16,
        /// The device's next available-ring position.
        next_avail: u16,
    },
    /// A ring area could not be accessed (impossible for a validated
    /// layout over the same guest memory; kept so that it is not a panic).
    RingAccess(MemError),
}

/// Why the device refused the driver's features (FEATURES_OK stays clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
    /// The driver accepted bits the device did not offer.
    NotOffered {
        /// The offending bits (bits 64 and up are reported as bit 63).
        bits: u64,
    },
    /// The driver did not accept `VIRTIO_F_VERSION_1`, which the version 2
    /// MMIO transport requires.
    Version1Missing,
}

/// Why a status write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionRefusal {
    /// Bits the status field does not define (16, 32, above 128).
    UndefinedBits,
    /// The write clears a bit that is set (only a reset may do that).
    ClearsBits,
    /// The write adds more than one bit at once.
    SeveralBits,
    /// The added bit is not the next step on the spec's path.
    OutOfOrder,
    /// FAILED is set: only a reset is accepted.
    AfterFailed,
    /// DRIVER_OK while the device reports DEVICE_NEEDS_RESET.
    NeedsReset,
}

/// A refused status write, with the state it was refused in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransitionError {
    /// The status before the write.
    pub from: DeviceStatus,
    /// The value written.
    pub written: u32,
    /// Why it was refused.
    pub reason: TransitionRefusal,
}
