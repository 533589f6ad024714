//! Randomized tests with fixed seeds (own xorshift PRNG): random
//! descriptor tables against an independent model of the walk rules,
//! random Reader/Writer operations against a byte-vector model, and random
//! rings thrown at a live virtio-blk device through the MMIO transport.

mod support;

use hypervisor::guest_memory::GuestMemory;
use hypervisor::virtio::blk::{MemDisk, VirtioBlk};
use hypervisor::virtio::chain::{self, MAX_CHAIN_DESCRIPTORS};
use hypervisor::virtio::ring::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, Descriptor};
use hypervisor::virtio::{
    BufferError, ChainError, LiveQueues, QueueConfig, QueueLayout, VirtioDevice, read_config_bytes,
};
use support::{Buf, DATA_BASE, Driver, NEEDS_RESET, RAM_BASE, XorShift};
use zerocopy::little_endian::{U16, U32, U64};

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

            let got = chain::walk(&mem, &layout, head);
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

// ── Reader / Writer against a model ──────────────────────────────────

/// A backend that does nothing on notify: the test drives its queue
/// through `with_live`.
#[derive(Default)]
struct Null;

impl VirtioDevice for Null {
    const DEVICE_ID: u32 = 0x7f;
    const QUEUE_COUNT: u16 = 1;
    fn device_features(&self) -> u64 {
        0
    }
    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool {
        read_config_bytes(&[], offset, data)
    }
    fn queue_notify(&mut self, _: u16, _: &mut LiveQueues<'_>) {}
    fn reset(&mut self) {}
}

#[test]
fn random_cursor_operations_match_a_byte_model() {
    let mut drv = Driver::new(Null);
    drv.handshake_all(&[64]);
    for seed in 1..=1500u64 {
        let mut rng = XorShift::new(seed);
        let mut bufs = Vec::new();
        let mut readable = Vec::new();
        let mut writable_segments = Vec::new();
        for _ in 0..rng.below(5) {
            let len = 1 + rng.below(40) as u32;
            let at = drv.alloc(u64::from(len) + rng.below(8));
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            drv.mem.write(at, &bytes).unwrap();
            readable.extend(bytes);
            bufs.push(Buf::r(at, len));
        }
        for _ in 0..rng.below(5) {
            let len = 1 + rng.below(40) as u32;
            let at = drv.alloc(u64::from(len) + rng.below(8));
            drv.mem.fill(at, u64::from(len), 0xee).unwrap();
            writable_segments.push((at, len as usize));
            bufs.push(Buf::w(at, len));
        }
        if bufs.is_empty() {
            continue;
        }
        drv.add_chain(0, &bufs);
        let capacity: usize = writable_segments.iter().map(|s| s.1).sum();
        let mut expected = vec![0xeeu8; capacity];
        let mut written = 0usize;

        let used_len = drv.with_ctx(|dev, ctx| {
            dev.with_live(ctx, |_, queues| {
                let mut q = queues.queue(0).unwrap();
                let mut chain = q.pop().unwrap();
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
                chain.complete()
            })
        });
        assert_eq!(used_len, Some(written as u32), "seed {seed}");
        let mut actual = Vec::new();
        for (at, len) in &writable_segments {
            actual.extend(drv.read_mem(*at, *len));
        }
        assert_eq!(actual, expected, "seed {seed}");
        drv.take_used(0);
        // Keep the data area from running out.
        if seed % 100 == 0 {
            drv = Driver::new(Null);
            drv.handshake_all(&[64]);
        }
    }
}

// ── Whole rings through the transport ────────────────────────────────

#[test]
fn random_rings_through_the_transport_terminate_and_stay_consistent() {
    const DATA_SPAN: u64 = 1 << 20;
    let mut faults = 0;
    let mut processed = 0u64;
    for seed in 1..=12u64 {
        let mut rng = XorShift::new(seed);
        let disk = MemDisk::new(Box::leak(vec![0u8; 128 * 512].into_boxed_slice()));
        let mut drv = Driver::new(VirtioBlk::new(disk));
        let mut size = 1u16 << (1 + rng.below(6));
        drv.handshake_all(&[size]);
        for round in 0..400 {
            if rng.chance(2) {
                size = 1u16 << (1 + rng.below(6));
                drv.handshake_all(&[size]);
            }
            // Random descriptors: addresses in the data area (so that the
            // device may legitimately write there) or outside RAM.
            for i in 0..size {
                let addr = match rng.below(8) {
                    0 => rng.next_u64(),
                    1 => RAM_BASE + (4 << 20) - rng.below(600),
                    _ => DATA_BASE + rng.below(DATA_SPAN - 2048),
                };
                let len = match rng.below(6) {
                    0 => 16,
                    1 => 1,
                    2 => 512,
                    3 => 1 + rng.below(1024) as u32,
                    4 => rng.below(3) as u32,
                    _ => rng.next_u64() as u32,
                };
                let mut flags = random_flags(&mut rng);
                if rng.chance(30) {
                    flags &= DESC_F_NEXT | DESC_F_WRITE;
                }
                let next = if rng.chance(90) {
                    rng.below(u64::from(size)) as u16
                } else {
                    rng.next_u64() as u16
                };
                // Sometimes a well-formed request header in the buffer.
                if rng.chance(30) && (DATA_BASE..DATA_BASE + DATA_SPAN).contains(&addr) {
                    let kind = [0u32, 1, 4, 8, 99][rng.below(5) as usize];
                    let mut hdr = [0u8; 16];
                    hdr[..4].copy_from_slice(&kind.to_le_bytes());
                    hdr[8..].copy_from_slice(&rng.below(140).to_le_bytes());
                    drv.mem.write(addr, &hdr).unwrap();
                }
                drv.put_desc(0, i, addr, len, flags, next);
            }
            let before_used = drv.used_idx(0);
            let jump = rng.chance(3);
            let added = if jump {
                u64::from(size) + 1 + rng.below(1000)
            } else {
                rng.below(u64::from(size) + 1)
            };
            for _ in 0..added.min(u64::from(size)) {
                let head = if rng.chance(95) {
                    rng.below(u64::from(size)) as u16
                } else {
                    rng.next_u64() as u16
                };
                drv.offer(0, head);
            }
            if jump {
                let idx = before_used.wrapping_add(added as u16);
                drv.set_avail_idx(0, idx);
            }
            // Snapshot what the device must never write: the descriptor
            // table and the available ring.
            let q = drv.queues[0].clone();
            let table = drv.read_mem(q.desc, usize::from(size) * 16);
            let avail = drv.read_mem(q.avail, 6 + 2 * usize::from(size));

            let target = if rng.chance(5) { 3 } else { 0 };
            drv.notify(target);

            assert_eq!(
                drv.read_mem(q.desc, usize::from(size) * 16),
                table,
                "seed {seed} round {round}"
            );
            assert_eq!(drv.read_mem(q.avail, 6 + 2 * usize::from(size)), avail);
            let used = drv.take_used(0);
            processed += used.len() as u64;
            for (_, len) in &used {
                assert!(u64::from(*len) <= u64::from(u32::MAX));
            }
            let faulted = drv.status() & NEEDS_RESET != 0;
            if faulted {
                faults += 1;
                assert!(used.is_empty(), "a jumped ring is not consumed");
                // Recover like a driver would.
                drv.handshake_all(&[size]);
            } else if target == 0 {
                // Every available entry was consumed and completed once.
                assert_eq!(
                    drv.used_idx(0),
                    drv.queues[0].avail_idx,
                    "seed {seed} round {round}"
                );
            }
        }
        let s = drv.dev.stats().queues[0];
        assert!(s.malformed.total() > 0 || s.chains_completed > 0);
    }
    assert!(faults > 10, "jumps exercised: {faults}");
    assert!(processed > 10_000, "chains exercised: {processed}");
}
