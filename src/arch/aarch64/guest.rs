//! Creating VMs on the real machine and running their vCPUs.
//!
//! A [`GuestVm`] ties the host-tested [`Vm`] to what only exists on target:
//! the VM's carve-out of physical RAM (its [`GuestMemory`] backing), its
//! stage-2 tables in a per-VM static table pool, and its VMID. Holding the
//! pool's lock for the VM's lifetime is what makes VM index `n` (and so its
//! carve-out) exclusively owned.

use core::ptr::NonNull;

use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, Readable};
use spin::{Mutex, MutexGuard};

use crate::guest_memory::{CARVE_OUT_USED, GuestMemory, carve_out_needs_zeroing};
use crate::platform::{HOST_CARVE_OUT_MARKS, HOST_VM_BASE, HOST_VM_STRIDE, MAX_VMS, RAM_BASE};
use crate::stage2::{Stage2Handle, TablePool, VmStage2Error, Vmid, build_vm_tables};
use crate::trap::{Exit, decode_sync};
use crate::vm::{ExitOutcome, Vm};

use super::vcpu;
use super::world_switch::{ExitKind, enter_guest};

/// Stage-2 tables per VM: root, one level-2 table and slack for level-3
/// tables at unaligned edges.
pub const S2_TABLES_PER_VM: usize = 8;

/// A VM's stage-2 table pool. Each slot's pool is only used while the slot
/// is locked, so it can be handed to the builder by reference.
pub type Pool = TablePool<S2_TABLES_PER_VM>;

/// One VM slot: the VM (tens of kilobytes, never moved), its stage-2 table
/// pool and, while it exists, its tables' registers and VMID.
pub struct VmSlot {
    /// The VM's logic state.
    pub vm: Vm,
    pool: Pool,
    active: Option<ActiveStage2>,
}

/// The stage-2 registers of a built VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ActiveStage2 {
    handle: Stage2Handle,
    vmid: Vmid,
}

static SLOTS: [Mutex<VmSlot>; MAX_VMS] = [const {
    Mutex::new(VmSlot {
        vm: Vm::empty(),
        pool: TablePool::new(),
        active: None,
    })
}; MAX_VMS];

/// Locks VM slot `id` (exclusive use of the VM, its carve-out and tables).
pub fn slot(id: usize) -> Option<MutexGuard<'static, VmSlot>> {
    SLOTS.get(id).map(|s| s.lock())
}

/// Locks VM slot `id` where the lock must be free, and panics naming the
/// slot if it is not: the run loops use this, because once the loops have
/// started a VM's slot is locked only by the pCPU the VM is placed on, one
/// lock at a time, so a held lock there is a bug (another pCPU touching the
/// VM, or this pCPU re-entering it) that must not turn into a silent hang
/// or a wait behind a running guest. `None` if there is no slot `id`.
pub fn slot_uncontended(id: usize) -> Option<MutexGuard<'static, VmSlot>> {
    SLOTS.get(id).map(|s| {
        s.try_lock().unwrap_or_else(|| {
            panic!("VM slot {id} is locked already: a VM is run only by its own pCPU")
        })
    })
}

/// Why a VM could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The VM index is out of range.
    NoSuchVm(usize),
    /// A VM with this index exists already.
    InUse(usize),
    /// The stage-2 tables could not be built.
    Stage2(VmStage2Error),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CreateError::NoSuchVm(id) => write!(f, "VM {id}: no such VM slot (at most {MAX_VMS})"),
            CreateError::InUse(id) => write!(f, "VM {id}: already exists"),
            CreateError::Stage2(e) => write!(f, "{e}"),
        }
    }
}

/// Host-physical address of VM `id`'s carve-out.
pub fn carve_out(id: usize) -> u64 {
    HOST_VM_BASE + id as u64 * HOST_VM_STRIDE
}

/// ID_AA64MMFR0_EL1.PARange of this machine.
pub fn parange() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange)
}

