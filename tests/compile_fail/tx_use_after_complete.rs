//! A completed TX chain cannot be used again: `complete` consumes it.
use hypervisor::virtio::net::{FrameRead, TxChain};

fn twice(tx: TxChain<'_, FrameRead>) -> u32 {
    let first = tx.complete();
    first + tx.complete()
}

fn main() {}
