//! Moving a vCPU's virtual CPU interface state (ICH_*_EL2) in and out of
//! the hardware around each guest run. The decisions about what goes into
//! the list registers are the vGIC model's ([`crate::vgic`]).

use hal::{read_sysreg, write_sysreg};

use crate::vgic::VcpuIfState;

/// ICH_VTR_EL2 of this CPU (number of list registers, priority bits).
pub fn vtr() -> u64 {
    read_sysreg!("ich_vtr_el2")
}

/// Number of implemented active-priority registers per group: one for 5
/// preemption bits, two for 6, four for 7 (ICH_VTR_EL2.PREbits + 1).
fn apr_count() -> usize {
    let pre_bits = ((vtr() >> 26) & 7) + 1;
    match pre_bits {
        7 => 4,
        6 => 2,
        _ => 1,
    }
}

macro_rules! lr_access {
    ($index:expr, read) => {
        match $index {
            0 => read_sysreg!("ich_lr0_el2"),
            1 => read_sysreg!("ich_lr1_el2"),
            2 => read_sysreg!("ich_lr2_el2"),
            3 => read_sysreg!("ich_lr3_el2"),
            4 => read_sysreg!("ich_lr4_el2"),
            5 => read_sysreg!("ich_lr5_el2"),
            6 => read_sysreg!("ich_lr6_el2"),
            7 => read_sysreg!("ich_lr7_el2"),
            8 => read_sysreg!("ich_lr8_el2"),
            9 => read_sysreg!("ich_lr9_el2"),
            10 => read_sysreg!("ich_lr10_el2"),
            11 => read_sysreg!("ich_lr11_el2"),
            12 => read_sysreg!("ich_lr12_el2"),
            13 => read_sysreg!("ich_lr13_el2"),
            14 => read_sysreg!("ich_lr14_el2"),
            _ => read_sysreg!("ich_lr15_el2"),
        }
    };
    ($index:expr, write, $value:expr) => {
        match $index {
            0 => write_sysreg!("ich_lr0_el2", $value),
            1 => write_sysreg!("ich_lr1_el2", $value),
            2 => write_sysreg!("ich_lr2_el2", $value),
            3 => write_sysreg!("ich_lr3_el2", $value),
            4 => write_sysreg!("ich_lr4_el2", $value),
            5 => write_sysreg!("ich_lr5_el2", $value),
            6 => write_sysreg!("ich_lr6_el2", $value),
            7 => write_sysreg!("ich_lr7_el2", $value),
            8 => write_sysreg!("ich_lr8_el2", $value),
            9 => write_sysreg!("ich_lr9_el2", $value),
            10 => write_sysreg!("ich_lr10_el2", $value),
            11 => write_sysreg!("ich_lr11_el2", $value),
            12 => write_sysreg!("ich_lr12_el2", $value),
            13 => write_sysreg!("ich_lr13_el2", $value),
            14 => write_sysreg!("ich_lr14_el2", $value),
            _ => write_sysreg!("ich_lr15_el2", $value),
        }
    };
}

/// Saves the CPU interface state after a guest exit.
pub fn save(state: &mut VcpuIfState) {
    let n = state.lr_count();
    for (i, lr) in state.lrs.iter_mut().enumerate().take(n) {
        *lr = lr_access!(i, read);
    }
    state.hcr = read_sysreg!("ich_hcr_el2");
    state.vmcr = read_sysreg!("ich_vmcr_el2");
    let aprs = apr_count();
    state.ap0r[0] = read_sysreg!("ich_ap0r0_el2") as u32;
    state.ap1r[0] = read_sysreg!("ich_ap1r0_el2") as u32;
    if aprs >= 2 {
        state.ap0r[1] = read_sysreg!("ich_ap0r1_el2") as u32;
        state.ap1r[1] = read_sysreg!("ich_ap1r1_el2") as u32;
    }
    if aprs == 4 {
        state.ap0r[2] = read_sysreg!("ich_ap0r2_el2") as u32;
        state.ap0r[3] = read_sysreg!("ich_ap0r3_el2") as u32;
        state.ap1r[2] = read_sysreg!("ich_ap1r2_el2") as u32;
        state.ap1r[3] = read_sysreg!("ich_ap1r3_el2") as u32;
    }
}

/// Restores the CPU interface state before a guest entry.
pub fn restore(state: &VcpuIfState) {
    let n = state.lr_count();
    let aprs = apr_count();
    // ICH_* registers only affect the virtual CPU interface EL1 sees with
    // HCR_EL2.IMO/FMO set, i.e. the guest about to be entered.
    // SAFETY: only implemented LRs/APRs (from ICH_VTR_EL2) are written.
    unsafe {
        for (i, &lr) in state.lrs.iter().enumerate().take(n) {
            lr_access!(i, write, lr);
        }
        write_sysreg!("ich_vmcr_el2", state.vmcr);
        write_sysreg!("ich_ap0r0_el2", state.ap0r[0] as u64);
        write_sysreg!("ich_ap1r0_el2", state.ap1r[0] as u64);
        if aprs >= 2 {
            write_sysreg!("ich_ap0r1_el2", state.ap0r[1] as u64);
            write_sysreg!("ich_ap1r1_el2", state.ap1r[1] as u64);
        }
        if aprs == 4 {
            write_sysreg!("ich_ap0r2_el2", state.ap0r[2] as u64);
            write_sysreg!("ich_ap0r3_el2", state.ap0r[3] as u64);
            write_sysreg!("ich_ap1r2_el2", state.ap1r[2] as u64);
            write_sysreg!("ich_ap1r3_el2", state.ap1r[3] as u64);
        }
        write_sysreg!("ich_hcr_el2", state.hcr);
        core::arch::asm!("isb");
    }
}

/// Turns the virtual CPU interface off while no guest runs (so a stale
/// maintenance condition cannot keep interrupting the hypervisor).
pub fn disable() {
    // SAFETY: ICH_HCR_EL2.En = 0 only disables the virtual interface.
    unsafe {
        write_sysreg!("ich_hcr_el2", 0);
        core::arch::asm!("isb");
    }
}
