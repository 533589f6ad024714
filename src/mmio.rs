//! Emulated MMIO: the access a trapped guest load/store performs, and the
//! trait every emulated device implements.
//!
//! The trap handler turns a stage-2 data abort into an [`MmioAccess`](crate::trap::MmioAccess)
//! (see [`crate::trap`]); the VM's device manager finds the device whose
//! region contains the address and calls [`MmioDevice::read`] or
//! [`MmioDevice::write`] with the offset into that region.

use crate::guest_memory::GuestMemory;
use crate::irq::IrqSink;

/// Size in bytes of an MMIO access: 1, 2, 4 or 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessSize {
    /// 8-bit access.
    Byte = 1,
    /// 16-bit access.
    Half = 2,
    /// 32-bit access.
    Word = 4,
    /// 64-bit access.
    Double = 8,
}

impl AccessSize {
    /// The access size for `bytes`, if it is 1, 2, 4 or 8.
    pub const fn from_bytes(bytes: u8) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            8 => Some(Self::Double),
            _ => None,
        }
    }

    /// Number of bytes.
    pub const fn bytes(self) -> u8 {
        self as u8
    }

    /// Mask covering the low `bytes()` bytes of a value.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            other => (1u64 << (other as u64 * 8)) - 1,
        }
    }
}

/// A guest-physical region `[base, base + size)` claimed by a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioRegion {
    /// First guest-physical address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl MmioRegion {
    /// A region starting at `base` of `size` bytes.
    pub const fn new(base: u64, size: u64) -> Self {
        MmioRegion { base, size }
    }

    /// Offset of `[gpa, gpa + len)` inside the region, if entirely inside.
    pub fn offset_of(&self, gpa: u64, len: u64) -> Option<u64> {
        let offset = gpa.checked_sub(self.base)?;
        let end = offset.checked_add(len)?;
        (end <= self.size).then_some(offset)
    }

    /// True if the two regions share at least one byte.
    pub fn overlaps(&self, other: &MmioRegion) -> bool {
        let a_end = self.base.saturating_add(self.size);
        let b_end = other.base.saturating_add(other.size);
        self.base < b_end && other.base < a_end
    }
}

/// What a device may use while handling an access: the accessing VM's
/// memory (for DMA-like work such as processing a virtqueue), its interrupt
/// controller, and which of its vCPUs performed the access.
pub struct DeviceContext<'a> {
    /// The VM's RAM.
    pub mem: &'a GuestMemory,
    /// The VM's interrupt controller.
    pub irq: &'a mut dyn IrqSink,
    /// Index of the vCPU that performed the access.
    pub vcpu: usize,
}

/// An emulated memory-mapped device.
///
/// Accesses are already checked to lie entirely inside [`MmioDevice::region`]
/// and have a valid [`AccessSize`]; a device still decides which offsets and
/// widths its registers accept. An access to a register that does not exist
/// reads as zero and ignores writes, and the device counts it so that it is
/// visible (nothing is silently ignored).
pub trait MmioDevice {
    /// The guest-physical region this device claims.
    fn region(&self) -> MmioRegion;
    /// Handles a load of `size` at `offset`; returns the value (only the low
    /// `size` bytes are used).
    fn read(&mut self, offset: u64, size: AccessSize, ctx: &mut DeviceContext<'_>) -> u64;
    /// Handles a store of the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: AccessSize, value: u64, ctx: &mut DeviceContext<'_>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_size_masks() {
        assert_eq!(AccessSize::Byte.mask(), 0xff);
        assert_eq!(AccessSize::Half.mask(), 0xffff);
        assert_eq!(AccessSize::Word.mask(), 0xffff_ffff);
        assert_eq!(AccessSize::Double.mask(), u64::MAX);
        assert_eq!(AccessSize::from_bytes(3), None);
    }

    #[test]
    fn region_offsets() {
        let r = MmioRegion::new(0x0900_0000, 0x1000);
        assert_eq!(r.offset_of(0x0900_0018, 4), Some(0x18));
        assert_eq!(r.offset_of(0x0900_0ffc, 4), Some(0xffc));
        assert_eq!(r.offset_of(0x0900_0ffe, 4), None);
        assert_eq!(r.offset_of(0x08ff_fffc, 4), None);
        assert_eq!(r.offset_of(u64::MAX, 8), None);
    }

    #[test]
    fn region_overlap() {
        let a = MmioRegion::new(0x1000, 0x100);
        assert!(a.overlaps(&MmioRegion::new(0x10ff, 1)));
        assert!(!a.overlaps(&MmioRegion::new(0x1100, 1)));
        assert!(!a.overlaps(&MmioRegion::new(0xf00, 0x100)));
    }
}
