//! The CPU feature ID registers a guest reads.
//!
//! HCR_EL2.TID3 traps every guest read of the ID register space (op0 = 3,
//! op1 = 0, CRn = 0, CRm = 1..7: `ID_AA64*`, the AArch32 `ID_*` and
//! `MVFR*`, and the reserved encodings between them). The reads arrive as
//! EC 0x18 exits and are answered from a [`GuestIdRegs`] table built once
//! from the host's values by [`GuestIdRegs::sanitize`]:
//!
//! - **AArch64 registers are allow-lists.** Only fields named in this module
//!   keep the host's value (some capped); every other field reads as zero.
//!   A feature whose state the hypervisor does not switch per vCPU, that
//!   needs EL2 set-up the hypervisor does not do, or that only an EL2 could
//!   use, is therefore hidden: MTE, SME, SPE, TRBE and trace, AMU, MPAM,
//!   RME, TME, BRBE, LS64, MOPS, WFxT, LOR, GCS, NMI, the Secure and
//!   nested-virtualization fields, and every register the hypervisor does
//!   not know (they read as zero, "not implemented").
//! - **The PMU is absent** (ID_AA64DFR0_EL1.PMUVer = 0, ID_DFR0_EL1.PerfMon
//!   = 0), consistent with [`crate::debug_regs`], which emulates every PMU
//!   register as zero.
//! - **SVE and pointer authentication** are shown only when the hypervisor
//!   switches their state ([`Switched`]): SVE's Z, P, FFR and ZCR_EL1 per
//!   vCPU, with the vector length capped at [`SVE_MAX_VL_BYTES`]; the five
//!   pointer-authentication keys per vCPU.
//! - **BTI** (ID_AA64PFR1_EL1.BT) has no state beyond SCTLR_EL1 and PSTATE,
//!   which are switched anyway, so it is shown as the host has it.
//! - **AArch32 registers** keep the host's values except the PMU, trace and
//!   AMU fields.

use hal::esr::{SysRegIss, sysreg_id};

/// Largest SVE vector length a guest gets, in bytes (512 bits, the A64FX's):
/// ZCR_EL2.LEN is set to cap it, and every vCPU stores its Z registers at
/// this size.
pub const SVE_MAX_VL_BYTES: usize = 64;

/// ZCR_EL2.LEN for [`SVE_MAX_VL_BYTES`]: the vector length is (LEN + 1) x
/// 128 bits.
pub const ZCR_EL2_LEN: u64 = (SVE_MAX_VL_BYTES as u64 * 8 / 128) - 1;

/// Registers in the trapped space: CRm 1..7, op2 0..7.
pub const ID_REG_COUNT: usize = 56;

/// The slot of an ID register (CRm 1..7, op2 0..7) in a table.
pub const fn slot(crm: u8, op2: u8) -> usize {
    (crm as usize - 1) * 8 + op2 as usize
}

/// The encoding of the ID register in `slot` (for reading the host value).
pub const fn slot_id(slot: usize) -> u32 {
    sysreg_id(3, 0, 0, (slot / 8 + 1) as u8, (slot % 8) as u8)
}

