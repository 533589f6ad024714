//! SGI generation from trapped `ICC_SGI1R_EL1` / `ICC_SGI0R_EL1` writes.

use super::{VcpuMask, Vgic};
use hal::ich::Sgi1r;

impl Vgic {
    /// Handles the guest's write of `value` to `ICC_SGI1R_EL1` on vCPU
    /// `from`: makes SGI `value[27:24]` pending on every target and returns
    /// the targets (also recorded for [`Vgic::take_kicks`]) so the run loop
    /// can kick or wake them.
    ///
    /// Targets, in this VM's flat topology (vCPU `n` has Aff0 = `n`, Aff1..3
    /// = 0): with IRM = 0, TargetList bit `b` names the vCPU with Aff0 =
    /// `RS * 16 + b`, but only if Aff1, Aff2 and Aff3 are all zero; named
    /// vCPUs that do not exist are counted in
    /// [`VgicCounters::sgi_dropped`](super::VgicCounters::sgi_dropped).
    /// With IRM = 1 every vCPU except `from` is a target. With a single
    /// Security state, `ICC_SGI1R_EL1` generates the SGI whichever group it
    /// is configured in at the target.
    pub fn send_sgi(&mut self, from: usize, value: u64) -> VcpuMask {
        self.dispatch_sgi(from, value, true)
    }

    /// Handles a write to `ICC_SGI0R_EL1` (or `ICC_ASGI1R_EL1`, which is
    /// equivalent with a single Security state): like [`Vgic::send_sgi`] but
    /// only targets whose SGI is configured as Group 0 receive it.
    pub fn send_sgi0(&mut self, from: usize, value: u64) -> VcpuMask {
        self.dispatch_sgi(from, value, false)
    }

    fn dispatch_sgi(&mut self, from: usize, value: u64, group1_allowed: bool) -> VcpuMask {
        if from >= self.num_vcpus {
            self.counters.bad_vcpu += 1;
            return VcpuMask::EMPTY;
        }
        let sgi = Sgi1r::decode(value);
        let mut named = VcpuMask::EMPTY;
        if sgi.irm {
            for v in (0..self.num_vcpus).filter(|&v| v != from) {
                named.insert(v);
            }
        } else {
            let cluster_ok = sgi.aff1 == 0 && sgi.aff2 == 0 && sgi.aff3 == 0;
            for bit in (0..16).filter(|b| sgi.target_list & (1 << b) != 0) {
                let aff0 = usize::from(sgi.rs) * 16 + bit;
                if cluster_ok && aff0 < self.num_vcpus {
                    named.insert(aff0);
                } else {
                    self.counters.sgi_dropped += 1;
                }
            }
        }

        let intid = u32::from(sgi.intid);
        let mut targets = VcpuMask::EMPTY;
        for v in named.iter() {
            let Some(irq) = self.irq_mut(v, intid) else {
                continue;
            };
            if irq.group1 && !group1_allowed {
                continue;
            }
            irq.latch = true;
            targets.insert(v);
            self.touch(v, intid);
        }
        self.kicks.0 |= targets.0;
        targets
    }
}
