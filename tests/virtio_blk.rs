//! virtio-blk driven end to end by the simulated driver: handshake through
//! the MMIO registers, then real I/O through a virtqueue.

mod support;

use hypervisor::mmio::AccessSize;
use hypervisor::virtio::blk::{self, MemDisk, VirtioBlk, request_type, status};
use hypervisor::virtio::regs::{self, InterruptStatus, feature, offset};
use support::{Buf, DRIVER_OK, Driver};

const SECTORS: usize = 64;

fn blk_driver() -> Driver<VirtioBlk> {
    let disk = MemDisk::new(Box::leak(vec![0u8; SECTORS * 512].into_boxed_slice()));
    let mut drv = Driver::new(VirtioBlk::new(disk));
    drv.handshake_all(&[128]);
    drv
}

/// Result of one request: status byte, used length, data read back.
struct Done {
    status: u8,
    used_len: u32,
    data: Vec<u8>,
}

/// Issues one request: header, then `out` (device-readable) or `in_len`
/// bytes of device-writable data, then the status byte; notifies; collects.
fn request(drv: &mut Driver<VirtioBlk>, kind: u32, sector: u64, out: &[u8], in_len: u32) -> Done {
    let header = drv.alloc(16);
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&kind.to_le_bytes());
    bytes[8..].copy_from_slice(&sector.to_le_bytes());
    drv.mem.write(header, &bytes).unwrap();
    let mut bufs = vec![Buf::r(header, 16)];
    if !out.is_empty() {
        let data = drv.alloc(out.len() as u64);
        drv.mem.write(data, out).unwrap();
        bufs.push(Buf::r(data, out.len() as u32));
    }
    let data_in = drv.alloc(u64::from(in_len));
    drv.mem.fill(data_in, u64::from(in_len), 0xee).unwrap();
    if in_len > 0 {
        bufs.push(Buf::w(data_in, in_len));
    }
    let status_at = drv.alloc(1);
    drv.mem.write(status_at, &[0xff]).unwrap();
    bufs.push(Buf::w(status_at, 1));
    let head = drv.add_chain(0, &bufs);
    drv.notify(0);
    let used = drv.take_used(0);
    assert_eq!(used.len(), 1, "one request, one used entry");
    assert_eq!(used[0].0, u32::from(head));
    Done {
        status: drv.read_mem(status_at, 1)[0],
        used_len: used[0].1,
        data: drv.read_mem(data_in, in_len as usize),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn identity_and_features() {
    let disk = MemDisk::new(Box::leak(vec![0u8; 4096].into_boxed_slice()));
    let mut drv = Driver::new(VirtioBlk::new(disk));
    assert_eq!(drv.read(offset::MAGIC_VALUE), regs::MAGIC_VALUE);
    assert_eq!(drv.read(offset::VERSION), 2);
    assert_eq!(drv.read(offset::DEVICE_ID), 2);
    assert_eq!(drv.read(offset::VENDOR_ID), regs::VENDOR_ID);
    let features = drv.device_features();
    assert_eq!(
        features,
        feature::VERSION_1
            | feature::EVENT_IDX
            | blk::feature::SEG_MAX
            | blk::feature::BLK_SIZE
            | blk::feature::FLUSH
    );
    drv.write(offset::QUEUE_SEL, 0);
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 256);
    drv.write(offset::QUEUE_SEL, 1);
    assert_eq!(drv.read(offset::QUEUE_NUM_MAX), 0, "blk has one queue");
    assert_eq!(drv.read(offset::CONFIG_GENERATION), 0);
}

