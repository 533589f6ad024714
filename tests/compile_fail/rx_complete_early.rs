//! Completing an RX chain whose frame has not been written does not
//! compile: only `FrameWritten` has `complete`.
use hypervisor::virtio::net::{HeaderWritten, RxChain};

fn complete_early(rx: RxChain<'_, HeaderWritten<'_>>) -> u32 {
    rx.complete()
}

fn main() {}
