//! Target `virtio_queue`: the chain walk and the split rings. A Live
//! virtio-blk device whose queue size the input picks (0..=32768 and beyond:
//! refused sizes leave no queue), then random descriptor tables, available
//! entries, index jumps and notifications; checked by
//! [`crate::virtio_model`].

use arbitrary::Arbitrary;

use crate::virtio_blk::with_disk;
use crate::virtio_model::{Addr, Guest, Op};

/// One ring operation.
#[derive(Arbitrary, Debug)]
pub enum RingOp {
    /// A raw descriptor.
    Desc {
        /// Index.
        index: u16,
        /// Address.
        addr: Addr,
        /// Length.
        len: u32,
        /// Flags (any bits).
        flags: u16,
        /// Next.
        next: u16,
    },
    /// A raw available entry.
    Avail {
        /// Slot.
        slot: u16,
        /// Head.
        head: u16,
    },
    /// `avail.idx += delta`.
    Publish {
        /// Added to the index.
        delta: u16,
    },
    /// `avail.flags`.
    Flags(u16),
    /// QueueNotify for queue 0.
    Notify,
    /// Any generic operation (resets, registers, whole requests).
    Other(Op),
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// QueueNum written before DRIVER_OK.
    pub size: u16,
    /// Ring operations.
    pub ops: Vec<RingOp>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    with_disk(|blk| {
        let mut guest = Guest::new(blk, 0);
        guest.bring_up(input.size);
        for op in input.ops.iter().take(512) {
            let op = match op {
                RingOp::Desc {
                    index,
                    addr,
                    len,
                    flags,
                    next,
                } => Op::Desc {
                    queue: 0,
                    index: *index,
                    addr: *addr,
                    len: *len,
                    flags: *flags,
                    next: *next,
                },
                RingOp::Avail { slot, head } => Op::AvailSlot {
                    queue: 0,
                    slot: *slot,
                    head: *head,
                },
                RingOp::Publish { delta } => Op::AvailIdx {
                    queue: 0,
                    delta: *delta,
                },
                RingOp::Flags(flags) => Op::AvailFlags {
                    queue: 0,
                    flags: *flags,
                },
                RingOp::Notify => Op::Notify { queue: 0 },
                RingOp::Other(op) => op.clone(),
            };
            guest.apply(&op);
        }
    });
}
