//! virtio-mmio (version 2) register offsets and constants (virtio 1.2, 4.2.2).
//!
//! Only the *encoding* lives here: where each register is, what its bits
//! mean, which feature bits exist. What the device does with them (the
//! status state machine, queue validation) is policy and lives in the
//! hypervisor crate's `virtio` module.
//!
//! Every control register below [`offset::CONFIG`] is 32 bits wide and is
//! accessed with aligned 32-bit loads and stores only (spec 4.2.2.2); the
//! device-specific configuration space from [`offset::CONFIG`] on is accessed
//! with 8-, 16- or 32-bit aligned accesses matching the field width.

use bitflags::bitflags;

/// `MagicValue`: "virt" in little-endian ASCII.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version` of the non-legacy (virtio 1.x) MMIO transport.
pub const VERSION: u32 = 2;
/// `VendorID` reported by this hypervisor's devices: "hvrs" in
/// little-endian ASCII. Drivers do not interpret it.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"hvrs");
/// Size of one virtio-mmio register frame (control registers plus config).
pub const REGION_SIZE: u64 = 0x200;

/// Register offsets from the frame base (spec 4.2.2, table "MMIO Device
/// Register Layout"). `R`/`W` is the direction the driver may use.
pub mod offset {
    /// R: [`super::MAGIC_VALUE`].
    pub const MAGIC_VALUE: u64 = 0x000;
    /// R: [`super::VERSION`].
    pub const VERSION: u64 = 0x004;
    /// R: virtio device ID (see [`super::device_id`]).
    pub const DEVICE_ID: u64 = 0x008;
    /// R: [`super::VENDOR_ID`].
    pub const VENDOR_ID: u64 = 0x00c;
    /// R: 32 device feature bits selected by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// W: which 32-bit word of the device features `DEVICE_FEATURES` shows.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// W: 32 driver (accepted) feature bits selected by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// W: which 32-bit word of the driver features `DRIVER_FEATURES` sets.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// W: selects the queue the `QUEUE_*` registers apply to.
    pub const QUEUE_SEL: u64 = 0x030;
    /// R: largest queue size the device accepts (0: no such queue).
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// W: queue size the driver chose.
    pub const QUEUE_NUM: u64 = 0x038;
    /// RW: 1 once the driver finished configuring the selected queue.
    pub const QUEUE_READY: u64 = 0x044;
    /// W: available-buffer notification; the value is the queue index.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// R: pending interrupt causes (see [`super::InterruptStatus`]).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// W: acknowledges the interrupt causes whose bits are set.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// RW: device status (see [`super::DeviceStatus`]); writing 0 resets.
    pub const STATUS: u64 = 0x070;
    /// W: low 32 bits of the descriptor table address.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// W: high 32 bits of the descriptor table address.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// W: low 32 bits of the driver area (available ring) address.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// W: high 32 bits of the driver area (available ring) address.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// W: low 32 bits of the device area (used ring) address.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// W: high 32 bits of the device area (used ring) address.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// W: selects a shared memory region.
    pub const SHM_SEL: u64 = 0x0ac;
    /// R: low 32 bits of the selected shared memory region's length.
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// R: high 32 bits of the selected shared memory region's length.
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// R: low 32 bits of the selected shared memory region's base.
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    /// R: high 32 bits of the selected shared memory region's base.
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    /// RW: per-queue reset (only with `VIRTIO_F_RING_RESET`).
    pub const QUEUE_RESET: u64 = 0x0c0;
    /// R: changes whenever the configuration space may have changed.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// RW: first byte of the device-specific configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Virtio device IDs (spec 5).
pub mod device_id {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
}

bitflags! {
    /// The device status field (spec 2.1). The driver sets the bits in this
    /// order: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK; FAILED when it
    /// gives up. DEVICE_NEEDS_RESET is the only bit the device sets.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DeviceStatus: u32 {
        /// The guest found the device and recognised it as virtio.
        const ACKNOWLEDGE = 1;
        /// The guest knows how to drive the device.
        const DRIVER = 2;
        /// The driver is set up and ready to drive the device.
        const DRIVER_OK = 4;
        /// The driver acknowledged the features it understands; feature
        /// negotiation is complete (the device clears it to refuse them).
        const FEATURES_OK = 8;
        /// The device hit an error it cannot recover from without a reset.
        const DEVICE_NEEDS_RESET = 64;
        /// The driver gave up on the device.
        const FAILED = 128;
    }
}

