//! Arm semihosting: the way the hypervisor ends a QEMU run with a status,
//! and writes the packet capture to a host file.
//!
//! QEMU with `-semihosting` implements `HLT #0xF000`; SYS_EXIT (0x18) with
//! the AArch64 parameter block `{ADP_Stopped_ApplicationExit, status}` makes
//! QEMU exit with `status` as its process exit code. SYS_OPEN (0x01),
//! SYS_WRITE (0x05) and SYS_CLOSE (0x02) reach host files; each call traps
//! to QEMU, so callers batch their writes. Paths are relative to QEMU's
//! working directory unless absolute. The hypervisor's memory is
//! identity-mapped, so the addresses passed are also the ones QEMU reads.

/// Exit status for success.
pub const EXIT_SUCCESS: u32 = 0;
/// Exit status for a failed test, panic or fatal exception.
pub const EXIT_FAILURE: u32 = 1;
/// Exit status for a boot-configuration or image error (bad user input).
pub const EXIT_BAD_INPUT: u32 = 2;

const SYS_OPEN: u64 = 0x01;
const SYS_CLOSE: u64 = 0x02;
const SYS_WRITE: u64 = 0x05;
const SYS_GET_CMDLINE: u64 = 0x15;
const SYS_EXIT: u64 = 0x18;
/// SYS_OPEN mode "wb": create or truncate, binary.
const MODE_WB: u64 = 5;

/// An open host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFile(u64);

/// One semihosting call with the parameter block `block`.
fn call(op: u64, block: &[u64]) -> i64 {
    let result: u64;
    // SAFETY: HLT #0xF000 is the semihosting call; QEMU reads the parameter
    // block through x1 (a live array) and any buffers it names, which the
    // callers keep alive for the call, and returns its result in x0.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") op => result,
            in("x1") block.as_ptr(),
            options(nostack)
        );
    }
    result as i64
}

/// Opens (creates or truncates) the host file `path_with_nul` (a path
/// followed by one NUL byte) for writing; `None` if QEMU refused.
pub fn open_write(path_with_nul: &[u8]) -> Option<HostFile> {
    let len = path_with_nul.len().checked_sub(1)?;
    if path_with_nul.last() != Some(&0) {
        return None;
    }
    let handle = call(
        SYS_OPEN,
        &[path_with_nul.as_ptr() as u64, MODE_WB, len as u64],
    );
    (handle >= 0).then_some(HostFile(handle as u64))
}

/// Writes all of `data` to `file`; false if QEMU wrote less.
pub fn write(file: HostFile, data: &[u8]) -> bool {
    if data.is_empty() {
        return true;
    }
    // SYS_WRITE returns the number of bytes *not* written.
    call(
        SYS_WRITE,
        &[file.0, data.as_ptr() as u64, data.len() as u64],
    ) == 0
}

/// Closes `file`.
pub fn close(file: HostFile) -> bool {
    call(SYS_CLOSE, &[file.0]) == 0
}
/// The last word of QEMU's semihosting command line as a decimal number
/// (QEMU passes `<image> <-append text>`); `None` without one.
pub fn command_line_number() -> Option<u64> {
    let mut buf = [0u8; 256];
    let mut block: [u64; 2] = [buf.as_mut_ptr() as u64, buf.len() as u64];
    let result: u64;
    // SAFETY: HLT #0xF000 is the semihosting call; QEMU writes at most
    // `buf.len()` bytes into `buf` and the length back into `block`, both
    // live stack arrays for the call.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_GET_CMDLINE => result,
            in("x1") block.as_mut_ptr(),
            options(nostack)
        );
    }
    if result != 0 {
        return None;
    }
    let len = (block[1] as usize).min(buf.len());
    let text = core::str::from_utf8(&buf[..len]).ok()?;
    text.split_whitespace().last()?.parse().ok()
}

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
