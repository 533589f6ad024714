//! Moving a vCPU's EL1, timer and configuration registers in and out of the
//! physical CPU.
//!
//! `load` before the first entry of a vCPU on this CPU, `put` when another
//! vCPU (or none) is going to run here. While the same vCPU keeps running,
//! nothing but the general-purpose state switched by the world switch moves.

use aarch64_cpu::registers::{ID_AA64DFR0_EL1, MDCR_EL2, Readable, Writeable};
use hal::{read_sysreg, write_sysreg};

use crate::debug_regs;
use crate::vcpu::{El1Regs, Vcpu};

/// HCR_EL2 for running a guest: VM (stage 2), SWIO, FMO, IMO, AMO (physical
/// interrupts and SErrors to EL2), FB + BSU=inner-shareable (broadcast TLB
/// and barrier maintenance), TWI and TWE (WFI/WFE trap so an idle or
/// spinning vCPU yields), TSC (SMC traps: PSCI over SMC), RW (EL1 is
/// AArch64).
pub const HCR_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
    | (1 << 14)
    | (1 << 19)
    | (1 << 31);

/// CNTHCTL_EL2: EL1PCTEN (guest may read the physical counter); EL1PCEN is
/// clear, so the guest's EL1 *physical* timer registers trap (guests use
/// the virtual timer).
pub const CNTHCTL_GUEST: u64 = 1 << 0;

/// MDCR_EL2 for running guests: every PMU access (TPM, TPMCR) and every
/// debug register access (TDA, TDOSA, TDRA) traps to EL2 and is emulated
/// by [`debug_regs`], so no VM sees counts or breakpoints of another; TDE
/// stays 0 (debug exceptions are not routed to EL2, and with MDSCR_EL1 = 0
/// none is generated). HPMN keeps all counters in the guest range (PMCR.N),
/// and HPMD (PMUv3p1) prohibits counting at EL2 in case one ever ran.
fn init_debug_traps() {
    let pmuver = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer) as u8;
    let hpmn = if debug_regs::pmu_implemented(pmuver) {
        (read_sysreg!("pmcr_el0") >> 11) & 0x1f
    } else {
        0
    };
    let traps = MDCR_EL2::TPM::SET
        + MDCR_EL2::TPMCR::SET
        + MDCR_EL2::TDA::SET
        + MDCR_EL2::TDOSA::SET
        + MDCR_EL2::TDRA::SET
        + MDCR_EL2::TDE::RouteToEL1
        + MDCR_EL2::HPMN.val(hpmn);
    if debug_regs::pmu_has_hpmd(pmuver) {
        MDCR_EL2.write(traps + MDCR_EL2::HPMD::SET);
    } else {
        MDCR_EL2.write(traps);
    }
    // SAFETY: MDSCR_EL1 = 0 disables breakpoints, watchpoints and software
    // step for EL1/EL0; guests only ever see their own trapped copy.
    unsafe { write_sysreg!("mdscr_el1", 0) };
}

/// Per-CPU configuration for running guests, set once per physical CPU.
pub fn init_el2_for_guests() {
    // SAFETY: configuring the EL2 trap and timer controls for guest
    // execution; no guest is running and EL2's own translation is unaffected.
    unsafe {
        write_sysreg!("hcr_el2", HCR_GUEST);
        write_sysreg!("cnthctl_el2", CNTHCTL_GUEST);
        write_sysreg!("cntvoff_el2", 0);
        let midr = read_sysreg!("midr_el1");
        write_sysreg!("vpidr_el2", midr);
    }
    init_debug_traps();
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}

/// Loads `vcpu`'s EL1 registers, MPIDR and virtual timer into this CPU.
pub fn load(vcpu: &Vcpu, cntvoff: u64) {
    let r = &vcpu.el1;
    // SAFETY: these are the guest's EL1 registers; EL2 does not use them,
    // and the guest is not running while they are written.
    unsafe {
        write_sysreg!("sctlr_el1", r.sctlr);
        write_sysreg!("ttbr0_el1", r.ttbr0);
        write_sysreg!("ttbr1_el1", r.ttbr1);
        write_sysreg!("tcr_el1", r.tcr);
        write_sysreg!("mair_el1", r.mair);
        write_sysreg!("amair_el1", r.amair);
        write_sysreg!("vbar_el1", r.vbar);
        write_sysreg!("contextidr_el1", r.contextidr);
        write_sysreg!("tpidr_el0", r.tpidr_el0);
        write_sysreg!("tpidrro_el0", r.tpidrro_el0);
        write_sysreg!("tpidr_el1", r.tpidr_el1);
        write_sysreg!("cpacr_el1", r.cpacr);
        write_sysreg!("esr_el1", r.esr);
        write_sysreg!("far_el1", r.far);
        write_sysreg!("afsr0_el1", r.afsr0);
        write_sysreg!("afsr1_el1", r.afsr1);
        write_sysreg!("par_el1", r.par);
        write_sysreg!("cntkctl_el1", r.cntkctl);
        write_sysreg!("sp_el1", r.sp_el1);
        write_sysreg!("elr_el1", r.elr_el1);
        write_sysreg!("spsr_el1", r.spsr_el1);
        write_sysreg!("csselr_el1", r.csselr);
        write_sysreg!("vmpidr_el2", vcpu.mpidr());
        write_sysreg!("cntvoff_el2", cntvoff);
        write_sysreg!("cntv_cval_el0", vcpu.timer.cval);
        write_sysreg!("cntv_ctl_el0", vcpu.timer.ctl & 3);
        core::arch::asm!("isb");
    }
}

