//! A virtio-net-shaped backend built on the public API: TX on QueueNotify
//! through the `Transmit` role (header, then frame), RX from the "run loop"
//! through `has_available` + `with_live` and the `Receive` role (header
//! then frame, only if both fit, then completion). This is the pattern the
//! real virtio-net backend uses.

mod support;

use hypervisor::virtio::net::{NetHdr, Receive, RxChain, RxError, Transmit, TxError};
use hypervisor::virtio::regs::offset;
use hypervisor::virtio::{LiveQueues, VirtioDevice, read_config_bytes};
use support::{Buf, Driver};

const RX: u16 = 0;
const TX: u16 = 1;
const MAX_FRAME: usize = 1514;

#[derive(Default)]
struct NetLike {
    sent: Vec<Vec<u8>>,
    tx_bad_header: u64,
    tx_too_long: u64,
    rx_too_small: u64,
}

impl VirtioDevice for NetLike {
    const DEVICE_ID: u32 = 1;
    const QUEUE_COUNT: u16 = 2;

    fn device_features(&self) -> u64 {
        1 << 5 // VIRTIO_NET_F_MAC
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool {
        read_config_bytes(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0], offset, data)
    }

    fn queue_notify(&mut self, queue: u16, queues: &mut LiveQueues<'_>) {
        if queue != TX {
            return; // RX refills need no action: the run loop fills them.
        }
        let Some(mut tx) = queues.queue::<Transmit>(TX) else {
            return;
        };
        while let Some(packet) = tx.pop() {
            // No header, no frame: the typestate has no other order.
            let mut frame = [0u8; MAX_FRAME];
            match packet
                .read_header()
                .and_then(|(_hdr, ready)| ready.read_frame(&mut frame))
            {
                Ok((n, done)) => {
                    done.complete(); // TX writes nothing: used length 0.
                    self.sent.push(frame[..n].to_vec());
                }
                Err(TxError::TooLong { .. }) => self.tx_too_long += 1,
                Err(_) => self.tx_bad_header += 1,
            }
        }
    }

    fn reset(&mut self) {
        self.sent.clear();
    }
}

fn net_driver() -> Driver<NetLike> {
    let mut drv = Driver::new(NetLike::default());
    drv.handshake_all(&[16, 16]);
    drv
}

/// The run loop's RX delivery: if RX has a buffer, write header + frame
/// into it (only if the whole thing fits) and complete it.
fn deliver(drv: &mut Driver<NetLike>, frame: &[u8]) -> Option<bool> {
    if !drv.dev.has_available(RX, &drv.mem) {
        return None;
    }
    drv.with_ctx(|dev, ctx| {
        dev.with_live(ctx, |net, queues| {
            let mut rx = queues.queue::<Receive>(RX)?;
            let buffer = rx.pop()?;
            match buffer
                .write_header(&NetHdr::rx(), frame)
                .and_then(RxChain::write_frame)
            {
                Ok(done) => {
                    done.complete();
                    Some(true)
                }
                // Nothing written: used length 0.
                Err(RxError::NoRoom { .. }) => {
                    net.rx_too_small += 1;
                    Some(false)
                }
                Err(RxError::Memory(_)) => None,
            }
        })
        .flatten()
    })
}

fn post_rx(drv: &mut Driver<NetLike>, len: u32) -> u64 {
    let buf = drv.alloc(u64::from(len));
    drv.mem.fill(buf, u64::from(len), 0xee).unwrap();
    drv.add_chain(RX, &[Buf::w(buf, len)]);
    drv.notify(RX);
    buf
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8 ^ 0x5a).collect()
}

#[test]
fn tx_reads_header_then_frame_however_it_is_split() {
    let mut drv = net_driver();
    let f = frame(60);
    // Header and frame in separate descriptors.
    let h = drv.alloc(12);
    let d = drv.alloc(60);
    drv.mem.write(d, &f).unwrap();
    drv.add_chain(TX, &[Buf::r(h, 12), Buf::r(d, 60)]);
    // Header and frame in one descriptor.
    let hd = drv.alloc(72);
    drv.mem.write(hd + 12, &f).unwrap();
    drv.add_chain(TX, &[Buf::r(hd, 72)]);
    // Header split across two descriptors, frame in three.
    let a = drv.alloc(5);
    let b = drv.alloc(27);
    let c = drv.alloc(40);
    drv.mem.write(b + 7, &f[..20]).unwrap();
    drv.mem.write(c, &f[20..]).unwrap();
    drv.add_chain(TX, &[Buf::r(a, 5), Buf::r(b, 27), Buf::r(c, 40)]);
    drv.notify(TX);
    assert_eq!(drv.dev.backend().sent, vec![f.clone(), f.clone(), f]);
    assert_eq!(
        drv.take_used(TX).iter().map(|u| u.1).collect::<Vec<_>>(),
        vec![0, 0, 0]
    );
    assert_eq!(drv.edges(), 1);
}

