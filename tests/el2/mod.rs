//! In-QEMU test suites: everything that needs real EL2 hardware (or QEMU's
//! model of it). Included into the self-test image by `src/bin/selftest.rs`;
//! run with `make run`.

use hypervisor::selftest::Suite;

mod el2_basics;
mod exit_cost;
mod exit_cost_suite;
mod guests;
mod memcpy;
mod net_seed;
mod restart;
mod vm_basics;

/// Every suite, in the order they run.
pub static ALL: &[&Suite] = &[
    &el2_basics::SUITE,
    &vm_basics::SUITE,
    &restart::SUITE,
    &net_seed::SUITE,
    &exit_cost_suite::SUITE,
    &memcpy::SUITE,
];

/// Secondary CPUs started by a suite park here unless a suite takes them.
pub fn secondary_main(_cpu: usize) -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
