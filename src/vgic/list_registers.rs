//! List-register scheduling: [`Vgic::flush`] before guest entry,
//! [`Vgic::sync`] after guest exit, and the wake-up query
//! [`Vgic::has_deliverable`].

use super::reuse::{LastFlush, lrs_unchanged, may_reuse};
use super::{NR_IRQS, NR_PRIVATE, SPI_BASE, VcpuMask, Vgic};
use hal::ich::{
    HCR_EOICOUNT_MASK, IchHcr, IchVmcr, IchVtr, ListRegister, LrState, MAX_LIST_REGS, hcr_eoi_count,
};

/// One vCPU's virtual CPU interface state, saved and restored by the world
/// switch around every guest run. Between exit and entry it is plain data
/// that [`Vgic::sync`] and [`Vgic::flush`] edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuIfState {
    /// `ICH_LR<n>_EL2`; only the first `num_lrs` exist in hardware.
    pub lrs: [u64; MAX_LIST_REGS],
    /// Implemented list registers (`ICH_VTR_EL2.ListRegs + 1`), at most 16.
    pub num_lrs: usize,
    /// `ICH_HCR_EL2`.
    pub hcr: u64,
    /// `ICH_VMCR_EL2`: the guest's PMR, binary points, group enables, EOImode.
    pub vmcr: u64,
    /// `ICH_AP0R<n>_EL2`: Group 0 active priorities.
    pub ap0r: [u32; 4],
    /// `ICH_AP1R<n>_EL2`: Group 1 active priorities.
    pub ap1r: [u32; 4],
}

impl VcpuIfState {
    /// The reset state of a vCPU's interface with `num_lrs` list registers
    /// (clamped to 16): every LR empty, `ICH_HCR_EL2.En` set, VMCR and APRs
    /// zero (the guest programs its PMR and group enables itself).
    pub const fn new(num_lrs: usize) -> Self {
        VcpuIfState {
            lrs: [0; MAX_LIST_REGS],
            num_lrs: if num_lrs > MAX_LIST_REGS {
                MAX_LIST_REGS
            } else {
                num_lrs
            },
            hcr: IchHcr::EN.bits(),
            vmcr: 0,
            ap0r: [0; 4],
            ap1r: [0; 4],
        }
    }

    /// The reset state for the CPU whose `ICH_VTR_EL2` reads `vtr`.
    pub const fn from_vtr(vtr: u64) -> Self {
        Self::new(IchVtr::from_raw(vtr).list_regs as usize)
    }

    /// Number of usable list registers.
    pub const fn lr_count(&self) -> usize {
        if self.num_lrs > MAX_LIST_REGS {
            MAX_LIST_REGS
        } else {
            self.num_lrs
        }
    }
}

/// What [`Vgic::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// List registers loaded.
    pub loaded: usize,
    /// Interrupts that wanted an LR but did not get one (a maintenance
    /// interrupt was requested to come back for them).
    pub waiting: usize,
}

/// What [`Vgic::sync`] found in the list registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Loaded list registers folded back into the model.
    pub folded: usize,
    /// Of those, interrupts the guest fully handled (LR invalid: acknowledged
    /// and deactivated).
    pub completed: usize,
    /// Of those, LRs whose EOI maintenance request fired (`ICH_EISR_EL2`).
    pub eoi_maintenance: usize,
}

/// An interrupt that wants a list register.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// 0 = active (must be present for the guest's EOI), 1 = pending only.
    class: u8,
    priority: u8,
    intid: u16,
    pending: bool,
    active: bool,
}