bitflags! {
    /// `InterruptStatus` / `InterruptACK` bits (spec 4.2.2).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct InterruptStatus: u32 {
        /// The device used a buffer in at least one queue.
        const USED_BUFFER = 1;
        /// The device configuration space changed (or the device needs a
        /// reset, see [`DeviceStatus::DEVICE_NEEDS_RESET`]).
        const CONFIG_CHANGE = 2;
    }
}

/// Reserved (device-independent) feature bits (spec 6), as 64-bit masks.
pub mod feature {
    /// Bits 0..=23 are device-type specific.
    pub const DEVICE_SPECIFIC_LOW: u64 = (1 << 24) - 1;
    /// Bits 24..=49 are reserved for the queue and negotiation mechanisms.
    pub const TRANSPORT_RESERVED: u64 = ((1 << 50) - 1) & !DEVICE_SPECIFIC_LOW;
    /// Descriptors may point to indirect descriptor tables.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// Compliance with virtio 1.x (mandatory for the version 2 transport).
    pub const VERSION_1: u64 = 1 << 32;
    /// The device is behind an IOMMU / platform access restrictions.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// Packed virtqueue layout.
    pub const RING_PACKED: u64 = 1 << 34;
    /// Buffers are used in the order they were made available.
    pub const IN_ORDER: u64 = 1 << 35;
    /// Notifications carry extra data.
    pub const NOTIFICATION_DATA: u64 = 1 << 38;
    /// Individual queues can be reset.
    pub const RING_RESET: u64 = 1 << 40;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_virt_in_little_endian() {
        assert_eq!(MAGIC_VALUE.to_le_bytes(), *b"virt");
    }

    #[test]
    fn control_registers_are_word_aligned_and_below_config() {
        let all = [
            offset::MAGIC_VALUE,
            offset::VERSION,
            offset::DEVICE_ID,
            offset::VENDOR_ID,
            offset::DEVICE_FEATURES,
            offset::DEVICE_FEATURES_SEL,
            offset::DRIVER_FEATURES,
            offset::DRIVER_FEATURES_SEL,
            offset::QUEUE_SEL,
            offset::QUEUE_NUM_MAX,
            offset::QUEUE_NUM,
            offset::QUEUE_READY,
            offset::QUEUE_NOTIFY,
            offset::INTERRUPT_STATUS,
            offset::INTERRUPT_ACK,
            offset::STATUS,
            offset::QUEUE_DESC_LOW,
            offset::QUEUE_DESC_HIGH,
            offset::QUEUE_DRIVER_LOW,
            offset::QUEUE_DRIVER_HIGH,
            offset::QUEUE_DEVICE_LOW,
            offset::QUEUE_DEVICE_HIGH,
            offset::SHM_SEL,
            offset::SHM_LEN_LOW,
            offset::SHM_LEN_HIGH,
            offset::SHM_BASE_LOW,
            offset::SHM_BASE_HIGH,
            offset::QUEUE_RESET,
            offset::CONFIG_GENERATION,
        ];
        for off in all {
            assert_eq!(off % 4, 0, "{off:#x}");
            assert!(off < offset::CONFIG, "{off:#x}");
        }
    }

    #[test]
    fn feature_ranges() {
        assert_eq!(
            feature::TRANSPORT_RESERVED & feature::VERSION_1,
            feature::VERSION_1
        );
        assert_eq!(
            feature::TRANSPORT_RESERVED & feature::EVENT_IDX,
            feature::EVENT_IDX
        );
        assert_eq!(feature::TRANSPORT_RESERVED & 1, 0);
        assert_eq!(feature::TRANSPORT_RESERVED & (1 << 50), 0);
        assert_eq!(feature::DEVICE_SPECIFIC_LOW & (1 << 23), 1 << 23);
    }
}
