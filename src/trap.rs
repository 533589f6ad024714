//! Exit reasons: the boundary between the arch layer and the logic.
//!
//! The world switch (in `arch/`) returns the raw syndrome registers of a
//! synchronous exception from the guest; [`decode_sync`] turns them into an
//! [`Exit`] that the run loop matches on. Data aborts with a valid syndrome
//! become an [`MmioAccess`] carrying everything needed to emulate the load
//! or store and to write the result back with the right extension.

use hal::esr::{Esr, ExceptionClass, SysRegIss};

use crate::mmio::AccessSize;

/// Why a vCPU stopped running guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// HVC from AArch64 with its immediate. The preferred return address is
    /// already the next instruction.
    Hvc {
        /// The HVC immediate.
        imm: u16,
    },
    /// SMC trapped by HCR_EL2.TSC. ELR points at the SMC: add `len`.
    Smc {
        /// The SMC immediate.
        imm: u16,
        /// Length of the SMC instruction in bytes (ESR_EL2.IL).
        len: u8,
    },
    /// A load or store to an unmapped guest-physical address with a valid
    /// syndrome: emulate it, then advance the PC by its
    /// [`MmioAccess::instr_len`].
    Mmio(MmioAccess),
    /// A stage-2 data abort that cannot be emulated: no valid syndrome
    /// (ISV = 0, e.g. a load pair or a post-indexed store), a fault on a
    /// stage-1 table walk, or an external abort.
    BadAbort {
        /// Faulting intermediate physical address.
        ipa: u64,
        /// The raw syndrome.
        esr: Esr,
    },
    /// A stage-2 instruction abort (the guest executed from an unmapped
    /// address).
    InstructionAbort {
        /// Faulting intermediate physical address.
        ipa: u64,
        /// The raw syndrome.
        esr: Esr,
    },
    /// WFI (a 16-bit T32 WFI from an AArch32 task has `len` 2).
    Wfi {
        /// Length of the instruction in bytes (ESR_EL2.IL).
        len: u8,
    },
    /// WFE.
    Wfe {
        /// Length of the instruction in bytes (ESR_EL2.IL).
        len: u8,
    },
    /// A trapped MSR/MRS (e.g. a write to ICC_SGI1R_EL1).
    SysReg {
        /// The register and direction.
        iss: SysRegIss,
        /// Length of the instruction in bytes (ESR_EL2.IL).
        len: u8,
    },
    /// Any other synchronous exception from the guest.
    Other(Esr),
}

/// An emulated MMIO load or store, decoded from a data-abort syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Guest-physical address accessed.
    pub ipa: u64,
    /// Access width.
    pub size: AccessSize,
    /// True for a store.
    pub is_write: bool,
    /// Transfer register number; 31 means XZR (store of 0, load discarded).
    pub reg: u8,
    /// The load is sign-extended (LDRSB/LDRSH/LDRSW).
    pub sign_extend: bool,
    /// The transfer register is 64-bit (X) rather than 32-bit (W).
    pub sixty_four: bool,
    /// Length of the load/store instruction in bytes (ESR_EL2.IL): 2 for a
    /// 16-bit T32 instruction from an AArch32 task, 4 otherwise.
    pub instr_len: u8,
}

impl MmioAccess {
    /// The value a store writes, given the guest's general-purpose
    /// registers x0..x30: XZR stores zero, and only the access's low bytes
    /// are kept.
    pub fn store_value(&self, gprs: &[u64; 31]) -> u64 {
        let raw = match gprs.get(self.reg as usize) {
            Some(value) => *value,
            None => 0, // reg 31 = XZR
        };
        raw & self.size.mask()
    }

    /// The value to write back into the transfer register after a load that
    /// returned `raw` from the device, or `None` when the target is XZR and
    /// the result is discarded. Applies zero or sign extension to the
    /// register width as the load instruction would.
    pub fn load_result(&self, raw: u64) -> Option<(u8, u64)> {
        if self.reg >= 31 {
            return None;
        }
        let bits = self.size.bytes() as u32 * 8;
        let value = raw & self.size.mask();
        let extended = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        let result = if self.sixty_four {
            extended
        } else {
            extended & 0xffff_ffff
        };
        Some((self.reg, result))
    }
}

/// Faulting IPA from HPFAR_EL2 (FIPA, bits `[43:4]` = IPA `[51:12]`) and the
/// page offset from FAR_EL2.
pub const fn fault_ipa(far: u64, hpfar: u64) -> u64 {
    (((hpfar >> 4) & 0xff_ffff_ffff) << 12) | (far & 0xfff)
}

