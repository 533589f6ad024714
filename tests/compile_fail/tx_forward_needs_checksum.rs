//! A frame whose checksum is still partial cannot be forwarded as a plain
//! frame: only a `Plain` frame has `bytes`; a partial one goes to the
//! switch with its metadata (`partial`), or is made plain by
//! `complete_checksum`.
use hypervisor::net::NetSwitch;
use hypervisor::virtio::net::{NeedsChecksum, TxFrame};

fn forward_partial(switch: &NetSwitch, frame: TxFrame<'_, NeedsChecksum>) -> u32 {
    switch.forward(0, frame.bytes())
}

fn main() {}
