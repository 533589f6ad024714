//! Emulated devices and the per-VM device manager.
//!
//! Each VM has one [`DeviceManager`] holding its devices by value as
//! [`Device`] variants (no allocation, no boxed devices). A trapped MMIO
//! access is routed to the device whose region contains it, through a
//! short-lived `&mut dyn MmioDevice` borrowed from the variant for that one
//! call; an access that no device claims is reported to the caller, which
//! stops the VM.

pub mod empty_virtio;
pub mod pl011;
pub mod test_device;

use crate::mmio::{AccessSize, DeviceContext, MmioDevice, MmioRegion};
use crate::net::{Clock, NetSwitch, PortConfig, PortError, VSWITCH};
use crate::platform;
use crate::virtio::VirtioMmioTransport;
use crate::virtio::blk::VirtioBlk;
use crate::virtio::net::VirtioNet;
use empty_virtio::EmptyVirtioSlot;
use pl011::Pl011;
use test_device::TestDevice;

/// Most devices one VM can have.
pub const MAX_DEVICES: usize = 8;

/// Every kind of emulated device.
///
/// Variants differ in size (the PL011 carries its 4 KiB output buffer);
/// there is no allocator to box them into and devices live in the VM's
/// static storage and are never moved, so the size difference costs nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Device {
    /// The PL011 UART every VM has at 0x0900_0000.
    Pl011(Pl011),
    /// virtio-blk behind a virtio-mmio transport (slot 0).
    VirtioBlk(VirtioMmioTransport<VirtioBlk>),
    /// A virtio-mmio slot with no device (DeviceID 0).
    EmptyVirtio(EmptyVirtioSlot),
    /// virtio-net behind a virtio-mmio transport (slot 1).
    VirtioNet(VirtioMmioTransport<VirtioNet>),
    /// Scratch registers for MMIO tests.
    Test(TestDevice),
}

impl Device {
    fn as_mmio(&mut self) -> &mut dyn MmioDevice {
        match self {
            Device::Pl011(d) => d,
            Device::VirtioBlk(d) => d,
            Device::EmptyVirtio(d) => d,
            Device::VirtioNet(d) => d,
            Device::Test(d) => d,
        }
    }

    fn region(&self) -> MmioRegion {
        match self {
            Device::Pl011(d) => d.region(),
            Device::VirtioBlk(d) => d.region(),
            Device::EmptyVirtio(d) => d.region(),
            Device::VirtioNet(d) => d.region(),
            Device::Test(d) => d.region(),
        }
    }
}

/// Why a device could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// All [`MAX_DEVICES`] slots are used.
    Full,
    /// The new device's region overlaps an attached device's region.
    Overlap {
        /// The region that was refused.
        new: MmioRegion,
        /// The region it collides with.
        existing: MmioRegion,
    },
}

/// The devices of one VM.
#[derive(Debug)]
pub struct DeviceManager {
    devices: [Option<Device>; MAX_DEVICES],
}

impl Default for DeviceManager {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceManager {
    /// A manager with no devices.
    pub const fn new() -> Self {
        DeviceManager {
            devices: [const { None }; MAX_DEVICES],
        }
    }

    /// Detaches every device (in place).
    pub fn clear(&mut self) {
        for slot in &mut self.devices {
            *slot = None;
        }
    }

    /// Attaches `device`, refusing overlaps.
    pub fn attach(&mut self, device: Device) -> Result<(), AttachError> {
        let new = device.region();
        for existing in self.devices.iter().flatten() {
            let existing = existing.region();
            if new.overlaps(&existing) {
                return Err(AttachError::Overlap { new, existing });
            }
        }
        let slot = self
            .devices
            .iter_mut()
            .find(|slot| slot.is_none())
            .ok_or(AttachError::Full)?;
        *slot = Some(device);
        Ok(())
    }

    /// Number of attached devices.
    pub fn len(&self) -> usize {
        self.devices.iter().flatten().count()
    }

    /// True if no device is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Routes a load (`value == None`) or store (`Some(v)`) of `size` at
    /// `gpa`. Returns `Some(loaded value)` for a load, `Some(0)` for a store,
    /// or `None` if no device claims the whole access.
    pub fn dispatch(
        &mut self,
        gpa: u64,
        size: AccessSize,
        value: Option<u64>,
        ctx: &mut DeviceContext<'_>,
    ) -> Option<u64> {
        for device in self.devices.iter_mut().flatten() {
            if let Some(offset) = device.region().offset_of(gpa, size.bytes() as u64) {
                let dev = device.as_mmio();
                return Some(match value {
                    None => dev.read(offset, size, ctx) & size.mask(),
                    Some(v) => {
                        dev.write(offset, size, v & size.mask(), ctx);
                        0
                    }
                });
            }
        }
        None
    }

    /// The test device, if attached.
    pub fn test_device(&mut self) -> Option<&mut TestDevice> {
        self.devices.iter_mut().flatten().find_map(|d| match d {
            Device::Test(t) => Some(t),
            _ => None,
        })
    }

    /// The virtio-blk transport, if attached.
    pub fn virtio_blk(&mut self) -> Option<&mut VirtioMmioTransport<VirtioBlk>> {
        self.devices.iter_mut().flatten().find_map(|d| match d {
            Device::VirtioBlk(b) => Some(b),
            _ => None,
        })
    }

    /// The virtio-net transport, if attached.
    pub fn virtio_net(&mut self) -> Option<&mut VirtioMmioTransport<VirtioNet>> {
        self.devices.iter_mut().flatten().find_map(|d| match d {
            Device::VirtioNet(n) => Some(n),
            _ => None,
        })
    }

