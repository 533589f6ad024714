//! A bare-metal ARM64 type-1 hypervisor with safe virtio-mmio.
//!
//! This crate is the hypervisor's logic. It runs at EL2 on QEMU's `virt`
//! machine, boots Linux guests at EL1 and connects them through virtio-net
//! and an in-hypervisor L2 switch. Everything outside `arch` is ordinary
//! `no_std` Rust that never touches hardware, so it builds for the host and
//! is tested there with `cargo test` against `Vec`-backed guest memory.
//!
//! Reading order for the virtio reference: [`guest_memory`] (the one door
//! into guest RAM) → [`virtio`] (split virtqueues as zerocopy structs,
//! descriptor chains split into a read-only [`virtio::Reader`] cursor over
//! the device-readable part and a write-only [`virtio::Writer`] cursor over
//! the device-writable part, the virtio-mmio v2 transport and the
//! Negotiated/Live device lifecycle) → `virtio::blk` → `virtio::net` and
//! [`net`] (the VSwitch and per-port rings).
//!
//! Layers, lowest first; a layer uses only the layers below it:
//! 1. `hal` (separate crate): register maps and encodings.
//! 2. This crate's logic modules: guest memory, virtio, vGIC model, device
//!    emulation, trap decoding, PSCI, stage-2 construction, scheduling policy.
//! 3. `arch` (AArch64 bare metal only): boot, vectors, world switch, MMU,
//!    physical GIC and timers, and the run loops
//!    (`arch::aarch64::runtime`).
//! 4. The two images (`src/main.rs`, `src/bin/selftest.rs`): entry points
//!    that hand every physical CPU to the run loop.
//!
//! Within layer 2 the modules form a hierarchy without cycles (the order
//! is in `docs/architecture.md`; `make lint` checks it with
//! `tests/lint/module_graph.py`).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod console;
pub mod debug_regs;
pub mod devices;
pub mod guest_memory;
pub mod hypercall;
pub mod id_regs;
pub mod irq;
pub mod loader;
pub mod mmio;
pub mod net;
pub mod platform;
pub mod print;
pub mod psci;
pub mod restart;
pub mod sched;
pub mod selftest;
pub mod spsc;
pub mod stage2;
#[cfg(test)]
mod test_rng;
pub mod trap;
pub mod vcpu;
pub mod vgic;
pub mod virtio;
pub mod vm;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;
