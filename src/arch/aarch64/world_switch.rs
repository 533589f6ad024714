//! The world switch: enter a guest at EL1 and come back on its next exit.
//!
//! [`enter_guest`] is an ordinary function call from the run loop's point of
//! view: it saves the hypervisor's callee-saved registers (x19-x30, d8-d15)
//! on the EL2 stack, loads the guest's general-purpose, FP/SIMD, ELR and SPSR
//! state from a [`GuestRegs`] and `eret`s. The guest runs until an exception
//! is routed to EL2; the lower-EL vector stub then stores every guest
//! register back into the same [`GuestRegs`] (found through TPIDR_EL2),
//! records ESR/FAR/HPFAR, restores the hypervisor's stack and returns from
//! `enter_guest` with the kind of exit. EL1 system registers, timers and the
//! GIC list registers are switched in Rust around this call
//! ([`super::vcpu`]), and only when a different vCPU is loaded.
//!
//! SVE: while `GuestRegs::sve_live` is set, the exit path also stores Z0-Z31,
//! P0-P15 and FFR at the hypervisor's vector length (CPTR_EL2.TZ is clear
//! then), and the entry path loads them after q0-q31 (loading a q register
//! zeroes the upper bits of its Z register).

use core::arch::global_asm;

pub use crate::vcpu::GuestRegs;

/// How the guest left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A synchronous exception (HVC, SMC, abort, WFI, trapped sysreg...).
    Sync,
    /// A physical IRQ arrived (HCR_EL2.IMO routes IRQs to EL2).
    Irq,
    /// A physical FIQ arrived.
    Fiq,
    /// An SError.
    SError,
}

unsafe extern "C" {
    fn __guest_enter(regs: *mut GuestRegs) -> u64;
}

/// Runs the guest whose registers are `regs` until its next exit.
///
/// A vCPU's first SVE instruction (an EC 0x19 trap while its SVE state is
/// lazy) is handled here and the guest re-entered: the run loop never sees
/// it (see [`super::vcpu::sve_trap`]).
///
/// # Safety
/// The caller must have loaded the matching vCPU's EL1 system registers
/// (with [`super::vcpu::load`]), stage-2 translation (VTTBR_EL2) and
/// HCR_EL2, so that the guest runs confined to its own memory; interrupts
/// must be masked at EL2.
pub unsafe fn enter_guest(regs: &mut GuestRegs) -> ExitKind {
    loop {
        super::vcpu::sve_sync_trap(regs);
        // SAFETY: `regs` is valid and exclusively borrowed for the whole call.
        // The assembly only reads/writes inside `regs` and on the current
        // stack, and preserves all callee-saved registers; SVE is enabled
        // at EL2 whenever `regs.sve_live` is set (synchronized just above).
        let kind = unsafe { __guest_enter(regs) };
        let sve_trap = (regs.esr >> 26) & 0x3f == 0x19;
        if kind == 0 && sve_trap && super::vcpu::sve_trap(regs) {
            continue;
        }
        return match kind {
            0 => ExitKind::Sync,
            1 => ExitKind::Irq,
            2 => ExitKind::Fiq,
            _ => ExitKind::SError,
        };
    }
}

