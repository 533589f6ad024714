//! The device lifecycle (virtio 1.2, 2.1 and 3.1) as a typestate.
//!
//! ```text
//!            ACKNOWLEDGE, DRIVER        FEATURES_OK              DRIVER_OK
//!  reset ──► Negotiating ──────────────► Negotiated ─────────────► Live
//!    ▲        (driver features           (features fixed,          (validated
//!    │         being written)             queues being set up)      queues run)
//!    │                      │                     │                    │
//!    │                      └──────── FAILED ─────┴────────────────────┴──► Failed
//!    └──────────────── Status = 0 from any state ─────────────────────────────┘
//! ```
//!
//! Each state is its own type and each transition consumes the old state:
//! [`Negotiating::accept_features`] is the only way to get a
//! [`Negotiated`], and [`Negotiated::go_live`] the only way to get a
//! [`Live`]. The queues a backend can process, [`LiveQueues`], can only be
//! borrowed from a `Live`, so "a device processes queues only after
//! DRIVER_OK, with the negotiated features" holds by construction, not by
//! a check someone might forget. A reset replaces whatever state there was
//! with a fresh `Negotiating`: the queues are dropped, not cleared field by
//! field.
//!
//! The driver moves the status one bit at a time along the path above
//! (Linux's `virtio_add_status` does exactly that); [`classify_status_write`]
//! is the pure rule that decides whether a written value is a legal step.

use hal::virtio_mmio::{DeviceStatus, feature};

use super::MAX_QUEUES;
use super::chain::{LiveQueue, QueueRole};
use super::error::{FeatureError, QueueError, TransitionError, TransitionRefusal};
use super::queue::{QueueConfig, QueueLayout, Virtqueue};
use super::stats::QueueStats;
use crate::guest_memory::GuestMemory;

/// The feature bits both sides agreed on at FEATURES_OK.
///
/// Only negotiation creates one, so holding a `Features` means "these were
/// offered by the device and accepted by the driver".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features(u64);

impl Features {
    /// The raw 64-bit feature mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// True if every bit of `mask` was negotiated.
    pub const fn contains(self, mask: u64) -> bool {
        self.0 & mask == mask
    }
}

/// What a legal status write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusStep {
    /// 0 was written: reset the device.
    Reset,
    /// The current value was written again: nothing changes.
    Unchanged,
    /// ACKNOWLEDGE added to an empty status.
    Acknowledge,
    /// DRIVER added after ACKNOWLEDGE.
    Driver,
    /// FEATURES_OK added after DRIVER: the device now checks the features.
    FeaturesOk,
    /// DRIVER_OK added after FEATURES_OK: the device goes live.
    DriverOk,
    /// FAILED added: the driver gave up.
    Failed,
}

/// Decides what writing `written` to the Status register does when the
/// register currently reads `current` (including DEVICE_NEEDS_RESET, which
/// the driver may echo back but never sets itself).
pub fn classify_status_write(
    current: DeviceStatus,
    written: u32,
) -> Result<StatusStep, TransitionError> {
    let refuse = |reason| TransitionError {
        from: current,
        written,
        reason,
    };
    if written == 0 {
        return Ok(StatusStep::Reset);
    }
    let Some(value) = DeviceStatus::from_bits(written) else {
        return Err(refuse(TransitionRefusal::UndefinedBits));
    };
    let have = current - DeviceStatus::DEVICE_NEEDS_RESET;
    let want = value - DeviceStatus::DEVICE_NEEDS_RESET;
    if want == have {
        return Ok(StatusStep::Unchanged);
    }
    if !want.contains(have) {
        return Err(refuse(TransitionRefusal::ClearsBits));
    }
    if have.contains(DeviceStatus::FAILED) {
        return Err(refuse(TransitionRefusal::AfterFailed));
    }
    let added = want - have;
    if added.bits().count_ones() != 1 {
        return Err(refuse(TransitionRefusal::SeveralBits));
    }
    use DeviceStatus as S;
    let step = match added {
        S::FAILED => StatusStep::Failed,
        S::ACKNOWLEDGE if have.is_empty() => StatusStep::Acknowledge,
        S::DRIVER if have == S::ACKNOWLEDGE => StatusStep::Driver,
        S::FEATURES_OK if have == S::ACKNOWLEDGE | S::DRIVER => StatusStep::FeaturesOk,
        S::DRIVER_OK if have == S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK => {
            if current.contains(S::DEVICE_NEEDS_RESET) {
                return Err(refuse(TransitionRefusal::NeedsReset));
            }
            StatusStep::DriverOk
        }
        _ => return Err(refuse(TransitionRefusal::OutOfOrder)),
    };
    Ok(step)
}

