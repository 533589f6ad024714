//! QEMU `virt` machine facts and the hypervisor's memory plan.
//!
//! Guest-physical layout (identical in every VM) follows QEMU's own `virt`
//! map so that an unmodified Linux kernel finds its devices where it would on
//! QEMU; the host-physical plan says where QEMU's `-device loader` puts the
//! images and where each VM's RAM carve-out lives.

/// Guest-physical (and host-physical) base of RAM on QEMU virt.
pub const RAM_BASE: u64 = 0x4000_0000;

/// GIC distributor (guest and host).
pub const GICD_BASE: u64 = 0x0800_0000;
/// Size of the GIC distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// First GIC redistributor (guest and host).
pub const GICR_BASE: u64 = 0x080a_0000;
/// Size of one redistributor (RD_base + SGI_base frames, no VLPI frames).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// PL011 UART (guest and host).
pub const UART_BASE: u64 = 0x0900_0000;
/// Size of the PL011 register frame.
pub const UART_SIZE: u64 = 0x1000;
/// PL011 interrupt (SPI 1).
pub const UART_INTID: u32 = 33;

// ── Virtio-MMIO slot layout ───────────────────────────────────────
/// Base address of the first virtio-mmio transport (QEMU virt convention).
pub const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
/// Stride between virtio-mmio transports.
pub const VIRTIO_MMIO_STRIDE: u64 = 0x200;
/// First SPI INTID for virtio devices (SPI 16 = INTID 48).
pub const VIRTIO_SPI_BASE: u32 = 48;

/// `(base, intid)` of virtio-mmio slot `n`: slot 0 is virtio-blk
/// (0x0a00_0000, INTID 48), slot 1 virtio-net (0x0a00_0200, INTID 49).
pub const fn virtio_slot(n: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_BASE + (n as u64) * VIRTIO_MMIO_STRIDE,
        VIRTIO_SPI_BASE + n as u32,
    )
}

/// Slot of the virtio-blk device.
pub const VIRTIO_BLK_SLOT: usize = 0;
/// Slot of the virtio-net device.
pub const VIRTIO_NET_SLOT: usize = 1;

/// PPI: vGIC maintenance interrupt.
pub const INTID_VGIC_MAINTENANCE: u32 = 25;
/// PPI: EL2 physical timer (the hypervisor's scheduling tick).
pub const INTID_HYP_TIMER: u32 = 26;
/// PPI: EL1 virtual timer (the guest's timer).
pub const INTID_VIRT_TIMER: u32 = 27;
/// PPI: EL1 physical timer.
pub const INTID_PHYS_TIMER: u32 = 30;
/// SGI the hypervisor uses to kick another physical CPU.
pub const SGI_KICK: u32 = 1;

/// Most VMs the hypervisor runs at once.
pub const MAX_VMS: usize = 4;
/// Most vCPUs one VM may have.
pub const MAX_VCPUS: usize = 4;
/// Most physical CPUs the hypervisor uses.
pub const MAX_PCPUS: usize = 4;

// ── Guest-physical placement of a Linux boot ──────────────────────
/// Where the kernel `Image` is placed (2 MiB aligned, plus text_offset).
pub const GUEST_KERNEL_GPA: u64 = 0x4020_0000;
/// Where the device tree blob is placed (its own 2 MiB slot).
pub const GUEST_DTB_GPA: u64 = 0x47e0_0000;
/// Largest device tree blob accepted.
pub const GUEST_DTB_MAX: u64 = 0x20_0000;
/// Where the initramfs is placed.
pub const GUEST_INITRD_GPA: u64 = 0x4800_0000;
/// Default guest RAM size.
pub const GUEST_RAM_SIZE: u64 = 0x1000_0000;

// ── Host-physical plan (QEMU -m 2G: RAM 0x4000_0000..0xC000_0000) ─
/// End of host RAM with `-m 2G`.
pub const HOST_RAM_END: u64 = 0xc000_0000;
/// Boot configuration text placed by QEMU (`-device loader`).
pub const HOST_CONFIG_ADDR: u64 = 0x4400_0000;
/// Largest boot configuration accepted.
pub const HOST_CONFIG_MAX: u64 = 0x1000;
/// Device tree blob of VM `n` is staged at `HOST_DTB_BASE + n * HOST_DTB_STRIDE`.
pub const HOST_DTB_BASE: u64 = 0x4410_0000;
/// Stride between staged device tree blobs.
pub const HOST_DTB_STRIDE: u64 = 0x10_0000;
/// Staged kernel `Image`.
pub const HOST_KERNEL_ADDR: u64 = 0x4800_0000;
/// Largest staged kernel.
pub const HOST_KERNEL_MAX: u64 = 0x0800_0000;
/// Staged initramfs.
pub const HOST_INITRD_ADDR: u64 = 0x5000_0000;
/// Largest staged initramfs.
pub const HOST_INITRD_MAX: u64 = 0x0800_0000;
/// Staged virtio-blk disk image.
pub const HOST_DISK_ADDR: u64 = 0x5800_0000;
/// Largest staged disk image.
pub const HOST_DISK_MAX: u64 = 0x0400_0000;
/// First VM carve-out; VM `n` owns `[HOST_VM_BASE + n * HOST_VM_STRIDE, +HOST_VM_STRIDE)`:
/// its RAM first, then its private copy of the disk.
pub const HOST_VM_BASE: u64 = 0x6000_0000;
/// Size of one VM carve-out (RAM plus disk copy).
pub const HOST_VM_STRIDE: u64 = 0x1400_0000;
/// One 8-byte mark per VM carve-out (VM `n`'s at `+ 8 * n`), in RAM that
/// no loader blob, image or carve-out covers: zero until a VM is first
/// created in the carve-out (see `arch::aarch64::guest::VmSlot::create`).
/// RAM keeps its contents across a machine reset, so the mark is set
/// exactly as long as the carve-out may hold a guest's data.
pub const HOST_CARVE_OUT_MARKS: u64 = 0xb000_0000;

// The memory plan is checked at compile time.
const _: () = {
    assert!(HOST_VM_BASE + MAX_VMS as u64 * HOST_VM_STRIDE <= HOST_CARVE_OUT_MARKS);
    assert!(HOST_CARVE_OUT_MARKS + 8 * MAX_VMS as u64 <= HOST_RAM_END);
    assert!(GUEST_RAM_SIZE + HOST_DISK_MAX <= HOST_VM_STRIDE);
    assert!(HOST_DISK_ADDR + HOST_DISK_MAX <= HOST_VM_BASE);
    assert!(HOST_KERNEL_ADDR + HOST_KERNEL_MAX <= HOST_INITRD_ADDR);
    assert!(HOST_INITRD_ADDR + HOST_INITRD_MAX <= HOST_DISK_ADDR);
    assert!(HOST_DTB_BASE + MAX_VMS as u64 * HOST_DTB_STRIDE <= HOST_KERNEL_ADDR);
    assert!(GUEST_KERNEL_GPA % 0x20_0000 == 0);
    assert!(GUEST_DTB_GPA + GUEST_DTB_MAX <= GUEST_INITRD_GPA);
    assert!(GUEST_INITRD_GPA < RAM_BASE + GUEST_RAM_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_slots_follow_qemu_virt() {
        assert_eq!(virtio_slot(0), (0x0a00_0000, 48));
        assert_eq!(virtio_slot(1), (0x0a00_0200, 49));
        assert_eq!(virtio_slot(31), (0x0a00_3e00, 79));
    }
}
