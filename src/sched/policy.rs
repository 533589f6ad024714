//! The per-pCPU scheduling policy: which vCPU runs, for how long, and when
//! the CPU sleeps.
//!
//! The policy is plain logic driven through [`PcpuArch`], a small interface
//! to the machine: the AArch64 run loop (`arch::aarch64::runtime`) implements
//! it with the world switch, the vGIC and the EL2 timer; the host tests
//! implement it with a simulated clock and scripted guests. One call of
//! [`PcpuPolicy::step`] is one turn of a physical CPU's loop:
//!
//! 1. housekeeping outside guests (physical interrupts, console commands and
//!    flushes, statistics);
//! 2. deliver what waits for each VM here (console input, network frames)
//!    and ask every vCPU for its [`VcpuStatus`];
//! 3. pick the next ready vCPU round-robin ([`RunQueue::pick`]); the vCPU
//!    whose state is in the hardware but is not picked is saved first, so
//!    its virtual timer is tracked in software from then on;
//! 4. run the picked vCPU for one slice (`PcpuPolicy::run`), or sleep until
//!    the earliest deadline of a waiting vCPU when nothing is ready.
//!
//! ## Bounds a busy guest cannot break
//!
//! * While any other vCPU on this pCPU is alive, the running vCPU's slice
//!   ends [`SchedParams::slice`] after it was entered — whether or not the
//!   others are ready at that moment, so a wake-up that arrives later (a
//!   frame, console input, an SGI, a timer) is never stuck behind a busy
//!   guest. The end is checked after every exit too, so a guest that exits
//!   often cannot push its own deadline out.
//! * A wake-up of another vCPU during a run ([`Exit::woke_others`]) cuts
//!   the running vCPU's slice to [`SchedParams::wake_grace`] from then,
//!   whatever the woken vCPU was doing: a VM whose vCPU looks busy (it
//!   may spin through WFI with an interrupt it cannot take yet) still gets
//!   its frames within the grace. Two busy VMs in a bulk transfer pay for
//!   this with more switches.
//! * If the wake-up made ready a vCPU that had been waiting for at least
//!   [`SchedParams::long_wait`] (an idle VM answering a ping, a shell
//!   getting a key), the run ends at that exit: with two vCPUs on the
//!   pCPU the woken one runs next, at once instead of after the grace
//!   (with more, it takes its place in the round robin as usual). A vCPU
//!   in a bulk transfer is woken again and again after short waits and
//!   keeps the grace, so the two ends still run in long stretches. Each
//!   vCPU can end a run this way at most once per `long_wait` it waited,
//!   so the running vCPU is not starved by it.
//! * A software-tracked timer deadline of a waiting vCPU, and the
//!   housekeeping deadline (console flush), end the run when they pass.
//! * [`Exit::service`] (a console command waiting) ends the run at once, so
//!   the console answers even when every VM is busy.
//! * Every entry lets the guest run at least [`SchedParams::min_run`]
//!   (counted from the clock reading that ended the previous exit, so less
//!   that exit's handling), so a deadline already in the past cannot starve
//!   the guest that is entered.
//!
//! With these, a vCPU that becomes ready runs within one slice per other
//! ready vCPU on its pCPU (the host tests check this with random loads).
//!
//! ## Work outside guests: VM restarts
//!
//! A VM being restarted reports one vCPU with [`VcpuStatus::maintenance`]
//! (and the others not alive). It takes its turn in the round-robin like a
//! ready vCPU, but its turn is one bounded unit of restart work
//! ([`PcpuArch::maintain`], [`Step::Maintained`]) instead of a guest run;
//! nothing of that VM stays loaded in the CPU while it is rebuilt. So a
//! guest that reboots in a loop costs each neighbour at most one unit per
//! round, and the bound above holds with "slice" read as "slice or unit".

use super::{RunQueue, VcpuRef};
use crate::platform::{MAX_VCPUS, MAX_VMS};

