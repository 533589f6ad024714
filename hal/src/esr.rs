//! Exception Syndrome Register (ESR_ELx) decoding.
//!
//! Layout (Arm ARM D19.2.37, ESR_EL2): EC `[31:26]`, IL `[25]`, ISS `[24:0]`.
//! The decoders here are pure functions of the raw value, so the exception
//! report printed by the hypervisor and the trap handler's MMIO decoding are
//! both tested on the host.

use core::fmt;

/// Exception class, ESR_ELx.EC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// 0x00: unknown reason (e.g. an undefined instruction).
    Unknown,
    /// 0x01: trapped WFI or WFE.
    WfiWfe,
    /// 0x07: access to SVE, Advanced SIMD or floating point trapped.
    FpAccess,
    /// 0x0E: illegal execution state.
    IllegalState,
    /// 0x15: SVC from AArch64.
    Svc64,
    /// 0x16: HVC from AArch64.
    Hvc64,
    /// 0x17: SMC from AArch64 (trapped by HCR_EL2.TSC).
    Smc64,
    /// 0x18: trapped MSR, MRS or System instruction from AArch64.
    SysReg64,
    /// 0x19: SVE access trapped (CPTR_EL2.TZ).
    Sve,
    /// 0x20: instruction abort from a lower exception level.
    InstrAbortLower,
    /// 0x21: instruction abort taken without a change in exception level.
    InstrAbortSame,
    /// 0x22: PC alignment fault.
    PcAlignment,
    /// 0x24: data abort from a lower exception level.
    DataAbortLower,
    /// 0x25: data abort taken without a change in exception level.
    DataAbortSame,
    /// 0x26: SP alignment fault.
    SpAlignment,
    /// 0x2C: trapped floating-point exception from AArch64.
    FpException64,
    /// 0x2F: SError interrupt.
    SError,
    /// 0x30: breakpoint from a lower exception level.
    BreakpointLower,
    /// 0x31: breakpoint without a change in exception level.
    BreakpointSame,
    /// 0x32: software step from a lower exception level.
    SoftwareStepLower,
    /// 0x33: software step without a change in exception level.
    SoftwareStepSame,
    /// 0x34: watchpoint from a lower exception level.
    WatchpointLower,
    /// 0x35: watchpoint without a change in exception level.
    WatchpointSame,
    /// 0x3C: BRK instruction from AArch64.
    Brk64,
    /// Any other (AArch32 or reserved) class, with its raw value.
    Other(u8),
}

impl ExceptionClass {
    /// Decodes the 6-bit EC field.
    pub const fn from_bits(ec: u8) -> Self {
        match ec & 0x3f {
            0x00 => Self::Unknown,
            0x01 => Self::WfiWfe,
            0x07 => Self::FpAccess,
            0x0e => Self::IllegalState,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg64,
            0x19 => Self::Sve,
            0x20 => Self::InstrAbortLower,
            0x21 => Self::InstrAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2c => Self::FpException64,
            0x2f => Self::SError,
            0x30 => Self::BreakpointLower,
            0x31 => Self::BreakpointSame,
            0x32 => Self::SoftwareStepLower,
            0x33 => Self::SoftwareStepSame,
            0x34 => Self::WatchpointLower,
            0x35 => Self::WatchpointSame,
            0x3c => Self::Brk64,
            other => Self::Other(other),
        }
    }

    /// The raw 6-bit EC value.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0x00,
            Self::WfiWfe => 0x01,
            Self::FpAccess => 0x07,
            Self::IllegalState => 0x0e,
            Self::Svc64 => 0x15,
            Self::Hvc64 => 0x16,
            Self::Smc64 => 0x17,
            Self::SysReg64 => 0x18,
            Self::Sve => 0x19,
            Self::InstrAbortLower => 0x20,
            Self::InstrAbortSame => 0x21,
            Self::PcAlignment => 0x22,
            Self::DataAbortLower => 0x24,
            Self::DataAbortSame => 0x25,
            Self::SpAlignment => 0x26,
            Self::FpException64 => 0x2c,
            Self::SError => 0x2f,
            Self::BreakpointLower => 0x30,
            Self::BreakpointSame => 0x31,
            Self::SoftwareStepLower => 0x32,
            Self::SoftwareStepSame => 0x33,
            Self::WatchpointLower => 0x34,
            Self::WatchpointSame => 0x35,
            Self::Brk64 => 0x3c,
            Self::Other(raw) => raw,
        }
    }

    /// A short human-readable name, used in exception reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown reason",
            Self::WfiWfe => "WFI/WFE",
            Self::FpAccess => "FP/SIMD access trap",
            Self::IllegalState => "Illegal execution state",
            Self::Svc64 => "SVC (AArch64)",
            Self::Hvc64 => "HVC (AArch64)",
            Self::Smc64 => "SMC (AArch64)",
            Self::SysReg64 => "MSR/MRS/System instruction trap",
            Self::Sve => "SVE access trap",
            Self::InstrAbortLower => "Instruction abort from lower EL",
            Self::InstrAbortSame => "Instruction abort from current EL",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLower => "Data abort from lower EL",
            Self::DataAbortSame => "Data abort from current EL",
            Self::SpAlignment => "SP alignment fault",
            Self::FpException64 => "Floating-point exception (AArch64)",
            Self::SError => "SError interrupt",
            Self::BreakpointLower => "Breakpoint from lower EL",
            Self::BreakpointSame => "Breakpoint from current EL",
            Self::SoftwareStepLower => "Software step from lower EL",
            Self::SoftwareStepSame => "Software step from current EL",
            Self::WatchpointLower => "Watchpoint from lower EL",
            Self::WatchpointSame => "Watchpoint from current EL",
            Self::Brk64 => "BRK instruction (AArch64)",
            Self::Other(_) => "Other/AArch32 exception class",
        }
    }
}

