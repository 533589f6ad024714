//! A segmentation-offload frame goes into a guest whole only with the
//! proof that its driver negotiated `GUEST_TSO4`/`GUEST_TSO6`:
//! `deliverable` (no proof) exists for plain frames only; a GSO frame
//! uses `deliverable_to` with a `GuestTso`, or is cut into plain segments
//! by its `segmenter`.
use hypervisor::virtio::net::{Deliverable, Gso, RxFrame};

fn deliver_gso<'f>(frame: RxFrame<'f, Gso>) -> Deliverable<'f> {
    frame.deliverable()
}

fn main() {}