/// Before FEATURES_OK: the driver acknowledges the device, reads the
/// device features and writes the ones it accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiating {
    status: DeviceStatus,
    driver_features: u64,
    /// The driver set bits in a feature word above 1 (bits 64 and up),
    /// which no device offers.
    stray_bits: bool,
}

impl Negotiating {
    /// The state right after a reset: status 0, no features accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Driver-owned status bits so far (a subset of ACKNOWLEDGE | DRIVER).
    pub fn status(&self) -> DeviceStatus {
        self.status
    }

    /// The features the driver has accepted so far.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub(crate) fn add_status(&mut self, bit: DeviceStatus) {
        self.status |= bit;
    }

    /// True while the driver may write `DriverFeatures` (after DRIVER).
    pub fn accepts_driver_features(&self) -> bool {
        self.status.contains(DeviceStatus::DRIVER)
    }

    /// Stores one 32-bit word of driver features (`select` is the value of
    /// `DriverFeaturesSel`).
    pub fn write_driver_features(&mut self, select: u32, value: u32) {
        match select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32);
            }
            _ => self.stray_bits |= value != 0,
        }
    }

    /// FEATURES_OK: checks the accepted features against `offered`. On
    /// success the features are fixed for the rest of this device
    /// generation; on failure the state comes back unchanged.
    pub fn accept_features(self, offered: u64) -> Result<Negotiated, (Negotiating, FeatureError)> {
        let not_offered = self.driver_features & !offered;
        if not_offered != 0 || self.stray_bits {
            let bits = if not_offered != 0 {
                not_offered
            } else {
                1 << 63
            };
            return Err((self, FeatureError::NotOffered { bits }));
        }
        if self.driver_features & feature::VERSION_1 == 0 {
            return Err((self, FeatureError::Version1Missing));
        }
        Ok(Negotiated {
            features: Features(self.driver_features),
            queues: [QueueSetup::default(); MAX_QUEUES],
        })
    }
}

/// One queue's registers while the driver configures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueSetup {
    /// What the driver wrote (size, addresses).
    pub config: QueueConfig,
    ready: Option<QueueLayout>,
}

impl QueueSetup {
    /// The validated layout, once the driver set QueueReady and the
    /// configuration passed validation.
    pub fn ready(&self) -> Option<&QueueLayout> {
        self.ready.as_ref()
    }

    /// QueueReady=1: validates the configuration; on success the queue is
    /// ready and its registers are frozen.
    pub fn make_ready(&mut self, max_size: u16, mem: &GuestMemory) -> Result<(), QueueError> {
        self.ready = Some(QueueLayout::validate(&self.config, max_size, mem)?);
        Ok(())
    }

    /// QueueReady=0: the driver takes the queue back to reconfigure it.
    pub fn unready(&mut self) {
        self.ready = None;
    }
}

/// After FEATURES_OK: features fixed, the driver sets up the queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    features: Features,
    queues: [QueueSetup; MAX_QUEUES],
}

impl Negotiated {
    /// The negotiated features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Sets every queue's initial size (the device's `QueueNumMax`, as the
    /// register reads before the driver writes `QueueNum`).
    pub(crate) fn with_default_sizes(mut self, max: impl Fn(u16) -> u16) -> Self {
        for (index, setup) in (0u16..).zip(self.queues.iter_mut()) {
            setup.config.size = max(index);
        }
        self
    }

    /// The setup of queue `index`, if the device has that many queues.
    pub fn queue(&self, index: u32) -> Option<&QueueSetup> {
        self.queues.get(usize::try_from(index).ok()?)
    }

    /// Mutable setup of queue `index`.
    pub fn queue_mut(&mut self, index: u32) -> Option<&mut QueueSetup> {
        self.queues.get_mut(usize::try_from(index).ok()?)
    }

    /// DRIVER_OK: every ready queue (already validated) becomes a live
    /// queue starting at ring position 0; queues the driver did not enable
    /// stay absent.
    pub fn go_live(self) -> Live {
        let event_idx = self.features.contains(feature::EVENT_IDX);
        let queues = core::array::from_fn(|i| {
            let layout = *self.queues.get(i)?.ready()?;
            Some(Virtqueue::new(u16::try_from(i).ok()?, layout, event_idx))
        });
        Live {
            features: self.features,
            queues,
        }
    }
}

/// After DRIVER_OK: the device processes its queues.
#[derive(Debug)]
pub struct Live {
    features: Features,
    queues: [Option<Virtqueue>; MAX_QUEUES],
}

