//! GICv3 distributor and redistributor register maps (Arm IHI 0069).
//!
//! Offsets are shared by the hypervisor's physical GIC driver (through the
//! tock-registers blocks [`GicdRegisters`], [`GicrRdRegisters`] and
//! [`GicrSgiRegisters`]) and by the emulated distributor/redistributors that
//! guests see (through the offset constants in [`gicd`] and [`gicr`] and the
//! bit constants). Only the registers a GICv3 without LPIs, extended ranges
//! or message-based SPIs needs are described.
//!
//! Views: on QEMU `virt` without `secure=on` the GIC implements a single
//! Security state (`GICD_CTLR.DS` = 1), which is also the view the virtual
//! GIC gives guests. In that view `GICD_CTLR` bit 0 is EnableGrp0, bit 1
//! EnableGrp1 and bit 4 ARE. (The Non-secure view of a two-state GIC names
//! bit 1 EnableGrp1A and bit 4 ARE_NS; the bit positions Linux writes, 0, 1
//! and 4, are valid in both.)
//!
//! A redistributor is two 64 KiB frames: RD_base (control, `GICR_TYPER`,
//! `GICR_WAKER`) and SGI_base at +0x10000 (SGI/PPI configuration, laid out
//! like the first registers of the distributor).

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

pub use bitfields::{GICD_CTLR, GICD_TYPER, GICR_TYPER, GICR_WAKER, IIDR, IROUTER, PIDR2};

/// Distributor register offsets (from GICD_base).
pub mod gicd {
    /// Distributor control.
    pub const CTLR: u64 = 0x0000;
    /// Interrupt controller type.
    pub const TYPER: u64 = 0x0004;
    /// Implementer identification.
    pub const IIDR: u64 = 0x0008;
    /// Interrupt controller type 2.
    pub const TYPER2: u64 = 0x000c;
    /// Error reporting status (optional).
    pub const STATUSR: u64 = 0x0010;
    /// Set SPI pending, Non-secure (message-based SPIs only).
    pub const SETSPI_NSR: u64 = 0x0040;
    /// Clear SPI pending, Non-secure (message-based SPIs only).
    pub const CLRSPI_NSR: u64 = 0x0048;
    /// Interrupt group registers, 32 x 32 bits (bit per INTID).
    pub const IGROUPR: u64 = 0x0080;
    /// Set-enable registers.
    pub const ISENABLER: u64 = 0x0100;
    /// Clear-enable registers.
    pub const ICENABLER: u64 = 0x0180;
    /// Set-pending registers.
    pub const ISPENDR: u64 = 0x0200;
    /// Clear-pending registers.
    pub const ICPENDR: u64 = 0x0280;
    /// Set-active registers.
    pub const ISACTIVER: u64 = 0x0300;
    /// Clear-active registers.
    pub const ICACTIVER: u64 = 0x0380;
    /// Priority registers, one byte per INTID (byte-accessible).
    pub const IPRIORITYR: u64 = 0x0400;
    /// Legacy target registers (RES0 with affinity routing; byte-accessible).
    pub const ITARGETSR: u64 = 0x0800;
    /// Configuration registers, two bits per INTID (`0b10` = edge).
    pub const ICFGR: u64 = 0x0c00;
    /// Group modifier registers.
    pub const IGRPMODR: u64 = 0x0d00;
    /// Non-secure access control registers (two bits per INTID).
    pub const NSACR: u64 = 0x0e00;
    /// Legacy SGI generation register (RES0 with affinity routing).
    pub const SGIR: u64 = 0x0f00;
    /// Legacy SGI clear-pending registers (RES0 with affinity routing).
    pub const CPENDSGIR: u64 = 0x0f10;
    /// Legacy SGI set-pending registers (RES0 with affinity routing).
    pub const SPENDSGIR: u64 = 0x0f20;
    /// Routing registers, 64 bits per INTID: `IROUTER<n>` at `IROUTER + 8 * n`
    /// for n = 32..=1019.
    pub const IROUTER: u64 = 0x6000;
    /// First CoreSight identification register (PIDR4).
    pub const IDREGS: u64 = 0xffd0;
    /// Peripheral ID2: architecture revision in `[7:4]`.
    pub const PIDR2: u64 = 0xffe8;
    /// Size of the distributor frame.
    pub const SIZE: u64 = 0x1_0000;
}