impl Vgic {
    /// Prepares vCPU `vcpu`'s list registers for guest entry.
    ///
    /// Any LRs still loaded from the previous entry are first folded back as
    /// [`Vgic::sync`] would. Then the interrupts active in this vCPU and the
    /// highest-priority pending, enabled interrupts whose group is enabled
    /// are loaded (see the module documentation for the order), each as a
    /// virtual interrupt (HW = 0) with its priority and group, in state
    /// Pending, Active or Pending+Active; level-sensitive ones carry an EOI
    /// maintenance request so their line is resampled when the guest is done.
    /// Unused LRs are zeroed. `ICH_HCR_EL2.En` is set; UIE (or, with one LR,
    /// the EOI request) and LRENPIE are set as needed when not everything
    /// fits.
    ///
    /// When no interrupt state changed since this vCPU's previous flush and
    /// the hardware gave its list registers back unchanged, the previous
    /// content is written again without scanning (see `reuse`); the result
    /// is the same.
    pub fn flush(&mut self, vcpu: usize, state: &mut VcpuIfState) -> FlushOutcome {
        if vcpu >= self.num_vcpus {
            self.counters.bad_vcpu += 1;
            return FlushOutcome::default();
        }
        if self.lr_used[vcpu] != 0 || hcr_eoi_count(state.hcr) != 0 {
            self.fold(vcpu, state);
        }
        let reuse = may_reuse(
            self.last_flush[vcpu].as_ref(),
            self.generation,
            self.hw_unchanged[vcpu],
            state.lr_count(),
        );
        let out = match self.last_flush[vcpu] {
            Some(ref last) if reuse => {
                self.counters.flush_reused += 1;
                // The record stays as it is: the content written, its
                // generation and maintenance bits are those it holds.
                let (loaded, pending_slots, waiting, hcr_bits) =
                    (last.loaded, last.pending_slots, last.waiting, last.hcr_bits);
                let n = state.lr_count();
                state.lrs[..n].copy_from_slice(&last.lrs[..n]);
                self.reload(vcpu, state, loaded, pending_slots, waiting, hcr_bits)
            }
            _ => {
                self.counters.flush_scanned += 1;
                let out = self.scan_and_load(vcpu, state);
                let hcr_bits = state.hcr & (IchHcr::UIE | IchHcr::LRENPIE).bits();
                let mut pending_slots = 0u16;
                for slot in 0..out.loaded {
                    if ListRegister(state.lrs[slot]).state().is_pending() {
                        pending_slots |= 1 << slot;
                    }
                }
                self.last_flush[vcpu] = Some(LastFlush {
                    generation: self.generation,
                    lrs: state.lrs,
                    num_lrs: state.lr_count() as u8,
                    loaded: out.loaded as u8,
                    pending_slots,
                    waiting: out.waiting as u16,
                    hcr_bits,
                });
                out
            }
        };
        self.hw_unchanged[vcpu] = true;
        out
    }

    /// The bookkeeping the scan would have done for the last flush's list
    /// registers (already copied into `state.lrs`: `loaded` of them, the
    /// pending ones in `pending_slots`, `waiting` left out, maintenance
    /// bits `hcr_bits`): nothing changed since it chose them.
    fn reload(
        &mut self,
        vcpu: usize,
        state: &mut VcpuIfState,
        loaded: u8,
        pending_slots: u16,
        waiting: u16,
        hcr_bits: u64,
    ) -> FlushOutcome {
        let load = usize::from(loaded).min(MAX_LIST_REGS);
        for slot in 0..load {
            let intid = u32::from(self.lr_intid[vcpu][slot]);
            let pending = pending_slots & (1 << slot) != 0;
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            irq.in_lr = true;
            irq.lr_vcpu = vcpu as u8;
            irq.lr_pending = pending;
            irq.lr_pending_cleared = false;
            irq.lr_active_written = false;
            if pending && irq.edge {
                irq.latch = false;
            }
        }
        self.lr_used[vcpu] = load as u8;
        let mut hcr = IchHcr::from_bits_retain(state.hcr & !HCR_EOICOUNT_MASK);
        hcr.remove(IchHcr::UIE | IchHcr::NPIE | IchHcr::LRENPIE);
        hcr.insert(IchHcr::EN);
        state.hcr = hcr.bits() | hcr_bits;
        if waiting > 0 {
            self.counters.lr_overflows += 1;
        }
        FlushOutcome {
            loaded: load,
            waiting: usize::from(waiting),
        }
    }

