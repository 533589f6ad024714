//! The data the driver sent (the device-readable part) cannot be written:
//! a `Reader` has no `write_all`.
use hypervisor::virtio::blk::{BlkRequest, Data};

fn scribble(mut request: BlkRequest<'_, Data>) {
    let _ = request.data_in().write_all(b"overwrite the driver's data");
}

fn main() {}
