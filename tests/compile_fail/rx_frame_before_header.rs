//! Writing an RX frame before its header does not compile: an `Empty`
//! chain has no `write_frame`.
use hypervisor::virtio::net::{Empty, RxChain};

fn frame_first(rx: RxChain<'_, Empty>) {
    let _ = rx.write_frame();
}

fn main() {}
