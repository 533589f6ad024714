//! Stage-2 translation tables, built per VM.
//!
//! Every VM sees the same guest-physical (IPA) layout; its stage-2 tables
//! map guest RAM 1:1 onto that VM's carve-out of host RAM and leave
//! everything else — GIC, UART, virtio-mmio, the holes below and above RAM —
//! *unmapped*, so every device access traps to EL2 as a stage-2 data abort
//! and is emulated there.
//!
//! # Translation regime (checked against the Arm ARM, VMSAv8-64)
//! * **Granule 4 KiB** (VTCR_EL2.TG0 = 0b00).
//! * **IPA size 39 bits, T0SZ = 25.** 512 GiB of guest-physical space is far
//!   more than the guest layout needs (RAM ends below 4 GiB).
//! * **Start level 1, SL0 = 0b01.** For the 4 KiB granule the start level is
//!   `2 - SL0`. A level-1 table resolves IPA\[38:30\] (1 GiB per entry), and
//!   the Arm ARM's start-table size check gives `39 - (2 * 9 + 12) = 9`
//!   index bits: exactly one 512-entry table, no concatenation (the check
//!   allows 1..=13 bits; more than 9 would need concatenated tables). The
//!   root therefore needs only 4 KiB alignment (VTTBR_EL2.BADDR\[11:1\] = 0).
//!   SL0 = 0b10 (start at level 0) would need PAMax >= 44 and buys nothing.
//! * **Blocks at level 2 only.** A range is mapped with 2 MiB level-2 block
//!   descriptors wherever IPA and PA are both 2 MiB aligned and 2 MiB remain,
//!   and with 4 KiB level-3 pages elsewhere. 1 GiB level-1 blocks are never
//!   used (guest RAM is smaller than 1 GiB).
//! * **PS (output size).** The Arm ARM makes an IPA size larger than the
//!   implemented PA size (ID_AA64MMFR0_EL1.PARange) CONSTRAINED UNPREDICTABLE
//!   (it may fault), so a PARange below 40 bits (encodings 0 and 1) is
//!   refused: it cannot hold a 39-bit IPA space. PS is then the *smallest*
//!   encoding that covers both every output address the tables use
//!   (mapped PAs and the tables themselves) **and** the 39-bit IPA size,
//!   capped at PARange: on QEMU `virt` with cortex-a72 (PARange = 4, 44 bits)
//!   that is **PS = 0b010 (40 bits)**. Covering the IPA size as well is
//!   deliberate: QEMU 7.0 up to 7.2 (commit 49ba115bb74, reverted for 8.0)
//!   faults every stage-2 walk whose IPA size exceeds min(PS, PARange), and
//!   this project runs QEMU 7.2 — "PS = what the carve-outs need" (32 bits)
//!   would fault every guest access there. A smaller-than-PARange PS keeps
//!   the hardware check that stray output addresses (above 1 TiB) raise an
//!   Address size fault instead of reaching memory. Output addresses are
//!   limited to 48 bits whatever PARange says (4 KiB granule without
//!   FEAT_LPA2).
//! * Walks are inner-shareable, write-back cacheable (SH0 = 0b11,
//!   IRGN0 = ORGN0 = 0b01), 8-bit VMIDs (VS = 0), no hardware AF/dirty
//!   management. See [`hal::stage2::vtcr_el2`].
//!
//! # Descriptors
//! Normal memory (guest RAM): MemAttr = 0b1111 (outer and inner write-back),
//! SH = inner shareable, AF = 1, S2AP = read/write (or read-only), XN\[1\] set
//! when not executable. `MemKind::Device` (MemAttr Device-nGnRE, XN) exists
//! for completeness; the hypervisor does not use it because devices stay
//! unmapped and trap.
//!
//! # Shape of the API
//! [`Stage2Builder::new`] takes a [`TableAlloc`] (normally a
//! [`TablePool`] in a `static`) and the machine's PARange;
//! [`Stage2Builder::map`] adds ranges; [`Stage2Builder::finish`] yields
//! [`Stage2Tables`], the only type that can produce VTTBR_EL2 and VTCR_EL2,
//! so a half-built table can never be activated. [`Stage2Tables::walk`] /
//! [`Stage2Tables::translate`] are a software table walker that follows the
//! same rules as the hardware (for host tests and in-QEMU cross-checks).
//! [`build_vm_tables`] builds the standard per-VM layout in one call, and
//! [`VmidAllocator`] hands out VMIDs.
//!
//! Before the first guest entry the integrator must make the table writes
//! visible to the walker (DSB ISHST) and, when reusing a VMID or table pool,
//! invalidate stale entries (TLBI VMALLS12E1IS for that VMID; DSB ISH; ISB).
//!
//! ```
//! use hypervisor::stage2::{MemKind, Stage2Builder, TablePool, Vmid};
//! let mut pool: Box<TablePool<4>> = Box::default();
//! pool.bind(0x7000_0000).unwrap(); // made-up PA; on target: bind_identity()
//! let mut b = Stage2Builder::new(&mut *pool, 4).unwrap(); // PARange 4 = 44 bits
//! b.map(0x4000_0000, 0x6000_0000, 0x1000_0000, MemKind::RAM).unwrap();
//! let tables = b.finish().unwrap();
//! let t = tables.translate(0x4000_1234).unwrap();
//! assert_eq!(t.pa, 0x6000_1234);
//! assert_eq!(t.level, 2); // a 2 MiB block
//! assert!(tables.translate(0x0900_0000).is_none()); // the UART traps
//! assert_eq!(tables.vtcr() & 0x3f, 25); // T0SZ
//! assert_eq!(tables.vttbr(Vmid::new(1).unwrap()), (1 << 48) | 0x7000_0000);
//! ```

