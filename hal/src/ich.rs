//! GICv3 virtualization control registers (`ICH_*_EL2`) and the SGI
//! generation register `ICC_SGI1R_EL1`: encodings only.
//!
//! Reference: Arm IHI 0069 (GICv3/v4 architecture specification), chapter
//! 12 ("System register descriptions"), cross-checked against the Arm
//! system-register XML and Linux's `include/linux/irqchip/arm-gic-v3.h`.
//!
//! | Register          | What lives here                                   |
//! |-------------------|---------------------------------------------------|
//! | `ICH_LR<n>_EL2`   | [`ListRegister`], [`LrState`], [`lr`] bit masks   |
//! | `ICH_HCR_EL2`     | [`IchHcr`] flags, [`hcr_eoi_count`]               |
//! | `ICH_VTR_EL2`     | [`IchVtr`] decoder                                |
//! | `ICH_MISR_EL2`    | [`IchMisr`] flags                                 |
//! | `ICH_VMCR_EL2`    | [`IchVmcr`] field accessors                       |
//! | `ICH_EISR_EL2`    | [`eisr_from_lrs`] (what the hardware computes)    |
//! | `ICH_ELRSR_EL2`   | [`elrsr_from_lrs`] (what the hardware computes)   |
//! | `ICC_SGI1R_EL1`   | [`Sgi1r`] decoder/encoder                         |

use bitflags::bitflags;

/// Most list registers the architecture allows (`ICH_LR0_EL2`..`ICH_LR15_EL2`).
pub const MAX_LIST_REGS: usize = 16;

/// Bit masks of `ICH_LR<n>_EL2`.
pub mod lr {
    /// vINTID, bits `[31:0]`: the INTID the guest sees.
    pub const VINTID_MASK: u64 = 0xffff_ffff;
    /// pINTID, bits `[44:32]`, meaningful only when HW = 1.
    pub const PINTID_SHIFT: u32 = 32;
    /// Mask of the pINTID field (13 bits).
    pub const PINTID_MASK: u64 = 0x1fff << PINTID_SHIFT;
    /// Bit 41 when HW = 0: request an EOI maintenance interrupt when the
    /// guest deactivates this interrupt.
    pub const EOI: u64 = 1 << 41;
    /// Priority, bits `[55:48]` (only the top `ICH_VTR_EL2.PRIbits` bits are
    /// implemented).
    pub const PRIORITY_SHIFT: u32 = 48;
    /// Mask of the priority field.
    pub const PRIORITY_MASK: u64 = 0xff << PRIORITY_SHIFT;
    /// NMI, bit 59 (FEAT_GICv3_NMI only; RES0 otherwise).
    pub const NMI: u64 = 1 << 59;
    /// Group, bit 60: 1 = Group 1 (virtual IRQ), 0 = Group 0 (virtual FIQ).
    pub const GROUP: u64 = 1 << 60;
    /// HW, bit 61: the virtual interrupt is linked to physical interrupt pINTID.
    pub const HW: u64 = 1 << 61;
    /// State, bits `[63:62]`.
    pub const STATE_SHIFT: u32 = 62;
    /// State bit 62: pending.
    pub const STATE_PENDING: u64 = 1 << 62;
    /// State bit 63: active.
    pub const STATE_ACTIVE: u64 = 1 << 63;
    /// Mask of the state field.
    pub const STATE_MASK: u64 = STATE_PENDING | STATE_ACTIVE;
}

/// The State field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: invalid (inactive); the LR is free unless it carries an EOI
    /// maintenance request.
    Invalid = 0,
    /// 0b01: pending.
    Pending = 1,
    /// 0b10: active.
    Active = 2,
    /// 0b11: pending and active.
    PendingActive = 3,
}

impl LrState {
    /// Decodes the two State bits.
    pub const fn from_bits(bits: u64) -> Self {
        match bits & 3 {
            0 => Self::Invalid,
            1 => Self::Pending,
            2 => Self::Active,
            _ => Self::PendingActive,
        }
    }

    /// A state from its pending and active components.
    pub const fn from_parts(pending: bool, active: bool) -> Self {
        Self::from_bits((pending as u64) | ((active as u64) << 1))
    }

