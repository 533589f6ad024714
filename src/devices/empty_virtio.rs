//! An empty virtio-mmio slot.
//!
//! Every VM's device tree lists the virtio-mmio transports of the platform
//! layout (slot 0 block, slot 1 network). When a VM is configured without
//! one of those devices, its slot still answers like QEMU's unused
//! transports do: the magic value and version, and DeviceID 0, which the
//! virtio specification reserves to mean "no device here"; Linux's
//! virtio-mmio driver then skips it. Everything else reads as zero and
//! writes are ignored (and counted).

use hal::virtio_mmio::{MAGIC_VALUE, REGION_SIZE, VENDOR_ID, VERSION, offset as reg};

use crate::mmio::{AccessSize, DeviceContext, MmioDevice, MmioRegion};

/// A virtio-mmio transport with no device behind it.
#[derive(Clone, Debug)]
pub struct EmptyVirtioSlot {
    base: u64,
    /// Accesses other than reads of the identification registers.
    pub ignored: u64,
}

impl EmptyVirtioSlot {
    /// An empty slot at `base`.
    pub const fn new(base: u64) -> Self {
        EmptyVirtioSlot { base, ignored: 0 }
    }
}

impl MmioDevice for EmptyVirtioSlot {
    fn region(&self) -> MmioRegion {
        MmioRegion::new(self.base, REGION_SIZE)
    }

    fn read(&mut self, offset: u64, size: AccessSize, _ctx: &mut DeviceContext<'_>) -> u64 {
        if size != AccessSize::Word {
            self.ignored += 1;
            return 0;
        }
        match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE as u64,
            reg::VERSION => VERSION as u64,
            reg::DEVICE_ID => 0,
            reg::VENDOR_ID => VENDOR_ID as u64,
            _ => {
                self.ignored += 1;
                0
            }
        }
    }

    fn write(
        &mut self,
        _offset: u64,
        _size: AccessSize,
        _value: u64,
        _ctx: &mut DeviceContext<'_>,
    ) {
        self.ignored += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::GuestMemory;
    use crate::irq::RecordingIrqSink;

    #[test]
    fn identifies_as_no_device() {
        let mem = GuestMemory::empty();
        let mut irq = RecordingIrqSink::new();
        let mut ctx = DeviceContext {
            mem: &mem,
            irq: &mut irq,
            vcpu: 0,
        };
        let mut slot = EmptyVirtioSlot::new(0x0a00_0200);
        assert_eq!(
            slot.read(reg::MAGIC_VALUE, AccessSize::Word, &mut ctx),
            0x7472_6976
        );
        assert_eq!(slot.read(reg::VERSION, AccessSize::Word, &mut ctx), 2);
        assert_eq!(slot.read(reg::DEVICE_ID, AccessSize::Word, &mut ctx), 0);
        assert_eq!(slot.read(reg::STATUS, AccessSize::Word, &mut ctx), 0);
        slot.write(reg::STATUS, AccessSize::Word, 1, &mut ctx);
        assert_eq!(slot.ignored, 2);
        assert_eq!(slot.region(), MmioRegion::new(0x0a00_0200, 0x200));
    }
}
