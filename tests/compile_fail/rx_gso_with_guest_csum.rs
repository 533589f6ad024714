//! The checksum-offload proof does not cover segmentation offload: a GSO
//! frame's `deliverable_to` takes a `GuestTso`, not a `GuestCsum`.
use hypervisor::virtio::net::{Deliverable, Gso, GuestCsum, RxFrame};

fn deliver_gso<'f>(frame: RxFrame<'f, Gso>, proof: &GuestCsum) -> Option<Deliverable<'f>> {
    frame.deliverable_to(proof)
}

fn main() {}