#[test]
fn tx_without_a_whole_header_is_counted_and_returned() {
    let mut drv = net_driver();
    let h = drv.alloc(8);
    drv.add_chain(TX, &[Buf::r(h, 8)]);
    // Only writable buffers: no readable header at all.
    let w = drv.alloc(64);
    drv.add_chain(TX, &[Buf::w(w, 64)]);
    drv.notify(TX);
    assert_eq!(drv.dev.backend().tx_bad_header, 2);
    assert!(drv.dev.backend().sent.is_empty());
    assert_eq!(drv.take_used(TX).len(), 2);
    assert_eq!(
        drv.read_mem(w, 4),
        vec![0; 4],
        "a TX chain is never written"
    );
}

#[test]
fn rx_delivery_from_the_run_loop() {
    let mut drv = net_driver();
    assert_eq!(
        deliver(&mut drv, &frame(60)),
        None,
        "no RX buffer posted yet"
    );
    let buf = post_rx(&mut drv, 1526);
    assert_eq!(drv.edges(), 0, "posting RX buffers completes nothing");
    assert_eq!(deliver(&mut drv, &frame(60)), Some(true));
    assert_eq!(drv.take_used(RX), vec![(0, 72)]);
    let got = drv.read_mem(buf, 72);
    assert_eq!(&got[..10], &[0; 10]);
    assert_eq!(&got[10..12], &[1, 0], "num_buffers = 1");
    assert_eq!(&got[12..], &frame(60)[..]);
    assert_eq!(
        drv.read_mem(buf + 72, 4),
        vec![0xee; 4],
        "nothing past the frame"
    );
    assert_eq!(drv.edges(), 1);
    assert_eq!(
        deliver(&mut drv, &frame(60)),
        None,
        "the only buffer is used"
    );
}

#[test]
fn rx_buffer_spanning_descriptors() {
    let mut drv = net_driver();
    let a = drv.alloc(10);
    let b = drv.alloc(100);
    drv.add_chain(RX, &[Buf::w(a, 10), Buf::w(b, 100)]);
    assert_eq!(deliver(&mut drv, &frame(98)), Some(true));
    assert_eq!(drv.take_used(RX), vec![(0, 110)]);
    let mut got = drv.read_mem(a, 10);
    got.extend(drv.read_mem(b, 100));
    assert_eq!(&got[12..], &frame(98)[..]);
}

#[test]
fn rx_too_small_is_never_half_filled() {
    let mut drv = net_driver();
    let buf = post_rx(&mut drv, 40);
    assert_eq!(deliver(&mut drv, &frame(60)), Some(false));
    assert_eq!(drv.take_used(RX), vec![(0, 0)]);
    assert_eq!(drv.read_mem(buf, 40), vec![0xee; 40], "untouched");
    assert_eq!(drv.dev.backend().rx_too_small, 1);
}

#[test]
fn rx_honours_no_interrupt() {
    let mut drv = net_driver();
    post_rx(&mut drv, 1526);
    drv.set_no_interrupt(RX, true);
    assert_eq!(deliver(&mut drv, &frame(60)), Some(true));
    assert_eq!(drv.edges(), 0);
    assert_eq!(drv.dev.stats().queues[RX as usize].interrupts_suppressed, 1);
}

#[test]
fn a_dropped_chain_reaches_the_used_ring_once_with_length_zero() {
    let mut drv = net_driver();
    post_rx(&mut drv, 100);
    drv.with_ctx(|dev, ctx| {
        dev.with_live(ctx, |_, queues| {
            let mut rx = queues.queue::<Receive>(RX).unwrap();
            let buffer = rx.pop().unwrap();
            let half = buffer.write_header(&NetHdr::rx(), b"frame").unwrap();
            // Early return with only the header written: the chain
            // completes on drop, reporting nothing written.
            drop(half);
        })
    });
    assert_eq!(drv.take_used(RX), vec![(0, 0)], "never the 12 header bytes");
    let q = drv.dev.stats().queues[RX as usize];
    assert_eq!((q.chains_completed, q.completed_on_drop), (1, 1));
    assert_eq!(drv.edges(), 1);
}

#[test]
fn mac_config_bytes() {
    let mut drv = net_driver();
    let mac: Vec<u8> = (0..6)
        .map(|i| drv.read_sized(offset::CONFIG + i, hypervisor::mmio::AccessSize::Byte) as u8)
        .collect();
    assert_eq!(mac, vec![0x52, 0x54, 0, 0x12, 0x34, 0x56]);
}
