//! Fuzz target `virtio_transport`: see `hypervisor_fuzz::virtio_transport`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::virtio_transport::run(data));
