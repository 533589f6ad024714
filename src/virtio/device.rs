//! The backend trait: what makes a block device a block device.

use super::DEFAULT_QUEUE_SIZE;
use super::lifecycle::{Features, LiveQueues};

/// A virtio device backend: what makes a block device a block device.
///
/// The transport calls these methods; a backend never sees registers,
/// status bits or raw rings.
pub trait VirtioDevice {
    /// Virtio device ID (1 network, 2 block, ...; see [`regs::device_id`](super::regs::device_id)).
    const DEVICE_ID: u32;
    /// Number of virtqueues (at most [`MAX_QUEUES`](super::MAX_QUEUES), checked at compile
    /// time when the transport is built).
    const QUEUE_COUNT: u16;

    /// Device-specific feature bits offered to the driver (bits 0..=23 and
    /// 50..). Transport bits are masked out; `VERSION_1` is added.
    fn device_features(&self) -> u64;

    /// `QueueNumMax` of `queue` (rounded down to a power of two by the
    /// transport).
    fn queue_max_size(&self, queue: u16) -> u16 {
        let _ = queue;
        DEFAULT_QUEUE_SIZE
    }

    /// Fills `data` with the configuration space bytes at `offset`
    /// (little-endian, as the driver sees them). Returns false if the range
    /// is not inside the configuration space; the transport then counts the
    /// access and reads 0. [`read_config_bytes`] does this for a byte
    /// slice.
    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool;

    /// Handles a driver write to the configuration space. Returns false if
    /// the field is read-only or does not exist (counted by the transport).
    fn write_config(&mut self, offset: u32, data: &[u8]) -> bool {
        let _ = (offset, data);
        false
    }

    /// The driver set DRIVER_OK with these features: the device is Live.
    fn activate(&mut self, features: Features) {
        let _ = features;
    }

    /// The driver notified `queue` (which exists and is live). Pop chains
    /// from `queues.queue(queue)`, process them and complete them.
    fn queue_notify(&mut self, queue: u16, queues: &mut LiveQueues<'_>);

    /// The driver reset the device: forget everything negotiated.
    fn reset(&mut self);
}

/// Copies `config[offset..offset + data.len()]` into `data`; false (and
/// `data` untouched) if that range is not inside `config`.
pub fn read_config_bytes(config: &[u8], offset: u32, data: &mut [u8]) -> bool {
    let Ok(start) = usize::try_from(offset) else {
        return false;
    };
    match start
        .checked_add(data.len())
        .and_then(|end| config.get(start..end))
    {
        Some(bytes) => {
            data.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_bounds() {
        let cfg = [1u8, 2, 3, 4, 5, 6];
        let mut out = [0u8; 4];
        assert!(read_config_bytes(&cfg, 2, &mut out));
        assert_eq!(out, [3, 4, 5, 6]);
        assert!(!read_config_bytes(&cfg, 3, &mut out));
        assert!(!read_config_bytes(&cfg, u32::MAX, &mut out));
        let mut one = [0u8; 1];
        assert!(read_config_bytes(&cfg, 5, &mut one));
        assert_eq!(one, [6]);
    }
}
