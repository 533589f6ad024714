//! VM restart at EL2: a tiny guest checks that it finds clean RAM, a reset
//! UART, a reset virtio-blk transport and reset EL1/timer state, dirties
//! all of it and calls PSCI SYSTEM_RESET; the hypervisor rebuilds the VM
//! in bounded units, 20 times over, and nothing leaks: the stage-2 table
//! count, the VMID, the translation, the devices and the disk contents are
//! what they were before the first boot.

use core::arch::global_asm;

use hypervisor::arch::aarch64::guest::{VmSlot, carve_out, clean_guest_range, slot};
use hypervisor::devices::Device;
use hypervisor::devices::pl011::Pl011;
use hypervisor::loader::Segment;
use hypervisor::platform::{GUEST_RAM_SIZE, RAM_BASE, VIRTIO_BLK_SLOT, virtio_slot};
use hypervisor::restart::{BootImage, RestartProgress, restart_step};
use hypervisor::selftest::{Suite, Test, TestResult};
use hypervisor::virtio::VirtioMmioTransport;
use hypervisor::virtio::blk::{MemDisk, VirtioBlk};
use hypervisor::vm::{ExitOutcome, VmState};
use hypervisor::{check, check_eq, check_ok};

/// The suite.
pub static SUITE: Suite = Suite {
    name: "vm-restart",
    tests: &[Test {
        name: "guest_reboots_20_times_into_a_clean_vm",
        run: guest_reboots_20_times_into_a_clean_vm,
    }],
};

const VM: usize = 2;
const RAM: u64 = 4 << 20;
const UNIT: u64 = 1 << 20;
const DISK_LEN: usize = 64 * 1024;
const ROUNDS: u64 = 20;
/// What the guest leaves in its scratch word before it resets.
const DIRTY: u64 = 0xbeef;

unsafe extern "C" {
    static guest_reboot_start: u8;
    static guest_reboot_end: u8;
}

fn guest_code() -> &'static [u8] {
    let start = &raw const guest_reboot_start;
    let len = (&raw const guest_reboot_end as usize).saturating_sub(start as usize);
    // SAFETY: the two labels delimit the guest blob in the image's read-only
    // data, emitted below with the end after the start.
    unsafe { core::slice::from_raw_parts(start, len) }
}

