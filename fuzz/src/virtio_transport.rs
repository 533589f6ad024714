//! Target `virtio_transport`: any sequence of register reads and writes at
//! any offset and width, queue setup in any order, resets mid-I/O, against
//! a virtio-blk device; checked by [`crate::virtio_model`].

use arbitrary::Arbitrary;

use crate::virtio_blk::with_disk;
use crate::virtio_model::{Guest, Op};

/// The input: a sequence of guest operations.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// What the guest does, in order.
    pub ops: Vec<Op>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    with_disk(|blk| {
        let mut guest = Guest::new(blk, 0);
        for op in input.ops.iter().take(256) {
            guest.apply(op);
        }
    });
}
