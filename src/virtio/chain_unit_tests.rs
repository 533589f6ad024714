//! Unit tests of `chain`: the cursors and the typestate steps.

use zerocopy::little_endian::{U16, U32, U64};

use super::*;
use crate::virtio::queue::QueueConfig;

const BASE: u64 = 0x4000_0000;
const RAM: usize = 0x10000;
const DATA: u64 = BASE + 0x8000;

fn setup(size: u16) -> (GuestMemory, QueueLayout) {
    let mem = GuestMemory::from_static(BASE, Box::leak(vec![0u8; RAM].into_boxed_slice()));
    let config = QueueConfig {
        size,
        desc: BASE,
        driver: BASE + 0x4000,
        device: BASE + 0x5000,
    };
    let layout = QueueLayout::validate(&config, 256, &mem).unwrap();
    (mem, layout)
}

fn desc(mem: &GuestMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let d = Descriptor {
        addr: U64::new(addr),
        len: U32::new(len),
        flags: U16::new(flags),
        next: U16::new(next),
    };
    mem.write_obj(BASE + u64::from(i) * 16, &d).unwrap();
}

#[test]
fn readable_then_writable() {
    let (m, l) = setup(8);
    desc(&m, 0, DATA, 16, DESC_F_NEXT, 3);
    desc(&m, 3, DATA + 16, 100, DESC_F_NEXT, 5);
    desc(&m, 5, DATA + 200, 1, DESC_F_WRITE, 0);
    let b = walk(&m, &l, 0).unwrap();
    assert_eq!(b.descriptor_count(), 3);
    assert_eq!(b.readable_len(), 116);
    assert_eq!(b.writable_len(), 1);
    assert_eq!(b.readable().len(), 2);
    assert_eq!(b.writable()[0].gpa(), DATA + 200);
}

#[test]
fn every_rule() {
    let (m, l) = setup(8);
    assert_eq!(
        walk(&m, &l, 8).unwrap_err(),
        ChainError::IndexOutOfRange { index: 8, size: 8 }
    );
    desc(&m, 0, DATA, 4, DESC_F_NEXT, 9);
    assert_eq!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::IndexOutOfRange { index: 9, size: 8 }
    );
    desc(&m, 0, DATA, 4, DESC_F_NEXT, 0);
    assert_eq!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::TooLong { limit: 8 }
    );
    desc(&m, 0, DATA, 4, DESC_F_INDIRECT, 0);
    assert_eq!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::Indirect { index: 0 }
    );
    desc(&m, 0, DATA, 4, 0x10, 0);
    assert_eq!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::UnknownFlags {
            index: 0,
            flags: 0x10
        }
    );
    desc(&m, 0, DATA, 0, 0, 0);
    assert_eq!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::ZeroLength { index: 0 }
    );
    desc(&m, 0, BASE + RAM as u64 - 2, 4, 0, 0);
    assert!(matches!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::BufferOutOfRange { index: 0, .. }
    ));
    desc(&m, 0, u64::MAX - 1, 4, 0, 0);
    assert!(matches!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::BufferOutOfRange { index: 0, .. }
    ));
    desc(&m, 0, DATA, 4, DESC_F_WRITE | DESC_F_NEXT, 1);
    desc(&m, 1, DATA, 4, 0, 0);
    assert_eq!(
        walk(&m, &l, 0).unwrap_err(),
        ChainError::ReadableAfterWritable { index: 1 }
    );
}

#[test]
fn length_overflow() {
    // A 4 GiB guest (the OS backs it lazily, only touched pages cost
    // memory): a 3 GiB and a 2 GiB buffer are each inside RAM, but
    // their sum does not fit in a u32.
    let mem = GuestMemory::from_static(BASE, Box::leak(vec![0u8; 1 << 32].into_boxed_slice()));
    let config = QueueConfig {
        size: 8,
        desc: BASE,
        driver: BASE + 0x1000,
        device: BASE + 0x2000,
    };
    let layout = QueueLayout::validate(&config, 256, &mem).unwrap();
    desc(&mem, 0, BASE, 0xc000_0000, DESC_F_NEXT, 1);
    desc(&mem, 1, BASE, 0x8000_0000, 0, 0);
    assert_eq!(
        walk(&mem, &layout, 0).unwrap_err(),
        ChainError::LengthOverflow { index: 1 }
    );
    // Exactly u32::MAX in total is accepted.
    desc(&mem, 1, BASE, 0x3fff_ffff, 0, 0);
    assert_eq!(walk(&mem, &layout, 0).unwrap().readable_len(), u32::MAX);
}

