//! Internet checksums (RFC 1071): the ones' complement sum the device
//! completes for checksum offload ([`offload`](super::offload)) and
//! recomputes for each segment it cuts ([`gso`](super::gso)).

/// Ones' complement sum of `data` as big-endian 16-bit words (an odd last
/// byte padded with 0), not yet folded.
///
/// Sums 8 bytes at a time as two big-endian 32-bit words: since
/// 2^16 ≡ 1 (mod 0xffff), a 32-bit word folds to the sum of its two
/// 16-bit halves, so the folded result is the same as word by word. Each
/// 8-byte step adds less than 2^33, so the `u64` cannot overflow for any
/// slice that fits in memory.
pub(super) fn ones_sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    let mut sum: u64 = 0;
    for chunk in chunks.by_ref() {
        let v = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_be_bytes);
        sum += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in words.by_ref() {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a ones' complement sum to 16 bits.
pub(super) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store for a folded `sum`: inverted, with 0 sent as
/// 0xffff (the same value in ones' complement), as Linux's
/// `skb_checksum_help` does.
pub(super) fn finish(sum: u64) -> u16 {
    match !fold(sum) {
        0 => 0xffff,
        v => v,
    }
}

/// Completes a partial checksum in place: the sum from `start` to the end
/// of `frame` (which includes whatever the field held, the pseudo-header
/// sum a driver stores there), stored at `start + offset`. Positions
/// outside the frame change nothing (callers have checked them).
pub(super) fn complete(frame: &mut [u8], start: usize, offset: usize) {
    let value = finish(ones_sum(frame.get(start..).unwrap_or(&[])));
    let field = start + offset;
    if let Some(dst) = frame.get_mut(field..field + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// The definition, word by word.
    fn ones_sum_by_words(data: &[u8]) -> u64 {
        data.chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    }

    #[test]
    fn the_sum_matches_rfc1071() {
        // RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(
            fold(ones_sum(&[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
        assert_eq!(fold(ones_sum(&[0xff])), 0xff00);
        let mut frame = [0u8; 8];
        frame[4] = 0xff;
        frame[5] = 0xff;
        // Summing to 0xffff gives !0 = 0, sent as 0xffff.
        complete(&mut frame, 0, 6);
        assert_eq!(&frame[6..], &[0xff, 0xff]);
    }

    #[test]
    fn the_wide_sum_folds_like_the_word_sum() {
        let mut rng = Rng(0x5eed_c5a1);
        let mut data = vec![0u8; 70_000];
        for b in &mut data {
            *b = rng.next() as u8;
        }
        // All-ones data makes every carry happen.
        let ones = vec![0xffu8; 65_600];
        for _ in 0..2000 {
            let start = rng.below(64) as usize;
            let long = rng.below(4) == 0;
            let len = rng.below(if long { 65_536 } else { 200 }) as usize;
            for d in [&data, &ones] {
                let slice = &d[start..start + len];
                assert_eq!(
                    fold(ones_sum(slice)),
                    fold(ones_sum_by_words(slice)),
                    "start {start} len {len}"
                );
            }
        }
    }
}
