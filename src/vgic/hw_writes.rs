//! Which virtual CPU interface registers a guest entry must write.
//!
//! After a guest exit the run loop reads the interface (`ICH_*_EL2`) into
//! the vCPU's [`VcpuIfState`] and, when no maintenance condition is
//! asserted, leaves the interface enabled: the hardware then still holds
//! exactly that state (nothing but a guest run changes it). The vGIC model
//! edits the saved copy ([`crate::vgic::Vgic::sync`], `flush`), and the next
//! entry writes only the registers whose value differs from what the
//! hardware holds. On QEMU every write of an `ICH_*` register recomputes
//! the virtual interrupt lines, so an exit that changes no interrupt state
//! (most MMIO and HVC exits) writes none of them. With no known hardware
//! state (the interface was turned off, or the CPU idled) every register is
//! written.

use super::VcpuIfState;

/// The registers an entry writes ([`if_writes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfWrites {
    /// List registers to write, as a bit mask (bit n: `ICH_LR<n>_EL2`).
    pub lrs: u16,
    /// `ICH_VMCR_EL2`.
    pub vmcr: bool,
    /// The active-priority registers (`ICH_AP0R<n>_EL2`, `ICH_AP1R<n>_EL2`).
    pub aprs: bool,
    /// `ICH_HCR_EL2` (written last: it may enable the interface).
    pub hcr: bool,
}

impl IfWrites {
    /// Nothing to write: the hardware holds the state already.
    pub const fn is_empty(&self) -> bool {
        self.lrs == 0 && !self.vmcr && !self.aprs && !self.hcr
    }
}

/// The registers to write so that the interface holds `next`, when it
/// holds `hw` (`None`: unknown, e.g. turned off; everything is written).
pub fn if_writes(hw: Option<&VcpuIfState>, next: &VcpuIfState) -> IfWrites {
    let n = next.lr_count();
    let all_lrs = if n >= 16 { u16::MAX } else { (1u16 << n) - 1 };
    match hw {
        Some(hw) if hw.lr_count() == n => IfWrites {
            lrs: (0..n)
                .filter(|&i| hw.lrs[i] != next.lrs[i])
                .fold(0, |mask, i| mask | (1 << i)),
            vmcr: hw.vmcr != next.vmcr,
            aprs: hw.ap0r != next.ap0r || hw.ap1r != next.ap1r,
            hcr: hw.hcr != next.hcr,
        },
        _ => IfWrites {
            lrs: all_lrs,
            vmcr: true,
            aprs: true,
            hcr: true,
        },
    }
}

/// The list registers an exit must read back (bit n: `ICH_LR<n>_EL2`),
/// given `entered`, the state the interface held when the guest was
/// entered: only those that were not zero. A zero LR is Invalid, and the
/// CPU interface changes only LRs that hold an interrupt, while the guest
/// has no access to `ICH_LR<n>_EL2` at all: an LR entered as zero is still
/// zero at the exit, so not reading it leaves the saved copy exact. (The
/// active-priority registers and `ICH_VMCR_EL2` are always read: the guest
/// writes their `ICV_*` views directly; `ICH_HCR_EL2` too: its EOIcount
/// counts EOIs of interrupts that have no LR.)
pub fn lrs_to_read(entered: &VcpuIfState) -> u16 {
    (0..entered.lr_count())
        .filter(|&i| entered.lrs[i] != 0)
        .fold(0, |mask, i| mask | (1 << i))
}

