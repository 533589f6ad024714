//! Tiny bare-metal guests, assembled at build time into the self-test image.
//!
//! Each is a few position-independent AArch64 instructions between a
//! `<name>_start` and `<name>_end` label. A test copies one into a VM's RAM at
//! its guest-physical base and runs it at EL1; guests report through the
//! hypervisor's hypercalls (`HC_EXIT` with a status, 0 = success) or by
//! faulting on purpose.

use core::arch::global_asm;

/// A guest image: the bytes between two labels of the image.
pub struct GuestCode {
    start: *const u8,
    end: *const u8,
}

impl GuestCode {
    /// The machine code.
    pub fn bytes(&self) -> &'static [u8] {
        let len = (self.end as usize).saturating_sub(self.start as usize);
        // SAFETY: `start..end` delimit a blob in the image's read-only text,
        // emitted by the `global_asm!` below with `end` after `start`.
        unsafe { core::slice::from_raw_parts(self.start, len) }
    }
}

unsafe extern "C" {
    static guest_hvc_start: u8;
    static guest_hvc_end: u8;
    static guest_mmio_start: u8;
    static guest_mmio_end: u8;
    static guest_unmapped_start: u8;
    static guest_unmapped_end: u8;
    static guest_no_syndrome_start: u8;
    static guest_no_syndrome_end: u8;
    static guest_isolation_start: u8;
    static guest_isolation_end: u8;
    static guest_debug_start: u8;
    static guest_debug_end: u8;
    static guest_debug_bp: u8;
    static guest_sve_pauth_start: u8;
    static guest_sve_pauth_end: u8;
}

macro_rules! guest {
    ($name:ident, $start:ident, $end:ident) => {
        /// The guest of the same name (see the assembly).
        pub fn $name() -> GuestCode {
            GuestCode {
                start: &raw const $start,
                end: &raw const $end,
            }
        }
    };
}

guest!(hvc, guest_hvc_start, guest_hvc_end);
guest!(mmio, guest_mmio_start, guest_mmio_end);
guest!(unmapped, guest_unmapped_start, guest_unmapped_end);
guest!(no_syndrome, guest_no_syndrome_start, guest_no_syndrome_end);
guest!(isolation, guest_isolation_start, guest_isolation_end);
guest!(debug, guest_debug_start, guest_debug_end);
guest!(sve_pauth, guest_sve_pauth_start, guest_sve_pauth_end);

/// Offset from RAM base where the SVE/pointer-authentication guest stores
/// its results: the PACGA value, the PACIA-signed pointer, its vector length
/// in bytes.
pub const SVE_PAUTH_RESULTS: u64 = 0x1000;

/// Offset in the debug guest of the instruction its breakpoint 0 targets.
pub fn debug_bp_offset() -> u64 {
    (&raw const guest_debug_bp as u64).wrapping_sub(&raw const guest_debug_start as u64)
}

/// Guest-physical address the unmapped-access guest touches.
pub const UNMAPPED_GPA: u64 = 0x0c00_0000;

