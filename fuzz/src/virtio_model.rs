//! A simulated guest driving one virtio-mmio device, with an independent
//! model of what the device may do to guest memory.
//!
//! The guest talks to the device only through `MmioDevice::read`/`write`
//! (what a trapped guest access reaches) and stores descriptors and ring
//! entries with plain memory writes, mirrored in a [`Shadow`]. After every
//! step the harness compares RAM with the shadow and checks, from its own
//! record of the registers it wrote and its own walk of the descriptor
//! tables (never the device's state):
//!
//! - every byte the device changed lies in the used ring of a queue the
//!   guest made ready, or in the first `len` writable bytes of a chain the
//!   device completed in this step (`len` from its used element);
//! - used elements follow the available ring's order (each avail entry
//!   yields at most one used element, so no head is completed twice), and
//!   never more than were offered, nor any after an `avail.idx` jump;
//! - a used length never exceeds the chain's writable bytes;
//! - `QueueReady` reads back 1 exactly when the layout the guest wrote is
//!   valid (size a power of two up to `QueueNumMax`, aligned, inside RAM).
//!
//! When a device write lands inside a descriptor table or available ring
//! (the guest laid its buffers over its own rings), the device may have
//! read what it wrote, which the model cannot follow; the per-chain checks
//! then stop until the next reset (counted in [`Guest::desynced_steps`]),
//! while everything else keeps being checked.

use arbitrary::Arbitrary;
use hypervisor::irq::RecordingIrqSink;
use hypervisor::mmio::{AccessSize, DeviceContext, MmioDevice};
use hypervisor::platform;
use hypervisor::virtio::regs::{feature, offset};
use hypervisor::virtio::ring::{DESC_F_NEXT, DESC_F_WRITE};
use hypervisor::virtio::{DeviceStatus, MAX_QUEUES, VirtioDevice, VirtioMmioTransport};

use crate::mem::{OwnedRam, Shadow, overlaps};

/// Guest-physical base of RAM.
pub const RAM_BASE: u64 = platform::RAM_BASE;
/// RAM per guest.
pub const RAM_SIZE: u64 = 0x1_0000;
/// End of RAM.
pub const RAM_END: u64 = RAM_BASE + RAM_SIZE;
/// Where queue `q`'s standard rings start: `RAM_BASE + q * QUEUE_STRIDE`.
pub const QUEUE_STRIDE: u64 = 0x2000;
/// Start of the data-buffer area (above the standard rings of two queues).
pub const DATA_BASE: u64 = RAM_BASE + 2 * QUEUE_STRIDE;
/// Size of the data-buffer area.
pub const DATA_SIZE: u64 = RAM_END - DATA_BASE;

const STATUS_ACK: u32 = DeviceStatus::ACKNOWLEDGE.bits();
const STATUS_DRIVER: u32 = DeviceStatus::DRIVER.bits();
const STATUS_FEATURES_OK: u32 = DeviceStatus::FEATURES_OK.bits();
const STATUS_DRIVER_OK: u32 = DeviceStatus::DRIVER_OK.bits();
const STATUS_FAILED: u32 = DeviceStatus::FAILED.bits();

/// Width of a register access.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Width {
    /// 1 byte.
    Byte,
    /// 2 bytes.
    Half,
    /// 4 bytes.
    Word,
    /// 8 bytes.
    Double,
}

impl Width {
    /// The access size.
    pub fn size(self) -> AccessSize {
        match self {
            Width::Byte => AccessSize::Byte,
            Width::Half => AccessSize::Half,
            Width::Word => AccessSize::Word,
            Width::Double => AccessSize::Double,
        }
    }
}

/// A buffer address, mostly in the data area.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Addr {
    /// Offset into the data area.
    Data(u16),
    /// Just below the end of RAM.
    NearEnd(u8),
    /// Anything (inside the standard ring area it is moved past the end of
    /// RAM, so random buffers do not land on the rings).
    Wild(u64),
}

impl Addr {
    /// The guest-physical address.
    pub fn resolve(self) -> u64 {
        match self {
            Addr::Data(o) => DATA_BASE + u64::from(o) % DATA_SIZE,
            Addr::NearEnd(k) => RAM_END - u64::from(k),
            Addr::Wild(v) if (RAM_BASE..DATA_BASE).contains(&v) => RAM_END + (v & 0xfff),
            Addr::Wild(v) => v,
        }
    }
}

