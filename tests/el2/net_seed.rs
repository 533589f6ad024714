//! The seed plan's network unit tests (NetRxRing, VSwitch, VirtioNet) and
//! a few more switch cases, at EL2. The bodies live in `net_seed_cases.rs`,
//! shared with the host test `tests/net_seed.rs`.

#[path = "net_seed_cases.rs"]
mod cases;

use hypervisor::selftest::{Suite, Test};

/// The suite.
pub static SUITE: Suite = Suite {
    name: "net-seed",
    tests: &[
        Test {
            name: "net_rx_ring_seed",
            run: cases::net_rx_ring_seed,
        },
        Test {
            name: "vswitch_seed",
            run: cases::vswitch_seed,
        },
        Test {
            name: "vswitch_seed_global",
            run: cases::vswitch_seed_global,
        },
        Test {
            name: "virtio_net_seed",
            run: cases::virtio_net_seed,
        },
        Test {
            name: "config_reads_at_every_width",
            run: cases::config_reads_at_every_width,
        },
        Test {
            name: "mac_lock_drops_spoofed_frames",
            run: cases::mac_lock_drops_spoofed_frames,
        },
        Test {
            name: "mac_table_full_evicts_oldest",
            run: cases::mac_table_full_evicts_oldest,
        },
        Test {
            name: "ring_full_drops_are_counted",
            run: cases::ring_full_drops_are_counted,
        },
    ],
};