/// A raw ESR_ELx value with field accessors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class.
    pub const fn class(self) -> ExceptionClass {
        ExceptionClass::from_bits(((self.0 >> 26) & 0x3f) as u8)
    }

    /// Instruction length bit: true for a 32-bit instruction.
    pub const fn il(self) -> bool {
        (self.0 >> 25) & 1 == 1
    }

    /// Length in bytes of the trapped instruction: 2 when IL is 0 (a 16-bit
    /// T32 instruction from an AArch32 task), 4 otherwise.
    pub const fn instr_len(self) -> u8 {
        if self.il() { 4 } else { 2 }
    }

    /// Instruction-specific syndrome, ISS `[24:0]`.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// The 16-bit immediate of an HVC/SMC/SVC/BRK, ISS `[15:0]`.
    pub const fn imm16(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// For [`ExceptionClass::WfiWfe`]: true if the instruction was WFE.
    pub const fn is_wfe(self) -> bool {
        self.0 & 1 == 1
    }

    /// The data-abort syndrome view of the ISS.
    pub const fn data_abort(self) -> DataAbortIss {
        DataAbortIss(self.iss())
    }

    /// The trapped-system-register view of the ISS.
    pub const fn sysreg(self) -> SysRegIss {
        SysRegIss(self.iss())
    }
}

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Esr({:#x}: EC={:#04x} {}, IL={}, ISS={:#x})",
            self.0,
            self.class().bits(),
            self.class().name(),
            self.il() as u8,
            self.iss()
        )
    }
}

/// Data-abort ISS (EC 0x24/0x25), Arm ARM D19.2.37 "ISS encoding for an
/// exception from a Data Abort".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbortIss(pub u32);

impl DataAbortIss {
    /// ISV, bit 24: the syndrome fields SAS..AR are valid.
    pub const fn isv(self) -> bool {
        (self.0 >> 24) & 1 == 1
    }
    /// SAS, bits `[23:22]`: access size is `1 << sas` bytes.
    pub const fn access_size(self) -> u8 {
        1 << ((self.0 >> 22) & 3)
    }
    /// SSE, bit 21: a load must be sign-extended.
    pub const fn sign_extend(self) -> bool {
        (self.0 >> 21) & 1 == 1
    }
    /// SRT, bits `[20:16]`: the transfer register (31 = XZR).
    pub const fn srt(self) -> u8 {
        ((self.0 >> 16) & 0x1f) as u8
    }
    /// SF, bit 15: the register is 64 bits wide (X) rather than 32 (W).
    pub const fn sixty_four(self) -> bool {
        (self.0 >> 15) & 1 == 1
    }
    /// AR, bit 14: acquire/release semantics.
    pub const fn acquire_release(self) -> bool {
        (self.0 >> 14) & 1 == 1
    }
    /// FnV, bit 10: FAR is *not* valid.
    pub const fn far_not_valid(self) -> bool {
        (self.0 >> 10) & 1 == 1
    }
    /// EA, bit 9: external abort.
    pub const fn external_abort(self) -> bool {
        (self.0 >> 9) & 1 == 1
    }
    /// CM, bit 8: caused by a cache maintenance instruction.
    pub const fn cache_maintenance(self) -> bool {
        (self.0 >> 8) & 1 == 1
    }
    /// S1PTW, bit 7: stage-2 fault on a stage-1 translation table walk.
    pub const fn s1ptw(self) -> bool {
        (self.0 >> 7) & 1 == 1
    }
    /// WnR, bit 6: the access was a write.
    pub const fn is_write(self) -> bool {
        (self.0 >> 6) & 1 == 1
    }
    /// DFSC, bits `[5:0]`: data fault status code.
    pub const fn dfsc(self) -> u8 {
        (self.0 & 0x3f) as u8
    }
    /// A description of the DFSC fault kind.
    pub const fn dfsc_name(self) -> &'static str {
        match self.dfsc() {
            0x00..=0x03 => "address size fault",
            0x04..=0x07 => "translation fault",
            0x09..=0x0b => "access flag fault",
            0x0d..=0x0f => "permission fault",
            0x10 => "synchronous external abort",
            0x21 => "alignment fault",
            _ => "other fault",
        }
    }
}