    /// The two State bits.
    pub const fn bits(self) -> u64 {
        self as u64
    }

    /// True for Pending and PendingActive.
    pub const fn is_pending(self) -> bool {
        self.bits() & 1 != 0
    }

    /// True for Active and PendingActive.
    pub const fn is_active(self) -> bool {
        self.bits() & 2 != 0
    }
}

/// One `ICH_LR<n>_EL2` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListRegister(pub u64);

impl ListRegister {
    /// An empty list register (state Invalid, no maintenance request).
    pub const EMPTY: Self = Self(0);

    /// A purely virtual interrupt (HW = 0): the hypervisor owns its whole
    /// life cycle.
    pub const fn virtual_irq(vintid: u32, priority: u8, group1: bool, state: LrState) -> Self {
        Self(
            (vintid as u64)
                | ((priority as u64) << lr::PRIORITY_SHIFT)
                | if group1 { lr::GROUP } else { 0 }
                | (state.bits() << lr::STATE_SHIFT),
        )
    }

    /// A hardware-linked interrupt (HW = 1): the guest's deactivation of
    /// `vintid` also deactivates physical interrupt `pintid` (13 bits).
    pub const fn hardware_irq(
        vintid: u32,
        pintid: u16,
        priority: u8,
        group1: bool,
        state: LrState,
    ) -> Self {
        let base = Self::virtual_irq(vintid, priority, group1, state);
        Self(base.0 | lr::HW | (((pintid as u64) << lr::PINTID_SHIFT) & lr::PINTID_MASK))
    }

    /// The same LR with the EOI maintenance request (bit 41) set. Only
    /// meaningful with HW = 0; for a HW = 1 LR the bit belongs to pINTID and
    /// this returns the LR unchanged.
    pub const fn with_eoi_maintenance(self) -> Self {
        if self.hw() {
            self
        } else {
            Self(self.0 | lr::EOI)
        }
    }

    /// The same LR with its State field replaced.
    pub const fn with_state(self, state: LrState) -> Self {
        Self((self.0 & !lr::STATE_MASK) | (state.bits() << lr::STATE_SHIFT))
    }

    /// Raw register value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// vINTID, bits `[31:0]`.
    pub const fn vintid(self) -> u32 {
        (self.0 & lr::VINTID_MASK) as u32
    }

    /// pINTID, bits `[44:32]`, if HW = 1.
    pub const fn pintid(self) -> Option<u16> {
        if self.hw() {
            Some(((self.0 & lr::PINTID_MASK) >> lr::PINTID_SHIFT) as u16)
        } else {
            None
        }
    }

    /// True if HW = 0 and the EOI maintenance request (bit 41) is set.
    pub const fn eoi_maintenance(self) -> bool {
        !self.hw() && self.0 & lr::EOI != 0
    }

    /// Priority, bits `[55:48]`.
    pub const fn priority(self) -> u8 {
        ((self.0 & lr::PRIORITY_MASK) >> lr::PRIORITY_SHIFT) as u8
    }

    /// True for a Group 1 interrupt.
    pub const fn group1(self) -> bool {
        self.0 & lr::GROUP != 0
    }

    /// HW bit.
    pub const fn hw(self) -> bool {
        self.0 & lr::HW != 0
    }

    /// State field.
    pub const fn state(self) -> LrState {
        LrState::from_bits(self.0 >> lr::STATE_SHIFT)
    }

    /// What `ICH_ELRSR_EL2` reports for this LR: state Invalid and no
    /// outstanding EOI maintenance request (HW = 1 or EOI = 0).
    pub const fn is_free(self) -> bool {
        matches!(self.state(), LrState::Invalid) && !self.eoi_maintenance()
    }

    /// What `ICH_EISR_EL2` reports for this LR: state Invalid, HW = 0 and
    /// EOI = 1 (the guest deactivated an interrupt whose EOI we asked for).
    pub const fn eoi_signalled(self) -> bool {
        matches!(self.state(), LrState::Invalid) && self.eoi_maintenance()
    }
}

/// `ICH_EISR_EL2` as the hardware computes it from the list registers.
pub fn eisr_from_lrs(lrs: &[u64]) -> u16 {
    lrs.iter()
        .take(MAX_LIST_REGS)
        .enumerate()
        .filter(|(_, v)| ListRegister(**v).eoi_signalled())
        .fold(0, |acc, (i, _)| acc | (1 << i))
}

