//! A buffer the driver gave for the device to fill (the device-writable
//! part) cannot be read back: a `Writer` has no `read_exact`.
use hypervisor::virtio::blk::{BlkRequest, Data};

fn peek(mut request: BlkRequest<'_, Data>) {
    let mut stale = [0u8; 16];
    let _ = request.data_out().read_exact(&mut stale);
}

fn main() {}
