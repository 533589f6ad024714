//! Fuzz target `virtio_blk`: see `hypervisor_fuzz::virtio_blk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::virtio_blk::run(data));
