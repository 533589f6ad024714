//! The EL2 physical timer (CNTHP, PPI 26): the hypervisor's own tick.
//!
//! The run loop arms it for the end of the current time slice or for the
//! earliest virtual-timer deadline of a vCPU that is waiting, whichever
//! comes first; when it fires, the guest exits with an IRQ and the run loop
//! reschedules.

use hal::{read_sysreg, write_sysreg};

/// Arms the timer to fire when the physical count reaches `deadline`.
pub fn arm(deadline: u64) {
    // SAFETY: programming the EL2 physical timer, which only the hypervisor
    // uses; ENABLE = 1, IMASK = 0.
    unsafe {
        write_sysreg!("cnthp_cval_el2", deadline);
        write_sysreg!("cnthp_ctl_el2", 1);
        core::arch::asm!("isb");
    }
}

/// Stops the timer (its interrupt line drops).
pub fn disarm() {
    // SAFETY: disabling the hypervisor's own timer.
    unsafe {
        write_sysreg!("cnthp_ctl_el2", 0);
        core::arch::asm!("isb");
    }
}

/// True if the timer is enabled and its condition is met.
pub fn fired() -> bool {
    let ctl = read_sysreg!("cnthp_ctl_el2");
    ctl & 1 != 0 && ctl & 4 != 0
}