mod error;
mod pool;
mod vmid;

#[cfg(test)]
mod tests;

use core::fmt;

use hal::stage2::{
    MEMATTR_DEVICE_NGNRE, MEMATTR_MASK, MEMATTR_NORMAL_WB, OA_MASK, S2Desc, parange_bits, vtcr_el2,
    vttbr_el2,
};

use crate::platform;

pub use error::{Stage2Error, VmStage2Error, VmStage2ErrorKind, WalkFault};
pub use pool::{AllocError, BindError, Table, TableAlloc, TablePool};
pub use vmid::{Vmid, VmidAllocator, VmidError};

/// Bytes in a page (and in a translation table).
pub const PAGE_SIZE: u64 = 0x1000;
/// Bytes mapped by one level-2 block descriptor.
pub const BLOCK_SIZE: u64 = 0x20_0000;
/// Descriptors in one table.
pub const ENTRIES: usize = 512;
/// Size of the guest-physical (IPA) space in bits.
pub const IPA_BITS: u32 = 39;
/// VTCR_EL2.T0SZ for a 39-bit IPA space.
pub const T0SZ: u64 = 64 - IPA_BITS as u64;
/// VTCR_EL2.SL0 for the 4 KiB granule: 0b01 = start at level 1.
pub const SL0: u64 = 1;
/// The level the walk starts at (one 512-entry level-1 root table).
pub const START_LEVEL: u8 = 1;
/// Smallest ID_AA64MMFR0_EL1.PARange accepted: 0b010 = 40 bits, the first
/// that holds a 39-bit IPA space.
pub const MIN_PARANGE: u64 = 2;
/// Most output-address bits a 4 KiB-granule descriptor can hold without
/// FEAT_LPA2.
pub const MAX_OA_BITS: u32 = 48;
/// Most distinct ranges one VM's tables may hold.
pub const MAX_REGIONS: usize = 16;

/// Stage-2 access permission of normal memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// S2AP = 0b01: reads allowed, writes fault.
    ReadOnly,
    /// S2AP = 0b11: reads and writes allowed.
    ReadWrite,
}

/// What a mapped range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal, write-back cacheable, inner-shareable memory.
    Normal {
        /// Read-only or read/write.
        access: Access,
        /// False sets XN (instruction fetches fault).
        exec: bool,
    },
    /// Device-nGnRE, read/write, never executable. Supported but unused:
    /// the hypervisor leaves device ranges unmapped so that they trap.
    Device,
}

impl MemKind {
    /// Guest RAM: normal memory, read/write/execute.
    pub const RAM: MemKind = MemKind::Normal {
        access: Access::ReadWrite,
        exec: true,
    };
}

/// One range added with [`Stage2Builder::map`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First guest-physical address.
    pub ipa: u64,
    /// First host-physical address.
    pub pa: u64,
    /// Size in bytes (a multiple of 4 KiB).
    pub size: u64,
    /// Memory type and permissions.
    pub kind: MemKind,
}