/// `ICH_ELRSR_EL2` as the hardware computes it from the list registers.
pub fn elrsr_from_lrs(lrs: &[u64]) -> u16 {
    lrs.iter()
        .take(MAX_LIST_REGS)
        .enumerate()
        .filter(|(_, v)| ListRegister(**v).is_free())
        .fold(0, |acc, (i, _)| acc | (1 << i))
}

bitflags! {
    /// `ICH_HCR_EL2` single-bit controls. The 5-bit EOIcount field
    /// (`[31:27]`) is read with [`hcr_eoi_count`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IchHcr: u64 {
        /// Global enable of the virtual CPU interface.
        const EN = 1 << 0;
        /// Underflow maintenance interrupt: asserted while zero or one LRs
        /// hold a valid interrupt.
        const UIE = 1 << 1;
        /// LR-entry-not-present maintenance interrupt: asserted while
        /// EOIcount is non-zero.
        const LRENPIE = 1 << 2;
        /// No-pending maintenance interrupt: asserted while no LR is in
        /// state Pending.
        const NPIE = 1 << 3;
        /// Maintenance interrupt while virtual Group 0 is enabled.
        const VGRP0EIE = 1 << 4;
        /// Maintenance interrupt while virtual Group 0 is disabled.
        const VGRP0DIE = 1 << 5;
        /// Maintenance interrupt while virtual Group 1 is enabled.
        const VGRP1EIE = 1 << 6;
        /// Maintenance interrupt while virtual Group 1 is disabled.
        const VGRP1DIE = 1 << 7;
        /// GICv4.1: deactivation of virtual SGIs can increment EOIcount.
        const VSGIEOICOUNT = 1 << 8;
        /// Trap EL1 accesses to common (group-independent) ICC registers.
        const TC = 1 << 10;
        /// Trap EL1 accesses to Group 0 ICC registers.
        const TALL0 = 1 << 11;
        /// Trap EL1 accesses to Group 1 ICC registers.
        const TALL1 = 1 << 12;
        /// Trap locally generated SEIs.
        const TSEI = 1 << 13;
        /// Trap EL1 writes to ICC_DIR_EL1 / ICV_DIR_EL1.
        const TDIR = 1 << 14;
        /// GICv4.1 with ICH_VTR_EL2.DVIM: mask directly injected vLPIs.
        const DVIM = 1 << 15;
    }
}

/// Shift of `ICH_HCR_EL2.EOIcount`.
pub const HCR_EOICOUNT_SHIFT: u32 = 27;
/// Mask of `ICH_HCR_EL2.EOIcount` (`[31:27]`).
pub const HCR_EOICOUNT_MASK: u64 = 0x1f << HCR_EOICOUNT_SHIFT;

/// `ICH_HCR_EL2.EOIcount`: deactivations the guest performed for interrupts
/// that had no list register.
pub const fn hcr_eoi_count(hcr: u64) -> u8 {
    ((hcr & HCR_EOICOUNT_MASK) >> HCR_EOICOUNT_SHIFT) as u8
}

bitflags! {
    /// `ICH_MISR_EL2`: which maintenance interrupts are asserted.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IchMisr: u64 {
        /// EOI: at least one ICH_EISR_EL2 bit is set.
        const EOI = 1 << 0;
        /// Underflow (UIE and at most one valid LR).
        const U = 1 << 1;
        /// LR entry not present (LRENPIE and EOIcount != 0).
        const LRENP = 1 << 2;
        /// No pending (NPIE and no LR in state Pending).
        const NP = 1 << 3;
        /// vPE Group 0 enabled (VGrp0EIE and VENG0).
        const VGRP0E = 1 << 4;
        /// vPE Group 0 disabled (VGrp0DIE and !VENG0).
        const VGRP0D = 1 << 5;
        /// vPE Group 1 enabled (VGrp1EIE and VENG1).
        const VGRP1E = 1 << 6;
        /// vPE Group 1 disabled (VGrp1DIE and !VENG1).
        const VGRP1D = 1 << 7;
    }
}

