//! A segmentation-offload frame cannot be forwarded as a plain frame:
//! only a `Plain` frame has `bytes`; a GSO frame goes to the switch with
//! its metadata (`gso`), and each receiver segments it or hands it to a
//! driver that negotiated receive segmentation offload.
use hypervisor::net::NetSwitch;
use hypervisor::virtio::net::{Gso, TxFrame};

fn forward_gso(switch: &NetSwitch, frame: TxFrame<'_, Gso>) -> u32 {
    switch.forward(0, frame.bytes())
}

fn main() {}
