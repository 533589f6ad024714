//! Emulated devices and the per-VM device manager.

pub mod pl011;
