//! The virtual GICv3: emulated distributor and redistributors, list-register
//! scheduling.
//!
//! # What is emulated and what the hardware does
//!
//! A GICv3 guest talks to three things:
//!
//! * the **distributor** (`GICD_*`, MMIO at [`GICD_BASE`]) and one
//!   **redistributor** per vCPU (`GICR_*`, MMIO at [`GICR_BASE`], one
//!   [`GICR_STRIDE`]-byte frame per vCPU). Stage 2 leaves these unmapped, so
//!   every access traps and lands in [`Vgic::mmio_read`] /
//!   [`Vgic::mmio_write`]. They are **emulated here** in full software: every
//!   INTID's enable, pending (edge latch and level line), active, priority,
//!   edge/level configuration, group, group modifier and, for SPIs, routing.
//! * the **CPU interface** (`ICC_*_EL1`). With `HCR_EL2.{IMO,FMO}` set, the
//!   guest's accesses go to the hardware's *virtual* CPU interface
//!   (`ICV_*_EL1`): acknowledge (IAR), priority drop (EOIR), deactivation
//!   (DIR), priority mask (PMR), running priority and preemption are all done
//!   **by the hardware**, fed from the list registers `ICH_LR<n>_EL2` that
//!   the hypervisor fills. Nothing in the CPU interface is emulated, except
//!   SGI generation: `ICC_SGI1R_EL1` writes trap to EL2 (EC 0x18) and are
//!   handed to [`Vgic::send_sgi`].
//!
//! The model is the single source of truth while a vCPU is outside the
//! guest. Between [`Vgic::flush`] (just before entry) and [`Vgic::sync`]
//! (just after exit) the interrupts flush put into the list registers are
//! "in flight": the hardware may move them pending → active → invalid as the
//! guest acknowledges and deactivates them, and `sync` folds those changes
//! back. `sync` empties every list register; the next `flush` chooses again
//! from scratch, so the LRs always hold the best candidates in priority order
//! and no interrupt is ever in two LRs (of one vCPU or of two vCPUs). When
//! nothing changed since a vCPU's previous flush, "from scratch" gives the
//! same answer, and flush writes that answer again without scanning (see
//! `reuse`: a generation marker bumped by every state change).
//!
//! # What the integrator does
//!
//! Keep one [`Vgic`] per VM (behind the VM's lock: every method takes
//! `&mut self`) and one [`VcpuIfState`] per vCPU, created with
//! [`VcpuIfState::from_vtr`] from `ICH_VTR_EL2`.
//!
//! 1. **On every exit from the guest** (except one that keeps the interface
//!    state in the hardware, see `deferred`), in the world switch: save
//!    `ICH_LR<0..num_lrs>_EL2` into `lrs`, `ICH_HCR_EL2` into `hcr`,
//!    `ICH_VMCR_EL2` into `vmcr`, `ICH_AP0R<n>_EL2`/`ICH_AP1R<n>_EL2` into
//!    `ap0r`/`ap1r` (as many as PREbits implies; saving all four is fine),
//!    then (in Rust, with the VM's lock held) call [`Vgic::sync`].
//! 2. **Before every entry** (except right after a kept exit with
//!    [`Vgic::flush_unchanged`]): call [`Vgic::flush`], then restore
//!    `ICH_LR<0..num_lrs>_EL2`, `ICH_HCR_EL2` (flush always sets En),
//!    `ICH_VMCR_EL2` and the APRs from the state. Restore every one of the
//!    `num_lrs` LRs, including the zeroed ones.
//! 3. **On the maintenance interrupt (PPI 25, [`INTID_VGIC_MAINTENANCE`])**:
//!    acknowledge and EOI/deactivate it on the physical GIC and simply
//!    return to the run loop; the exit's `sync` and the next entry's `flush`
//!    do the work (refill after underflow, level resampling after an EOI
//!    request). Flush re-arms whatever maintenance it needs each time, so a
//!    maintenance interrupt that stays asserted for one entry is harmless.
//! 4. **On a trapped `ICC_SGI1R_EL1` write** (EC 0x18, `esr::ICC_SGI1R_EL1`):
//!    call [`Vgic::send_sgi`] with the written value and kick the vCPUs it
//!    returns. (`ICC_SGI0R_EL1` / `ICC_ASGI1R_EL1`: [`Vgic::send_sgi0`].)
//! 5. **On a data abort** in [`Vgic::dist_region`] or [`Vgic::redist_region`]:
//!    [`Vgic::mmio_read`] / [`Vgic::mmio_write`] with the IPA.
//! 6. **Injection**: devices use the [`IrqSink`] impl (SPIs); timers use
//!    [`Vgic::set_ppi_level`] / [`Vgic::inject_ppi`]. After anything that
//!    touched the vGIC, [`Vgic::take_kicks`] says which vCPUs may now have
//!    something new to deliver: a vCPU running on another pCPU must be
//!    kicked (IPI) so that it exits and re-flushes; one blocked in WFI must
//!    be woken. Before letting a vCPU sleep on WFI, check
//!    [`Vgic::has_deliverable`] with its synced state.
//! 7. The guest's device tree should describe a redistributor region of
//!    `num_vcpus * GICR_STRIDE` bytes ([`Vgic::redist_region`]; Linux stops
//!    at the frame whose `GICR_TYPER.Last` is set, so it never looks beyond),
//!    and vCPU `n` must have `VMPIDR_EL2` Aff0 = `n` with Aff1..3 = 0: that
//!    flat topology is what `GICR_TYPER`, `GICD_IROUTER` and SGI targeting
//!    assume.
//!
//! For level-sensitive lines the integrator keeps the level current: e.g.
//! for the virtual timer, when its physical PPI fires at EL2, mask the timer
//! and `set_ppi_level(vcpu, 27, true)`; before each flush, recompute the
//! level from `CNTV_CTL_EL0`/`CVAL` and call `set_ppi_level` again. Level
//! interrupts carry an EOI maintenance request, so the guest's EOI exits and
//! the line is resampled.
//!
//! # Decisions
//!
//! * **Interrupt space**: INTIDs 0..=127: 16 SGIs, 16 PPIs and 96 SPIs
//!   (32..=127), so `GICD_TYPER.ITLinesNumber` = 3 ([`NR_IRQS`]). No LPIs,
//!   no ITS, no extended SPI/PPI ranges, no message-based SPIs.
//! * **Security**: the guest sees a GIC with a single Security state
//!   (`GICD_CTLR.DS` = 1, RAO/WI; `GICD_TYPER.SecurityExtn` = 0), like KVM
//!   and like QEMU without `secure=on`. `GICD_CTLR.ARE` is RAO/WI; only
//!   EnableGrp0 (bit 0) and EnableGrp1 (bit 1) are writable; RWP reads 0.
//!   `IGROUPR` selects Group 0/1 and is carried into the LR's Group bit.
//!   Everything resets to Group 1 (what Linux configures anyway).
//!   `IGRPMODR` is RES0 with DS = 1: the written value is stored and read
//!   back but has no effect.
//! * **Priorities**: 5 bits (32 levels), like the virtual CPU interface QEMU
//!   emulates (`ICH_VTR_EL2.PRIbits` = 4): the low 3 bits of every
//!   `IPRIORITYR` byte read as zero.
//! * **Delivery order**: flush first puts back the interrupts that are
//!   active in this vCPU (they must be in an LR for the guest's EOI/DIR to
//!   reach them), then pending ones by priority (lowest value first) and,
//!   among equal priorities, lowest INTID first.
//! * **VPMR**: flush does **not** filter by the guest's priority mask (the
//!   guest changes `ICV_PMR_EL1` without trapping; the hardware masks).
//!   [`Vgic::has_deliverable`] does honour `ICH_VMCR_EL2.VPMR` and the
//!   VENG0/VENG1 group enables, because a WFI only wakes for an interrupt the
//!   virtual CPU interface would signal. (It does not model the running
//!   priority: Linux never waits for interrupts inside a handler.)
//! * **Overflow**: if more interrupts want an LR than there are LRs, flush
//!   sets `ICH_HCR_EL2.UIE` when the vCPU has at least 2 LRs (maintenance
//!   once at most one LR is left valid). With a single LR, UIE would fire
//!   continuously, so flush instead sets the LR's EOI maintenance request:
//!   the guest's deactivation of that interrupt exits and the next one is
//!   loaded. If even the active interrupts do not fit, `LRENPIE` is set too
//!   and each `EOIcount` increment deactivates the highest-priority active
//!   interrupt that had no LR (exact for EOImode 0, a best guess for DIR).
//! * **SPI routing**: `GICD_IROUTER` Aff0 = vCPU index with Aff1..3 = 0. A
//!   route naming a vCPU that does not exist leaves the SPI undelivered
//!   (counted in [`VgicCounters::unroutable_spi`] when written). IRM = 1
//!   ("any PE") routes to the lowest-numbered vCPU whose redistributor is
//!   awake (`GICR_WAKER.ProcessorSleep` = 0), or vCPU 0 if none is.
//!   An SPI that is active stays with the vCPU that acknowledged it until it
//!   is deactivated (a re-pended active SPI is delivered there as
//!   pending+active).
//! * **SGIs** from `ICC_SGI1R_EL1` are generated for the targets' SGIs of
//!   either group (DS = 1 rules; Linux uses Group 1); IRM = 1 means every
//!   vCPU except the sender. Aff1/Aff2/Aff3 ≠ 0 or a TargetList bit beyond
//!   the last vCPU target nothing (counted).
//! * **Bad guest input never panics**: unknown offsets and unimplemented
//!   INTIDs read as zero and ignore writes, wrong widths likewise; all are
//!   counted in [`VgicCounters`].
//!
//! [`GICD_BASE`]: crate::platform::GICD_BASE
//! [`GICR_BASE`]: crate::platform::GICR_BASE
//! [`GICR_STRIDE`]: crate::platform::GICR_STRIDE
//! [`INTID_VGIC_MAINTENANCE`]: crate::platform::INTID_VGIC_MAINTENANCE

