//! The panic handler: report file:line and message, exit with failure.

use core::panic::PanicInfo;
use core::sync::atomic::Ordering;

use super::{PANICKING, semihosting};

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let first = !PANICKING.swap(true, Ordering::SeqCst);
    if first {
        let cpu = super::cpu::current_cpu();
        match info.location() {
            Some(loc) => crate::hv_println!(
                "\n*** HYPERVISOR PANIC on CPU {} at {}:{}: {}",
                cpu,
                loc.file(),
                loc.line(),
                info.message()
            ),
            None => crate::hv_println!("\n*** HYPERVISOR PANIC on CPU {}: {}", cpu, info.message()),
        }
    }
    semihosting::exit(semihosting::EXIT_FAILURE)
}
