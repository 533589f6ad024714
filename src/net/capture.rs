//! Packet capture of the switch: pcapng records in a byte ring in
//! hypervisor memory, written out to a host file in batches.
//!
//! The switch ([`VSwitch`](super::VSwitch)) calls [`CaptureSink::record`]
//! for every frame it sees while capture is on, with the verdict (forwarded
//! or dropped, and why). [`CaptureRing`] encodes each as a pcapng Enhanced
//! Packet Block ([`super::pcapng`]) straight into its ring; if the ring has
//! no room the record is dropped and counted ([`CaptureStats::dropped`]),
//! never waited for: the data path is not stalled by a slow file.
//!
//! The run loop's housekeeping (never the switch, and never while the
//! switch's lock is held) calls [`CaptureRing::drain`], which hands the
//! pending bytes, in order, to a writer (QEMU semihosting `SYS_WRITE` in
//! the hypervisor). The file starts with the Section Header Block and one
//! Interface Description Block per port ([`CaptureRing::begin`]), so the
//! concatenation of everything drained is a valid pcapng file at every
//! batch boundary.
//!
//! # Concurrency
//! Producers (several pCPUs' switch and device paths) are serialized by a
//! short spin lock around the copy into the ring; the consumer is whoever
//! holds the drain flag (a try-lock: a second drainer backs off). Head and
//! tail are free-running byte counters: the producer writes only the free
//! region and publishes it with a Release store of `tail`; the consumer
//! reads only `head..tail` and frees it with a Release store of `head`.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use super::pcapng::{self, Packet, TsResolution};
use super::rx_ring::MAX_FRAME_SIZE;

/// Why the switch dropped a frame (see [`Verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    TooShort,
    /// Longer than [`MAX_FRAME_SIZE`].
    TooLong,
    /// Source MAC is not the port's own.
    MacLock,
    /// An 802.1Q/802.1ad tag sent on an access port.
    VlanTagged,
    /// The destination belongs to a port of another VLAN.
    Vlan,
    /// No port could receive it.
    NoDestination,
    /// Every destination's ring was full.
    RingFull,
    /// The one destination took no frame for longer than a sender waits.
    Stalled,
}

impl DropReason {
    /// The reason as the statistics and capture comments spell it.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::TooShort => "too-short",
            DropReason::TooLong => "too-long",
            DropReason::MacLock => "mac-lock",
            DropReason::VlanTagged => "vlan-tagged",
            DropReason::Vlan => "vlan",
            DropReason::NoDestination => "no-destination",
            DropReason::RingFull => "ring-full",
            DropReason::Stalled => "rx-stalled",
        }
    }

    /// The `opt_comment` of a dropped frame's record.
    pub const fn comment(self) -> &'static str {
        match self {
            DropReason::TooShort => "dropped: too-short",
            DropReason::TooLong => "dropped: too-long",
            DropReason::MacLock => "dropped: mac-lock",
            DropReason::VlanTagged => "dropped: vlan-tagged",
            DropReason::Vlan => "dropped: vlan",
            DropReason::NoDestination => "dropped: no-destination",
            DropReason::RingFull => "dropped: ring-full",
            DropReason::Stalled => "dropped: rx-stalled",
        }
    }

    /// `epb_flags` of a dropped frame: inbound, plus a link-layer error
    /// bit where one fits.
    pub const fn flags(self) -> u32 {
        match self {
            DropReason::TooShort => pcapng::FLAG_INBOUND | pcapng::FLAG_TOO_SHORT,
            DropReason::TooLong => pcapng::FLAG_INBOUND | pcapng::FLAG_TOO_LONG,
            _ => pcapng::FLAG_INBOUND,
        }
    }
}

/// What the switch did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Queued for at least one port.
    Forwarded,
    /// Dropped, for this reason.
    Dropped(DropReason),
}

/// Where the switch sends the frames it sees while capture is on.
pub trait CaptureSink: Sync {
    /// Records `frame`, transmitted on `port` and seen at counter value
    /// `now`, with what the switch did with it. Must not block: a sink
    /// without room counts the frame as lost.
    fn record(&self, port: usize, now: u64, frame: &[u8], verdict: Verdict);

    /// [`CaptureSink::record`] for a frame of `len` bytes of which only
    /// `data` (its start) is at hand, e.g. a frame dropped before it was
    /// read; a sink records `data` with the original length `len`.
    fn record_part(&self, port: usize, now: u64, data: &[u8], len: usize, verdict: Verdict) {
        let _ = len;
        self.record(port, now, data, verdict);
    }
}

