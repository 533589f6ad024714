//! Memory for translation tables: the [`TableAlloc`] abstraction and the
//! fixed-size, index-based [`TablePool`].

use core::fmt;

use super::{ENTRIES, PAGE_SIZE};

/// One translation table: 512 eight-byte descriptors, 4 KiB.
pub type Table = [u64; ENTRIES];

/// Why a table could not be handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Every table of the pool is in use.
    Exhausted {
        /// Tables the pool holds in total.
        capacity: usize,
    },
    /// The pool has no physical address yet ([`TablePool::bind`] or
    /// [`TablePool::bind_identity`] was not called).
    Unbound,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocError::Exhausted { capacity } => {
                write!(
                    f,
                    "all {capacity} translation tables of the pool are in use"
                )
            }
            AllocError::Unbound => write!(
                f,
                "the translation-table pool has no physical address (call bind/bind_identity first)"
            ),
        }
    }
}

/// Memory that stage-2 translation tables live in.
///
/// Every table is a 4 KiB-aligned [`Table`] with a physical address (the
/// address the hardware walker uses). Tables are named by that physical
/// address, so the builder and the software walker never hold pointers.
///
/// Implementations must hand out each table once, zeroed, and keep it at
/// the same physical address until the allocator is reset or dropped.
pub trait TableAlloc {
    /// Hands out a zeroed table and returns its physical address
    /// (4 KiB aligned).
    fn alloc(&mut self) -> Result<u64, AllocError>;

    /// How many more tables [`TableAlloc::alloc`] will hand out. The builder
    /// uses it to refuse a mapping *before* changing any table.
    fn remaining(&self) -> usize;

    /// The table at physical address `pa`, if this allocator handed it out.
    fn table(&self, pa: u64) -> Option<&Table>;

    /// The table at physical address `pa` for writing, if this allocator
    /// handed it out.
    fn table_mut(&mut self, pa: u64) -> Option<&mut Table>;
}

impl<T: TableAlloc + ?Sized> TableAlloc for &mut T {
    fn alloc(&mut self) -> Result<u64, AllocError> {
        (**self).alloc()
    }

    fn remaining(&self) -> usize {
        (**self).remaining()
    }

    fn table(&self, pa: u64) -> Option<&Table> {
        (**self).table(pa)
    }

    fn table_mut(&mut self, pa: u64) -> Option<&mut Table> {
        (**self).table_mut(pa)
    }
}

/// A 4 KiB-aligned table, so that an array of them is a valid pool.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct AlignedTable(Table);

const _: () = assert!(core::mem::size_of::<AlignedTable>() == PAGE_SIZE as usize);
const _: () = assert!(core::mem::align_of::<AlignedTable>() == PAGE_SIZE as usize);

/// Why [`TablePool::bind`] refused a base address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// The base address is not 4 KiB aligned.
    Misaligned {
        /// The refused base address.
        base_pa: u64,
    },
    /// `base_pa + N * 4 KiB` does not fit in 64 bits.
    Overflow {
        /// The refused base address.
        base_pa: u64,
        /// Tables in the pool.
        capacity: usize,
    },
    /// Tables were already handed out at the old address.
    InUse {
        /// Tables in use.
        used: usize,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BindError::Misaligned { base_pa } => {
                write!(f, "table pool base {base_pa:#x} is not 4 KiB aligned")
            }
            BindError::Overflow { base_pa, capacity } => write!(
                f,
                "table pool at {base_pa:#x} with {capacity} tables overflows the address space"
            ),
            BindError::InUse { used } => write!(
                f,
                "cannot move a table pool while {used} of its tables are in use"
            ),
        }
    }
}

/// `N` translation tables in one 4 KiB-aligned array, handed out in order.
///
/// The physical address of table `i` is `base_pa + i * 4096`. On target the
/// integrator places the pool in a `static` (the type is 4 KiB aligned) and
/// calls [`TablePool::bind_identity`] once, which records the pool's own
/// address as its physical address (the hypervisor's mapping is the
/// identity); the pool must not move afterwards. Host tests use
/// [`TablePool::bind`] with a made-up physical address.
///
/// One VM needs 2 tables for 2 MiB-aligned RAM (root + one level-2 table)
/// plus one level-3 table for each 2 MiB block that is only partly mapped.
#[repr(C)]
pub struct TablePool<const N: usize> {
    // First field: with `repr(C)` the pool's address is that of table 0.
    tables: [AlignedTable; N],
    base_pa: Option<u64>,
    used: usize,
}