global_asm!(
    r#"
    .arch_extension sve
    .section .text, "ax"

/* ldr/str of Z0-Z31 at [base, #n, mul vl] (the hypervisor's vector length) */
.macro SVE_Z op, base
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    \op    z\n, [\base, #\n, mul vl]
    .endr
.endm
/* ldr/str of P0-P15 at [base, #n, mul vl] (vector length / 8) */
.macro SVE_P op, base
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    \op    p\n, [\base, #\n, mul vl]
    .endr
.endm

    .global __guest_enter
__guest_enter:
    /* hypervisor callee-saved state on the EL2 stack */
    stp     x29, x30, [sp, #-16]!
    stp     x27, x28, [sp, #-16]!
    stp     x25, x26, [sp, #-16]!
    stp     x23, x24, [sp, #-16]!
    stp     x21, x22, [sp, #-16]!
    stp     x19, x20, [sp, #-16]!
    stp     d14, d15, [sp, #-16]!
    stp     d12, d13, [sp, #-16]!
    stp     d10, d11, [sp, #-16]!
    stp     d8, d9, [sp, #-16]!
    mov     x1, sp
    str     x1, [x0, #288]
    msr     tpidr_el2, x0
    /* The hypervisor runs on SP_EL0; switch to SP_EL2 (nothing is pushed
       on it before the eret) so SP_EL0 can hold the guest's value. */
    msr     spsel, #1
    ldr     x2, [x0, #832]
    msr     sp_el0, x2

    /* guest FP/SIMD */
    add     x1, x0, #304
    ldp     q0, q1, [x1, #(0 * 32)]
    ldp     q2, q3, [x1, #(1 * 32)]
    ldp     q4, q5, [x1, #(2 * 32)]
    ldp     q6, q7, [x1, #(3 * 32)]
    ldp     q8, q9, [x1, #(4 * 32)]
    ldp     q10, q11, [x1, #(5 * 32)]
    ldp     q12, q13, [x1, #(6 * 32)]
    ldp     q14, q15, [x1, #(7 * 32)]
    ldp     q16, q17, [x1, #(8 * 32)]
    ldp     q18, q19, [x1, #(9 * 32)]
    ldp     q20, q21, [x1, #(10 * 32)]
    ldp     q22, q23, [x1, #(11 * 32)]
    ldp     q24, q25, [x1, #(12 * 32)]
    ldp     q26, q27, [x1, #(13 * 32)]
    ldp     q28, q29, [x1, #(14 * 32)]
    ldp     q30, q31, [x1, #(15 * 32)]
    add     x1, x0, #816
    ldp     x2, x3, [x1]
    msr     fpsr, x2
    msr     fpcr, x3

    /* guest SVE, if live: Z over the q registers just loaded (their low
       128 bits), then FFR (through P0) and P0-P15 */
    ldr     x2, [x0, #840]
    cbz     x2, .Lsve_loaded
    add     x1, x0, #848
    SVE_Z ldr, x1
    add     x1, x0, #(848 + 2048)
    ldr     p0, [x1, #16, mul vl]
    wrffr   p0.b
    SVE_P ldr, x1
.Lsve_loaded:

    ldp     x2, x3, [x0, #248]
    msr     elr_el2, x2
    msr     spsr_el2, x3

    ldp     x2, x3, [x0, #(2 * 8)]
    ldp     x4, x5, [x0, #(4 * 8)]
    ldp     x6, x7, [x0, #(6 * 8)]
    ldp     x8, x9, [x0, #(8 * 8)]
    ldp     x10, x11, [x0, #(10 * 8)]
    ldp     x12, x13, [x0, #(12 * 8)]
    ldp     x14, x15, [x0, #(14 * 8)]
    ldp     x16, x17, [x0, #(16 * 8)]
    ldp     x18, x19, [x0, #(18 * 8)]
    ldp     x20, x21, [x0, #(20 * 8)]
    ldp     x22, x23, [x0, #(22 * 8)]
    ldp     x24, x25, [x0, #(24 * 8)]
    ldp     x26, x27, [x0, #(26 * 8)]
    ldp     x28, x29, [x0, #(28 * 8)]
    ldr     x30, [x0, #(30 * 8)]
    ldp     x0, x1, [x0, #(0 * 8)]
    eret
    dsb     nsh
    isb

.macro GUEST_EXIT kind
    stp     x0, x1, [sp, #-16]!
    mrs     x0, tpidr_el2
    stp     x2, x3, [x0, #(2 * 8)]
    stp     x4, x5, [x0, #(4 * 8)]
    stp     x6, x7, [x0, #(6 * 8)]
    stp     x8, x9, [x0, #(8 * 8)]
    stp     x10, x11, [x0, #(10 * 8)]
    stp     x12, x13, [x0, #(12 * 8)]
    stp     x14, x15, [x0, #(14 * 8)]
    stp     x16, x17, [x0, #(16 * 8)]
    stp     x18, x19, [x0, #(18 * 8)]
    stp     x20, x21, [x0, #(20 * 8)]
    stp     x22, x23, [x0, #(22 * 8)]
    stp     x24, x25, [x0, #(24 * 8)]
    stp     x26, x27, [x0, #(26 * 8)]
    stp     x28, x29, [x0, #(28 * 8)]
    str     x30, [x0, #(30 * 8)]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #(0 * 8)]
    mov     x1, #\kind
    b       guest_exit_common
.endm

    .global guest_exit_sync
guest_exit_sync:
    GUEST_EXIT 0
    .global guest_exit_irq
guest_exit_irq:
    GUEST_EXIT 1
    .global guest_exit_fiq
guest_exit_fiq:
    GUEST_EXIT 2
    .global guest_exit_serror
guest_exit_serror:
    GUEST_EXIT 3

guest_exit_common:
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #248]
    mrs     x2, esr_el2
    mrs     x3, far_el2
    stp     x2, x3, [x0, #264]
    mrs     x2, hpfar_el2
    str     x2, [x0, #280]

    add     x2, x0, #304
    stp     q0, q1, [x2, #(0 * 32)]
    stp     q2, q3, [x2, #(1 * 32)]
    stp     q4, q5, [x2, #(2 * 32)]
    stp     q6, q7, [x2, #(3 * 32)]
    stp     q8, q9, [x2, #(4 * 32)]
    stp     q10, q11, [x2, #(5 * 32)]
    stp     q12, q13, [x2, #(6 * 32)]
    stp     q14, q15, [x2, #(7 * 32)]
    stp     q16, q17, [x2, #(8 * 32)]
    stp     q18, q19, [x2, #(9 * 32)]
    stp     q20, q21, [x2, #(10 * 32)]
    stp     q22, q23, [x2, #(11 * 32)]
    stp     q24, q25, [x2, #(12 * 32)]
    stp     q26, q27, [x2, #(13 * 32)]
    stp     q28, q29, [x2, #(14 * 32)]
    stp     q30, q31, [x2, #(15 * 32)]
    mrs     x3, fpsr
    mrs     x4, fpcr
    add     x2, x0, #816
    stp     x3, x4, [x2]

    /* guest SVE, if live: Z, P0-P15, then FFR (through P0) */
    ldr     x3, [x0, #840]
    cbz     x3, .Lsve_saved
    add     x2, x0, #848
    SVE_Z str, x2
    add     x2, x0, #(848 + 2048)
    SVE_P str, x2
    rdffr   p0.b
    str     p0, [x2, #16, mul vl]
.Lsve_saved:

    mrs     x3, sp_el0
    str     x3, [x0, #832]
    /* Back to the hypervisor's normal stack (SP_EL0): the exit vector ran
       on the exception stack (SP_EL2). */
    ldr     x2, [x0, #288]
    msr     spsel, #0
    mov     sp, x2
    mov     x0, x1
    ldp     d8, d9, [sp], #16
    ldp     d10, d11, [sp], #16
    ldp     d12, d13, [sp], #16
    ldp     d14, d15, [sp], #16
    ldp     x19, x20, [sp], #16
    ldp     x21, x22, [sp], #16
    ldp     x23, x24, [sp], #16
    ldp     x25, x26, [sp], #16
    ldp     x27, x28, [sp], #16
    ldp     x29, x30, [sp], #16
    ret
"#
);