mod deferred;
mod distributor;
mod hw_writes;
mod list_registers;
mod redistributor;
mod reuse;
mod sgi;

#[cfg(test)]
mod deferred_tests;
#[cfg(test)]
mod reuse_tests;
#[cfg(test)]
mod tests;

pub use deferred::{
    EntryPlan, ExitFacts, entry_plan, exit_needs_model, keep_interface, stay_kept,
    timer_line_settled,
};
pub use hw_writes::{IfWrites, if_writes, keep_enabled_after_exit, lrs_to_read};
pub use list_registers::{FlushOutcome, SyncOutcome, VcpuIfState};

use crate::irq::IrqSink;
use crate::platform::MAX_VCPUS;
use hal::gicv3::{gicd_ctlr, irouter};
use hal::ich::MAX_LIST_REGS;
use reuse::LastFlush;

/// Number of INTIDs the vGIC implements: 0..=127.
pub const NR_IRQS: usize = 128;
/// SGIs and PPIs: INTIDs 0..=31, banked per vCPU.
pub const NR_PRIVATE: usize = 32;
/// SPIs: INTIDs 32..=127.
pub const NR_SPIS: usize = NR_IRQS - NR_PRIVATE;
/// First SPI INTID.
pub const SPI_BASE: u32 = NR_PRIVATE as u32;
/// First PPI INTID.
pub const PPI_BASE: u32 = 16;
/// `GICD_TYPER.ITLinesNumber` for [`NR_IRQS`].
pub const IT_LINES_NUMBER: u32 = (NR_IRQS / 32 - 1) as u32;
/// Implemented priority bits: priorities are stored as `value & PRIORITY_MASK`.
pub const PRIORITY_MASK: u8 = 0xf8;
/// `GICD_IIDR` / `GICR_IIDR`: implementer Arm (0x43B), product 0, r0p0, as
/// QEMU's GICv3 model reports.
pub const IIDR: u32 = 0x0000_043b;