/// `ICH_VTR_EL2` decoded: what the virtual CPU interface implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IchVtr {
    /// Number of implemented list registers (ListRegs `[4:0]` + 1).
    pub list_regs: u8,
    /// Virtual priority bits implemented (PRIbits `[31:29]` + 1).
    pub pri_bits: u8,
    /// Virtual preemption bits implemented (PREbits `[28:26]` + 1).
    pub pre_bits: u8,
    /// Virtual INTID bits: 16 (IDbits 0b000) or 24 (0b001).
    pub id_bits: u8,
    /// SEIS `[22]`: the CPU interface supports local SError generation.
    pub seis: bool,
    /// A3V `[21]`: non-zero Affinity 3 values are supported in SGIs.
    pub a3v: bool,
    /// nV4 `[20]`: direct injection of virtual interrupts is NOT supported.
    pub nv4: bool,
    /// TDS `[19]`: separate trapping of ICV_DIR_EL1 writes is supported.
    pub tds: bool,
}

impl IchVtr {
    /// Decodes a raw `ICH_VTR_EL2` value.
    pub const fn from_raw(vtr: u64) -> Self {
        IchVtr {
            list_regs: (vtr & 0x1f) as u8 + 1,
            pri_bits: ((vtr >> 29) & 7) as u8 + 1,
            pre_bits: ((vtr >> 26) & 7) as u8 + 1,
            id_bits: if (vtr >> 23) & 7 == 1 { 24 } else { 16 },
            seis: vtr & (1 << 22) != 0,
            a3v: vtr & (1 << 21) != 0,
            nv4: vtr & (1 << 20) != 0,
            tds: vtr & (1 << 19) != 0,
        }
    }
}

/// `ICH_VMCR_EL2` (the guest's ICC_PMR/BPR/CTLR/IGRPEN view), a plain value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IchVmcr(pub u64);

impl IchVmcr {
    /// VENG0, bit 0: virtual Group 0 enable (alias of ICV_IGRPEN0_EL1).
    pub const VENG0: u64 = 1 << 0;
    /// VENG1, bit 1: virtual Group 1 enable (alias of ICV_IGRPEN1_EL1).
    pub const VENG1: u64 = 1 << 1;
    /// VAckCtl, bit 2 (legacy, RES0 with system registers).
    pub const VACKCTL: u64 = 1 << 2;
    /// VFIQEn, bit 3: Group 0 virtual interrupts are signalled as vFIQ.
    pub const VFIQEN: u64 = 1 << 3;
    /// VCBPR, bit 4: common binary point.
    pub const VCBPR: u64 = 1 << 4;
    /// VEOIM, bit 9: split priority drop / deactivation (ICV_CTLR_EL1.EOImode).
    pub const VEOIM: u64 = 1 << 9;
    /// Shift of VBPR1 (`[20:18]`).
    pub const VBPR1_SHIFT: u32 = 18;
    /// Shift of VBPR0 (`[23:21]`).
    pub const VBPR0_SHIFT: u32 = 21;
    /// Shift of VPMR (`[31:24]`).
    pub const VPMR_SHIFT: u32 = 24;

    /// VPMR: the guest's priority mask (alias of ICV_PMR_EL1). An interrupt is
    /// signalled only if its priority value is lower than this.
    pub const fn vpmr(self) -> u8 {
        (self.0 >> Self::VPMR_SHIFT) as u8
    }

    /// The same value with VPMR replaced.
    pub const fn with_vpmr(self, pmr: u8) -> Self {
        Self((self.0 & !(0xff << Self::VPMR_SHIFT)) | ((pmr as u64) << Self::VPMR_SHIFT))
    }

    /// VENG0.
    pub const fn veng0(self) -> bool {
        self.0 & Self::VENG0 != 0
    }

    /// VENG1.
    pub const fn veng1(self) -> bool {
        self.0 & Self::VENG1 != 0
    }

    /// VEOIM.
    pub const fn veoim(self) -> bool {
        self.0 & Self::VEOIM != 0
    }

    /// VBPR0 (3 bits).
    pub const fn vbpr0(self) -> u8 {
        ((self.0 >> Self::VBPR0_SHIFT) & 7) as u8
    }