#[test]
fn config_space_at_every_width_linux_uses() {
    let mut drv = blk_driver();
    let cap = SECTORS as u64;
    // u64 capacity as two 32-bit reads (Linux's vm_get for len 8).
    let lo = drv.read_sized(offset::CONFIG, AccessSize::Word);
    let hi = drv.read_sized(offset::CONFIG + 4, AccessSize::Word);
    assert_eq!(lo | (hi << 32), cap);
    // Byte and halfword reads see the same little-endian bytes.
    let bytes: Vec<u64> = (0..8)
        .map(|i| drv.read_sized(offset::CONFIG + i, AccessSize::Byte))
        .collect();
    assert_eq!(bytes[0], cap & 0xff);
    assert!(bytes[1..].iter().all(|b| *b == 0));
    assert_eq!(drv.read_sized(offset::CONFIG, AccessSize::Half), cap);
    // seg_max at 12, blk_size at 20.
    assert_eq!(drv.read_sized(offset::CONFIG + 12, AccessSize::Word), 62);
    assert_eq!(drv.read_sized(offset::CONFIG + 20, AccessSize::Word), 512);
    assert_eq!(drv.read_sized(offset::CONFIG + 21, AccessSize::Byte), 2);
    // Refused: 64-bit access, misaligned access, past the config struct.
    let before = drv.dev.stats().transport.registers;
    assert_eq!(drv.read_sized(offset::CONFIG, AccessSize::Double), 0);
    assert_eq!(drv.read_sized(offset::CONFIG + 2, AccessSize::Word), 0);
    assert_eq!(drv.read_sized(offset::CONFIG + 1, AccessSize::Half), 0);
    assert_eq!(drv.read_sized(offset::CONFIG + 0x80, AccessSize::Word), 0);
    let after = drv.dev.stats().transport.registers;
    assert_eq!(after.bad_width - before.bad_width, 3);
    assert_eq!(after.unknown_offset - before.unknown_offset, 1);
    // The config space is read-only for blk: writes are refused, counted.
    drv.write_sized(offset::CONFIG + 32, AccessSize::Byte, 1);
    assert_eq!(drv.dev.stats().transport.registers.wrong_direction, 1);
    assert_eq!(drv.read_sized(offset::CONFIG + 32, AccessSize::Byte), 0);
}

#[test]
fn write_sectors_then_read_them_back() {
    let mut drv = blk_driver();
    let data = pattern(3 * 512, 1);
    let w = request(&mut drv, request_type::OUT, 5, &data, 0);
    assert_eq!(w.status, status::OK);
    assert_eq!(w.used_len, 1, "OUT writes only the status byte");
    assert_eq!(
        &drv.dev.backend().disk().as_bytes()[5 * 512..8 * 512],
        &data[..]
    );

    let r = request(&mut drv, request_type::IN, 5, &[], 3 * 512);
    assert_eq!(r.status, status::OK);
    assert_eq!(r.used_len, 3 * 512 + 1, "data + status");
    assert_eq!(r.data, data);

    let stats = *drv.dev.backend().stats();
    assert_eq!((stats.reads, stats.writes), (1, 1));
    assert_eq!((stats.bytes_read, stats.bytes_written), (1536, 1536));
    assert_eq!(drv.dev.stats().queues[0].chains_completed, 2);
    // One interrupt per notify; InterruptStatus shows a used buffer until acked.
    assert_eq!(drv.edges(), 2);
    assert_eq!(drv.ack_interrupt(), InterruptStatus::USED_BUFFER.bits());
    assert_eq!(drv.read(offset::INTERRUPT_STATUS), 0);
}

#[test]
fn data_split_over_odd_segments() {
    let mut drv = blk_driver();
    let data = pattern(1024, 9);
    // OUT: header and data in one descriptor, then data in pieces of 100/412/496.
    let head = drv.alloc(16 + 16);
    let mut bytes = vec![0u8; 32];
    bytes[..4].copy_from_slice(&request_type::OUT.to_le_bytes());
    bytes[8..16].copy_from_slice(&2u64.to_le_bytes());
    bytes[16..].copy_from_slice(&data[..16]);
    drv.mem.write(head, &bytes).unwrap();
    let a = drv.alloc(100);
    let b = drv.alloc(412);
    let c = drv.alloc(496);
    drv.mem.write(a, &data[16..116]).unwrap();
    drv.mem.write(b, &data[116..528]).unwrap();
    drv.mem.write(c, &data[528..]).unwrap();
    let st = drv.alloc(1);
    drv.add_chain(
        0,
        &[
            Buf::r(head, 32),
            Buf::r(a, 100),
            Buf::r(b, 412),
            Buf::r(c, 496),
            Buf::w(st, 1),
        ],
    );
    drv.notify(0);
    assert_eq!(drv.take_used(0), vec![(0, 1)]);
    assert_eq!(drv.read_mem(st, 1), vec![status::OK]);
    assert_eq!(&drv.dev.backend().disk().as_bytes()[1024..2048], &data[..]);

    // IN: data in pieces of 1, 511, 512, then status in its own byte.
    let hdr = drv.alloc(16);
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&2u64.to_le_bytes());
    drv.mem.write(hdr, &bytes).unwrap();
    let x = drv.alloc(1);
    let y = drv.alloc(511);
    let z = drv.alloc(512);
    let st = drv.alloc(1);
    drv.add_chain(
        0,
        &[
            Buf::r(hdr, 16),
            Buf::w(x, 1),
            Buf::w(y, 511),
            Buf::w(z, 512),
            Buf::w(st, 1),
        ],
    );
    drv.notify(0);
    assert_eq!(drv.take_used(0)[0].1, 1025);
    let mut back = drv.read_mem(x, 1);
    back.extend(drv.read_mem(y, 511));
    back.extend(drv.read_mem(z, 512));
    assert_eq!(back, data);
    assert_eq!(drv.read_mem(st, 1), vec![status::OK]);
}

