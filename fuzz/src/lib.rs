//! Fuzz harnesses for the hypervisor's guest-facing code.
//!
//! Each module is one target: `run(data)` turns the fuzzer's bytes into a
//! structured input with [`arbitrary`] (exactly as `libfuzzer-sys` does for a
//! typed target), drives the code under test through its public API (the
//! MMIO interface a guest reaches, [`GuestMemory`], the switch's methods) and
//! checks invariants against a model kept by the harness, independently of
//! the implementation. A violated invariant panics, which libFuzzer reports
//! as a crash.
//!
//! The same functions run on stable as ordinary tests
//! (`tests/fuzz/regressions.rs`) over every committed seed
//! (`fuzz/seeds/<target>/`) and crash reproducer (`tests/fuzz/<target>/`).
//!
//! [`GuestMemory`]: hypervisor::guest_memory::GuestMemory
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod boot_config;
pub mod gso;
pub mod loader;
pub mod mem;
pub mod pl011;
pub mod vgic;
pub mod virtio_blk;
pub mod virtio_model;
pub mod virtio_net;
pub mod virtio_queue;
pub mod virtio_transport;
pub mod vswitch;

use arbitrary::{Arbitrary, Unstructured};

/// A target's entry point: runs one input, panics on a violated invariant.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory of its seeds) and its entry point.
pub const TARGETS: &[(&str, Target)] = &[
    ("virtio_transport", virtio_transport::run),
    ("virtio_queue", virtio_queue::run),
    ("virtio_blk", virtio_blk::run),
    ("virtio_net", virtio_net::run),
    ("vswitch", vswitch::run),
    ("vgic", vgic::run),
    ("pl011", pl011::run),
    ("boot_config", boot_config::run),
    ("loader", loader::run),
    ("gso", gso::run),
];

/// Decodes `data` the way `libfuzzer_sys::fuzz_target!` decodes a typed
/// input (`arbitrary_take_rest`); `None` if the bytes do not make one.
pub fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}
