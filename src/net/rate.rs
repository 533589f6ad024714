//! The token bucket that caps a switch port's transmit rate.
//!
//! A port limited to `R` Mbit/s earns `R × 125 000` bytes of tokens per
//! second, up to its burst ([`TokenBucket::burst_for`]: 20 ms at the
//! rate, at least two full frames). A frame may be sent while the bucket
//! holds any tokens at all, and costs its length in bytes (the Ethernet
//! frame, without the virtio-net header); the level may go below zero by
//! up to one frame, so the long-run rate is exactly `R` whatever the frame
//! sizes. Once the bucket is empty the port pauses until it has refilled
//! to [`RESUME_BYTES`] (or the burst, if smaller): the transmitter waits
//! for one refill instead of one per frame.
//!
//! Time is the caller's: a counter value and its frequency, so the tests
//! run on a deterministic clock. Levels are kept in byte·ticks (bytes
//! times the counter frequency), so refills have no rounding drift.

/// Bytes the bucket refills to before a paused port sends again.
pub const RESUME_BYTES: u64 = 16 * 1024;

/// Shortest burst: two full Ethernet frames.
pub const MIN_BURST: u64 = 2 * super::rx_ring::MAX_FRAME_SIZE as u64;

/// The burst is this fraction of a second at the rate (1/50 = 20 ms).
pub const BURST_DIVISOR: u64 = 50;

/// The time source of a rate-limited transmitter: a counter and its
/// frequency (the generic timer in the hypervisor, a fake in tests).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Reads the counter.
    pub now: fn() -> u64,
    /// Counter ticks per second.
    pub freq: u64,
}

impl Clock {
    /// The counter now.
    pub fn now(&self) -> u64 {
        (self.now)()
    }
}

/// A token bucket (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: u64,
    /// Capacity in bytes.
    burst: u64,
    freq: u64,
    /// Tokens in byte·ticks (may be negative by up to one frame).
    level: i128,
    /// Counter value of the last refill.
    last: u64,
    /// Paused until this counter value.
    paused_until: Option<u64>,
}

impl TokenBucket {
    /// A full bucket for `mbit` Mbit/s with a counter of `freq` Hz, as of
    /// counter value `now`; `None` for 0 (unlimited).
    pub fn new(mbit: u32, freq: u64, now: u64) -> Option<TokenBucket> {
        if mbit == 0 {
            return None;
        }
        let rate = u64::from(mbit) * 125_000;
        let burst = Self::burst_for(rate);
        let freq = freq.max(1);
        Some(TokenBucket {
            rate,
            burst,
            freq,
            level: i128::from(burst) * i128::from(freq),
            last: now,
            paused_until: None,
        })
    }