/// What the policy needs to know about a vCPU when it picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStatus {
    /// Its VM is running and the vCPU is powered on. A vCPU that is not
    /// alive is never picked and does not count as a contender.
    pub alive: bool,
    /// It has work: it is not waiting in WFI, or an interrupt is
    /// deliverable to it (an expired virtual timer included).
    pub ready: bool,
    /// When its virtual timer fires (physical counter), if that must be
    /// watched in software: armed, not yet expired, and the vCPU's state is
    /// not in the hardware.
    pub deadline: Option<u64>,
    /// Its VM is being restarted: when picked, the policy calls
    /// [`PcpuArch::maintain`] for one bounded unit of that work instead of
    /// entering the vCPU. Reported with `alive` and `ready`, on one vCPU of
    /// the VM.
    pub maintenance: bool,
}

/// How one guest exit ended, as far as scheduling is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Re-enter the same vCPU (within its slice).
    Continue,
    /// The vCPU waits (WFI, CPU_OFF): run something else.
    Block,
    /// The vCPU spins (WFE): let the others run, then come back.
    Yield,
    /// The VM stopped.
    Stop,
}

/// One guest exit, reported by [`PcpuArch::enter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// What the exit means for the running vCPU.
    pub action: ExitAction,
    /// Another vCPU on this pCPU may have become ready during the run (a
    /// frame for its port, console input, an SGI or CPU_ON, a kick from
    /// another pCPU).
    pub woke_others: bool,
    /// Work outside guests is waiting (a console command): go back to the
    /// loop now.
    pub service: bool,
}

impl Exit {
    /// An exit that changes nothing for scheduling.
    pub const CONTINUE: Exit = Exit {
        action: ExitAction::Continue,
        woke_others: false,
        service: false,
    };

    /// An exit with `action` and no side effects.
    pub const fn with(action: ExitAction) -> Exit {
        Exit {
            action,
            woke_others: false,
            service: false,
        }
    }
}

/// The machine as the policy sees it. Times are physical-counter ticks.
pub trait PcpuArch {
    /// The physical counter now.
    fn now(&mut self) -> u64;
    /// Work outside guests: physical interrupts, console commands and
    /// flushes, statistics.
    fn housekeeping(&mut self);
    /// When housekeeping next has something to do by itself (a console
    /// flush), if ever.
    fn housekeeping_deadline(&mut self) -> Option<u64>;
    /// Moves what waits for VM `vm` (console input, network frames) into
    /// its devices, which raise their interrupts.
    fn deliver_pending(&mut self, vm: usize);
    /// The status of `v` at `now`. `loaded` says whether its state is in
    /// the hardware (then its timer needs no software deadline).
    fn status(&mut self, v: VcpuRef, now: u64, loaded: bool) -> VcpuStatus;
    /// Loads `v`'s state into the CPU (nothing else is loaded).
    fn load(&mut self, v: VcpuRef);
    /// Saves the loaded vCPU `v`'s state out of the CPU.
    fn put(&mut self, v: VcpuRef);
    /// Arms the hypervisor's timer for `deadline`, or disarms it.
    fn arm_timer(&mut self, deadline: Option<u64>);
    /// Enters the loaded vCPU `v` once and handles its exit.
    fn enter(&mut self, v: VcpuRef) -> Exit;
    /// Sleeps until an interrupt (the armed timer, a kick, console input).
    fn idle(&mut self);
    /// Does one bounded unit of VM `vm`'s restart (none of its vCPUs is
    /// loaded).
    fn maintain(&mut self, vm: usize);
}

/// The policy's time constants, in counter ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// Longest run of one vCPU while others are alive on the pCPU.
    pub slice: u64,
    /// How much longer the running vCPU may run once it woke another.
    pub wake_grace: u64,
    /// Shortest run after an entry, so a vCPU always makes progress.
    pub min_run: u64,
    /// A vCPU that waited at least this long and is woken during another
    /// vCPU's run gets the CPU at that exit, without the grace.
    pub long_wait: u64,
}

