//! Randomized tests of the chain walk and the cursors, with fixed seeds
//! (an xorshift PRNG): random descriptor tables against an independent
//! model of the walk rules, and random [`Reader`]/[`Writer`] operations
//! against a byte-vector model. They live inside the crate because the
//! walk's segments (guest addresses) are private to the virtio core.

use zerocopy::little_endian::{U16, U32, U64};

use super::*;
use crate::guest_memory::GuestMemory;
use crate::platform::RAM_BASE;
use crate::virtio::queue::QueueConfig;
use crate::virtio::ring::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, Descriptor};

/// xorshift64*: small, fast, deterministic.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ── The walk against a model ─────────────────────────────────────────

const WALK_RAM: u64 = 0x1_0000;

/// The walk rules, restated independently of the implementation.
fn model_walk(
    table: &[(u64, u32, u16, u16)],
    size: u16,
    head: u16,
) -> Result<Vec<(u64, u32, bool)>, ChainError> {
    let limit = usize::from(size).min(MAX_CHAIN_DESCRIPTORS);
    let mut out = Vec::new();
    let mut index = head;
    let mut total = 0u64;
    loop {
        if index >= size {
            return Err(ChainError::IndexOutOfRange { index, size });
        }
        if out.len() >= limit {
            return Err(ChainError::TooLong { limit });
        }
        let (addr, len, flags, next) = table[usize::from(index)];
        if flags & DESC_F_INDIRECT != 0 {
            return Err(ChainError::Indirect { index });
        }
        if flags & !7 != 0 {
            return Err(ChainError::UnknownFlags { index, flags });
        }
        if len == 0 {
            return Err(ChainError::ZeroLength { index });
        }
        let inside = addr >= RAM_BASE
            && addr
                .checked_add(u64::from(len))
                .is_some_and(|end| end <= RAM_BASE + WALK_RAM);
        if !inside {
            return Err(ChainError::BufferOutOfRange { index, addr, len });
        }
        let write = flags & DESC_F_WRITE != 0;
        if !write && out.iter().any(|(_, _, w)| *w) {
            return Err(ChainError::ReadableAfterWritable { index });
        }
        total += u64::from(len);
        if total > u64::from(u32::MAX) {
            return Err(ChainError::LengthOverflow { index });
        }
        out.push((addr, len, write));
        if flags & DESC_F_NEXT == 0 {
            return Ok(out);
        }
        index = next;
    }
}

fn random_addr(rng: &mut XorShift) -> u64 {
    match rng.below(10) {
        0..=5 => RAM_BASE + rng.below(WALK_RAM),
        6 => RAM_BASE + WALK_RAM - rng.below(64),
        7 => rng.below(RAM_BASE + 64),
        8 => u64::MAX - rng.below(64),
        _ => rng.next_u64(),
    }
}

fn random_len(rng: &mut XorShift) -> u32 {
    match rng.below(10) {
        0 => 0,
        1..=5 => 1 + rng.below(64) as u32,
        6..=7 => rng.below(WALK_RAM) as u32,
        8 => u32::MAX - rng.below(4) as u32,
        _ => rng.next_u64() as u32,
    }
}

fn random_flags(rng: &mut XorShift) -> u16 {
    let mut flags = 0;
    if rng.chance(75) {
        flags |= DESC_F_NEXT;
    }
    if rng.chance(40) {
        flags |= DESC_F_WRITE;
    }
    if rng.chance(3) {
        flags |= DESC_F_INDIRECT;
    }
    if rng.chance(3) {
        flags |= 1 << (3 + rng.below(13));
    }
    flags
}