// Registers the guest reports at its SYSTEM_RESET call (read before it
// dirties anything): x19 scratch RAM word, x21 UARTCR, x22 UARTIMSC,
// x23 virtio-blk Status, x24 virtio-blk MagicValue, x25 TPIDR_EL1,
// x26 CNTV_CTL_EL0.
global_asm!(
    r#"
    .section .rodata.guests, "a"
    .balign 4
    .global guest_reboot_start
guest_reboot_start:
    adr     x9, guest_reboot_start
    add     x10, x9, #0x10, lsl #12
    ldr     x19, [x10]
    movz    x11, #0x0900, lsl #16
    ldr     w21, [x11, #0x30]
    ldr     w22, [x11, #0x38]
    movz    x12, #0x0a00, lsl #16
    ldr     w23, [x12, #0x70]
    ldr     w24, [x12, #0x00]
    mrs     x25, tpidr_el1
    mrs     x26, cntv_ctl_el0
    /* Dirty everything the next boot must find clean. */
    movz    x13, #0xbeef
    str     x13, [x10]
    mov     w14, #0x301
    str     w14, [x11, #0x30]
    mov     w14, #0x10
    str     w14, [x11, #0x38]
    mov     w14, #1
    str     w14, [x12, #0x70]
    msr     tpidr_el1, x13
    mov     x14, #2
    msr     cntv_ctl_el0, x14
    /* PSCI SYSTEM_RESET */
    movz    x0, #0x0009
    movk    x0, #0x8400, lsl #16
    hvc     #0
1:  b       1b
    .global guest_reboot_end
guest_reboot_end:
    .text
"#
);

/// The disk area of VM `VM`'s carve-out, holding a pattern.
fn disk() -> &'static mut [u8] {
    let area = carve_out(VM) + GUEST_RAM_SIZE;
    // SAFETY: exclusive memory for the device's lifetime (see above).
    // `[area, area + DISK_LEN)` is the disk part of VM `VM`'s carve-out
    // (platform memory plan), identity-mapped at EL2; only the virtio-blk
    // device created below uses it, while this test holds the slot's lock.
    unsafe { core::slice::from_raw_parts_mut(area as usize as *mut u8, DISK_LEN) }
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ 0x5a
}

fn boot() -> Result<spin::MutexGuard<'static, VmSlot>, hypervisor::selftest::Failure> {
    let mut g = check_ok!(slot(VM));
    check_ok!(g.create(VM, RAM, 1));
    let bytes = disk();
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(i);
    }
    check_ok!(g.vm.devices.attach(Device::Pl011(Pl011::new())));
    let (base, intid) = virtio_slot(VIRTIO_BLK_SLOT);
    let blk = VirtioBlk::new(MemDisk::new(bytes));
    check_ok!(
        g.vm.devices
            .attach(Device::VirtioBlk(VirtioMmioTransport::new(
                base, intid, blk
            )))
    );
    let code = guest_code();
    g.vm.boot = Some(BootImage {
        segments: [
            Some(Segment {
                what: "test guest",
                gpa: RAM_BASE,
                bytes: code,
            }),
            None,
            None,
        ],
        entry: RAM_BASE,
        x0: 0,
    });
    check_ok!(g.load_image(RAM_BASE, code));
    g.vm.start(RAM_BASE, 0);
    Ok(g)
}

fn disk_intact(g: &mut VmSlot) -> bool {
    g.vm.devices.virtio_blk().is_some_and(|blk| {
        let d = blk.backend().disk().as_bytes();
        d.len() == DISK_LEN && d.iter().enumerate().all(|(i, &b)| b == pattern(i))
    })
}

fn guest_reboots_20_times_into_a_clean_vm() -> TestResult {
    let mut g = boot()?;
    let tables = g.stage2_tables_used();
    let vmid = g.vmid();
    let translation = g.translate(RAM_BASE + RAM - 1);
    let devices = g.vm.devices.len();
    check!(tables > 0 && vmid.is_some() && translation.is_some());
    for round in 1..=ROUNDS {
        // The guest runs once from its entry and calls SYSTEM_RESET.
        check_eq!(g.run_alone(0, 100), ExitOutcome::Restart);
        check!(g.vm.is_restarting());
        let x = g.vm.vcpus[0].regs.x;
        check_eq!(x[19], 0); // RAM was clean
        check_eq!(x[21], 0x300); // UARTCR at reset
        check_eq!(x[22], 0); // UARTIMSC at reset
        check_eq!(x[23], 0); // virtio-blk Status at reset
        check_eq!(x[24], u64::from(hal::virtio_mmio::MAGIC_VALUE));
        check_eq!(x[25], 0); // TPIDR_EL1 at reset
        check_eq!(x[26], 0); // CNTV_CTL_EL0 at reset
        let mut scratch = [0u8; 8];
        check_ok!(g.vm.mem.read(RAM_BASE + 0x10000, &mut scratch));
        check_eq!(u64::from_le_bytes(scratch), DIRTY);
        // The restart, one bounded unit at a time: reset, 4 x 1 MiB of
        // zeroing, the guest's code, the start.
        let mut units = 0;
        loop {
            units += 1;
            let progress = restart_step(&mut g.vm, UNIT, &mut |mem, gpa, len| {
                clean_guest_range(mem, gpa, len)
            });
            match progress {
                RestartProgress::Working => check!(units < 100),
                RestartProgress::Done => break,
                _ => check!(false),
            }
        }
        check_eq!(units, 1 + 4 + 1 + 1);
        check_eq!(g.vm.state, VmState::Running);
        check_eq!(g.vm.restarts, round);
        check_eq!(g.vm.vcpus[0].regs.elr, RAM_BASE);
        // Nothing allocated, freed or moved; the disk kept its contents.
        check_eq!(g.stage2_tables_used(), tables);
        check_eq!(g.vmid(), vmid);
        check_eq!(g.translate(RAM_BASE + RAM - 1), translation);
        check_eq!(g.vm.devices.len(), devices);
        check!(disk_intact(&mut g));
        check_eq!(g.vm.vgic.pending_count(0), 0);
    }
    Ok(())
}