/// One buffer of a request.
#[derive(Arbitrary, Clone, Debug)]
pub struct BufSpec {
    /// Where.
    pub addr: Addr,
    /// Length (0 is a malformed descriptor).
    pub len: u16,
    /// Device-writable?
    pub write: bool,
}

/// Where a queue's rings go.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Layout {
    /// The queue's standard area.
    Standard,
    /// Offsets into the queue's standard area (possibly misaligned or
    /// overlapping each other).
    Shifted {
        /// Descriptor table offset.
        desc: u16,
        /// Available ring offset.
        avail: u16,
        /// Used ring offset.
        used: u16,
    },
    /// Any addresses.
    Raw {
        /// Descriptor table.
        desc: u64,
        /// Available ring.
        avail: u64,
        /// Used ring.
        used: u64,
    },
}

/// One thing the guest does.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    /// ACKNOWLEDGE, DRIVER, driver features (the offered ones masked by
    /// `mask`, or exactly the offered ones), FEATURES_OK.
    Handshake {
        /// Features to withhold (None: accept everything offered).
        mask: Option<u64>,
    },
    /// QueueSel, QueueNum, the three addresses, QueueReady = 1.
    SetupQueue {
        /// Queue index (may not exist).
        queue: u8,
        /// Size written to QueueNum (any value up to 32768 and beyond).
        size: u16,
        /// Where the rings go.
        layout: Layout,
    },
    /// Status |= DRIVER_OK.
    DriverOk,
    /// Status = 0.
    Reset,
    /// Any Status value.
    Status(u8),
    /// Any register access at any offset and width.
    Reg {
        /// Offset into the 0x200-byte region (wraps).
        offset: u16,
        /// Width.
        width: Width,
        /// Value (writes).
        value: u64,
        /// Write or read.
        write: bool,
    },
    /// Writes a chain of descriptors starting at the guest's next free
    /// descriptor, puts its head into the next available slot and (if
    /// `publish`) advances `avail.idx`.
    Request {
        /// Queue.
        queue: u8,
        /// Buffers in chain order.
        bufs: Vec<BufSpec>,
        /// Bytes stored at the start of the first buffer.
        prefix: Vec<u8>,
        /// Advance `avail.idx`.
        publish: bool,
    },
    /// One raw descriptor.
    Desc {
        /// Queue.
        queue: u8,
        /// Index (taken modulo the queue size, or not).
        index: u16,
        /// Address.
        addr: Addr,
        /// Length.
        len: u32,
        /// Flags (any bits).
        flags: u16,
        /// Next.
        next: u16,
    },
    /// One raw available-ring entry.
    AvailSlot {
        /// Queue.
        queue: u8,
        /// Slot.
        slot: u16,
        /// Head index.
        head: u16,
    },
    /// `avail.idx += delta` (jumps and decrements included).
    AvailIdx {
        /// Queue.
        queue: u8,
        /// Added to the index.
        delta: u16,
    },
    /// `avail.flags`.
    AvailFlags {
        /// Queue.
        queue: u8,
        /// Flags.
        flags: u16,
    },
    /// QueueNotify.
    Notify {
        /// Written value.
        queue: u8,
    },
    /// Stores bytes into the data area.
    Poke {
        /// Offset into the data area.
        offset: u16,
        /// Bytes.
        bytes: Vec<u8>,
    },
    /// InterruptACK.
    Ack(u8),
}

/// The guest's record of one queue.
#[derive(Clone, Copy, Debug, Default)]
struct QueueModel {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    ready: bool,
    /// Device side: next avail slot it will take (as the spec requires).
    next_avail: u16,
    /// Device side: its used index.
    used_idx: u16,
    /// Driver side: next avail slot the guest fills.
    drv_avail: u16,
    /// Driver side: next free descriptor.
    next_desc: u16,
}

impl QueueModel {
    fn used_bytes(&self) -> u64 {
        6 + 8 * u64::from(self.size)
    }
    fn avail_bytes(&self) -> u64 {
        6 + 2 * u64::from(self.size)
    }
    fn desc_bytes(&self) -> u64 {
        16 * u64::from(self.size)
    }
}

/// Buffers of a chain as `(gpa, len)`, in chain order.
pub type Buffers = Vec<(u64, u32)>;

