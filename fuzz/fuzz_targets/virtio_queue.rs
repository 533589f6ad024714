//! Fuzz target `virtio_queue`: see `hypervisor_fuzz::virtio_queue`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::virtio_queue::run(data));