const EMPTY_REGION: Region = Region {
    ipa: 0,
    pa: 0,
    size: 0,
    kind: MemKind::Device,
};

/// Stage-2 permissions of a translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Perms {
    /// S2AP\[0\].
    pub read: bool,
    /// S2AP\[1\].
    pub write: bool,
    /// XN\[1:0\] = 0b00: executable at EL1 and EL0.
    pub exec: bool,
}

/// A successful software walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Output (host-physical) address of the walked IPA.
    pub pa: u64,
    /// Level of the leaf: 1 (1 GiB block), 2 (2 MiB block) or 3 (4 KiB page).
    pub level: u8,
    /// Bytes covered by the leaf descriptor.
    pub size: u64,
    /// Access permissions.
    pub perms: S2Perms,
    /// Stage-2 MemAttr\[3:0\] (0b1111 = normal write-back).
    pub memattr: u8,
    /// SH\[1:0\] (0b11 = inner shareable).
    pub shareability: u8,
}

impl Translation {
    /// The [`MemKind`] this translation corresponds to, if it is one the
    /// builder produces.
    pub fn kind(&self) -> Option<MemKind> {
        let normal = (MEMATTR_NORMAL_WB >> 2) as u8;
        let device = (MEMATTR_DEVICE_NGNRE >> 2) as u8;
        match self.memattr {
            m if m == normal && self.perms.read => Some(MemKind::Normal {
                access: if self.perms.write {
                    Access::ReadWrite
                } else {
                    Access::ReadOnly
                },
                exec: self.perms.exec,
            }),
            m if m == device && self.perms.read && self.perms.write && !self.perms.exec => {
                Some(MemKind::Device)
            }
            _ => None,
        }
    }
}

/// Checks PARange and returns the usable output-address bits.
fn check_parange(parange: u64) -> Result<u32, Stage2Error> {
    let pa_bits = parange_bits(parange).ok_or(Stage2Error::ParangeReserved { parange })?;
    if pa_bits <= IPA_BITS {
        return Err(Stage2Error::ParangeTooSmall { parange, pa_bits });
    }
    Ok(pa_bits.min(MAX_OA_BITS))
}

/// Bits needed to express every address below `end` (exclusive).
fn bits_for(end: u64) -> u32 {
    if end <= 1 {
        0
    } else {
        64 - (end - 1).leading_zeros()
    }
}

/// Smallest PS encoding that covers `bits`, or `None` if none does.
fn ps_for(bits: u32) -> Option<u64> {
    (0..=6u64).find(|&e| parange_bits(e).is_some_and(|b| b >= bits))
}

/// Index of `ipa` in a table at `level`.
const fn index(ipa: u64, level: u8) -> usize {
    ((ipa >> (12 + 9 * (3 - level as u64))) & (ENTRIES as u64 - 1)) as usize
}

/// Bytes one descriptor maps at `level`.
const fn level_size(level: u8) -> u64 {
    1u64 << (12 + 9 * (3 - level as u64))
}

const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE: u64 = 1 << 1;
const DESC_AF: u64 = 1 << 10;
const DESC_XN1: u64 = 1 << 54;
const DESC_XN0: u64 = 1 << 53;

fn table_desc(pa: u64) -> u64 {
    (S2Desc::VALID | S2Desc::TABLE_OR_PAGE).bits() | (pa & OA_MASK)
}

fn leaf_desc(pa: u64, level: u8, kind: MemKind) -> u64 {
    let mut d = S2Desc::VALID | S2Desc::AF;
    if level == 3 {
        d |= S2Desc::TABLE_OR_PAGE;
    }
    let memattr = match kind {
        MemKind::Normal { access, exec } => {
            d |= S2Desc::S2AP_READ | S2Desc::INNER_SHAREABLE;
            if access == Access::ReadWrite {
                d |= S2Desc::S2AP_WRITE;
            }
            if !exec {
                d |= S2Desc::XN;
            }
            MEMATTR_NORMAL_WB
        }
        MemKind::Device => {
            d |= S2Desc::S2AP_READ | S2Desc::S2AP_WRITE | S2Desc::XN;
            MEMATTR_DEVICE_NGNRE
        }
    };
    d.bits() | memattr | (pa & OA_MASK & !(level_size(level) - 1))
}

