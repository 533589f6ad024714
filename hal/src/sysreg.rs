//! Thin system-register access for bare-metal AArch64.
//!
//! Registers are reached through `aarch64-cpu`'s typed registers
//! (re-exported as [`cpu`]) wherever that crate (11.2) defines them: the
//! hypervisor uses them for HCR_EL2, VTCR_EL2, VTTBR_EL2, CPTR_EL2,
//! MDCR_EL2, the timer registers (CNTHCTL_EL2, CNTVOFF_EL2, CNTHP_CTL_EL2,
//! CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTKCTL_EL1, CNTPCT_EL0, CNTFRQ_EL0), every
//! ICH_*_EL2 register of the virtual CPU interface and ICC_SRE_EL2. The
//! macros below are for what it does not define, by name
//! or by `S3_<op1>_C<n>_C<m>_<op2>` encoding: CNTHP_CVAL_EL2, VPIDR_EL2,
//! ZCR_EL1/ZCR_EL2, the GICv3 CPU-interface registers ICC_PMR_EL1,
//! ICC_BPR1_EL1, ICC_IGRPEN1_EL1, ICC_IAR1_EL1, ICC_EOIR1_EL1 and
//! ICC_SGI1R_EL1 (and ICC_CTLR_EL1, which it defines read-only), the PMU
//! and debug registers, ID registers by encoding;
//! and for the EL1 context that `vcpu::load`/`put` move as plain values.
//! CPTR_EL2 is typed but only its TAM field is defined, so its TZ bit is a
//! raw constant. Nothing in this module makes policy decisions.

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
