//! The one door into a guest's RAM.
//!
//! Every VM owns exactly one [`GuestMemory`]: the guest-physical base of its
//! RAM, its size, and the host memory that backs it (a `Vec`/boxed slice in
//! host tests, the VM's carve-out of physical RAM on target). Devices,
//! loaders and the virtqueue code never see a host pointer into guest RAM;
//! they ask this type to copy bytes or plain-old-data objects in and out of a
//! checked guest-physical range.
//!
//! # Why copies and not references
//! Guest RAM is written by the guest at any time, from another CPU, without
//! any lock the hypervisor can take. A Rust reference (`&[u8]`, `&T`) into
//! it would promise immutability that the guest can break, so no reference
//! into guest RAM ever leaves this module. Objects are *copied* into
//! hypervisor-owned values with [`GuestMemory::read_obj`] and validated
//! there, which also rules out double-fetch (TOCTOU) bugs: a descriptor is
//! read once, checked, and the checked copy is what gets used.
//!
//! # Volatile objects, plain bulk copies
//! Guest RAM is memory another agent changes behind the compiler's back,
//! which is what volatile accesses are for: the compiler may neither drop,
//! merge nor repeat them. [`GuestMemory::read_obj`] and
//! [`GuestMemory::write_obj`] (descriptors, avail ring entries, used
//! elements, request headers) therefore go through `volatile::VolatilePtr`,
//! so a field the code validated is never silently re-read from guest RAM,
//! and a store the guest must see is never elided. One load or store of the
//! whole object when the host address is aligned for it; one per byte
//! otherwise.
//!
//! The byte copies of packet and block payloads ([`GuestMemory::read`],
//! [`GuestMemory::write`], [`GuestMemory::fill`]) stay
//! `copy_nonoverlapping`/`write_bytes`. On stable Rust `volatile` 0.6 has
//! no slice copy (`copy_into_slice`/`copy_from_slice` need its nightly
//! `unstable` feature), so a volatile bulk copy is a loop of single
//! volatile accesses. Measured on the development host (x86_64, release
//! build), copying 1500 bytes 400,000 times took 7.5 ms with
//! `copy_nonoverlapping` and 192 ms as a volatile `u8` loop (25x; 19x for
//! writes into guest RAM); 64 KiB 10,000 times took 12 ms against 188 ms
//! (16x). A volatile `u64` loop came to 2.0-2.1x and would still need an
//! aligned byte tail. Payloads are copied exactly once into (or out of)
//! hypervisor buffers and never re-read from guest RAM, so a volatile
//! payload copy would buy nothing a plain one does not already give, at
//! that cost.
//!
//! # Errors, never panics
//! Every access takes a `(gpa, len)` range that must lie entirely inside the
//! guest's RAM. A range that starts below the base, ends past the end,
//! straddles the end, or whose `gpa + len` overflows `u64` is a
//! [`MemError`], never a panic and never an access.
//!
//! ```
//! use hypervisor::guest_memory::{GuestMemory, MemError};
//! // 4 KiB of guest RAM at guest-physical 0x4000_0000.
//! let backing: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
//! let mem = GuestMemory::from_static(0x4000_0000, backing);
//!
//! mem.write_obj(0x4000_0010, &0x1234_5678u32).unwrap();
//! assert_eq!(mem.read_obj::<u32>(0x4000_0010).unwrap(), 0x1234_5678);
//!
//! // The last byte is inside, one past it is not.
//! assert!(mem.read_obj::<u8>(0x4000_0fff).is_ok());
//! assert!(matches!(mem.read_obj::<u8>(0x4000_1000), Err(MemError::OutOfRange { .. })));
//! // A u32 that straddles the end is refused as a whole.
//! assert!(mem.read_obj::<u32>(0x4000_0ffe).is_err());
//! ```

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, Ordering};