/// A set of vCPUs of one VM: bit `n` = vCPU `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuMask(pub u32);

impl VcpuMask {
    /// No vCPU.
    pub const EMPTY: Self = VcpuMask(0);

    /// The set holding only `vcpu` (empty if `vcpu` >= 32).
    pub const fn single(vcpu: usize) -> Self {
        if vcpu < 32 {
            VcpuMask(1 << vcpu)
        } else {
            Self::EMPTY
        }
    }

    /// True if `vcpu` is in the set.
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < 32 && self.0 & (1 << vcpu) != 0
    }

    /// Adds `vcpu` (ignored if >= 32).
    pub fn insert(&mut self, vcpu: usize) {
        self.0 |= Self::single(vcpu).0;
    }

    /// True if no vCPU is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of vCPUs in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The vCPU indices in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..32).filter(move |&v| self.contains(v))
    }
}

/// Everything the vGIC ignored or had to repair, so that no bad access is
/// silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgicCounters {
    /// GICD/GICR accesses to an offset that names no implemented register
    /// (including reserved ranges and redistributor frames of absent vCPUs).
    pub unknown_offset: u64,
    /// Accesses with a size or alignment the register does not support.
    pub bad_width: u64,
    /// Writes to read-only registers.
    pub read_only_write: u64,
    /// Register accesses covering only INTIDs this vGIC does not implement
    /// (beyond [`NR_IRQS`], or SGI/PPI fields of the distributor, which are
    /// RES0 with affinity routing).
    pub unimplemented_intid: u64,
    /// Injection calls naming an INTID that does not exist or does not fit
    /// the call (e.g. a PPI through `IrqSink`).
    pub bad_intid: u64,
    /// Calls naming a vCPU index the VM does not have.
    pub bad_vcpu: u64,
    /// `GICD_IROUTER` writes whose target vCPU does not exist.
    pub unroutable_spi: u64,
    /// SGI targets named by `ICC_SGI1R_EL1` that do not exist.
    pub sgi_dropped: u64,
    /// List registers whose vINTID at sync was not what flush wrote there.
    pub lr_mismatch: u64,
    /// Deactivations recovered from `ICH_HCR_EL2.EOIcount`.
    pub eoi_count_fixups: u64,
    /// Flushes that had more candidates than list registers.
    pub lr_overflows: u64,
    /// Interrupts the guest acknowledged (took from a list register), by
    /// kind: SGIs (INTID 0..=15).
    pub delivered_sgi: u64,
    /// Interrupts the guest acknowledged: PPIs (16..=31, e.g. its timer).
    pub delivered_ppi: u64,
    /// Interrupts the guest acknowledged: SPIs (32.., devices).
    pub delivered_spi: u64,
    /// Flushes that chose the list-register content by scanning the
    /// interrupts.
    pub flush_scanned: u64,
    /// Flushes that wrote the previous flush's list registers again because
    /// nothing had changed (see `reuse`).
    pub flush_reused: u64,
}

