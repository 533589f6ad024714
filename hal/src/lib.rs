//! Register maps and encodings for the hypervisor.
//!
//! This crate holds *no policy*: only the layout of hardware registers
//! (tock-registers blocks for memory-mapped devices, bitflags and field
//! helpers for system registers and translation-table descriptors) and pure
//! decoders such as [`esr`]. Everything except `sysreg` builds and is unit
//! tested on the host; `sysreg` is the thin layer over `aarch64-cpu` and
//! inline assembly that only exists when compiling for bare-metal AArch64.
#![no_std]
#![deny(missing_docs)]

pub mod el2;
pub mod esr;
pub mod gicv3;
pub mod ich;
pub mod pl011;
pub mod psci;
pub mod stage1;
pub mod stage2;
pub mod virtio_mmio;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod sysreg;
