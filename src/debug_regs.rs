//! The guest's view of the PMU and the self-hosted debug registers.
//!
//! MDCR_EL2 traps every guest access to the performance monitors (TPM,
//! TPMCR) and to the debug registers (TDA, TDOSA, TDRA), so neither reaches
//! the hardware: a VM can neither read counters that ran while another VM
//! (or the hypervisor) executed, nor leave a breakpoint or watchpoint armed
//! for whatever runs next on the physical CPU. The trapped accesses arrive
//! as EC 0x18 exits and are emulated here with a simple model:
//!
//! - **No PMU.** Every PMU register reads as zero (PMCR_EL0.N = 0: no event
//!   counters, the cycle counter disabled) and ignores writes. Guests find
//!   the PMU only through a device-tree `arm,armv8-pmuv3` node, which the
//!   guest device tree does not have.
//! - **Debug registers without effect.** Breakpoint and watchpoint value
//!   and control registers, MDSCR_EL1, the OS lock and double lock,
//!   DBGPRCR_EL1, MDCCINT_EL1 and the claim tags are stored per vCPU and
//!   read back as written, but the hardware copies stay at their quiet
//!   values (MDSCR_EL1 = 0, so no breakpoint, watchpoint or step exception
//!   is ever generated). Everything else in the debug space (op0 = 2: the
//!   debug communication channel, MDRAR_EL1, DBGAUTHSTATUS_EL1, OSECCR_EL1)
//!   reads as zero and ignores writes.
//!
//! [`classify`] tells which model owns a trapped register; [`DebugRegs`]
//! holds one vCPU's stored values.

use hal::esr::{SysRegIss, sysreg_id};

/// Breakpoints (and watchpoints) a vCPU can store: the architectural
/// maximum of 16.
pub const MAX_BREAKPOINTS: usize = 16;

/// MDSCR_EL1 (S2_0_C0_C2_2).
pub const MDSCR_EL1: u32 = sysreg_id(2, 0, 0, 2, 2);
/// MDCCINT_EL1 (S2_0_C0_C2_0).
pub const MDCCINT_EL1: u32 = sysreg_id(2, 0, 0, 2, 0);
/// OSLAR_EL1 (S2_0_C1_C0_4), write-only: sets or clears the OS lock.
pub const OSLAR_EL1: u32 = sysreg_id(2, 0, 1, 0, 4);
/// OSLSR_EL1 (S2_0_C1_C1_4), read-only: OS lock status.
pub const OSLSR_EL1: u32 = sysreg_id(2, 0, 1, 1, 4);
/// OSDLR_EL1 (S2_0_C1_C3_4): the OS double lock.
pub const OSDLR_EL1: u32 = sysreg_id(2, 0, 1, 3, 4);
/// DBGPRCR_EL1 (S2_0_C1_C4_4): power-down request control.
pub const DBGPRCR_EL1: u32 = sysreg_id(2, 0, 1, 4, 4);
/// DBGCLAIMSET_EL1 (S2_0_C7_C8_6).
pub const DBGCLAIMSET_EL1: u32 = sysreg_id(2, 0, 7, 8, 6);
/// DBGCLAIMCLR_EL1 (S2_0_C7_C9_6).
pub const DBGCLAIMCLR_EL1: u32 = sysreg_id(2, 0, 7, 9, 6);
/// PMCR_EL0 (S3_3_C9_C12_0).
pub const PMCR_EL0: u32 = sysreg_id(3, 3, 9, 12, 0);

/// DBGBVR`n`_EL1 (S2_0_C0_C`n`_4).
pub const fn dbgbvr(n: u8) -> u32 {
    sysreg_id(2, 0, 0, n, 4)
}
/// DBGBCR`n`_EL1 (S2_0_C0_C`n`_5).
pub const fn dbgbcr(n: u8) -> u32 {
    sysreg_id(2, 0, 0, n, 5)
}
/// DBGWVR`n`_EL1 (S2_0_C0_C`n`_6).
pub const fn dbgwvr(n: u8) -> u32 {
    sysreg_id(2, 0, 0, n, 6)
}
/// DBGWCR`n`_EL1 (S2_0_C0_C`n`_7).
pub const fn dbgwcr(n: u8) -> u32 {
    sysreg_id(2, 0, 0, n, 7)
}

/// OSLSR_EL1.OSLM: the OS lock is implemented (OSLM = 0b10, bit 3).
const OSLSR_OSLM_IMPLEMENTED: u64 = 1 << 3;
/// OSLSR_EL1.OSLK, bit 1: the OS lock is locked.
const OSLSR_OSLK: u64 = 1 << 1;
/// Claim tag bits an implementation has (DBGCLAIMSET_EL1 reads as these).
const CLAIM_TAGS: u64 = 0xff;