/// Whether the interface may stay enabled (holding the saved state) after
/// a guest exit whose `ICH_MISR_EL2` reads `misr`: only when no
/// maintenance interrupt is asserted. Otherwise it is turned off, and the
/// next entry writes every register.
pub const fn keep_enabled_after_exit(misr: u64) -> bool {
    misr == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::ich::IchMisr;

    #[test]
    fn any_maintenance_condition_turns_the_interface_off() {
        assert!(keep_enabled_after_exit(0));
        for bit in 0..8 {
            assert!(!keep_enabled_after_exit(1 << bit), "MISR bit {bit}");
        }
        assert!(!keep_enabled_after_exit(IchMisr::U.bits()));
    }

    fn state() -> VcpuIfState {
        let mut s = VcpuIfState::new(4);
        s.lrs[1] = 0x50a0_0000_0000_001b;
        s.vmcr = 0xf000_0001;
        s.ap1r[0] = 1;
        s
    }

    #[test]
    fn every_lr_entered_non_zero_is_read_back() {
        let mut s = VcpuIfState::new(4);
        assert_eq!(lrs_to_read(&s), 0, "nothing loaded: nothing to read");
        // Any non-zero value, even one with state Invalid, is read.
        for lr in 0..4 {
            for bit in [0, 32, 41, 48, 60, 62, 63] {
                let mut t = s;
                t.lrs[lr] = 1 << bit;
                assert_eq!(lrs_to_read(&t), 1 << lr, "LR{lr} bit {bit}");
            }
        }
        s.lrs[0] = 0x50a0_0000_0000_001b;
        s.lrs[2] = 0x10a0_0000_0000_0021;
        assert_eq!(lrs_to_read(&s), 0b0101);
        // Only implemented LRs.
        s.lrs[5] = 1;
        assert_eq!(lrs_to_read(&s), 0b0101);
        let mut sixteen = VcpuIfState::new(16);
        sixteen.lrs = [1; 16];
        assert_eq!(lrs_to_read(&sixteen), u16::MAX);
    }

    #[test]
    fn unknown_hardware_state_writes_everything() {
        let w = if_writes(None, &state());
        assert_eq!(w.lrs, 0b1111);
        assert!(w.vmcr && w.aprs && w.hcr);
        let sixteen = VcpuIfState::new(16);
        assert_eq!(if_writes(None, &sixteen).lrs, u16::MAX);
    }

    #[test]
    fn unchanged_state_writes_nothing() {
        let s = state();
        assert!(if_writes(Some(&s), &s).is_empty());
    }

    #[test]
    fn each_changed_register_is_written_and_only_it() {
        let hw = state();
        for lr in 0..4 {
            let mut next = hw;
            next.lrs[lr] ^= 1 << 62;
            assert_eq!(
                if_writes(Some(&hw), &next),
                IfWrites {
                    lrs: 1 << lr,
                    ..IfWrites::default()
                }
            );
        }
        let mut next = hw;
        next.vmcr = 0;
        assert_eq!(
            if_writes(Some(&hw), &next),
            IfWrites {
                vmcr: true,
                ..IfWrites::default()
            }
        );
        for group in 0..2 {
            for reg in 0..4 {
                let mut next = hw;
                if group == 0 {
                    next.ap0r[reg] ^= 1;
                } else {
                    next.ap1r[reg] ^= 1;
                }
                assert_eq!(
                    if_writes(Some(&hw), &next),
                    IfWrites {
                        aprs: true,
                        ..IfWrites::default()
                    }
                );
            }
        }
        let mut next = hw;
        next.hcr |= 1 << 1; // UIE: a maintenance interrupt was requested
        assert_eq!(
            if_writes(Some(&hw), &next),
            IfWrites {
                hcr: true,
                ..IfWrites::default()
            }
        );
    }

    #[test]
    fn another_vcpus_state_writes_what_differs() {
        let hw = state();
        let mut other = VcpuIfState::new(4);
        other.lrs[3] = 0x50a0_0000_0000_0021;
        let w = if_writes(Some(&hw), &other);
        assert_eq!(w.lrs, 0b1010);
        assert!(w.vmcr && w.aprs && !w.hcr);
    }

    #[test]
    fn a_different_list_register_count_writes_everything() {
        let hw = VcpuIfState::new(2);
        let next = VcpuIfState::new(4);
        assert_eq!(if_writes(Some(&hw), &next).lrs, 0b1111);
    }
}