#[test]
fn flush_and_get_id() {
    let mut drv = blk_driver();
    let f = request(&mut drv, request_type::FLUSH, 0, &[], 0);
    assert_eq!((f.status, f.used_len), (status::OK, 1));

    let id = request(&mut drv, request_type::GET_ID, 0, &[], 20);
    assert_eq!(id.status, status::OK);
    assert_eq!(id.used_len, 21);
    assert_eq!(&id.data[..13], b"hv-virtio-blk");
    assert!(id.data[13..].iter().all(|b| *b == 0), "NUL padded");

    // A short ID buffer gets the truncated ID (as QEMU does).
    let short = request(&mut drv, request_type::GET_ID, 0, &[], 4);
    assert_eq!((short.status, short.used_len), (status::OK, 5));
    assert_eq!(&short.data, b"hv-v");
    let stats = *drv.dev.backend().stats();
    assert_eq!((stats.flushes, stats.get_ids), (1, 2));
}

#[test]
fn out_of_range_requests_fail_with_ioerr() {
    let mut drv = blk_driver();
    // Read crossing the end: data zeroed (not left as 0xee), status IOERR.
    let r = request(&mut drv, request_type::IN, SECTORS as u64 - 1, &[], 1024);
    assert_eq!(r.status, status::IOERR);
    assert_eq!(r.used_len, 1025);
    assert!(r.data.iter().all(|b| *b == 0));
    // Write crossing the end: disk unchanged.
    let w = request(
        &mut drv,
        request_type::OUT,
        SECTORS as u64,
        &pattern(512, 3),
        0,
    );
    assert_eq!(w.status, status::IOERR);
    assert!(drv.dev.backend().disk().as_bytes().iter().all(|b| *b == 0));
    // Sector numbers whose byte offset overflows u64.
    let r = request(&mut drv, request_type::IN, u64::MAX, &[], 512);
    assert_eq!(r.status, status::IOERR);
    let w = request(
        &mut drv,
        request_type::OUT,
        u64::MAX / 512,
        &pattern(512, 4),
        0,
    );
    assert_eq!(w.status, status::IOERR);
    let stats = *drv.dev.backend().stats();
    assert_eq!(stats.out_of_range, 4);
    assert_eq!(stats.io_errors, 4);
    // The queue still works.
    let ok = request(&mut drv, request_type::IN, 0, &[], 512);
    assert_eq!(ok.status, status::OK);
}

#[test]
fn misaligned_lengths_fail_with_ioerr() {
    let mut drv = blk_driver();
    let r = request(&mut drv, request_type::IN, 0, &[], 100);
    assert_eq!((r.status, r.used_len), (status::IOERR, 101));
    let w = request(&mut drv, request_type::OUT, 0, &pattern(513, 0), 0);
    assert_eq!(w.status, status::IOERR);
    assert!(drv.dev.backend().disk().as_bytes().iter().all(|b| *b == 0));
    assert_eq!(drv.dev.backend().stats().misaligned, 2);
}

#[test]
fn unknown_and_unoffered_types_are_unsupported() {
    let mut drv = blk_driver();
    for kind in [
        request_type::DISCARD,
        request_type::WRITE_ZEROES,
        request_type::GET_LIFETIME,
        request_type::SECURE_ERASE,
        7,
        u32::MAX,
    ] {
        let d = request(&mut drv, kind, 0, &[], 0);
        assert_eq!(d.status, status::UNSUPP, "type {kind}");
    }
    assert_eq!(drv.dev.backend().stats().unsupported, 6);
}

