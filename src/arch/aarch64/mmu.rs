//! The hypervisor's own EL2 stage-1 translation: an identity map with the
//! caches on, and guard pages around the stacks.
//!
//! Level 1 (39-bit VA, T0SZ = 25, 4 KiB granule): the first gigabyte (GIC,
//! UART, virtio-mmio, flash) is a Device-nGnRnE, execute-never block; the
//! second (0x4000_0000..0x8000_0000) goes through a level-2 table of 2 MiB
//! Normal write-back blocks, except the 2 MiB at [`STACKS_BASE`], which a
//! level-3 table maps page by page; the third gigabyte is one Normal block.
//!
//! The stack region holds, for each of the four physical CPUs, 0x48000
//! bytes: an unmapped guard page, a 16 KiB exception stack (SP_EL2), another
//! unmapped guard page, and a 264 KiB stack for normal code (SP_EL0). A
//! stack overflow therefore faults on a guard page instead of silently
//! overwriting memory, and the fault is handled on the exception stack,
//! which can still print the report. The tables are assembled with
//! link-time addresses, so nothing runs with the MMU off to build them;
//! `el2_mmu_on` (called from the boot path on every CPU) programs
//! MAIR/TCR/TTBR0 and sets SCTLR_EL2.{M,C,I}.

use core::arch::global_asm;

use hal::stage1;

/// Base of the stack region (2 MiB aligned; `link.ld` places `.stacks` here).
pub const STACKS_BASE: u64 = 0x4040_0000;
/// Bytes of stack region per physical CPU.
pub const CPU_STACKS_STRIDE: u64 = 0x4_8000;
/// Offset of the exception stack's top (SP_EL2) inside a CPU's region.
pub const EXCEPTION_STACK_TOP: u64 = 0x5000;
/// Offset of the normal stack's top (SP_EL0) inside a CPU's region.
pub const NORMAL_STACK_TOP: u64 = CPU_STACKS_STRIDE;
/// Page offsets of the guard pages inside a CPU's region.
pub const GUARD_PAGES: [u64; 2] = [0, 0x5000];

/// If `addr` is in one of the stack guard pages, the CPU whose stack it
/// guards and whether it is the exception stack's guard.
pub fn guard_page_of(addr: u64) -> Option<(usize, bool)> {
    let offset = addr.checked_sub(STACKS_BASE)?;
    let cpu = (offset / CPU_STACKS_STRIDE) as usize;
    if cpu >= crate::platform::MAX_PCPUS {
        return None;
    }
    match (offset % CPU_STACKS_STRIDE) / 0x1000 {
        0 => Some((cpu, true)),
        5 => Some((cpu, false)),
        _ => None,
    }
}

/// MAIR_EL2 value used by the boot code.
#[unsafe(no_mangle)]
pub static EL2_MAIR: u64 = stage1::MAIR_VALUE;

/// TCR_EL2 without the PS field (filled in from PARange at boot).
#[unsafe(no_mangle)]
pub static EL2_TCR_BASE: u64 = stage1::tcr_el2(25, 0);

/// SCTLR_EL2: RES1 bits, M (MMU), C (data cache), I (instruction cache);
/// A (alignment checking) and WXN off.
#[unsafe(no_mangle)]
pub static EL2_SCTLR: u64 = 0x30c5_0830 | (1 << 0) | (1 << 2) | (1 << 12);

// Descriptor attribute bits (hal::stage1): valid, AF, SH = inner shareable,
// AttrIndx 1 = Normal WB for memory; AttrIndx 0 = Device and XN for devices.
global_asm!(
    r#"
    .equ DESC_NORMAL_BLOCK, 0x1 | (1 << 2) | (3 << 8) | (1 << 10)
    .equ DESC_NORMAL_PAGE,  0x3 | (1 << 2) | (3 << 8) | (1 << 10)
    .equ DESC_DEVICE_BLOCK, 0x1 | (1 << 10) | (1 << 54)
    .equ DESC_TABLE,        0x3
    .equ STACKS_BASE,       0x40400000
    .equ STACKS_L2_INDEX,   (STACKS_BASE - 0x40000000) >> 21
    .equ CPU_STACK_PAGES,   0x48
    .equ STACK_PAGES,       4 * CPU_STACK_PAGES

    .section .rodata.el2_tables, "a"
    .balign 4096
    .global EL2_L1_TABLE
EL2_L1_TABLE:
    .quad 0x00000000 | DESC_DEVICE_BLOCK
    .quad el2_l2_table + DESC_TABLE
    .quad 0x80000000 | DESC_NORMAL_BLOCK
    .fill 509, 8, 0

    .balign 4096
el2_l2_table:
    .set i, 0
    .rept 512
    .if i == STACKS_L2_INDEX
    .quad el2_l3_stacks + DESC_TABLE
    .else
    .quad (0x40000000 + (i << 21)) | DESC_NORMAL_BLOCK
    .endif
    .set i, i + 1
    .endr

    .balign 4096
el2_l3_stacks:
    .set i, 0
    .rept 512
    .if (i >= STACK_PAGES) || ((i % CPU_STACK_PAGES) == 0) || ((i % CPU_STACK_PAGES) == 5)
    .quad 0
    .else
    .quad (STACKS_BASE + (i << 12)) | DESC_NORMAL_PAGE
    .endif
    .set i, i + 1
    .endr

    .section .text, "ax"
    .global el2_mmu_on
el2_mmu_on:
    adrp    x0, EL2_MAIR
    ldr     x0, [x0, :lo12:EL2_MAIR]
    msr     mair_el2, x0
    adrp    x0, EL2_TCR_BASE
    ldr     x0, [x0, :lo12:EL2_TCR_BASE]
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0x7
    cmp     x1, #5
    b.ls    1f
    mov     x1, #5          /* cap PS at 48 bits (TCR_EL2.PS has 3 bits) */
1:  orr     x0, x0, x1, lsl #16
    msr     tcr_el2, x0
    adrp    x0, EL2_L1_TABLE
    add     x0, x0, :lo12:EL2_L1_TABLE
    msr     ttbr0_el2, x0
    isb
    tlbi    alle2
    ic      iallu
    dsb     ish
    isb
    adrp    x0, EL2_SCTLR
    ldr     x0, [x0, :lo12:EL2_SCTLR]
    msr     sctlr_el2, x0
    isb
    ret
"#
);

unsafe extern "C" {
    /// The level-1 table (assembled above).
    pub static EL2_L1_TABLE: [u64; 512];
}
