//! The panic handler: report file:line and message, exit with failure.
//! The report comes out even if the panic struck while the console lock
//! was held (see [`crate::print::ReportGate`]).

use core::panic::PanicInfo;
use core::sync::atomic::Ordering;

use super::{PANICKING, semihosting};

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let first = !PANICKING.swap(true, Ordering::SeqCst);
    // Never wait without bound for a console lock this CPU may hold.
    crate::print::REPORT_GATE.begin();
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
