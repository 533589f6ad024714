//! EL2 stage-1 translation: descriptor bits, MAIR attribute indices and the
//! TCR_EL2 fields the hypervisor's own MMU uses (4 KiB granule, non-VHE).
//!
//! Reference: Arm ARM D8.3 (VMSAv8-64 translation table descriptor formats)
//! and D19.2 (TCR_EL2, MAIR_EL2).

use bitflags::bitflags;

bitflags! {
    /// Lower and upper attribute bits of a stage-1 block or page descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct S1Desc: u64 {
        /// Descriptor is valid.
        const VALID = 1 << 0;
        /// Table descriptor (levels 0-2) or page descriptor (level 3).
        const TABLE_OR_PAGE = 1 << 1;
        /// AttrIndx bit 0 (index into MAIR_EL2).
        const ATTR_IDX0 = 1 << 2;
        /// AttrIndx bit 1.
        const ATTR_IDX1 = 1 << 3;
        /// AttrIndx bit 2.
        const ATTR_IDX2 = 1 << 4;
        /// AP[2]: read-only.
        const READ_ONLY = 1 << 7;
        /// Shareability: inner shareable (SH = 0b11).
        const INNER_SHAREABLE = 0b11 << 8;
        /// Access flag.
        const AF = 1 << 10;
        /// Execute never (XN for EL2's single-VA-range regime).
        const XN = 1 << 54;
    }
}

/// MAIR index of Device-nGnRnE memory.
pub const MAIR_IDX_DEVICE: u64 = 0;
/// MAIR index of Normal memory, inner/outer write-back read/write-allocate.
pub const MAIR_IDX_NORMAL: u64 = 1;
/// MAIR index of Normal non-cacheable memory.
pub const MAIR_IDX_NORMAL_NC: u64 = 2;

/// MAIR_EL2 value matching the indices above.
pub const MAIR_VALUE: u64 = (0xff << 8) | (0x44 << 16); // index 0 = 0x00

/// Output-address mask of a block/page descriptor (bits `[47:12]`).
pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// A level-1 (1 GiB) or level-2 (2 MiB) block descriptor.
pub const fn block(pa: u64, attr_idx: u64, extra: S1Desc) -> u64 {
    (pa & OA_MASK) | (attr_idx << 2) | S1Desc::VALID.bits() | S1Desc::AF.bits() | extra.bits()
}

/// A table descriptor pointing at a next-level table.
pub const fn table(pa: u64) -> u64 {
    (pa & OA_MASK) | S1Desc::VALID.bits() | S1Desc::TABLE_OR_PAGE.bits()
}

/// TCR_EL2 for a single 4 KiB-granule range with `t0sz` and physical
/// address size encoding `ps` (ID_AA64MMFR0_EL1.PARange), write-back
/// inner-shareable walks.
pub const fn tcr_el2(t0sz: u64, ps: u64) -> u64 {
    const RES1: u64 = (1 << 31) | (1 << 23);
    // TG0 (bits 15:14) = 0b00: 4 KiB granule.
    RES1 | ((ps & 7) << 16)
        | (0b11 << 12) // SH0 inner shareable
        | (0b01 << 10) // ORGN0 write-back write-allocate
        | (0b01 << 8) // IRGN0 write-back write-allocate
        | (t0sz & 0x3f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_block_has_attr_index_and_af() {
        let d = block(0x4000_0000, MAIR_IDX_NORMAL, S1Desc::INNER_SHAREABLE);
        assert_eq!(d & 1, 1);
        assert_eq!((d >> 2) & 7, MAIR_IDX_NORMAL);
        assert_eq!((d >> 10) & 1, 1);
        assert_eq!((d >> 8) & 3, 0b11);
        assert_eq!(d & OA_MASK, 0x4000_0000);
        assert_eq!(d & 2, 0, "a block descriptor has bit 1 clear");
    }

    #[test]
    fn tcr_fields() {
        let tcr = tcr_el2(25, 4);
        assert_eq!(tcr & 0x3f, 25);
        assert_eq!((tcr >> 16) & 7, 4);
        assert_eq!((tcr >> 14) & 3, 0);
        assert_ne!(tcr & (1 << 31), 0);
    }

    #[test]
    fn mair_slots() {
        assert_eq!(MAIR_VALUE & 0xff, 0x00);
        assert_eq!((MAIR_VALUE >> 8) & 0xff, 0xff);
        assert_eq!((MAIR_VALUE >> 16) & 0xff, 0x44);
    }
}
