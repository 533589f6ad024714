//! Fuzz target `pl011`: see `hypervisor_fuzz::pl011`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::pl011::run(data));