/// Saves this CPU's EL1 registers and virtual timer into `vcpu` and stops
/// the timer so it cannot fire for whatever runs next.
pub fn put(vcpu: &mut Vcpu) {
    let r: &mut El1Regs = &mut vcpu.el1;
    r.sctlr = read_sysreg!("sctlr_el1");
    r.ttbr0 = read_sysreg!("ttbr0_el1");
    r.ttbr1 = read_sysreg!("ttbr1_el1");
    r.tcr = read_sysreg!("tcr_el1");
    r.mair = read_sysreg!("mair_el1");
    r.amair = read_sysreg!("amair_el1");
    r.vbar = read_sysreg!("vbar_el1");
    r.contextidr = read_sysreg!("contextidr_el1");
    r.tpidr_el0 = read_sysreg!("tpidr_el0");
    r.tpidrro_el0 = read_sysreg!("tpidrro_el0");
    r.tpidr_el1 = read_sysreg!("tpidr_el1");
    r.cpacr = read_sysreg!("cpacr_el1");
    r.esr = read_sysreg!("esr_el1");
    r.far = read_sysreg!("far_el1");
    r.afsr0 = read_sysreg!("afsr0_el1");
    r.afsr1 = read_sysreg!("afsr1_el1");
    r.par = read_sysreg!("par_el1");
    r.cntkctl = read_sysreg!("cntkctl_el1");
    r.sp_el1 = read_sysreg!("sp_el1");
    r.elr_el1 = read_sysreg!("elr_el1");
    r.spsr_el1 = read_sysreg!("spsr_el1");
    r.csselr = read_sysreg!("csselr_el1");
    vcpu.timer.cval = read_sysreg!("cntv_cval_el0");
    vcpu.timer.ctl = read_sysreg!("cntv_ctl_el0");
    // SAFETY: disabling the EL1 virtual timer of the vCPU being descheduled;
    // its state was saved just above.
    unsafe {
        write_sysreg!("cntv_ctl_el0", 0);
        core::arch::asm!("isb");
    }
}

/// Reads the running vCPU's CNTV_CTL_EL0.
pub fn timer_ctl() -> u64 {
    read_sysreg!("cntv_ctl_el0")
}

/// Writes the running vCPU's CNTV_CTL_EL0.
pub fn set_timer_ctl(ctl: u64) {
    // SAFETY: the loaded vCPU's virtual timer control; only ENABLE and IMASK
    // are writable.
    unsafe {
        write_sysreg!("cntv_ctl_el0", ctl & 3);
        core::arch::asm!("isb");
    }
}

/// Activates a VM's stage-2 translation on this CPU.
pub fn activate_stage2(vtcr: u64, vttbr: u64) {
    // SAFETY: VTCR/VTTBR only affect EL1/EL0 translation, which runs only
    // after this; the tables were completed by the stage-2 builder.
    unsafe {
        write_sysreg!("vtcr_el2", vtcr);
        write_sysreg!("vttbr_el2", vttbr);
        core::arch::asm!("isb");
    }
}

/// Invalidates all stage-1 and stage-2 TLB entries of the VMID currently
/// in VTTBR_EL2, on every CPU in the inner-shareable domain.
pub fn flush_guest_tlb() {
    // SAFETY: TLB maintenance has no effect beyond dropping cached
    // translations of the current VMID.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb");
    }
}

/// The physical counter (CNTPCT_EL0).
pub fn counter() -> u64 {
    // SAFETY: ISB orders the counter read after earlier instructions.
    unsafe { core::arch::asm!("isb") };
    read_sysreg!("cntpct_el0")
}

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn counter_frequency() -> u64 {
    read_sysreg!("cntfrq_el0")
}