/// Capture counters ([`CaptureRing::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames recorded into the ring.
    pub frames: u64,
    /// Frames lost because the ring was full.
    pub dropped: u64,
    /// Bytes handed to the writer (headers included).
    pub written: u64,
    /// Bytes the writer refused (lost).
    pub write_failed: u64,
    /// Bytes waiting in the ring.
    pub pending: usize,
}

impl fmt::Display for CaptureStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames recorded, {} lost (buffer full), {} bytes written, {} bytes failed, {} \
             pending",
            self.frames, self.dropped, self.written, self.write_failed, self.pending
        )
    }
}

/// Largest record: a full frame plus the longest comment.
const MAX_RECORD: usize = pcapng::epb_len(MAX_FRAME_SIZE, 32);

/// A ring of `N` bytes of pcapng records (see the [module docs](self)).
pub struct CaptureRing<const N: usize> {
    buf: UnsafeCell<[u8; N]>,
    /// Bytes drained so far (advanced only by the consumer).
    head: AtomicUsize,
    /// Bytes produced so far (advanced only under `producer`).
    tail: AtomicUsize,
    /// Serializes producers; holds the timestamp resolution.
    producer: Mutex<Option<TsResolution>>,
    /// Held by the one consumer while it drains.
    consuming: AtomicBool,
    frames: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    write_failed: AtomicU64,
    /// Counter value of the oldest record not yet drained (0: none).
    pending_since: AtomicU64,
}

// SAFETY: the bytes `head..tail` (mod N) are written only before `tail`
// covers them, by the one producer that holds `producer`, and read only by
// the one consumer that holds `consuming`, after an Acquire load of
// `tail`; the producer writes only bytes outside `head..tail`, after an
// Acquire load of `head` that pairs with the consumer's Release store. So
// no byte is ever accessed by two contexts at once.
unsafe impl<const N: usize> Sync for CaptureRing<N> {}

impl<const N: usize> Default for CaptureRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CaptureRing<N> {
    const FITS: () = assert!(N >= 2 * MAX_RECORD, "capture ring too small");

    /// An empty ring without a file header (usable in a `static`).
    pub const fn new() -> Self {
        let () = Self::FITS;
        CaptureRing {
            buf: UnsafeCell::new([0; N]),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            producer: Mutex::new(None),
            consuming: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_failed: AtomicU64::new(0),
            pending_since: AtomicU64::new(0),
        }
    }

    /// Starts the file: queues the Section Header Block and one Interface
    /// Description Block per entry of `ports` (`(name, description)`;
    /// interface `n` is port `n`), with timestamps for a counter of
    /// `freq` Hz. Until this is called, records are refused (and counted
    /// as lost). Returns false if the headers do not fit.
    pub fn begin(&self, freq: u64, ports: &[(&str, &str)]) -> bool {
        let res = TsResolution::for_frequency(freq);
        let mut producer = self.producer.lock();
        let mut block = [0u8; 256];
        let Some(n) = pcapng::write_shb(&mut block, "hypervisor vswitch") else {
            return false;
        };
        if !self.push(block.get(..n).unwrap_or(&[])) {
            return false;
        }
        for (name, description) in ports {
            let Some(n) =
                pcapng::write_idb(&mut block, MAX_FRAME_SIZE as u32, name, description, res)
            else {
                return false;
            };
            if !self.push(block.get(..n).unwrap_or(&[])) {
                return false;
            }
        }
        *producer = Some(res);
        true
    }