/// ID_PFR0_EL1.
pub const ID_PFR0: usize = slot(1, 0);
/// ID_PFR1_EL1.
pub const ID_PFR1: usize = slot(1, 1);
/// ID_DFR0_EL1.
pub const ID_DFR0: usize = slot(1, 2);
/// ID_AFR0_EL1.
pub const ID_AFR0: usize = slot(1, 3);
/// ID_MMFR0_EL1 .. ID_MMFR3_EL1 are slots 4..7 of CRm 1.
pub const ID_MMFR0: usize = slot(1, 4);
/// ID_ISAR0_EL1 .. ID_ISAR5_EL1 are slots 0..5 of CRm 2.
pub const ID_ISAR0: usize = slot(2, 0);
/// ID_MMFR4_EL1.
pub const ID_MMFR4: usize = slot(2, 6);
/// ID_ISAR6_EL1.
pub const ID_ISAR6: usize = slot(2, 7);
/// MVFR0_EL1 .. MVFR2_EL1 are slots 0..2 of CRm 3.
pub const MVFR0: usize = slot(3, 0);
/// ID_PFR2_EL1.
pub const ID_PFR2: usize = slot(3, 4);
/// ID_DFR1_EL1.
pub const ID_DFR1: usize = slot(3, 5);
/// ID_MMFR5_EL1.
pub const ID_MMFR5: usize = slot(3, 6);
/// ID_AA64PFR0_EL1.
pub const AA64PFR0: usize = slot(4, 0);
/// ID_AA64PFR1_EL1.
pub const AA64PFR1: usize = slot(4, 1);
/// ID_AA64ZFR0_EL1.
pub const AA64ZFR0: usize = slot(4, 4);
/// ID_AA64SMFR0_EL1.
pub const AA64SMFR0: usize = slot(4, 5);
/// ID_AA64DFR0_EL1.
pub const AA64DFR0: usize = slot(5, 0);
/// ID_AA64ISAR0_EL1.
pub const AA64ISAR0: usize = slot(6, 0);
/// ID_AA64ISAR1_EL1.
pub const AA64ISAR1: usize = slot(6, 1);
/// ID_AA64ISAR2_EL1.
pub const AA64ISAR2: usize = slot(6, 2);
/// ID_AA64MMFR0_EL1.
pub const AA64MMFR0: usize = slot(7, 0);
/// ID_AA64MMFR1_EL1.
pub const AA64MMFR1: usize = slot(7, 1);
/// ID_AA64MMFR2_EL1.
pub const AA64MMFR2: usize = slot(7, 2);

/// The 4-bit ID field at `shift` of `value`.
pub const fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// ID_AA64PFR0_EL1.SVE: SVE is implemented.
pub const fn has_sve(aa64pfr0: u64) -> bool {
    field(aa64pfr0, 32) != 0
}

/// Pointer authentication is implemented: any of ID_AA64ISAR1_EL1.APA,
/// API, GPA, GPI or ID_AA64ISAR2_EL1.APA3, GPA3 is non-zero.
pub const fn has_pauth(aa64isar1: u64, aa64isar2: u64) -> bool {
    field(aa64isar1, 4) != 0
        || field(aa64isar1, 8) != 0
        || field(aa64isar1, 24) != 0
        || field(aa64isar1, 28) != 0
        || field(aa64isar2, 8) != 0
        || field(aa64isar2, 12) != 0
}

/// Which per-CPU feature states the hypervisor switches per vCPU on this
/// machine (and may therefore show to guests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switched {
    /// SVE: Z, P, FFR and ZCR_EL1.
    pub sve: bool,
    /// Pointer authentication: the APIA, APIB, APDA, APDB and APGA keys.
    pub pauth: bool,
}

/// What happens to one 4-bit field.
#[derive(Clone, Copy)]
struct Field {
    shift: u8,
    /// Unsigned fields are capped at this value; 0xf keeps the host's value.
    max: u8,
    /// Shown only if this state is switched.
    needs: Needs,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Sve,
    Pauth,
}

const fn keep(shift: u8) -> Field {
    Field {
        shift,
        max: 0xf,
        needs: Needs::Nothing,
    }
}

const fn cap(shift: u8, max: u8) -> Field {
    Field {
        shift,
        max,
        needs: Needs::Nothing,
    }
}

const fn pauth(shift: u8) -> Field {
    Field {
        shift,
        max: 0xf,
        needs: Needs::Pauth,
    }
}

const fn sve(shift: u8) -> Field {
    Field {
        shift,
        max: 0xf,
        needs: Needs::Sve,
    }
}