impl core::fmt::Display for VgicCounters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "delivered sgi={} ppi={} spi={}; lr-overflows={} eoi-fixups={}; flushes \
             scanned={} reused={}; refused: unknown-offset={} bad-width={} read-only-write={} unimplemented-intid={} \
             bad-intid={} bad-vcpu={} unroutable-spi={} sgi-dropped={} lr-mismatch={}",
            self.delivered_sgi,
            self.delivered_ppi,
            self.delivered_spi,
            self.lr_overflows,
            self.eoi_count_fixups,
            self.flush_scanned,
            self.flush_reused,
            self.unknown_offset,
            self.bad_width,
            self.read_only_write,
            self.unimplemented_intid,
            self.bad_intid,
            self.bad_vcpu,
            self.unroutable_spi,
            self.sgi_dropped,
            self.lr_mismatch
        )
    }
}

/// The state of one INTID (banked per vCPU for SGIs and PPIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Irq {
    /// ISENABLER/ICENABLER.
    enabled: bool,
    /// Pending latch: edges, ISPENDR, `raise_edge`, SGIs.
    latch: bool,
    /// Input line level (level-sensitive pending source; edge detection).
    line: bool,
    /// Active state (while the interrupt is outside the LRs).
    active: bool,
    /// ICFGR: true = edge-triggered, false = level-sensitive.
    edge: bool,
    /// IGROUPR: true = Group 1.
    group1: bool,
    /// IGRPMODR (stored, no effect with DS = 1).
    grpmod: bool,
    /// IPRIORITYR, already masked with [`PRIORITY_MASK`].
    priority: u8,
    /// Currently loaded in a list register of vCPU `lr_vcpu`.
    in_lr: bool,
    /// The vCPU whose LR holds the interrupt (valid while `in_lr`).
    lr_vcpu: u8,
    /// Loaded with the pending bit set.
    lr_pending: bool,
    /// ICPENDR hit the interrupt while it was in an LR: drop the LR's pending.
    lr_pending_cleared: bool,
    /// IS/ICACTIVER hit the interrupt while it was in an LR: the model's
    /// active state wins over the LR's at sync.
    lr_active_written: bool,
    /// SPIs: the vCPU that holds the active state.
    active_vcpu: u8,
}

