//! The virtio-mmio version 2 transport: the register file a guest driver
//! talks to, in front of any [`VirtioDevice`] backend.
//!
//! The transport owns everything device-independent: identification,
//! feature negotiation, the status state machine (see
//! [`lifecycle`](super::lifecycle)), queue configuration and validation,
//! interrupt status, and the decision to interrupt after a batch of work.
//! The backend only sees its configuration space and, while Live, its
//! queues.
//!
//! Access rules (spec 4.2.2.2):
//! - control registers (offsets below 0x100) accept aligned 32-bit
//!   accesses only; anything else is refused and counted;
//! - the configuration space (0x100 and up) accepts naturally aligned
//!   1-, 2- and 4-byte accesses (Linux reads a 64-bit field as two 32-bit
//!   reads);
//! - a read of a write-only register, a write to a read-only one, or an
//!   offset with no register is refused and counted; refused reads return 0.

use hal::virtio_mmio::{self as regs, DeviceStatus, InterruptStatus, REGION_SIZE, feature, offset};

use super::lifecycle::{
    DeviceState, LiveQueues, Negotiated, QueueSetup, StatusStep, classify_status_write,
};
use super::queue::{NotifyDecision, check_queue_size};
use super::ring;
use super::stats::{DeviceStats, RegisterStats, bump};
use super::{MAX_QUEUES, VirtioDevice};
use crate::guest_memory::GuestMemory;
use crate::mmio::{AccessSize, DeviceContext, MmioDevice, MmioRegion};

/// Most batches one `QueueNotify` runs (see [`VirtioMmioTransport::notify`]
/// and [`queue`](super::queue)'s event-index notes).
const NOTIFY_ROUNDS: usize = 4;

/// Why a register access was refused (mapped onto [`RegisterStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Width,
    Offset,
    Direction,
    State,
    Value,
}

/// Which address register pair a write goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddressField {
    Desc,
    Driver,
    Device,
}

/// A virtio-mmio device: transport registers in front of backend `D`.
///
/// Constructed with the frame base and INTID of a slot
/// (`platform::virtio_slot(n)`) and the backend; implements
/// [`MmioDevice`] for guest accesses and offers [`with_live`] and
/// [`has_available`] for work initiated by the run loop (virtio-net RX).
///
/// [`with_live`]: VirtioMmioTransport::with_live
/// [`has_available`]: VirtioMmioTransport::has_available
#[derive(Debug)]
pub struct VirtioMmioTransport<D: VirtioDevice> {
    region: MmioRegion,
    intid: u32,
    backend: D,
    state: DeviceState,
    needs_reset: bool,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    interrupt_status: InterruptStatus,
    config_generation: u32,
    stats: DeviceStats,
}