#[test]
fn random_descriptor_tables_match_the_model_and_stay_in_ram() {
    let mem = GuestMemory::from_static(
        RAM_BASE,
        Box::leak(vec![0u8; WALK_RAM as usize].into_boxed_slice()),
    );
    let mut outcomes = [0usize; 2];
    for seed in 1..=8u64 {
        let mut rng = XorShift::new(seed);
        for _ in 0..2500 {
            let size = 1u16 << rng.below(9);
            let config = QueueConfig {
                size,
                desc: RAM_BASE,
                driver: RAM_BASE + 0x1000,
                device: RAM_BASE + 0x2000,
            };
            let layout = QueueLayout::validate(&config, 256, &mem).unwrap();
            let table: Vec<(u64, u32, u16, u16)> = (0..size)
                .map(|_| {
                    let next = if rng.chance(90) {
                        rng.below(u64::from(size)) as u16
                    } else {
                        rng.next_u64() as u16
                    };
                    (
                        random_addr(&mut rng),
                        random_len(&mut rng),
                        random_flags(&mut rng),
                        next,
                    )
                })
                .collect();
            for (i, &(addr, len, flags, next)) in table.iter().enumerate() {
                let d = Descriptor {
                    addr: U64::new(addr),
                    len: U32::new(len),
                    flags: U16::new(flags),
                    next: U16::new(next),
                };
                mem.write_obj(RAM_BASE + i as u64 * 16, &d).unwrap();
            }
            let head = if rng.chance(95) {
                rng.below(u64::from(size)) as u16
            } else {
                rng.next_u64() as u16
            };

            let got = walk(&mem, &layout, head);
            let want = model_walk(&table, size, head);
            match (&got, &want) {
                (Ok(buffers), Ok(segments)) => {
                    outcomes[0] += 1;
                    let flat: Vec<(u64, u32, bool)> = buffers
                        .readable()
                        .iter()
                        .map(|s| (s.gpa(), s.len(), false))
                        .chain(buffers.writable().iter().map(|s| (s.gpa(), s.len(), true)))
                        .collect();
                    assert_eq!(&flat, segments, "seed {seed}");
                    assert!(
                        buffers.descriptor_count() <= usize::from(size).min(MAX_CHAIN_DESCRIPTORS)
                    );
                    for s in buffers.readable().iter().chain(buffers.writable()) {
                        assert!(
                            mem.contains(s.gpa(), u64::from(s.len())),
                            "segment outside RAM"
                        );
                        assert!(!s.is_empty());
                    }
                    let total: u64 = flat.iter().map(|s| u64::from(s.1)).sum();
                    assert_eq!(
                        total,
                        u64::from(buffers.readable_len()) + u64::from(buffers.writable_len())
                    );
                }
                (Err(g), Err(w)) => {
                    outcomes[1] += 1;
                    assert_eq!(g, w, "seed {seed}");
                }
                _ => panic!("seed {seed}: walk {got:?} but model {want:?}"),
            }
        }
    }
    // Both outcomes were exercised substantially.
    assert!(outcomes[0] > 1000 && outcomes[1] > 1000, "{outcomes:?}");
}