/// Splits a range into (ipa, pa, level) leaves: 2 MiB level-2 blocks where
/// both addresses are 2 MiB aligned and 2 MiB remain, 4 KiB pages otherwise.
struct Leaves {
    ipa: u64,
    pa: u64,
    left: u64,
}

impl Iterator for Leaves {
    type Item = (u64, u64, u8);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let (level, step) =
            if self.ipa % BLOCK_SIZE == 0 && self.pa % BLOCK_SIZE == 0 && self.left >= BLOCK_SIZE {
                (2, BLOCK_SIZE)
            } else {
                (3, PAGE_SIZE)
            };
        let item = (self.ipa, self.pa, level);
        // The range was checked not to wrap, so these cannot overflow.
        self.ipa += step;
        self.pa += step;
        self.left -= step;
        Some(item)
    }
}

fn overlaps(a: u64, a_size: u64, b: u64, b_size: u64) -> bool {
    a < b.saturating_add(b_size) && b < a.saturating_add(a_size)
}

/// Walks the tables rooted at `root` like the hardware would.
fn walk<A: TableAlloc>(
    alloc: &A,
    root: u64,
    oa_bits: u32,
    ipa: u64,
) -> Result<Translation, WalkFault> {
    if ipa >> IPA_BITS != 0 {
        return Err(WalkFault::IpaOutOfRange { ipa });
    }
    let oa_limit = 1u64 << oa_bits;
    let mut table_pa = root;
    let mut level = START_LEVEL;
    loop {
        let table = alloc.table(table_pa).ok_or(WalkFault::MissingTable {
            level,
            pa: table_pa,
        })?;
        let desc = table[index(ipa, level)];
        if desc & DESC_VALID == 0 {
            return Err(WalkFault::Translation { level });
        }
        let is_table_or_page = desc & DESC_TABLE != 0;
        if level < 3 && is_table_or_page {
            let next = desc & OA_MASK;
            if next >= oa_limit {
                return Err(WalkFault::AddressSize { level });
            }
            table_pa = next;
            level += 1;
            continue;
        }
        // Block (levels 1-2) or page (level 3); 0b01 at level 3 is reserved.
        if level == 3 && !is_table_or_page {
            return Err(WalkFault::Translation { level });
        }
        let size = level_size(level);
        let base = desc & OA_MASK & !(size - 1);
        if base >= oa_limit {
            return Err(WalkFault::AddressSize { level });
        }
        if desc & DESC_AF == 0 {
            return Err(WalkFault::AccessFlag { level });
        }
        return Ok(Translation {
            pa: base | (ipa & (size - 1)),
            level,
            size,
            perms: S2Perms {
                read: desc & S2Desc::S2AP_READ.bits() != 0,
                write: desc & S2Desc::S2AP_WRITE.bits() != 0,
                exec: desc & (DESC_XN1 | DESC_XN0) == 0,
            },
            memattr: ((desc & MEMATTR_MASK) >> 2) as u8,
            shareability: ((desc >> 8) & 3) as u8,
        });
    }
}

/// Stage-2 tables under construction. Cannot be activated: only
/// [`Stage2Builder::finish`] yields something that produces VTTBR/VTCR.
pub struct Stage2Builder<A: TableAlloc> {
    alloc: A,
    root: u64,
    parange: u64,
    oa_bits: u32,
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    tables: usize,
    tables_end: u64,
    poisoned: bool,
}

impl<A: TableAlloc> Stage2Builder<A> {
    /// Starts empty tables for a machine whose ID_AA64MMFR0_EL1.PARange is
    /// `parange` (the raw 4-bit field), allocating the level-1 root.
    pub fn new(mut alloc: A, parange: u64) -> Result<Self, Stage2Error> {
        let oa_bits = check_parange(parange)?;
        let root = alloc.alloc().map_err(Stage2Error::Alloc)?;
        let mut b = Stage2Builder {
            alloc,
            root,
            parange,
            oa_bits,
            regions: [EMPTY_REGION; MAX_REGIONS],
            nregions: 0,
            tables: 1,
            tables_end: 0,
            poisoned: false,
        };
        b.note_table(root)?;
        Ok(b)
    }

