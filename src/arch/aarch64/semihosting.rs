//! Arm semihosting: the way the hypervisor ends a QEMU run with a status.
//!
//! QEMU with `-semihosting` implements `HLT #0xF000`; SYS_EXIT (0x18) with
//! the AArch64 parameter block `{ADP_Stopped_ApplicationExit, status}` makes
//! QEMU exit with `status` as its process exit code.

/// Exit status for success.
pub const EXIT_SUCCESS: u32 = 0;
/// Exit status for a failed test, panic or fatal exception.
pub const EXIT_FAILURE: u32 = 1;
/// Exit status for a boot-configuration or image error (bad user input).
pub const EXIT_BAD_INPUT: u32 = 2;

const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Exits QEMU with `status`. Never returns (if semihosting is not enabled,
/// the CPU parks forever).
pub fn exit(status: u32) -> ! {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, status as u64];
    // SAFETY: HLT #0xF000 is the semihosting call; QEMU reads the two-word
    // parameter block through x1, which points at a live stack array.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            in("x0") SYS_EXIT,
            in("x1") block.as_ptr(),
            options(nostack)
        );
    }
    loop {
        aarch64_cpu::asm::wfe();
    }
}