use volatile::VolatilePtr;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Why a guest-memory access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// The range `[gpa, gpa + len)` is not entirely inside guest RAM.
    OutOfRange {
        /// Start of the refused range.
        gpa: u64,
        /// Length of the refused range.
        len: u64,
    },
    /// `gpa + len` does not fit in 64 bits.
    Overflow {
        /// Start of the refused range.
        gpa: u64,
        /// Length of the refused range.
        len: u64,
    },
    /// A scalar access that must be naturally aligned was not.
    Misaligned {
        /// The misaligned address.
        gpa: u64,
        /// The required alignment in bytes.
        align: u64,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemError::OutOfRange { gpa, len } => {
                write!(f, "guest range {gpa:#x}+{len:#x} is outside guest RAM")
            }
            MemError::Overflow { gpa, len } => {
                write!(
                    f,
                    "guest range {gpa:#x}+{len:#x} overflows the address space"
                )
            }
            MemError::Misaligned { gpa, align } => {
                write!(f, "guest address {gpa:#x} is not {align}-byte aligned")
            }
        }
    }
}

/// A guest-physical range already checked against one [`GuestMemory`].
///
/// Holding a `GuestRange` proves that `[gpa, gpa + len)` was inside that
/// memory when it was checked; guest RAM never shrinks, so it stays valid.
/// The virtqueue code checks each descriptor buffer once and keeps the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    gpa: u64,
    len: u32,
}

impl GuestRange {
    /// First guest-physical address of the range.
    pub const fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Length of the range in bytes.
    pub const fn len(&self) -> u32 {
        self.len
    }

    /// True for a zero-length range.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One VM's RAM: guest-physical base, size and host backing.
pub struct GuestMemory {
    base: u64,
    size: u64,
    host: NonNull<u8>,
}

// SAFETY: `GuestMemory` only stores the location of memory it owns
// exclusively (see the constructors). All accesses go through raw-pointer
// copies and atomic ring-index accesses, never through lasting Rust
// references, so sharing it between CPUs cannot create aliasing
// references; concurrent
// writers (guest and hypervisor) only race on guest-owned bytes.
unsafe impl Send for GuestMemory {}
// SAFETY: see the `Send` impl; every method takes `&self` and performs
// copies through raw pointers into or out of hypervisor-owned buffers.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Creates guest memory at guest-physical `base` backed by `backing`,
    /// which it keeps exclusive use of for the rest of the program.
    ///
    /// # Panics
    /// Never on valid input; a `base + len` that overflows yields an empty
    /// memory (every access then fails).
    pub fn from_static(base: u64, backing: &'static mut [u8]) -> Self {
        let len = backing.len() as u64;
        let size = if base.checked_add(len).is_some() {
            len
        } else {
            0
        };
        GuestMemory {
            base,
            size,
            host: NonNull::from(backing).cast(),
        }
    }

    /// Guest memory of size zero: every access fails. Placeholder for a VM
    /// slot that holds no VM.
    pub const fn empty() -> Self {
        GuestMemory {
            base: 0,
            size: 0,
            host: NonNull::dangling(),
        }
    }

    /// Creates guest memory over raw host memory (a VM carve-out).
    ///
    /// # Safety
    /// `host` must point to `size` bytes that are valid for reads and writes
    /// for the rest of the program, and nothing else in the hypervisor may
    /// access them except through this `GuestMemory` (the guest itself may,
    /// through its stage-2 mapping).
    pub unsafe fn from_raw_parts(base: u64, host: NonNull<u8>, size: u64) -> Self {
        let size = if base.checked_add(size).is_some() {
            size
        } else {
            0
        };
        GuestMemory { base, size, host }
    }

    /// Guest-physical address of the first byte of RAM.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// Size of guest RAM in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Host address of the backing memory (for building stage-2 mappings,
    /// which need the host-physical address of the carve-out; on target the
    /// hypervisor's own mapping is the identity). Never dereferenced by
    /// callers.
    pub fn host_base_addr(&self) -> usize {
        self.host.as_ptr() as usize
    }

    /// Checks that `[gpa, gpa + len)` lies inside guest RAM.
    pub fn check(&self, gpa: u64, len: u64) -> Result<GuestRange, MemError> {
        let offset = self.offset_of(gpa, len)?;
        let _ = offset;
        let len32 = u32::try_from(len).map_err(|_| MemError::OutOfRange { gpa, len })?;
        Ok(GuestRange { gpa, len: len32 })
    }

