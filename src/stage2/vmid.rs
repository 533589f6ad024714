//! 8-bit VMIDs: 0 belongs to the host, 1..=255 are handed to VMs.

use core::fmt;
use core::num::NonZeroU8;

/// A VMID that a VM may run with: never 0 (reserved for the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vmid(NonZeroU8);

impl Vmid {
    /// `Some` for 1..=255, `None` for the host's reserved VMID 0.
    pub const fn new(vmid: u8) -> Option<Vmid> {
        match NonZeroU8::new(vmid) {
            Some(v) => Some(Vmid(v)),
            None => None,
        }
    }

    /// The VMID as written to VTTBR_EL2\[55:48\].
    pub const fn get(self) -> u8 {
        self.0.get()
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VMID {}", self.get())
    }
}

/// Why a VMID could not be allocated or freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmidError {
    /// All 255 guest VMIDs are in use.
    Exhausted,
    /// The VMID being freed is not allocated (double free).
    NotAllocated {
        /// The VMID.
        vmid: u8,
    },
}

impl fmt::Display for VmidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VmidError::Exhausted => write!(f, "all 255 VMIDs (1..=255) are in use"),
            VmidError::NotAllocated { vmid } => {
                write!(f, "VMID {vmid} is not allocated (freed twice?)")
            }
        }
    }
}

/// Hands out unique 8-bit VMIDs (VTCR_EL2.VS = 0).
///
/// Allocation is next-fit: a freed VMID is reused only after every other
/// free one, which keeps a torn-down VM's stale TLB entries far from its
/// successor. Still, before a freed VMID runs a new VM the integrator must
/// invalidate it (TLBI VMALLS12E1IS with VTTBR_EL2 holding that VMID,
/// then DSB ISH; ISB).
#[derive(Clone, Debug)]
pub struct VmidAllocator {
    used: [u64; 4],
    next: u8,
}

impl VmidAllocator {
    /// All guest VMIDs free; VMID 0 is permanently reserved for the host.
    pub const fn new() -> Self {
        VmidAllocator {
            used: [1, 0, 0, 0],
            next: 1,
        }
    }

    fn bit(v: u8) -> (usize, u64) {
        ((v / 64) as usize, 1u64 << (v % 64))
    }

    /// True if `vmid` is currently handed out.
    pub fn is_allocated(&self, vmid: Vmid) -> bool {
        let (w, b) = Self::bit(vmid.get());
        self.used[w] & b != 0
    }

    /// Number of VMIDs handed out (the host's 0 not counted).
    pub fn in_use(&self) -> usize {
        self.used
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            - 1
    }

    /// Hands out a free VMID.
    pub fn alloc(&mut self) -> Result<Vmid, VmidError> {
        let mut v = self.next;
        for _ in 0..255 {
            let (w, b) = Self::bit(v);
            if self.used[w] & b == 0 {
                self.used[w] |= b;
                self.next = if v == 255 { 1 } else { v + 1 };
                // `v` is never 0: it starts at 1..=255 and wraps to 1.
                return Vmid::new(v).ok_or(VmidError::Exhausted);
            }
            v = if v == 255 { 1 } else { v + 1 };
        }
        Err(VmidError::Exhausted)
    }

    /// Returns `vmid` (VM teardown).
    pub fn free(&mut self, vmid: Vmid) -> Result<(), VmidError> {
        let (w, b) = Self::bit(vmid.get());
        if self.used[w] & b == 0 {
            return Err(VmidError::NotAllocated { vmid: vmid.get() });
        }
        self.used[w] &= !b;
        Ok(())
    }
}

impl Default for VmidAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_reserved_for_the_host() {
        assert_eq!(Vmid::new(0), None);
        assert_eq!(Vmid::new(7).map(Vmid::get), Some(7));
        let mut a = VmidAllocator::new();
        for _ in 0..255 {
            assert_ne!(a.alloc().unwrap().get(), 0);
        }
    }

    #[test]
    fn hands_out_255_unique_ids_then_exhausts() {
        let mut a = VmidAllocator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..255 {
            assert!(seen.insert(a.alloc().unwrap()));
        }
        assert_eq!(a.in_use(), 255);
        assert_eq!(a.alloc(), Err(VmidError::Exhausted));
        assert_eq!(
            VmidError::Exhausted.to_string(),
            "all 255 VMIDs (1..=255) are in use"
        );
    }

    #[test]
    fn free_makes_an_id_available_again() {
        let mut a = VmidAllocator::new();
        let ids: Vec<Vmid> = (0..255).map(|_| a.alloc().unwrap()).collect();
        let victim = ids[41];
        a.free(victim).unwrap();
        assert!(!a.is_allocated(victim));
        assert_eq!(a.alloc(), Ok(victim));
        assert!(a.is_allocated(victim));
    }

    #[test]
    fn double_free_is_an_error() {
        let mut a = VmidAllocator::new();
        let v = a.alloc().unwrap();
        a.free(v).unwrap();
        let e = a.free(v).unwrap_err();
        assert_eq!(e, VmidError::NotAllocated { vmid: v.get() });
        assert!(e.to_string().contains("VMID 1 is not allocated"));
    }

    #[test]
    fn freed_ids_are_reused_last() {
        let mut a = VmidAllocator::new();
        let v1 = a.alloc().unwrap();
        let v2 = a.alloc().unwrap();
        a.free(v1).unwrap();
        let v3 = a.alloc().unwrap();
        assert_eq!((v1.get(), v2.get(), v3.get()), (1, 2, 3));
        assert_eq!(a.in_use(), 2);
    }
}