impl Irq {
    const fn reset(edge: bool) -> Self {
        Irq {
            enabled: false,
            latch: false,
            line: false,
            active: false,
            edge,
            group1: true,
            grpmod: false,
            priority: 0,
            in_lr: false,
            lr_vcpu: 0,
            lr_pending: false,
            lr_pending_cleared: false,
            lr_active_written: false,
            active_vcpu: 0,
        }
    }

    /// Pending as far as the model knows, not counting an LR.
    const fn model_pending(&self) -> bool {
        self.latch || (!self.edge && self.line)
    }

    /// Pending as the guest would read it from ISPENDR.
    const fn pending(&self) -> bool {
        self.model_pending() || (self.in_lr && self.lr_pending)
    }

    /// Drives the input line; a rising edge latches an edge-triggered
    /// interrupt. True if the interrupt's state changed.
    fn set_line(&mut self, high: bool) -> bool {
        let before = (self.line, self.latch);
        if self.edge && high && !self.line {
            self.latch = true;
        }
        self.line = high;
        before != (self.line, self.latch)
    }

    /// Whether flush might want an LR for it: pending or active. (Routing,
    /// enables and LR ownership are checked by the scan.)
    const fn maybe_candidate(&self) -> bool {
        self.model_pending() || self.active
    }
}

/// A per-VM virtual GICv3 for up to [`MAX_VCPUS`] vCPUs.
///
/// See the [module documentation](self) for the model and the integrator's
/// duties.
#[derive(Clone, Debug)]
pub struct Vgic {
    num_vcpus: usize,
    /// GICD_CTLR EnableGrp0/EnableGrp1.
    ctlr: u32,
    private: [[Irq; NR_PRIVATE]; MAX_VCPUS],
    spis: [Irq; NR_SPIS],
    irouter: [u64; NR_SPIS],
    /// GICR_WAKER.ProcessorSleep per vCPU.
    asleep: [bool; MAX_VCPUS],
    /// INTIDs flush loaded into each vCPU's LRs, by LR index.
    lr_intid: [[u16; MAX_LIST_REGS]; MAX_VCPUS],
    /// How many LRs of each vCPU flush loaded.
    lr_used: [u8; MAX_VCPUS],
    /// Bumped by every change that can alter what a flush loads (see
    /// `reuse`).
    generation: u64,
    /// What each vCPU's last flush wrote (`None`: scan next time).
    last_flush: [Option<LastFlush>; MAX_VCPUS],
    /// Per vCPU: the list registers came back from the hardware exactly as
    /// the last flush wrote them (cleared by sync otherwise).
    hw_unchanged: [bool; MAX_VCPUS],
    /// Per vCPU, bit = INTID 0..=31: SGIs/PPIs that are pending or active
    /// (a superset: bits are set on every change, cleared by the scan).
    private_maybe: [u32; MAX_VCPUS],
    /// Bit = INTID 32..=127: SPIs that are pending or active (a superset).
    spi_maybe: u128,
    kicks: VcpuMask,
    counters: VgicCounters,
}