    /// VBPR1 (3 bits).
    pub const fn vbpr1(self) -> u8 {
        ((self.0 >> Self::VBPR1_SHIFT) & 7) as u8
    }
}

/// A decoded `ICC_SGI1R_EL1` write (generate a Group 1 SGI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sgi1r {
    /// TargetList `[15:0]`: bit n targets the PE with Aff0 = RS * 16 + n.
    pub target_list: u16,
    /// Aff1 `[23:16]` of the targets.
    pub aff1: u8,
    /// INTID `[27:24]` of the SGI (0..=15).
    pub intid: u8,
    /// Aff2 `[39:32]` of the targets.
    pub aff2: u8,
    /// IRM `[40]`: 1 = every PE except the sender ("all but self").
    pub irm: bool,
    /// RS `[47:44]`: range selector for TargetList.
    pub rs: u8,
    /// Aff3 `[55:48]` of the targets.
    pub aff3: u8,
}

impl Sgi1r {
    /// Decodes a raw register value (RES0 bits are ignored).
    pub const fn decode(v: u64) -> Self {
        Sgi1r {
            target_list: (v & 0xffff) as u16,
            aff1: ((v >> 16) & 0xff) as u8,
            intid: ((v >> 24) & 0xf) as u8,
            aff2: ((v >> 32) & 0xff) as u8,
            irm: v & (1 << 40) != 0,
            rs: ((v >> 44) & 0xf) as u8,
            aff3: ((v >> 48) & 0xff) as u8,
        }
    }

