//! EL2 exception vectors and the handler for exceptions taken *at* EL2.
//!
//! Exceptions from the guest (lower EL, AArch64) belong to the world switch
//! ([`super::world_switch`]); everything taken at EL2 itself is unexpected —
//! a hypervisor bug — except a trap a self-test arms on purpose with
//! [`expect_trap`]. An unexpected exception prints a decoded report
//! (exception class by name, ESR, ELR, FAR, SPSR and registers) and exits
//! QEMU with a failure status.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::esr::{Esr, ExceptionClass};

use super::semihosting;

/// Registers saved by the vector stub for an exception taken at EL2.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL2: where the exception was taken.
    pub elr: u64,
    /// SPSR_EL2.
    pub spsr: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 36 * 8);

/// Which vector an exception came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum VectorKind {
    /// Synchronous.
    Sync = 0,
    /// IRQ.
    Irq = 1,
    /// FIQ.
    Fiq = 2,
    /// SError.
    SError = 3,
}

impl VectorKind {
    fn from_raw(raw: u64) -> Self {
        match raw & 3 {
            0 => Self::Sync,
            1 => Self::Irq,
            2 => Self::Fiq,
            _ => Self::SError,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sync => "synchronous exception",
            Self::Irq => "IRQ",
            Self::Fiq => "FIQ",
            Self::SError => "SError",
        }
    }
}

static TRAP_ARMED: AtomicBool = AtomicBool::new(false);
static TRAP_EXPECTED_EC: AtomicU64 = AtomicU64::new(0);
static TRAP_SEEN_ESR: AtomicU64 = AtomicU64::new(0);
static TRAP_SEEN_ELR: AtomicU64 = AtomicU64::new(0);

/// Arms a one-shot expected synchronous trap of class `class` at EL2: the
/// next such exception is recorded, the faulting instruction skipped, and
/// execution resumes. Used by self-tests of the exception path.
pub fn expect_trap(class: ExceptionClass) {
    TRAP_EXPECTED_EC.store(class.bits() as u64, Ordering::SeqCst);
    TRAP_SEEN_ESR.store(0, Ordering::SeqCst);
    TRAP_SEEN_ELR.store(0, Ordering::SeqCst);
    TRAP_ARMED.store(true, Ordering::SeqCst);
}

/// The `(ESR, ELR)` recorded by the last expected trap, if it happened; the
/// trap is disarmed either way.
pub fn take_trap() -> Option<(u64, u64)> {
    let still_armed = TRAP_ARMED.swap(false, Ordering::SeqCst);
    if still_armed {
        return None;
    }
    let esr = TRAP_SEEN_ESR.load(Ordering::SeqCst);
    (esr != 0).then(|| (esr, TRAP_SEEN_ELR.load(Ordering::SeqCst)))
}

/// Prints a decoded report of an exception.
pub fn report(kind: &str, frame: &TrapFrame) {
    // The exception may have struck inside the console code with the
    // console lock held: never wait for it without bound from here on.
    crate::print::REPORT_GATE.begin();
    let esr = Esr(frame.esr);
    let class = esr.class();
    crate::hv_println!("\n=== UNEXPECTED EXCEPTION AT EL2: {} ===", kind);
    crate::hv_println!(
        "  class : {} (EC={:#04x}){}",
        class.name(),
        class.bits(),
        if esr.il() { ", 32-bit instruction" } else { "" }
    );
    crate::hv_println!("  ESR   : {:#018x} (ISS={:#x})", frame.esr, esr.iss());
    crate::hv_println!("  ELR   : {:#018x}", frame.elr);
    crate::hv_println!("  FAR   : {:#018x}", frame.far);
    crate::hv_println!("  SPSR  : {:#018x}", frame.spsr);
    if let Some((cpu, exception_stack)) = super::mmu::guard_page_of(frame.far) {
        crate::hv_println!(
            "  STACK OVERFLOW: FAR is in the guard page below CPU {}'s {} stack",
            cpu,
            if exception_stack {
                "exception"
            } else {
                "normal"
            }
        );
    }
    if matches!(
        class,
        ExceptionClass::DataAbortSame | ExceptionClass::DataAbortLower
    ) {
        let da = esr.data_abort();
        crate::hv_println!(
            "  abort : {} ({}), {}",
            da.dfsc_name(),
            da.dfsc(),
            if da.is_write() { "write" } else { "read" }
        );
    }
    for pair in 0..16 {
        let a = pair * 2;
        if a + 1 < 31 {
            crate::hv_println!(
                "  x{:<2} = {:#018x}   x{:<2} = {:#018x}",
                a,
                frame.x[a],
                a + 1,
                frame.x[a + 1]
            );
        } else {
            crate::hv_println!("  x{:<2} = {:#018x}", a, frame.x[a]);
        }
    }
}