    /// True if `[gpa, gpa + len)` lies inside guest RAM.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        self.offset_of(gpa, len).is_ok()
    }

    /// Offset of `gpa` in the backing, after checking the whole range.
    fn offset_of(&self, gpa: u64, len: u64) -> Result<usize, MemError> {
        let end = gpa
            .checked_add(len)
            .ok_or(MemError::Overflow { gpa, len })?;
        let mem_end = self.base + self.size; // cannot overflow: checked at construction
        if gpa < self.base || end > mem_end {
            return Err(MemError::OutOfRange { gpa, len });
        }
        Ok((gpa - self.base) as usize)
    }

    /// Copies `buf.len()` bytes from guest-physical `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let offset = self.offset_of(gpa, buf.len() as u64)?;
        // SAFETY: `offset_of` proved the range is inside the owned backing.
        // `buf` is hypervisor memory and cannot overlap guest RAM (nothing
        // hands out references into guest RAM).
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.host.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }

    /// Copies `data` into guest RAM at guest-physical `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let offset = self.offset_of(gpa, data.len() as u64)?;
        // SAFETY: `offset_of` proved the destination range is inside the
        // owned backing; `data` is hypervisor memory and cannot overlap it.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.host.as_ptr().add(offset),
                data.len(),
            );
        }
        Ok(())
    }

    /// Sets `len` bytes at `gpa` to `byte`.
    pub fn fill(&self, gpa: u64, len: u64, byte: u8) -> Result<(), MemError> {
        let offset = self.offset_of(gpa, len)?;
        // SAFETY: the range was checked to be inside the owned backing.
        unsafe {
            core::ptr::write_bytes(self.host.as_ptr().add(offset), byte, len as usize);
        }
        Ok(())
    }

    /// Reads a plain-old-data object (e.g. a little-endian virtqueue
    /// descriptor) from `gpa` with volatile loads: one load of the whole
    /// object when its host address is aligned for `T`, one per byte
    /// otherwise. The returned value is the one checked copy the caller
    /// validates and uses (see the module doc on volatile accesses).
    pub fn read_obj<T: FromBytes + IntoBytes + Copy>(&self, gpa: u64) -> Result<T, MemError> {
        let size = core::mem::size_of::<T>();
        let offset = self.offset_of(gpa, size as u64)?;
        // SAFETY: `offset_of` proved `[offset, offset + size)` is inside the
        // owned backing, so the pointer is in bounds and non-null.
        let ptr = unsafe { self.host.add(offset) };
        if ptr.cast::<T>().is_aligned() {
            // SAFETY: the object lies inside the owned backing, which lives
            // as long as `self`, and the pointer is aligned for `T`; every
            // bit pattern is a valid `T` (`FromBytes`). The volatile pointer
            // lives for this one load and no Rust reference to the location
            // exists.
            let src = unsafe { VolatilePtr::new_read_only(ptr.cast::<T>()) };
            return Ok(src.read());
        }
        let mut value = T::new_zeroed();
        for (i, byte) in value.as_mut_bytes().iter_mut().enumerate() {
            // SAFETY: `i < size`, so the byte is inside the checked range of
            // the owned backing; a `u8` needs no alignment.
            let src = unsafe { VolatilePtr::new_read_only(ptr.add(i)) };
            *byte = src.read();
        }
        Ok(value)
    }

    /// Writes a plain-old-data object to `gpa` with volatile stores: one
    /// store of the whole object when its host address is aligned for `T`,
    /// one per byte otherwise.
    pub fn write_obj<T: IntoBytes + Immutable + Copy>(
        &self,
        gpa: u64,
        value: &T,
    ) -> Result<(), MemError> {
        let size = core::mem::size_of::<T>();
        let offset = self.offset_of(gpa, size as u64)?;
        // SAFETY: `offset_of` proved `[offset, offset + size)` is inside the
        // owned backing, so the pointer is in bounds and non-null.
        let ptr = unsafe { self.host.add(offset) };
        if ptr.cast::<T>().is_aligned() {
            // SAFETY: the object lies inside the owned backing, which lives
            // as long as `self`, and the pointer is aligned for `T`. The
            // volatile pointer lives for this one store and no Rust
            // reference to the location exists.
            let dst = unsafe { VolatilePtr::new(ptr.cast::<T>()) };
            dst.write(*value);
            return Ok(());
        }
        for (i, &byte) in value.as_bytes().iter().enumerate() {
            // SAFETY: `i < size`, so the byte is inside the checked range of
            // the owned backing; a `u8` needs no alignment.
            let dst = unsafe { VolatilePtr::new(ptr.add(i)) };
            dst.write(byte);
        }
        Ok(())
    }

    /// Reads a naturally aligned little-endian `u16` with an acquire load:
    /// the way a device reads an index the driver publishes (e.g.
    /// `avail.idx`), so that later reads of the data it covers (ring
    /// entries, descriptors) cannot be satisfied before it.
    ///
    /// Ring indices are the one place where guest and hypervisor
    /// synchronise through shared memory, so they are accessed as what the
    /// Rust memory model calls atomics (`AtomicU16::from_ptr`) rather than
    /// `volatile` plus a fence: a volatile access is not an atomic one, and
    /// a fence only orders atomic accesses, so the old pairing relied on
    /// what the compiler happens to emit. On AArch64 this is an `ldrh`
    /// followed by the acquire barrier (or `ldarh`), which pairs with the
    /// driver's `virt_store_release`/`virt_wmb` of the index. Descriptors
    /// and ring entries (volatile [`GuestMemory::read_obj`]) and buffers
    /// (plain copies) are only read after the acquire (or written before
    /// the release) and are re-validated after every read.
    pub fn load_u16_acquire(&self, gpa: u64) -> Result<u16, MemError> {
        let ptr = self.aligned_ptr::<u16>(gpa)?;
        // SAFETY: `aligned_ptr` checked that the u16 is inside the owned
        // backing and 2-byte aligned on the host (AtomicU16's alignment),
        // and the backing lives as long as `self`. The reference lives for
        // this one load. The location is shared with the guest (another
        // agent outside this program, doing its own atomic-width accesses)
        // and, in host tests, with simulated drivers that touch ring
        // indices only through this type's copies between batches; no Rust
        // reference to it exists elsewhere.
        let atomic = unsafe { AtomicU16::from_ptr(ptr.as_ptr()) };
        Ok(u16::from_le(atomic.load(Ordering::Acquire)))
    }

    /// Writes a naturally aligned little-endian `u16` with a release
    /// store: the way a device publishes an index (e.g. `used.idx`) after
    /// the data it covers (the used element) has been written, so the
    /// driver that reads the index sees that data. See
    /// [`GuestMemory::load_u16_acquire`] for why this is an atomic access.
    pub fn store_u16_release(&self, gpa: u64, value: u16) -> Result<(), MemError> {
        let ptr = self.aligned_ptr::<u16>(gpa)?;
        // SAFETY: as in `load_u16_acquire`: checked range and host
        // alignment inside the owned backing, a reference that lives for
        // this one store, no other Rust reference to the location.
        let atomic = unsafe { AtomicU16::from_ptr(ptr.as_ptr()) };
        atomic.store(value.to_le(), Ordering::Release);
        Ok(())
    }

    /// Checked, aligned pointer to a scalar inside guest RAM (private: it
    /// never leaves this module).
    fn aligned_ptr<T>(&self, gpa: u64) -> Result<NonNull<T>, MemError> {
        let align = core::mem::align_of::<T>() as u64;
        if gpa % align != 0 {
            return Err(MemError::Misaligned { gpa, align });
        }
        let offset = self.offset_of(gpa, core::mem::size_of::<T>() as u64)?;
        // SAFETY: `offset` is inside the backing, so the result is non-null.
        // Host alignment is checked again below (the guest base need not be).
        let ptr = unsafe { self.host.add(offset) }.cast::<T>();
        if (ptr.as_ptr() as usize) % (align as usize) != 0 {
            return Err(MemError::Misaligned { gpa, align });
        }
        Ok(ptr)
    }
}

