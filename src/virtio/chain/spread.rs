//! One delivery spread over several chains, published at once (what
//! virtio-net's `MRG_RXBUF` needs): [`LiveQueue::spread`].

use core::fmt;

use zerocopy::{Immutable, IntoBytes};

use super::{ChainBuffers, Cursor, LiveQueue, QueueRole, walk};
use crate::virtio::error::BufferError;
use crate::virtio::stats::bump;

impl<R: QueueRole> LiveQueue<'_, R> {
    /// Writes `prefix(n)` followed by `data` across as many available
    /// chains as it takes (`n` of them, at most [`MAX_SPREAD_CHAINS`] and
    /// the queue size), each filled to its writable capacity before the
    /// next, and returns them all at once with their own used lengths
    /// (see `Virtqueue::push_used_batch`). The prefix goes at the start
    /// of the first chain and is written last, once `n` is known (the
    /// `num_buffers` of a merged virtio-net header). Readable parts are
    /// ignored.
    ///
    /// Outcomes, none of which leaves a chain half-returned:
    /// - not enough chains available yet: [`SpreadError::Waiting`]; every
    ///   chain taken is put back in the available ring (nothing was pushed
    ///   to the used ring), so the caller keeps its data and retries;
    /// - the data cannot be delivered (first chain smaller than the
    ///   prefix, more chains needed than allowed, a malformed or
    ///   unwritable chain after the first, or a guest-memory fault): the
    ///   chains taken are returned with used length 0 and the error says
    ///   why; the caller drops the data. A malformed or unwritable chain met after the first is put
    ///   back and then completed (used length 0) by the next pop, so the
    ///   guest's queue always moves on. A chain of a delivery therefore
    ///   never has used length 0.
    pub(crate) fn spread<P: IntoBytes + Immutable>(
        &mut self,
        data: &[u8],
        prefix: impl FnOnce(u16) -> P,
    ) -> Result<u16, SpreadError> {
        let prefix_len = size_of::<P>();
        let limit = usize::from(self.vq.layout().size()).min(MAX_SPREAD_CHAINS);
        let mut used = [(0u16, 0u32); MAX_SPREAD_CHAINS];
        let mut count = 0usize;
        let mem = self.mem;
        // First the plan: take chains until they can hold prefix and data,
        // writing nothing, so that chains put back (not enough of them
        // yet) are untouched.
        let needed = prefix_len.saturating_add(data.len());
        let mut room = 0usize;
        let mut error = loop {
            if count > 0 && room >= needed {
                break None;
            }
            if count >= limit {
                break Some(SpreadError::TooManyChains { limit });
            }
            let Some(head) = self.vq.next_head(mem, self.stats) else {
                // `count < limit <= u16::MAX`.
                self.vq.rewind(count as u16);
                return Err(SpreadError::Waiting);
            };
            let buffers = match walk(mem, self.vq.layout(), head) {
                Ok(buffers) => buffers,
                Err(error) if count == 0 => {
                    self.stats.malformed.record(error);
                    self.vq.push_used(mem, head, 0);
                    continue;
                }
                Err(_) => {
                    self.vq.rewind(1);
                    break Some(SpreadError::MalformedChain);
                }
            };
            if count > 0 && buffers.writable_bytes == 0 {
                // Would carry nothing: not part of the delivery; the next
                // spread finds it first and returns it as too small.
                self.vq.rewind(1);
                break Some(SpreadError::MalformedChain);
            }
            if count == 0 && (buffers.writable_bytes as usize) < prefix_len {
                self.vq.push_used(mem, head, 0);
                bump(&mut self.stats.chains_completed);
                return Err(SpreadError::FirstTooSmall {
                    capacity: buffers.writable_bytes,
                });
            }
            if let Some(slot) = used.get_mut(count) {
                *slot = (head, 0);
            }
            count += 1;
            room = room.saturating_add(buffers.writable_bytes as usize);
        };
        // Then the copy, chain after chain (walked again: a driver that
        // changed them meanwhile gets its chains back with length 0).
        let mut first: Option<ChainBuffers> = None;
        let mut offset = 0usize;
        if error.is_none() {
            for (i, (head, len)) in used.iter_mut().take(count).enumerate() {
                let Ok(buffers) = walk(mem, self.vq.layout(), *head) else {
                    error = Some(SpreadError::MalformedChain);
                    break;
                };
                let mut cursor = Cursor::default();
                let skip = if i == 0 { prefix_len } else { 0 };
                let stepped = cursor
                    .step(buffers.writable(), skip, |_, _, _| Ok(()))
                    .and_then(|_| {
                        let rest = data.get(offset..).unwrap_or(&[]);
                        cursor.step(buffers.writable(), rest.len(), |gpa, at, n| {
                            // `step` guarantees `at + n <= rest.len()`.
                            mem.write(gpa, &rest[at..at + n])
                        })
                    });
                *len = cursor.done;
                match stepped {
                    Ok(n) => offset += n,
                    Err(e) => {
                        error = Some(SpreadError::Memory(BufferError::Memory(e)));
                        break;
                    }
                }
                if first.is_none() {
                    first = Some(buffers);
                }
            }
            if error.is_none() && (offset < data.len() || first.is_none()) {
                error = Some(SpreadError::MalformedChain);
            }
        }
        let taken = used.get_mut(..count).unwrap_or(&mut []);
        let error = error.or_else(|| {
            let bytes = prefix(count as u16);
            let writable = first.as_ref().map_or(&[][..], ChainBuffers::writable);
            Cursor::default()
                .step(writable, prefix_len, |gpa, at, n| {
                    mem.write(gpa, &bytes.as_bytes()[at..at + n])
                })
                .err()
                .map(|e| SpreadError::Memory(BufferError::Memory(e)))
        });
        if error.is_some() {
            taken.iter_mut().for_each(|(_, len)| *len = 0);
        }
        self.vq.push_used_batch(mem, taken);
        for _ in 0..count {
            bump(&mut self.stats.chains_completed);
        }
        match error {
            None => Ok(count as u16),
            Some(e) => Err(e),
        }
    }
}