    /// Copies `bytes` into the free part of the ring and publishes them;
    /// false (nothing written) without room. Callers hold `producer`.
    fn push(&self, bytes: &[u8]) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if bytes.len() > N - used.min(N) {
            return false;
        }
        let start = tail % N;
        let first = bytes.len().min(N - start);
        let base = self.buf.get().cast::<u8>();
        // SAFETY: `start..start + first` and `0..bytes.len() - first` lie
        // inside the N-byte buffer and in its free region (checked above:
        // at most N - used bytes from `tail` on); only the producer, which
        // the caller's `producer` lock makes unique, writes there, and the
        // consumer reads only `head..tail`.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(start), first);
            core::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), base, bytes.len() - first);
        }
        self.tail
            .store(tail.wrapping_add(bytes.len()), Ordering::Release);
        true
    }

    /// Hands every pending byte to `write`, oldest first, in at most two
    /// slices (the ring wraps), and frees them. A slice `write` refuses
    /// (returns false) is lost and counted. Returns the bytes drained; 0
    /// if another context is draining.
    pub fn drain(&self, mut write: impl FnMut(&[u8]) -> bool) -> usize {
        if self
            .consuming
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let len = tail.wrapping_sub(head).min(N);
        let start = head % N;
        let first = len.min(N - start);
        let base = self.buf.get().cast::<u8>().cast_const();
        for (offset, n) in [(start, first), (0, len - first)] {
            if n == 0 {
                continue;
            }
            // SAFETY: `offset..offset + n` lies inside the buffer and in
            // `head..tail`, which the producer published (Acquire above)
            // and will not write until `head` moves past it; we are the
            // only consumer (the `consuming` flag).
            let slice = unsafe { core::slice::from_raw_parts(base.add(offset), n) };
            let counter = if write(slice) {
                &self.written
            } else {
                &self.write_failed
            };
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.pending_since.store(0, Ordering::Relaxed);
        self.head.store(head.wrapping_add(len), Ordering::Release);
        self.consuming.store(false, Ordering::Release);
        len
    }

    /// Bytes waiting to be drained.
    pub fn pending(&self) -> usize {
        self.tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head.load(Ordering::Acquire))
    }

    /// Counter value of the oldest record waiting to be drained, if any
    /// (for the run loop's flush deadline).
    pub fn pending_since(&self) -> Option<u64> {
        match self.pending_since.load(Ordering::Relaxed) {
            0 if self.pending() == 0 => None,
            since => Some(since),
        }
    }

    /// Size of the ring in bytes.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The counters.
    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            frames: self.frames.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            write_failed: self.write_failed.load(Ordering::Relaxed),
            pending: self.pending(),
        }
    }
}

impl<const N: usize> CaptureSink for CaptureRing<N> {
    fn record(&self, port: usize, now: u64, frame: &[u8], verdict: Verdict) {
        self.record_part(port, now, frame, frame.len(), verdict);
    }

