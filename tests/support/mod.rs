//! A simulated virtio-mmio driver for host tests.
//!
//! It owns a `Vec`-backed guest memory, lays out split virtqueues in it,
//! and talks to the device only through `MmioDevice::read`/`write` (the
//! same path a trapped guest access takes), with a `RecordingIrqSink`
//! standing in for the vGIC. Descriptor and ring contents are written with
//! plain `GuestMemory` calls, as a guest would store them.
#![allow(dead_code)]

use hypervisor::guest_memory::GuestMemory;
use hypervisor::irq::RecordingIrqSink;
use hypervisor::mmio::{AccessSize, DeviceContext, MmioDevice};
use hypervisor::platform;
use hypervisor::virtio::regs::{feature, offset};
use hypervisor::virtio::ring::{DESC_F_NEXT, DESC_F_WRITE, Descriptor, UsedElem};
use hypervisor::virtio::{DeviceStatus, VirtioDevice, VirtioMmioTransport};
use zerocopy::little_endian::{U16, U32, U64};

/// Guest-physical base of RAM.
pub const RAM_BASE: u64 = platform::RAM_BASE;
/// Default RAM size (4 MiB).
pub const RAM_SIZE: u64 = 4 << 20;
/// Where queue `q`'s rings start: `RAM_BASE + q * QUEUE_STRIDE`.
pub const QUEUE_STRIDE: u64 = 0x1_0000;
/// Offset of the available ring inside a queue's area.
pub const AVAIL_OFFSET: u64 = 0x4000;
/// Offset of the used ring inside a queue's area.
pub const USED_OFFSET: u64 = 0x8000;
/// First byte of the data-buffer area.
pub const DATA_BASE: u64 = RAM_BASE + (1 << 20);

/// Status shorthands.
pub const ACK: u32 = DeviceStatus::ACKNOWLEDGE.bits();
/// ACKNOWLEDGE | DRIVER.
pub const DRIVER: u32 = ACK | DeviceStatus::DRIVER.bits();
/// ... | FEATURES_OK.
pub const FEATURES_OK: u32 = DRIVER | DeviceStatus::FEATURES_OK.bits();
/// ... | DRIVER_OK.
pub const DRIVER_OK: u32 = FEATURES_OK | DeviceStatus::DRIVER_OK.bits();
/// DEVICE_NEEDS_RESET.
pub const NEEDS_RESET: u32 = DeviceStatus::DEVICE_NEEDS_RESET.bits();

/// One buffer of a request.
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    /// Guest-physical address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Device-writable?
    pub write: bool,
}

impl Buf {
    /// A device-readable buffer.
    pub fn r(addr: u64, len: u32) -> Self {
        Buf {
            addr,
            len,
            write: false,
        }
    }

    /// A device-writable buffer.
    pub fn w(addr: u64, len: u32) -> Self {
        Buf {
            addr,
            len,
            write: true,
        }
    }
}

/// The driver's view of one queue.
#[derive(Clone, Debug)]
pub struct DriverQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    /// Next `avail.idx` to publish.
    pub avail_idx: u16,
    /// Used entries consumed so far.
    pub last_used: u16,
    /// Next free descriptor (allocation is a simple rotation).
    pub next_desc: u16,
}

/// The simulated driver plus the device under test.
pub struct Driver<D: VirtioDevice> {
    /// The device.
    pub dev: VirtioMmioTransport<D>,
    /// Guest RAM.
    pub mem: GuestMemory,
    /// Interrupts the device raised.
    pub irq: RecordingIrqSink,
    /// Queues set up so far (index = queue index).
    pub queues: Vec<DriverQueue>,
    /// INTID of the device.
    pub intid: u32,
    data_next: u64,
}

impl<D: VirtioDevice> Driver<D> {
    /// A driver with 4 MiB of RAM and the device in virtio slot 0.
    pub fn new(backend: D) -> Self {
        Self::with_ram(backend, RAM_SIZE)
    }

    /// A driver with `ram` bytes of RAM (large sizes cost only the pages
    /// that are touched).
    pub fn with_ram(backend: D, ram: u64) -> Self {
        let (base, intid) = platform::virtio_slot(0);
        let backing = Box::leak(vec![0u8; ram as usize].into_boxed_slice());
        Driver {
            dev: VirtioMmioTransport::new(base, intid, backend),
            mem: GuestMemory::from_static(RAM_BASE, backing),
            irq: RecordingIrqSink::new(),
            queues: Vec::new(),
            intid,
            data_next: DATA_BASE,
        }
    }