#[test]
fn missing_status_byte_and_short_header() {
    let mut drv = blk_driver();
    // No writable byte at all: nothing written, used length 0, counted.
    let hdr = drv.alloc(16);
    drv.mem.write(hdr, &[0u8; 16]).unwrap();
    let data = drv.alloc(512);
    drv.add_chain(0, &[Buf::r(hdr, 16), Buf::r(data, 512)]);
    drv.notify(0);
    assert_eq!(drv.take_used(0), vec![(0, 0)]);
    assert_eq!(drv.dev.backend().stats().no_status_byte, 1);

    // A header of 8 bytes: IOERR in the status byte.
    let hdr = drv.alloc(8);
    let st = drv.alloc(1);
    drv.add_chain(0, &[Buf::r(hdr, 8), Buf::w(st, 1)]);
    drv.notify(0);
    assert_eq!(drv.take_used(0)[0].1, 1);
    assert_eq!(drv.read_mem(st, 1), vec![status::IOERR]);
    assert_eq!(drv.dev.backend().stats().short_headers, 1);
}

#[test]
fn status_is_the_last_writable_byte() {
    let mut drv = blk_driver();
    // FLUSH with 7 spare writable bytes before the status: they are zeroed,
    // the status lands in the very last byte, used length covers all 8.
    let hdr = drv.alloc(16);
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&request_type::FLUSH.to_le_bytes());
    drv.mem.write(hdr, &bytes).unwrap();
    let tail = drv.alloc(8);
    drv.mem.fill(tail, 8, 0xee).unwrap();
    drv.add_chain(0, &[Buf::r(hdr, 16), Buf::w(tail, 8)]);
    drv.notify(0);
    assert_eq!(drv.take_used(0), vec![(0, 8)]);
    assert_eq!(drv.read_mem(tail, 8), vec![0, 0, 0, 0, 0, 0, 0, status::OK]);
}

#[test]
fn batch_of_requests_gets_one_interrupt() {
    let mut drv = blk_driver();
    let mut status_bytes = Vec::new();
    for i in 0..10u64 {
        let hdr = drv.alloc(16);
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&request_type::OUT.to_le_bytes());
        bytes[8..].copy_from_slice(&i.to_le_bytes());
        drv.mem.write(hdr, &bytes).unwrap();
        let data = drv.alloc(512);
        drv.mem.fill(data, 512, i as u8).unwrap();
        let st = drv.alloc(1);
        status_bytes.push(st);
        drv.add_chain(0, &[Buf::r(hdr, 16), Buf::r(data, 512), Buf::w(st, 1)]);
    }
    drv.notify(0);
    assert_eq!(drv.take_used(0).len(), 10);
    assert_eq!(drv.edges(), 1);
    for (i, st) in status_bytes.into_iter().enumerate() {
        assert_eq!(drv.read_mem(st, 1), vec![status::OK]);
        assert_eq!(drv.dev.backend().disk().as_bytes()[i * 512 + 100], i as u8);
    }
}

#[test]
fn no_interrupt_flag_suppresses_the_edge() {
    let mut drv = blk_driver();
    drv.set_no_interrupt(0, true);
    let d = request(&mut drv, request_type::FLUSH, 0, &[], 0);
    assert_eq!(d.status, status::OK);
    assert_eq!(drv.edges(), 0);
    assert_eq!(drv.read(offset::INTERRUPT_STATUS), 0);
    assert_eq!(drv.dev.stats().queues[0].interrupts_suppressed, 1);
    drv.set_no_interrupt(0, false);
    request(&mut drv, request_type::FLUSH, 0, &[], 0);
    assert_eq!(drv.edges(), 1);
    assert_eq!(drv.dev.stats().queues[0].interrupts_sent, 1);
}

#[test]
fn reset_then_reinitialise_keeps_the_disk() {
    let mut drv = blk_driver();
    let data = pattern(512, 42);
    request(&mut drv, request_type::OUT, 9, &data, 0);
    assert!(drv.dev.backend().features().is_some());
    drv.set_status(0);
    assert_eq!(drv.status(), 0);
    assert!(!drv.dev.is_live());
    assert!(drv.dev.backend().features().is_none(), "backend reset");
    // A new generation of the driver: rings start again at index 0.
    drv.handshake_all(&[64]);
    assert_eq!(drv.status(), DRIVER_OK);
    let r = request(&mut drv, request_type::IN, 9, &[], 512);
    assert_eq!(r.data, data);
    assert_eq!(drv.used_idx(0), 1);
    assert_eq!(
        drv.dev.stats().transport.resets,
        3,
        "negotiate() resets first too"
    );
}
