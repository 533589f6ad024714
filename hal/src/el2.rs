//! EL2 configuration values for running guests, built from the typed
//! register fields of `aarch64-cpu` (its field definitions are plain
//! constants on every target; only its register accessors need AArch64),
//! so they are checked on the host bit by bit against the architecture.

use aarch64_cpu::registers::{CNTHCTL_EL2, CNTHP_CTL_EL2, CNTV_CTL_EL0, HCR_EL2};

/// HCR_EL2 for running a guest: VM (stage 2), SWIO, FMO, IMO, AMO (physical
/// interrupts and SErrors to EL2), FB + BSU=inner-shareable (broadcast TLB
/// and barrier maintenance), TWI and TWE (WFI/WFE trap so an idle or
/// spinning vCPU yields), TSC (SMC traps: PSCI over SMC), RW (EL1 is
/// AArch64).
pub const HCR_GUEST: u64 = HCR_EL2::VM::Enable.value
    | HCR_EL2::SWIO::SET.value
    | HCR_EL2::FMO::EnableVirtualFIQ.value
    | HCR_EL2::IMO::EnableVirtualIRQ.value
    | HCR_EL2::AMO::SET.value
    | HCR_EL2::FB::SET.value
    | HCR_EL2::BSU::InnerShareable.value
    | HCR_EL2::TWI::SET.value
    | HCR_EL2::TWE::SET.value
    | HCR_EL2::TSC::EnableTrapEl1SmcToEl2.value
    | HCR_EL2::RW::EL1IsAarch64.value;

/// HCR_EL2.TID3: guest reads of the ID registers trap to EL2 and are
/// answered from a sanitized table.
pub const HCR_TID3: u64 = HCR_EL2::TID3::SET.value;

/// HCR_EL2.APK and API: the guest's pointer-authentication key registers
/// and instructions do not trap (the keys are switched per vCPU).
pub const HCR_APK_API: u64 = HCR_EL2::APK::DisableTrapPointerAuthKeyRegsToEl2.value
    | HCR_EL2::API::DisableTrapPointerAuthInstToEl2.value;

/// HCR_EL2 for running guests: [`HCR_GUEST`], TID3, and APK/API when the
/// machine has pointer authentication.
pub const fn hcr_guest(pauth: bool) -> u64 {
    HCR_GUEST | HCR_TID3 | if pauth { HCR_APK_API } else { 0 }
}

/// CNTHCTL_EL2: EL1PCTEN (guests may read the physical counter); EL1PCEN
/// is clear, so the guest's EL1 *physical* timer registers trap (guests
/// use the virtual timer).
pub const CNTHCTL_GUEST: u64 = CNTHCTL_EL2::EL1PCTEN::SET.value;

/// CNTHP_CTL_EL2 of the armed hypervisor timer: ENABLE, IMASK clear.
pub const CNTHP_CTL_ARMED: u64 = CNTHP_CTL_EL2::ENABLE::SET.value;

/// Whether a CNTHP_CTL_EL2 value says the timer is enabled and its
/// condition met (ENABLE and ISTATUS).
pub const fn cnthp_fired(ctl: u64) -> bool {
    let both = CNTHP_CTL_EL2::ENABLE::SET.value | CNTHP_CTL_EL2::ISTATUS::SET.value;
    ctl & both == both
}

/// The writable bits of CNTV_CTL_EL0 (ENABLE, IMASK); ISTATUS is
/// read-only.
pub const CNTV_CTL_WRITABLE: u64 = CNTV_CTL_EL0::ENABLE::SET.value | CNTV_CTL_EL0::IMASK::SET.value;

#[cfg(test)]
mod tests {
    use super::*;

    // The values the hypervisor wrote as raw bit positions before they were
    // built from the register fields: the guests' configuration must not
    // change.
    #[test]
    fn hcr_values_are_the_architected_bits() {
        let old_guest = (1 << 0)
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
        assert_eq!(HCR_GUEST, old_guest);
        assert_eq!(HCR_GUEST, 0x8008_663b);
        assert_eq!(HCR_TID3, 1 << 18);
        assert_eq!(HCR_APK_API, (1 << 40) | (1 << 41));
        assert_eq!(hcr_guest(false), old_guest | (1 << 18));
        assert_eq!(hcr_guest(true), old_guest | (1 << 18) | (3 << 40));
    }

    #[test]
    fn timer_values_are_the_architected_bits() {
        assert_eq!(CNTHCTL_GUEST, 1);
        assert_eq!(CNTHP_CTL_ARMED, 1);
        assert_eq!(CNTV_CTL_WRITABLE, 3);
        assert!(cnthp_fired(0b101));
        assert!(cnthp_fired(0b111), "IMASK does not hide the condition");
        assert!(!cnthp_fired(0b100), "disabled");
        assert!(!cnthp_fired(0b001), "condition not met");
    }
}