impl VmSlot {
    /// (Re)creates VM `id` in this slot with `ram_size` bytes of zeroed RAM
    /// at guest-physical [`RAM_BASE`] and `nr_vcpus` vCPUs (all off). The
    /// slot must be the one for `id` (see [`slot`]). The first VM in the
    /// carve-out since the machine started does not zero it: it is zero
    /// already ([`carve_out_needs_zeroing`]).
    pub fn create(&mut self, id: usize, ram_size: u64, nr_vcpus: usize) -> Result<(), CreateError> {
        if id >= MAX_VMS {
            return Err(CreateError::NoSuchVm(id));
        }
        self.active = None;
        self.pool.reset();
        if self.pool.bind_identity().is_err() {
            return Err(CreateError::InUse(id));
        }
        let tables = build_vm_tables(&mut self.pool, parange(), id, ram_size)
            .map_err(CreateError::Stage2)?;
        let vmid = Vmid::new(id as u8 + 1).ok_or(CreateError::NoSuchVm(id))?;
        let (_, handle) = tables.into_parts();
        let active = ActiveStage2 { handle, vmid };
        let host = carve_out(id);
        // SAFETY: valid for 'static, and exclusively VM `id`'s: only the
        // holder of slot `id`'s lock (us) creates VM `id`.
        // The carve-out `[host, host + ram_size)` is RAM the platform memory
        // plan reserves for VM `id` (ram_size was checked against it by
        // build_vm_tables) and is identity-mapped at EL2.
        let mem = unsafe {
            GuestMemory::from_raw_parts(
                RAM_BASE,
                NonNull::new_unchecked(host as usize as *mut u8),
                ram_size,
            )
        };
        // The first VM in this carve-out since the machine started finds
        // it zero already; the mark is set before anything is written.
        let mark = (HOST_CARVE_OUT_MARKS + 8 * id as u64) as usize as *mut u64;
        // SAFETY: mark `id` is an aligned word of RAM reserved by the
        // platform memory plan for this slot, identity-mapped at EL2, and
        // only touched by the holder of slot `id`'s lock (us).
        let used = unsafe { mark.read_volatile() };
        // SAFETY: as above.
        unsafe { mark.write_volatile(CARVE_OUT_USED) };
        if carve_out_needs_zeroing(used) {
            zero_guest_range(&mem, RAM_BASE, ram_size);
        }
        self.vm.reset(id, mem, nr_vcpus);
        self.active = Some(active);
        // Stale translations of a previous VM with this VMID must go.
        self.activate();
        vcpu::flush_guest_tlb();
        Ok(())
    }

    /// Stage-2 tables taken from this slot's pool (a restart must leave
    /// the count unchanged).
    pub fn stage2_tables_used(&self) -> usize {
        self.pool.used()
    }

    /// The VM's VMID, once created.
    pub fn vmid(&self) -> Option<Vmid> {
        self.active.map(|a| a.vmid)
    }

    /// Software walk of the VM's stage-2 tables (for tests and reports).
    pub fn translate(&self, ipa: u64) -> Option<crate::stage2::Translation> {
        self.active?.handle.walk(&self.pool, ipa).ok()
    }

    /// Copies `bytes` into guest RAM at `gpa` and makes them visible to a
    /// guest running with its MMU and caches off: the data cache lines are
    /// cleaned to the point of coherency and the instruction cache is
    /// invalidated.
    pub fn load_image(&self, gpa: u64, bytes: &[u8]) -> Result<(), crate::guest_memory::MemError> {
        self.vm.mem.write(gpa, bytes)?;
        clean_guest_range(&self.vm.mem, gpa, bytes.len() as u64);
        Ok(())
    }

    /// Makes this VM's stage-2 translation current on this CPU.
    pub fn activate(&self) {
        if let Some(active) = self.active {
            // SAFETY: a barrier making table writes visible to the walker;
            // it has no other effect.
            unsafe { core::arch::asm!("dsb ishst") };
            vcpu::activate_stage2(active.handle.vtcr(), active.handle.vttbr(active.vmid));
        }
    }

