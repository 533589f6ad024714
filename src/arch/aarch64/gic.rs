//! The physical GICv3: the hypervisor owns it.
//!
//! All physical interrupts are Group 1, routed to EL2 while a guest runs
//! (HCR_EL2.IMO) and read from the CPU interface by the run loop with
//! [`acknowledge`] / [`end_of_interrupt`] (EOImode 0: priority drop and
//! deactivation together). The hypervisor never takes an IRQ exception at
//! EL2 itself: it runs with IRQs masked and polls after a guest exit or an
//! idle `wfi`.

use aarch64_cpu::registers::ICC_SRE_EL2;
use hal::gicv3::{GicdRegisters, GicrFrame, gicd_ctlr, gicr_waker};
use hal::{read_sysreg, write_sysreg};
use tock_registers::interfaces::{Readable, Writeable};

use crate::platform::{
    GICD_BASE, GICR_BASE, GICR_STRIDE, INTID_HYP_TIMER, INTID_VGIC_MAINTENANCE, INTID_VIRT_TIMER,
    SGI_KICK,
};

/// Priority the hypervisor gives every interrupt it enables.
const PRIORITY: u8 = 0xa0;
/// First INTID that is not an interrupt (1020..=1023 are special).
const SPECIAL_INTID: u32 = 1020;

fn gicd() -> &'static GicdRegisters {
    // SAFETY: the distributor is at GICD_BASE on QEMU virt, mapped as
    // Device memory at EL2, and only accessed through tock-registers cells.
    unsafe { &*(GICD_BASE as usize as *const GicdRegisters) }
}

fn gicr(cpu: usize) -> &'static GicrFrame {
    // SAFETY: redistributor `cpu` is at GICR_BASE + cpu * GICR_STRIDE on QEMU
    // virt (one per CPU, in MPIDR order), mapped as Device memory at EL2.
    unsafe { &*((GICR_BASE + cpu as u64 * GICR_STRIDE) as usize as *const GicrFrame) }
}

fn wait_distributor_rwp() {
    while gicd().ctlr.get() & gicd_ctlr::RWP != 0 {
        core::hint::spin_loop();
    }
}

/// Number of INTIDs the distributor implements (32 * (ITLinesNumber + 1)).
pub fn lines() -> u32 {
    32 * ((gicd().typer.get() & 0x1f) + 1)
}

/// Number of physical CPUs, counted as redistributor frames up to the one
/// whose GICR_TYPER.Last bit is set (one redistributor per CPU).
pub fn cpu_count() -> usize {
    for cpu in 0..crate::platform::MAX_PCPUS {
        if gicr(cpu).rd.typer.get() & hal::gicv3::gicr_typer::LAST != 0 {
            return cpu + 1;
        }
    }
    crate::platform::MAX_PCPUS
}

/// Distributor set-up, once, on the boot CPU: every SPI disabled, Group 1,
/// default priority; affinity routing and Group 1 enabled.
pub fn init_distributor() {
    let d = gicd();
    d.ctlr.set(0);
    wait_distributor_rwp();
    let words = (lines() / 32) as usize;
    for i in 1..words.min(d.icenabler.len()) {
        d.icenabler[i].set(u32::MAX);
        d.icpendr[i].set(u32::MAX);
        d.igroupr[i].set(u32::MAX);
    }
    for intid in 32..(lines() as usize).min(d.ipriorityr.len()) {
        d.ipriorityr[intid].set(PRIORITY);
    }
    wait_distributor_rwp();
    d.ctlr.set(gicd_ctlr::ARE | gicd_ctlr::ENABLE_GRP1);
    wait_distributor_rwp();
}

/// Per-CPU set-up: wake the redistributor, configure SGIs/PPIs, enable the
/// system-register CPU interface for EL2 (and for EL1's virtual interface).
pub fn init_cpu(cpu: usize) {
    let r = gicr(cpu);
    let waker = r.rd.waker.get() & !gicr_waker::PROCESSOR_SLEEP;
    r.rd.waker.set(waker);
    while r.rd.waker.get() & gicr_waker::CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    r.sgi.icenabler0.set(u32::MAX);
    r.sgi.icpendr0.set(u32::MAX);
    r.sgi.igroupr0.set(u32::MAX);
    for prio in r.sgi.ipriorityr.iter() {
        prio.set(PRIORITY);
    }
    r.sgi.isenabler0.set(
        (1 << SGI_KICK)
            | (1 << INTID_VGIC_MAINTENANCE)
            | (1 << INTID_HYP_TIMER)
            | (1 << INTID_VIRT_TIMER),
    );
    // SAFETY: only this CPU's GIC interface configuration changes; no guest runs.
    // Enable the system-register interface at EL2 (SRE, DFB, DIB, and Enable
    // so EL1 may use ICC_SRE_EL1), then: all priorities unmasked, no
    // preemption groups, EOImode 0, Group 1 on.
    unsafe {
        ICC_SRE_EL2.write(
            ICC_SRE_EL2::ENABLE::SET
                + ICC_SRE_EL2::DIB::SET
                + ICC_SRE_EL2::DFB::SET
                + ICC_SRE_EL2::SRE::SET,
        );
        core::arch::asm!("isb");
        write_sysreg!("icc_pmr_el1", 0xff);
        write_sysreg!("icc_bpr1_el1", 0);
        // By name: `aarch64-cpu` 11.2 defines ICC_CTLR_EL1 read-only.
        write_sysreg!("icc_ctlr_el1", 0);
        write_sysreg!("icc_igrpen1_el1", 1);
        core::arch::asm!("isb");
    }
}

/// Routes SPI `intid` to physical CPU `cpu` and enables it.
pub fn enable_spi(intid: u32, cpu: usize) {
    let d = gicd();
    let index = intid as usize;
    if let Some(route) = d.irouter.get(index) {
        route.set(cpu as u64 & 0xff);
    }
    if let Some(word) = d.isenabler.get(index / 32) {
        word.set(1 << (intid % 32));
    }
}

/// Acknowledges the highest-priority pending interrupt, if any.
pub fn acknowledge() -> Option<u32> {
    let intid = (read_sysreg!("icc_iar1_el1") & 0xff_ffff) as u32;
    (intid < SPECIAL_INTID).then_some(intid)
}

/// Signals the end of handling `intid` (drop priority and deactivate).
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: writing back an INTID previously returned by `acknowledge`.
    unsafe {
        write_sysreg!("icc_eoir1_el1", intid as u64);
        core::arch::asm!("isb");
    }
}

/// Sends SGI `intid` to physical CPU `cpu` (Aff0 = cpu, Aff1..3 = 0).
pub fn send_sgi(intid: u32, cpu: usize) {
    let value = ((intid as u64 & 0xf) << 24) | (1u64 << (cpu & 0xf));
    // SAFETY: generating an SGI only sets an interrupt pending on the
    // target CPU; barriers make earlier memory writes visible first.
    unsafe {
        core::arch::asm!("dsb ishst");
        write_sysreg!("icc_sgi1r_el1", value);
        core::arch::asm!("isb");
    }
}
