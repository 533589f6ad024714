//! Fuzz target `virtio_net`: see `hypervisor_fuzz::virtio_net`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::virtio_net::run(data));