/// ID_AA64PFR0_EL1: EL0, EL1, EL3, FP, AdvSIMD, GIC (system registers,
/// capped at GICv3), RAS (capped at v1), SVE, DIT, CSV2, CSV3. Hidden: EL2
/// (the guest has none), SEL2, MPAM, AMU, RME.
const PFR0_FIELDS: &[Field] = &[
    keep(0),
    keep(4),
    keep(12),
    keep(16),
    keep(20),
    cap(24, 1),
    cap(28, 1),
    sve(32),
    keep(48),
    keep(56),
    keep(60),
];
/// ID_AA64PFR1_EL1: BT, SSBS, RAS_frac, CSV2_frac. Hidden: MTE, MTE_frac,
/// MPAM_frac, SME, RNDR_trap, NMI, GCS and later fields.
const PFR1_FIELDS: &[Field] = &[keep(0), keep(4), keep(12), keep(32)];
/// ID_AA64ZFR0_EL1 (all zero unless SVE is shown): SVEver, AES, BitPerm,
/// BF16, B16B16, SHA3, SM4, I8MM, F32MM, F64MM.
const ZFR0_FIELDS: &[Field] = &[
    sve(0),
    sve(4),
    sve(16),
    sve(20),
    sve(24),
    sve(32),
    sve(40),
    sve(44),
    sve(52),
    sve(56),
];
/// ID_AA64DFR0_EL1: DebugVer, BRPs, WRPs, CTX_CMPs, DoubleLock. Hidden:
/// TraceVer, PMUVer (no PMU), PMSS, SEBEP, PMSVer (SPE), TraceFilt,
/// TraceBuffer (TRBE), MTPMU, BRBE, ExtTrcBuff, HPMN0.
const DFR0_FIELDS: &[Field] = &[keep(0), keep(12), keep(20), keep(28), keep(36)];
/// ID_AA64ISAR0_EL1: everything but TME (transactional memory).
const ISAR0_FIELDS: &[Field] = &[
    keep(4),
    keep(8),
    keep(12),
    keep(16),
    keep(20),
    keep(28),
    keep(32),
    keep(36),
    keep(40),
    keep(44),
    keep(48),
    keep(52),
    keep(56),
    keep(60),
];
/// ID_AA64ISAR1_EL1: DPB, JSCVT, FCMA, LRCPC, FRINTTS, SB, SPECRES, BF16,
/// DGH, I8MM, XS; APA, API, GPA, GPI with pointer authentication. Hidden:
/// LS64.
const ISAR1_FIELDS: &[Field] = &[
    keep(0),
    pauth(4),
    pauth(8),
    keep(12),
    keep(16),
    keep(20),
    pauth(24),
    pauth(28),
    keep(32),
    keep(36),
    keep(40),
    keep(44),
    keep(48),
    keep(52),
    keep(56),
];
/// ID_AA64ISAR2_EL1: RPRES, BC, CLRBHB, CSSC; GPA3, APA3, PAC_frac with
/// pointer authentication. Hidden: WFxT, MOPS (both need EL2 set-up) and
/// later fields.
const ISAR2_FIELDS: &[Field] = &[
    keep(4),
    pauth(8),
    pauth(12),
    keep(20),
    pauth(24),
    keep(28),
    keep(52),
];
/// ID_AA64MMFR0_EL1: PARange, ASIDBits, BigEnd, SNSMem, BigEndEL0,
/// TGran16/64/4, ExS, ECV (capped at 1: no EL2 offset register). Hidden:
/// the stage-2 granule fields and FGT (EL2 features).
const MMFR0_FIELDS: &[Field] = &[
    keep(0),
    keep(4),
    keep(8),
    keep(12),
    keep(16),
    keep(20),
    keep(24),
    keep(28),
    keep(44),
    cap(60, 1),
];
/// ID_AA64MMFR1_EL1: HAFDBS, HPDS, PAN, SpecSEI, XNX, ETS, AFP, nTLBPA,
/// ECBHB. Hidden: VMIDBits, VH, TWED, HCX (EL2 features), LO (LORegions),
/// TIDCP1, CMOW.
const MMFR1_FIELDS: &[Field] = &[
    keep(0),
    keep(12),
    keep(20),
    keep(24),
    keep(28),
    keep(36),
    keep(44),
    keep(48),
    keep(60),
];
/// ID_AA64MMFR2_EL1: CnP, UAO, LSM, IESB, VARange, CCIDX, ST, AT, IDS, TTL,
/// BBM, E0PD. Hidden: NV, FWB, EVT (EL2 features).
const MMFR2_FIELDS: &[Field] = &[
    keep(0),
    keep(4),
    keep(8),
    keep(12),
    keep(16),
    keep(20),
    keep(28),
    keep(32),
    keep(36),
    keep(48),
    keep(52),
    keep(60),
];