/// One completion the model accepted in the last step.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Queue.
    pub queue: u16,
    /// Head index.
    pub head: u16,
    /// Used length.
    pub len: u32,
    /// The chain's readable buffers (model walk, pre-step memory).
    pub readable: Vec<(u64, u32)>,
    /// The chain's writable buffers.
    pub writable: Vec<(u64, u32)>,
}

/// A guest, its RAM and one device.
pub struct Guest<D: VirtioDevice> {
    /// The device.
    pub dev: VirtioMmioTransport<D>,
    /// RAM.
    pub ram: OwnedRam,
    /// What the guest stored.
    pub shadow: Shadow,
    /// Interrupts raised.
    pub irq: RecordingIrqSink,
    queues: [QueueModel; MAX_QUEUES],
    queue_max: [u16; MAX_QUEUES],
    sel: u32,
    negotiated: bool,
    live: bool,
    desynced: bool,
    /// Completions checked since the last [`Guest::take_completions`].
    pub last_completions: Vec<Completion>,
    /// Steps whose chains could not be followed (see the module docs).
    pub desynced_steps: u64,
    /// Completions checked in total.
    pub completions: u64,
}

/// Reads a little-endian u16 from RAM (0 if outside).
fn ram_u16(ram: &OwnedRam, gpa: u64) -> u16 {
    let mut b = [0u8; 2];
    let _ = ram.mem().read(gpa, &mut b);
    u16::from_le_bytes(b)
}

/// Reads a little-endian u32 from RAM (0 if outside).
fn ram_u32(ram: &OwnedRam, gpa: u64) -> u32 {
    let mut b = [0u8; 4];
    let _ = ram.mem().read(gpa, &mut b);
    u32::from_le_bytes(b)
}

impl<D: VirtioDevice> Guest<D> {
    /// A guest with fresh RAM and `backend` in virtio slot `slot`.
    pub fn new(backend: D, slot: usize) -> Self {
        let (base, intid) = platform::virtio_slot(slot);
        let ram = OwnedRam::new(RAM_BASE, RAM_SIZE as usize);
        let shadow = Shadow::new(&ram);
        Guest {
            dev: VirtioMmioTransport::new(base, intid, backend),
            ram,
            shadow,
            irq: RecordingIrqSink::new(),
            queues: [QueueModel::default(); MAX_QUEUES],
            queue_max: [0; MAX_QUEUES],
            sel: 0,
            negotiated: false,
            live: false,
            desynced: false,
            last_completions: Vec::new(),
            desynced_steps: 0,
            completions: 0,
        }
    }

