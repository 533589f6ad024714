//! The ground the hypervisor stands on: exception level, EL2 MMU set-up,
//! the exception path (a deliberate trap taken and returned from at EL2) and
//! ESR decoding of real syndromes.

use core::arch::asm;

use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, MAIR_EL2, Readable, SCTLR_EL2, TCR_EL2, VBAR_EL2};
use hal::esr::{Esr, ExceptionClass};
use hypervisor::arch::aarch64::{cpu, exceptions, mmu};
use hypervisor::selftest::{Suite, Test, TestResult};
use hypervisor::{check, check_eq, check_ok};

/// The suite.
pub static SUITE: Suite = Suite {
    name: "el2-basics",
    tests: &[
        Test {
            name: "runs_at_el2",
            run: runs_at_el2,
        },
        Test {
            name: "mmu_and_caches_on",
            run: mmu_and_caches_on,
        },
        Test {
            name: "translation_attributes",
            run: translation_attributes,
        },
        Test {
            name: "stack_guard_pages_unmapped",
            run: stack_guard_pages_unmapped,
        },
        Test {
            name: "vectors_installed",
            run: vectors_installed,
        },
        Test {
            name: "brk_trap_reported_and_returned",
            run: brk_trap_reported_and_returned,
        },
        Test {
            name: "hvc_at_el2_decoded",
            run: hvc_at_el2_decoded,
        },
        Test {
            name: "data_abort_syndrome_decoded",
            run: data_abort_syndrome_decoded,
        },
    ],
};

fn runs_at_el2() -> TestResult {
    check_eq!(cpu::current_el(), 2);
    check_eq!(cpu::current_cpu(), 0);
    Ok(())
}

fn mmu_and_caches_on() -> TestResult {
    let sctlr = SCTLR_EL2.get();
    check!(sctlr & 1 != 0); // M
    check!(sctlr & (1 << 2) != 0); // C
    check!(sctlr & (1 << 12) != 0); // I
    check!(sctlr & (1 << 1) == 0); // A: no alignment checking
    check_eq!(MAIR_EL2.get(), hal::stage1::MAIR_VALUE);
    let tcr = TCR_EL2.get();
    check_eq!(tcr & 0x3f, 25);
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    check_eq!((tcr >> 16) & 7, parange.min(5));
    Ok(())
}