#[test]
fn random_cursor_operations_match_a_byte_model() {
    const DATA: u64 = RAM_BASE + 0x4000;
    let mem = GuestMemory::from_static(
        RAM_BASE,
        Box::leak(vec![0u8; WALK_RAM as usize].into_boxed_slice()),
    );
    let config = QueueConfig {
        size: 16,
        desc: RAM_BASE,
        driver: RAM_BASE + 0x1000,
        device: RAM_BASE + 0x2000,
    };
    let layout = QueueLayout::validate(&config, 256, &mem).unwrap();
    for seed in 1..=1500u64 {
        let mut rng = XorShift::new(seed);
        let mut at = DATA;
        let mut table = Vec::new();
        let mut readable = Vec::new();
        let mut writable_segments = Vec::new();
        for _ in 0..rng.below(5) {
            let len = 1 + rng.below(40) as u32;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            mem.write(at, &bytes).unwrap();
            readable.extend(bytes);
            table.push((at, len, 0));
            at += u64::from(len) + rng.below(8);
        }
        for _ in 0..rng.below(5) {
            let len = 1 + rng.below(40) as u32;
            mem.fill(at, u64::from(len), 0xee).unwrap();
            writable_segments.push((at, len as usize));
            table.push((at, len, DESC_F_WRITE));
            at += u64::from(len) + rng.below(8);
        }
        if table.is_empty() {
            continue;
        }
        let last = table.len() - 1;
        for (i, &(addr, len, flags)) in table.iter().enumerate() {
            let next = if i < last { DESC_F_NEXT } else { 0 };
            let d = Descriptor {
                addr: U64::new(addr),
                len: U32::new(len),
                flags: U16::new(flags | next),
                next: U16::new(i as u16 + 1),
            };
            mem.write_obj(RAM_BASE + i as u64 * 16, &d).unwrap();
        }
        let capacity: usize = writable_segments.iter().map(|s| s.1).sum();
        let mut expected = vec![0xeeu8; capacity];
        let mut written = 0usize;

        let mut vq = Virtqueue::new(0, layout, false);
        let mut stats = QueueStats::default();
        let buffers = walk(&mem, &layout, 0).unwrap();
        let mut chain = Chain::new(&mut vq, &mut stats, &mem, 0, buffers);
        let mut consumed = 0usize;
        for _ in 0..24 {
            let (mut r, mut w) = chain.split();
            assert_eq!(r.remaining() as usize, readable.len() - consumed);
            assert_eq!(w.written() as usize, written);
            let n = rng.below(50) as usize;
            match rng.below(7) {
                0 => {
                    let mut buf = vec![0u8; n];
                    let got = r.read_into(&mut buf).unwrap();
                    assert_eq!(got, n.min(readable.len() - consumed));
                    assert_eq!(&buf[..got], &readable[consumed..consumed + got]);
                    consumed += got;
                }
                1 => {
                    let mut buf = vec![0u8; n];
                    match r.read_exact(&mut buf) {
                        Ok(()) => {
                            assert_eq!(&buf[..], &readable[consumed..consumed + n]);
                            consumed += n;
                        }
                        Err(BufferError::TooShort { wanted, remaining }) => {
                            assert_eq!(wanted, n);
                            assert_eq!(remaining as usize, readable.len() - consumed);
                            assert!(n > readable.len() - consumed);
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                2 => match r.skip(n as u32) {
                    Ok(()) => consumed += n,
                    Err(_) => assert!(n > readable.len() - consumed),
                },
                3 => {
                    let data: Vec<u8> = (0..n).map(|i| (seed as u8) ^ (i as u8)).collect();
                    let got = w.write(&data).unwrap();
                    assert_eq!(got, n.min(capacity - written));
                    expected[written..written + got].copy_from_slice(&data[..got]);
                    written += got;
                }
                4 => {
                    let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(3)).collect();
                    match w.write_all(&data) {
                        Ok(()) => {
                            expected[written..written + n].copy_from_slice(&data);
                            written += n;
                        }
                        Err(_) => assert!(n > capacity - written),
                    }
                }
                5 => match w.fill(0x11, n as u32) {
                    Ok(()) => {
                        expected[written..written + n].fill(0x11);
                        written += n;
                    }
                    Err(_) => assert!(n > capacity - written),
                },
                _ => match r.read_obj::<U32>() {
                    Ok(v) => {
                        let mut b = [0u8; 4];
                        b.copy_from_slice(&readable[consumed..consumed + 4]);
                        assert_eq!(v.get(), u32::from_le_bytes(b));
                        consumed += 4;
                    }
                    Err(_) => assert!(readable.len() - consumed < 4),
                },
            }
        }
        let used_len = chain.complete();
        assert_eq!(used_len, written as u32, "seed {seed}");
        let mut actual = Vec::new();
        for &(at, len) in &writable_segments {
            let mut bytes = vec![0u8; len];
            mem.read(at, &mut bytes).unwrap();
            actual.extend(bytes);
        }
        assert_eq!(actual, expected, "seed {seed}");
    }
}