/// Redistributor register offsets (from the start of one redistributor).
pub mod gicr {
    /// Offset of the SGI_base frame from RD_base.
    pub const SGI_BASE: u64 = 0x1_0000;
    /// Size of one redistributor without VLPI frames (RD_base + SGI_base).
    pub const STRIDE: u64 = 0x2_0000;

    /// Redistributor control (RD_base).
    pub const CTLR: u64 = 0x0000;
    /// Implementer identification (RD_base).
    pub const IIDR: u64 = 0x0004;
    /// Redistributor type, 64 bits (RD_base).
    pub const TYPER: u64 = 0x0008;
    /// Error reporting status (RD_base, optional).
    pub const STATUSR: u64 = 0x0010;
    /// Power management control (RD_base).
    pub const WAKER: u64 = 0x0014;
    /// LPI configuration table base, 64 bits (RD_base).
    pub const PROPBASER: u64 = 0x0070;
    /// LPI pending table base, 64 bits (RD_base).
    pub const PENDBASER: u64 = 0x0078;
    /// First CoreSight identification register (RD_base).
    pub const IDREGS: u64 = 0xffd0;
    /// Peripheral ID2 (RD_base): architecture revision in `[7:4]`.
    pub const PIDR2: u64 = 0xffe8;

    /// SGI/PPI group register (SGI_base).
    pub const IGROUPR0: u64 = SGI_BASE + 0x0080;
    /// SGI/PPI set-enable (SGI_base).
    pub const ISENABLER0: u64 = SGI_BASE + 0x0100;
    /// SGI/PPI clear-enable (SGI_base).
    pub const ICENABLER0: u64 = SGI_BASE + 0x0180;
    /// SGI/PPI set-pending (SGI_base).
    pub const ISPENDR0: u64 = SGI_BASE + 0x0200;
    /// SGI/PPI clear-pending (SGI_base).
    pub const ICPENDR0: u64 = SGI_BASE + 0x0280;
    /// SGI/PPI set-active (SGI_base).
    pub const ISACTIVER0: u64 = SGI_BASE + 0x0300;
    /// SGI/PPI clear-active (SGI_base).
    pub const ICACTIVER0: u64 = SGI_BASE + 0x0380;
    /// SGI/PPI priorities, `IPRIORITYR0`..`IPRIORITYR7`, one byte per INTID
    /// (SGI_base).
    pub const IPRIORITYR: u64 = SGI_BASE + 0x0400;
    /// SGI configuration (read-only, edge) (SGI_base).
    pub const ICFGR0: u64 = SGI_BASE + 0x0c00;
    /// PPI configuration (SGI_base).
    pub const ICFGR1: u64 = SGI_BASE + 0x0c04;
    /// SGI/PPI group modifier (SGI_base).
    pub const IGRPMODR0: u64 = SGI_BASE + 0x0d00;
    /// SGI non-secure access control (SGI_base).
    pub const NSACR: u64 = SGI_BASE + 0x0e00;
}

/// `GICD_CTLR` bits (single Security state view, DS = 1).
pub mod gicd_ctlr {
    /// EnableGrp0 (DS = 1 view).
    pub const ENABLE_GRP0: u32 = 1 << 0;
    /// EnableGrp1 (DS = 1 view; EnableGrp1A in the Non-secure view).
    pub const ENABLE_GRP1: u32 = 1 << 1;
    /// ARE: affinity routing enable (ARE_NS in the Non-secure view).
    pub const ARE: u32 = 1 << 4;
    /// DS: disable security (single Security state).
    pub const DS: u32 = 1 << 6;
    /// E1NWF: enable 1-of-N wakeup functionality.
    pub const E1NWF: u32 = 1 << 7;
    /// RWP: register write pending (read-only).
    pub const RWP: u32 = 1 << 31;
}

