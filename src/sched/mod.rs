//! Scheduling policy: which vCPU a physical CPU runs next.
//!
//! Each physical CPU owns a [`RunQueue`] of the vCPUs placed on it
//! ([`Placement`]): all of them on CPU 0 when time-slicing, or VM *n* on CPU
//! *n* when pinning. [`RunQueue::pick`] is round-robin over the vCPUs the
//! caller says are runnable, starting after the one picked last, so every
//! runnable vCPU of every VM gets its turn; a vCPU that waits in WFI is not
//! runnable and costs nothing until an interrupt is deliverable to it.
//! [`policy`] decides how long a picked vCPU runs and when the CPU sleeps.

use crate::platform::{MAX_PCPUS, MAX_VCPUS, MAX_VMS};

pub mod policy;
#[cfg(test)]
mod policy_tests;

pub use policy::{Exit, ExitAction, PcpuArch, PcpuPolicy, SchedParams, Step, VcpuStatus};

/// Whether the EL2 timer must be written to fire at `want` (`None`: off)
/// when it is known to be set to `known` (`None`: unknown, e.g. never
/// written). The run loop arms it before every entry; an unchanged deadline
/// is not written again (on QEMU every write of the timer reprograms a host
/// timer). The timer's own interrupt disarms it, and the run loop records
/// that, so a deadline that fired is written again when it is asked for.
pub fn hyp_timer_write_needed(known: Option<Option<u64>>, want: Option<u64>) -> bool {
    known != Some(want)
}

/// Whether the run loop's delivery into a VM before an entry has anything
/// to do: a transmitter its rate limit paused waits for its retry
/// (`tx_retry_set`), frames wait in its switch port (`frames_waiting`) or
/// console input waits for its UART (`input_waiting`). All three are read
/// without the VM's lock; with none, the delivery (its lock, its clock
/// reading) is skipped.
pub const fn delivery_needed(
    tx_retry_set: bool,
    frames_waiting: bool,
    input_waiting: bool,
) -> bool {
    tx_retry_set || frames_waiting || input_waiting
}

/// A vCPU of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuRef {
    /// VM index.
    pub vm: usize,
    /// vCPU index inside the VM.
    pub vcpu: usize,
}

/// How vCPUs map to physical CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every vCPU of every VM time-sliced on physical CPU 0.
    TimeSliced,
    /// VM *n* pinned to physical CPU *n* (modulo the CPU count); its vCPUs
    /// time-slice there.
    PerPcpu,
}

impl Placement {
    /// The physical CPU that runs VM `vm` when `nr_pcpus` CPUs exist.
    pub fn pcpu_of(self, vm: usize, nr_pcpus: usize) -> usize {
        match self {
            Placement::TimeSliced => 0,
            Placement::PerPcpu => vm % nr_pcpus.max(1),
        }
    }

    /// Number of physical CPUs this placement uses for `nr_vms` VMs.
    pub fn pcpus_used(self, nr_vms: usize, nr_pcpus: usize) -> usize {
        match self {
            Placement::TimeSliced => 1,
            Placement::PerPcpu => nr_vms.min(nr_pcpus).max(1),
        }
    }
}

/// Most vCPUs one run queue holds.
pub const RUN_QUEUE_CAPACITY: usize = MAX_VMS * MAX_VCPUS;

/// The vCPUs one physical CPU runs, in round-robin order.
#[derive(Clone, Debug)]
pub struct RunQueue {
    entries: [Option<VcpuRef>; RUN_QUEUE_CAPACITY],
    len: usize,
    /// Index (into `entries`) of the entry picked last.
    last: usize,
}

impl Default for RunQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl RunQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        RunQueue {
            entries: [None; RUN_QUEUE_CAPACITY],
            len: 0,
            last: RUN_QUEUE_CAPACITY - 1,
        }
    }

    /// Adds a vCPU; false if the queue is full or it is already there.
    pub fn add(&mut self, vcpu: VcpuRef) -> bool {
        if self.len >= RUN_QUEUE_CAPACITY || self.iter().any(|v| v == vcpu) {
            return false;
        }
        self.entries[self.len] = Some(vcpu);
        self.len += 1;
        true
    }

    /// The queued vCPUs in order.
    pub fn iter(&self) -> impl Iterator<Item = VcpuRef> + '_ {
        self.entries[..self.len].iter().flatten().copied()
    }

    /// Number of queued vCPUs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next runnable vCPU after the one picked last (wrapping), or
    /// `None` if nothing is runnable.
    pub fn pick(&mut self, mut runnable: impl FnMut(VcpuRef) -> bool) -> Option<VcpuRef> {
        if self.len == 0 {
            return None;
        }
        for step in 1..=self.len {
            let index = (self.last + step) % self.len;
            if let Some(vcpu) = self.entries[index]
                && runnable(vcpu)
            {
                self.last = index;
                return Some(vcpu);
            }
        }
        None
    }

    /// Number of runnable vCPUs other than `except`.
    pub fn others_runnable(
        &self,
        except: VcpuRef,
        mut runnable: impl FnMut(VcpuRef) -> bool,
    ) -> usize {
        self.iter().filter(|&v| v != except && runnable(v)).count()
    }
}

