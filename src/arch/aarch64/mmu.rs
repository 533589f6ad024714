//! The hypervisor's own EL2 stage-1 translation: an identity map with the
//! caches on.
//!
//! One level-1 table (39-bit VA, T0SZ = 25, 4 KiB granule) of 1 GiB blocks:
//! the first gigabyte (GIC, UART, virtio-mmio, flash) is Device-nGnRnE and
//! execute-never; the next two (all of QEMU's RAM with `-m 2G`,
//! 0x4000_0000..0xC000_0000) are Normal write-back cacheable, inner
//! shareable. The table is a constant in `.data`, so no code has to run
//! with the MMU off to build it; `el2_mmu_on` (called from the boot path on
//! every CPU) programs MAIR/TCR/TTBR0 and sets SCTLR_EL2.{M,C,I}.

use core::arch::global_asm;

use hal::stage1::{self, MAIR_IDX_DEVICE, MAIR_IDX_NORMAL, S1Desc};

/// A 4 KiB-aligned translation table.
#[repr(C, align(4096))]
pub struct PageTable(pub [u64; 512]);

const fn identity_l1() -> PageTable {
    let mut table = [0u64; 512];
    table[0] = stage1::block(0, MAIR_IDX_DEVICE, S1Desc::XN);
    table[1] = stage1::block(0x4000_0000, MAIR_IDX_NORMAL, S1Desc::INNER_SHAREABLE);
    table[2] = stage1::block(0x8000_0000, MAIR_IDX_NORMAL, S1Desc::INNER_SHAREABLE);
    PageTable(table)
}

/// The level-1 table shared by every CPU (read-only after link time).
#[unsafe(no_mangle)]
pub static EL2_L1_TABLE: PageTable = identity_l1();

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

global_asm!(
    r#"
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
