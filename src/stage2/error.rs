//! The stage-2 error catalogue: why tables could not be built
//! ([`Stage2Error`]), why a software walk found no translation
//! ([`WalkFault`]), and why a VM's standard tables could not be built
//! ([`VmStage2Error`]), each with the message the hypervisor prints.

use core::fmt;

use crate::platform;

use super::{AllocError, IPA_BITS, MAX_REGIONS, MIN_PARANGE, PAGE_SIZE};

/// Why building stage-2 tables failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// ID_AA64MMFR0_EL1.PARange holds a reserved encoding.
    ParangeReserved {
        /// The PARange value.
        parange: u64,
    },
    /// The machine's physical address size cannot hold a 39-bit IPA space.
    ParangeTooSmall {
        /// The PARange value.
        parange: u64,
        /// Physical address bits it encodes.
        pa_bits: u32,
    },
    /// A mapping of zero bytes.
    EmptyRange {
        /// Guest-physical start.
        ipa: u64,
    },
    /// IPA, PA or size is not a multiple of 4 KiB.
    Misaligned {
        /// Guest-physical start.
        ipa: u64,
        /// Host-physical start.
        pa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// The range ends beyond the 39-bit IPA space (or wraps).
    IpaOutOfRange {
        /// Guest-physical start.
        ipa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// The range ends beyond the machine's physical address size (or wraps).
    PaOutOfRange {
        /// Host-physical start.
        pa: u64,
        /// Size in bytes.
        size: u64,
        /// Usable physical address bits.
        pa_bits: u32,
    },
    /// The guest-physical range overlaps one mapped before.
    IpaOverlap {
        /// Guest-physical start.
        ipa: u64,
        /// Size in bytes.
        size: u64,
        /// Start of the existing range.
        other_ipa: u64,
        /// Size of the existing range.
        other_size: u64,
    },
    /// The host-physical range overlaps one mapped before (aliasing).
    PaOverlap {
        /// Host-physical start.
        pa: u64,
        /// Size in bytes.
        size: u64,
        /// Start of the existing range.
        other_pa: u64,
        /// Size of the existing range.
        other_size: u64,
    },
    /// More than [`MAX_REGIONS`] ranges.
    TooManyRegions,
    /// The table allocator cannot provide the tables this mapping needs.
    OutOfTables {
        /// Guest-physical start of the refused mapping.
        ipa: u64,
        /// Its size.
        size: u64,
        /// Tables it needs.
        needed: usize,
        /// Tables left.
        available: usize,
    },
    /// The allocator failed (unbound pool, or it ran out although it
    /// reported enough tables).
    Alloc(AllocError),
    /// A table handed out by the allocator is misaligned or lies beyond the
    /// physical address size, where the walker cannot reach it.
    BadTableAddress {
        /// The table's physical address.
        pa: u64,
        /// Usable physical address bits.
        pa_bits: u32,
    },
    /// A descriptor points to a table the allocator does not know (the
    /// allocator lost it, or the tables were corrupted).
    MissingTable {
        /// The table's physical address.
        pa: u64,
    },
    /// The tables disagree with the recorded ranges (internal error).
    Conflict {
        /// The guest-physical address concerned.
        ipa: u64,
    },
    /// A previous `map` failed half-way; these tables must not be used.
    Poisoned,
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Stage2Error::*;
        match *self {
            ParangeReserved { parange } => write!(
                f,
                "ID_AA64MMFR0_EL1.PARange = {parange:#x} is a reserved encoding"
            ),
            ParangeTooSmall { parange, pa_bits } => write!(
                f,
                "ID_AA64MMFR0_EL1.PARange = {parange:#x} ({pa_bits}-bit physical addresses) \
                 cannot hold the {IPA_BITS}-bit guest-physical space; at least PARange \
                 {MIN_PARANGE:#x} (40 bits) is needed"
            ),
            EmptyRange { ipa } => write!(f, "stage-2 mapping at IPA {ipa:#x} has size 0"),
            Misaligned { ipa, pa, size } => write!(
                f,
                "stage-2 mapping IPA {ipa:#x} -> PA {pa:#x}, size {size:#x}: {} is not a \
                 multiple of 4 KiB",
                if ipa % PAGE_SIZE != 0 {
                    "the IPA"
                } else if pa % PAGE_SIZE != 0 {
                    "the PA"
                } else {
                    "the size"
                }
            ),
            IpaOutOfRange { ipa, size } => write!(
                f,
                "stage-2 mapping IPA {ipa:#x}+{size:#x} ends beyond the {IPA_BITS}-bit \
                 guest-physical space (limit {:#x})",
                1u64 << IPA_BITS
            ),
            PaOutOfRange { pa, size, pa_bits } => write!(
                f,
                "stage-2 mapping PA {pa:#x}+{size:#x} ends beyond the machine's \
                 {pa_bits}-bit physical address space (limit {:#x})",
                1u64.checked_shl(pa_bits).unwrap_or(u64::MAX)
            ),
            IpaOverlap {
                ipa,
                size,
                other_ipa,
                other_size,
            } => write!(
                f,
                "stage-2 mapping IPA {ipa:#x}+{size:#x} overlaps the mapping at IPA \
                 {other_ipa:#x}+{other_size:#x}"
            ),
            PaOverlap {
                pa,
                size,
                other_pa,
                other_size,
            } => write!(
                f,
                "stage-2 mapping PA {pa:#x}+{size:#x} overlaps the mapping of PA \
                 {other_pa:#x}+{other_size:#x} (host memory mapped twice)"
            ),
            TooManyRegions => write!(f, "more than {MAX_REGIONS} stage-2 ranges in one VM"),
            OutOfTables {
                ipa,
                size,
                needed,
                available,
            } => write!(
                f,
                "stage-2 mapping IPA {ipa:#x}+{size:#x} needs {needed} more translation \
                 table(s) but only {available} are left in the pool"
            ),
            Alloc(e) => write!(f, "stage-2 table allocation failed: {e}"),
            BadTableAddress { pa, pa_bits } => write!(
                f,
                "translation table at PA {pa:#x} is not 4 KiB aligned or lies beyond the \
                 {pa_bits}-bit physical address space"
            ),
            MissingTable { pa } => write!(
                f,
                "stage-2 descriptor points to PA {pa:#x}, which is not a table of this pool"
            ),
            Conflict { ipa } => write!(
                f,
                "stage-2 tables already map IPA {ipa:#x} although no recorded range covers \
                 it (internal error)"
            ),
            Poisoned => write!(
                f,
                "an earlier stage-2 mapping failed half-way; rebuild these tables"
            ),
        }
    }
}

