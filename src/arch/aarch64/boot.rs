//! EL2 entry: the first instructions QEMU runs.
//!
//! CPU 0 enters at `_start`; secondary CPUs enter at `secondary_entry` when
//! the hypervisor starts them with PSCI CPU_ON (context id = CPU index).
//! Both paths set up per-CPU stacks (see [`super::mmu`] for the layout with
//! guard pages: normal code runs on SP_EL0, exceptions taken at EL2 switch
//! to a separate small SP_EL2 stack, so even a stack overflow is reported),
//! check that they really run at EL2,
//! enable FP/SIMD for EL2 (Rust code may use the vector registers), install
//! the EL2 vectors, turn on the EL2 MMU and caches (see [`super::mmu`]),
//! and call into Rust: `hv_primary_main(cpu)` on CPU 0 after clearing BSS,
//! `hv_secondary_main(cpu)` on the others.
//!
//! If the CPU is not at EL2 (QEMU started without `virtualization=on`), a
//! message is printed directly on the PL011 and QEMU exits with status 3
//! through semihosting — without Rust code, since nothing is set up yet.

use core::arch::global_asm;

pub use super::mmu::{CPU_STACKS_STRIDE, EXCEPTION_STACK_TOP, NORMAL_STACK_TOP};

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x19, mpidr_el1
    and     x19, x19, #0xff
    b       1f

    .global secondary_entry
secondary_entry:
    mov     x19, x0

1:  /* per-CPU stacks: region = __stacks_start + cpu * 0x48000; the
       exception stack (SP_EL2) tops at +0x5000, the normal stack (SP_EL0)
       at +0x48000; guard pages at +0 and +0x5000 are unmapped. */
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    movz    x2, #0x8000
    movk    x2, #0x4, lsl #16
    madd    x1, x19, x2, x1
    add     x2, x1, #0x5000
    mov     sp, x2              /* SPSel = 1 at reset: this is SP_EL2 */
    movz    x2, #0x8000
    movk    x2, #0x4, lsl #16
    add     x2, x1, x2
    msr     spsel, #0
    mov     sp, x2              /* SP_EL0 from now on */

    mrs     x2, CurrentEL
    lsr     x2, x2, #2
    cmp     x2, #2
    b.ne    wrong_el

    /* CPTR_EL2: RES1 bits, TFP = 0 (no FP/SIMD trap at EL2) */
    mov     x2, #0x33ff
    msr     cptr_el2, x2
    isb

    adrp    x2, el2_vectors
    add     x2, x2, :lo12:el2_vectors
    msr     vbar_el2, x2
    isb

    bl      el2_mmu_on

    cbnz    x19, 3f
    adrp    x2, __bss_start
    add     x2, x2, :lo12:__bss_start
    adrp    x3, __bss_end
    add     x3, x3, :lo12:__bss_end
2:  cmp     x2, x3
    b.hs    3f
    stp     xzr, xzr, [x2], #16
    b       2b

3:  mov     x0, x19
    cbnz    x19, 4f
    bl      hv_primary_main
    b       5f
4:  bl      hv_secondary_main
5:  wfe
    b       5b

wrong_el:
    /* Print the message byte by byte on the PL011 (MMU off, no Rust). */
    adr     x1, wrong_el_msg
    mov     x2, #0x09000000
6:  ldrb    w3, [x1], #1
    cbz     w3, 7f
    str     w3, [x2]
    b       6b
7:  /* semihosting SYS_EXIT(ADP_Stopped_ApplicationExit, 3) */
    adr     x1, wrong_el_exit_block
    mov     w0, #0x18
    hlt     #0xf000
8:  wfe
    b       8b

    .balign 8
wrong_el_exit_block:
    .quad 0x20026
    .quad 3
wrong_el_msg:
    .asciz "\r\nFATAL: the hypervisor was not entered at EL2. Start QEMU with -M virt,virtualization=on.\r\n"
    .balign 4
"#
);
