//! Host tests of the VM restart: a VM with every kind of device and a dirty
//! state is reset by its guest, rebuilt in bounded units, and compared with
//! a fresh boot.

use super::*;
use crate::devices::Device;
use crate::devices::attach_virtio_net_to;
use crate::loader::{BootPlan, IMAGE_MAGIC, ImageHeader, Segment, StagedImages, plan_boot};
use crate::net::{NET_RX_BYTES, NET_RX_DEPTH, NetRxRing, NetSwitch, PortConfig, VSwitch};
use crate::platform::{
    GUEST_RAM_SIZE, INTID_VIRT_TIMER, RAM_BASE, VIRTIO_BLK_SLOT, VIRTIO_NET_SLOT, virtio_slot,
};
use crate::trap::Exit;
use crate::virtio::VirtioMmioTransport;
use crate::virtio::blk::{MemDisk, VirtioBlk};
use crate::virtio::net::VirtioNet;
use hal::virtio_mmio::DeviceStatus;
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U32, U64};

const MIB: u64 = 1 << 20;
const UNIT: u64 = 4 * MIB;
/// The dtc-compiled guest tree of the loader tests: 256 MiB of RAM and a
/// 1 MiB initramfs at 0x4800_0000.
const DTB: &[u8] = include_bytes!("../loader/testdata/guest.dtb.bin");
const KERNEL_LEN: usize = 5 * MIB as usize + 123;
const DISK_LEN: usize = 64 * 1024;

fn leak(bytes: Vec<u8>) -> &'static mut [u8] {
    Box::leak(bytes.into_boxed_slice())
}

/// An arm64 `Image` of `len` bytes with a recognisable body.
fn kernel(len: usize) -> &'static [u8] {
    let hdr = ImageHeader {
        code0: U32::new(0xfa40_5a4d),
        code1: U32::new(0x1480_0000),
        text_offset: U64::new(0),
        image_size: U64::new(len as u64),
        flags: U64::new(0b1010),
        res2: U64::new(0),
        res3: U64::new(0),
        res4: U64::new(0),
        magic: U32::new(IMAGE_MAGIC),
        res5: U32::new(0x40),
    };
    let mut v = hdr.as_bytes().to_vec();
    v.extend((v.len()..len).map(|i| (i * 7 + 3) as u8));
    leak(v)
}

fn boot_image() -> (BootPlan, BootImage) {
    let images = StagedImages {
        kernel: kernel(KERNEL_LEN),
        initrd: Some(leak(
            (0..MIB as usize).map(|i| (i >> 8) as u8 ^ 0x5a).collect(),
        )),
        dtb: DTB,
    };
    let ram = crate::loader::GuestRam {
        base: RAM_BASE,
        size: GUEST_RAM_SIZE,
    };
    let plan = plan_boot(1, ram, &images).expect("valid images");
    (plan, BootImage::from_plan(&plan, &images).unwrap())
}

fn switch() -> &'static NetSwitch {
    // One ring at a time: the rings are large, an array of them would be
    // built on the test's stack first.
    let rings: Vec<NetRxRing<NET_RX_DEPTH, NET_RX_BYTES>> =
        (0..4).map(|_| NetRxRing::new()).collect();
    Box::leak(Box::new(VSwitch::new(Box::leak(rings.into_boxed_slice()))))
}

