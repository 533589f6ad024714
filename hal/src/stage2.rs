//! Stage-2 translation: descriptor bits and VTCR_EL2/VTTBR_EL2 encodings.
//!
//! Reference: Arm ARM D8.3.2 (stage 2 attribute fields) and D19.2
//! (VTCR_EL2, VTTBR_EL2).

use aarch64_cpu::registers::VTCR_EL2;
use bitflags::bitflags;

bitflags! {
    /// Attribute bits of a stage-2 block or page descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct S2Desc: u64 {
        /// Descriptor is valid.
        const VALID = 1 << 0;
        /// Table descriptor (levels 0-2) or page descriptor (level 3).
        const TABLE_OR_PAGE = 1 << 1;
        /// S2AP[0]: stage-2 read permission.
        const S2AP_READ = 1 << 6;
        /// S2AP[1]: stage-2 write permission.
        const S2AP_WRITE = 1 << 7;
        /// Shareability: inner shareable (SH = 0b11).
        const INNER_SHAREABLE = 0b11 << 8;
        /// Access flag.
        const AF = 1 << 10;
        /// Execute never at EL1 and EL0 (XN[1] = 1, XN[0] = 0).
        const XN = 1 << 54;
    }
}

/// Stage-2 MemAttr `[5:2]` for Normal memory, outer and inner write-back.
pub const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// Stage-2 MemAttr `[5:2]` for Device-nGnRE memory.
pub const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
/// Mask of the MemAttr field.
pub const MEMATTR_MASK: u64 = 0b1111 << 2;

/// Output-address mask of a descriptor (bits `[47:12]`).
pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// VTCR_EL2 RES1 bit 31.
pub const VTCR_RES1: u64 = VTCR_EL2::RES1::SET.value;

/// Encodes VTCR_EL2 for a 4 KiB granule: `t0sz` (IPA size = 64 - t0sz),
/// `sl0` start level encoding, physical address size `ps`
/// (from ID_AA64MMFR0_EL1.PARange), write-back inner-shareable walks.
pub const fn vtcr_el2(t0sz: u64, sl0: u64, ps: u64) -> u64 {
    VTCR_RES1
        | VTCR_EL2::PS.val(ps & 7).value
        | VTCR_EL2::TG0::Granule4KB.value
        | VTCR_EL2::SH0::Inner.value
        | VTCR_EL2::ORGN0::NormalWBRAWA.value
        | VTCR_EL2::IRGN0::NormalWBRAWA.value
        | VTCR_EL2::SL0.val(sl0 & 3).value
        | VTCR_EL2::T0SZ.val(t0sz & 0x3f).value
}

/// Encodes VTTBR_EL2 from an 8-bit VMID and the root table's address.
pub const fn vttbr_el2(vmid: u8, root_pa: u64) -> u64 {
    ((vmid as u64) << 48) | (root_pa & 0x0000_ffff_ffff_fffe)
}

/// IPA bits supported by the physical address size encoding `parange`
/// (ID_AA64MMFR0_EL1.PARange), or `None` for a reserved encoding.
pub const fn parange_bits(parange: u64) -> Option<u32> {
    match parange {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtcr_for_39_bit_ipa_start_level_1() {
        let v = vtcr_el2(25, 1, 4);
        assert_eq!(v & 0x3f, 25);
        assert_eq!((v >> 6) & 3, 1);
        assert_eq!((v >> 16) & 7, 4);
        assert_ne!(v & VTCR_RES1, 0);
    }

    #[test]
    fn vtcr_equals_the_raw_encoding() {
        // The bit positions written by hand before the encoding used the
        // register's field definitions.
        let raw = |t0sz: u64, sl0: u64, ps: u64| {
            (1 << 31) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (sl0 << 6) | t0sz
        };
        for ps in 0..7 {
            for sl0 in 0..3 {
                for t0sz in [16, 25, 32, 39] {
                    assert_eq!(vtcr_el2(t0sz, sl0, ps), raw(t0sz, sl0, ps));
                }
            }
        }
        assert_eq!(vtcr_el2(25, 1, 2), 0x8002_3559);
    }

    #[test]
    fn vttbr_places_vmid() {
        assert_eq!(vttbr_el2(3, 0x4123_4000), (3 << 48) | 0x4123_4000);
    }

    #[test]
    fn parange_decode() {
        assert_eq!(parange_bits(4), Some(44));
        assert_eq!(parange_bits(7), None);
    }
}