    /// Records a freshly allocated table and checks the walker can reach it.
    fn note_table(&mut self, pa: u64) -> Result<(), Stage2Error> {
        let end = pa.checked_add(PAGE_SIZE);
        match end {
            Some(end) if pa % PAGE_SIZE == 0 && end <= 1u64 << self.oa_bits => {
                self.tables_end = self.tables_end.max(end);
                Ok(())
            }
            _ => Err(Stage2Error::BadTableAddress {
                pa,
                pa_bits: self.oa_bits,
            }),
        }
    }

    /// Ranges mapped so far.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions]
    }

    /// Maps `size` bytes of guest-physical `ipa` onto host-physical `pa`.
    ///
    /// All-or-nothing: on error no table is changed (except for
    /// [`Stage2Error::Alloc`]/[`Stage2Error::MissingTable`] from a broken
    /// allocator, which poison the builder).
    pub fn map(&mut self, ipa: u64, pa: u64, size: u64, kind: MemKind) -> Result<(), Stage2Error> {
        if self.poisoned {
            return Err(Stage2Error::Poisoned);
        }
        self.check(ipa, pa, size)?;
        let needed = self.tables_needed(ipa, pa, size)?;
        let available = self.alloc.remaining();
        if needed > available {
            return Err(Stage2Error::OutOfTables {
                ipa,
                size,
                needed,
                available,
            });
        }
        if let Err(e) = self.apply(ipa, pa, size, kind) {
            self.poisoned = true;
            return Err(e);
        }
        self.regions[self.nregions] = Region {
            ipa,
            pa,
            size,
            kind,
        };
        self.nregions += 1;
        Ok(())
    }

    /// Validates a mapping request without touching any table.
    fn check(&self, ipa: u64, pa: u64, size: u64) -> Result<(), Stage2Error> {
        if size == 0 {
            return Err(Stage2Error::EmptyRange { ipa });
        }
        if (ipa | pa | size) % PAGE_SIZE != 0 {
            return Err(Stage2Error::Misaligned { ipa, pa, size });
        }
        match ipa.checked_add(size) {
            Some(end) if end <= 1u64 << IPA_BITS => {}
            _ => return Err(Stage2Error::IpaOutOfRange { ipa, size }),
        }
        match pa.checked_add(size) {
            Some(end) if end <= 1u64 << self.oa_bits => {}
            _ => {
                return Err(Stage2Error::PaOutOfRange {
                    pa,
                    size,
                    pa_bits: self.oa_bits,
                });
            }
        }
        for r in self.regions() {
            if overlaps(ipa, size, r.ipa, r.size) {
                return Err(Stage2Error::IpaOverlap {
                    ipa,
                    size,
                    other_ipa: r.ipa,
                    other_size: r.size,
                });
            }
            if overlaps(pa, size, r.pa, r.size) {
                return Err(Stage2Error::PaOverlap {
                    pa,
                    size,
                    other_pa: r.pa,
                    other_size: r.size,
                });
            }
        }
        if self.nregions == MAX_REGIONS {
            return Err(Stage2Error::TooManyRegions);
        }
        Ok(())
    }

    /// The next-level table a valid table descriptor points to, if any.
    fn child(&self, table_pa: u64, idx: usize) -> Result<Option<u64>, Stage2Error> {
        let t = self
            .alloc
            .table(table_pa)
            .ok_or(Stage2Error::MissingTable { pa: table_pa })?;
        let d = t[idx];
        Ok((d & (DESC_VALID | DESC_TABLE) == (DESC_VALID | DESC_TABLE)).then_some(d & OA_MASK))
    }

    /// Counts the tables a mapping would allocate (read-only).
    fn tables_needed(&self, ipa: u64, pa: u64, size: u64) -> Result<usize, Stage2Error> {
        let mut needed = 0;
        let mut last_new_l2: Option<usize> = None;
        let mut last_new_l3: Option<(usize, usize)> = None;
        for (a, _, level) in (Leaves {
            ipa,
            pa,
            left: size,
        }) {
            let i1 = index(a, 1);
            let l2 = self.child(self.root, i1)?;
            if l2.is_none() && last_new_l2 != Some(i1) {
                needed += 1;
                last_new_l2 = Some(i1);
            }
            if level == 3 {
                let i2 = index(a, 2);
                let l3 = match l2 {
                    Some(t) => self.child(t, i2)?,
                    None => None,
                };
                if l3.is_none() && last_new_l3 != Some((i1, i2)) {
                    needed += 1;
                    last_new_l3 = Some((i1, i2));
                }
            }
        }
        Ok(needed)
    }

    /// Returns the table under `parent[idx]`, creating it if the entry is
    /// invalid.
    fn child_or_new(&mut self, parent: u64, idx: usize, ipa: u64) -> Result<u64, Stage2Error> {
        let t = self
            .alloc
            .table(parent)
            .ok_or(Stage2Error::MissingTable { pa: parent })?;
        let d = t[idx];
        if d & DESC_VALID != 0 {
            return if d & DESC_TABLE != 0 {
                Ok(d & OA_MASK)
            } else {
                Err(Stage2Error::Conflict { ipa })
            };
        }
        let new = self.alloc.alloc().map_err(Stage2Error::Alloc)?;
        self.note_table(new)?;
        self.tables += 1;
        let t = self
            .alloc
            .table_mut(parent)
            .ok_or(Stage2Error::MissingTable { pa: parent })?;
        t[idx] = table_desc(new);
        Ok(new)
    }

    fn set_leaf(&mut self, table: u64, ipa: u64, level: u8, desc: u64) -> Result<(), Stage2Error> {
        let t = self
            .alloc
            .table_mut(table)
            .ok_or(Stage2Error::MissingTable { pa: table })?;
        let e = &mut t[index(ipa, level)];
        if *e & DESC_VALID != 0 {
            return Err(Stage2Error::Conflict { ipa });
        }
        *e = desc;
        Ok(())
    }

    fn apply(&mut self, ipa: u64, pa: u64, size: u64, kind: MemKind) -> Result<(), Stage2Error> {
        for (a, p, level) in (Leaves {
            ipa,
            pa,
            left: size,
        }) {
            let l2 = self.child_or_new(self.root, index(a, 1), a)?;
            if level == 2 {
                self.set_leaf(l2, a, 2, leaf_desc(p, 2, kind))?;
            } else {
                let l3 = self.child_or_new(l2, index(a, 2), a)?;
                self.set_leaf(l3, a, 3, leaf_desc(p, 3, kind))?;
            }
        }
        Ok(())
    }

    /// Completes the tables and computes VTCR_EL2.PS (see the module docs).
    pub fn finish(self) -> Result<Stage2Tables<A>, Stage2Error> {
        if self.poisoned {
            return Err(Stage2Error::Poisoned);
        }
        let oa_end = self
            .regions()
            .iter()
            .map(|r| r.pa + r.size)
            .fold(self.tables_end, u64::max);
        let needed_bits = bits_for(oa_end).max(IPA_BITS);
        let ps = match ps_for(needed_bits) {
            Some(ps) if ps <= self.parange => ps,
            // Unreachable after the checks in `new`/`map`; never panic.
            _ => {
                return Err(Stage2Error::PaOutOfRange {
                    pa: 0,
                    size: oa_end,
                    pa_bits: self.oa_bits,
                });
            }
        };
        let ps_bits = parange_bits(ps).unwrap_or(MAX_OA_BITS).min(MAX_OA_BITS);
        Ok(Stage2Tables {
            alloc: self.alloc,
            root: self.root,
            ps,
            ps_bits,
            regions: self.regions,
            nregions: self.nregions,
            tables: self.tables,
        })
    }
}