/// Physical address and memory attribute of `va` through the EL2 stage-1
/// translation, from `AT S1E2R` + PAR_EL1.
fn translate(va: u64) -> Option<(u64, u8)> {
    let par: u64;
    // SAFETY: AT only performs a translation lookup and writes PAR_EL1; it
    // has no other side effect.
    unsafe {
        asm!("at s1e2r, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par);
    }
    if par & 1 != 0 {
        return None;
    }
    Some((par & 0x0000_ffff_ffff_f000, (par >> 56) as u8))
}

fn translation_attributes() -> TestResult {
    // RAM: identity, Normal write-back (MAIR 0xff).
    let (pa, attr) = check_ok!(translate(0x4123_4000));
    check_eq!(pa, 0x4123_4000);
    check_eq!(attr, 0xff);
    let (pa, attr) = check_ok!(translate(0xbfff_f000));
    check_eq!(pa, 0xbfff_f000);
    check_eq!(attr, 0xff);
    // UART and GIC: Device-nGnRnE (MAIR 0x00).
    let (pa, attr) = check_ok!(translate(0x0900_0000));
    check_eq!(pa, 0x0900_0000);
    check_eq!(attr, 0x00);
    check_eq!(check_ok!(translate(0x0800_0000)).1, 0x00);
    // Nothing above the 3 GiB the hypervisor maps.
    check!(translate(0xc000_0000).is_none());
    // SAFETY: reading the image's read-only level-1 table.
    // The RAM gigabyte goes through a level-2 table (for the stack pages).
    let l1_ram = unsafe { mmu::EL2_L1_TABLE[1] };
    check_eq!(l1_ram & 3, 3);
    Ok(())
}

fn stack_guard_pages_unmapped() -> TestResult {
    for cpu in 0..4u64 {
        let region = mmu::STACKS_BASE + cpu * mmu::CPU_STACKS_STRIDE;
        for guard in mmu::GUARD_PAGES {
            check!(translate(region + guard).is_none());
            check_eq!(
                mmu::guard_page_of(region + guard + 8).map(|g| g.0),
                Some(cpu as usize)
            );
        }
        // The stacks themselves are mapped, Normal memory.
        check_eq!(check_ok!(translate(region + 0x1000)).1, 0xff);
        check_eq!(
            check_ok!(translate(region + mmu::NORMAL_STACK_TOP - 0x1000)).1,
            0xff
        );
    }
    // This code runs on SP_EL0, inside CPU 0's normal stack.
    let sp: u64;
    // SAFETY: reading the stack pointer has no side effects.
    unsafe { asm!("mov {0}, sp", out(reg) sp) };
    check!(sp > mmu::STACKS_BASE + 0x6000 && sp <= mmu::STACKS_BASE + mmu::NORMAL_STACK_TOP);
    // A load from the guard page faults (it is what an overflow would hit);
    // the armed trap records it and the report would name the overflow.
    exceptions::expect_trap(ExceptionClass::DataAbortSame);
    let guard = mmu::STACKS_BASE + 0x5000 + 0x10;
    // SAFETY: the guard page is unmapped; the armed trap skips the load.
    unsafe { asm!("ldr {v}, [{a}]", a = in(reg) guard, v = out(reg) _) };
    let (esr, _elr) = check_ok!(exceptions::take_trap());
    check_eq!(Esr(esr).data_abort().dfsc_name(), "translation fault");
    Ok(())
}

unsafe extern "C" {
    static el2_vectors: u8;
}

fn vectors_installed() -> TestResult {
    let expected = &raw const el2_vectors as u64;
    check_eq!(VBAR_EL2.get(), expected);
    check_eq!(expected % 0x800, 0);
    Ok(())
}

fn brk_trap_reported_and_returned() -> TestResult {
    exceptions::expect_trap(ExceptionClass::Brk64);
    let brk_addr: u64;
    // SAFETY: BRK traps to the EL2 vectors, which were armed above to
    // record the trap and resume after the instruction.
    unsafe {
        asm!("adr {addr}, 1f", "1: brk #0x42", addr = out(reg) brk_addr);
    }
    let (esr, elr) = check_ok!(exceptions::take_trap());
    let esr = Esr(esr);
    check_eq!(esr.class(), ExceptionClass::Brk64);
    check_eq!(esr.imm16(), 0x42);
    check_eq!(elr, brk_addr);
    Ok(())
}

fn hvc_at_el2_decoded() -> TestResult {
    exceptions::expect_trap(ExceptionClass::Hvc64);
    // SAFETY: HVC at EL2 is taken to EL2's own vectors, armed above; x0 is
    // declared clobbered.
    unsafe {
        asm!("hvc #0x1234", out("x0") _);
    }
    let (esr, _elr) = check_ok!(exceptions::take_trap());
    check_eq!(Esr(esr).class(), ExceptionClass::Hvc64);
    check_eq!(Esr(esr).imm16(), 0x1234);
    Ok(())
}

fn data_abort_syndrome_decoded() -> TestResult {
    // A load from an address the EL2 tables do not map faults at EL2 with a
    // translation fault; the armed trap records it and we skip the load.
    exceptions::expect_trap(ExceptionClass::DataAbortSame);
    let value: u64;
    // SAFETY: the abort is consumed by the armed trap, which skips the load.
    // 0xc000_0000 is unmapped at EL2 (checked by translation_attributes).
    unsafe {
        asm!("mov {v}, #7", "ldr {v}, [{a}]", a = in(reg) 0xc000_0000u64, v = out(reg) value);
    }
    let (esr, _elr) = check_ok!(exceptions::take_trap());
    let da = Esr(esr).data_abort();
    check!(!da.is_write());
    check_eq!(da.dfsc_name(), "translation fault");
    check_eq!(value, 7);
    Ok(())
}
