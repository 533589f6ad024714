//! Keeping a vCPU's virtual CPU interface state in the hardware across an
//! exit that changes no interrupt state: no read-back, no [`Vgic::sync`],
//! no [`Vgic::flush`] and no register write until something changes.
//!
//! After such an exit the interface (`ICH_LR<n>_EL2`, the APRs, VMCR and
//! `ICH_HCR_EL2`) still holds everything the guest did with its interrupts
//! (acknowledged, completed or masked them); nothing in the hypervisor
//! writes those registers while no guest runs, so the hardware stays the
//! one exact copy. The model treats the interrupts the last flush loaded as
//! in flight (as it does while the guest runs), and the saved copy
//! (`Vcpu::gic`) is what that flush wrote. The run loop *settles* the
//! deferred exit (reads the interface back and syncs, as a normal exit
//! does) before anything that needs the model or the saved copy exact:
//!
//! * an exit whose handler reads or writes interrupt state, or whose vCPU
//!   may wait for an interrupt: everything except an MMIO access outside the
//!   vGIC's regions, HVC and SMC ([`exit_needs_model`]); an interrupt exit
//!   (the maintenance interrupt among them) is settled first too;
//! * an asserted maintenance condition (`ICH_MISR_EL2` not zero: the guest
//!   completed an interrupt that asked for it, or the list registers ran
//!   low): it is a level the hypervisor must not leave asserted;
//! * a virtual timer whose line may need to change ([`timer_line_settled`]);
//! * the next entry, when any interrupt state changed since the flush that
//!   filled the interface ([`entry_plan`]: the vGIC generation marker, as
//!   for reusing a flush), or when another vCPU is entered;
//! * saving the vCPU out of the CPU, sleeping, housekeeping outside
//!   guests, and any exit that does not simply continue the vCPU.
//!
//! An entry after a kept exit with nothing changed writes nothing at all.
//!
//! [`Vgic::sync`]: super::Vgic::sync
//! [`Vgic::flush`]: super::Vgic::flush

use super::Vgic;
use super::reuse::may_reuse;
use crate::mmio::MmioRegion;
use crate::trap::Exit;

/// What the run loop knows right after a guest exit, before handling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitFacts {
    /// A synchronous exception (not an interrupt or SError).
    pub sync_exception: bool,
    /// Its handler needs the vGIC model and the saved interface state exact
    /// ([`exit_needs_model`]).
    pub needs_model: bool,
    /// `ICH_MISR_EL2` at the exit.
    pub misr: u64,
    /// The virtual timer's line needs no re-evaluation
    /// ([`timer_line_settled`]).
    pub timer_settled: bool,
    /// The run loop knows the interface holds the state the vCPU was
    /// entered with (it was restored or kept for this entry and has not been
    /// turned off since).
    pub interface_known: bool,
}

/// Whether the exit may leave the interface state in the hardware and skip
/// the read-back and sync: only a synchronous exit whose handler touches no
/// interrupt state, with no maintenance condition asserted, a settled
/// timer line and an interface known to hold the vCPU's state.
pub const fn keep_interface(f: &ExitFacts) -> bool {
    f.sync_exception && !f.needs_model && f.misr == 0 && f.timer_settled && f.interface_known
}

/// Whether the handler of `exit` needs the model and the saved interface
/// state exact: everything but an MMIO access that touches no byte of the
/// vGIC's distributor or redistributor regions, an HVC and an SMC. (Those
/// may inject interrupts, which the model accepts while interrupts are in
/// flight: the injection moves the generation on and the next entry
/// settles first. A PSCI call that ends the vCPU's run is settled before
/// the run loop looks at the vCPU again.)
pub fn exit_needs_model(exit: &Exit, vgic: &Vgic) -> bool {
    match exit {
        Exit::Mmio(access) => {
            let range = MmioRegion::new(access.ipa, u64::from(access.size.bytes()));
            range.overlaps(&vgic.dist_region()) || range.overlaps(&vgic.redist_region())
        }
        Exit::Hvc { .. } | Exit::Smc { .. } => false,
        _ => true,
    }
}

/// Whether the virtual timer's line, as the model holds it, cannot need a
/// change at this exit, so the timer need not be read: the hypervisor has
/// not masked the timer on the guest's behalf (`hyp_masked`) and the
/// model's line is low. (The guest's `CNTV_*` writes do not trap, but a
/// line that should rise is the physical timer firing: an interrupt exit,
/// settled anyway, at the latest right after the next entry. A line that
/// is high, or a mask the hypervisor set, must be re-evaluated against
/// what the guest did.)
pub const fn timer_line_settled(hyp_masked: bool, line_high: bool) -> bool {
    !hyp_masked && !line_high
}

/// What an entry does with the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPlan {
    /// The interface holds this vCPU's kept state and nothing changed:
    /// enter without touching it.
    Keep,
    /// Settle the kept exit (read back, sync), then flush and restore.
    SettleThenFlush,
    /// Flush and restore (no exit of this vCPU is kept).
    Flush,
}

/// The entry's plan: `kept_here` says the last exit of this very vCPU was
/// kept (and nothing settled it since); `unchanged` is
/// [`Vgic::flush_unchanged`] for it.
pub const fn entry_plan(kept_here: bool, unchanged: bool) -> EntryPlan {
    match (kept_here, unchanged) {
        (true, true) => EntryPlan::Keep,
        (true, false) => EntryPlan::SettleThenFlush,
        (false, _) => EntryPlan::Flush,
    }
}

/// Whether the run loop may return from one entry with the exit still
/// kept: only when the vCPU simply continues (`continues`: its exit neither
/// blocks, yields nor stops it) and no work outside guests waits
/// (`service`). Otherwise the policy will look at the vCPU's interrupt
/// state or run something else: settle first.
pub const fn stay_kept(continues: bool, service: bool) -> bool {
    continues && !service
}

impl Vgic {
    /// True if no interrupt state changed since `vcpu`'s last flush (its
    /// generation is still the VM's, with as many list registers, and no
    /// sync found progress since): the list registers that flush chose are
    /// still the right ones (see `reuse`).
    pub fn flush_unchanged(&self, vcpu: usize, lr_count: usize) -> bool {
        vcpu < self.num_vcpus
            && may_reuse(
                self.last_flush[vcpu].as_ref(),
                self.generation,
                self.hw_unchanged[vcpu],
                lr_count,
            )
    }

    /// The input level of PPI `intid` (16..=31) of `vcpu` (false for any
    /// other INTID or vCPU).
    pub fn ppi_line(&self, vcpu: usize, intid: u32) -> bool {
        (super::PPI_BASE..super::SPI_BASE).contains(&intid)
            && self.irq(vcpu, intid).is_some_and(|irq| irq.line)
    }
}