/// ID_AA64DFR0_EL1.PMUVer `pmuver` says a PMUv3 is implemented (not 0 =
/// none, not 0xF = an IMPLEMENTATION DEFINED PMU).
pub const fn pmu_implemented(pmuver: u8) -> bool {
    pmuver != 0 && pmuver != 0xf
}

/// ID_AA64DFR0_EL1.PMUVer `pmuver` is PMUv3p1 or later, so MDCR_EL2.HPMD
/// (no event counting at EL2) exists.
pub const fn pmu_has_hpmd(pmuver: u8) -> bool {
    pmu_implemented(pmuver) && pmuver >= 4
}

/// Which emulation owns a trapped system register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A performance-monitor register: reads zero, ignores writes.
    Pmu,
    /// A debug register (op0 = 2): see [`DebugRegs`].
    Debug,
}

/// The model that emulates the trapped register `iss`, or `None` for a
/// register that is neither a PMU nor a debug register.
pub const fn classify(iss: SysRegIss) -> Option<Owner> {
    let (op0, op1, crn, crm, op2) = (iss.op0(), iss.op1(), iss.crn(), iss.crm(), iss.op2());
    if op0 == 2 {
        return Some(Owner::Debug);
    }
    if op0 != 3 {
        return None;
    }
    let pmu = match (op1, crn) {
        // PMCR, PMCNTEN*, PMOVS*, PMSWINC, PMSELR, PMCEID*, PMCCNTR,
        // PMXEV*, PMUSERENR.
        (3, 9) => crm >= 12 && crm <= 14,
        // PMEVCNTR<n>, PMEVTYPER<n>, PMCCFILTR.
        (3, 14) => crm >= 8,
        // PMINTENSET_EL1, PMINTENCLR_EL1, PMMIR_EL1.
        (0, 9) => crm == 14 && (op2 == 1 || op2 == 2 || op2 == 6),
        _ => false,
    };
    if pmu { Some(Owner::Pmu) } else { None }
}

/// One vCPU's stored debug registers (see the [module docs](self)). None of
/// these values is ever written to the hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugRegs {
    /// DBGBVR0..15_EL1.
    pub bvr: [u64; MAX_BREAKPOINTS],
    /// DBGBCR0..15_EL1.
    pub bcr: [u64; MAX_BREAKPOINTS],
    /// DBGWVR0..15_EL1.
    pub wvr: [u64; MAX_BREAKPOINTS],
    /// DBGWCR0..15_EL1.
    pub wcr: [u64; MAX_BREAKPOINTS],
    /// MDSCR_EL1.
    pub mdscr: u64,
    /// MDCCINT_EL1.
    pub mdccint: u64,
    /// OSLSR_EL1 as the guest reads it.
    pub oslsr: u64,
    /// OSDLR_EL1.
    pub osdlr: u64,
    /// DBGPRCR_EL1.
    pub dbgprcr: u64,
    /// The claim tags set.
    pub claim: u64,
}

impl Default for DebugRegs {
    fn default() -> Self {
        Self::reset()
    }
}

impl DebugRegs {
    /// The state at reset: everything zero, the OS lock locked.
    pub const fn reset() -> Self {
        DebugRegs {
            bvr: [0; MAX_BREAKPOINTS],
            bcr: [0; MAX_BREAKPOINTS],
            wvr: [0; MAX_BREAKPOINTS],
            wcr: [0; MAX_BREAKPOINTS],
            mdscr: 0,
            mdccint: 0,
            oslsr: OSLSR_OSLM_IMPLEMENTED | OSLSR_OSLK,
            osdlr: 0,
            dbgprcr: 0,
            claim: 0,
        }
    }

    /// The stored register a breakpoint/watchpoint identity names.
    fn bank_mut(&mut self, iss: SysRegIss) -> Option<&mut u64> {
        if iss.op0() != 2 || iss.op1() != 0 || iss.crn() != 0 {
            return None;
        }
        let n = iss.crm() as usize;
        match iss.op2() {
            4 => self.bvr.get_mut(n),
            5 => self.bcr.get_mut(n),
            6 => self.wvr.get_mut(n),
            7 => self.wcr.get_mut(n),
            _ => None,
        }
    }

    /// The value an MRS of the debug register `iss` returns.
    pub fn read(&mut self, iss: SysRegIss) -> u64 {
        match iss.id() {
            MDSCR_EL1 => self.mdscr,
            MDCCINT_EL1 => self.mdccint,
            OSLSR_EL1 => self.oslsr,
            OSDLR_EL1 => self.osdlr,
            DBGPRCR_EL1 => self.dbgprcr,
            DBGCLAIMSET_EL1 => CLAIM_TAGS,
            DBGCLAIMCLR_EL1 => self.claim,
            _ => self.bank_mut(iss).map_or(0, |reg| *reg),
        }
    }