/// The reset state of one vCPU's SGIs (edge, fixed) and PPIs (level).
const PRIVATE_RESET: [Irq; NR_PRIVATE] = {
    let mut irqs = [Irq::reset(false); NR_PRIVATE];
    let mut i = 0;
    while i < PPI_BASE as usize {
        irqs[i] = Irq::reset(true);
        i += 1;
    }
    irqs
};

impl Vgic {
    /// A vGIC for `num_vcpus` vCPUs (clamped to 1..=[`MAX_VCPUS`]) in its
    /// reset state: distributor disabled, every interrupt disabled, inactive,
    /// not pending, Group 1, priority 0; SGIs edge, PPIs and SPIs level;
    /// SPIs routed to vCPU 0; every redistributor asleep.
    pub const fn new(num_vcpus: usize) -> Self {
        let n = if num_vcpus == 0 {
            1
        } else if num_vcpus > MAX_VCPUS {
            MAX_VCPUS
        } else {
            num_vcpus
        };
        Vgic {
            num_vcpus: n,
            ctlr: 0,
            private: [PRIVATE_RESET; MAX_VCPUS],
            spis: [Irq::reset(false); NR_SPIS],
            irouter: [0; NR_SPIS],
            asleep: [true; MAX_VCPUS],
            lr_intid: [[0; MAX_LIST_REGS]; MAX_VCPUS],
            lr_used: [0; MAX_VCPUS],
            generation: 0,
            last_flush: [None; MAX_VCPUS],
            hw_unchanged: [false; MAX_VCPUS],
            private_maybe: [0; MAX_VCPUS],
            spi_maybe: 0,
            kicks: VcpuMask::EMPTY,
            counters: VgicCounters {
                unknown_offset: 0,
                bad_width: 0,
                read_only_write: 0,
                unimplemented_intid: 0,
                bad_intid: 0,
                bad_vcpu: 0,
                unroutable_spi: 0,
                sgi_dropped: 0,
                lr_mismatch: 0,
                eoi_count_fixups: 0,
                lr_overflows: 0,
                delivered_sgi: 0,
                delivered_ppi: 0,
                delivered_spi: 0,
                flush_scanned: 0,
                flush_reused: 0,
            },
        }
    }

    /// Number of vCPUs.
    pub const fn num_vcpus(&self) -> usize {
        self.num_vcpus
    }

    /// What was ignored or repaired so far.
    pub const fn counters(&self) -> &VgicCounters {
        &self.counters
    }

    /// The vCPUs that may have something new to deliver (or whose in-flight
    /// LR contents became stale) since the last call; clears the set. Kick
    /// those running on other pCPUs, wake those waiting in WFI; a vCPU that
    /// is about to be flushed anyway (often the caller's own, which `sync`
    /// adds when interrupts remain pending) needs nothing. Kicks are hints:
    /// an extra one costs an exit, never correctness.
    pub fn take_kicks(&mut self) -> VcpuMask {
        core::mem::take(&mut self.kicks)
    }

    /// Makes the next [`Vgic::flush`] of `vcpu` choose its list registers by
    /// scanning the interrupts, not by reusing the previous flush's (call it
    /// when the vCPU's interface state was reset, e.g. on PSCI `CPU_ON`).
    pub fn forget_flush(&mut self, vcpu: usize) {
        if let Some(last) = self.last_flush.get_mut(vcpu) {
            *last = None;
        }
    }

    // ── Injection ────────────────────────────────────────────────────