/// Trapped MSR/MRS ISS (EC 0x18), Arm ARM D19.2.37.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegIss(pub u32);

impl SysRegIss {
    /// Op0, bits `[21:20]`.
    pub const fn op0(self) -> u8 {
        ((self.0 >> 20) & 3) as u8
    }
    /// Op2, bits `[19:17]`.
    pub const fn op2(self) -> u8 {
        ((self.0 >> 17) & 7) as u8
    }
    /// Op1, bits `[16:14]`.
    pub const fn op1(self) -> u8 {
        ((self.0 >> 14) & 7) as u8
    }
    /// CRn, bits `[13:10]`.
    pub const fn crn(self) -> u8 {
        ((self.0 >> 10) & 0xf) as u8
    }
    /// Rt, bits `[9:5]`.
    pub const fn rt(self) -> u8 {
        ((self.0 >> 5) & 0x1f) as u8
    }
    /// CRm, bits `[4:1]`.
    pub const fn crm(self) -> u8 {
        ((self.0 >> 1) & 0xf) as u8
    }
    /// Direction, bit 0: true for a read (MRS), false for a write (MSR).
    pub const fn is_read(self) -> bool {
        self.0 & 1 == 1
    }
    /// The register identity without Rt and direction, comparable with
    /// [`sysreg_id`].
    pub const fn id(self) -> u32 {
        self.0 & !((0x1f << 5) | 1)
    }
}

/// Encodes a system register identity in the layout of [`SysRegIss::id`].
pub const fn sysreg_id(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> u32 {
    ((op0 as u32 & 3) << 20)
        | ((op2 as u32 & 7) << 17)
        | ((op1 as u32 & 7) << 14)
        | ((crn as u32 & 0xf) << 10)
        | ((crm as u32 & 0xf) << 1)
}

/// ICC_SGI1R_EL1 (S3_0_C12_C11_5): the register whose writes the guest uses
/// to send SGIs, trapped to EL2 when HCR_EL2.IMO is set.
pub const ICC_SGI1R_EL1: u32 = sysreg_id(3, 0, 12, 11, 5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hvc_with_immediate() {
        // EC=0x16, IL=1, imm16=0x1234
        let esr = Esr((0x16 << 26) | (1 << 25) | 0x1234);
        assert_eq!(esr.class(), ExceptionClass::Hvc64);
        assert!(esr.il());
        assert_eq!(esr.imm16(), 0x1234);
        assert_eq!(esr.class().name(), "HVC (AArch64)");
    }

    #[test]
    fn every_known_class_round_trips() {
        for raw in 0u8..64 {
            let class = ExceptionClass::from_bits(raw);
            assert_eq!(class.bits(), raw, "class {raw:#x}");
        }
    }

    #[test]
    fn decodes_data_abort_syndrome() {
        // ISV=1, SAS=2 (4 bytes), SSE=1, SRT=7, SF=0, WnR=0, DFSC=0x07
        let iss = (1 << 24) | (2 << 22) | (1 << 21) | (7 << 16) | 0x07;
        let esr = Esr((0x24 << 26) | (1 << 25) | iss as u64);
        let da = esr.data_abort();
        assert_eq!(esr.class(), ExceptionClass::DataAbortLower);
        assert!(da.isv());
        assert_eq!(da.access_size(), 4);
        assert!(da.sign_extend());
        assert_eq!(da.srt(), 7);
        assert!(!da.sixty_four());
        assert!(!da.is_write());
        assert_eq!(da.dfsc_name(), "translation fault");
    }

    #[test]
    fn decodes_write_of_xzr_64bit() {
        let iss = (1 << 24) | (3 << 22) | (31 << 16) | (1 << 15) | (1 << 6) | 0x06;
        let da = DataAbortIss(iss);
        assert_eq!(da.access_size(), 8);
        assert_eq!(da.srt(), 31);
        assert!(da.sixty_four());
        assert!(da.is_write());
    }

    #[test]
    fn decodes_sgi1r_write_trap() {
        // MSR ICC_SGI1R_EL1, x3 : direction 0 (write), Rt = 3
        let iss = ICC_SGI1R_EL1 | (3 << 5);
        let sr = SysRegIss(iss);
        assert_eq!(
            (sr.op0(), sr.op1(), sr.crn(), sr.crm(), sr.op2()),
            (3, 0, 12, 11, 5)
        );
        assert_eq!(sr.rt(), 3);
        assert!(!sr.is_read());
        assert_eq!(sr.id(), ICC_SGI1R_EL1);
    }

    #[test]
    fn instruction_length_follows_il() {
        assert_eq!(Esr((0x01 << 26) | (1 << 25)).instr_len(), 4);
        assert_eq!(Esr(0x01 << 26).instr_len(), 2);
        assert!(!Esr(0x24 << 26).il());
    }

    #[test]
    fn wfe_bit() {
        assert!(Esr((0x01 << 26) | 1).is_wfe());
        assert!(!Esr(0x01 << 26).is_wfe());
    }
}