    fn record_part(&self, port: usize, now: u64, frame: &[u8], len: usize, verdict: Verdict) {
        let (flags, comment) = match verdict {
            Verdict::Forwarded => (pcapng::FLAG_INBOUND, ""),
            Verdict::Dropped(reason) => (reason.flags(), reason.comment()),
        };
        let data = frame.get(..MAX_FRAME_SIZE).unwrap_or(frame);
        let mut block = [0u8; MAX_RECORD];
        let producer = self.producer.lock();
        let Some(res) = *producer else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let packet = Packet {
            interface: port as u32,
            timestamp: res.timestamp(now),
            data,
            orig_len: len.max(data.len()),
            flags,
            comment,
        };
        let was_empty = self.pending() == 0;
        let pushed = pcapng::write_epb(&mut block, &packet)
            .and_then(|n| block.get(..n))
            .is_some_and(|bytes| self.push(bytes));
        drop(producer);
        if pushed {
            self.frames.fetch_add(1, Ordering::Relaxed);
            if was_empty {
                self.pending_since.store(now.max(1), Ordering::Relaxed);
            }
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<const N: usize> fmt::Debug for CaptureRing<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureRing")
            .field("capacity", &N)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of<const N: usize>(ring: &CaptureRing<N>, out: &mut Vec<u8>) -> usize {
        ring.drain(|b| {
            out.extend_from_slice(b);
            true
        })
    }

    /// Block types and, for packets, (interface, captured length, comment).
    fn blocks(file: &[u8]) -> Vec<(u32, u32, u32, String)> {
        let mut v = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let w = |o: usize| u32::from_le_bytes(file[at + o..at + o + 4].try_into().unwrap());
            let (kind, total) = (w(0), w(4) as usize);
            let mut comment = String::new();
            if kind == pcapng::BLOCK_EPB {
                let cap = w(20) as usize;
                let mut o = 28 + pcapng::pad4(cap);
                loop {
                    let code = u16::from_le_bytes(file[at + o..at + o + 2].try_into().unwrap());
                    let len = u16::from_le_bytes(file[at + o + 2..at + o + 4].try_into().unwrap());
                    if code == 0 {
                        break;
                    }
                    if code == pcapng::OPT_COMMENT {
                        comment =
                            String::from_utf8(file[at + o + 4..at + o + 4 + len as usize].to_vec())
                                .unwrap();
                    }
                    o += 4 + pcapng::pad4(len as usize);
                }
                v.push((kind, w(8), cap as u32, comment));
            } else {
                v.push((kind, 0, 0, comment));
            }
            at += total;
        }
        assert_eq!(at, file.len(), "whole blocks only");
        v
    }

    #[test]
    fn records_wrap_and_read_back_in_order() {
        let ring: CaptureRing<{ 4 * MAX_RECORD }> = CaptureRing::new();
        // Before `begin`: refused and counted.
        ring.record(0, 1, &[0u8; 60], Verdict::Forwarded);
        assert_eq!(ring.stats().dropped, 1);
        assert!(ring.begin(62_500_000, &[("vm0", "port 0"), ("vm1", "port 1")]));
        let mut file = Vec::new();
        let mut frames = 0;
        // Many rounds of 3 records: the ring wraps many times.
        for round in 0..20u8 {
            ring.record(0, 10, &[round; 100], Verdict::Forwarded);
            ring.record(1, 11, &[round; 1514], Verdict::Dropped(DropReason::Vlan));
            ring.record(1, 12, &[round; 9], Verdict::Dropped(DropReason::TooShort));
            frames += 3;
            assert!(ring.pending_since().is_some());
            file_of(&ring, &mut file);
            assert_eq!(ring.pending_since(), None);
        }
        let b = blocks(&file);
        assert_eq!(b.len(), 3 + frames);
        assert_eq!(b[0].0, pcapng::BLOCK_SHB);
        assert_eq!((b[1].0, b[2].0), (pcapng::BLOCK_IDB, pcapng::BLOCK_IDB));
        assert_eq!(b[3], (pcapng::BLOCK_EPB, 0, 100, String::new()));
        assert_eq!(b[4], (pcapng::BLOCK_EPB, 1, 1514, "dropped: vlan".into()));
        assert_eq!(b[5], (pcapng::BLOCK_EPB, 1, 9, "dropped: too-short".into()));
        let s = ring.stats();
        assert_eq!((s.frames, s.dropped, s.pending), (frames as u64, 1, 0));
        assert_eq!(s.written, file.len() as u64);
    }

    #[test]
    fn a_full_ring_loses_records_and_never_blocks() {
        let ring: CaptureRing<{ 2 * MAX_RECORD }> = CaptureRing::new();
        assert!(ring.begin(1_000_000_000, &[("vm0", "")]));
        let mut fitted = 0;
        for _ in 0..10 {
            ring.record(0, 5, &[1u8; 1514], Verdict::Forwarded);
        }
        let s = ring.stats();
        fitted += s.frames;
        assert!(s.frames >= 1 && s.frames < 10);
        assert_eq!(s.frames + s.dropped, 10);
        // A writer that fails: the bytes are counted as lost, the ring
        // is free again.
        let pending = ring.pending();
        assert_eq!(ring.drain(|_| false), pending);
        assert_eq!(ring.stats().write_failed, pending as u64);
        ring.record(0, 6, &[1u8; 60], Verdict::Forwarded);
        assert_eq!(ring.stats().frames, fitted + 1);
    }

    #[test]
    fn one_drainer_at_a_time() {
        let ring: CaptureRing<{ 2 * MAX_RECORD }> = CaptureRing::new();
        assert!(ring.begin(1000, &[("vm0", "")]));
        let mut inner = 1;
        let outer = ring.drain(|_| {
            // A second drain while the first one writes backs off.
            inner = ring.drain(|_| true);
            true
        });
        assert!(outer > 0);
        assert_eq!(inner, 0);
    }

    #[test]
    fn producers_on_several_threads() {
        static RING: CaptureRing<{ 8 * MAX_RECORD }> = CaptureRing::new();
        assert!(RING.begin(1000, &[("vm0", ""), ("vm1", "")]));
        let mut file = Vec::new();
        std::thread::scope(|s| {
            for port in 0..2 {
                s.spawn(move || {
                    for i in 0..500u16 {
                        let frame = [port as u8; 64];
                        RING.record(port, u64::from(i) + 1, &frame, Verdict::Forwarded);
                    }
                });
            }
            for _ in 0..200 {
                file_of(&RING, &mut file);
                std::thread::yield_now();
            }
        });
        file_of(&RING, &mut file);
        let packets = blocks(&file)
            .iter()
            .filter(|b| b.0 == pcapng::BLOCK_EPB)
            .count();
        let s = RING.stats();
        assert_eq!(packets as u64, s.frames);
        assert_eq!(s.frames + s.dropped, 1000);
    }
}