impl SchedParams {
    /// Slices per second of the default parameters (10 ms slices).
    pub const SLICES_PER_SECOND: u64 = 100;

    /// The default parameters for a counter of `freq` Hz: 10 ms slices,
    /// 1 ms grace after a wake-up, 0.5 ms minimum run, no grace for a vCPU
    /// that waited a whole slice.
    pub const fn for_frequency(freq: u64) -> SchedParams {
        let slice = freq / Self::SLICES_PER_SECOND;
        SchedParams {
            slice,
            wake_grace: slice / 10,
            min_run: slice / 20,
            long_wait: slice,
        }
    }
}

/// What one [`PcpuPolicy::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ran this vCPU for (part of) a slice.
    Ran(VcpuRef),
    /// Did one unit of the restart of this vCPU's VM.
    Maintained(VcpuRef),
    /// Nothing was ready: slept with the timer armed for `wake`.
    Idled {
        /// The deadline the timer was armed for (`None`: disarmed).
        wake: Option<u64>,
    },
    /// Every vCPU of this pCPU is dead (its VM stopped); nothing is loaded.
    AllStopped,
}

type StatusTable = [[VcpuStatus; MAX_VCPUS]; MAX_VMS];

/// One physical CPU's scheduler state.
#[derive(Clone, Debug)]
pub struct PcpuPolicy {
    queue: RunQueue,
    params: SchedParams,
    loaded: Option<VcpuRef>,
    /// Since when each vCPU has been seen waiting (alive, not ready) by
    /// the loop, without being ready in between.
    waiting_since: [[Option<u64>; MAX_VCPUS]; MAX_VMS],
}

impl PcpuPolicy {
    /// A policy over `queue` with `params`; nothing loaded.
    pub fn new(queue: RunQueue, params: SchedParams) -> Self {
        PcpuPolicy {
            queue,
            params,
            loaded: None,
            waiting_since: [[None; MAX_VCPUS]; MAX_VMS],
        }
    }

    /// The vCPUs this pCPU runs.
    pub fn queue(&self) -> &RunQueue {
        &self.queue
    }

    /// The vCPU whose state is in the hardware, if any.
    pub fn loaded(&self) -> Option<VcpuRef> {
        self.loaded
    }

    /// Saves the loaded vCPU, if any (e.g. before the CPU parks).
    pub fn put_loaded<A: PcpuArch>(&mut self, arch: &mut A) {
        if let Some(l) = self.loaded.take() {
            arch.put(l);
        }
    }

    /// One turn of the loop: housekeeping, delivery, pick, then a slice of
    /// the picked vCPU or a sleep.
    pub fn step<A: PcpuArch>(&mut self, arch: &mut A) -> Step {
        arch.housekeeping();
        let now = arch.now();
        let mut st: StatusTable = [[VcpuStatus::default(); MAX_VCPUS]; MAX_VMS];
        let mut delivered = [false; MAX_VMS];
        for r in self.queue.iter() {
            if !core::mem::replace(&mut delivered[r.vm], true) {
                arch.deliver_pending(r.vm);
            }
            let s = arch.status(r, now, self.loaded == Some(r));
            st[r.vm][r.vcpu] = s;
            let since = &mut self.waiting_since[r.vm][r.vcpu];
            *since = if s.alive && !s.ready {
                since.or(Some(now))
            } else {
                None
            };
        }
        if self.queue.iter().all(|r| !st[r.vm][r.vcpu].alive) {
            self.put_loaded(arch);
            return Step::AllStopped;
        }
        let ready = |st: &StatusTable, r: VcpuRef| st[r.vm][r.vcpu].alive && st[r.vm][r.vcpu].ready;
        let mut choice = self.queue.pick(|r| ready(&st, r));
        if let Some(l) = self.loaded
            && choice != Some(l)
        {
            // It stays out of the CPU: save it, and from now on watch its
            // timer in software (its deadline joins the wake-up time).
            self.put_loaded(arch);
            st[l.vm][l.vcpu] = arch.status(l, now, false);
            if choice.is_none() && ready(&st, l) {
                choice = self.queue.pick(|r| ready(&st, r));
            }
        }
        match choice {
            Some(v) if st[v.vm][v.vcpu].maintenance => {
                // The VM's vCPUs are rebuilt: none may stay in the CPU
                // (saving it later would overwrite the fresh state).
                self.put_loaded(arch);
                arch.maintain(v.vm);
                Step::Maintained(v)
            }
            Some(v) => {
                self.run(arch, v, &st, now);
                Step::Ran(v)
            }
            None => {
                let wake = earliest(
                    self.waiting_deadlines(&st, None),
                    arch.housekeeping_deadline(),
                );
                arch.arm_timer(wake);
                arch.idle();
                Step::Idled { wake }
            }
        }
    }

