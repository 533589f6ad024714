//! Fuzz target `boot_config`: see `hypervisor_fuzz::boot_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::boot_config::run(data));
