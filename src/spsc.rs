//! A lock-free single-producer single-consumer ring of `Copy` items.
//!
//! Used where one physical CPU hands small items to another without a lock,
//! e.g. console input bytes from the CPU that owns the physical UART to the
//! CPU that runs the focused VM. Head and tail are free-running counters, so
//! the capacity is exactly `N` items (no slot is sacrificed to tell full
//! from empty).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A ring of `N` items of `T`.
pub struct SpscRing<T: Copy, const N: usize> {
    slots: UnsafeCell<[T; N]>,
    /// Items taken so far (written only by the consumer).
    head: AtomicUsize,
    /// Items stored so far (written only by the producer).
    tail: AtomicUsize,
    /// Items refused because the ring was full.
    dropped: AtomicUsize,
}

// SAFETY: a slot is written by the producer only while it is outside
// `head..tail` (free) and read by the consumer only while inside it
// (published with a Release store of `tail`, observed with an Acquire load);
// the consumer frees it with a Release store of `head`, which the producer
// observes with an Acquire load. With one producer and one consumer (the
// documented contract of `push`/`pop`) no slot is accessed by both at once.
unsafe impl<T: Copy + Send, const N: usize> Sync for SpscRing<T, N> {}

impl<T: Copy, const N: usize> SpscRing<T, N> {
    /// An empty ring whose unused slots hold `fill`.
    pub const fn new(fill: T) -> Self {
        SpscRing {
            slots: UnsafeCell::new([fill; N]),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    /// Producer side: stores `item`, or returns false (and counts a drop) if
    /// the ring holds `N` items. Only one context may push.
    pub fn push(&self, item: T) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= N {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // SAFETY: slot `tail % N` is free (outside head..tail, see the Sync
        // impl), so the consumer does not read it until `tail` is published.
        unsafe {
            let base = self.slots.get() as *mut T;
            base.add(tail % N).write(item);
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer side: takes the oldest item. Only one context may pop.
    pub fn pop(&self) -> Option<T> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        // SAFETY: slot `head % N` is inside head..tail.
        // Published by the producer's Release store of `tail` (observed
        // above) and not reused until `head` moves past it.
        let item = unsafe {
            let base = self.slots.get() as *const T;
            base.add(head % N).read()
        };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(item)
    }

    /// Number of items waiting.
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(self.head.load(Ordering::Acquire))
    }

    /// True if no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items refused so far because the ring was full.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_n_items_in_order() {
        let ring: SpscRing<u8, 4> = SpscRing::new(0);
        for b in 1..=4 {
            assert!(ring.push(b));
        }
        assert!(!ring.push(5));
        assert_eq!(ring.dropped(), 1);
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.pop(), Some(1));
        assert!(ring.push(6));
        let rest: Vec<_> = core::iter::from_fn(|| ring.pop()).collect();
        assert_eq!(rest, vec![2, 3, 4, 6]);
        assert!(ring.is_empty());
    }

    #[test]
    fn two_threads_transfer_everything_in_order() {
        // Miri interprets every step and explores interleavings itself: a
        // few hundred items cover the wrap-around many times over there.
        const ITEMS: u32 = if cfg!(miri) { 300 } else { 100_000 };
        let ring: &'static SpscRing<u32, 8> = Box::leak(Box::new(SpscRing::new(0)));
        let producer = std::thread::spawn(move || {
            for i in 0..ITEMS {
                while !ring.push(i) {
                    std::thread::yield_now();
                }
            }
        });
        let mut expected = 0u32;
        while expected < ITEMS {
            match ring.pop() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(ring.is_empty());
    }
}