    /// Encodes the fields back into a register value.
    pub const fn encode(self) -> u64 {
        (self.target_list as u64)
            | ((self.aff1 as u64) << 16)
            | (((self.intid & 0xf) as u64) << 24)
            | ((self.aff2 as u64) << 32)
            | ((self.irm as u64) << 40)
            | (((self.rs & 0xf) as u64) << 44)
            | ((self.aff3 as u64) << 48)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_encode_decode_virtual() {
        let l = ListRegister::virtual_irq(48, 0xa0, true, LrState::Pending);
        assert_eq!(l.raw(), (1 << 62) | (1 << 60) | (0xa0 << 48) | 48);
        assert_eq!(l.vintid(), 48);
        assert_eq!(l.priority(), 0xa0);
        assert!(l.group1());
        assert!(!l.hw());
        assert_eq!(l.pintid(), None);
        assert_eq!(l.state(), LrState::Pending);
        assert!(!l.eoi_maintenance());
        let e = l.with_eoi_maintenance();
        assert_eq!(e.raw(), l.raw() | (1 << 41));
        assert!(e.eoi_maintenance());
        let inv = e.with_state(LrState::Invalid);
        assert!(inv.eoi_signalled());
        assert!(!inv.is_free());
        assert!(l.with_state(LrState::Invalid).is_free());
    }

    #[test]
    fn lr_encode_decode_hardware() {
        let l = ListRegister::hardware_irq(27, 0x1abc, 0x80, true, LrState::PendingActive);
        assert!(l.hw());
        assert_eq!(l.pintid(), Some(0x1abc));
        assert_eq!((l.raw() >> 32) & 0x1fff, 0x1abc);
        assert_eq!(l.state(), LrState::PendingActive);
        // Bit 41 is part of pINTID here, not an EOI request.
        assert!(!l.eoi_maintenance());
        assert_eq!(l.with_eoi_maintenance(), l);
        // pINTID is 13 bits: higher bits do not leak into bits 45+.
        let big = ListRegister::hardware_irq(1, 0xffff, 0, false, LrState::Invalid);
        assert_eq!(big.pintid(), Some(0x1fff));
        assert_eq!(big.priority(), 0);
        assert!(big.is_free());
    }

    #[test]
    fn lr_states() {
        for (bits, s) in [
            (0, LrState::Invalid),
            (1, LrState::Pending),
            (2, LrState::Active),
            (3, LrState::PendingActive),
        ] {
            assert_eq!(LrState::from_bits(bits), s);
            assert_eq!(LrState::from_parts(bits & 1 != 0, bits & 2 != 0), s);
            assert_eq!(s.is_pending(), bits & 1 != 0);
            assert_eq!(s.is_active(), bits & 2 != 0);
            let l = ListRegister(bits << 62);
            assert_eq!(l.state(), s);
        }
    }

    #[test]
    fn eisr_and_elrsr() {
        let lrs = [
            ListRegister::virtual_irq(33, 0, true, LrState::Invalid)
                .with_eoi_maintenance()
                .raw(),
            ListRegister::virtual_irq(34, 0, true, LrState::Active).raw(),
            0,
            ListRegister::virtual_irq(35, 0, true, LrState::Pending)
                .with_eoi_maintenance()
                .raw(),
        ];
        assert_eq!(eisr_from_lrs(&lrs), 0b0001);
        assert_eq!(elrsr_from_lrs(&lrs), 0b0100);
    }

    #[test]
    fn hcr_fields() {
        assert_eq!(IchHcr::EN.bits(), 1);
        assert_eq!(IchHcr::UIE.bits(), 2);
        assert_eq!(IchHcr::LRENPIE.bits(), 4);
        assert_eq!(IchHcr::NPIE.bits(), 8);
        assert_eq!(IchHcr::VGRP1DIE.bits(), 0x80);
        assert_eq!(IchHcr::TDIR.bits(), 1 << 14);
        assert_eq!(hcr_eoi_count(0x1f << 27 | 1), 31);
        assert_eq!(hcr_eoi_count(3 << 27), 3);
        assert_eq!(hcr_eoi_count(!HCR_EOICOUNT_MASK), 0);
    }

    #[test]
    fn misr_fields() {
        assert_eq!(IchMisr::EOI.bits(), 1);
        assert_eq!(IchMisr::U.bits(), 2);
        assert_eq!(IchMisr::LRENP.bits(), 4);
        assert_eq!(IchMisr::NP.bits(), 8);
        assert_eq!(IchMisr::VGRP1D.bits(), 0x80);
    }

    #[test]
    fn vtr_decode_qemu_cortex_a72() {
        // Value QEMU 7.2 reports for -cpu cortex-a72.
        let v = IchVtr::from_raw(0x90b8_0003);
        assert_eq!(v.list_regs, 4);
        assert_eq!(v.pri_bits, 5);
        assert_eq!(v.pre_bits, 5);
        assert_eq!(v.id_bits, 24);
        assert!(!v.seis);
        assert!(v.a3v);
        assert!(v.nv4);
        assert!(v.tds);
        let one = IchVtr::from_raw(0);
        assert_eq!(one.list_regs, 1);
        assert_eq!(one.id_bits, 16);
        assert_eq!(IchVtr::from_raw(0xf).list_regs, 16);
    }

    #[test]
    fn vmcr_fields() {
        let v = IchVmcr(0xf000_0000 | IchVmcr::VENG1 | IchVmcr::VEOIM | (3 << 18) | (2 << 21));
        assert_eq!(v.vpmr(), 0xf0);
        assert!(v.veng1());
        assert!(!v.veng0());
        assert!(v.veoim());
        assert_eq!(v.vbpr1(), 3);
        assert_eq!(v.vbpr0(), 2);
        let w = v.with_vpmr(0x60);
        assert_eq!(w.vpmr(), 0x60);
        assert_eq!(w.0 & 0x00ff_ffff, v.0 & 0x00ff_ffff);
    }

    #[test]
    fn sgi1r_decode_every_field() {
        let raw = 0x00ab_0000_0000_0000u64 // Aff3
            | (0x5 << 44) // RS
            | (1 << 40) // IRM
            | (0xcd << 32) // Aff2
            | (0x9 << 24) // INTID
            | (0xef << 16) // Aff1
            | 0x8421; // TargetList
        let s = Sgi1r::decode(raw);
        assert_eq!(s.target_list, 0x8421);
        assert_eq!(s.aff1, 0xef);
        assert_eq!(s.intid, 9);
        assert_eq!(s.aff2, 0xcd);
        assert!(s.irm);
        assert_eq!(s.rs, 5);
        assert_eq!(s.aff3, 0xab);
        assert_eq!(s.encode(), raw);
        // RES0 bits are dropped.
        let noisy = raw | (1 << 28) | (1 << 41) | (1 << 56);
        assert_eq!(Sgi1r::decode(noisy), s);
    }
}