/// `GICD_TYPER` fields.
pub mod gicd_typer {
    /// ITLinesNumber `[4:0]`: SPIs up to INTID `32 * (N + 1) - 1`.
    pub const IT_LINES_MASK: u32 = 0x1f;
    /// CPUNumber `[7:5]` (legacy, without affinity routing).
    pub const CPU_NUMBER_SHIFT: u32 = 5;
    /// ESPI `[8]`: extended SPI range supported.
    pub const ESPI: u32 = 1 << 8;
    /// NMI `[9]`: non-maskable interrupt property supported.
    pub const NMI: u32 = 1 << 9;
    /// SecurityExtn `[10]`: two Security states.
    pub const SECURITY_EXTN: u32 = 1 << 10;
    /// num_LPIs `[15:11]`.
    pub const NUM_LPIS_SHIFT: u32 = 11;
    /// MBIS `[16]`: message-based SPIs supported.
    pub const MBIS: u32 = 1 << 16;
    /// LPIS `[17]`: LPIs supported.
    pub const LPIS: u32 = 1 << 17;
    /// DVIS `[18]`: direct virtual LPI injection supported.
    pub const DVIS: u32 = 1 << 18;
    /// IDbits `[23:19]`: INTID bits supported, minus one.
    pub const ID_BITS_SHIFT: u32 = 19;
    /// A3V `[24]`: non-zero Affinity 3 values supported.
    pub const A3V: u32 = 1 << 24;
    /// No1N `[25]`: 1-of-N SPI routing NOT supported.
    pub const NO1N: u32 = 1 << 25;
    /// RSS `[26]`: range selector for SGIs (Aff0 0..=255) supported.
    pub const RSS: u32 = 1 << 26;
}

/// `GICD_IROUTER<n>` fields (64 bits).
pub mod irouter {
    /// Aff0 `[7:0]`.
    pub const AFF0_MASK: u64 = 0xff;
    /// Aff1 `[15:8]`.
    pub const AFF1_SHIFT: u32 = 8;
    /// Aff2 `[23:16]`.
    pub const AFF2_SHIFT: u32 = 16;
    /// Interrupt_Routing_Mode `[31]`: 1 = any participating PE (1 of N).
    pub const IRM: u64 = 1 << 31;
    /// Aff3 `[39:32]`.
    pub const AFF3_SHIFT: u32 = 32;
    /// Every implemented (non-RES0) bit.
    pub const VALID_MASK: u64 = 0xff_80ff_ffff;
}

/// `GICR_CTLR` bits.
pub mod gicr_ctlr {
    /// EnableLPIs.
    pub const ENABLE_LPIS: u32 = 1 << 0;
    /// RWP: register write pending.
    pub const RWP: u32 = 1 << 3;
    /// UWP: upstream write pending.
    pub const UWP: u32 = 1 << 31;
}

/// `GICR_TYPER` fields (64 bits).
pub mod gicr_typer {
    /// PLPIS `[0]`: physical LPIs supported.
    pub const PLPIS: u64 = 1 << 0;
    /// VLPIS `[1]`: virtual LPIs supported.
    pub const VLPIS: u64 = 1 << 1;
    /// Last `[4]`: this is the last redistributor of the region.
    pub const LAST: u64 = 1 << 4;
    /// Processor_Number `[23:8]`.
    pub const PROCESSOR_NUMBER_SHIFT: u32 = 8;
    /// PPInum `[31:27]`: 0 = 16 PPIs (INTIDs 16..=31).
    pub const PPINUM_SHIFT: u32 = 27;
    /// Affinity_Value `[63:32]`: Aff3.Aff2.Aff1.Aff0 of the PE.
    pub const AFFINITY_SHIFT: u32 = 32;
}

/// `GICR_WAKER` bits.
pub mod gicr_waker {
    /// ProcessorSleep `[1]`: the PE is asleep (interface quiescent).
    pub const PROCESSOR_SLEEP: u32 = 1 << 1;
    /// ChildrenAsleep `[2]` (read-only): the interface is quiescent.
    pub const CHILDREN_ASLEEP: u32 = 1 << 2;
}

/// `GICD_PIDR2` / `GICR_PIDR2`: architecture revision `[7:4]`.
pub mod pidr2 {
    /// ArchRev shift.
    pub const ARCH_REV_SHIFT: u32 = 4;
    /// ArchRev mask.
    pub const ARCH_REV_MASK: u32 = 0xf0;
    /// ArchRev value of a GICv3.
    pub const ARCH_REV_GICV3: u32 = 3;
}