/// VM 1 as `launch` builds it: loaded images, a PL011, a virtio-blk disk
/// with a pattern, virtio-net on port 1 of `sw`, two vCPUs.
fn booted_vm(sw: &'static NetSwitch) -> Vm {
    let mem = GuestMemory::from_static(RAM_BASE, leak(vec![0u8; GUEST_RAM_SIZE as usize]));
    let mut vm = Vm::new(1, mem, 2);
    let (plan, boot) = boot_image();
    for seg in boot.segments.iter().flatten() {
        vm.mem.write(seg.gpa, seg.bytes).unwrap();
    }
    vm.boot = Some(boot);
    vm.start(plan.entry(), plan.x0());
    vm.devices.attach(Device::Pl011(Pl011::new())).unwrap();
    let (base, intid) = virtio_slot(VIRTIO_BLK_SLOT);
    let disk = leak((0..DISK_LEN).map(|i| (i % 251) as u8).collect());
    let blk = VirtioBlk::new(MemDisk::new(disk));
    vm.devices
        .attach(Device::VirtioBlk(VirtioMmioTransport::new(
            base, intid, blk,
        )))
        .unwrap();
    attach_virtio_net_to(&mut vm.devices, 1, sw).unwrap();
    vm
}

fn status_write(vm: &mut Vm, slot: usize, value: u32) {
    let (base, _) = virtio_slot(slot);
    let mut ctx = DeviceContext {
        mem: &vm.mem,
        irq: &mut vm.vgic,
        vcpu: 0,
    };
    let gpa = base + hal::virtio_mmio::offset::STATUS;
    vm.devices
        .dispatch(gpa, AccessSize::Word, Some(u64::from(value)), &mut ctx)
        .expect("a virtio slot");
}

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// Everything a running guest changes: RAM, registers, vCPU 1 on, a
/// pending interrupt, UART input, both virtio devices acknowledged and a
/// disk sector written, the switch has learned the VM's MAC and queued
/// frames for it.
fn dirty(vm: &mut Vm, sw: &NetSwitch) {
    for gpa in [
        RAM_BASE,
        RAM_BASE + 0x1234_5678 % GUEST_RAM_SIZE,
        RAM_BASE + GUEST_RAM_SIZE - 8,
    ] {
        vm.mem.write(gpa, &[0xee; 8]).unwrap();
    }
    let kernel_gpa = vm.boot.unwrap().entry;
    vm.mem.write(kernel_gpa + 0x100, b"overwritten").unwrap();
    vm.vcpus[0].regs.x[5] = 0xdead;
    vm.vcpus[0].el1.sctlr = 0x3055_19fd;
    vm.vcpus[0].timer.ctl = 1;
    vm.vcpus[1].reset_to(RAM_BASE + 0x1000, 9);
    vm.vgic.set_ppi_level(1, INTID_VIRT_TIMER, true);
    let uart = vm.devices.pl011().unwrap();
    uart.push_input(b'x', &mut vm.vgic);
    for slot in [VIRTIO_BLK_SLOT, VIRTIO_NET_SLOT] {
        status_write(vm, slot, DeviceStatus::ACKNOWLEDGE.bits());
    }
    let mac = VirtioNet::mac_for_vm(1);
    sw.add_port(0, PortConfig::OPEN).unwrap();
    sw.forward(1, &frame([0xff; 6], mac));
    sw.forward(0, &frame(mac, [2, 0, 0, 0, 0, 9]));
    sw.forward(0, &frame(mac, [2, 0, 0, 0, 0, 9]));
    assert_eq!(sw.lookup(&mac), Some(1));
    assert_eq!(sw.ring(1).unwrap().len(), 2);
}

/// The guest calls PSCI SYSTEM_RESET on vCPU `index`.
fn guest_reset(vm: &mut Vm, index: usize) -> ExitOutcome {
    vm.vcpus[index].regs.x[0] = u64::from(hal::psci::SYSTEM_RESET);
    vm.handle_exit(index, Exit::Hvc { imm: 0 })
}