    /// Earliest software-tracked deadline of the waiting vCPUs other than
    /// `except`.
    fn waiting_deadlines(&self, st: &StatusTable, except: Option<VcpuRef>) -> Option<u64> {
        // A ready vCPU's timer changes nothing: it runs at its turn anyway,
        // and ending a run for it would cost the running vCPU its slice.
        self.queue
            .iter()
            .filter(|&r| Some(r) != except && st[r.vm][r.vcpu].alive && !st[r.vm][r.vcpu].ready)
            .filter_map(|r| st[r.vm][r.vcpu].deadline)
            .min()
    }

    /// Whether a vCPU other than the running `v` that had been waiting for
    /// at least [`SchedParams::long_wait`] is ready now, once what waits
    /// for its VM is delivered. Only vCPUs that waited that long are
    /// looked at, so the frequent wake-ups of a bulk transfer cost nothing
    /// here.
    fn woke_long_waiter<A: PcpuArch>(&self, arch: &mut A, v: VcpuRef, now: u64) -> bool {
        let long_wait = self.params.long_wait;
        self.queue.iter().any(|r| {
            let waited = r != v
                && self.waiting_since[r.vm][r.vcpu]
                    .is_some_and(|since| now.saturating_sub(since) >= long_wait);
            if waited && r.vm != v.vm {
                arch.deliver_pending(r.vm);
            }
            waited && arch.status(r, now, false).ready
        })
    }

    /// Runs `v` until its slice ends, it blocks, yields or stops, or the
    /// loop has work.
    fn run<A: PcpuArch>(&mut self, arch: &mut A, v: VcpuRef, st: &StatusTable, start: u64) {
        if self.loaded != Some(v) {
            self.put_loaded(arch);
            arch.load(v);
            self.loaded = Some(v);
        }
        let p = self.params;
        let wake = self.waiting_deadlines(st, Some(v));
        let mut contended = self.queue.iter().any(|r| r != v && st[r.vm][r.vcpu].alive);
        let mut slice_end = start.saturating_add(p.slice);
        // One clock reading per exit (each costs a call into the emulator
        // under QEMU): the one taken after an exit also bounds the next
        // entry's minimum run, which therefore starts that little earlier.
        let mut now = arch.now();
        loop {
            arch.deliver_pending(v.vm);
            let chores = arch.housekeeping_deadline();
            let mut deadline = earliest(wake, chores);
            if contended {
                deadline = earliest(deadline, Some(slice_end));
            }
            arch.arm_timer(deadline.map(|d| d.max(now.saturating_add(p.min_run))));
            let exit = arch.enter(v);
            now = arch.now();
            if exit.action != ExitAction::Continue || exit.service {
                return;
            }
            if exit.woke_others {
                if self.woke_long_waiter(arch, v, now) {
                    return;
                }
                contended = true;
                slice_end = slice_end.min(now.saturating_add(p.wake_grace));
            }
            let passed = |d: Option<u64>| d.is_some_and(|d| now >= d);
            if (contended && now >= slice_end) || passed(wake) || passed(chores) {
                return;
            }
        }
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
