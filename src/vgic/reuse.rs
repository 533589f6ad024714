//! Reusing the previous flush: when nothing that decides what goes into a
//! vCPU's list registers has changed since its last [`Vgic::flush`], and
//! the hardware gave the list registers back exactly as that flush wrote
//! them, the next flush puts the same content back without scanning the
//! interrupts.
//!
//! The marker is the VM's `generation`, bumped by every operation that can
//! change a flush's outcome: every register write or injection that
//! changes an interrupt (`Vgic::touch` and `touch_all`), a PPI or SPI
//! level that actually changes, SGIs, the EOIcount fix-ups and a sync that
//! finds the guest made progress on a list register (or finds an
//! interrupt another vCPU may now load). Each vCPU's flush records the
//! generation it saw ([`LastFlush`]); [`may_reuse`] is the decision.
//!
//! [`Vgic::flush`]: super::Vgic::flush

use hal::ich::{MAX_LIST_REGS, hcr_eoi_count};

/// What one vCPU's last flush wrote, kept so that the next flush can write
/// it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LastFlush {
    /// The VM's generation when the flush finished.
    pub generation: u64,
    /// The list registers as the flush left them (unused ones zero).
    pub lrs: [u64; MAX_LIST_REGS],
    /// The vCPU's list-register count at that flush.
    pub num_lrs: u8,
    /// List registers loaded.
    pub loaded: u8,
    /// Bit `n`: LR `n` was loaded with its pending bit set.
    pub pending_slots: u16,
    /// Interrupts that wanted an LR but did not get one.
    pub waiting: u16,
    /// The maintenance bits of `ICH_HCR_EL2` the flush set (UIE, LRENPIE).
    pub hcr_bits: u64,
}

/// Whether a flush may write the previous flush's list registers again
/// instead of scanning: only if there is a previous flush (`last`), the
/// VM's `generation` is still the one it recorded (no interrupt state
/// changed since), the hardware gave back unchanged list registers
/// (`hw_unchanged`, kept by sync) and the vCPU has as many list registers
/// as then. Anything else takes the full scan.
pub(super) fn may_reuse(
    last: Option<&LastFlush>,
    generation: u64,
    hw_unchanged: bool,
    num_lrs: usize,
) -> bool {
    match last {
        Some(last) => {
            hw_unchanged && last.generation == generation && usize::from(last.num_lrs) == num_lrs
        }
        None => false,
    }
}

/// Whether the list registers saved at exit (`saved`, with `ICH_HCR_EL2`
/// in `hcr`) are exactly what the last flush wrote (`written`, its first
/// `loaded` entries): no LR changed state (the guest acknowledged,
/// deactivated or was given nothing) and no EOIcount deactivation
/// happened. Unused LRs do not matter: flush zeroes them.
pub(super) fn lrs_unchanged(written: &[u64], saved: &[u64], loaded: usize, hcr: u64) -> bool {
    hcr_eoi_count(hcr) == 0
        && loaded <= written.len()
        && loaded <= saved.len()
        && written[..loaded] == saved[..loaded]
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::ich::HCR_EOICOUNT_SHIFT;

    fn last(generation: u64) -> LastFlush {
        let mut lrs = [0; MAX_LIST_REGS];
        lrs[0] = 0x50a0_0000_0000_001b;
        LastFlush {
            generation,
            lrs,
            num_lrs: 4,
            loaded: 1,
            pending_slots: 1,
            waiting: 0,
            hcr_bits: 0,
        }
    }

    #[test]
    fn reuse_only_when_nothing_changed() {
        let l = last(7);
        assert!(may_reuse(Some(&l), 7, true, 4));
        assert!(!may_reuse(None, 7, true, 4), "no previous flush");
        assert!(!may_reuse(Some(&l), 8, true, 4), "generation moved on");
        assert!(!may_reuse(Some(&l), 6, true, 4), "generation differs");
        assert!(!may_reuse(Some(&l), 7, false, 4), "hardware changed an LR");
        assert!(!may_reuse(Some(&l), 7, true, 2), "list-register count");
    }

    #[test]
    fn any_lr_change_or_eoicount_counts_as_changed() {
        let written = [0x50a0_0000_0000_001b, 0x10a0_0000_0000_0021, 0, 0];
        assert!(lrs_unchanged(&written, &written, 2, 0));
        for slot in 0..2 {
            for bit in [62, 63, 41, 0] {
                let mut saved = written;
                saved[slot] ^= 1 << bit;
                assert!(
                    !lrs_unchanged(&written, &saved, 2, 0),
                    "slot {slot} bit {bit}"
                );
            }
        }
        // Unloaded LRs are not compared.
        let mut saved = written;
        saved[3] = 1;
        assert!(lrs_unchanged(&written, &saved, 2, 0));
        assert!(!lrs_unchanged(
            &written,
            &written,
            2,
            1 << HCR_EOICOUNT_SHIFT
        ));
        assert!(!lrs_unchanged(&written, &written, 5, 0), "out of range");
    }
}