/// Bit-field definitions generated by `register_bitfields!` (the macro's
/// generated items carry no doc comments of their own).
#[allow(missing_docs)]
pub mod bitfields {
    use tock_registers::register_bitfields;

    register_bitfields! [u32,
        /// Distributor control, GICD_CTLR (single Security state view).
        pub GICD_CTLR [
            /// Enable Group 0 interrupts.
            EnableGrp0 OFFSET(0) NUMBITS(1) [],
            /// Enable Group 1 interrupts (EnableGrp1A in the Non-secure view).
            EnableGrp1 OFFSET(1) NUMBITS(1) [],
            /// Affinity routing enable.
            ARE OFFSET(4) NUMBITS(1) [],
            /// Disable security (single Security state).
            DS OFFSET(6) NUMBITS(1) [],
            /// Register write pending.
            RWP OFFSET(31) NUMBITS(1) []
        ],
        /// Interrupt controller type, GICD_TYPER.
        pub GICD_TYPER [
            /// SPIs up to INTID 32 * (ITLinesNumber + 1) - 1.
            ITLinesNumber OFFSET(0) NUMBITS(5) [],
            /// Legacy CPU count.
            CPUNumber OFFSET(5) NUMBITS(3) [],
            /// Extended SPI range.
            ESPI OFFSET(8) NUMBITS(1) [],
            /// Two Security states.
            SecurityExtn OFFSET(10) NUMBITS(1) [],
            /// Message-based SPIs.
            MBIS OFFSET(16) NUMBITS(1) [],
            /// LPIs.
            LPIS OFFSET(17) NUMBITS(1) [],
            /// INTID bits minus one.
            IDbits OFFSET(19) NUMBITS(5) [],
            /// 1-of-N routing not supported.
            No1N OFFSET(25) NUMBITS(1) [],
            /// SGI range selector.
            RSS OFFSET(26) NUMBITS(1) []
        ],
        /// Implementer identification, GICD_IIDR / GICR_IIDR.
        pub IIDR [
            /// JEP106 code of the implementer.
            Implementer OFFSET(0) NUMBITS(12) [],
            /// Revision.
            Revision OFFSET(12) NUMBITS(4) [],
            /// Variant.
            Variant OFFSET(16) NUMBITS(4) [],
            /// Product identifier.
            ProductID OFFSET(24) NUMBITS(8) []
        ],
        /// Redistributor power management, GICR_WAKER.
        pub GICR_WAKER [
            /// The connected PE is asleep.
            ProcessorSleep OFFSET(1) NUMBITS(1) [],
            /// The redistributor's interface is quiescent (read-only).
            ChildrenAsleep OFFSET(2) NUMBITS(1) []
        ],
        /// Peripheral ID2, GICD_PIDR2 / GICR_PIDR2.
        pub PIDR2 [
            /// GIC architecture revision: 3 = GICv3, 4 = GICv4.
            ArchRev OFFSET(4) NUMBITS(4) []
        ]
    ];

    register_bitfields! [u64,
        /// Interrupt routing, GICD_IROUTER<n>.
        pub IROUTER [
            /// Affinity level 0 of the target PE.
            Aff0 OFFSET(0) NUMBITS(8) [],
            /// Affinity level 1.
            Aff1 OFFSET(8) NUMBITS(8) [],
            /// Affinity level 2.
            Aff2 OFFSET(16) NUMBITS(8) [],
            /// 1 = route to any participating PE.
            IRM OFFSET(31) NUMBITS(1) [],
            /// Affinity level 3.
            Aff3 OFFSET(32) NUMBITS(8) []
        ],
        /// Redistributor type, GICR_TYPER.
        pub GICR_TYPER [
            /// Physical LPIs supported.
            PLPIS OFFSET(0) NUMBITS(1) [],
            /// Virtual LPIs supported.
            VLPIS OFFSET(1) NUMBITS(1) [],
            /// Last redistributor in the region.
            Last OFFSET(4) NUMBITS(1) [],
            /// Processor number.
            ProcessorNumber OFFSET(8) NUMBITS(16) [],
            /// Number of extended PPIs (0 = none).
            PPInum OFFSET(27) NUMBITS(5) [],
            /// Affinity value Aff3.Aff2.Aff1.Aff0 of the connected PE.
            AffinityValue OFFSET(32) NUMBITS(32) []
        ]
    ];
}