    /// Makes PPI `intid` (16..=31) of `vcpu` pending once (edge semantics,
    /// whatever its configuration).
    pub fn inject_ppi(&mut self, vcpu: usize, intid: u32) {
        if let Some(irq) = self.ppi_mut(vcpu, intid) {
            irq.latch = true;
            self.touch(vcpu, intid);
        }
    }

    /// Sets the input level of PPI `intid` (16..=31) of `vcpu`, e.g. the
    /// virtual timer (27). A level-sensitive PPI is pending while high; an
    /// edge-triggered one latches on a rising edge.
    pub fn set_ppi_level(&mut self, vcpu: usize, intid: u32, high: bool) {
        if let Some(irq) = self.ppi_mut(vcpu, intid) {
            // The run loop sets the virtual timer's level after every exit:
            // an unchanged level must leave the generation alone.
            if irq.set_line(high) {
                self.touch(vcpu, intid);
            } else {
                self.kick(vcpu, intid);
            }
        }
    }

    fn ppi_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        if vcpu >= self.num_vcpus {
            self.counters.bad_vcpu += 1;
            return None;
        }
        if !(PPI_BASE..SPI_BASE).contains(&intid) {
            self.counters.bad_intid += 1;
            return None;
        }
        self.private[vcpu].get_mut(intid as usize)
    }

    fn spi_mut(&mut self, intid: u32) -> Option<&mut Irq> {
        let index = (intid as usize).checked_sub(NR_PRIVATE);
        match index.and_then(|i| self.spis.get_mut(i)) {
            Some(irq) => Some(irq),
            None => {
                self.counters.bad_intid += 1;
                None
            }
        }
    }

    // ── Queries ──────────────────────────────────────────────────────

    /// True if `intid` is pending for `vcpu` (for an SPI, `vcpu` is
    /// ignored), as the guest would read it from ISPENDR.
    pub fn is_pending(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|i| i.pending())
    }

    /// True if `intid` is active (as of the last flush/sync).
    pub fn is_active(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|i| i.active)
    }

    /// True if `intid` is enabled.
    pub fn is_enabled(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|i| i.enabled)
    }

    /// True if `intid` is edge-triggered.
    pub fn is_edge(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|i| i.edge)
    }

    /// Priority of `intid`, if it exists.
    pub fn priority(&self, vcpu: usize, intid: u32) -> Option<u8> {
        self.irq(vcpu, intid).map(|i| i.priority)
    }

    /// The vCPU SPI `intid` is routed to by its `GICD_IROUTER`, if any.
    pub fn spi_target(&self, intid: u32) -> Option<usize> {
        let index = (intid as usize).checked_sub(NR_PRIVATE)?;
        self.route(*self.irouter.get(index)?)
    }

    /// Number of interrupts for `vcpu` that are pending, enabled and whose
    /// group is enabled in `GICD_CTLR`, including those flush loaded into its
    /// LRs as pending (as of the last flush/sync).
    pub fn pending_count(&self, vcpu: usize) -> usize {
        if vcpu >= self.num_vcpus {
            return 0;
        }
        let mut count = 0;
        for irq in &self.private[vcpu] {
            count += usize::from(irq.pending() && irq.enabled && self.group_enabled(irq.group1));
        }
        for (i, irq) in self.spis.iter().enumerate() {
            let home = if irq.in_lr {
                Some(irq.lr_vcpu as usize)
            } else if irq.active {
                Some(irq.active_vcpu as usize)
            } else {
                self.route(self.irouter[i])
            };
            if home == Some(vcpu) && irq.pending() && irq.enabled && self.group_enabled(irq.group1)
            {
                count += 1;
            }
        }
        count
    }

    // ── Internals shared by the register and LR code ─────────────────

    fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        let intid = intid as usize;
        if intid < NR_PRIVATE {
            if vcpu >= self.num_vcpus {
                return None;
            }
            self.private.get(vcpu)?.get(intid)
        } else {
            self.spis.get(intid - NR_PRIVATE)
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        let intid = intid as usize;
        if intid < NR_PRIVATE {
            if vcpu >= self.num_vcpus {
                return None;
            }
            self.private.get_mut(vcpu)?.get_mut(intid)
        } else {
            self.spis.get_mut(intid - NR_PRIVATE)
        }
    }

    const fn group_enabled(&self, group1: bool) -> bool {
        let bit = if group1 {
            gicd_ctlr::ENABLE_GRP1
        } else {
            gicd_ctlr::ENABLE_GRP0
        };
        self.ctlr & bit != 0
    }

    /// Pending, enabled and group-enabled: the distributor would forward it.
    const fn forwardable(&self, irq: &Irq) -> bool {
        irq.model_pending() && irq.enabled && self.group_enabled(irq.group1)
    }

    /// The vCPU an `IROUTER` value selects.
    fn route(&self, value: u64) -> Option<usize> {
        if value & irouter::IRM != 0 {
            let awake = (0..self.num_vcpus).find(|&v| !self.asleep[v]);
            return Some(awake.unwrap_or(0));
        }
        let upper = value & !(irouter::IRM | irouter::AFF0_MASK);
        let aff0 = (value & irouter::AFF0_MASK) as usize;
        (upper == 0 && aff0 < self.num_vcpus).then_some(aff0)
    }

    /// Records a change of `intid`: the generation moves on (no flush may
    /// reuse its previous list registers) and [`Vgic::kick`] runs.
    fn touch(&mut self, vcpu: usize, intid: u32) {
        self.note_change();
        self.kick(vcpu, intid);
    }

    /// Something that can change what a flush loads happened.
    fn note_change(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Records which vCPUs must look at `intid` again: the one holding it
    /// in an LR, and the one it would now be delivered to; returns them.
    /// Also keeps the candidate bitmaps a superset of the pending or active
    /// interrupts.
    fn kick(&mut self, vcpu: usize, intid: u32) -> VcpuMask {
        let Some(irq) = self.irq(vcpu, intid).copied() else {
            return VcpuMask::EMPTY;
        };
        if irq.maybe_candidate() {
            if intid < SPI_BASE {
                self.private_maybe[vcpu] |= 1 << intid;
            } else {
                self.spi_maybe |= 1 << intid;
            }
        }
        let mut mask = VcpuMask::EMPTY;
        if irq.in_lr {
            mask.insert(irq.lr_vcpu as usize);
        }
        if self.forwardable(&irq) {
            if intid < SPI_BASE {
                mask.insert(vcpu);
            } else if irq.active {
                mask.insert(irq.active_vcpu as usize);
            } else if let Some(t) = self.spi_target(intid) {
                mask.insert(t);
            }
        }
        self.kicks.0 |= mask.0;
        mask
    }

    /// Every vCPU must re-evaluate (e.g. a group enable changed).
    fn touch_all(&mut self) {
        self.note_change();
        for v in 0..self.num_vcpus {
            self.kicks.insert(v);
        }
    }
}

impl Default for Vgic {
    /// A single-vCPU vGIC.
    fn default() -> Self {
        Self::new(1)
    }
}

/// Devices raise SPIs (INTIDs 32..=127) through the VM's vGIC. SGIs and PPIs
/// are per-vCPU and go through [`Vgic::inject_ppi`], [`Vgic::set_ppi_level`]
/// and [`Vgic::send_sgi`]; naming them here is counted in
/// [`VgicCounters::bad_intid`] and ignored.
impl IrqSink for Vgic {
    /// Latches SPI `intid` pending (on a level-sensitive SPI this acts like a
    /// write to `GICD_ISPENDR`: pending until the guest acknowledges it).
    fn raise_edge(&mut self, intid: u32) {
        if let Some(irq) = self.spi_mut(intid) {
            irq.latch = true;
            self.touch(0, intid);
        }
    }

    /// Sets the input level of SPI `intid`.
    fn set_level(&mut self, intid: u32, high: bool) {
        if let Some(irq) = self.spi_mut(intid) {
            if irq.set_line(high) {
                self.touch(0, intid);
            } else {
                self.kick(0, intid);
            }
        }
    }
}
