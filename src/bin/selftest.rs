//! The EL2 test image: runs every in-QEMU suite and exits QEMU with the
//! result (`make run`). The suites live in `tests/el2/`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[path = "../../tests/el2/mod.rs"]
mod suites;

#[cfg(target_os = "none")]
mod image {
    use hypervisor::arch::aarch64::{self as arch, semihosting};
    use hypervisor::hv_println;
    use hypervisor::selftest::Runner;

    #[unsafe(no_mangle)]
    extern "C" fn hv_primary_main(cpu: usize) -> ! {
        arch::init_console();
        hv_println!(
            "hypervisor self-test: CPU {} at EL{}, MMU and caches on",
            cpu,
            arch::cpu::current_el()
        );
        let mut runner = Runner::new();
        for suite in super::suites::ALL {
            runner.run_suite(suite);
        }
        let ok = runner.finish();
        semihosting::exit(if ok {
            semihosting::EXIT_SUCCESS
        } else {
            semihosting::EXIT_FAILURE
        })
    }

    #[unsafe(no_mangle)]
    extern "C" fn hv_secondary_main(cpu: usize) -> ! {
        super::suites::secondary_main(cpu)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the self-test image runs at EL2 under QEMU: use `make run`");
    std::process::exit(2);
}
