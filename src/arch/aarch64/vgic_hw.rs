//! Moving a vCPU's virtual CPU interface state (ICH_*_EL2) in and out of
//! the hardware around each guest run. The decisions about what goes into
//! the list registers are the vGIC model's ([`crate::vgic`]).

use aarch64_cpu::registers::{
    ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2, ICH_AP1R1_EL2,
    ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2,
    ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2, ICH_LR10_EL2,
    ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2, ICH_LR15_EL2, ICH_MISR_EL2,
    ICH_VMCR_EL2, ICH_VTR_EL2, Readable, Writeable,
};

use crate::vgic::{VcpuIfState, if_writes, keep_enabled_after_exit, lrs_to_read};

/// ICH_VTR_EL2 of this CPU (number of list registers, priority bits).
pub fn vtr() -> u64 {
    ICH_VTR_EL2.get()
}

/// Number of implemented active-priority registers per group: one for 5
/// preemption bits, two for 6, four for 7 (ICH_VTR_EL2.PREbits + 1).
fn apr_count() -> usize {
    let pre_bits = ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) + 1;
    match pre_bits {
        7 => 4,
        6 => 2,
        _ => 1,
    }
}

/// List register `$index` (0..=15; the caller stays below ICH_VTR_EL2's
/// count) as its typed register, `$reg`, in `$body`.
macro_rules! with_lr {
    ($index:expr, $reg:ident => $body:expr) => {
        match $index {
            0 => {
                let $reg = ICH_LR0_EL2;
                $body
            }
            1 => {
                let $reg = ICH_LR1_EL2;
                $body
            }
            2 => {
                let $reg = ICH_LR2_EL2;
                $body
            }
            3 => {
                let $reg = ICH_LR3_EL2;
                $body
            }
            4 => {
                let $reg = ICH_LR4_EL2;
                $body
            }
            5 => {
                let $reg = ICH_LR5_EL2;
                $body
            }
            6 => {
                let $reg = ICH_LR6_EL2;
                $body
            }
            7 => {
                let $reg = ICH_LR7_EL2;
                $body
            }
            8 => {
                let $reg = ICH_LR8_EL2;
                $body
            }
            9 => {
                let $reg = ICH_LR9_EL2;
                $body
            }
            10 => {
                let $reg = ICH_LR10_EL2;
                $body
            }
            11 => {
                let $reg = ICH_LR11_EL2;
                $body
            }
            12 => {
                let $reg = ICH_LR12_EL2;
                $body
            }
            13 => {
                let $reg = ICH_LR13_EL2;
                $body
            }
            14 => {
                let $reg = ICH_LR14_EL2;
                $body
            }
            _ => {
                let $reg = ICH_LR15_EL2;
                $body
            }
        }
    };
}

/// Saves the CPU interface state after a guest exit into `state`, which
/// holds what the interface held at the entry ([`restore`]); `hw` (the run
/// loop's record of what the interface holds) becomes that state. List
/// registers entered as zero are not read: they cannot have changed
/// ([`lrs_to_read`]).
pub fn save(state: &mut VcpuIfState, hw: &mut Option<VcpuIfState>) {
    let n = state.lr_count();
    let read = lrs_to_read(state);
    for (i, lr) in state.lrs.iter_mut().enumerate().take(n) {
        if read & (1 << i) != 0 {
            *lr = with_lr!(i, reg => reg.get());
        }
    }
    state.hcr = ICH_HCR_EL2.get();
    state.vmcr = ICH_VMCR_EL2.get();
    let aprs = apr_count();
    state.ap0r[0] = ICH_AP0R0_EL2.get() as u32;
    state.ap1r[0] = ICH_AP1R0_EL2.get() as u32;
    if aprs >= 2 {
        state.ap0r[1] = ICH_AP0R1_EL2.get() as u32;
        state.ap1r[1] = ICH_AP1R1_EL2.get() as u32;
    }
    if aprs == 4 {
        state.ap0r[2] = ICH_AP0R2_EL2.get() as u32;
        state.ap0r[3] = ICH_AP0R3_EL2.get() as u32;
        state.ap1r[2] = ICH_AP1R2_EL2.get() as u32;
        state.ap1r[3] = ICH_AP1R3_EL2.get() as u32;
    }
    *hw = Some(*state);
}

/// Makes the CPU interface hold `state` before a guest entry, writing only
/// the registers that differ from `hw` (all of them when `hw` is `None`);
/// `hw` becomes `state`. See [`crate::vgic::if_writes`].
pub fn restore(state: &VcpuIfState, hw: &mut Option<VcpuIfState>) {
    let w = if_writes(hw.as_ref(), state);
    if w.is_empty() {
        return;
    }
    let n = state.lr_count();
    // ICH_* registers only affect the virtual CPU interface EL1 sees with
    // HCR_EL2.IMO/FMO set, i.e. the guest about to be entered; only the
    // implemented LRs/APRs (from ICH_VTR_EL2) are written.
    for (i, &lr) in state.lrs.iter().enumerate().take(n) {
        if w.lrs & (1 << i) != 0 {
            with_lr!(i, reg => reg.set(lr));
        }
    }
    if w.vmcr {
        ICH_VMCR_EL2.set(state.vmcr);
    }
    if w.aprs {
        let aprs = apr_count();
        ICH_AP0R0_EL2.set(state.ap0r[0] as u64);
        ICH_AP1R0_EL2.set(state.ap1r[0] as u64);
        if aprs >= 2 {
            ICH_AP0R1_EL2.set(state.ap0r[1] as u64);
            ICH_AP1R1_EL2.set(state.ap1r[1] as u64);
        }
        if aprs == 4 {
            ICH_AP0R2_EL2.set(state.ap0r[2] as u64);
            ICH_AP0R3_EL2.set(state.ap0r[3] as u64);
            ICH_AP1R2_EL2.set(state.ap1r[2] as u64);
            ICH_AP1R3_EL2.set(state.ap1r[3] as u64);
        }
    }
    if w.hcr {
        ICH_HCR_EL2.set(state.hcr);
    }
    isb();
    *hw = Some(*state);
}

/// `ICH_MISR_EL2`: the maintenance conditions asserted now (zero: none).
pub fn misr() -> u64 {
    ICH_MISR_EL2.get()
}

/// After [`save`]: turns the interface off if a maintenance condition is
/// asserted (its interrupt is a level that would keep interrupting the
/// hypervisor until the next entry); otherwise leaves it holding the saved
/// state, so an entry that changes nothing writes nothing.
pub fn after_exit(hw: &mut Option<VcpuIfState>) {
    if !keep_enabled_after_exit(ICH_MISR_EL2.get()) {
        disable(hw);
    }
}

fn isb() {
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}

/// Turns the virtual CPU interface off while no guest runs (so a stale
/// maintenance condition cannot keep interrupting the hypervisor); what it
/// holds is unknown from then on (`hw` = `None`).
pub fn disable(hw: &mut Option<VcpuIfState>) {
    // ICH_HCR_EL2.En = 0 only disables the virtual interface.
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::CLEAR);
    isb();
    *hw = None;
}
