//! The EL2 exit-cost image: times VM exit round trips by kind with a tiny
//! guest run through the production run loop (`tests/el2/exit_cost.rs`)
//! and prints one `EXIT-COST` line per kind and round; `make bench` runs
//! it. The iterations per loop come from the `-append` argument (a number;
//! 5000 without one).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[path = "../../tests/el2/exit_cost.rs"]
mod exit_cost;

#[cfg(target_os = "none")]
mod image {
    use hypervisor::arch::aarch64::{self as arch, semihosting};
    use hypervisor::hv_println;

    use super::exit_cost::{KINDS, measure};

    /// Rounds of the whole measurement.
    const ROUNDS: usize = 3;
    const DEFAULT_ITERATIONS: u64 = 5000;

    #[unsafe(no_mangle)]
    extern "C" fn hv_primary_main(_cpu: usize) -> ! {
        arch::init_console();
        let iterations = semihosting::command_line_number().unwrap_or(DEFAULT_ITERATIONS);
        let mut ok = true;
        for round in 0..ROUNDS {
            match measure(iterations.max(1)) {
                Ok(m) if m.exited_ok && m.exits_as_expected() => {
                    for (i, kind) in KINDS.iter().enumerate() {
                        hv_println!(
                            "EXIT-COST round={} kind={} iterations={} ns={}",
                            round,
                            kind,
                            m.iterations,
                            m.ns_per_iteration(i)
                        );
                    }
                    hv_println!(
                        "EXIT-COST round={} wfi-exits={} interface-kept={} untouched-entries={}",
                        round,
                        m.wfi,
                        m.interface_kept,
                        m.entries_untouched
                    );
                }
                Ok(m) => {
                    hv_println!(
                        "EXIT-COST FAILED: the guest did not finish its loops as expected: {:?}",
                        m
                    );
                    ok = false;
                }
                Err(e) => {
                    hv_println!("EXIT-COST FAILED: {}", e);
                    ok = false;
                }
            }
        }
        semihosting::exit(if ok {
            semihosting::EXIT_SUCCESS
        } else {
            semihosting::EXIT_FAILURE
        })
    }

    #[unsafe(no_mangle)]
    extern "C" fn hv_secondary_main(_cpu: usize) -> ! {
        loop {
            aarch64_cpu::asm::wfe();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the exit-cost image runs at EL2 under QEMU: use `make bench`");
    std::process::exit(2);
}