    /// The full flush: scans the interrupts that may be pending or active
    /// and loads the best.
    fn scan_and_load(&mut self, vcpu: usize, state: &mut VcpuIfState) -> FlushOutcome {
        let mut cands = [Candidate {
            class: 0,
            priority: 0,
            intid: 0,
            pending: false,
            active: false,
        }; NR_IRQS];
        let mut count = 0;
        let mut maybe = self.maybe_bits(vcpu);
        while maybe != 0 {
            let intid = maybe.trailing_zeros();
            maybe &= maybe - 1;
            match self.candidate(vcpu, intid) {
                Some(c) => {
                    cands[count] = c;
                    count += 1;
                }
                None => self.clear_maybe(vcpu, intid),
            }
        }
        let cands = &mut cands[..count];
        cands.sort_unstable_by_key(|c| (c.class, c.priority, c.intid));

        let n = state.lr_count();
        let load = count.min(n);
        for (slot, c) in cands.iter().take(load).enumerate() {
            let intid = u32::from(c.intid);
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            let mut lr = ListRegister::virtual_irq(
                intid,
                irq.priority,
                irq.group1,
                LrState::from_parts(c.pending, c.active),
            );
            if !irq.edge {
                lr = lr.with_eoi_maintenance();
            }
            irq.in_lr = true;
            irq.lr_vcpu = vcpu as u8;
            irq.lr_pending = c.pending;
            irq.lr_pending_cleared = false;
            irq.lr_active_written = false;
            // The LR now carries an edge's pending state; a new edge arriving
            // meanwhile latches again (and becomes pending+active if the guest
            // has acknowledged the first one).
            if c.pending && irq.edge {
                irq.latch = false;
            }
            state.lrs[slot] = lr.raw();
            self.lr_intid[vcpu][slot] = c.intid;
        }
        self.lr_used[vcpu] = load as u8;
        for lr in state.lrs.iter_mut().skip(load) {
            *lr = 0;
        }

        let mut hcr = IchHcr::from_bits_retain(state.hcr & !HCR_EOICOUNT_MASK);
        hcr.remove(IchHcr::UIE | IchHcr::NPIE | IchHcr::LRENPIE);
        hcr.insert(IchHcr::EN);
        let waiting = count - load;
        if waiting > 0 {
            self.counters.lr_overflows += 1;
            if n >= 2 {
                hcr.insert(IchHcr::UIE);
            } else if load == 1 {
                state.lrs[0] = ListRegister(state.lrs[0]).with_eoi_maintenance().raw();
            }
            if cands[load..].iter().any(|c| c.class == 0) {
                hcr.insert(IchHcr::LRENPIE);
            }
        }
        state.hcr = hcr.bits();
        FlushOutcome {
            loaded: load,
            waiting,
        }
    }

    /// Folds vCPU `vcpu`'s list registers back into the model after a guest
    /// exit, after the world switch saved them into `state`.
    ///
    /// For every LR flush loaded: the LR's active bit becomes the interrupt's
    /// active state (an active SPI stays with this vCPU until deactivated);
    /// a pending bit the guest has not consumed is kept; a level-sensitive
    /// interrupt the guest acknowledged loses its latched pending state and
    /// stays pending only while its line is high (resampling). An LR in
    /// state Invalid means the guest acknowledged and deactivated it.
    /// `ICH_HCR_EL2.EOIcount` deactivations are applied to active interrupts
    /// that had no LR. Every LR is emptied and UIE/NPIE/LRENPIE/EOIcount are
    /// cleared; the next [`Vgic::flush`] reloads.
    pub fn sync(&mut self, vcpu: usize, state: &mut VcpuIfState) -> SyncOutcome {
        if vcpu >= self.num_vcpus {
            self.counters.bad_vcpu += 1;
            return SyncOutcome::default();
        }
        self.fold(vcpu, state)
    }