    /// The PL011, if attached.
    pub fn pl011(&mut self) -> Option<&mut Pl011> {
        self.devices.iter_mut().flatten().find_map(|d| match d {
            Device::Pl011(p) => Some(p),
            _ => None,
        })
    }
}

/// Why a virtio-net device could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetAttachError {
    /// The switch has no port for this VM.
    Port(PortError),
    /// The device manager refused the device.
    Device(AttachError),
}

/// Attaches VM `vm`'s virtio-net device (slot 1) to `devices` and adds
/// port `vm` to [`VSWITCH`] with the source-MAC lock set to the device's
/// MAC. Nothing is changed if either step would fail.
pub fn attach_virtio_net(devices: &mut DeviceManager, vm: usize) -> Result<(), NetAttachError> {
    attach_virtio_net_to(devices, vm, &VSWITCH)
}

/// A VM port's network settings beyond its MAC lock (the boot
/// configuration's `net_vlans` and `net_rate_mbit`).
#[derive(Clone, Copy, Debug)]
pub struct NetPortOptions {
    /// The port's access VLAN.
    pub vlan: u16,
    /// Transmit limit in Mbit/s (0: unlimited).
    pub rate_mbit: u32,
    /// Offer checksum and segmentation offload to the driver.
    pub offloads: bool,
    /// The device's time source (capture timestamps, rate limit).
    pub clock: Clock,
}

/// [`attach_virtio_net`] with a VLAN, a transmit limit and a clock.
pub fn attach_virtio_net_with(
    devices: &mut DeviceManager,
    vm: usize,
    options: NetPortOptions,
) -> Result<(), NetAttachError> {
    attach_port(devices, vm, &VSWITCH, Some(options))
}

/// [`attach_virtio_net`] with another switch (tests).
pub fn attach_virtio_net_to(
    devices: &mut DeviceManager,
    vm: usize,
    switch: &'static NetSwitch,
) -> Result<(), NetAttachError> {
    attach_port(devices, vm, switch, None)
}

fn attach_port(
    devices: &mut DeviceManager,
    vm: usize,
    switch: &'static NetSwitch,
    options: Option<NetPortOptions>,
) -> Result<(), NetAttachError> {
    let ports = switch.port_capacity();
    if vm >= ports {
        return Err(NetAttachError::Port(PortError::OutOfRange {
            port: vm,
            ports,
        }));
    }
    let (base, intid) = platform::virtio_slot(platform::VIRTIO_NET_SLOT);
    let (net, lock) = match options {
        Some(o) => {
            let net = VirtioNet::with_limits(vm, switch, o.rate_mbit, o.clock);
            let net = if o.offloads {
                net
            } else {
                net.without_offloads()
            };
            let lock = PortConfig::locked_to(net.mac())
                .with_vlan(o.vlan)
                .with_rate(o.rate_mbit);
            (net, lock)
        }
        None => {
            let net = VirtioNet::with_switch(vm, switch);
            let lock = PortConfig::locked_to(net.mac());
            (net, lock)
        }
    };
    devices
        .attach(Device::VirtioNet(VirtioMmioTransport::new(
            base, intid, net,
        )))
        .map_err(NetAttachError::Device)?;
    switch.add_port(vm, lock).map_err(NetAttachError::Port)
}

#[cfg(test)]
mod tests {
    use super::test_device::{TEST_DEVICE_BASE, TestDevice};
    use super::*;
    use crate::guest_memory::GuestMemory;
    use crate::irq::RecordingIrqSink;

    fn with_ctx<R>(f: impl FnOnce(&mut DeviceContext<'_>) -> R) -> R {
        let mem =
            GuestMemory::from_static(0x4000_0000, Box::leak(vec![0u8; 16].into_boxed_slice()));
        let mut irq = RecordingIrqSink::new();
        let mut ctx = DeviceContext {
            mem: &mem,
            irq: &mut irq,
            vcpu: 0,
        };
        f(&mut ctx)
    }

    #[test]
    fn dispatches_by_region_and_reports_unclaimed() {
        let mut dm = DeviceManager::new();
        dm.attach(Device::Test(TestDevice::new(TEST_DEVICE_BASE)))
            .unwrap();
        with_ctx(|ctx| {
            assert_eq!(
                dm.dispatch(
                    TEST_DEVICE_BASE + 8,
                    AccessSize::Word,
                    Some(0x1234_5678_9abc),
                    ctx
                ),
                Some(0)
            );
            assert_eq!(
                dm.dispatch(TEST_DEVICE_BASE + 8, AccessSize::Word, None, ctx),
                Some(0x5678_9abc)
            );
            assert_eq!(
                dm.dispatch(TEST_DEVICE_BASE + 0x100, AccessSize::Byte, None, ctx),
                None
            );
            // Straddling the end of the region is not claimed.
            assert_eq!(
                dm.dispatch(TEST_DEVICE_BASE + 0xfc, AccessSize::Double, None, ctx),
                None
            );
        });
    }

    #[test]
    fn refuses_overlaps_and_overflow() {
        let mut dm = DeviceManager::new();
        dm.attach(Device::Test(TestDevice::new(0x1000))).unwrap();
        assert!(matches!(
            dm.attach(Device::Test(TestDevice::new(0x1080))),
            Err(AttachError::Overlap { .. })
        ));
        for i in 1..MAX_DEVICES {
            dm.attach(Device::Test(TestDevice::new(0x1000 + 0x1000 * i as u64)))
                .unwrap();
        }
        assert_eq!(dm.len(), MAX_DEVICES);
        assert_eq!(
            dm.attach(Device::Test(TestDevice::new(0x10_0000))),
            Err(AttachError::Full)
        );
    }
}