    /// The completions checked since the last call.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        core::mem::take(&mut self.last_completions)
    }

    /// True while the model cannot follow the device's chains (see the
    /// module docs).
    pub fn is_desynced(&self) -> bool {
        self.desynced
    }

    /// True while the guest believes the device is Live.
    pub fn is_live(&self) -> bool {
        self.live
    }

    fn read_reg(&mut self, off: u64, size: AccessSize) -> u64 {
        let mut ctx = DeviceContext {
            mem: self.ram.mem(),
            irq: &mut self.irq,
            vcpu: 0,
        };
        self.dev.read(off, size, &mut ctx)
    }

    /// Runs `f` as one device step with the guest's RAM and interrupt
    /// sink, then checks the step.
    pub fn step<R>(
        &mut self,
        f: impl FnOnce(&mut VirtioMmioTransport<D>, &mut DeviceContext<'_>) -> R,
    ) -> R {
        let mut ctx = DeviceContext {
            mem: self.ram.mem(),
            irq: &mut self.irq,
            vcpu: 0,
        };
        let r = f(&mut self.dev, &mut ctx);
        self.check_step();
        r
    }

    /// A guest store (never into a ready queue's used ring, which only the
    /// device writes).
    pub fn store(&mut self, gpa: u64, data: &[u8]) {
        let len = data.len() as u64;
        let hits_used = self
            .queues
            .iter()
            .any(|q| q.ready && overlaps(gpa, len, q.used, q.used_bytes()));
        if !hits_used {
            self.shadow.store(&self.ram, gpa, data);
        }
    }

    /// A register load, checked.
    pub fn mmio_read(&mut self, off: u64, size: AccessSize) -> u64 {
        let value = self.step(|dev, ctx| dev.read(off, size, ctx));
        if size == AccessSize::Word && off < offset::CONFIG {
            match off {
                offset::MAGIC_VALUE => assert_eq!(value, 0x7472_6976, "MagicValue"),
                offset::VERSION => assert_eq!(value, 2, "Version"),
                offset::DEVICE_ID => assert_eq!(value, u64::from(D::DEVICE_ID), "DeviceID"),
                offset::INTERRUPT_STATUS => assert_eq!(value & !3, 0, "InterruptStatus"),
                _ => {}
            }
        }
        value
    }

    /// A register store, with the model following what the guest wrote.
    pub fn mmio_write(&mut self, off: u64, size: AccessSize, value: u64) {
        let word = size == AccessSize::Word && off.is_multiple_of(4) && off < offset::CONFIG;
        let value32 = value as u32;
        let sel = self.sel as usize;
        let setup_open =
            word && self.negotiated && sel < usize::from(D::QUEUE_COUNT) && !self.queues[sel].ready;
        if setup_open && off == offset::QUEUE_READY && value32 == 1 {
            // A driver zeroes the used ring before handing it over.
            let q = self.queues[sel];
            if q.used >= RAM_BASE && q.used.saturating_add(q.used_bytes()) <= RAM_END {
                self.store(q.used, &vec![0u8; q.used_bytes() as usize]);
            }
        }
        self.step(|dev, ctx| dev.write(off, size, value, ctx));
        if !word {
            return;
        }
        match off {
            offset::QUEUE_SEL => self.sel = value32,
            offset::QUEUE_NUM if setup_open => {
                let max = self.queue_max[sel];
                if value32 != 0 && value32 <= u32::from(max) && value32.is_power_of_two() {
                    self.queues[sel].size = value32 as u16;
                }
            }
            offset::QUEUE_DESC_LOW if setup_open => set_low(&mut self.queues[sel].desc, value32),
            offset::QUEUE_DESC_HIGH if setup_open => set_high(&mut self.queues[sel].desc, value32),
            offset::QUEUE_DRIVER_LOW if setup_open => set_low(&mut self.queues[sel].avail, value32),
            offset::QUEUE_DRIVER_HIGH if setup_open => {
                set_high(&mut self.queues[sel].avail, value32)
            }
            offset::QUEUE_DEVICE_LOW if setup_open => set_low(&mut self.queues[sel].used, value32),
            offset::QUEUE_DEVICE_HIGH if setup_open => {
                set_high(&mut self.queues[sel].used, value32)
            }
            offset::QUEUE_READY => self.after_queue_ready(value32),
            offset::STATUS => self.after_status(),
            _ => {}
        }
    }

    fn after_queue_ready(&mut self, value: u32) {
        let sel = self.sel as usize;
        let ready = self.read_reg(offset::QUEUE_READY, AccessSize::Word) == 1;
        if !self.negotiated || sel >= usize::from(D::QUEUE_COUNT) {
            if !self.live || sel >= usize::from(D::QUEUE_COUNT) {
                assert!(!ready, "QueueReady reads 1 for queue {sel} outside setup");
            }
            return;
        }
        let q = &mut self.queues[sel];
        match value {
            0 => {
                assert!(!ready, "QueueReady=0 left queue {sel} ready");
                q.ready = false;
            }
            1 if !q.ready => {
                let inside = |a: u64, len: u64| a >= RAM_BASE && a.saturating_add(len) <= RAM_END;
                let valid = q.size != 0
                    && q.desc.is_multiple_of(16)
                    && q.avail.is_multiple_of(2)
                    && q.used.is_multiple_of(4)
                    && inside(q.desc, q.desc_bytes())
                    && inside(q.avail, q.avail_bytes())
                    && inside(q.used, q.used_bytes());
                assert_eq!(
                    ready, valid,
                    "QueueReady for queue {sel} size {} desc {:#x} avail {:#x} used {:#x}",
                    q.size, q.desc, q.avail, q.used
                );
                if ready {
                    q.ready = true;
                    q.next_avail = 0;
                    q.used_idx = 0;
                    q.drv_avail = 0;
                    q.next_desc = 0;
                }
            }
            _ => {}
        }
    }

    fn after_status(&mut self) {
        let status = self.read_reg(offset::STATUS, AccessSize::Word) as u32;
        if status == 0 {
            self.queues = [QueueModel::default(); MAX_QUEUES];
            self.sel = 0;
            self.negotiated = false;
            self.live = false;
            self.desynced = false;
            return;
        }
        let failed = status & STATUS_FAILED != 0;
        let negotiated =
            status & STATUS_FEATURES_OK != 0 && status & STATUS_DRIVER_OK == 0 && !failed;
        if negotiated && !self.negotiated {
            for q in 0..usize::from(D::QUEUE_COUNT) {
                let saved = self.sel;
                self.sel = q as u32;
                self.step(|dev, ctx| dev.write(offset::QUEUE_SEL, AccessSize::Word, q as u64, ctx));
                self.queue_max[q] = self.read_reg(offset::QUEUE_NUM_MAX, AccessSize::Word) as u16;
                self.queues[q] = QueueModel {
                    size: self.queue_max[q],
                    ..QueueModel::default()
                };
                self.sel = saved;
                self.step(|dev, ctx| {
                    dev.write(offset::QUEUE_SEL, AccessSize::Word, u64::from(saved), ctx)
                });
            }
        }
        self.negotiated = negotiated;
        let live = status & STATUS_DRIVER_OK != 0 && !failed;
        if live && !self.live {
            for q in self.queues.iter_mut().filter(|q| q.ready) {
                q.next_avail = 0;
                q.used_idx = 0;
            }
        }
        self.live = live;
        assert_eq!(live, self.dev.is_live(), "Status {status:#x} vs liveness");
    }

    /// The model's walk of chain `head` of queue `q` in pre-step memory:
    /// (readable, writable) buffers in chain order, following `next` for at
    /// most a queue size of descriptors. Deliberately permissive: it never
    /// finds fewer buffers than a correct device accepts.
    fn walk(&self, q: &QueueModel, head: u16) -> (Buffers, Buffers) {
        let (mut readable, mut writable) = (Vec::new(), Vec::new());
        let mut index = head;
        for _ in 0..q.size {
            if index >= q.size {
                break;
            }
            let d = self.shadow.read(q.desc + 16 * u64::from(index), 16);
            let addr = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & DESC_F_WRITE != 0 {
                writable.push((addr, len));
            } else {
                readable.push((addr, len));
            }
            if flags & DESC_F_NEXT == 0 {
                break;
            }
            index = next;
        }
        (readable, writable)
    }

    /// Checks what the last device step did (see the module docs) and
    /// accepts its writes into the shadow.
    pub fn check_step(&mut self) {
        let changed = self.shadow.diff(&self.ram);
        if self.last_completions.len() > 4096 {
            self.last_completions.clear();
        }
        let ready: Vec<(usize, QueueModel)> = self
            .queues
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, q)| q.ready)
            .collect();
        let mut allowed: Vec<(u64, u64)> = ready
            .iter()
            .map(|(_, q)| (q.used, q.used_bytes()))
            .collect();
        // Did the device write over a ring it reads?
        let hit_rings = changed.iter().any(|&(a, l)| {
            ready.iter().any(|(_, q)| {
                overlaps(a, l, q.desc, q.desc_bytes()) || overlaps(a, l, q.avail, q.avail_bytes())
            })
        });
        if hit_rings && self.live {
            self.desynced = true;
        }
        if self.desynced {
            self.desynced_steps += 1;
            self.shadow.sync(&self.ram);
            return;
        }
        if self.live {
            for (index, q) in &ready {
                let avail_idx = self.shadow.u16_at(q.avail + 2);
                let pending = avail_idx.wrapping_sub(q.next_avail);
                let now = ram_u16(&self.ram, q.used + 2);
                let k = now.wrapping_sub(q.used_idx);
                assert!(
                    k <= q.size,
                    "queue {index}: {k} used entries in one step (size {})",
                    q.size
                );
                if pending > q.size {
                    assert_eq!(k, 0, "queue {index}: completions after an avail.idx jump");
                } else {
                    assert!(
                        k <= pending,
                        "queue {index}: {k} completions for {pending} offered"
                    );
                }
                for j in 0..k {
                    let slot = u64::from(q.used_idx.wrapping_add(j) % q.size);
                    let id = ram_u32(&self.ram, q.used + 4 + 8 * slot);
                    let len = ram_u32(&self.ram, q.used + 8 + 8 * slot);
                    let aslot = u64::from(q.next_avail.wrapping_add(j) % q.size);
                    let head = self.shadow.u16_at(q.avail + 4 + 2 * aslot);
                    assert_eq!(
                        id,
                        u32::from(head),
                        "queue {index}: used id {id} out of avail order (expected {head})"
                    );
                    let (readable, writable) = self.walk(q, head);
                    let room: u64 = writable.iter().map(|&(_, l)| u64::from(l)).sum();
                    assert!(
                        u64::from(len) <= room,
                        "queue {index}: used len {len} > {room} writable bytes (head {head})"
                    );
                    let mut left = u64::from(len);
                    for &(addr, blen) in &writable {
                        let take = left.min(u64::from(blen));
                        if take > 0 {
                            allowed.push((addr, take));
                        }
                        left -= take;
                    }
                    self.last_completions.push(Completion {
                        queue: *index as u16,
                        head,
                        len,
                        readable,
                        writable,
                    });
                }
                let m = &mut self.queues[*index];
                m.next_avail = m.next_avail.wrapping_add(k);
                m.used_idx = m.used_idx.wrapping_add(k);
                self.completions += u64::from(k);
            }
        }
        for &(a, l) in &changed {
            for gpa in a..a + l {
                assert!(
                    allowed
                        .iter()
                        .any(|&(s, n)| gpa >= s && gpa < s.saturating_add(n)),
                    "device wrote guest byte {gpa:#x} outside the used rings and the \
                     completed chains' writable buffers (allowed: {allowed:x?})"
                );
            }
        }
        self.shadow.sync(&self.ram);
    }

    /// Asserts that nothing changed this guest's RAM since its last step
    /// (another VM's activity must not reach it).
    pub fn assert_untouched(&self, why: &str) {
        let changed = self.shadow.diff(&self.ram);
        assert!(changed.is_empty(), "{why}: RAM changed at {changed:x?}");
    }

    /// The standard handshake with `features` (None: all offered).
    pub fn handshake(&mut self, mask: Option<u64>) {
        let w = AccessSize::Word;
        self.mmio_write(offset::STATUS, w, 0);
        self.mmio_write(offset::STATUS, w, u64::from(STATUS_ACK));
        self.mmio_write(offset::STATUS, w, u64::from(STATUS_ACK | STATUS_DRIVER));
        let mut offered = 0u64;
        for sel in 0..2u64 {
            self.mmio_write(offset::DEVICE_FEATURES_SEL, w, sel);
            offered |= self.mmio_read(offset::DEVICE_FEATURES, w) << (32 * sel);
        }
        assert_ne!(offered & feature::VERSION_1, 0, "VERSION_1 offered");
        let accepted = offered & !mask.unwrap_or(0);
        for sel in 0..2u64 {
            self.mmio_write(offset::DRIVER_FEATURES_SEL, w, sel);
            self.mmio_write(offset::DRIVER_FEATURES, w, accepted >> (32 * sel));
        }
        let fok = STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK;
        self.mmio_write(offset::STATUS, w, u64::from(fok));
    }

    /// Sets up queue `queue` at `layout` with QueueNum `size`.
    pub fn setup_queue(&mut self, queue: u8, size: u16, layout: Layout) {
        let w = AccessSize::Word;
        let area = RAM_BASE + u64::from(queue % 2) * QUEUE_STRIDE;
        let (desc, avail, used) = match layout {
            Layout::Standard => (area, area + 0x1000, area + 0x1400),
            Layout::Shifted { desc, avail, used } => (
                area + u64::from(desc) % QUEUE_STRIDE,
                area + u64::from(avail) % QUEUE_STRIDE,
                area + u64::from(used) % QUEUE_STRIDE,
            ),
            Layout::Raw { desc, avail, used } => (desc, avail, used),
        };
        self.mmio_write(offset::QUEUE_SEL, w, u64::from(queue));
        self.mmio_write(offset::QUEUE_NUM, w, u64::from(size));
        for (low, addr) in [
            (offset::QUEUE_DESC_LOW, desc),
            (offset::QUEUE_DRIVER_LOW, avail),
            (offset::QUEUE_DEVICE_LOW, used),
        ] {
            self.mmio_write(low, w, addr & 0xffff_ffff);
            self.mmio_write(low + 4, w, addr >> 32);
        }
        // The driver starts from clean rings.
        let q = self
            .queues
            .get(usize::from(queue))
            .copied()
            .unwrap_or_default();
        if q.size > 0 && desc >= RAM_BASE && desc.saturating_add(q.desc_bytes()) <= RAM_END {
            self.store(desc, &vec![0u8; q.desc_bytes() as usize]);
        }
        if q.size > 0 && avail >= RAM_BASE && avail.saturating_add(q.avail_bytes()) <= RAM_END {
            self.store(avail, &vec![0u8; q.avail_bytes() as usize]);
        }
        self.mmio_write(offset::QUEUE_READY, w, 1);
    }

    /// Status |= DRIVER_OK.
    pub fn driver_ok(&mut self) {
        let status = self.read_reg(offset::STATUS, AccessSize::Word);
        self.mmio_write(
            offset::STATUS,
            AccessSize::Word,
            status | u64::from(STATUS_DRIVER_OK),
        );
    }

    /// A ready queue's model, if `queue` is ready.
    fn ready_queue(&self, queue: u8) -> Option<QueueModel> {
        self.queues
            .get(usize::from(queue))
            .copied()
            .filter(|q| q.ready && q.size > 0)
    }

    /// Writes descriptor `index` of `queue`.
    pub fn write_desc(&mut self, queue: u8, index: u16, d: (u64, u32, u16, u16)) {
        let Some(q) = self.ready_queue(queue) else {
            return;
        };
        let mut bytes = [0u8; 16];
        bytes[0..8].copy_from_slice(&d.0.to_le_bytes());
        bytes[8..12].copy_from_slice(&d.1.to_le_bytes());
        bytes[12..14].copy_from_slice(&d.2.to_le_bytes());
        bytes[14..16].copy_from_slice(&d.3.to_le_bytes());
        self.store(q.desc + 16 * u64::from(index % q.size), &bytes);
    }

    /// Offers a chain of `bufs` on `queue`; `prefix` goes into the first
    /// buffer. Returns the head, if the queue is ready.
    pub fn offer(
        &mut self,
        queue: u8,
        bufs: &[(u64, u32, bool)],
        prefix: &[u8],
        publish: bool,
    ) -> Option<u16> {
        let q = self.ready_queue(queue)?;
        let n = bufs.len().min(usize::from(q.size)) as u16;
        if n == 0 {
            return None;
        }
        let head = q.next_desc % q.size;
        for (i, &(addr, len, write)) in bufs.iter().take(usize::from(n)).enumerate() {
            let index = (head + i as u16) % q.size;
            let last = i as u16 + 1 == n;
            let flags = if write { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT };
            self.write_desc(queue, index, (addr, len, flags, (index + 1) % q.size));
        }
        if let Some(&(addr, len, _)) = bufs.first() {
            let n = prefix.len().min(len as usize);
            self.store(addr, &prefix[..n]);
        }
        let m = &mut self.queues[usize::from(queue)];
        m.next_desc = (head + n) % q.size;
        let slot = u64::from(m.drv_avail % q.size);
        m.drv_avail = m.drv_avail.wrapping_add(1);
        let drv_avail = m.drv_avail;
        self.store(q.avail + 4 + 2 * slot, &head.to_le_bytes());
        if publish {
            self.store(q.avail + 2, &drv_avail.to_le_bytes());
        }
        Some(head)
    }

    /// Notifies `queue`.
    pub fn notify(&mut self, queue: u8) {
        self.mmio_write(offset::QUEUE_NOTIFY, AccessSize::Word, u64::from(queue));
    }

    /// Performs one generic op.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Handshake { mask } => self.handshake(*mask),
            Op::SetupQueue {
                queue,
                size,
                layout,
            } => self.setup_queue(*queue, *size, *layout),
            Op::DriverOk => self.driver_ok(),
            Op::Reset => self.mmio_write(offset::STATUS, AccessSize::Word, 0),
            Op::Status(s) => self.mmio_write(offset::STATUS, AccessSize::Word, u64::from(*s)),
            Op::Reg {
                offset,
                width,
                value,
                write,
            } => {
                let size = width.size();
                let off = u64::from(*offset) % 0x200;
                // Accesses are inside the region (the device manager checks).
                if off + u64::from(size.bytes()) > 0x200 {
                    return;
                }
                if *write {
                    self.mmio_write(off, size, value & size.mask());
                } else {
                    self.mmio_read(off, size);
                }
            }
            Op::Request {
                queue,
                bufs,
                prefix,
                publish,
            } => {
                let bufs: Vec<_> = bufs
                    .iter()
                    .map(|b| (b.addr.resolve(), u32::from(b.len), b.write))
                    .collect();
                self.offer(*queue, &bufs, prefix, *publish);
            }
            Op::Desc {
                queue,
                index,
                addr,
                len,
                flags,
                next,
            } => self.write_desc(*queue, *index, (addr.resolve(), *len, *flags, *next)),
            Op::AvailSlot { queue, slot, head } => {
                if let Some(q) = self.ready_queue(*queue) {
                    let slot = u64::from(slot % q.size);
                    self.store(q.avail + 4 + 2 * slot, &head.to_le_bytes());
                }
            }
            Op::AvailIdx { queue, delta } => {
                if let Some(q) = self.ready_queue(*queue) {
                    let idx = self.shadow.u16_at(q.avail + 2).wrapping_add(*delta);
                    self.store(q.avail + 2, &idx.to_le_bytes());
                }
            }
            Op::AvailFlags { queue, flags } => {
                if let Some(q) = self.ready_queue(*queue) {
                    self.store(q.avail, &flags.to_le_bytes());
                }
            }
            Op::Notify { queue } => self.notify(*queue),
            Op::Poke { offset, bytes } => {
                let gpa = DATA_BASE + u64::from(*offset) % DATA_SIZE;
                let n = bytes.len().min((RAM_END - gpa) as usize);
                self.store(gpa, &bytes[..n]);
            }
            Op::Ack(bits) => {
                self.mmio_write(offset::INTERRUPT_ACK, AccessSize::Word, u64::from(*bits))
            }
        }
    }

    /// Brings the device Live with every queue at its standard layout and
    /// QueueNum `size`.
    pub fn bring_up(&mut self, size: u16) {
        self.handshake(None);
        for q in 0..D::QUEUE_COUNT.min(2) {
            self.setup_queue(q as u8, size, Layout::Standard);
        }
        self.driver_ok();
    }
}

