//! Fuzz target `gso`: see `hypervisor_fuzz::gso`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::gso::run(data));
