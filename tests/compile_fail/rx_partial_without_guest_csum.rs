//! A frame whose checksum is partial goes into a guest as is only with the
//! proof that its driver negotiated `GUEST_CSUM`: `deliverable` (no proof)
//! exists for plain frames only; the others use `deliverable_to` or
//! `complete_into`.
use hypervisor::virtio::net::{Deliverable, NeedsChecksum, RxFrame};

fn deliver_partial<'f>(frame: RxFrame<'f, NeedsChecksum>) -> Deliverable<'f> {
    frame.deliverable()
}

fn main() {}
