//! The seed plan's network unit tests on the host: the same bodies the
//! in-QEMU suite `net-seed` runs (`tests/el2/net_seed_cases.rs`).

#[path = "el2/net_seed_cases.rs"]
mod cases;

/// Runs a shared case, turning a failed check into a test failure.
fn run(case: fn() -> hypervisor::selftest::TestResult) {
    if let Err(failure) = case() {
        panic!("{failure}");
    }
}

#[test]
fn net_rx_ring_seed() {
    run(cases::net_rx_ring_seed);
}

#[test]
fn vswitch_seed() {
    run(cases::vswitch_seed);
}

/// The only test in this binary that touches `VSWITCH` / `PORT_RX`.
#[test]
fn vswitch_seed_global() {
    run(cases::vswitch_seed_global);
}

#[test]
fn virtio_net_seed() {
    run(cases::virtio_net_seed);
}

#[test]
fn config_reads_at_every_width() {
    run(cases::config_reads_at_every_width);
}

#[test]
fn mac_lock_drops_spoofed_frames() {
    run(cases::mac_lock_drops_spoofed_frames);
}

#[test]
fn mac_table_full_evicts_oldest() {
    run(cases::mac_table_full_evicts_oldest);
}

#[test]
fn ring_full_drops_are_counted() {
    run(cases::ring_full_drops_are_counted);
}