fn set_low(addr: &mut u64, value: u32) {
    *addr = (*addr & !0xffff_ffff) | u64::from(value);
}

fn set_high(addr: &mut u64, value: u32) {
    *addr = (*addr & 0xffff_ffff) | (u64::from(value) << 32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio_blk::with_disk;
    use hypervisor::virtio::blk::VirtioBlk;

    /// A live virtio-blk guest with one request offered on queue 0.
    fn live_with_request(f: impl FnOnce(&mut Guest<VirtioBlk>, u16)) {
        with_disk(|blk| {
            let mut g = Guest::new(blk, 0);
            g.bring_up(8);
            assert!(g.is_live());
            let head = g
                .offer(
                    0,
                    &[(DATA_BASE, 16, false), (DATA_BASE + 0x100, 1, true)],
                    &[8, 0, 0, 0, 0, 0, 0, 0],
                    true,
                )
                .expect("queue 0 ready");
            f(&mut g, head);
        });
    }

    #[test]
    fn a_real_completion_passes() {
        live_with_request(|g, head| {
            g.notify(0);
            let done = g.take_completions();
            assert_eq!(done.len(), 1);
            assert_eq!((done[0].head, done[0].len), (head, 1));
        });
    }

    #[test]
    #[should_panic(expected = "outside the used rings")]
    fn a_write_into_a_readable_buffer_is_caught() {
        live_with_request(|g, _| {
            g.step(|_, ctx| ctx.mem.write(DATA_BASE + 4, &[0xee]).expect("in RAM"));
        });
    }

    #[test]
    #[should_panic(expected = "out of avail order")]
    fn a_used_id_out_of_order_is_caught() {
        live_with_request(|g, head| {
            let used = RAM_BASE + 0x1400;
            g.step(|_, ctx| {
                ctx.mem
                    .write(used + 4, &u32::from(head + 1).to_le_bytes())
                    .expect("in RAM");
                ctx.mem
                    .write(used + 2, &1u16.to_le_bytes())
                    .expect("in RAM");
            });
        });
    }

    #[test]
    #[should_panic(expected = "writable bytes")]
    fn a_used_length_beyond_the_buffers_is_caught() {
        live_with_request(|g, head| {
            let used = RAM_BASE + 0x1400;
            g.step(|_, ctx| {
                ctx.mem
                    .write(used + 4, &u32::from(head).to_le_bytes())
                    .expect("in RAM");
                ctx.mem
                    .write(used + 8, &2u32.to_le_bytes())
                    .expect("in RAM");
                ctx.mem
                    .write(used + 2, &1u16.to_le_bytes())
                    .expect("in RAM");
            });
        });
    }
}
