//! The EL2 physical timer (CNTHP, PPI 26): the hypervisor's own tick.
//!
//! The run loop arms it for the end of the current time slice or for the
//! earliest virtual-timer deadline of a vCPU that is waiting, whichever
//! comes first; when it fires, the guest exits with an IRQ and the run loop
//! reschedules.

use aarch64_cpu::registers::{CNTHP_CTL_EL2, Readable, Writeable};
use hal::{el2, write_sysreg};

/// Arms the timer to fire when the physical count reaches `deadline`.
pub fn arm(deadline: u64) {
    // SAFETY: the compare value of the hypervisor's own timer.
    // The EL2 physical timer is the hypervisor's own; ENABLE = 1, IMASK = 0.
    // CNTHP_CVAL_EL2 by name: `aarch64-cpu` 11.2 has CNTHP_CTL_EL2 but no
    // CNTHP_CVAL_EL2.
    unsafe { write_sysreg!("cnthp_cval_el2", deadline) };
    CNTHP_CTL_EL2.set(el2::CNTHP_CTL_ARMED);
    isb();
}

/// Stops the timer (its interrupt line drops).
pub fn disarm() {
    CNTHP_CTL_EL2.set(0);
    isb();
}

/// True if the timer is enabled and its condition is met.
pub fn fired() -> bool {
    el2::cnthp_fired(CNTHP_CTL_EL2.get())
}

fn isb() {
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}
