//! AArch64 EL2: boot, exception vectors, world switch, MMU, GIC, timers.
//!
//! This is the only part of the hypervisor with assembly, system-register
//! and device-register access. It exposes small safe functions to the run
//! loops; the decisions are made by the host-tested logic modules.

pub mod boot;
pub mod capture_file;
pub mod cpu;
pub mod exceptions;
pub mod gic;
pub mod guest;
pub mod launch;
mod memcpy;
pub mod mmu;
pub mod panic;
pub mod psci_smc;
pub mod runtime;
pub mod semihosting;
pub mod timer;
pub mod uart;
pub mod vcpu;
pub mod vgic_hw;
pub mod world_switch;

use core::sync::atomic::AtomicBool;

static PANICKING: AtomicBool = AtomicBool::new(false);

/// First initialisation on the boot CPU: the console. Every hypervisor
/// message goes through [`runtime::console_write_hv`] from here on (straight
/// to the UART until the console multiplexer is installed).
pub fn init_console() {
    uart::init();
    crate::print::set_writer(runtime::console_write_hv);
}