impl<A: TableAlloc> fmt::Debug for Stage2Builder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage2Builder")
            .field("root", &format_args!("{:#x}", self.root))
            .field("regions", &self.regions())
            .field("tables", &self.tables)
            .finish()
    }
}

/// Complete stage-2 tables for one VM: the only source of VTTBR_EL2 and
/// VTCR_EL2 values.
pub struct Stage2Tables<A: TableAlloc> {
    alloc: A,
    root: u64,
    ps: u64,
    ps_bits: u32,
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    tables: usize,
}

impl<A: TableAlloc> Stage2Tables<A> {
    /// VTTBR_EL2 for running this VM as `vmid`.
    pub fn vttbr(&self, vmid: Vmid) -> u64 {
        vttbr_el2(vmid.get(), self.root)
    }

    /// VTCR_EL2: 4 KiB granule, T0SZ = 25, SL0 = 1, PS as computed by
    /// [`Stage2Builder::finish`], write-back inner-shareable walks, 8-bit
    /// VMID. Write it together with VTTBR_EL2 when switching to this VM.
    pub fn vtcr(&self) -> u64 {
        vtcr_el2(T0SZ, SL0, self.ps)
    }

    /// The PS encoding chosen (VTCR_EL2\[18:16\]).
    pub fn ps(&self) -> u64 {
        self.ps
    }