/// Most chains one spread (`LiveQueue::spread`, behind
/// [`LiveQueue::receive_merged`]) fills (a full Ethernet frame in
/// buffers of 48 bytes or more).
pub const MAX_SPREAD_CHAINS: usize = 64;

/// Why a spread (`LiveQueue::spread`, behind
/// [`LiveQueue::receive_merged`]) delivered nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpreadError {
    /// Fewer chains are available than the data needs: the chains taken
    /// were put back untouched (in the driver's eyes); try again later.
    Waiting,
    /// The first chain cannot hold the prefix; it was returned with used
    /// length 0.
    FirstTooSmall {
        /// Bytes of its writable part.
        capacity: u32,
    },
    /// The data needs more chains than `limit`; those taken were returned
    /// with used length 0.
    TooManyChains {
        /// Most chains one delivery may use.
        limit: usize,
    },
    /// A malformed chain, or one without writable bytes, followed the
    /// first; the chains before it were returned with used length 0, that
    /// one is left for the next pop (which completes it with used length
    /// 0: a malformed chain is counted, an unwritable one is too small).
    MalformedChain,
    /// Guest memory refused a write (impossible for validated chains);
    /// the chains taken were returned with used length 0.
    Memory(BufferError),
}

impl fmt::Display for SpreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SpreadError::Waiting => write!(f, "not enough buffers available yet"),
            SpreadError::FirstTooSmall { capacity } => {
                write!(f, "first buffer of {capacity} bytes cannot hold the header")
            }
            SpreadError::TooManyChains { limit } => {
                write!(f, "needs more than {limit} buffers")
            }
            SpreadError::MalformedChain => write!(f, "a malformed chain followed the first"),
            SpreadError::Memory(e) => write!(f, "copy failed: {e}"),
        }
    }
}
