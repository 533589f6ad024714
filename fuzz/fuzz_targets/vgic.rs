//! Fuzz target `vgic`: see `hypervisor_fuzz::vgic`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::vgic::run(data));