    /// An MSR of `value` to the debug register `iss`: stored, never applied.
    pub fn write(&mut self, iss: SysRegIss, value: u64) {
        match iss.id() {
            MDSCR_EL1 => self.mdscr = value,
            MDCCINT_EL1 => self.mdccint = value,
            OSLAR_EL1 => {
                self.oslsr = (self.oslsr & !OSLSR_OSLK) | ((value & 1) << 1);
            }
            OSDLR_EL1 => self.osdlr = value & 1,
            DBGPRCR_EL1 => self.dbgprcr = value & 1,
            DBGCLAIMSET_EL1 => self.claim |= value & CLAIM_TAGS,
            DBGCLAIMCLR_EL1 => self.claim &= !(value & CLAIM_TAGS),
            _ => {
                if let Some(reg) = self.bank_mut(iss) {
                    *reg = value;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iss(id: u32) -> SysRegIss {
        SysRegIss(id)
    }

    #[test]
    fn classifies_pmu_debug_and_others() {
        for id in [
            PMCR_EL0,
            sysreg_id(3, 3, 9, 12, 1),  // PMCNTENSET_EL0
            sysreg_id(3, 3, 9, 13, 0),  // PMCCNTR_EL0
            sysreg_id(3, 3, 9, 14, 0),  // PMUSERENR_EL0
            sysreg_id(3, 3, 14, 8, 0),  // PMEVCNTR0_EL0
            sysreg_id(3, 3, 14, 12, 0), // PMEVTYPER0_EL0
            sysreg_id(3, 3, 14, 15, 7), // PMCCFILTR_EL0
            sysreg_id(3, 0, 9, 14, 1),  // PMINTENSET_EL1
        ] {
            assert_eq!(classify(iss(id)), Some(Owner::Pmu), "{id:#x}");
        }
        for id in [MDSCR_EL1, OSLAR_EL1, dbgbcr(5), sysreg_id(2, 3, 0, 1, 0)] {
            assert_eq!(classify(iss(id)), Some(Owner::Debug), "{id:#x}");
        }
        for id in [
            hal::esr::ICC_SGI1R_EL1,
            sysreg_id(3, 3, 14, 2, 1), // CNTP_CTL_EL0: a timer, not the PMU
            sysreg_id(3, 0, 9, 14, 0), // not a PMU register
        ] {
            assert_eq!(classify(iss(id)), None, "{id:#x}");
        }
    }

    #[test]
    fn pmu_versions() {
        assert!(!pmu_implemented(0));
        assert!(!pmu_implemented(0xf));
        assert!(pmu_implemented(1) && !pmu_has_hpmd(1), "PMUv3");
        assert!(pmu_has_hpmd(4) && pmu_has_hpmd(8), "PMUv3p1 and later");
        assert!(!pmu_has_hpmd(0xf));
    }

    #[test]
    fn breakpoints_are_stored_per_vcpu_and_read_back() {
        let mut a = DebugRegs::reset();
        let b = DebugRegs::reset();
        a.write(iss(dbgbvr(0)), 0x4000_1000);
        a.write(iss(dbgbcr(0)), 0x1e7);
        a.write(iss(dbgwcr(15)), 0x1ff);
        a.write(iss(MDSCR_EL1), 1 << 15);
        assert_eq!(a.read(iss(dbgbvr(0))), 0x4000_1000);
        assert_eq!(a.read(iss(dbgbcr(0))), 0x1e7);
        assert_eq!(a.read(iss(dbgwcr(15))), 0x1ff);
        assert_eq!(a.read(iss(MDSCR_EL1)), 1 << 15);
        assert_eq!(b, DebugRegs::reset(), "another vCPU is untouched");
        // Unbacked debug registers read as zero and ignore writes.
        let mdrar = iss(sysreg_id(2, 0, 1, 0, 0));
        a.write(mdrar, 7);
        assert_eq!(a.read(mdrar), 0);
    }

    #[test]
    fn os_lock_and_claim_tags() {
        let mut d = DebugRegs::reset();
        assert_eq!(d.read(iss(OSLSR_EL1)), 0b1010, "implemented, locked");
        d.write(iss(OSLAR_EL1), 0);
        assert_eq!(d.read(iss(OSLSR_EL1)), 0b1000, "unlocked");
        d.write(iss(DBGCLAIMSET_EL1), 0x105);
        assert_eq!(d.read(iss(DBGCLAIMCLR_EL1)), 0x05);
        d.write(iss(DBGCLAIMCLR_EL1), 0x01);
        assert_eq!(d.read(iss(DBGCLAIMCLR_EL1)), 0x04);
        assert_eq!(d.read(iss(DBGCLAIMSET_EL1)), 0xff);
    }
}