    /// The burst of a bucket of `rate` bytes per second.
    pub const fn burst_for(rate: u64) -> u64 {
        let b = rate / BURST_DIVISOR;
        if b > MIN_BURST { b } else { MIN_BURST }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Capacity in bytes.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Whole bytes of tokens (negative after a frame that overdrew).
    pub fn tokens(&self) -> i64 {
        (self.level / i128::from(self.freq)) as i64
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        let cap = i128::from(self.burst) * i128::from(self.freq);
        let earned = i128::from(elapsed) * i128::from(self.rate);
        self.level = self.level.saturating_add(earned).min(cap);
    }

    /// May a frame be sent at `now`? `Err(t)`: not before counter value
    /// `t` (the port is paused until the bucket refilled; see the module
    /// docs).
    pub fn admit(&mut self, now: u64) -> Result<(), u64> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until);
            }
            self.paused_until = None;
        }
        self.refill(now);
        if self.level > 0 {
            return Ok(());
        }
        let target = i128::from(RESUME_BYTES.min(self.burst)) * i128::from(self.freq);
        let missing = (target - self.level).max(0);
        let rate = i128::from(self.rate);
        let wait = u64::try_from((missing + rate - 1) / rate).unwrap_or(u64::MAX);
        let until = now.saturating_add(wait.max(1));
        self.paused_until = Some(until);
        Err(until)
    }

    /// Takes `bytes` of tokens for a frame that was sent.
    pub fn consume(&mut self, bytes: usize) {
        let cost = i128::from(bytes as u64) * i128::from(self.freq);
        self.level = self.level.saturating_sub(cost);
    }

    /// When the port is paused until, if it is.
    pub fn paused_until(&self) -> Option<u64> {
        self.paused_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000; // a microsecond counter

    /// Sends `frame`-byte frames as fast as the bucket admits them for
    /// `seconds`, jumping the clock to each resume time; returns bytes sent.
    fn saturate(b: &mut TokenBucket, start: u64, seconds: u64, frame: usize) -> (u64, u64) {
        let (mut now, end) = (start, start + seconds * HZ);
        let (mut sent, mut pauses) = (0u64, 0u64);
        while now < end {
            match b.admit(now) {
                Ok(()) => {
                    b.consume(frame);
                    sent += frame as u64;
                }
                Err(t) => {
                    assert!(t > now, "a pause always lies in the future");
                    pauses += 1;
                    now = t;
                }
            }
        }
        (sent, pauses)
    }

    #[test]
    fn unlimited_is_no_bucket() {
        assert_eq!(TokenBucket::new(0, HZ, 0), None);
    }

    #[test]
    fn burst_sizes() {
        // 50 Mbit/s: 6.25 MB/s, burst 20 ms = 125 000 bytes.
        let b = TokenBucket::new(50, HZ, 0).unwrap();
        assert_eq!((b.rate(), b.burst()), (6_250_000, 125_000));
        // 1 Mbit/s: 20 ms would be 2500 bytes, less than two frames.
        assert_eq!(TokenBucket::new(1, HZ, 0).unwrap().burst(), MIN_BURST);
    }

    #[test]
    fn long_run_rate_is_exact_for_any_frame_size() {
        for (mbit, frame) in [
            (50u32, 1514usize),
            (50, 60),
            (100, 1000),
            (1, 1514),
            (7, 333),
        ] {
            let mut b = TokenBucket::new(mbit, HZ, 0).unwrap();
            let burst = b.burst();
            let (sent, pauses) = saturate(&mut b, 0, 10, frame);
            let ideal = u64::from(mbit) * 125_000 * 10 + burst;
            // Within one frame of rate × time + the initial burst.
            assert!(
                sent.abs_diff(ideal) <= frame as u64 + RESUME_BYTES,
                "{mbit} Mbit/s {frame}-byte frames: sent {sent}, ideal {ideal}"
            );
            assert!(pauses > 0);
        }
    }

    #[test]
    fn burst_then_pause_then_resume_threshold() {
        let mut b = TokenBucket::new(50, HZ, 1000).unwrap();
        // A full bucket admits the burst (125 000 bytes) and one more
        // frame that overdraws it.
        let mut frames = 0;
        while b.admit(1000).is_ok() {
            b.consume(1514);
            frames += 1;
        }
        assert_eq!(frames, 125_000usize.div_ceil(1514));
        assert!(b.tokens() <= 0 && b.tokens() > -1514);
        // Paused until 16 KiB are back: (16384 - tokens) / 6.25 bytes/us.
        let until = b.paused_until().unwrap();
        let missing = RESUME_BYTES as i64 - b.tokens();
        let expect = 1000 + (missing as u64 * HZ).div_ceil(6_250_000);
        assert!(
            until.abs_diff(expect) <= 1,
            "until {until}, expected {expect}"
        );
        // Asking again early changes nothing, even after a refill that
        // would make the level positive.
        assert_eq!(b.admit(until - 1), Err(until));
        assert_eq!(b.admit(until), Ok(()));
        assert!(b.tokens() >= RESUME_BYTES as i64 - 1);
    }

    #[test]
    fn idle_refills_up_to_the_burst_only() {
        let mut b = TokenBucket::new(10, HZ, 0).unwrap();
        b.consume(100_000);
        assert!(b.tokens() < 0);
        assert_eq!(b.admit(3600 * HZ), Ok(()));
        assert_eq!(b.tokens(), b.burst() as i64);
        // A clock that goes backwards earns nothing.
        b.consume(1000);
        let before = b.tokens();
        assert_eq!(b.admit(10), Ok(()));
        assert_eq!(b.tokens(), before);
    }
}