#[allow(missing_docs)]
mod block {
    use super::*;

    register_structs! {
        /// The distributor as the hypervisor's physical GIC driver sees it.
        pub GicdRegisters {
            /// Distributor control.
            (0x0000 => pub ctlr: ReadWrite<u32, GICD_CTLR::Register>),
            /// Interrupt controller type.
            (0x0004 => pub typer: ReadOnly<u32, GICD_TYPER::Register>),
            /// Implementer identification.
            (0x0008 => pub iidr: ReadOnly<u32, IIDR::Register>),
            /// Interrupt controller type 2.
            (0x000c => pub typer2: ReadOnly<u32>),
            (0x0010 => _reserved0),
            /// Group registers (index n covers INTIDs 32n..32n+31).
            (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
            /// Set-enable registers.
            (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
            /// Clear-enable registers.
            (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
            /// Set-pending registers.
            (0x0200 => pub ispendr: [ReadWrite<u32>; 32]),
            /// Clear-pending registers.
            (0x0280 => pub icpendr: [ReadWrite<u32>; 32]),
            /// Set-active registers.
            (0x0300 => pub isactiver: [ReadWrite<u32>; 32]),
            /// Clear-active registers.
            (0x0380 => pub icactiver: [ReadWrite<u32>; 32]),
            /// Priorities, one byte per INTID (index = INTID; 0..=31 are RES0
            /// with affinity routing).
            (0x0400 => pub ipriorityr: [ReadWrite<u8>; 1020]),
            (0x07fc => _reserved1),
            /// Configuration, two bits per INTID (index n covers INTIDs
            /// 16n..16n+15).
            (0x0c00 => pub icfgr: [ReadWrite<u32>; 64]),
            /// Group modifier registers.
            (0x0d00 => pub igrpmodr: [ReadWrite<u32>; 32]),
            (0x0d80 => _reserved2),
            /// Routing, index = INTID (entries 0..=31 are reserved).
            (0x6000 => pub irouter: [ReadWrite<u64, IROUTER::Register>; 1020]),
            (0x7fe0 => _reserved3),
            /// Peripheral ID2.
            (0xffe8 => pub pidr2: ReadOnly<u32, PIDR2::Register>),
            (0xffec => _reserved4),
            (0x10000 => @END),
        },

        /// A redistributor's RD_base frame.
        pub GicrRdRegisters {
            /// Redistributor control.
            (0x0000 => pub ctlr: ReadWrite<u32>),
            /// Implementer identification.
            (0x0004 => pub iidr: ReadOnly<u32, IIDR::Register>),
            /// Redistributor type.
            (0x0008 => pub typer: ReadOnly<u64, GICR_TYPER::Register>),
            /// Error reporting status.
            (0x0010 => pub statusr: ReadWrite<u32>),
            /// Power management control.
            (0x0014 => pub waker: ReadWrite<u32, GICR_WAKER::Register>),
            (0x0018 => _reserved0),
            /// LPI configuration table base.
            (0x0070 => pub propbaser: ReadWrite<u64>),
            /// LPI pending table base.
            (0x0078 => pub pendbaser: ReadWrite<u64>),
            (0x0080 => _reserved1),
            /// Peripheral ID2.
            (0xffe8 => pub pidr2: ReadOnly<u32, PIDR2::Register>),
            (0xffec => _reserved2),
            (0x10000 => @END),
        },

        /// A redistributor's SGI_base frame (SGIs 0..=15, PPIs 16..=31).
        pub GicrSgiRegisters {
            (0x0000 => _reserved0),
            /// Group register 0.
            (0x0080 => pub igroupr0: ReadWrite<u32>),
            (0x0084 => _reserved1),
            /// Set-enable register 0.
            (0x0100 => pub isenabler0: ReadWrite<u32>),
            (0x0104 => _reserved2),
            /// Clear-enable register 0.
            (0x0180 => pub icenabler0: ReadWrite<u32>),
            (0x0184 => _reserved3),
            /// Set-pending register 0.
            (0x0200 => pub ispendr0: ReadWrite<u32>),
            (0x0204 => _reserved4),
            /// Clear-pending register 0.
            (0x0280 => pub icpendr0: ReadWrite<u32>),
            (0x0284 => _reserved5),
            /// Set-active register 0.
            (0x0300 => pub isactiver0: ReadWrite<u32>),
            (0x0304 => _reserved6),
            /// Clear-active register 0.
            (0x0380 => pub icactiver0: ReadWrite<u32>),
            (0x0384 => _reserved7),
            /// Priorities of INTIDs 0..=31, one byte each.
            (0x0400 => pub ipriorityr: [ReadWrite<u8>; 32]),
            (0x0420 => _reserved8),
            /// SGI configuration (read-only: edge).
            (0x0c00 => pub icfgr0: ReadWrite<u32>),
            /// PPI configuration.
            (0x0c04 => pub icfgr1: ReadWrite<u32>),
            (0x0c08 => _reserved9),
            /// Group modifier register 0.
            (0x0d00 => pub igrpmodr0: ReadWrite<u32>),
            (0x0d04 => _reserved10),
            (0x10000 => @END),
        }
    }
}
pub use block::{GicdRegisters, GicrRdRegisters, GicrSgiRegisters};

/// One redistributor without VLPI frames: RD_base followed by SGI_base.
#[repr(C)]
pub struct GicrFrame {
    /// RD_base frame.
    pub rd: GicrRdRegisters,
    /// SGI_base frame (+0x10000).
    pub sgi: GicrSgiRegisters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn distributor_block_matches_offsets() {
        assert_eq!(offset_of!(GicdRegisters, ctlr) as u64, gicd::CTLR);
        assert_eq!(offset_of!(GicdRegisters, typer) as u64, gicd::TYPER);
        assert_eq!(offset_of!(GicdRegisters, iidr) as u64, gicd::IIDR);
        assert_eq!(offset_of!(GicdRegisters, typer2) as u64, gicd::TYPER2);
        assert_eq!(offset_of!(GicdRegisters, igroupr) as u64, gicd::IGROUPR);
        assert_eq!(offset_of!(GicdRegisters, isenabler) as u64, gicd::ISENABLER);
        assert_eq!(offset_of!(GicdRegisters, icenabler) as u64, gicd::ICENABLER);
        assert_eq!(offset_of!(GicdRegisters, ispendr) as u64, gicd::ISPENDR);
        assert_eq!(offset_of!(GicdRegisters, icpendr) as u64, gicd::ICPENDR);
        assert_eq!(offset_of!(GicdRegisters, isactiver) as u64, gicd::ISACTIVER);
        assert_eq!(offset_of!(GicdRegisters, icactiver) as u64, gicd::ICACTIVER);
        assert_eq!(
            offset_of!(GicdRegisters, ipriorityr) as u64,
            gicd::IPRIORITYR
        );
        assert_eq!(offset_of!(GicdRegisters, icfgr) as u64, gicd::ICFGR);
        assert_eq!(offset_of!(GicdRegisters, igrpmodr) as u64, gicd::IGRPMODR);
        assert_eq!(offset_of!(GicdRegisters, irouter) as u64, gicd::IROUTER);
        assert_eq!(offset_of!(GicdRegisters, pidr2) as u64, gicd::PIDR2);
        assert_eq!(size_of::<GicdRegisters>() as u64, gicd::SIZE);
        // IROUTER<32> (the first SPI) lives at 0x6100, IROUTER<1019> at 0x7fd8.
        assert_eq!(gicd::IROUTER + 8 * 32, 0x6100);
        assert_eq!(gicd::IROUTER + 8 * 1019, 0x7fd8);
    }

    #[test]
    fn redistributor_blocks_match_offsets() {
        assert_eq!(offset_of!(GicrRdRegisters, ctlr) as u64, gicr::CTLR);
        assert_eq!(offset_of!(GicrRdRegisters, iidr) as u64, gicr::IIDR);
        assert_eq!(offset_of!(GicrRdRegisters, typer) as u64, gicr::TYPER);
        assert_eq!(offset_of!(GicrRdRegisters, statusr) as u64, gicr::STATUSR);
        assert_eq!(offset_of!(GicrRdRegisters, waker) as u64, gicr::WAKER);
        assert_eq!(
            offset_of!(GicrRdRegisters, propbaser) as u64,
            gicr::PROPBASER
        );
        assert_eq!(
            offset_of!(GicrRdRegisters, pendbaser) as u64,
            gicr::PENDBASER
        );
        assert_eq!(offset_of!(GicrRdRegisters, pidr2) as u64, gicr::PIDR2);

        let sgi = |o: usize| gicr::SGI_BASE + o as u64;
        assert_eq!(sgi(offset_of!(GicrSgiRegisters, igroupr0)), gicr::IGROUPR0);
        assert_eq!(
            sgi(offset_of!(GicrSgiRegisters, isenabler0)),
            gicr::ISENABLER0
        );
        assert_eq!(
            sgi(offset_of!(GicrSgiRegisters, icenabler0)),
            gicr::ICENABLER0
        );
        assert_eq!(sgi(offset_of!(GicrSgiRegisters, ispendr0)), gicr::ISPENDR0);
        assert_eq!(sgi(offset_of!(GicrSgiRegisters, icpendr0)), gicr::ICPENDR0);
        assert_eq!(
            sgi(offset_of!(GicrSgiRegisters, isactiver0)),
            gicr::ISACTIVER0
        );
        assert_eq!(
            sgi(offset_of!(GicrSgiRegisters, icactiver0)),
            gicr::ICACTIVER0
        );
        assert_eq!(
            sgi(offset_of!(GicrSgiRegisters, ipriorityr)),
            gicr::IPRIORITYR
        );
        assert_eq!(sgi(offset_of!(GicrSgiRegisters, icfgr0)), gicr::ICFGR0);
        assert_eq!(sgi(offset_of!(GicrSgiRegisters, icfgr1)), gicr::ICFGR1);
        assert_eq!(
            sgi(offset_of!(GicrSgiRegisters, igrpmodr0)),
            gicr::IGRPMODR0
        );

        assert_eq!(offset_of!(GicrFrame, sgi) as u64, gicr::SGI_BASE);
        assert_eq!(size_of::<GicrFrame>() as u64, gicr::STRIDE);
    }

    #[test]
    fn linux_visible_bit_positions() {
        // Values Linux's irq-gic-v3 driver writes and tests.
        assert_eq!(
            gicd_ctlr::ARE | gicd_ctlr::ENABLE_GRP1 | gicd_ctlr::ENABLE_GRP0,
            0x13
        );
        assert_eq!(gicd_ctlr::RWP, 0x8000_0000);
        assert_eq!(gicd_typer::LPIS, 1 << 17);
        assert_eq!(gicd_typer::RSS, 1 << 26);
        assert_eq!(gicr_typer::LAST, 0x10);
        assert_eq!(gicr_waker::PROCESSOR_SLEEP, 2);
        assert_eq!(gicr_waker::CHILDREN_ASLEEP, 4);
        assert_eq!(irouter::IRM, 1 << 31);
        assert_eq!(
            irouter::VALID_MASK,
            0xff_0000_0000 | 0x8000_0000 | 0xff_ffff
        );
        assert_eq!(pidr2::ARCH_REV_GICV3 << pidr2::ARCH_REV_SHIFT, 0x30);
    }

    #[test]
    fn bitfields_match_constants() {
        assert_eq!(GICD_CTLR::ARE.mask << GICD_CTLR::ARE.shift, gicd_ctlr::ARE);
        assert_eq!(GICD_CTLR::RWP.mask << GICD_CTLR::RWP.shift, gicd_ctlr::RWP);
        assert_eq!(
            GICD_TYPER::LPIS.mask << GICD_TYPER::LPIS.shift,
            gicd_typer::LPIS
        );
        assert_eq!(GICD_TYPER::IDbits.shift as u32, gicd_typer::ID_BITS_SHIFT);
        assert_eq!(
            GICR_TYPER::Last.mask << GICR_TYPER::Last.shift,
            gicr_typer::LAST
        );
        assert_eq!(
            GICR_TYPER::AffinityValue.shift as u32,
            gicr_typer::AFFINITY_SHIFT
        );
        assert_eq!(
            GICR_WAKER::ChildrenAsleep.mask << GICR_WAKER::ChildrenAsleep.shift,
            gicr_waker::CHILDREN_ASLEEP
        );
        assert_eq!(IROUTER::IRM.mask << IROUTER::IRM.shift, irouter::IRM);
    }
}
