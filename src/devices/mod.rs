//! Emulated devices and the per-VM device manager.
