//! Thin system-register access for bare-metal AArch64.
//!
//! Most registers come straight from `aarch64-cpu` (re-exported as
//! [`cpu`]); the GICv3 CPU-interface registers that crate does not name are
//! accessed here by their `S3_<op1>_C<n>_C<m>_<op2>` encodings. Nothing in
//! this module makes policy decisions.

pub use aarch64_cpu::registers as cpu;

/// Reads a system register by name or encoding.
///
/// Reading a system register has no memory side effects; the caller picks
/// a register that is readable at the current exception level.
#[macro_export]
macro_rules! read_sysreg {
    ($name:tt) => {{
        let value: u64;
        // SAFETY: an MRS of an architecturally readable register at EL2
        // touches no memory and has no side effects the compiler must know.
        unsafe {
            core::arch::asm!(concat!("mrs {0}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags));
        }
        value
    }};
}

/// Writes a system register by name or encoding.
///
/// # Safety
/// The caller guarantees that writing `value` to this register keeps the
/// system in a state that the rest of the hypervisor expects (e.g. does not
/// turn off the MMU under running code).
#[macro_export]
macro_rules! write_sysreg {
    ($name:tt, $value:expr) => {{
        let value: u64 = $value;
        core::arch::asm!(concat!("msr ", $name, ", {0}"), in(reg) value,
            options(nostack, preserves_flags));
    }};
}

/// Current exception level (0..=3), from CurrentEL.
pub fn current_el() -> u8 {
    ((read_sysreg!("CurrentEL") >> 2) & 3) as u8
}