impl fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("size", &format_args!("{:#x}", self.size))
            .finish()
    }
}

/// The value a carve-out mark ([`crate::platform::HOST_CARVE_OUT_MARKS`])
/// holds once a VM was created in the carve-out.
pub const CARVE_OUT_USED: u64 = 0x5553_4544_2d56_4d21;

/// Whether creating a VM must zero its RAM, given its carve-out's mark.
/// Only a zero mark skips it: the machine starts with all RAM zero (QEMU
/// allocates it zeroed), nothing but a VM writes its carve-out, and the
/// mark is set before a VM is created in it, so a zero mark means the
/// carve-out still holds the zeros it started with. Any other value (the
/// carve-out was used, possibly before a machine reset, which keeps RAM)
/// zeroes. A VM restart always zeroes (`restart`).
pub fn carve_out_needs_zeroing(mark: u64) -> bool {
    mark != 0
}

/// How a range of `len` bytes at host address `addr` splits for zeroing
/// with `DC ZVA`: `(head, blocks, block)` = bytes before the first whole
/// zero block, the whole blocks that follow, and the block size; the
/// `len - head - blocks * block` bytes after them are the tail. `dczid` is
/// DCZID_EL0 (BS, bits 3:0 = log2 of the block size in 4-byte words; DZP,
/// bit 4 = `DC ZVA` prohibited). Prohibited, or a block size the
/// architecture does not define (over 2 KiB): no blocks, every byte a head
/// byte.
pub fn zva_split(addr: u64, len: u64, dczid: u64) -> (u64, u64, u64) {
    let prohibited = dczid & (1 << 4) != 0;
    let bs = dczid & 0xf;
    if prohibited || bs > 9 {
        return (len, 0, 1);
    }
    let block = 4u64 << bs;
    let head = (block - addr % block) % block;
    if head >= len {
        return (len, 0, block);
    }
    (head, (len - head) / block, block)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x4000_0000;

    /// `size` bytes of RAM whose backing is 8-byte aligned, as a VM's
    /// carve-out is (a `u8` buffer may start at any address; Miri places
    /// such buffers at odd addresses, which the scalar accessors refuse).
    fn mem(size: usize) -> GuestMemory {
        let words: &'static mut [u64] = Box::leak(vec![0u64; size.div_ceil(8)].into_boxed_slice());
        GuestMemory::from_static(BASE, &mut words.as_mut_bytes()[..size])
    }

    #[test]
    fn last_byte_ok_one_past_refused() {
        let m = mem(4096);
        m.write(BASE + 4095, &[0xaa]).unwrap();
        assert_eq!(m.read_obj::<u8>(BASE + 4095).unwrap(), 0xaa);
        assert_eq!(
            m.write(BASE + 4096, &[1]),
            Err(MemError::OutOfRange {
                gpa: BASE + 4096,
                len: 1
            })
        );
    }

    #[test]
    fn below_base_refused() {
        let m = mem(4096);
        assert!(matches!(
            m.read_obj::<u32>(BASE - 4),
            Err(MemError::OutOfRange { .. })
        ));
        assert!(matches!(
            m.read_obj::<u32>(BASE - 2),
            Err(MemError::OutOfRange { .. })
        ));
    }

    #[test]
    fn straddling_end_refused_and_nothing_written() {
        let m = mem(4096);
        assert!(m.write(BASE + 4094, &[1, 2, 3, 4]).is_err());
        assert_eq!(m.read_obj::<u16>(BASE + 4094).unwrap(), 0);
    }

    #[test]
    fn u64_overflow_refused() {
        let m = mem(4096);
        let mut buf = [0u8; 16];
        assert_eq!(
            m.read(u64::MAX - 3, &mut buf),
            Err(MemError::Overflow {
                gpa: u64::MAX - 3,
                len: 16
            })
        );
        assert!(matches!(
            m.check(BASE, u64::MAX),
            Err(MemError::Overflow { .. })
        ));
    }

    #[test]
    fn zva_split_covers_the_range_with_aligned_blocks_inside_it() {
        // BS = 4: 64-byte blocks (the usual size).
        for addr in [
            0x6000_0000u64,
            0x6000_0001,
            0x6000_003f,
            0x6000_0040,
            0x6000_0fc8,
        ] {
            for len in [0u64, 1, 63, 64, 65, 127, 128, 129, 4096, 4097, 256 << 20] {
                let (head, blocks, block) = zva_split(addr, len, 4);
                assert_eq!(block, 64);
                let tail = len - head - blocks * block;
                assert!(head + blocks * block <= len, "{addr:#x}+{len}");
                if blocks > 0 {
                    assert_eq!((addr + head) % block, 0, "first block aligned");
                    assert!(head < block, "no whole block left in the head");
                }
                assert!(tail < block, "{addr:#x}+{len}: a whole block in the tail");
                // Fewer whole aligned blocks than the range holds would
                // leave work to the slow path; more would write outside.
                let first = addr.div_ceil(64) * 64;
                let fits = if first + 64 <= addr + len {
                    (addr + len - first) / 64
                } else {
                    0
                };
                assert_eq!(blocks, fits, "{addr:#x}+{len}");
            }
        }
    }

    #[test]
    fn only_a_carve_out_never_used_skips_zeroing() {
        assert!(!carve_out_needs_zeroing(0));
        assert!(carve_out_needs_zeroing(CARVE_OUT_USED));
        for bit in 0..64 {
            assert!(carve_out_needs_zeroing(1 << bit), "mark bit {bit}");
        }
        assert!(carve_out_needs_zeroing(u64::MAX));
    }

    #[test]
    fn zva_split_without_dc_zva_uses_plain_stores() {
        assert_eq!(zva_split(0x1000, 4096, 4 | 1 << 4), (4096, 0, 1), "DZP");
        assert_eq!(zva_split(0x1000, 4096, 0xa), (4096, 0, 1), "4 KiB blocks");
        assert_eq!(zva_split(0x1000, 4096, 9), (0, 2, 2048), "2 KiB blocks");
        assert_eq!(zva_split(0x1004, 8, 0), (0, 2, 4), "4-byte blocks");
    }

    #[test]
    fn zero_length_at_end_is_inside() {
        let m = mem(4096);
        assert!(m.check(BASE + 4096, 0).is_ok());
        assert!(m.check(BASE + 4097, 0).is_err());
    }

    #[test]
    fn check_refuses_ranges_longer_than_u32() {
        let m = mem(16);
        assert!(m.check(BASE, 1 << 33).is_err());
    }

    #[test]
    fn objects_round_trip_little_endian() {
        let m = mem(64);
        m.write_obj(BASE + 8, &0x1122_3344_5566_7788u64).unwrap();
        let mut raw = [0u8; 8];
        m.read(BASE + 8, &mut raw).unwrap();
        assert_eq!(raw, 0x1122_3344_5566_7788u64.to_le_bytes());
    }

    /// Every host alignment takes one of the two volatile paths (one access
    /// of the whole object, or one per byte); both must write exactly the
    /// object's bytes, leave the neighbours alone, and read them back.
    #[test]
    fn objects_round_trip_at_every_alignment() {
        let value = 0x0102_0304_0506_0708u64;
        for shift in 0..8u64 {
            let m = mem(32);
            m.fill(BASE, 32, 0xee).unwrap();
            let at = BASE + 8 + shift;
            m.write_obj(at, &value).unwrap();
            let mut raw = [0u8; 32];
            m.read(BASE, &mut raw).unwrap();
            let start = 8 + shift as usize;
            assert_eq!(raw[start..start + 8], value.to_le_bytes(), "shift {shift}");
            assert!(raw[..start].iter().all(|&b| b == 0xee), "shift {shift}");
            assert!(raw[start + 8..].iter().all(|&b| b == 0xee), "shift {shift}");
            assert_eq!(m.read_obj::<u64>(at).unwrap(), value, "shift {shift}");
        }
    }

    #[test]
    fn scalar_index_access_checks_alignment() {
        let m = mem(64);
        m.store_u16_release(BASE + 2, 0xbeef).unwrap();
        assert_eq!(m.load_u16_acquire(BASE + 2).unwrap(), 0xbeef);
        assert_eq!(
            m.load_u16_acquire(BASE + 3),
            Err(MemError::Misaligned {
                gpa: BASE + 3,
                align: 2
            })
        );
        assert!(m.load_u16_acquire(BASE + 64).is_err());
    }

    #[test]
    fn overflowing_base_gives_empty_memory() {
        let m = GuestMemory::from_static(u64::MAX - 1, Box::leak(vec![0u8; 16].into_boxed_slice()));
        assert_eq!(m.size(), 0);
        assert!(m.read_obj::<u8>(u64::MAX - 1).is_err());
    }

    #[test]
    fn empty_memory_refuses_everything() {
        let m = GuestMemory::empty();
        assert_eq!(m.size(), 0);
        assert!(m.read_obj::<u8>(0).is_err());
        assert!(m.write(0, &[1]).is_err());
        assert!(m.check(0, 0).is_ok());
    }

    #[test]
    fn fill_sets_bytes() {
        let m = mem(32);
        m.fill(BASE + 4, 8, 0x5a).unwrap();
        let mut buf = [0u8; 16];
        m.read(BASE, &mut buf).unwrap();
        assert_eq!(&buf[4..12], &[0x5a; 8]);
        assert_eq!(buf[3], 0);
        assert_eq!(buf[12], 0);
    }
}
