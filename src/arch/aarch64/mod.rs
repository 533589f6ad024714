//! AArch64 EL2: boot, exception vectors, world switch, MMU, GIC, timers.
//!
//! This is the only part of the hypervisor with assembly, system-register
//! and device-register access. It exposes small safe functions to the run
//! loops; the decisions are made by the host-tested logic modules.

pub mod boot;
pub mod cpu;
pub mod exceptions;
pub mod gic;
pub mod guest;
pub mod launch;
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

use core::sync::atomic::{AtomicBool, Ordering};

static CONSOLE_LOCK: spin::Mutex<()> = spin::Mutex::new(());
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Writes hypervisor output to the physical UART, one message at a time
/// across CPUs (bypassing the lock once a panic is being reported).
fn console_write(s: &str) {
    if PANICKING.load(Ordering::Relaxed) {
        uart::write_bytes(s.as_bytes());
        return;
    }
    let _guard = CONSOLE_LOCK.lock();
    uart::write_bytes(s.as_bytes());
}

/// First initialisation on the boot CPU: the console.
pub fn init_console() {
    uart::init();
    crate::print::set_writer(console_write);
}