    fn fold(&mut self, vcpu: usize, state: &mut VcpuIfState) -> SyncOutcome {
        let mut out = SyncOutcome::default();
        let used = usize::from(self.lr_used[vcpu]).min(MAX_LIST_REGS);
        // Did the guest (or anything else) make progress on what the last
        // flush loaded? If so, no flush may reuse list registers: the
        // generation moves on.
        let unchanged = self.last_flush[vcpu].as_ref().is_some_and(|last| {
            usize::from(last.loaded) == used
                && lrs_unchanged(&last.lrs, &state.lrs, used, state.hcr)
        });
        if !unchanged {
            self.hw_unchanged[vcpu] = false;
            self.note_change();
        }

        // EOIs for interrupts without an LR (only possible when the active
        // ones did not all fit): the guest deactivated the highest-priority
        // active interrupt it had. Checked before the LRs are folded, while
        // `in_lr` still says which ones had an LR.
        for _ in 0..hcr_eoi_count(state.hcr) {
            let Some(intid) = self.highest_active_without_lr(vcpu) else {
                break;
            };
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                irq.active = false;
                self.counters.eoi_count_fixups += 1;
                self.touch(vcpu, intid);
            }
        }

        for slot in 0..used {
            let intid = u32::from(self.lr_intid[vcpu][slot]);
            let lr = ListRegister(state.lrs[slot]);
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            if !irq.in_lr || usize::from(irq.lr_vcpu) != vcpu {
                // Bookkeeping says someone else owns it: leave it alone.
                self.counters.lr_mismatch += 1;
                continue;
            }
            // If the LR no longer names the interrupt, the world switch did
            // not give back what flush loaded: assume the guest made no
            // progress on it rather than invent one.
            let lr_state = if lr.vintid() == intid && !lr.hw() {
                lr.state()
            } else {
                LrState::from_parts(irq.lr_pending, irq.active)
            };
            let mismatch = lr.vintid() != intid || lr.hw();
            // (A register write that reached it in flight, applied below
            // through `lr_pending_cleared` / `lr_active_written`, already
            // moved the generation on when it happened, after this vCPU's
            // flush: no flush can reuse across it.)

            if !irq.lr_active_written {
                irq.active = lr_state.is_active();
                if lr_state.is_active() && intid >= SPI_BASE {
                    irq.active_vcpu = vcpu as u8;
                }
            }
            let acknowledged = irq.lr_pending && !lr_state.is_pending();
            if irq.lr_pending && !irq.lr_pending_cleared {
                if lr_state.is_pending() {
                    // Not yet acknowledged: still pending.
                    irq.latch |= irq.edge;
                } else if !irq.edge {
                    // Acknowledged: a latched (ISPENDR) level interrupt is
                    // consumed; the line alone decides from now on.
                    irq.latch = false;
                }
            }
            irq.in_lr = false;
            irq.lr_pending = false;
            irq.lr_pending_cleared = false;
            irq.lr_active_written = false;

            if acknowledged {
                match intid {
                    0..=15 => self.counters.delivered_sgi += 1,
                    16..=31 => self.counters.delivered_ppi += 1,
                    _ => self.counters.delivered_spi += 1,
                }
            }
            out.folded += 1;
            if lr_state == LrState::Invalid {
                out.completed += 1;
            }
            if lr.eoi_signalled() {
                out.eoi_maintenance += 1;
            }
            if mismatch {
                self.counters.lr_mismatch += 1;
            }
            // A level line still high, or a new edge, wants delivery again.
            // Out of this vCPU's LRs, an interrupt another vCPU may now load
            // changes that vCPU's next flush.
            let wanted_by = self.kick(vcpu, intid);
            if wanted_by.0 & !VcpuMask::single(vcpu).0 != 0 {
                self.note_change();
            }
        }
        self.lr_used[vcpu] = 0;
        state.lrs = [0; MAX_LIST_REGS];