/// Rust entry for exceptions taken at EL2 (called by the vector stubs).
#[unsafe(no_mangle)]
extern "C" fn hv_el2_exception(kind: u64, frame: &mut TrapFrame) {
    let kind = VectorKind::from_raw(kind);
    if kind == VectorKind::Sync && TRAP_ARMED.load(Ordering::SeqCst) {
        let ec = Esr(frame.esr).class().bits() as u64;
        if ec == TRAP_EXPECTED_EC.load(Ordering::SeqCst) {
            TRAP_SEEN_ESR.store(frame.esr, Ordering::SeqCst);
            TRAP_SEEN_ELR.store(frame.elr, Ordering::SeqCst);
            TRAP_ARMED.store(false, Ordering::SeqCst);
            // HVC/SVC return to the next instruction already; for every
            // other synchronous exception ELR points at the instruction
            // that trapped, so skip it to continue.
            if !matches!(
                Esr(frame.esr).class(),
                ExceptionClass::Hvc64 | ExceptionClass::Svc64
            ) {
                frame.elr += 4;
            }
            return;
        }
    }
    report(kind.name(), frame);
    semihosting::exit(semihosting::EXIT_FAILURE);
}

/// Rust entry for vectors that must never be taken (AArch32 guests, a
/// nested exception at EL2).
#[unsafe(no_mangle)]
extern "C" fn hv_bad_vector(vector: u64, frame: &mut TrapFrame) {
    let name = match vector {
        0..=3 => "exception while handling an exception at EL2",
        _ => "exception from AArch32 lower EL",
    };
    report(name, frame);
    semihosting::exit(semihosting::EXIT_FAILURE);
}

global_asm!(
    r#"
.macro SAVE_FRAME
    sub     sp, sp, #(36 * 8)
    stp     x0, x1, [sp, #(0 * 8)]
    stp     x2, x3, [sp, #(2 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mrs     x0, elr_el2
    stp     x30, x0, [sp, #(30 * 8)]
    mrs     x0, spsr_el2
    mrs     x1, esr_el2
    stp     x0, x1, [sp, #(32 * 8)]
    mrs     x0, far_el2
    str     x0, [sp, #(34 * 8)]
.endm

.macro RESTORE_FRAME
    ldp     x0, x1, [sp, #(31 * 8)]
    msr     elr_el2, x0
    msr     spsr_el2, x1
    ldp     x0, x1, [sp, #(0 * 8)]
    ldp     x2, x3, [sp, #(2 * 8)]
    ldp     x4, x5, [sp, #(4 * 8)]
    ldp     x6, x7, [sp, #(6 * 8)]
    ldp     x8, x9, [sp, #(8 * 8)]
    ldp     x10, x11, [sp, #(10 * 8)]
    ldp     x12, x13, [sp, #(12 * 8)]
    ldp     x14, x15, [sp, #(14 * 8)]
    ldp     x16, x17, [sp, #(16 * 8)]
    ldp     x18, x19, [sp, #(18 * 8)]
    ldp     x20, x21, [sp, #(20 * 8)]
    ldp     x22, x23, [sp, #(22 * 8)]
    ldp     x24, x25, [sp, #(24 * 8)]
    ldp     x26, x27, [sp, #(26 * 8)]
    ldp     x28, x29, [sp, #(28 * 8)]
    ldr     x30, [sp, #(30 * 8)]
    add     sp, sp, #(36 * 8)
.endm

.macro CURRENT_EL_ENTRY kind
    SAVE_FRAME
    mov     x0, #\kind
    mov     x1, sp
    bl      hv_el2_exception
    RESTORE_FRAME
    eret
.endm

.macro BAD_ENTRY vector
    SAVE_FRAME
    mov     x0, #\vector
    mov     x1, sp
    bl      hv_bad_vector
1:  wfe
    b       1b
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global el2_vectors
el2_vectors:
    /* Current EL with SP_EL0: the hypervisor's normal code (which runs on
       SP_EL0); the handler runs on this CPU's SP_EL2 exception stack. */
    .balign 0x80
    b       el2_cur_sync
    .balign 0x80
    b       el2_cur_irq
    .balign 0x80
    b       el2_cur_fiq
    .balign 0x80
    b       el2_cur_serror
    /* Current EL with SP_ELx: an exception while already handling one
       (on the exception stack, or in the guest-exit path). */
    .balign 0x80
    BAD_ENTRY 0
    .balign 0x80
    BAD_ENTRY 1
    .balign 0x80
    BAD_ENTRY 2
    .balign 0x80
    BAD_ENTRY 3
    /* Lower EL, AArch64: the guest (see world_switch) */
    .balign 0x80
    b       guest_exit_sync
    .balign 0x80
    b       guest_exit_irq
    .balign 0x80
    b       guest_exit_fiq
    .balign 0x80
    b       guest_exit_serror
    /* Lower EL, AArch32: never allowed (HCR_EL2.RW = 1) */
    .balign 0x80
    BAD_ENTRY 4
    .balign 0x80
    BAD_ENTRY 5
    .balign 0x80
    BAD_ENTRY 6
    .balign 0x80
    BAD_ENTRY 7

    .section .text, "ax"
el2_cur_sync:
    CURRENT_EL_ENTRY 0
el2_cur_irq:
    CURRENT_EL_ENTRY 1
el2_cur_fiq:
    CURRENT_EL_ENTRY 2
el2_cur_serror:
    CURRENT_EL_ENTRY 3
"#
);