global_asm!(
    r#"
    .arch_extension sve
    .arch_extension pauth
    .section .rodata.guests, "a"
    .balign 4

/* HC_EXIT(status) : x0 = 0xc6000001, x1 = status */
.macro GUEST_EXIT reg
    mov     x1, \reg
    movz    x0, #0x0001
    movk    x0, #0xc600, lsl #16
    hvc     #0
1:  b       1b
.endm

/* Check x<got> == x<want>; on mismatch set bit <bit> in x20. */
.macro EXPECT got, want, bit
    cmp     \got, \want
    b.eq    2f
    orr     x20, x20, #(1 << \bit)
2:
.endm

    .global guest_hvc_start
guest_hvc_start:
    mov     x20, #0
    /* PSCI_VERSION over HVC: expect 0x10001 */
    movz    x0, #0x0000
    movk    x0, #0x8400, lsl #16
    hvc     #0
    movz    x9, #0x0001
    movk    x9, #0x0001, lsl #16
    EXPECT  x0, x9, 0
    /* PSCI_VERSION over SMC (trapped by HCR_EL2.TSC): same answer */
    movz    x0, #0x0000
    movk    x0, #0x8400, lsl #16
    smc     #0
    EXPECT  x0, x9, 1
    /* HC_VERSION: expect 0x10000 */
    movz    x0, #0x0000
    movk    x0, #0xc600, lsl #16
    hvc     #0
    movz    x9, #0x0000
    movk    x9, #0x0001, lsl #16
    EXPECT  x0, x9, 2
    /* An unknown SMCCC call: NOT_SUPPORTED (-1) */
    movz    x0, #0x8000
    movk    x0, #0x8000, lsl #16
    hvc     #0
    mov     x9, #-1
    EXPECT  x0, x9, 3
    /* Registers other than x0 survive a hypercall */
    mov     x19, #0x1234
    movz    x0, #0x0000
    movk    x0, #0x8400, lsl #16
    hvc     #0
    mov     x9, #0x1234
    EXPECT  x19, x9, 4
    GUEST_EXIT x20
    .global guest_hvc_end
guest_hvc_end:

    .global guest_mmio_start
guest_mmio_start:
    mov     x20, #0
    movz    x10, #0x0b00, lsl #16
    movz    x1, #0x2211
    movk    x1, #0x4433, lsl #16
    movk    x1, #0x6655, lsl #32
    movk    x1, #0x8877, lsl #48
    str     x1, [x10]               /* 64-bit store */
    ldr     x2, [x10]               /* 64-bit load */
    EXPECT  x2, x1, 0
    ldrb    w2, [x10]               /* 8-bit, zero-extended */
    mov     x9, #0x11
    EXPECT  x2, x9, 1
    ldrsb   x3, [x10, #7]           /* 0x88 sign-extended to 64 bits */
    mov     x9, #-0x78
    EXPECT  x3, x9, 2
    ldrsb   w3, [x10, #7]           /* 0x88 sign-extended to 32 bits, upper half 0 */
    movz    x9, #0xff88
    movk    x9, #0xffff, lsl #16
    EXPECT  x3, x9, 3
    ldrh    w4, [x10, #6]           /* 16-bit, zero-extended */
    movz    x9, #0x8877
    EXPECT  x4, x9, 4
    ldrsh   x4, [x10, #6]           /* 16-bit, sign-extended */
    movz    x9, #0x8877
    movk    x9, #0xffff, lsl #16
    movk    x9, #0xffff, lsl #32
    movk    x9, #0xffff, lsl #48
    EXPECT  x4, x9, 5
    ldr     w5, [x10, #4]           /* 32-bit, zero-extended */
    movz    x9, #0x6655
    movk    x9, #0x8877, lsl #16
    EXPECT  x5, x9, 6
    ldrsw   x5, [x10, #4]           /* 32-bit, sign-extended */
    movk    x9, #0xffff, lsl #32
    movk    x9, #0xffff, lsl #48
    EXPECT  x5, x9, 7
    mov     x6, #0xab
    strb    w6, [x10, #16]          /* 8-bit store */
    movz    x6, #0xcdef
    strh    w6, [x10, #18]          /* 16-bit store */
    movz    x6, #0x5678
    movk    x6, #0x1234, lsl #16
    str     w6, [x10, #20]          /* 32-bit store */
    ldr     x7, [x10, #16]
    movz    x9, #0x00ab
    movk    x9, #0xcdef, lsl #16
    movk    x9, #0x5678, lsl #32
    movk    x9, #0x1234, lsl #48
    EXPECT  x7, x9, 8
    str     xzr, [x10, #24]         /* store of XZR writes zero */
    ldr     x7, [x10, #24]
    EXPECT  x7, xzr, 9
    ldr     xzr, [x10]              /* load into XZR is discarded */
    GUEST_EXIT x20
    .global guest_mmio_end
guest_mmio_end:

    .global guest_unmapped_start
guest_unmapped_start:
    movz    x10, #0x0c00, lsl #16
    ldr     x0, [x10]               /* nothing claims 0x0c000000: VM stops */
    mov     x1, #0x77
    GUEST_EXIT x1                   /* never reached */
    .global guest_unmapped_end
guest_unmapped_end:

    .global guest_no_syndrome_start
guest_no_syndrome_start:
    movz    x10, #0x0b00, lsl #16
    ldp     x0, x1, [x10]           /* load pair: no valid syndrome (ISV = 0) */
    mov     x1, #0x77
    GUEST_EXIT x1                   /* never reached */
    .global guest_no_syndrome_end
guest_no_syndrome_end:

    /* x0 = marker to write at RAM base + 0x1000 and read back;
       x1 = an address outside this VM's RAM to touch afterwards (0 = skip). */
    .global guest_isolation_start
guest_isolation_start:
    mov     x20, #0
    mov     x11, x1
    adr     x10, guest_isolation_start
    add     x10, x10, #0x1000
    str     x0, [x10]
    dsb     sy
    ldr     x2, [x10]
    EXPECT  x2, x0, 0
    cbz     x11, 3f
    ldr     x3, [x11]               /* must fault: not this VM's memory */
    orr     x20, x20, #(1 << 1)
3:  GUEST_EXIT x20
    .global guest_isolation_end
guest_isolation_end:

    /* x0 = 1: arm the PMU and hardware breakpoint 0 (at guest_debug_bp) and
       read them back; x0 = 0: check that none of it is visible. Both then
       enable self-hosted debug at EL1 and execute guest_debug_bp: a live
       breakpoint there would take an exception to VBAR_EL1 = 0, which is
       unmapped, and stop the VM with a fault instead of exiting. */
    .global guest_debug_start
guest_debug_start:
    mov     x20, #0
    mov     x19, x0
    adr     x10, guest_debug_bp
    cbz     x19, 5f
    mov     x1, #1
    msr     pmcr_el0, x1            /* PMCR_EL0.E */
    movz    x1, #0x8000, lsl #16
    orr     x1, x1, #1
    msr     pmcntenset_el0, x1      /* cycle counter and counter 0 */
    mov     x1, #0x11
    msr     pmevtyper0_el0, x1      /* CPU_CYCLES */
    movz    x1, #0x0800, lsl #16
    msr     pmccfiltr_el0, x1       /* NSH: count at EL2 too */
    msr     dbgbvr0_el1, x10
    mov     x1, #0x1e7              /* BAS = 0xf, PMC = EL1+EL0, E */
    msr     dbgbcr0_el1, x1
    msr     oslar_el1, xzr          /* OS lock off */
    msr     osdlr_el1, xzr
    mrs     x2, dbgbvr0_el1         /* its own values read back */
    EXPECT  x2, x10, 0
    mrs     x2, dbgbcr0_el1
    EXPECT  x2, x1, 1
    b       6f
5:  mrs     x2, dbgbvr0_el1         /* nothing of the other VM */
    EXPECT  x2, xzr, 2
    mrs     x2, dbgbcr0_el1
    EXPECT  x2, xzr, 3
    mrs     x2, mdscr_el1
    EXPECT  x2, xzr, 4
    mrs     x2, pmcntenset_el0
    EXPECT  x2, xzr, 5
    mrs     x2, pmevtyper0_el0
    EXPECT  x2, xzr, 6
    mrs     x2, pmccfiltr_el0
    EXPECT  x2, xzr, 7
6:  mrs     x2, pmcr_el0            /* no PMU: N = 0, counters read 0 */
    EXPECT  x2, xzr, 8
    mrs     x2, pmccntr_el0
    EXPECT  x2, xzr, 9
    mrs     x2, pmevcntr0_el0
    EXPECT  x2, xzr, 10
    movz    x1, #0xa000             /* MDSCR_EL1.MDE | KDE */
    msr     mdscr_el1, x1
    isb
    msr     daifclr, #8             /* debug exceptions unmasked */
    isb
    .global guest_debug_bp
guest_debug_bp:
    nop
    msr     daifset, #8
    mrs     x2, mdscr_el1
    EXPECT  x2, x1, 11
    GUEST_EXIT x20
    .global guest_debug_end
guest_debug_end:

/* Store Z0-Z31, P0-P15 and FFR (at the guest's vector length) at \base:
   Z at n * VL, P and FFR after them at 32 * VL + n * VL / 8. P0 is used to
   read FFR and reloaded. Uses x12. */
.macro SVE_SNAPSHOT base
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     z\n, [\base, #\n, mul vl]
    .endr
    rdvl    x12, #16
    add     x12, \base, x12, lsl #1
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    str     p\n, [x12, #\n, mul vl]
    .endr
    rdffr   p0.b
    str     p0, [x12, #16, mul vl]
    ldr     p0, [x12, #0, mul vl]
.endm

/* x13 = bytes of a snapshot: 32 * VL + 17 * VL / 8. Uses x14, x15. */
.macro SVE_SNAPSHOT_SIZE
    rdvl    x13, #16
    lsl     x13, x13, #1
    rdvl    x14, #1
    lsr     x14, x14, #3
    mov     x15, #17
    madd    x13, x14, x15, x13
.endm

    /* x0 = seed (this VM's values and keys), x1 = rounds. Enables SVE
       (its first use traps to the hypervisor) and checks that the fresh
       state is all zero; fills Z0-Z31, P0-P15 and FFR with values derived
       from the seed, sets its pointer-authentication keys and signs a
       pointer (PACGA and PACIA), stores the results at RAM + 0x1000; then
       `rounds` times: WFI (the hypervisor switches to the other VM) and
       checks that every register and both signatures are unchanged and its
       own key reads back. Finally it leaves only FP/SIMD state (V registers
       written by AdvSIMD, which zeroes the rest of Z; P and FFR false), WFIs
       twice, changes V31 in between without SVE, and checks that SVE then
       sees exactly the V registers, zero-extended. Failure bits in x20. */
    .global guest_sve_pauth_start
guest_sve_pauth_start:
    mov     x20, #0
    mov     x19, x0
    mov     x21, x1
    adr     x10, guest_sve_pauth_start
    add     x11, x10, #0x12000      /* snapshot B */
    add     x22, x10, #0x1000       /* results */
    add     x10, x10, #0x10000      /* snapshot A */
    movz    x2, #0x33, lsl #16      /* CPACR_EL1.FPEN = ZEN = 0b11 */
    msr     cpacr_el1, x2
    isb
    mov     x2, #0xf                /* ZCR_EL1.LEN: the longest allowed */
    msr     s3_0_c1_c2_0, x2
    isb
    /* 1: the state SVE starts with is all zero (nothing of another VM) */
    SVE_SNAPSHOT x10
    SVE_SNAPSHOT_SIZE
    mov     x12, #0
.Lsp_zero:
    ldrb    w16, [x10, x12]
    cbz     w16, .Lsp_zero_ok
    orr     x20, x20, #(1 << 0)
.Lsp_zero_ok:
    add     x12, x12, #1
    cmp     x12, x13
    b.lo    .Lsp_zero
    /* 2: this VM's values */
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x2, x19, #\n
    index   z\n\().d, x2, x19
    .endr
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    add     x3, x19, #(3 * \n)
    and     x3, x3, #63
    whilelo p\n\().b, xzr, x3
    .endr
    wrffr   p7.b
    /* pointer-authentication keys: APIAKey and APGAKey from the seed */
    msr     s3_0_c2_c1_0, x19       /* APIAKeyLo_EL1 */
    eor     x2, x19, #0xff00
    msr     s3_0_c2_c1_1, x2        /* APIAKeyHi_EL1 */
    ror     x2, x19, #17
    msr     s3_0_c2_c3_0, x2        /* APGAKeyLo_EL1 */
    msr     s3_0_c2_c3_1, x19       /* APGAKeyHi_EL1 */
    mov     x2, #16                 /* TCR_EL1.T0SZ = 16: 48-bit VA, PAC above */
    msr     tcr_el1, x2
    mrs     x2, sctlr_el1
    orr     x2, x2, #(1 << 31)      /* SCTLR_EL1.EnIA */
    msr     sctlr_el1, x2
    isb
    pacga   x5, x10, x19
    mov     x6, x10
    pacia   x6, x19
    rdvl    x7, #1
    stp     x5, x6, [x22]
    str     x7, [x22, #16]
    SVE_SNAPSHOT x10
.Lsp_round:
    cbz     x21, .Lsp_rounds_done
    wfi                             /* the other VM runs */
    SVE_SNAPSHOT x11
    SVE_SNAPSHOT_SIZE
    mov     x12, #0
.Lsp_cmp:
    ldrb    w16, [x10, x12]
    ldrb    w17, [x11, x12]
    cmp     w16, w17
    b.eq    .Lsp_cmp_ok
    orr     x20, x20, #(1 << 1)
.Lsp_cmp_ok:
    add     x12, x12, #1
    cmp     x12, x13
    b.lo    .Lsp_cmp
    pacga   x7, x10, x19
    EXPECT  x7, x5, 2
    mov     x8, x10
    pacia   x8, x19
    EXPECT  x8, x6, 3
    mrs     x9, s3_0_c2_c1_0
    EXPECT  x9, x19, 4
    sub     x21, x21, #1
    b       .Lsp_round
.Lsp_rounds_done:
    /* 3: only FP/SIMD state left: V = seed + n (upper Z bits zeroed),
       P and FFR all false */
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x2, x19, #\n
    dup     v\n\().2d, x2
    .endr
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    pfalse  p\n\().b
    .endr
    wrffr   p0.b
    wfi                             /* put: back to lazy */
    add     v31.2d, v31.2d, v31.2d  /* FP/SIMD while SVE traps */
    wfi
    SVE_SNAPSHOT x11                /* traps: state rebuilt from V */
    rdvl    x14, #1
    mov     x3, #0
    mov     x4, x11
.Lsp_fp_reg:
    add     x2, x19, x3
    cmp     x3, #31
    b.ne    .Lsp_fp_value
    lsl     x2, x2, #1
.Lsp_fp_value:
    ldp     x5, x6, [x4]
    EXPECT  x5, x2, 5
    EXPECT  x6, x2, 5
    mov     x12, #16
.Lsp_fp_upper:
    cmp     x12, x14
    b.hs    .Lsp_fp_next
    ldr     x5, [x4, x12]
    EXPECT  x5, xzr, 6
    add     x12, x12, #8
    b       .Lsp_fp_upper
.Lsp_fp_next:
    add     x4, x4, x14
    add     x3, x3, #1
    cmp     x3, #32
    b.lo    .Lsp_fp_reg
    /* x4 = P0: 17 * VL / 8 bytes of false predicates */
    lsr     x13, x14, #3
    mov     x15, #17
    mul     x13, x13, x15
    mov     x12, #0
.Lsp_fp_pred:
    ldrb    w16, [x4, x12]
    cbz     w16, .Lsp_fp_pred_ok
    orr     x20, x20, #(1 << 7)
.Lsp_fp_pred_ok:
    add     x12, x12, #1
    cmp     x12, x13
    b.lo    .Lsp_fp_pred
    GUEST_EXIT x20
    .global guest_sve_pauth_end
guest_sve_pauth_end:
    .balign 4
"#
);
