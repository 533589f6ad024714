//! Fuzz target `loader`: see `hypervisor_fuzz::loader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::loader::run(data));
