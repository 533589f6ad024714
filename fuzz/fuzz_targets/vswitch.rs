//! Fuzz target `vswitch`: see `hypervisor_fuzz::vswitch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::vswitch::run(data));