/// How one register of the space is derived from the host's.
enum Rule {
    /// Only these fields, the rest zero.
    Allow(&'static [Field]),
    /// The host's value with these fields (shifts) zeroed.
    Hide(&'static [u8]),
    /// Reads as zero.
    Zero,
}

fn rule(slot: usize) -> Rule {
    match slot {
        AA64PFR0 => Rule::Allow(PFR0_FIELDS),
        AA64PFR1 => Rule::Allow(PFR1_FIELDS),
        AA64ZFR0 => Rule::Allow(ZFR0_FIELDS),
        AA64DFR0 => Rule::Allow(DFR0_FIELDS),
        AA64ISAR0 => Rule::Allow(ISAR0_FIELDS),
        AA64ISAR1 => Rule::Allow(ISAR1_FIELDS),
        AA64ISAR2 => Rule::Allow(ISAR2_FIELDS),
        AA64MMFR0 => Rule::Allow(MMFR0_FIELDS),
        AA64MMFR1 => Rule::Allow(MMFR1_FIELDS),
        AA64MMFR2 => Rule::Allow(MMFR2_FIELDS),
        // ID_PFR0_EL1.AMU.
        ID_PFR0 => Rule::Hide(&[20]),
        // ID_DFR0_EL1: CopTrc, MMapTrc, PerfMon, TraceFilt.
        ID_DFR0 => Rule::Hide(&[12, 16, 24, 28]),
        ID_PFR1 | ID_ISAR6 | ID_MMFR4 | ID_PFR2 | ID_MMFR5 => Rule::Hide(&[]),
        s if (ID_MMFR0..ID_MMFR0 + 4).contains(&s)
            || (ID_ISAR0..ID_ISAR0 + 6).contains(&s)
            || (MVFR0..MVFR0 + 3).contains(&s) =>
        {
            Rule::Hide(&[])
        }
        // ID_AFR0, ID_DFR1, ID_AA64PFR2, ID_AA64SMFR0, ID_AA64FPFR0,
        // ID_AA64DFR1, ID_AA64AFR0/1, ID_AA64ISAR3, ID_AA64MMFR3/4 and the
        // reserved encodings.
        _ => Rule::Zero,
    }
}

fn apply(rule: Rule, host: u64, switched: Switched) -> u64 {
    match rule {
        Rule::Zero => 0,
        Rule::Hide(shifts) => shifts
            .iter()
            .fold(host, |value, &shift| value & !(0xf << shift)),
        Rule::Allow(fields) => fields.iter().fold(0, |value, f| {
            let shown = match f.needs {
                Needs::Nothing => true,
                Needs::Sve => switched.sve,
                Needs::Pauth => switched.pauth,
            };
            if !shown {
                return value;
            }
            let host_field = field(host, u32::from(f.shift));
            value | (host_field.min(u64::from(f.max)) << f.shift)
        }),
    }
}

/// The ID register values every vCPU reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestIdRegs {
    values: [u64; ID_REG_COUNT],
}

impl GuestIdRegs {
    /// Every ID register zero (before [`GuestIdRegs::sanitize`] ran).
    pub const fn zero() -> Self {
        GuestIdRegs {
            values: [0; ID_REG_COUNT],
        }
    }

    /// The guest's view of the host's ID registers `host` (indexed by
    /// [`slot`]), given the states the hypervisor switches. SVE or pointer
    /// authentication the host lacks stays hidden whatever `switched` says.
    pub fn sanitize(host: &[u64; ID_REG_COUNT], switched: Switched) -> Self {
        let switched = Switched {
            sve: switched.sve && has_sve(host[AA64PFR0]),
            pauth: switched.pauth && has_pauth(host[AA64ISAR1], host[AA64ISAR2]),
        };
        GuestIdRegs {
            values: core::array::from_fn(|s| apply(rule(s), host[s], switched)),
        }
    }