impl Live {
    /// The negotiated features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// True if the driver enabled queue `index`.
    pub fn has_queue(&self, index: u16) -> bool {
        self.queues
            .get(usize::from(index))
            .is_some_and(Option::is_some)
    }

    pub(crate) fn queues_mut(&mut self) -> impl Iterator<Item = &mut Virtqueue> {
        self.queues.iter_mut().flatten()
    }

    pub(crate) fn queue_ref(&self, index: u16) -> Option<&Virtqueue> {
        self.queues.get(usize::from(index))?.as_ref()
    }

    /// Lends the queues to a backend for one batch of work.
    pub(crate) fn lend<'a>(
        &'a mut self,
        stats: &'a mut [QueueStats; MAX_QUEUES],
        mem: &'a GuestMemory,
        config_changed: &'a mut bool,
    ) -> LiveQueues<'a> {
        LiveQueues {
            features: self.features,
            queues: &mut self.queues,
            stats,
            mem,
            config_changed,
        }
    }
}

/// After FAILED: nothing runs until the driver resets the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed {
    status: DeviceStatus,
}

impl Failed {
    /// The status the driver had reached, plus FAILED.
    pub fn status(&self) -> DeviceStatus {
        self.status
    }
}

/// Where a device is in its lifecycle.
#[derive(Debug)]
pub enum DeviceState {
    /// Before FEATURES_OK.
    Negotiating(Negotiating),
    /// FEATURES_OK, before DRIVER_OK.
    Negotiated(Negotiated),
    /// DRIVER_OK: queues are processed.
    Live(Live),
    /// FAILED: waiting for a reset.
    Failed(Failed),
}

impl Default for DeviceState {
    fn default() -> Self {
        DeviceState::Negotiating(Negotiating::new())
    }
}

impl DeviceState {
    /// The driver-owned status bits this state stands for.
    pub fn status(&self) -> DeviceStatus {
        use DeviceStatus as S;
        match self {
            DeviceState::Negotiating(n) => n.status(),
            DeviceState::Negotiated(_) => S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK,
            DeviceState::Live(_) => S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK,
            DeviceState::Failed(f) => f.status(),
        }
    }

    /// FAILED: keeps the status bits, drops everything else.
    pub(crate) fn fail(&mut self) {
        let status = self.status() | DeviceStatus::FAILED;
        *self = DeviceState::Failed(Failed { status });
    }
}

/// The live queues of a device, lent to its backend for one batch of work
/// (one `QueueNotify`, or one call of
/// [`VirtioMmioTransport::with_live`](super::VirtioMmioTransport::with_live)).
///
/// When the batch ends, the transport decides about interrupts for every
/// queue the backend completed chains on; backends never raise them.
pub struct LiveQueues<'a> {
    features: Features,
    queues: &'a mut [Option<Virtqueue>; MAX_QUEUES],
    stats: &'a mut [QueueStats; MAX_QUEUES],
    mem: &'a GuestMemory,
    config_changed: &'a mut bool,
}

impl LiveQueues<'_> {
    /// The negotiated features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Queue `index` in role `R` (which decides the typestate its chains
    /// start in), if the device has it and the driver enabled it.
    pub fn queue<R: QueueRole>(&mut self, index: u16) -> Option<LiveQueue<'_, R>> {
        let i = usize::from(index);
        let vq = self.queues.get_mut(i)?.as_mut()?;
        let stats = self.stats.get_mut(i)?;
        Some(LiveQueue::new(vq, stats, self.mem))
    }

    /// True if queue `index` exists and has a chain available.
    pub fn has_available(&self, index: u16) -> bool {
        self.queues
            .get(usize::from(index))
            .and_then(Option::as_ref)
            .is_some_and(|vq| vq.has_available(self.mem))
    }

    /// Tells the driver that the device configuration changed (e.g. a
    /// link went up): when the batch ends the transport bumps
    /// `ConfigGeneration` and sends a configuration-change interrupt.
    pub fn notify_config_change(&mut self) {
        *self.config_changed = true;
    }
}