    /// Runs vCPU `index` alone (no interrupts, no other vCPUs) until its VM
    /// stops, it blocks, or `max_exits` exits have been handled. For tiny
    /// test guests; Linux VMs go through the scheduler.
    pub fn run_alone(&mut self, index: usize, max_exits: usize) -> ExitOutcome {
        vcpu::init_el2_for_guests();
        self.activate();
        vcpu::load(&self.vm.vcpus[index], self.vm.cntvoff);
        let mut outcome = ExitOutcome::Continue;
        for _ in 0..max_exits {
            // SAFETY: this VM's stage 2, HCR_EL2 and the vCPU's EL1 state were
            // loaded just above; interrupts are masked at EL2.
            let kind = unsafe { enter_guest(&mut self.vm.vcpus[index].regs) };
            let regs = &self.vm.vcpus[index].regs;
            outcome = match kind {
                ExitKind::Sync => {
                    let exit: Exit = decode_sync(regs.esr, regs.far, regs.hpfar);
                    self.vm.handle_exit(index, exit)
                }
                ExitKind::Irq | ExitKind::Fiq => {
                    self.vm.stats.irq += 1;
                    ExitOutcome::Continue
                }
                ExitKind::SError => ExitOutcome::Block,
            };
            if outcome != ExitOutcome::Continue {
                break;
            }
        }
        vcpu::put(&mut self.vm.vcpus[index]);
        outcome
    }
}

/// Zeroes `len` bytes of `mem` at `gpa` (nothing if the range is not all
/// inside it): `DC ZVA`, one zero block per instruction, over the blocks
/// that lie wholly inside the range when DCZID_EL0 permits it, and plain
/// stores for the rest. Same result as `mem.fill(gpa, len, 0)`: the zeros
/// are ordinary cacheable writes (`DC ZVA` is a store to Normal memory).
pub fn zero_guest_range(mem: &GuestMemory, gpa: u64, len: u64) {
    if !mem.contains(gpa, len) || len == 0 {
        return;
    }
    let dczid: u64;
    // SAFETY: DCZID_EL0 is a read-only identification register.
    unsafe { core::arch::asm!("mrs {0}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let (head, blocks, block) = crate::guest_memory::zva_split(
        mem.host_base_addr() as u64 + (gpa - mem.base()),
        len,
        dczid,
    );
    let _ = mem.fill(gpa, head, 0);
    let mut addr = mem.host_base_addr() as u64 + (gpa - mem.base()) + head;
    for _ in 0..blocks {
        // SAFETY: `[addr, addr + block)` is an aligned block inside the
        // VM's carve-out (checked above, split by `zva_split`), mapped at
        // EL2 as Normal memory; DC ZVA only writes zeros to it.
        unsafe { core::arch::asm!("dc zva, {0}", in(reg) addr, options(nostack)) };
        addr += block;
    }
    let done = head + blocks * block;
    let _ = mem.fill(gpa + done, len - done, 0);
}

/// Cleans the data cache for a guest-physical range to the point of
/// coherency and invalidates the instruction cache, after the hypervisor
/// wrote guest memory that the guest will read with caches off.
pub fn clean_guest_range(mem: &GuestMemory, gpa: u64, len: u64) {
    if !mem.contains(gpa, len) || len == 0 {
        return;
    }
    const LINE: u64 = 64;
    let start = mem.host_base_addr() as u64 + (gpa - mem.base());
    let mut line = start & !(LINE - 1);
    let end = start + len;
    while line < end {
        // SAFETY: `line` lies inside the VM's carve-out (checked above),
        // which is mapped at EL2; DC CVAC only writes back a cache line.
        unsafe { core::arch::asm!("dc cvac, {0}", in(reg) line) };
        line += LINE;
    }
    // SAFETY: barriers and instruction-cache invalidation have no effect on
    // memory contents.
    unsafe { core::arch::asm!("dsb ish", "ic ialluis", "dsb ish", "isb") };
}
