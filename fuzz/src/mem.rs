//! Guest RAM owned by one fuzz iteration, and its shadow copy.
//!
//! [`GuestMemory::from_static`] leaks its backing, which a fuzzer running
//! millions of iterations cannot afford; [`OwnedRam`] frees it when the
//! iteration ends. [`Shadow`] is what the guest believes its RAM holds: the
//! harness updates it for every store the simulated guest makes, so after a
//! device step every byte that differs was written by the device.

use hypervisor::guest_memory::GuestMemory;
use std::ptr::NonNull;

/// Guest RAM whose backing is freed on drop.
pub struct OwnedRam {
    mem: GuestMemory,
    backing: NonNull<[u64]>,
}

impl OwnedRam {
    /// `size` zeroed bytes of RAM at guest-physical `base`.
    pub fn new(base: u64, size: usize) -> Self {
        // u64 words: the backing is 8-byte aligned, like a VM's carve-out.
        let words = size.div_ceil(8);
        let backing = NonNull::from(Box::leak(vec![0u64; words].into_boxed_slice()));
        let host = backing.cast::<u8>();
        // SAFETY: `host` points to `size` bytes we allocated and only reach
        // through this `GuestMemory` until `drop` frees them, after the
        // `GuestMemory` can no longer be used (it is dropped with `self`).
        let mem = unsafe { GuestMemory::from_raw_parts(base, host, size as u64) };
        OwnedRam { mem, backing }
    }

    /// The guest memory.
    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    /// A copy of all of RAM.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.mem.size() as usize];
        self.mem
            .read(self.mem.base(), &mut out)
            .expect("RAM reads itself");
        out
    }
}

impl Drop for OwnedRam {
    fn drop(&mut self) {
        // SAFETY: `backing` came from `Box::leak` in `new` and is freed only
        // here; the `GuestMemory` pointing into it is not used after this.
        drop(unsafe { Box::from_raw(self.backing.as_ptr()) });
    }
}

/// What the guest believes its RAM holds.
pub struct Shadow {
    base: u64,
    bytes: Vec<u8>,
}

impl Shadow {
    /// The shadow of freshly zeroed `ram`.
    pub fn new(ram: &OwnedRam) -> Self {
        Shadow {
            base: ram.mem().base(),
            bytes: ram.snapshot(),
        }
    }

    /// Base guest-physical address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A guest store: writes `data` at `gpa` into both RAM and the shadow;
    /// false (and nothing written) if the range is not inside RAM.
    pub fn store(&mut self, ram: &OwnedRam, gpa: u64, data: &[u8]) -> bool {
        if ram.mem().write(gpa, data).is_err() {
            return false;
        }
        let start = (gpa - self.base) as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
        true
    }

    /// Bytes at `gpa` as the guest last stored them (zeros outside RAM).
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let start = gpa.checked_sub(self.base).map(|o| o as usize);
        if let Some(bytes) = start.and_then(|s| self.bytes.get(s..s.checked_add(len)?)) {
            return bytes.to_vec();
        }
        (0..len as u64)
            .map(|i| {
                gpa.checked_add(i)
                    .and_then(|a| a.checked_sub(self.base))
                    .and_then(|o| self.bytes.get(o as usize).copied())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Little-endian u16 at `gpa`.
    pub fn u16_at(&self, gpa: u64) -> u16 {
        let b = self.read(gpa, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    /// Guest-physical addresses whose content in `ram` differs from the
    /// shadow, as `(gpa, len)` runs.
    pub fn diff(&self, ram: &OwnedRam) -> Vec<(u64, u64)> {
        const BLOCK: usize = 256;
        let now = ram.snapshot();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (block, (old, new)) in self.bytes.chunks(BLOCK).zip(now.chunks(BLOCK)).enumerate() {
            if old == new {
                continue;
            }
            for (i, (a, b)) in old.iter().zip(new).enumerate() {
                if a != b {
                    let gpa = self.base + (block * BLOCK + i) as u64;
                    match runs.last_mut() {
                        Some((start, len)) if *start + *len == gpa => *len += 1,
                        _ => runs.push((gpa, 1)),
                    }
                }
            }
        }
        runs
    }

    /// Accepts the device's writes: the shadow becomes RAM's content.
    pub fn sync(&mut self, ram: &OwnedRam) {
        ram.mem()
            .read(self.base, &mut self.bytes)
            .expect("RAM reads itself");
    }
}

/// True if `[a, a + alen)` and `[b, b + blen)` share a byte.
pub fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    alen > 0 && blen > 0 && a < b.saturating_add(blen) && b < a.saturating_add(alen)
}
