//! The hypervisor's own small hypercall space.
//!
//! Calls use the SMCCC fast-call convention over HVC (or SMC) in the
//! *vendor-specific hypervisor service* range (OEN 6): function ID in w0,
//! arguments in x1..x3, result in x0. Unknown IDs return SMCCC
//! NOT_SUPPORTED (-1). Linux never makes these calls; the tiny test guests
//! use them to report results.

/// Returns [`ABI_VERSION`].
pub const HC_VERSION: u32 = 0xc600_0000;
/// Stops the calling VM with the status in x1 (0 = success); used by test
/// guests to report their result.
pub const HC_EXIT: u32 = 0xc600_0001;
/// Writes the byte in x1 to the VM's console.
pub const HC_PUTC: u32 = 0xc600_0002;
/// Returns the calling VM's id in x0.
pub const HC_VM_ID: u32 = 0xc600_0003;

/// ABI version returned by [`HC_VERSION`] (major << 16 | minor).
pub const ABI_VERSION: u64 = 0x0001_0000;

/// A decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// [`HC_VERSION`].
    Version,
    /// [`HC_EXIT`] with the status.
    Exit(u64),
    /// [`HC_PUTC`] with the byte.
    Putc(u8),
    /// [`HC_VM_ID`].
    VmId,
}

/// Decodes function ID `fid` with argument `x1`, if it is one of ours.
pub fn decode(fid: u32, x1: u64) -> Option<Hypercall> {
    match fid {
        HC_VERSION => Some(Hypercall::Version),
        HC_EXIT => Some(Hypercall::Exit(x1)),
        HC_PUTC => Some(Hypercall::Putc(x1 as u8)),
        HC_VM_ID => Some(Hypercall::VmId),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_our_calls_only() {
        assert_eq!(decode(HC_VERSION, 9), Some(Hypercall::Version));
        assert_eq!(decode(HC_EXIT, 3), Some(Hypercall::Exit(3)));
        assert_eq!(decode(HC_PUTC, 0x141), Some(Hypercall::Putc(0x41)));
        assert_eq!(decode(HC_VM_ID, 0), Some(Hypercall::VmId));
        assert_eq!(decode(0xc600_0004, 0), None);
        assert_eq!(decode(0x8400_0000, 0), None);
    }
}