impl core::fmt::Debug for LiveQueues<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LiveQueues")
            .field("features", &self.features)
            .field("queues", &self.queues)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceStatus as S;

    fn step(current: DeviceStatus, written: DeviceStatus) -> Result<StatusStep, TransitionRefusal> {
        classify_status_write(current, written.bits()).map_err(|e| e.reason)
    }

    #[test]
    fn the_spec_path() {
        let ack = S::ACKNOWLEDGE;
        let drv = ack | S::DRIVER;
        let fok = drv | S::FEATURES_OK;
        let ok = fok | S::DRIVER_OK;
        assert_eq!(step(S::empty(), ack), Ok(StatusStep::Acknowledge));
        assert_eq!(step(ack, drv), Ok(StatusStep::Driver));
        assert_eq!(step(drv, fok), Ok(StatusStep::FeaturesOk));
        assert_eq!(step(fok, ok), Ok(StatusStep::DriverOk));
        assert_eq!(step(ok, ok), Ok(StatusStep::Unchanged));
        assert_eq!(step(ok, ok | S::FAILED), Ok(StatusStep::Failed));
        assert_eq!(step(ok, S::empty()), Ok(StatusStep::Reset));
    }

    #[test]
    fn every_illegal_step() {
        let ack = S::ACKNOWLEDGE;
        let drv = ack | S::DRIVER;
        let fok = drv | S::FEATURES_OK;
        // Skipping a step.
        assert_eq!(
            step(S::empty(), S::DRIVER),
            Err(TransitionRefusal::OutOfOrder)
        );
        assert_eq!(
            step(ack, ack | S::FEATURES_OK),
            Err(TransitionRefusal::OutOfOrder)
        );
        assert_eq!(
            step(drv, drv | S::DRIVER_OK),
            Err(TransitionRefusal::OutOfOrder)
        );
        // Several bits at once.
        assert_eq!(step(S::empty(), drv), Err(TransitionRefusal::SeveralBits));
        assert_eq!(
            step(drv, fok | S::DRIVER_OK),
            Err(TransitionRefusal::SeveralBits)
        );
        // Clearing bits.
        assert_eq!(step(drv, ack), Err(TransitionRefusal::ClearsBits));
        assert_eq!(
            step(fok, drv | S::DRIVER_OK),
            Err(TransitionRefusal::ClearsBits)
        );
        // Undefined bits.
        assert_eq!(
            classify_status_write(ack, ack.bits() | 16).map_err(|e| e.reason),
            Err(TransitionRefusal::UndefinedBits)
        );
        assert_eq!(
            classify_status_write(ack, 0x100).map_err(|e| e.reason),
            Err(TransitionRefusal::UndefinedBits)
        );
        // After FAILED only reset.
        let failed = drv | S::FAILED;
        assert_eq!(
            step(failed, failed | S::FEATURES_OK),
            Err(TransitionRefusal::AfterFailed)
        );
        assert_eq!(step(failed, failed), Ok(StatusStep::Unchanged));
        assert_eq!(step(failed, S::empty()), Ok(StatusStep::Reset));
        // DRIVER_OK while the device needs a reset.
        let nr = fok | S::DEVICE_NEEDS_RESET;
        assert_eq!(
            step(nr, nr | S::DRIVER_OK),
            Err(TransitionRefusal::NeedsReset)
        );
    }

    #[test]
    fn needs_reset_bit_may_be_echoed() {
        let ok = S::ACKNOWLEDGE | S::DRIVER | S::FEATURES_OK | S::DRIVER_OK;
        let cur = ok | S::DEVICE_NEEDS_RESET;
        assert_eq!(step(cur, cur), Ok(StatusStep::Unchanged));
        assert_eq!(step(cur, cur | S::FAILED), Ok(StatusStep::Failed));
        // The driver writing NEEDS_RESET itself changes nothing.
        assert_eq!(step(ok, cur), Ok(StatusStep::Unchanged));
    }

    #[test]
    fn feature_negotiation() {
        let offered = feature::VERSION_1 | 0b110;
        let mut n = Negotiating::new();
        n.write_driver_features(0, 0b010);
        n.write_driver_features(1, 1);
        let neg = n.accept_features(offered).unwrap();
        assert_eq!(neg.features().bits(), feature::VERSION_1 | 0b010);
        assert!(neg.features().contains(feature::VERSION_1));

        let mut n = Negotiating::new();
        n.write_driver_features(0, 0b1010);
        n.write_driver_features(1, 1);
        let (_, e) = n.accept_features(offered).unwrap_err();
        assert_eq!(e, FeatureError::NotOffered { bits: 0b1000 });

        let mut n = Negotiating::new();
        n.write_driver_features(0, 0b10);
        let (_, e) = n.accept_features(offered).unwrap_err();
        assert_eq!(e, FeatureError::Version1Missing);

        let mut n = Negotiating::new();
        n.write_driver_features(1, 1);
        n.write_driver_features(2, 1);
        assert!(matches!(
            n.accept_features(offered),
            Err((_, FeatureError::NotOffered { .. }))
        ));
    }
}