    /// The value of the register in `slot`.
    pub fn get(&self, slot: usize) -> u64 {
        self.values.get(slot).copied().unwrap_or(0)
    }

    /// The value a trapped MRS of `iss` returns, or `None` if `iss` is not
    /// in the ID register space.
    pub fn read(&self, iss: SysRegIss) -> Option<u64> {
        let in_space = iss.op0() == 3 && iss.op1() == 0 && iss.crn() == 0;
        if !in_space || !(1..=7).contains(&iss.crm()) {
            return None;
        }
        Some(self.get(slot(iss.crm(), iss.op2())))
    }
}

/// The table the hypervisor answers from, set once at boot by the arch
/// layer from the boot CPU's registers (every CPU of the machine is the
/// same model).
static GUEST_ID_REGS: spin::Once<GuestIdRegs> = spin::Once::new();

/// Installs the guests' ID register table (the first call wins).
pub fn install(regs: GuestIdRegs) -> &'static GuestIdRegs {
    GUEST_ID_REGS.call_once(|| regs)
}

/// The installed table, or an all-zero one before [`install`] (the host
/// tests and any VM run before boot set-up).
pub fn guest() -> &'static GuestIdRegs {
    static ZERO: GuestIdRegs = GuestIdRegs::zero();
    GUEST_ID_REGS.get().unwrap_or(&ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ID values of QEMU 7.2's `-cpu max` (as read at EL2 under TCG), plus
    /// MTE, SME and AMU fields a real Armv9 core would add.
    fn armv9_host() -> [u64; ID_REG_COUNT] {
        let mut host = [0u64; ID_REG_COUNT];
        host[AA64PFR0] = 0x1101_0011_1111_1122 // QEMU max-like: SVE, GIC, RAS, EL0-3
            | (1 << 44) // AMU
            | (1 << 40) // MPAM
            | (1 << 36) // SEL2
            | (1 << 52); // RME
        host[AA64PFR1] = 0x0000_0000_0100_0321; // SME, MTE 3, SSBS 2, BT 1
        host[AA64ZFR0] = 0x0110_1100_0011_0011;
        host[AA64SMFR0] = 0x80f0_0000_0000_0000;
        host[AA64DFR0] = 0x0000_1011_f010_5319 // QEMU-like: PMUv3p5, 6 BRPs
            | (1 << 32) // SPE
            | (1 << 44); // TRBE
        host[AA64ISAR0] = 0x1221_1111_1111_2120 | (1 << 24); // + TME
        host[AA64ISAR1] = 0x1011_1010_1010_1111 | (1 << 60) // LS64
            | (1 << 8); // API (IMPDEF algorithm)
        host[AA64ISAR2] = 0x0000_0000_0011_0001; // WFxT, MOPS
        host[AA64MMFR0] = 0x1000_0000_0f10_0025;
        host[AA64MMFR1] = 0x0000_0011_1012_1122;
        host[AA64MMFR2] = 0x1221_0011_1001_1011;
        host[ID_PFR0] = 0x0010_0131; // AMU
        host[ID_DFR0] = 0x1101_1000 | (1 << 16) | (1 << 12);
        host[ID_ISAR0] = 0x0210_1110;
        host[MVFR0] = 0x1022_2222;
        host[ID_AFR0] = 0x1;
        host[slot(7, 3)] = 0x11; // ID_AA64MMFR3 (not known here)
        host
    }

    const ALL: Switched = Switched {
        sve: true,
        pauth: true,
    };

    #[test]
    fn slots_and_encodings() {
        assert_eq!(slot(1, 0), 0);
        assert_eq!(slot(7, 7), ID_REG_COUNT - 1);
        assert_eq!(slot_id(AA64PFR0), sysreg_id(3, 0, 0, 4, 0));
        assert_eq!(slot_id(AA64ZFR0), sysreg_id(3, 0, 0, 4, 4));
        assert_eq!(slot_id(ID_MMFR5), sysreg_id(3, 0, 0, 3, 6));
        assert_eq!(ZCR_EL2_LEN, 3, "512-bit vectors");
    }

    #[test]
    fn per_cpu_features_not_switched_are_hidden() {
        let g = GuestIdRegs::sanitize(&armv9_host(), ALL);
        let pfr0 = g.get(AA64PFR0);
        assert_eq!(field(pfr0, 44), 0, "AMU");
        assert_eq!(field(pfr0, 40), 0, "MPAM");
        assert_eq!(field(pfr0, 36), 0, "SEL2");
        assert_eq!(field(pfr0, 52), 0, "RME");
        assert_eq!(field(pfr0, 8), 0, "EL2: the guest has none");
        assert_eq!(field(pfr0, 4), 2, "EL1 AArch64 + AArch32 kept");
        assert_eq!(field(pfr0, 24), 1, "GIC system registers");
        let pfr1 = g.get(AA64PFR1);
        assert_eq!(field(pfr1, 8), 0, "MTE");
        assert_eq!(field(pfr1, 24), 0, "SME");
        assert_eq!(field(pfr1, 0), 1, "BTI shown");
        assert_eq!(field(pfr1, 4), 2, "SSBS shown");
        assert_eq!(g.get(AA64SMFR0), 0);
        let dfr0 = g.get(AA64DFR0);
        assert_eq!(field(dfr0, 8), 0, "no PMU");
        assert_eq!(field(dfr0, 32), 0, "no SPE");
        assert_eq!(field(dfr0, 44), 0, "no TRBE");
        assert_eq!(field(dfr0, 4), 0, "no trace");
        assert_eq!(field(dfr0, 0), 9, "debug architecture kept");
        assert_eq!(field(dfr0, 12), 5, "breakpoints kept");
        assert_eq!(field(g.get(AA64ISAR0), 24), 0, "TME");
        assert_eq!(field(g.get(AA64ISAR0), 4), 2, "AES + PMULL kept");
        assert_eq!(field(g.get(AA64ISAR1), 60), 0, "LS64");
        assert_eq!(field(g.get(AA64ISAR2), 0), 0, "WFxT");
        assert_eq!(field(g.get(AA64ISAR2), 16), 0, "MOPS");
        assert_eq!(g.get(slot(7, 3)), 0, "an unknown register reads zero");
        assert_eq!(field(g.get(ID_PFR0), 20), 0, "AArch32 AMU");
        assert_eq!(field(g.get(ID_PFR0), 0), 1, "AArch32 state kept");
        assert_eq!(field(g.get(ID_DFR0), 24), 0, "AArch32 PerfMon");
        assert_eq!(field(g.get(ID_DFR0), 16), 0, "AArch32 memory-mapped trace");
        assert_eq!(field(g.get(ID_DFR0), 0), 0, "CopDbg kept (was 0)");
        assert_eq!(g.get(ID_ISAR0), 0x0210_1110);
        assert_eq!(g.get(MVFR0), 0x1022_2222);
        assert_eq!(g.get(ID_AFR0), 0);
    }

    #[test]
    fn sve_shown_only_when_switched() {
        let host = armv9_host();
        let on = GuestIdRegs::sanitize(&host, ALL);
        assert_eq!(field(on.get(AA64PFR0), 32), 1);
        assert_eq!(on.get(AA64ZFR0), host[AA64ZFR0]);
        let off = GuestIdRegs::sanitize(
            &host,
            Switched {
                sve: false,
                pauth: true,
            },
        );
        assert_eq!(field(off.get(AA64PFR0), 32), 0);
        assert_eq!(off.get(AA64ZFR0), 0, "ZFR0 consistent with PFR0.SVE");
    }

    #[test]
    fn pauth_shown_only_when_switched() {
        let host = armv9_host();
        let on = GuestIdRegs::sanitize(&host, ALL);
        assert_eq!(field(on.get(AA64ISAR1), 8), 1, "API");
        assert!(has_pauth(on.get(AA64ISAR1), on.get(AA64ISAR2)));
        let off = GuestIdRegs::sanitize(
            &host,
            Switched {
                sve: true,
                pauth: false,
            },
        );
        assert!(!has_pauth(off.get(AA64ISAR1), off.get(AA64ISAR2)));
        assert_eq!(field(off.get(AA64ISAR1), 20), 1, "LRCPC still there");
        // QARMA3 in ISAR2 is hidden with the rest.
        let mut host3 = host;
        host3[AA64ISAR1] &= !(0xf << 8);
        host3[AA64ISAR2] |= 1 << 12;
        let q3 = GuestIdRegs::sanitize(&host3, ALL);
        assert_eq!(field(q3.get(AA64ISAR2), 12), 1);
        let q3off = GuestIdRegs::sanitize(
            &host3,
            Switched {
                sve: false,
                pauth: false,
            },
        );
        assert_eq!(field(q3off.get(AA64ISAR2), 12), 0);
    }

    #[test]
    fn a_feature_the_host_lacks_stays_hidden() {
        let mut host = armv9_host();
        host[AA64PFR0] &= !(0xf << 32);
        let g = GuestIdRegs::sanitize(&host, ALL);
        assert_eq!(field(g.get(AA64PFR0), 32), 0);
        assert_eq!(g.get(AA64ZFR0), 0, "no ZFR0 without SVE");
        // An Armv8.0 core: nothing to hide, FP/AdvSIMD kept.
        let mut a53 = [0u64; ID_REG_COUNT];
        a53[AA64PFR0] = 0x0000_0000_0100_2222; // GICv3, EL0-EL3 AArch64 + AArch32
        a53[AA64DFR0] = 0x0001_0101_0106;
        let g = GuestIdRegs::sanitize(&a53, ALL);
        assert_eq!(g.get(AA64PFR0), a53[AA64PFR0] & !(0xf << 8));
        assert_eq!(field(g.get(AA64DFR0), 8), 0, "PMUv3 hidden");
        assert_eq!(field(g.get(AA64DFR0), 0), 6);
    }

    #[test]
    fn capped_fields() {
        let mut host = armv9_host();
        host[AA64PFR0] = (host[AA64PFR0] & !(0xff << 24)) | (3 << 24) | (2 << 28);
        host[AA64MMFR0] |= 2 << 60;
        let g = GuestIdRegs::sanitize(&host, ALL);
        assert_eq!(field(g.get(AA64PFR0), 24), 1, "GICv4.1 shown as GICv3");
        assert_eq!(field(g.get(AA64PFR0), 28), 1, "RASv1p1 shown as RAS");
        assert_eq!(field(g.get(AA64MMFR0), 60), 1, "ECV without CNTPOFF");
        // Signed fields that say "not implemented" (0xf) are kept as such.
        host[AA64PFR0] |= 0xff << 16;
        let g = GuestIdRegs::sanitize(&host, ALL);
        assert_eq!(field(g.get(AA64PFR0), 16), 0xf, "no FP");
        assert_eq!(field(g.get(AA64PFR0), 20), 0xf, "no AdvSIMD");
    }

    #[test]
    fn reads_cover_exactly_the_trapped_space() {
        let g = GuestIdRegs::sanitize(&armv9_host(), ALL);
        let mrs = |id: u32| g.read(SysRegIss(id | 1));
        assert_eq!(mrs(sysreg_id(3, 0, 0, 4, 0)), Some(g.get(AA64PFR0)));
        assert_eq!(mrs(sysreg_id(3, 0, 0, 7, 7)), Some(0));
        assert_eq!(mrs(sysreg_id(3, 0, 0, 0, 5)), None, "MPIDR is not TID3");
        assert_eq!(mrs(sysreg_id(3, 1, 0, 0, 0)), None, "CCSIDR");
        assert_eq!(mrs(sysreg_id(3, 3, 9, 12, 0)), None, "PMCR");
    }
}