/// Runs the restart to the end; returns the units it took and the ranges
/// reported as loaded.
fn finish(vm: &mut Vm, budget: u64) -> (usize, Vec<(u64, u64)>) {
    let mut ranges = Vec::new();
    for unit in 1..10_000 {
        let progress = restart_step(vm, budget, &mut |_, gpa, len| ranges.push((gpa, len)));
        match progress {
            RestartProgress::Working => assert!(vm.is_restarting()),
            RestartProgress::Done => return (unit, ranges),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the restart never ends");
}

/// RAM is zero except for the three images, byte for byte.
fn assert_pristine(vm: &Vm) {
    let segments: Vec<_> = vm.boot.unwrap().segments.into_iter().flatten().collect();
    let mut buf = vec![0u8; MIB as usize];
    let zero = vec![0u8; MIB as usize];
    let mut gpa = RAM_BASE;
    while gpa < RAM_BASE + GUEST_RAM_SIZE {
        vm.mem.read(gpa, &mut buf).unwrap();
        let mut want = zero.clone();
        for s in &segments {
            let (s0, s1) = (s.gpa, s.gpa + s.bytes.len() as u64);
            let (lo, hi) = (s0.max(gpa), s1.min(gpa + MIB));
            if lo < hi {
                want[(lo - gpa) as usize..(hi - gpa) as usize]
                    .copy_from_slice(&s.bytes[(lo - s0) as usize..(hi - s0) as usize]);
            }
        }
        assert!(buf == want, "RAM differs in the MiB at {gpa:#x}");
        gpa += MIB;
    }
}

#[test]
fn a_guest_reset_rebuilds_the_vm_in_bounded_units() {
    let sw = switch();
    let mut vm = booted_vm(sw);
    let devices_before = vm.devices.len();
    dirty(&mut vm, sw);
    assert_eq!(guest_reset(&mut vm, 1), ExitOutcome::Restart);
    assert_eq!(vm.state, VmState::Restarting(RestartPhase::Reset));
    assert!(vm.vcpus.iter().all(|v| v.power == PowerState::Off));

    let (units, ranges) = finish(&mut vm, UNIT);
    // One reset, 64 units of 4 MiB zeroing, the kernel in 2 units, the
    // device tree and the initramfs in one each, and the start.
    assert_eq!(units, 1 + 64 + 2 + 1 + 1 + 1);
    assert!(ranges.iter().all(|&(_, len)| len <= UNIT));
    let (plan, _) = boot_image();
    assert_eq!(ranges[0], (plan.kernel_gpa, UNIT));
    assert_eq!(
        ranges[1],
        (plan.kernel_gpa + UNIT, KERNEL_LEN as u64 - UNIT)
    );
    assert_eq!(ranges[2], (plan.dtb_gpa, plan.dtb_size));
    assert_eq!(ranges[3], (0x4800_0000, MIB));

    assert_eq!(vm.state, VmState::Running);
    assert_eq!(vm.restarts, 1);
    assert_pristine(&vm);
    // vCPU 0 at the kernel entry with the device tree in x0, the rest off.
    let v0 = &vm.vcpus[0];
    assert_eq!(v0.power, PowerState::On);
    assert_eq!(
        (v0.regs.elr, v0.regs.x[0], v0.regs.x[5]),
        (plan.entry(), plan.x0(), 0)
    );
    assert_eq!(
        (v0.el1.sctlr, v0.timer.ctl),
        (crate::vcpu::El1Regs::reset().sctlr, 0)
    );
    assert_eq!(vm.vcpus[1].power, PowerState::Off);
    assert_eq!(vm.vgic.pending_count(1), 0);
    // Devices: a fresh UART, both transports back to status 0, the disk
    // contents unchanged, the same devices attached.
    assert_eq!(vm.devices.len(), devices_before);
    assert_eq!(vm.devices.pl011().unwrap().rx_level(), 0);
    let blk = vm.devices.virtio_blk().unwrap();
    assert_eq!(blk.status(), DeviceStatus::empty());
    let disk = blk.backend().disk().as_bytes();
    assert!(disk.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(
        vm.devices.virtio_net().unwrap().status(),
        DeviceStatus::empty()
    );
    // The switch port: nothing learned, nothing queued, the lock kept.
    let mac = VirtioNet::mac_for_vm(1);
    assert_eq!(sw.lookup(&mac), None);
    assert!(sw.ring(1).unwrap().is_empty());
    assert_eq!(sw.port_config(1), Some(PortConfig::locked_to(mac)));
    assert_eq!(
        sw.lookup(&[2, 0, 0, 0, 0, 9]),
        Some(0),
        "other ports keep theirs"
    );
}

#[test]
fn a_guest_rebooting_in_a_loop_gets_the_same_vm_every_time() {
    let sw = switch();
    let mut vm = booted_vm(sw);
    for round in 1..=3 {
        dirty(&mut vm, sw);
        // SYSTEM_RESET2 (a warm reset) restarts the same way.
        vm.vcpus[0].regs.x[0] = u64::from(hal::psci::SYSTEM_RESET2_64);
        assert_eq!(
            vm.handle_exit(0, Exit::Hvc { imm: 0 }),
            ExitOutcome::Restart
        );
        // A larger budget needs fewer units: 16 MiB zeroing units.
        let (units, _) = finish(&mut vm, 16 * MIB);
        assert_eq!(units, 1 + 16 + 1 + 1 + 1 + 1);
        assert_eq!(vm.restarts, round);
        assert_pristine(&vm);
        assert_eq!(
            vm.devices.virtio_blk().unwrap().backend().disk().as_bytes()[7],
            7
        );
    }
}

#[test]
fn without_boot_images_a_reset_stops_the_vm() {
    let sw = switch();
    let mut vm = booted_vm(sw);
    vm.boot = None;
    assert_eq!(
        guest_reset(&mut vm, 0),
        ExitOutcome::Stop(StopReason::ResetRequested)
    );
    assert!(!vm.is_running() && !vm.is_restarting());
    assert_eq!(
        restart_step(&mut vm, UNIT, &mut |_, _, _| panic!("nothing is loaded")),
        RestartProgress::Idle
    );
}

#[test]
fn a_stopped_vm_can_be_restarted_and_a_running_one_is_left_alone() {
    let sw = switch();
    let mut vm = booted_vm(sw);
    assert_eq!(
        restart_step(&mut vm, UNIT, &mut |_, _, _| {}),
        RestartProgress::Idle
    );
    assert_eq!(vm.vcpus[0].regs.elr, vm.boot.unwrap().entry);
    vm.stop_with(StopReason::PoweredOff);
    assert_eq!(vm.begin_restart(), ExitOutcome::Restart);
    finish(&mut vm, UNIT);
    assert!(vm.is_running());
    assert_eq!(vm.restarts, 1);
}

#[test]
fn an_image_outside_ram_fails_the_restart_cleanly() {
    let sw = switch();
    let mut vm = booted_vm(sw);
    let mut boot = vm.boot.unwrap();
    boot.segments[2] = Some(Segment {
        what: "initramfs",
        gpa: RAM_BASE + GUEST_RAM_SIZE - 16,
        bytes: &[1; 32],
    });
    vm.boot = Some(boot);
    vm.begin_restart();
    let outcome = loop {
        match restart_step(&mut vm, 64 * MIB, &mut |_, _, _| {}) {
            RestartProgress::Working => continue,
            other => break other,
        }
    };
    assert!(matches!(
        outcome,
        RestartProgress::Failed(LoadError::Memory {
            what: "initramfs",
            ..
        })
    ));
    assert_eq!(vm.state, VmState::Stopped(StopReason::ResetRequested));
}

#[test]
fn the_boot_image_of_a_plan_is_its_segments() {
    let (plan, boot) = boot_image();
    assert_eq!((boot.entry, boot.x0), (plan.entry(), plan.x0()));
    let whats: Vec<_> = boot.segments.iter().flatten().map(|s| s.what).collect();
    assert_eq!(whats, ["kernel Image", "device tree", "initramfs"]);
    assert_eq!(boot.segments[0].unwrap().bytes.len(), KERNEL_LEN);
}
