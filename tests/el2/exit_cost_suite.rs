//! The `exit-cost` suite: the exit round-trip guest of [`super::exit_cost`]
//! runs through the production run loop with a few iterations per loop;
//! every loop must cost exactly the exits it makes, and the figures are
//! printed (`make bench` runs the same guest longer, in its own image).

use hypervisor::selftest::{Suite, Test, TestResult};
use hypervisor::{check, check_eq, check_ok, hv_println};

use super::exit_cost::{KINDS, measure};

/// The suite.
pub static SUITE: Suite = Suite {
    name: "exit-cost",
    tests: &[Test {
        name: "exit_round_trips_counted_and_timed",
        run: exit_round_trips_counted_and_timed,
    }],
};

const ITERATIONS: u64 = 200;

fn exit_round_trips_counted_and_timed() -> TestResult {
    let m = check_ok!(measure(ITERATIONS));
    check!(m.exited_ok);
    // Reads and writes of the UART (and three vGIC set-up writes), one
    // HVC per iteration plus the exit call, at most one WFI per iteration:
    // the RAM loop makes no exit.
    check_eq!(m.mmio, 2 * ITERATIONS + 3);
    check_eq!(m.hvc, ITERATIONS + 1);
    check!(m.wfi > 0 && m.wfi <= ITERATIONS);
    check!(m.exits_as_expected());
    hv_println!(
        "    exit-cost: {} exits kept the interface, {} entries left it untouched",
        m.interface_kept,
        m.entries_untouched
    );
    // Every UART access and HVC of the loops changes no interrupt state
    // (nothing is pending, the timer is off): each exit keeps the interface
    // and each next entry leaves it alone (the loops never go back to the
    // policy's housekeeping: no console line waits for a flush).
    check!(m.interface_kept >= 3 * ITERATIONS);
    check!(m.entries_untouched >= 3 * ITERATIONS);
    check!(m.entries_untouched <= m.interface_kept);
    for (i, kind) in KINDS.iter().enumerate() {
        check!(m.ticks[i] > 0);
        hv_println!(
            "    exit-cost: {} {} ns per iteration",
            kind,
            m.ns_per_iteration(i)
        );
    }
    // A round trip through the hypervisor costs more than a RAM read.
    check!(m.ticks[1] > m.ticks[0]);
    Ok(())
}