/// Decodes a synchronous exception taken from the guest.
pub fn decode_sync(esr: u64, far: u64, hpfar: u64) -> Exit {
    let esr = Esr(esr);
    match esr.class() {
        ExceptionClass::Hvc64 => Exit::Hvc { imm: esr.imm16() },
        ExceptionClass::Smc64 => Exit::Smc {
            imm: esr.imm16(),
            len: esr.instr_len(),
        },
        ExceptionClass::WfiWfe => {
            let len = esr.instr_len();
            if esr.is_wfe() {
                Exit::Wfe { len }
            } else {
                Exit::Wfi { len }
            }
        }
        ExceptionClass::SysReg64 => Exit::SysReg {
            iss: esr.sysreg(),
            len: esr.instr_len(),
        },
        ExceptionClass::InstrAbortLower => Exit::InstructionAbort {
            ipa: fault_ipa(far, hpfar),
            esr,
        },
        ExceptionClass::DataAbortLower => {
            let ipa = fault_ipa(far, hpfar);
            let da = esr.data_abort();
            if !da.isv() || da.s1ptw() || da.external_abort() || da.cache_maintenance() {
                return Exit::BadAbort { ipa, esr };
            }
            match AccessSize::from_bytes(da.access_size()) {
                Some(size) => Exit::Mmio(MmioAccess {
                    ipa,
                    size,
                    is_write: da.is_write(),
                    reg: da.srt(),
                    sign_extend: da.sign_extend(),
                    sixty_four: da.sixty_four(),
                    instr_len: esr.instr_len(),
                }),
                None => Exit::BadAbort { ipa, esr },
            }
        }
        _ => Exit::Other(esr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DABT: u64 = (0x24 << 26) | (1 << 25);

    fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
        DABT | (1 << 24)
            | (sas << 22)
            | ((sse as u64) << 21)
            | (srt << 16)
            | ((sf as u64) << 15)
            | ((wnr as u64) << 6)
            | 0x07
    }

    fn mmio(esr: u64) -> MmioAccess {
        match decode_sync(esr, 0x0900_0018, 0x0900_0000 >> 8) {
            Exit::Mmio(access) => access,
            other => panic!("expected MMIO, got {other:?}"),
        }
    }

    #[test]
    fn ipa_combines_hpfar_and_far() {
        assert_eq!(
            fault_ipa(0xffff_0000_1234_5abc, 0x0a00_0200 >> 8),
            0x0a00_0abc
        );
    }

    #[test]
    fn decodes_word_store() {
        let a = mmio(dabt(2, false, 5, false, true));
        assert_eq!(a.ipa, 0x0900_0018);
        assert_eq!(a.size, AccessSize::Word);
        assert!(a.is_write);
        let mut regs = [0u64; 31];
        regs[5] = 0xdead_beef_cafe_f00d;
        assert_eq!(a.store_value(&regs), 0xcafe_f00d);
    }

    #[test]
    fn store_of_xzr_is_zero() {
        let a = mmio(dabt(3, false, 31, true, true));
        assert_eq!(a.store_value(&[u64::MAX; 31]), 0);
    }

    #[test]
    fn load_of_xzr_is_discarded() {
        let a = mmio(dabt(2, false, 31, false, false));
        assert_eq!(a.load_result(0x1234), None);
    }

    #[test]
    fn unsigned_loads_zero_extend() {
        assert_eq!(
            mmio(dabt(0, false, 1, false, false)).load_result(0x1ff),
            Some((1, 0xff))
        );
        assert_eq!(
            mmio(dabt(1, false, 2, true, false)).load_result(0xf_8000),
            Some((2, 0x8000))
        );
        assert_eq!(
            mmio(dabt(3, false, 3, true, false)).load_result(u64::MAX),
            Some((3, u64::MAX))
        );
    }

    #[test]
    fn signed_loads_sign_extend_to_register_width() {
        // LDRSB x1 of 0x80 -> 0xffff_ffff_ffff_ff80
        assert_eq!(
            mmio(dabt(0, true, 1, true, false)).load_result(0x80),
            Some((1, 0xffff_ffff_ffff_ff80))
        );
        // LDRSB w1 of 0x80 -> 0xffff_ff80 (upper half of X cleared)
        assert_eq!(
            mmio(dabt(0, true, 1, false, false)).load_result(0x80),
            Some((1, 0xffff_ff80))
        );
        // LDRSH x2 of 0x7fff stays positive
        assert_eq!(
            mmio(dabt(1, true, 2, true, false)).load_result(0x7fff),
            Some((2, 0x7fff))
        );
        // LDRSW x3 of 0x8000_0000
        assert_eq!(
            mmio(dabt(2, true, 3, true, false)).load_result(0x8000_0000),
            Some((3, 0xffff_ffff_8000_0000))
        );
    }

    #[test]
    fn abort_without_syndrome_is_bad() {
        let esr = DABT | 0x07; // ISV = 0
        assert!(matches!(
            decode_sync(esr, 0x10, 0x100),
            Exit::BadAbort { ipa: 0x10010, .. }
        ));
    }

    #[test]
    fn stage1_walk_fault_is_bad() {
        let esr = dabt(2, false, 0, false, false) | (1 << 7);
        assert!(matches!(decode_sync(esr, 0, 0), Exit::BadAbort { .. }));
    }

    #[test]
    fn hvc_smc_wfx_sysreg() {
        assert_eq!(decode_sync((0x16 << 26) | 7, 0, 0), Exit::Hvc { imm: 7 });
        const IL: u64 = 1 << 25;
        assert_eq!(
            decode_sync((0x17 << 26) | IL, 0, 0),
            Exit::Smc { imm: 0, len: 4 }
        );
        assert_eq!(decode_sync((0x01 << 26) | IL, 0, 0), Exit::Wfi { len: 4 });
        assert_eq!(decode_sync(0x01 << 26, 0, 0), Exit::Wfi { len: 2 });
        assert_eq!(decode_sync((0x01 << 26) | 1, 0, 0), Exit::Wfe { len: 2 });
        let sgi = decode_sync((0x18 << 26) | IL | hal::esr::ICC_SGI1R_EL1 as u64, 0, 0);
        assert!(matches!(sgi, Exit::SysReg { iss, len: 4 } if iss.id() == hal::esr::ICC_SGI1R_EL1));
    }
}