#[test]
fn reader_and_writer_cross_segments() {
    let (m, l) = setup(8);
    m.write(DATA, b"hello ").unwrap();
    m.write(DATA + 100, b"world!").unwrap();
    desc(&m, 0, DATA, 6, DESC_F_NEXT, 1);
    desc(&m, 1, DATA + 100, 6, DESC_F_NEXT, 2);
    desc(&m, 2, DATA + 200, 3, DESC_F_WRITE | DESC_F_NEXT, 3);
    desc(&m, 3, DATA + 300, 5, DESC_F_WRITE, 0);
    let buffers = walk(&m, &l, 0).unwrap();
    let mut vq = Virtqueue::new(0, l, false);
    let mut stats = QueueStats::default();
    let mut chain = Chain::new(&mut vq, &mut stats, &m, 0, buffers);

    let mut r = chain.reader();
    let mut first = [0u8; 4];
    r.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hell");
    let mut rest = [0u8; 20];
    assert_eq!(
        r.read_exact(&mut rest),
        Err(BufferError::TooShort {
            wanted: 20,
            remaining: 8
        })
    );
    assert_eq!(r.remaining(), 8, "a refused read_exact consumes nothing");
    assert_eq!(r.read_into(&mut rest).unwrap(), 8);
    assert_eq!(&rest[..8], b"o world!");
    assert_eq!(r.read_into(&mut rest).unwrap(), 0);

    let mut w = chain.writer();
    assert_eq!(w.capacity(), 8);
    assert_eq!(
        w.write_all(b"123456789"),
        Err(BufferError::TooShort {
            wanted: 9,
            remaining: 8
        })
    );
    assert_eq!(w.written(), 0, "a refused write_all writes nothing");
    w.write_all(b"abcd").unwrap();
    w.fill(b'z', 2).unwrap();
    assert_eq!(w.write(b"XYZ").unwrap(), 2);
    assert_eq!(chain.complete(), 8);

    let mut out = [0u8; 3];
    m.read(DATA + 200, &mut out).unwrap();
    assert_eq!(&out, b"abc");
    let mut out = [0u8; 5];
    m.read(DATA + 300, &mut out).unwrap();
    assert_eq!(&out, b"dzzXY");
    assert_eq!(stats.chains_completed, 1);
    assert_eq!(stats.completed_on_drop, 0);
}

#[test]
fn dropped_chain_is_completed_once() {
    let (m, l) = setup(8);
    desc(&m, 2, DATA, 8, DESC_F_WRITE, 0);
    let buffers = walk(&m, &l, 2).unwrap();
    let mut vq = Virtqueue::new(0, l, false);
    let mut stats = QueueStats::default();
    {
        let mut chain = Chain::new(&mut vq, &mut stats, &m, 2, buffers);
        chain.writer().write_all(&[1, 2, 3]).unwrap();
    }
    assert_eq!(stats.completed_on_drop, 1);
    assert_eq!(stats.chains_completed, 1);
    let used_idx: U16 = m.read_obj(BASE + 0x5000 + 2).unwrap();
    assert_eq!(used_idx.get(), 1);
    // Used length 0, not the 3 bytes written: partial work is never
    // reported to the driver.
    let elem: crate::virtio::ring::UsedElem = m.read_obj(BASE + 0x5004).unwrap();
    assert_eq!((elem.id.get(), elem.len.get()), (2, 0));
}

#[test]
fn skip_and_read_obj() {
    let (m, l) = setup(8);
    m.write(DATA, &[0xff, 0xff, 0x34, 0x12]).unwrap();
    desc(&m, 0, DATA, 4, 0, 0);
    let buffers = walk(&m, &l, 0).unwrap();
    let mut vq = Virtqueue::new(0, l, false);
    let mut stats = QueueStats::default();
    let mut chain = Chain::new(&mut vq, &mut stats, &m, 0, buffers);
    let mut r = chain.reader();
    r.skip(2).unwrap();
    assert_eq!(r.read_obj::<U16>().unwrap().get(), 0x1234);
    assert!(r.read_obj::<u8>().is_err());
    assert!(chain.writer().write_obj(&0u8).is_err());
    assert_eq!(chain.complete(), 0);
}