impl<const N: usize> TablePool<N> {
    /// An empty, unbound pool (usable in a `static` initializer).
    pub const fn new() -> Self {
        TablePool {
            tables: [AlignedTable([0; ENTRIES]); N],
            base_pa: None,
            used: 0,
        }
    }

    /// Tables the pool holds in total.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Tables handed out so far.
    pub const fn used(&self) -> usize {
        self.used
    }

    /// Physical address of table 0, once bound.
    pub const fn base_pa(&self) -> Option<u64> {
        self.base_pa
    }

    /// Gives the pool the physical address `base_pa` (4 KiB aligned).
    /// Refused while tables are in use, since their descriptors would then
    /// point to the old addresses.
    pub fn bind(&mut self, base_pa: u64) -> Result<(), BindError> {
        if self.used != 0 {
            return Err(BindError::InUse { used: self.used });
        }
        if base_pa % PAGE_SIZE != 0 {
            return Err(BindError::Misaligned { base_pa });
        }
        let bytes = (N as u64).checked_mul(PAGE_SIZE);
        if bytes.and_then(|b| base_pa.checked_add(b)).is_none() {
            return Err(BindError::Overflow {
                base_pa,
                capacity: N,
            });
        }
        self.base_pa = Some(base_pa);
        Ok(())
    }

    /// Binds the pool to its own address: correct on target, where the
    /// hypervisor runs with an identity mapping. The pool must stay where it
    /// is from now on (place it in a `static`).
    pub fn bind_identity(&mut self) -> Result<(), BindError> {
        let addr = self.tables.as_ptr() as usize as u64;
        self.bind(addr)
    }

    /// Zeroes every table and makes the whole pool available again (VM
    /// teardown). The caller must have stopped the VM and invalidated its
    /// TLB entries (TLBI VMALLS12E1IS for its VMID) before reusing the pool.
    pub fn reset(&mut self) {
        for t in &mut self.tables[..self.used] {
            t.0 = [0; ENTRIES];
        }
        self.used = 0;
    }

    fn index_of(&self, pa: u64) -> Option<usize> {
        let base = self.base_pa?;
        let off = pa.checked_sub(base)?;
        if off % PAGE_SIZE != 0 {
            return None;
        }
        let idx = usize::try_from(off / PAGE_SIZE).ok()?;
        (idx < self.used).then_some(idx)
    }
}

impl<const N: usize> Default for TablePool<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TableAlloc for TablePool<N> {
    fn alloc(&mut self) -> Result<u64, AllocError> {
        let base = self.base_pa.ok_or(AllocError::Unbound)?;
        if self.used >= N {
            return Err(AllocError::Exhausted { capacity: N });
        }
        let idx = self.used;
        self.tables[idx].0 = [0; ENTRIES];
        self.used += 1;
        // Cannot overflow: `bind` checked base + N * 4 KiB.
        Ok(base + idx as u64 * PAGE_SIZE)
    }

    fn remaining(&self) -> usize {
        if self.base_pa.is_none() {
            0
        } else {
            N - self.used
        }
    }

    fn table(&self, pa: u64) -> Option<&Table> {
        let idx = self.index_of(pa)?;
        Some(&self.tables[idx].0)
    }

    fn table_mut(&mut self, pa: u64) -> Option<&mut Table> {
        let idx = self.index_of(pa)?;
        Some(&mut self.tables[idx].0)
    }
}

impl<const N: usize> fmt::Debug for TablePool<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TablePool");
        d.field("capacity", &N).field("used", &self.used);
        match self.base_pa {
            Some(b) => d.field("base_pa", &format_args!("{b:#x}")),
            None => d.field("base_pa", &"unbound"),
        };
        d.finish()
    }
}