    /// Runs `f` with the device and a device context over this RAM and IRQ
    /// recorder (what the run loop does for `with_live`).
    pub fn with_ctx<R>(
        &mut self,
        f: impl FnOnce(&mut VirtioMmioTransport<D>, &mut DeviceContext<'_>) -> R,
    ) -> R {
        let mut ctx = DeviceContext {
            mem: &self.mem,
            irq: &mut self.irq,
            vcpu: 0,
        };
        f(&mut self.dev, &mut ctx)
    }

    // ── Registers ─────────────────────────────────────────────────

    /// A read of `size` at `off`.
    pub fn read_sized(&mut self, off: u64, size: AccessSize) -> u64 {
        self.with_ctx(|dev, ctx| dev.read(off, size, ctx))
    }

    /// A write of `size` at `off`.
    pub fn write_sized(&mut self, off: u64, size: AccessSize, value: u64) {
        self.with_ctx(|dev, ctx| dev.write(off, size, value, ctx))
    }

    /// A 32-bit register read.
    pub fn read(&mut self, off: u64) -> u32 {
        self.read_sized(off, AccessSize::Word) as u32
    }

    /// A 32-bit register write.
    pub fn write(&mut self, off: u64, value: u32) {
        self.write_sized(off, AccessSize::Word, u64::from(value))
    }

    /// Reads Status.
    pub fn status(&mut self) -> u32 {
        self.read(offset::STATUS)
    }

    /// Writes Status.
    pub fn set_status(&mut self, value: u32) {
        self.write(offset::STATUS, value)
    }

    /// Reads all 64 device feature bits.
    pub fn device_features(&mut self) -> u64 {
        self.write(offset::DEVICE_FEATURES_SEL, 1);
        let high = self.read(offset::DEVICE_FEATURES);
        self.write(offset::DEVICE_FEATURES_SEL, 0);
        let low = self.read(offset::DEVICE_FEATURES);
        (u64::from(high) << 32) | u64::from(low)
    }

    /// Writes all 64 driver feature bits.
    pub fn write_driver_features(&mut self, features: u64) {
        self.write(offset::DRIVER_FEATURES_SEL, 1);
        self.write(offset::DRIVER_FEATURES, (features >> 32) as u32);
        self.write(offset::DRIVER_FEATURES_SEL, 0);
        self.write(offset::DRIVER_FEATURES, features as u32);
    }

    /// Reset, ACKNOWLEDGE, DRIVER, write `features`, FEATURES_OK; returns
    /// whether FEATURES_OK reads back set.
    pub fn negotiate(&mut self, features: u64) -> bool {
        self.set_status(0);
        self.queues.clear();
        self.set_status(ACK);
        self.set_status(DRIVER);
        self.write_driver_features(features);
        self.set_status(FEATURES_OK);
        self.status() & DeviceStatus::FEATURES_OK.bits() != 0
    }

    /// The standard queue placement for queue `index` with `size` entries.
    pub fn queue_at(index: u16, size: u16) -> DriverQueue {
        let base = RAM_BASE + u64::from(index) * QUEUE_STRIDE;
        DriverQueue {
            size,
            desc: base,
            avail: base + AVAIL_OFFSET,
            used: base + USED_OFFSET,
            avail_idx: 0,
            last_used: 0,
            next_desc: 0,
        }
    }

    /// Writes a queue's registers (QueueSel, QueueNum, addresses); does not
    /// set QueueReady.
    pub fn write_queue_registers(&mut self, index: u16, q: &DriverQueue) {
        self.write(offset::QUEUE_SEL, u32::from(index));
        self.write(offset::QUEUE_NUM, u32::from(q.size));
        self.write(offset::QUEUE_DESC_LOW, q.desc as u32);
        self.write(offset::QUEUE_DESC_HIGH, (q.desc >> 32) as u32);
        self.write(offset::QUEUE_DRIVER_LOW, q.avail as u32);
        self.write(offset::QUEUE_DRIVER_HIGH, (q.avail >> 32) as u32);
        self.write(offset::QUEUE_DEVICE_LOW, q.used as u32);
        self.write(offset::QUEUE_DEVICE_HIGH, (q.used >> 32) as u32);
    }

    /// Sets up queue `index` as Linux does: check QueueReady is 0, read
    /// QueueNumMax, zero the rings, write the registers, QueueReady = 1.
    pub fn setup_queue(&mut self, index: u16, size: u16) {
        self.write(offset::QUEUE_SEL, u32::from(index));
        assert_eq!(
            self.read(offset::QUEUE_READY),
            0,
            "queue {index} already live"
        );
        let max = self.read(offset::QUEUE_NUM_MAX);
        assert!(
            u32::from(size) <= max,
            "queue {index}: size {size} > max {max}"
        );
        let q = Self::queue_at(index, size);
        self.mem.fill(q.desc, QUEUE_STRIDE, 0).unwrap();
        self.write_queue_registers(index, &q);
        self.write(offset::QUEUE_READY, 1);
        assert_eq!(self.read(offset::QUEUE_READY), 1, "queue {index} refused");
        let i = usize::from(index);
        if self.queues.len() <= i {
            self.queues.resize(i + 1, Self::queue_at(index, 0));
        }
        self.queues[i] = q;
    }

    /// The full handshake: negotiate `features`, set up one queue of
    /// `size` per entry of `sizes`, DRIVER_OK.
    pub fn handshake(&mut self, features: u64, sizes: &[u16]) {
        assert!(self.negotiate(features), "features refused");
        for (index, size) in sizes.iter().enumerate() {
            self.setup_queue(index as u16, *size);
        }
        self.set_status(DRIVER_OK);
        assert_eq!(self.status(), DRIVER_OK);
        assert!(self.dev.is_live());
    }

    /// Handshake accepting what the device offers except `EVENT_IDX`, so
    /// that notifications follow the flag words (`VIRTQ_AVAIL_F_NO_INTERRUPT`);
    /// [`Driver::handshake_event_idx`] accepts it too.
    pub fn handshake_all(&mut self, sizes: &[u16]) {
        let features = self.device_features() & !feature::EVENT_IDX;
        assert_ne!(features & feature::VERSION_1, 0);
        self.handshake(features, sizes);
    }

    /// Handshake accepting exactly what the device offers, `EVENT_IDX`
    /// included (which the transport always offers).
    pub fn handshake_event_idx(&mut self, sizes: &[u16]) {
        let features = self.device_features();
        assert_ne!(features & feature::EVENT_IDX, 0);
        self.handshake(features, sizes);
    }

    /// Reads InterruptStatus and acknowledges it, as Linux's handler does.
    pub fn ack_interrupt(&mut self) -> u32 {
        let status = self.read(offset::INTERRUPT_STATUS);
        self.write(offset::INTERRUPT_ACK, status);
        status
    }

    /// Edges raised on the device's INTID so far.
    pub fn edges(&self) -> u32 {
        self.irq.edges_on(self.intid)
    }

    // ── Rings ─────────────────────────────────────────────────────

    /// Allocates `len` bytes of data buffer (16-byte aligned).
    pub fn alloc(&mut self, len: u64) -> u64 {
        let addr = self.data_next;
        self.data_next = (addr + len + 15) & !15;
        assert!(
            self.data_next <= RAM_BASE + self.mem.size(),
            "test data area exhausted"
        );
        addr
    }

    /// Writes descriptor `i` of queue `q`.
    pub fn put_desc(&mut self, q: u16, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let desc = Descriptor {
            addr: U64::new(addr),
            len: U32::new(len),
            flags: U16::new(flags),
            next: U16::new(next),
        };
        let table = self.queues[usize::from(q)].desc;
        self.mem
            .write_obj(table + u64::from(i) * 16, &desc)
            .unwrap();
    }

    /// Puts `head` in the next available-ring slot and publishes it.
    pub fn offer(&mut self, q: u16, head: u16) {
        let dq = &mut self.queues[usize::from(q)];
        let slot = u64::from(dq.avail_idx % dq.size);
        self.mem
            .write_obj(dq.avail + 4 + slot * 2, &U16::new(head))
            .unwrap();
        dq.avail_idx = dq.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(dq.avail + 2, &U16::new(dq.avail_idx))
            .unwrap();
    }

    /// Overwrites `avail.idx` (for hostile tests).
    pub fn set_avail_idx(&mut self, q: u16, idx: u16) {
        let dq = &mut self.queues[usize::from(q)];
        dq.avail_idx = idx;
        self.mem.write_obj(dq.avail + 2, &U16::new(idx)).unwrap();
    }

    /// Sets or clears `VIRTQ_AVAIL_F_NO_INTERRUPT`.
    pub fn set_no_interrupt(&mut self, q: u16, on: bool) {
        let avail = self.queues[usize::from(q)].avail;
        self.mem.write_obj(avail, &U16::new(u16::from(on))).unwrap();
    }

    /// Writes `used_event` (the word after the available ring's entries),
    /// as a driver with `EVENT_IDX` does to ask for an interrupt once the
    /// used entry at position `idx` is written.
    pub fn set_used_event(&mut self, q: u16, idx: u16) {
        let dq = &self.queues[usize::from(q)];
        let at = dq.avail + 4 + 2 * u64::from(dq.size);
        self.mem.write_obj(at, &U16::new(idx)).unwrap();
    }

    /// `avail_event` as the device wrote it (the word after the used
    /// ring's entries).
    pub fn avail_event(&self, q: u16) -> u16 {
        let dq = &self.queues[usize::from(q)];
        let at = dq.used + 4 + 8 * u64::from(dq.size);
        self.mem.read_obj::<U16>(at).unwrap().get()
    }

    /// Chains `bufs` into fresh descriptors, offers the chain; returns the
    /// head index.
    pub fn add_chain(&mut self, q: u16, bufs: &[Buf]) -> u16 {
        let (size, first) = {
            let dq = &self.queues[usize::from(q)];
            (dq.size, dq.next_desc)
        };
        assert!(bufs.len() <= usize::from(size));
        let n = bufs.len() as u16;
        for (k, buf) in bufs.iter().enumerate() {
            let i = (first + k as u16) % size;
            let next = (i + 1) % size;
            let mut flags = if buf.write { DESC_F_WRITE } else { 0 };
            if k + 1 < bufs.len() {
                flags |= DESC_F_NEXT;
            }
            self.put_desc(
                q,
                i,
                buf.addr,
                buf.len,
                flags,
                if k + 1 < bufs.len() { next } else { 0 },
            );
        }
        self.queues[usize::from(q)].next_desc = (first + n) % size;
        self.offer(q, first);
        first
    }

    /// Writes QueueNotify for `q`.
    pub fn notify(&mut self, q: u16) {
        self.write(offset::QUEUE_NOTIFY, u32::from(q));
    }

    /// `used.idx` as the device published it.
    pub fn used_idx(&self, q: u16) -> u16 {
        let used = self.queues[usize::from(q)].used;
        self.mem.read_obj::<U16>(used + 2).unwrap().get()
    }

    /// Used elements `(id, len)` published since the last call.
    pub fn take_used(&mut self, q: u16) -> Vec<(u32, u32)> {
        let idx = self.used_idx(q);
        let dq = &mut self.queues[usize::from(q)];
        let mut out = Vec::new();
        while dq.last_used != idx {
            let slot = u64::from(dq.last_used % dq.size);
            let elem: UsedElem = self.mem.read_obj(dq.used + 4 + slot * 8).unwrap();
            out.push((elem.id.get(), elem.len.get()));
            dq.last_used = dq.last_used.wrapping_add(1);
        }
        out
    }

    /// Reads `len` bytes of guest memory.
    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.mem.read(addr, &mut buf).unwrap();
        buf
    }
}

