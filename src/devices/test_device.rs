//! A scratch-register device for the in-QEMU tests of MMIO emulation.
//!
//! 256 bytes of little-endian storage: a store of any width writes its
//! bytes, a load of any width reads them back, so a tiny guest can write
//! patterns and check what its sign- or zero-extending loads return. The
//! device also records every access so tests can check the decoded width,
//! direction and value.

use crate::mmio::{AccessSize, DeviceContext, MmioDevice, MmioRegion};

/// Guest-physical base of the test device.
pub const TEST_DEVICE_BASE: u64 = 0x0b00_0000;
/// Size of the test device's region.
pub const TEST_DEVICE_SIZE: u64 = 0x100;

/// One recorded access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessRecord {
    /// Offset inside the device.
    pub offset: u64,
    /// Width in bytes.
    pub size: u8,
    /// True for a store.
    pub is_write: bool,
    /// Value stored or returned.
    pub value: u64,
}

/// The scratch-register device.
#[derive(Clone, Debug)]
pub struct TestDevice {
    base: u64,
    storage: [u8; TEST_DEVICE_SIZE as usize],
    /// Number of loads.
    pub reads: u64,
    /// Number of stores.
    pub writes: u64,
    /// Accesses by width: index 0..=3 for 1, 2, 4, 8 bytes.
    pub by_width: [u64; 4],
    /// The most recent access.
    pub last: AccessRecord,
}

impl TestDevice {
    /// A zeroed device at `base`.
    pub const fn new(base: u64) -> Self {
        TestDevice {
            base,
            storage: [0; TEST_DEVICE_SIZE as usize],
            reads: 0,
            writes: 0,
            by_width: [0; 4],
            last: AccessRecord {
                offset: 0,
                size: 0,
                is_write: false,
                value: 0,
            },
        }
    }

    fn count(&mut self, offset: u64, size: AccessSize, is_write: bool, value: u64) {
        let slot = match size {
            AccessSize::Byte => 0,
            AccessSize::Half => 1,
            AccessSize::Word => 2,
            AccessSize::Double => 3,
        };
        self.by_width[slot] += 1;
        self.last = AccessRecord {
            offset,
            size: size.bytes(),
            is_write,
            value,
        };
    }
}

impl MmioDevice for TestDevice {
    fn region(&self) -> MmioRegion {
        MmioRegion::new(self.base, TEST_DEVICE_SIZE)
    }

    fn read(&mut self, offset: u64, size: AccessSize, _ctx: &mut DeviceContext<'_>) -> u64 {
        let mut bytes = [0u8; 8];
        let n = size.bytes() as usize;
        let start = offset as usize;
        if let Some(src) = self.storage.get(start..start + n) {
            bytes[..n].copy_from_slice(src);
        }
        let value = u64::from_le_bytes(bytes);
        self.reads += 1;
        self.count(offset, size, false, value);
        value
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64, _ctx: &mut DeviceContext<'_>) {
        let n = size.bytes() as usize;
        let start = offset as usize;
        if let Some(dst) = self.storage.get_mut(start..start + n) {
            dst.copy_from_slice(&value.to_le_bytes()[..n]);
        }
        self.writes += 1;
        self.count(offset, size, true, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::GuestMemory;
    use crate::irq::RecordingIrqSink;

    #[test]
    fn stores_and_loads_little_endian_at_every_width() {
        let mem =
            GuestMemory::from_static(0x4000_0000, Box::leak(vec![0u8; 16].into_boxed_slice()));
        let mut irq = RecordingIrqSink::new();
        let mut ctx = DeviceContext {
            mem: &mem,
            irq: &mut irq,
            vcpu: 0,
        };
        let mut dev = TestDevice::new(TEST_DEVICE_BASE);
        dev.write(0, AccessSize::Double, 0x8877_6655_4433_2211, &mut ctx);
        assert_eq!(dev.read(0, AccessSize::Byte, &mut ctx), 0x11);
        assert_eq!(dev.read(2, AccessSize::Half, &mut ctx), 0x4433);
        assert_eq!(dev.read(4, AccessSize::Word, &mut ctx), 0x8877_6655);
        dev.write(1, AccessSize::Byte, 0xff, &mut ctx);
        assert_eq!(dev.read(0, AccessSize::Word, &mut ctx), 0x4433_ff11);
        assert_eq!(dev.writes, 2);
        assert_eq!(dev.reads, 4);
        assert_eq!(dev.by_width, [2, 1, 2, 1]);
        assert_eq!(
            dev.last,
            AccessRecord {
                offset: 0,
                size: 4,
                is_write: false,
                value: 0x4433_ff11
            }
        );
    }
}
