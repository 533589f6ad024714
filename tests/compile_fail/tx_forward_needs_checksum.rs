//! A frame whose checksum is still partial cannot be handed to the switch:
//! only a `Plain` frame has `bytes`, the form every port accepts (no port
//! negotiates `GUEST_CSUM`); `complete_checksum` makes it plain.
use hypervisor::net::NetSwitch;
use hypervisor::virtio::net::{NeedsChecksum, TxFrame};

fn forward_partial(switch: &NetSwitch, frame: TxFrame<'_, NeedsChecksum>) -> u32 {
    switch.forward(0, frame.bytes())
}

fn main() {}