/// A small deterministic PRNG (xorshift64*), so randomized tests need no
/// dependency and replay exactly from their seed.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero `seed` (0 is replaced).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A fresh switch over its own (leaked) rings.
pub fn new_switch() -> &'static hypervisor::net::NetSwitch {
    use hypervisor::net::{MAX_PORTS, NET_RX_BYTES, NET_RX_DEPTH, NetRxRing, VSwitch};
    // One ring at a time: the rings are large, an array of them would be
    // built on the test's stack first.
    let rings: Vec<NetRxRing<NET_RX_DEPTH, NET_RX_BYTES>> =
        (0..MAX_PORTS).map(|_| NetRxRing::new()).collect();
    Box::leak(Box::new(VSwitch::new(Box::leak(rings.into_boxed_slice()))))
}

/// VM `vm`'s virtio-net device in its slot on `sw` (port added with its
/// MAC lock, as the attach helper does), not yet initialised by the driver.
pub fn net_vm_raw(
    sw: &'static hypervisor::net::NetSwitch,
    vm: usize,
) -> Driver<hypervisor::virtio::net::VirtioNet> {
    use hypervisor::net::PortConfig;
    use hypervisor::virtio::net::VirtioNet;
    let mut drv = Driver::new(VirtioNet::with_switch(vm, sw));
    let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
    drv.dev = VirtioMmioTransport::new(base, intid, VirtioNet::with_switch(vm, sw));
    drv.intid = intid;
    sw.add_port(vm, PortConfig::locked_to(VirtioNet::mac_for_vm(vm)))
        .unwrap();
    drv
}

/// Folds a ones'-complement sum to 16 bits (the Internet checksum before
/// its final inversion).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The sum of `data` as big-endian 16-bit words (an odd last byte padded
/// with zero), unfolded.
pub fn words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}