/// Builds every physical CPU's run queue for `nr_vms` VMs of
/// `vcpus_per_vm` vCPUs.
pub fn build_run_queues(
    placement: Placement,
    nr_vms: usize,
    vcpus_per_vm: usize,
    nr_pcpus: usize,
) -> [RunQueue; MAX_PCPUS] {
    let mut queues: [RunQueue; MAX_PCPUS] = core::array::from_fn(|_| RunQueue::new());
    let nr_pcpus = nr_pcpus.clamp(1, MAX_PCPUS);
    for vm in 0..nr_vms.min(MAX_VMS) {
        let pcpu = placement.pcpu_of(vm, nr_pcpus);
        for vcpu in 0..vcpus_per_vm.min(MAX_VCPUS) {
            queues[pcpu].add(VcpuRef { vm, vcpu });
        }
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyp_timer_is_written_only_when_its_setting_changes() {
        // Unknown: always written, off or armed.
        assert!(hyp_timer_write_needed(None, None));
        assert!(hyp_timer_write_needed(None, Some(5)));
        // Known and asked for again: no write.
        assert!(!hyp_timer_write_needed(Some(Some(5)), Some(5)));
        assert!(!hyp_timer_write_needed(Some(None), None));
        // Any change is written: new deadline, armed -> off, off -> armed.
        assert!(hyp_timer_write_needed(Some(Some(5)), Some(6)));
        assert!(hyp_timer_write_needed(Some(Some(5)), None));
        assert!(hyp_timer_write_needed(Some(None), Some(5)));
    }

    #[test]
    fn delivery_runs_whenever_anything_waits() {
        assert!(!delivery_needed(false, false, false), "nothing waits");
        for (retry, frames, input) in [
            (true, false, false),
            (false, true, false),
            (false, false, true),
            (true, true, true),
        ] {
            assert!(
                delivery_needed(retry, frames, input),
                "retry {retry} frames {frames} input {input}"
            );
        }
    }

    fn v(vm: usize, vcpu: usize) -> VcpuRef {
        VcpuRef { vm, vcpu }
    }

    #[test]
    fn round_robin_over_all_vms() {
        let [q0, ..] = build_run_queues(Placement::TimeSliced, 2, 2, 2);
        let mut q = q0;
        let picks: Vec<_> = (0..6).map(|_| q.pick(|_| true).unwrap()).collect();
        assert_eq!(
            picks,
            vec![v(0, 0), v(0, 1), v(1, 0), v(1, 1), v(0, 0), v(0, 1)]
        );
    }

    #[test]
    fn skips_blocked_and_returns_none_when_idle() {
        let mut q = build_run_queues(Placement::TimeSliced, 3, 1, 1)[0].clone();
        assert_eq!(q.pick(|r| r.vm != 0), Some(v(1, 0)));
        assert_eq!(q.pick(|r| r.vm != 0), Some(v(2, 0)));
        assert_eq!(q.pick(|r| r.vm != 0), Some(v(1, 0)));
        assert_eq!(q.pick(|_| false), None);
        assert_eq!(q.others_runnable(v(1, 0), |_| true), 2);
    }

    #[test]
    fn fairness_each_runnable_vcpu_gets_equal_turns() {
        let mut q = build_run_queues(Placement::TimeSliced, 3, 4, 1)[0].clone();
        let mut turns = [[0u32; 4]; 3];
        for _ in 0..900 {
            let p = q.pick(|r| r.vcpu != 3).unwrap();
            turns[p.vm][p.vcpu] += 1;
        }
        for vm in turns {
            assert_eq!(&vm[..3], &[100, 100, 100]);
            assert_eq!(vm[3], 0);
        }
    }

    #[test]
    fn per_pcpu_placement_pins_vms() {
        let queues = build_run_queues(Placement::PerPcpu, 3, 2, 2);
        assert_eq!(
            queues[0].iter().collect::<Vec<_>>(),
            vec![v(0, 0), v(0, 1), v(2, 0), v(2, 1)]
        );
        assert_eq!(queues[1].iter().collect::<Vec<_>>(), vec![v(1, 0), v(1, 1)]);
        assert!(queues[2].is_empty());
        assert_eq!(Placement::PerPcpu.pcpus_used(3, 2), 2);
        assert_eq!(Placement::TimeSliced.pcpus_used(3, 2), 1);
    }

    #[test]
    fn add_refuses_duplicates() {
        let mut q = RunQueue::new();
        assert!(q.add(v(0, 0)));
        assert!(!q.add(v(0, 0)));
        assert_eq!(q.len(), 1);
    }
}