    /// Physical address of the level-1 root table.
    pub fn root_pa(&self) -> u64 {
        self.root
    }

    /// Translation tables in use (root included).
    pub fn tables_used(&self) -> usize {
        self.tables
    }

    /// The ranges mapped.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions]
    }

    /// Walks the tables for `ipa` the way the hardware would (start level 1,
    /// output addresses checked against PS, access flag checked).
    pub fn walk(&self, ipa: u64) -> Result<Translation, WalkFault> {
        walk(&self.alloc, self.root, self.ps_bits, ipa)
    }

    /// [`Stage2Tables::walk`] without the fault reason.
    pub fn translate(&self, ipa: u64) -> Option<Translation> {
        self.walk(ipa).ok()
    }

    /// Gives the table memory back (VM teardown). The VM must no longer run
    /// and its VMID must be invalidated before the memory is reused.
    pub fn into_alloc(self) -> A {
        self.alloc
    }

    /// Splits finished tables into their memory and a [`Stage2Handle`] that
    /// can still activate and walk them, for owners that keep the table
    /// memory themselves (a VM slot holding its pool).
    pub fn into_parts(self) -> (A, Stage2Handle) {
        let handle = Stage2Handle {
            root: self.root,
            ps: self.ps,
            ps_bits: self.ps_bits,
        };
        (self.alloc, handle)
    }
}

/// The registers of finished stage-2 tables, detached from their memory
/// ([`Stage2Tables::into_parts`]); only obtainable from complete tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Handle {
    root: u64,
    ps: u64,
    ps_bits: u32,
}

impl Stage2Handle {
    /// VTTBR_EL2 for running the VM as `vmid`.
    pub fn vttbr(&self, vmid: Vmid) -> u64 {
        vttbr_el2(vmid.get(), self.root)
    }

    /// VTCR_EL2 (see [`Stage2Tables::vtcr`]).
    pub fn vtcr(&self) -> u64 {
        vtcr_el2(T0SZ, SL0, self.ps)
    }

    /// Walks the tables, which must still live in `alloc`.
    pub fn walk<A: TableAlloc>(&self, alloc: &A, ipa: u64) -> Result<Translation, WalkFault> {
        walk(alloc, self.root, self.ps_bits, ipa)
    }
}

impl<A: TableAlloc> fmt::Debug for Stage2Tables<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage2Tables")
            .field("root", &format_args!("{:#x}", self.root))
            .field("ps", &self.ps)
            .field("regions", &self.regions())
            .field("tables", &self.tables)
            .finish()
    }
}

/// Host-physical base of VM `vm`'s carve-out (its RAM starts there), or
/// `None` if `vm >= platform::MAX_VMS`.
pub const fn vm_ram_pa(vm: usize) -> Option<u64> {
    if vm < platform::MAX_VMS {
        Some(platform::HOST_VM_BASE + vm as u64 * platform::HOST_VM_STRIDE)
    } else {
        None
    }
}

/// Builds the standard tables of VM `vm`: guest RAM
/// `[platform::RAM_BASE, +ram_size)` mapped read/write/execute onto the
/// start of the VM's carve-out ([`vm_ram_pa`]); nothing else is mapped.
pub fn build_vm_tables<A: TableAlloc>(
    alloc: A,
    parange: u64,
    vm: usize,
    ram_size: u64,
) -> Result<Stage2Tables<A>, VmStage2Error> {
    let err = |kind| VmStage2Error { vm, kind };
    let pa = vm_ram_pa(vm).ok_or(err(VmStage2ErrorKind::NoSuchVm))?;
    if ram_size > platform::GUEST_RAM_SIZE {
        return Err(err(VmStage2ErrorKind::RamTooLarge {
            size: ram_size,
            max: platform::GUEST_RAM_SIZE,
        }));
    }
    let s2 = |e| err(VmStage2ErrorKind::Stage2(e));
    let mut b = Stage2Builder::new(alloc, parange).map_err(s2)?;
    b.map(platform::RAM_BASE, pa, ram_size, MemKind::RAM)
        .map_err(s2)?;
    b.finish().map_err(s2)
}