        let mut hcr = IchHcr::from_bits_retain(state.hcr & !HCR_EOICOUNT_MASK);
        hcr.remove(IchHcr::UIE | IchHcr::NPIE | IchHcr::LRENPIE);
        state.hcr = hcr.bits();
        out
    }

    /// INTIDs (bit = INTID) that may be pending or active for `vcpu`: its
    /// SGIs/PPIs and every SPI. Everything else is neither.
    fn maybe_bits(&self, vcpu: usize) -> u128 {
        u128::from(self.private_maybe[vcpu]) | self.spi_maybe
    }

    /// Drops `intid` from the candidate bitmap of `vcpu` (or the SPIs') if
    /// it is neither pending nor active.
    fn clear_maybe(&mut self, vcpu: usize, intid: u32) {
        if self
            .irq(vcpu, intid)
            .is_some_and(|irq| !irq.maybe_candidate())
        {
            if intid < SPI_BASE {
                self.private_maybe[vcpu] &= !(1 << intid);
            } else {
                self.spi_maybe &= !(1 << intid);
            }
        }
    }

    /// The interrupt of `vcpu` that flush would like to load, if any.
    fn candidate(&self, vcpu: usize, intid: u32) -> Option<Candidate> {
        let irq = self.irq(vcpu, intid)?;
        if intid >= SPI_BASE {
            if irq.in_lr {
                // In flight on another vCPU (ours were folded).
                return None;
            }
            let home = if irq.active {
                Some(irq.active_vcpu as usize)
            } else {
                self.spi_target(intid)
            };
            if home != Some(vcpu) {
                return None;
            }
        }
        let pending = self.forwardable(irq);
        if !irq.active && !pending {
            return None;
        }
        Some(Candidate {
            class: if irq.active { 0 } else { 1 },
            priority: irq.priority,
            intid: intid as u16,
            pending,
            active: irq.active,
        })
    }

    /// Highest-priority (then lowest INTID) interrupt active in `vcpu` that
    /// flush could not give an LR.
    fn highest_active_without_lr(&self, vcpu: usize) -> Option<u32> {
        (0..NR_IRQS as u32)
            .filter(|&intid| {
                self.irq(vcpu, intid).is_some_and(|irq| {
                    let mine = intid < NR_PRIVATE as u32 || irq.active_vcpu as usize == vcpu;
                    irq.active && !irq.in_lr && mine
                })
            })
            .min_by_key(|&intid| (self.irq(vcpu, intid).map_or(u8::MAX, |i| i.priority), intid))
    }

    /// True if `vcpu` has an interrupt its virtual CPU interface would
    /// signal: one flush would load as pending (and not active), or one
    /// already in its LRs in state Pending, whose group is enabled in
    /// `ICH_VMCR_EL2` (VENG0/VENG1) and whose priority is higher (lower
    /// value) than `ICH_VMCR_EL2.VPMR`. Use it with the state saved at exit
    /// to decide whether a vCPU that executed WFI may sleep.
    pub fn has_deliverable(&self, vcpu: usize, state: &VcpuIfState) -> bool {
        if vcpu >= self.num_vcpus {
            return false;
        }
        let vmcr = IchVmcr(state.vmcr);
        let signalled = |group1: bool, priority: u8| {
            let group_on = if group1 { vmcr.veng1() } else { vmcr.veng0() };
            group_on && priority < vmcr.vpmr()
        };
        let used = usize::from(self.lr_used[vcpu]).min(MAX_LIST_REGS);
        let in_lrs = state.lrs[..used]
            .iter()
            .map(|&v| ListRegister(v))
            .any(|lr| lr.state() == LrState::Pending && signalled(lr.group1(), lr.priority()));
        let mut maybe = self.maybe_bits(vcpu);
        in_lrs
            || core::iter::from_fn(|| {
                let intid = maybe.trailing_zeros();
                maybe &= maybe.wrapping_sub(1);
                (intid < NR_IRQS as u32).then_some(intid)
            })
            .any(|intid| {
                self.candidate(vcpu, intid).is_some_and(|c| {
                    let group1 = self.irq(vcpu, intid).is_some_and(|i| i.group1);
                    c.pending
                        && !c.active
                        && !self.irq_in_lr(vcpu, intid)
                        && signalled(group1, c.priority)
                })
            })
    }

    fn irq_in_lr(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|i| i.in_lr)
    }
}