/// Why a software walk found no translation (mirrors the hardware fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// The IPA is beyond the 39-bit IPA space (level-0 translation fault
    /// on hardware).
    IpaOutOfRange {
        /// The IPA.
        ipa: u64,
    },
    /// An invalid (or reserved) descriptor at `level`.
    Translation {
        /// Level of the descriptor.
        level: u8,
    },
    /// A block or page whose access flag is clear.
    AccessFlag {
        /// Level of the descriptor.
        level: u8,
    },
    /// A next-table or output address beyond the configured PS.
    AddressSize {
        /// Level of the descriptor.
        level: u8,
    },
    /// A table descriptor points to memory the allocator does not own
    /// (software walker only; hardware would read whatever is there).
    MissingTable {
        /// Level of the table that could not be read.
        level: u8,
        /// Its physical address.
        pa: u64,
    },
}

impl fmt::Display for WalkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalkFault::IpaOutOfRange { ipa } => write!(
                f,
                "IPA {ipa:#x} is beyond the {IPA_BITS}-bit guest-physical space"
            ),
            WalkFault::Translation { level } => write!(f, "translation fault at level {level}"),
            WalkFault::AccessFlag { level } => write!(f, "access flag fault at level {level}"),
            WalkFault::AddressSize { level } => write!(f, "address size fault at level {level}"),
            WalkFault::MissingTable { level, pa } => write!(
                f,
                "level-{level} table at PA {pa:#x} is not a table of this pool"
            ),
        }
    }
}

/// Why [`build_vm_tables`](super::build_vm_tables) failed, with the VM it was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmStage2Error {
    /// Index of the VM.
    pub vm: usize,
    /// What went wrong.
    pub kind: VmStage2ErrorKind,
}

/// The reason inside a [`VmStage2Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmStage2ErrorKind {
    /// `vm >= platform::MAX_VMS`.
    NoSuchVm,
    /// The RAM size does not fit the VM's carve-out.
    RamTooLarge {
        /// Requested RAM size.
        size: u64,
        /// Largest allowed (platform::GUEST_RAM_SIZE).
        max: u64,
    },
    /// Building the tables failed.
    Stage2(Stage2Error),
}

impl fmt::Display for VmStage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vm = self.vm;
        match self.kind {
            VmStage2ErrorKind::NoSuchVm => {
                write!(f, "VM {vm}: no such VM (at most {} VMs)", platform::MAX_VMS)
            }
            VmStage2ErrorKind::RamTooLarge { size, max } => write!(
                f,
                "VM {vm}: guest RAM size {size:#x} exceeds the {max:#x} bytes its carve-out holds"
            ),
            VmStage2ErrorKind::Stage2(e) => write!(f, "VM {vm}: {e}"),
        }
    }
}
