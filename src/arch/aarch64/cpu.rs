//! Small per-CPU facts and barriers.

use aarch64_cpu::registers::{MPIDR_EL1, Readable};

/// Index of the running physical CPU (MPIDR_EL1.Aff0 on QEMU virt).
pub fn current_cpu() -> usize {
    (MPIDR_EL1.get() & 0xff) as usize
}

/// The exception level the CPU runs at.
pub fn current_el() -> u8 {
    hal::sysreg::current_el()
}
