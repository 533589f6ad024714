//! PSCI calls the hypervisor makes to the platform firmware (QEMU's PSCI
//! emulation, reached with SMC from EL2).

use hal::psci;

unsafe extern "C" {
    /// Entry point of secondary CPUs (see `boot.rs`).
    fn secondary_entry();
}

/// Starts physical CPU `cpu` (MPIDR Aff0) at the hypervisor's secondary
/// entry with its index as context. Returns the PSCI status (0 = success).
pub fn cpu_on(cpu: usize) -> i64 {
    let entry = secondary_entry as *const () as usize as u64;
    let mut x0 = psci::CPU_ON_64 as u64;
    // SAFETY: the call clobbers only x0-x3 (SMCCC), declared below.
    // SMC #0 is the PSCI conduit; CPU_ON starts another CPU at the
    // hypervisor's own entry code, which picks its stack by CPU index.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") x0,
            inout("x1") cpu as u64 => _,
            inout("x2") entry => _,
            inout("x3") cpu as u64 => _,
            options(nostack)
        );
    }
    x0 as i64
}

/// PSCI_VERSION of the platform firmware.
pub fn version() -> u64 {
    let mut x0 = psci::PSCI_VERSION as u64;
    // SAFETY: PSCI_VERSION has no side effects; SMCCC clobbers x0-x3.
    unsafe {
        core::arch::asm!("smc #0", inout("x0") x0, out("x1") _, out("x2") _, out("x3") _,
            options(nostack));
    }
    x0
}