impl<D: VirtioDevice> VirtioMmioTransport<D> {
    /// A device at guest-physical `base` that interrupts on `intid`, in the
    /// reset state.
    pub fn new(base: u64, intid: u32, backend: D) -> Self {
        const {
            assert!(
                D::QUEUE_COUNT as usize <= MAX_QUEUES,
                "backend declares more queues than MAX_QUEUES"
            );
        }
        VirtioMmioTransport {
            region: MmioRegion::new(base, REGION_SIZE),
            intid,
            backend,
            state: DeviceState::default(),
            needs_reset: false,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            interrupt_status: InterruptStatus::empty(),
            config_generation: 0,
            stats: DeviceStats::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &D {
        &self.backend
    }

    /// The backend, mutably (for configuration outside the lifecycle, e.g.
    /// before the guest boots).
    pub fn backend_mut(&mut self) -> &mut D {
        &mut self.backend
    }

    /// The INTID this device raises.
    pub fn intid(&self) -> u32 {
        self.intid
    }

    /// The counters.
    pub fn stats(&self) -> &DeviceStats {
        &self.stats
    }

    /// The lifecycle state.
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// True after DRIVER_OK (and before a reset or FAILED).
    pub fn is_live(&self) -> bool {
        matches!(self.state, DeviceState::Live(_))
    }

    /// The Status register as the driver reads it.
    pub fn status(&self) -> DeviceStatus {
        let mut status = self.state.status();
        status.set(DeviceStatus::DEVICE_NEEDS_RESET, self.needs_reset);
        status
    }

    /// The InterruptStatus register (events not yet acknowledged).
    pub fn interrupt_status(&self) -> InterruptStatus {
        self.interrupt_status
    }

    /// The features the device offers: the backend's device-specific bits
    /// plus the transport's own, VERSION_1 and EVENT_IDX (implemented by
    /// the queues for every backend, see [`queue`](super::queue)). Other
    /// transport feature bits a backend might set (indirect descriptors,
    /// packed rings, ...) are masked out: this transport implements none
    /// of them.
    pub fn offered_features(&self) -> u64 {
        (self.backend.device_features() & !feature::TRANSPORT_RESERVED)
            | feature::VERSION_1
            | feature::EVENT_IDX
    }

    /// `QueueNumMax` of queue `index`: the backend's maximum, clamped to
    /// the largest power of two the split format allows; 0 if the device
    /// has no such queue.
    pub fn queue_max_size(&self, index: u32) -> u16 {
        match u16::try_from(index) {
            Ok(q) if q < D::QUEUE_COUNT => {
                let max = self.backend.queue_max_size(q).min(ring::MAX_QUEUE_SIZE);
                // Round down to a power of two so that the maximum itself is
                // always a valid size.
                if max == 0 {
                    0
                } else {
                    1 << (15 - max.leading_zeros())
                }
            }
            _ => 0,
        }
    }

    /// Cheap check for the run loop: is queue `queue` live with a chain
    /// available? (One acquire load of `avail.idx`.)
    pub fn has_available(&self, queue: u16, mem: &GuestMemory) -> bool {
        match &self.state {
            DeviceState::Live(live) => live
                .queue_ref(queue)
                .is_some_and(|vq| vq.has_available(mem)),
            _ => false,
        }
    }

    /// Runs `f` with the backend and its live queues, if the device is Live;
    /// returns `None` (without calling `f`) otherwise.
    ///
    /// This is how the run loop acts on a device outside an MMIO access
    /// (e.g. delivering a received frame). When `f` returns, the transport
    /// does what it does after every `QueueNotify`: sends one used-buffer
    /// interrupt if any queue completed chains and the driver did not
    /// suppress it, and reports queue faults (DEVICE_NEEDS_RESET plus a
    /// configuration-change interrupt).
    pub fn with_live<R>(
        &mut self,
        ctx: &mut DeviceContext<'_>,
        f: impl FnOnce(&mut D, &mut LiveQueues<'_>) -> R,
    ) -> Option<R> {
        self.live_batch(ctx, f).map(|(result, _)| result)
    }

    /// One batch: `f` on the live queues, then [`Self::end_batch`].
    fn live_batch<R>(
        &mut self,
        ctx: &mut DeviceContext<'_>,
        f: impl FnOnce(&mut D, &mut LiveQueues<'_>) -> R,
    ) -> Option<(R, u32)> {
        let DeviceState::Live(live) = &mut self.state else {
            return None;
        };
        let mut config_changed = false;
        let result = {
            let mut queues = live.lend(&mut self.stats.queues, ctx.mem, &mut config_changed);
            f(&mut self.backend, &mut queues)
        };
        let again = self.end_batch(ctx, config_changed);
        Some((result, again))
    }

    /// After a batch of live work: interrupts, `avail_event` (with
    /// `EVENT_IDX`) and fault reporting. Returns the queues (bit `i` for
    /// queue `i`) that still hold chains the backend would have taken but
    /// that will get no notification of their own: with `EVENT_IDX` the
    /// driver does not notify for chains it published before the device
    /// wrote `avail_event`.
    fn end_batch(&mut self, ctx: &mut DeviceContext<'_>, config_changed: bool) -> u32 {
        let DeviceState::Live(live) = &mut self.state else {
            return 0;
        };
        let mut used = false;
        let mut fault = false;
        let mut again = 0u32;
        for vq in live.queues_mut() {
            let index = usize::from(vq.index());
            let Some(stats) = self.stats.queues.get_mut(index) else {
                continue;
            };
            match vq.take_notify_decision(ctx.mem) {
                NotifyDecision::Interrupt => {
                    bump(&mut stats.interrupts_sent);
                    used = true;
                }
                NotifyDecision::Suppressed => bump(&mut stats.interrupts_suppressed),
                NotifyDecision::Nothing => {}
            }
            let unnotified = vq.publish_avail_event(ctx.mem);
            fault |= vq.take_new_fault().is_some();
            vq.refill_budget();
            if unnotified != 0 && vq.last_batch_wanted_more() {
                again |= 1 << (vq.index() % 32);
            }
        }
        if fault && !self.needs_reset {
            self.needs_reset = true;
            bump(&mut self.stats.transport.needs_reset);
        }
        if config_changed {
            self.config_generation = self.config_generation.wrapping_add(1);
        }
        let mut raise = false;
        if used {
            self.interrupt_status |= InterruptStatus::USED_BUFFER;
            raise = true;
        }
        if fault || config_changed {
            self.interrupt_status |= InterruptStatus::CONFIG_CHANGE;
            bump(&mut self.stats.transport.config_interrupts);
            raise = true;
        }
        if raise {
            ctx.irq.raise_edge(self.intid);
        }
        again
    }

    fn refuse(&mut self, why: Refusal) {
        let r: &mut RegisterStats = &mut self.stats.transport.registers;
        bump(match why {
            Refusal::Width => &mut r.bad_width,
            Refusal::Offset => &mut r.unknown_offset,
            Refusal::Direction => &mut r.wrong_direction,
            Refusal::State => &mut r.wrong_state,
            Refusal::Value => &mut r.bad_value,
        });
    }

    /// Status = 0: back to the state after power-on, except the counters.
    fn reset(&mut self) {
        self.state = DeviceState::default();
        self.needs_reset = false;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status = InterruptStatus::empty();
        self.backend.reset();
        bump(&mut self.stats.transport.resets);
    }

    fn write_status(&mut self, value: u32) {
        let step = match classify_status_write(self.status(), value) {
            Ok(step) => step,
            Err(e) => {
                bump(&mut self.stats.transport.refused_status_transitions);
                self.stats.transport.last_refused_transition = Some(e);
                return;
            }
        };
        let state = core::mem::take(&mut self.state);
        self.state = match (step, state) {
            (StatusStep::Reset, _) => {
                self.reset();
                return;
            }
            (StatusStep::Acknowledge, DeviceState::Negotiating(mut n)) => {
                n.add_status(DeviceStatus::ACKNOWLEDGE);
                DeviceState::Negotiating(n)
            }
            (StatusStep::Driver, DeviceState::Negotiating(mut n)) => {
                n.add_status(DeviceStatus::DRIVER);
                DeviceState::Negotiating(n)
            }
            (StatusStep::FeaturesOk, DeviceState::Negotiating(n)) => {
                match n.accept_features(self.offered_features()) {
                    Ok(negotiated) => DeviceState::Negotiated(self.with_queue_defaults(negotiated)),
                    Err((n, _)) => {
                        bump(&mut self.stats.transport.features_refused);
                        DeviceState::Negotiating(n)
                    }
                }
            }
            (StatusStep::DriverOk, DeviceState::Negotiated(n)) => {
                let live = n.go_live();
                self.backend.activate(live.features());
                DeviceState::Live(live)
            }
            (StatusStep::Failed, mut state) => {
                state.fail();
                state
            }
            // `Unchanged`, and (unreachable: the status is derived from the
            // state) a step that does not match the state.
            (_, state) => state,
        };
    }

    fn with_queue_defaults(&self, negotiated: Negotiated) -> Negotiated {
        negotiated.with_default_sizes(|q| self.queue_max_size(u32::from(q)))
    }

    /// The selected queue's setup, if queue registers may be written now:
    /// only between FEATURES_OK and DRIVER_OK, only for an existing queue,
    /// only while it is not ready (QueueReady=1 freezes it).
    fn writable_queue_setup(&mut self) -> Result<&mut QueueSetup, Refusal> {
        let queue_sel = self.queue_sel;
        let DeviceState::Negotiated(n) = &mut self.state else {
            return Err(Refusal::State);
        };
        if queue_sel >= u32::from(D::QUEUE_COUNT) {
            return Err(Refusal::Value);
        }
        let setup = n.queue_mut(queue_sel).ok_or(Refusal::Value)?;
        if setup.ready().is_some() {
            return Err(Refusal::State);
        }
        Ok(setup)
    }

    fn write_queue_num(&mut self, value: u32) -> Result<(), Refusal> {
        let max = self.queue_max_size(self.queue_sel);
        let setup = self.writable_queue_setup()?;
        setup.config.size = check_queue_size(value, max).map_err(|_| Refusal::Value)?;
        Ok(())
    }

    fn write_queue_address(
        &mut self,
        field: AddressField,
        high: bool,
        value: u32,
    ) -> Result<(), Refusal> {
        let setup = self.writable_queue_setup()?;
        let address = match field {
            AddressField::Desc => &mut setup.config.desc,
            AddressField::Driver => &mut setup.config.driver,
            AddressField::Device => &mut setup.config.device,
        };
        *address = if high {
            (*address & 0xffff_ffff) | (u64::from(value) << 32)
        } else {
            (*address & !0xffff_ffff) | u64::from(value)
        };
        Ok(())
    }

    fn write_queue_ready(&mut self, value: u32, mem: &GuestMemory) -> Result<(), Refusal> {
        let queue_sel = self.queue_sel;
        let max = self.queue_max_size(queue_sel);
        match (value, &mut self.state) {
            (0, DeviceState::Negotiated(n)) => {
                if let Some(setup) = n.queue_mut(queue_sel) {
                    setup.unready();
                }
                Ok(())
            }
            // Stopping a running queue needs VIRTIO_F_RING_RESET, which is
            // never offered; the driver must reset the device instead.
            (0, DeviceState::Live(live)) => match u16::try_from(queue_sel) {
                Ok(q) if live.has_queue(q) => Err(Refusal::State),
                _ => Ok(()),
            },
            // Nothing is ready in the other states: QueueReady=0 is a no-op
            // (Linux writes it while deleting queues after a reset).
            (0, _) => Ok(()),
            (1, DeviceState::Negotiated(_)) => {
                let setup = self.writable_queue_setup();
                let setup = match setup {
                    Ok(setup) => setup,
                    // Already ready: writing 1 again changes nothing.
                    Err(Refusal::State) => return Ok(()),
                    Err(other) => return Err(other),
                };
                if setup.make_ready(max, mem).is_err() {
                    bump(&mut self.stats.transport.queue_layouts_refused);
                    if !self.needs_reset {
                        self.needs_reset = true;
                        bump(&mut self.stats.transport.needs_reset);
                    }
                }
                Ok(())
            }
            (1, _) => Err(Refusal::State),
            _ => Err(Refusal::Value),
        }
    }

    fn queue_ready(&self) -> bool {
        match &self.state {
            DeviceState::Negotiated(n) => n
                .queue(self.queue_sel)
                .is_some_and(|setup| setup.ready().is_some()),
            DeviceState::Live(live) => {
                u16::try_from(self.queue_sel).is_ok_and(|q| live.has_queue(q))
            }
            _ => false,
        }
    }

    fn write_driver_features(&mut self, value: u32) -> Result<(), Refusal> {
        match &mut self.state {
            DeviceState::Negotiating(n) if n.accepts_driver_features() => {
                n.write_driver_features(self.driver_features_sel, value);
                Ok(())
            }
            _ => Err(Refusal::State),
        }
    }

    fn notify(&mut self, value: u32, ctx: &mut DeviceContext<'_>) -> Result<(), Refusal> {
        let DeviceState::Live(live) = &self.state else {
            return Err(Refusal::State);
        };
        let queue = u16::try_from(value).map_err(|_| Refusal::Value)?;
        if queue >= D::QUEUE_COUNT || !live.has_queue(queue) {
            return Err(Refusal::Value);
        }
        // With EVENT_IDX, chains the driver published while the batch ran
        // (or beyond its budget) come without a notification: run more
        // rounds for them, at most NOTIFY_ROUNDS in all (bounded however
        // fast the driver refills).
        for _ in 0..NOTIFY_ROUNDS {
            let again = self
                .live_batch(ctx, |backend, queues| backend.queue_notify(queue, queues))
                .map_or(0, |(_, again)| again);
            if again & (1 << (queue % 32)) == 0 {
                break;
            }
        }
        Ok(())
    }

    fn read_register(&mut self, off: u64) -> Result<u32, Refusal> {
        let sel = self.device_features_sel;
        Ok(match off {
            offset::MAGIC_VALUE => regs::MAGIC_VALUE,
            offset::VERSION => regs::VERSION,
            offset::DEVICE_ID => D::DEVICE_ID,
            offset::VENDOR_ID => regs::VENDOR_ID,
            offset::DEVICE_FEATURES => match sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            offset::QUEUE_NUM_MAX => u32::from(self.queue_max_size(self.queue_sel)),
            offset::QUEUE_READY => u32::from(self.queue_ready()),
            offset::INTERRUPT_STATUS => self.interrupt_status.bits(),
            offset::STATUS => self.status().bits(),
            // No shared memory regions: length and base read as -1.
            offset::SHM_LEN_LOW
            | offset::SHM_LEN_HIGH
            | offset::SHM_BASE_LOW
            | offset::SHM_BASE_HIGH => u32::MAX,
            // VIRTIO_F_RING_RESET is never offered: no queue is resetting.
            offset::QUEUE_RESET => 0,
            offset::CONFIG_GENERATION => self.config_generation,
            offset::DEVICE_FEATURES_SEL
            | offset::DRIVER_FEATURES
            | offset::DRIVER_FEATURES_SEL
            | offset::QUEUE_SEL
            | offset::QUEUE_NUM
            | offset::QUEUE_NOTIFY
            | offset::INTERRUPT_ACK
            | offset::QUEUE_DESC_LOW
            | offset::QUEUE_DESC_HIGH
            | offset::QUEUE_DRIVER_LOW
            | offset::QUEUE_DRIVER_HIGH
            | offset::QUEUE_DEVICE_LOW
            | offset::QUEUE_DEVICE_HIGH
            | offset::SHM_SEL => return Err(Refusal::Direction),
            _ => return Err(Refusal::Offset),
        })
    }

    fn write_register(
        &mut self,
        off: u64,
        value: u32,
        ctx: &mut DeviceContext<'_>,
    ) -> Result<(), Refusal> {
        match off {
            offset::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            offset::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            offset::DRIVER_FEATURES => self.write_driver_features(value)?,
            offset::QUEUE_SEL => self.queue_sel = value,
            offset::QUEUE_NUM => self.write_queue_num(value)?,
            offset::QUEUE_READY => self.write_queue_ready(value, ctx.mem)?,
            offset::QUEUE_DESC_LOW => self.write_queue_address(AddressField::Desc, false, value)?,
            offset::QUEUE_DESC_HIGH => self.write_queue_address(AddressField::Desc, true, value)?,
            offset::QUEUE_DRIVER_LOW => {
                self.write_queue_address(AddressField::Driver, false, value)?
            }
            offset::QUEUE_DRIVER_HIGH => {
                self.write_queue_address(AddressField::Driver, true, value)?
            }
            offset::QUEUE_DEVICE_LOW => {
                self.write_queue_address(AddressField::Device, false, value)?
            }
            offset::QUEUE_DEVICE_HIGH => {
                self.write_queue_address(AddressField::Device, true, value)?
            }
            offset::QUEUE_NOTIFY => self.notify(value, ctx)?,
            offset::INTERRUPT_ACK => {
                self.interrupt_status -= InterruptStatus::from_bits_truncate(value);
            }
            offset::STATUS => self.write_status(value),
            // No shared memory regions; selecting one is harmless.
            offset::SHM_SEL => {}
            offset::QUEUE_RESET => return Err(Refusal::State),
            offset::MAGIC_VALUE
            | offset::VERSION
            | offset::DEVICE_ID
            | offset::VENDOR_ID
            | offset::DEVICE_FEATURES
            | offset::QUEUE_NUM_MAX
            | offset::INTERRUPT_STATUS
            | offset::SHM_LEN_LOW
            | offset::SHM_LEN_HIGH
            | offset::SHM_BASE_LOW
            | offset::SHM_BASE_HIGH
            | offset::CONFIG_GENERATION => return Err(Refusal::Direction),
            _ => return Err(Refusal::Offset),
        }
        Ok(())
    }

    /// Checks a configuration-space access: 1, 2 or 4 bytes, naturally
    /// aligned. Returns the offset into the config space and the width.
    fn config_access(off: u64, size: AccessSize) -> Result<(u32, usize), Refusal> {
        let width = usize::from(size.bytes());
        if size == AccessSize::Double || off % width as u64 != 0 {
            return Err(Refusal::Width);
        }
        let config_offset = off
            .checked_sub(offset::CONFIG)
            .and_then(|o| u32::try_from(o).ok())
            .ok_or(Refusal::Offset)?;
        Ok((config_offset, width))
    }

    fn read_config(&mut self, off: u64, size: AccessSize) -> Result<u32, Refusal> {
        let (config_offset, width) = Self::config_access(off, size)?;
        let mut bytes = [0u8; 4];
        let data = bytes.get_mut(..width).ok_or(Refusal::Width)?;
        if !self.backend.read_config(config_offset, data) {
            return Err(Refusal::Offset);
        }
        Ok(u32::from_le_bytes(bytes))
    }

    fn write_config(&mut self, off: u64, size: AccessSize, value: u64) -> Result<(), Refusal> {
        let (config_offset, width) = Self::config_access(off, size)?;
        let bytes = (value as u32).to_le_bytes();
        let data = bytes.get(..width).ok_or(Refusal::Width)?;
        if !self.backend.write_config(config_offset, data) {
            return Err(Refusal::Direction);
        }
        Ok(())
    }
}

impl<D: VirtioDevice> MmioDevice for VirtioMmioTransport<D> {
    fn region(&self) -> MmioRegion {
        self.region
    }

    fn read(&mut self, off: u64, size: AccessSize, _ctx: &mut DeviceContext<'_>) -> u64 {
        let result = if off >= offset::CONFIG {
            self.read_config(off, size)
        } else if size != AccessSize::Word || off % 4 != 0 {
            Err(Refusal::Width)
        } else {
            self.read_register(off)
        };
        match result {
            Ok(value) => u64::from(value),
            Err(why) => {
                self.refuse(why);
                0
            }
        }
    }

    fn write(&mut self, off: u64, size: AccessSize, value: u64, ctx: &mut DeviceContext<'_>) {
        let result = if off >= offset::CONFIG {
            self.write_config(off, size, value)
        } else if size != AccessSize::Word || off % 4 != 0 {
            Err(Refusal::Width)
        } else {
            self.write_register(off, value as u32, ctx)
        };
        if let Err(why) = result {
            self.refuse(why);
        }
    }
}
