//! The scheduling policy against a fake machine: a simulated counter,
//! scripted guests (busy loops, interactive bursts, timers) and external
//! wake-ups (frames, console input, console commands) at random times.
//! Every property is checked on every step of every run.
//!
//! Longer than 800 lines on purpose: most of it is the fake machine
//! (`FakeVcpu`, `FakeArch`) and its property checks, which every scenario
//! shares.

use super::*;
use crate::test_rng::Rng;

const SLICE: u64 = 10_000;
const PARAMS: SchedParams = SchedParams {
    slice: SLICE,
    wake_grace: SLICE / 10,
    min_run: SLICE / 20,
    long_wait: SLICE,
};

/// What a simulated guest does when it runs.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Never waits (`while :; do :; done`); exits every `exit_every` ticks
    /// for an emulated access.
    Hog { exit_every: u64 },
    /// Never waits, and every exit sends a frame to the other VMs (the two
    /// ends of a bulk transfer).
    Chatty { exit_every: u64 },
    /// Handles each wake-up with `work` ticks of computing, then waits in
    /// WFI with its timer armed `period` ticks ahead (or no timer).
    Burst { work: u64, period: Option<u64> },
}

#[derive(Clone, Debug)]
struct FakeVcpu {
    r: VcpuRef,
    behaviour: Behaviour,
    alive: bool,
    waiting: bool,
    pending: bool,
    timer: Option<u64>,
    work_left: u64,
    /// When the VM stops (by itself, e.g. a fault).
    stop_at: Option<u64>,
    /// Since when it has been ready without being entered.
    ready_since: Option<u64>,
    entries: u64,
    ran: u64,
    /// The guest resets its VM after running this long since it started.
    reboot_every: Option<u64>,
    ran_since_start: u64,
    /// Units of restart work left (the VM is being restarted while > 0).
    restart_units: u64,
    restarts: u64,
}

impl FakeVcpu {
    fn new(r: VcpuRef, behaviour: Behaviour) -> Self {
        FakeVcpu {
            r,
            behaviour,
            alive: true,
            waiting: false,
            pending: false,
            timer: None,
            work_left: match behaviour {
                Behaviour::Burst { work, .. } => work,
                Behaviour::Hog { .. } | Behaviour::Chatty { .. } => 0,
            },
            stop_at: None,
            ready_since: Some(0),
            entries: 0,
            ran: 0,
            reboot_every: None,
            ran_since_start: 0,
            restart_units: 0,
            restarts: 0,
        }
    }

    fn ready(&self, now: u64) -> bool {
        self.alive
            && (self.restart_units > 0
                || !self.waiting
                || self.pending
                || self.timer.is_some_and(|t| t <= now))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// A frame or console byte for this VM's vCPU 0.
    Wake(usize),
    /// A console command (statistics) typed on the console.
    Command,
}

struct FakeArch {
    now: u64,
    vcpus: Vec<FakeVcpu>,
    loaded: Option<VcpuRef>,
    armed: Option<u64>,
    /// Future external events, sorted by time.
    events: Vec<(u64, Event)>,
    chores: Option<u64>,
    commands_waiting: Vec<u64>,
    /// Worst time from a console command to its service.
    worst_command: u64,
    /// Worst time a vCPU waited from ready to entered, and the bound.
    worst_wait: u64,
    bound: u64,
    idles: u64,
    running: Option<VcpuRef>,
    ever_armed: bool,
    /// End of the simulation: the guest running then is taken out as if
    /// a console command arrived (a lone busy vCPU never returns otherwise).
    end: u64,
    /// Ticks one unit of restart work takes, and units per restart.
    unit_cost: u64,
    units_per_restart: u64,
    units_done: u64,
    /// Calls of `now` (each a clock read in the machine).
    clock_reads: u64,
}

impl FakeArch {
    fn new(vcpus: Vec<FakeVcpu>) -> Self {
        let n = vcpus.len() as u64;
        FakeArch {
            now: 0,
            vcpus,
            loaded: None,
            armed: None,
            events: Vec::new(),
            chores: None,
            commands_waiting: Vec::new(),
            worst_command: 0,
            worst_wait: 0,
            // One slice per vCPU on the pCPU, each possibly stretched by the
            // minimum run after a late entry.
            bound: n * (PARAMS.slice + PARAMS.min_run),
            idles: 0,
            running: None,
            ever_armed: false,
            end: u64::MAX,
            unit_cost: SLICE / 2,
            units_per_restart: 0,
            units_done: 0,
            clock_reads: 0,
        }
    }

    fn vcpu(&mut self, r: VcpuRef) -> &mut FakeVcpu {
        self.vcpus
            .iter_mut()
            .find(|v| v.r == r)
            .expect("vCPU exists")
    }

    fn next_event_time(&self) -> Option<u64> {
        self.events.first().map(|e| e.0)
    }

    /// Marks vCPUs whose timers passed as ready (as the real glue's status
    /// and the hardware timer do) and records since when.
    fn note_ready(&mut self) {
        let now = self.now;
        for v in &mut self.vcpus {
            if v.ready(now) && v.ready_since.is_none() && Some(v.r) != self.running {
                v.ready_since = Some(
                    v.timer
                        .filter(|&t| t <= now && v.waiting && !v.pending)
                        .unwrap_or(now),
                );
            }
        }
    }

    /// Applies the first event; returns whether it woke a vCPU other than
    /// the running one and whether it was a console command.
    fn apply_event(&mut self) -> (bool, bool) {
        let (at, ev) = self.events.remove(0);
        assert_eq!(at, self.now);
        match ev {
            Event::Wake(vm) => {
                let r = VcpuRef { vm, vcpu: 0 };
                let running = self.running;
                let v = self.vcpu(r);
                if !v.alive {
                    return (false, false);
                }
                v.pending = true;
                (Some(r) != running, false)
            }
            Event::Command => {
                self.commands_waiting.push(at);
                (false, true)
            }
        }
    }
}

impl PcpuArch for FakeArch {
    fn now(&mut self) -> u64 {
        self.clock_reads += 1;
        self.now
    }

    fn housekeeping(&mut self) {
        for at in self.commands_waiting.drain(..) {
            self.worst_command = self.worst_command.max(self.now - at);
        }
        if self.chores.is_some_and(|c| c <= self.now) {
            self.chores = None;
        }
    }

    fn housekeeping_deadline(&mut self) -> Option<u64> {
        self.chores
    }

    fn deliver_pending(&mut self, _vm: usize) {}

    fn status(&mut self, r: VcpuRef, now: u64, loaded: bool) -> VcpuStatus {
        assert_eq!(
            loaded,
            self.loaded == Some(r),
            "policy and machine agree on the loaded vCPU"
        );
        let v = self.vcpu(r);
        if v.restart_units > 0 {
            return VcpuStatus {
                alive: true,
                ready: true,
                deadline: None,
                maintenance: true,
            };
        }
        VcpuStatus {
            maintenance: false,
            alive: v.alive,
            ready: v.ready(now),
            // Like the hardware side: an armed, unexpired timer of a vCPU
            // out of the CPU is reported whether or not it is ready.
            deadline: if loaded || !v.alive {
                None
            } else {
                v.timer.filter(|&t| t > now)
            },
        }
    }

    fn load(&mut self, r: VcpuRef) {
        assert!(self.loaded.is_none(), "load over a loaded vCPU");
        self.loaded = Some(r);
    }

    fn put(&mut self, r: VcpuRef) {
        assert_eq!(self.loaded, Some(r));
        self.loaded = None;
    }

    fn arm_timer(&mut self, deadline: Option<u64>) {
        self.armed = deadline;
        self.ever_armed |= deadline.is_some();
    }

    fn enter(&mut self, r: VcpuRef) -> Exit {
        assert_eq!(self.loaded, Some(r), "entered vCPU is loaded");
        let now = self.now;
        let bound = self.bound;
        let v = self.vcpu(r);
        assert!(v.alive, "a stopped VM is never entered");
        if let Some(since) = v.ready_since.take() {
            let waited = now - since;
            assert!(
                waited <= bound,
                "{r:?} waited {waited} > {bound} ticks to run"
            );
            self.worst_wait = self.worst_wait.max(waited);
        }
        let v = self.vcpu(r);
        v.entries += 1;
        if v.waiting {
            assert!(
                v.ready(now),
                "{r:?} entered while waiting with nothing deliverable"
            );
            v.waiting = false;
            v.pending = false;
            v.timer = None;
            if let Behaviour::Burst { work, .. } = v.behaviour {
                v.work_left = work;
            }
        }
        assert_eq!(v.restart_units, 0, "a restarting VM is never entered");
        // How long the guest runs before it exits by itself.
        let mut own = match v.behaviour {
            Behaviour::Hog { exit_every } | Behaviour::Chatty { exit_every } => exit_every,
            Behaviour::Burst { .. } => v.work_left.max(1),
        };
        if let Some(every) = v.reboot_every {
            own = own.min(every.saturating_sub(v.ran_since_start).max(1));
        }
        let stop_at = v.stop_at;
        let mut until = now + own;
        for t in [self.armed, self.next_event_time(), stop_at]
            .into_iter()
            .flatten()
        {
            until = until.min(t.max(now + 1));
        }
        self.running = Some(r);
        let ran = until - now;
        self.now = until;
        let units = self.units_per_restart;
        let v = self.vcpu(r);
        v.ran += ran;
        v.ran_since_start += ran;
        if let Behaviour::Burst { .. } = v.behaviour {
            v.work_left = v.work_left.saturating_sub(ran);
        }
        let mut exit = Exit::CONTINUE;
        if let Behaviour::Chatty { .. } = v.behaviour {
            exit.woke_others = true;
        }
        if stop_at.is_some_and(|s| s <= until) {
            v.alive = false;
            exit.action = ExitAction::Stop;
        } else if v.reboot_every.is_some_and(|e| v.ran_since_start >= e) {
            // PSCI SYSTEM_RESET: the run loop reports it as a block.
            v.restart_units = units;
            v.waiting = false;
            v.pending = false;
            v.timer = None;
            exit.action = ExitAction::Block;
        } else if let Behaviour::Burst { period, .. } = v.behaviour
            && v.work_left == 0
        {
            v.waiting = true;
            v.timer = period.map(|p| until + p);
            exit.action = ExitAction::Block;
        }
        if self.armed.is_some_and(|a| a <= until) {
            self.armed = None; // the tick fired and was serviced
        }
        while self.next_event_time().is_some_and(|t| t <= until) {
            let (woke, command) = self.apply_event();
            exit.woke_others |= woke;
            exit.service |= command;
        }
        exit.service |= until >= self.end;
        self.running = None;
        self.note_ready();
        exit
    }

    fn maintain(&mut self, vm: usize) {
        assert!(
            self.loaded.is_none_or(|l| l.vm != vm),
            "vm{vm} is rebuilt while one of its vCPUs is loaded"
        );
        let now = self.now;
        let bound = self.bound;
        let cost = self.unit_cost;
        let r = VcpuRef { vm, vcpu: 0 };
        let v = self.vcpu(r);
        assert!(v.restart_units > 0, "maintain without restart work");
        if let Some(since) = v.ready_since.take() {
            let waited = now - since;
            assert!(waited <= bound, "{r:?}'s restart waited {waited} > {bound}");
        }
        v.restart_units -= 1;
        if v.restart_units == 0 {
            v.restarts += 1;
            v.ran_since_start = 0;
            if let Behaviour::Burst { work, .. } = v.behaviour {
                v.work_left = work;
            }
        }
        self.units_done += 1;
        self.running = Some(r);
        let until = now + cost;
        while let Some(t) = self.next_event_time().filter(|&t| t <= until) {
            self.now = t.max(now);
            self.apply_event();
        }
        self.now = until;
        if self.armed.is_some_and(|a| a <= self.now) {
            self.armed = None;
        }
        self.running = None;
        self.note_ready();
    }

    fn idle(&mut self) {
        self.idles += 1;
        let now = self.now;
        // Nothing may be ready while the CPU sleeps.
        for v in &self.vcpus {
            assert!(!v.ready(now), "idle while {:?} is ready", v.r);
        }
        // The timer is armed for the earliest deadline of a waiting vCPU.
        let earliest = self
            .vcpus
            .iter()
            .filter(|v| v.alive && v.waiting && !v.pending)
            .filter_map(|v| v.timer)
            .chain(self.chores)
            .min();
        assert_eq!(
            self.armed, earliest,
            "idle sleeps until the earliest deadline"
        );
        let wake = [self.armed, self.next_event_time()]
            .into_iter()
            .flatten()
            .min();
        let wake = wake.expect("idle with no timer and no event would sleep forever");
        self.now = wake.max(now);
        if self.armed.is_some_and(|a| a <= self.now) {
            self.armed = None;
        }
        while self.next_event_time().is_some_and(|t| t <= self.now) {
            self.apply_event();
        }
        self.note_ready();
    }
}

fn v(vm: usize, vcpu: usize) -> VcpuRef {
    VcpuRef { vm, vcpu }
}

fn queue_of(vcpus: &[FakeVcpu]) -> RunQueue {
    let mut q = RunQueue::new();
    for f in vcpus {
        assert!(q.add(f.r));
    }
    q
}

/// Runs the policy until `end`, then checks that nothing ready was left
/// waiting longer than the bound.
fn simulate(arch: &mut FakeArch, policy: &mut PcpuPolicy, end: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    arch.end = end;
    while arch.now < end {
        let step = policy.step(arch);
        steps.push(step);
        if step == Step::AllStopped {
            break;
        }
        assert!(steps.len() < 1_000_000, "the policy makes no progress");
    }
    let now = arch.now;
    for f in &arch.vcpus {
        if let Some(since) = f.ready_since
            && f.alive
        {
            assert!(
                now - since <= arch.bound,
                "{:?} ready since {since}, never ran (now {now})",
                f.r
            );
        }
    }
    steps
}

/// vm0 answers pings (300 ticks of work per frame, a timer every 4
/// slices; waiting now, its timer due at 7 slices); vm1 runs
/// `while :; do :; done`.
fn pinger_and_hog() -> [FakeVcpu; 2] {
    let mut pinger = FakeVcpu::new(
        v(0, 0),
        Behaviour::Burst {
            work: 300,
            period: Some(4 * SLICE),
        },
    );
    pinger.waiting = true;
    pinger.timer = Some(7 * SLICE);
    pinger.ready_since = None;
    let hog = FakeVcpu::new(
        v(1, 0),
        Behaviour::Hog {
            exit_every: 1_000_000,
        },
    );
    [pinger, hog]
}

#[test]
fn a_hog_does_not_freeze_its_neighbour() {
    // The reported case: vm1 runs `while :; do :; done`, vm0 answers pings
    // (a frame every 3 slices) and has its own periodic timer.
    let vcpus = pinger_and_hog().to_vec();
    let mut arch = FakeArch::new(vcpus);
    arch.events = (1..200)
        .map(|i| (i * 3 * SLICE + 17, Event::Wake(0)))
        .collect();
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 600 * SLICE);
    // Every frame is answered within about one grace period after it
    // arrived, since the wake-up cuts the hog's slice.
    assert!(
        arch.worst_wait <= PARAMS.wake_grace + PARAMS.min_run,
        "worst wait {} ticks",
        arch.worst_wait
    );
    assert!(
        arch.vcpus[0].entries >= 199,
        "vm0 ran {} times",
        arch.vcpus[0].entries
    );
    // The hog still gets nearly all of the CPU.
    assert!(
        arch.vcpus[1].ran > 590 * SLICE,
        "hog ran {}",
        arch.vcpus[1].ran
    );
}

#[test]
fn a_timer_of_a_waiting_vcpu_ends_the_busy_ones_run() {
    // vm0 blocks with its timer due in 2.5 slices while it is still loaded;
    // vm1 is busy. vm0 must run when its timer fires, not when vm1 stops.
    let mut vcpus = vec![
        FakeVcpu::new(
            v(0, 0),
            Behaviour::Burst {
                work: 100,
                period: Some(2 * SLICE + SLICE / 2),
            },
        ),
        FakeVcpu::new(
            v(1, 0),
            Behaviour::Hog {
                exit_every: 1_000_000,
            },
        ),
    ];
    vcpus[1].ready_since = None;
    vcpus[1].waiting = true;
    vcpus[1].pending = true;
    let mut arch = FakeArch::new(vcpus);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    assert_eq!(policy.step(&mut arch), Step::Ran(v(0, 0)));
    assert!(arch.vcpus[0].waiting);
    let due = arch.vcpus[0].timer.unwrap();
    // vm1 runs until the slice ends or vm0's timer is due, whichever first.
    while arch.now < due {
        assert_eq!(policy.step(&mut arch), Step::Ran(v(1, 0)));
    }
    assert_eq!(arch.now, due, "vm1's run ended exactly at vm0's deadline");
    assert_eq!(policy.step(&mut arch), Step::Ran(v(0, 0)));
}

#[test]
fn a_lone_busy_vcpu_is_not_interrupted_by_slices() {
    let mut lone = FakeVcpu::new(
        v(0, 0),
        Behaviour::Hog {
            exit_every: 3 * SLICE,
        },
    );
    lone.stop_at = Some(15 * SLICE + 1);
    let mut arch = FakeArch::new(vec![lone]);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    // No timer while nobody else could want the CPU: one step runs the
    // guest through all its own exits, loaded the whole time.
    assert_eq!(policy.step(&mut arch), Step::Ran(v(0, 0)));
    assert!(
        !arch.ever_armed,
        "a slice timer was armed with no contender"
    );
    assert_eq!(arch.vcpus[0].entries, 6);
    assert_eq!(policy.step(&mut arch), Step::AllStopped);
}

#[test]
fn a_run_reads_the_clock_once_per_exit() {
    let mut lone = FakeVcpu::new(v(0, 0), Behaviour::Hog { exit_every: 1000 });
    lone.stop_at = Some(50 * 1000 + 1);
    let mut arch = FakeArch::new(vec![lone]);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    assert_eq!(policy.step(&mut arch), Step::Ran(v(0, 0)));
    let entries = arch.vcpus[0].entries;
    assert_eq!(entries, 51);
    // The step's reading, the run's first, then one per exit.
    assert_eq!(arch.clock_reads, 2 + entries);
}

#[test]
fn console_commands_are_served_at_the_next_exit_even_when_everyone_is_busy() {
    let vcpus = (0..3)
        .map(|vm| {
            FakeVcpu::new(
                v(vm, 0),
                Behaviour::Hog {
                    exit_every: 1 << 40,
                },
            )
        })
        .collect();
    let mut arch = FakeArch::new(vcpus);
    arch.events = (0..50)
        .map(|i| (i * 7 * SLICE + 123, Event::Command))
        .collect();
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 400 * SLICE);
    assert!(arch.events.is_empty());
    assert_eq!(arch.worst_command, 0, "a command waited for a slice to end");
}

#[test]
fn idle_sleeps_until_the_earliest_deadline_and_a_console_flush() {
    let mut vcpus = vec![
        FakeVcpu::new(
            v(0, 0),
            Behaviour::Burst {
                work: 10,
                period: Some(5 * SLICE),
            },
        ),
        FakeVcpu::new(
            v(1, 0),
            Behaviour::Burst {
                work: 10,
                period: Some(3 * SLICE),
            },
        ),
    ];
    for f in &mut vcpus {
        f.waiting = true;
        f.ready_since = None;
    }
    vcpus[0].timer = Some(9 * SLICE);
    vcpus[1].timer = Some(4 * SLICE);
    let mut arch = FakeArch::new(vcpus);
    arch.chores = Some(2 * SLICE);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    assert_eq!(
        policy.step(&mut arch),
        Step::Idled {
            wake: Some(2 * SLICE)
        }
    );
    assert_eq!(arch.now, 2 * SLICE);
    assert_eq!(
        policy.step(&mut arch),
        Step::Idled {
            wake: Some(4 * SLICE)
        }
    );
    assert_eq!(policy.step(&mut arch), Step::Ran(v(1, 0)));
    // vm1 re-armed for 3 slices later, vm0 is still due at 9 slices.
    assert_eq!(
        policy.step(&mut arch),
        Step::Idled {
            wake: Some(4 * SLICE + 10 + 3 * SLICE)
        }
    );
    // The idle checks in the fake assert the same on every sleep.
    simulate(&mut arch, &mut policy, 200 * SLICE);
    assert!(arch.idles > 10);
}

#[test]
fn a_stopped_vm_never_blocks_the_others() {
    let mut vcpus = vec![
        FakeVcpu::new(v(0, 0), Behaviour::Hog { exit_every: 2_000 }),
        FakeVcpu::new(
            v(1, 0),
            Behaviour::Burst {
                work: 500,
                period: Some(SLICE),
            },
        ),
        FakeVcpu::new(v(2, 0), Behaviour::Hog { exit_every: 50_000 }),
    ];
    vcpus[0].stop_at = Some(5 * SLICE + 7);
    vcpus[2].stop_at = Some(40 * SLICE);
    let mut arch = FakeArch::new(vcpus);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 100 * SLICE);
    assert!(!arch.vcpus[0].alive && !arch.vcpus[2].alive);
    // vm1 ran about once per period all along.
    assert!(
        arch.vcpus[1].entries > 80,
        "vm1 entries {}",
        arch.vcpus[1].entries
    );
    // When the last VM stops, the step says so and nothing stays loaded.
    arch.vcpus[1].stop_at = Some(arch.now + 1);
    arch.vcpus[1].pending = true;
    let end = arch.now + 10 * SLICE;
    let steps = simulate(&mut arch, &mut policy, end);
    assert_eq!(steps.last(), Some(&Step::AllStopped));
    assert_eq!(arch.loaded, None);
}

/// A busy guest one time in `hog_one_in`, otherwise an interactive one
/// with random work and (mostly) a random timer period.
fn random_behaviour(rng: &mut Rng, hog_one_in: u64) -> Behaviour {
    if rng.below(hog_one_in) == 0 {
        Behaviour::Hog {
            exit_every: 1 + rng.below(3 * SLICE),
        }
    } else {
        Behaviour::Burst {
            work: 1 + rng.below(2 * SLICE),
            period: (rng.below(4) != 0).then(|| 1 + rng.below(8 * SLICE)),
        }
    }
}

/// Wake-ups of random VMs and console commands (one in ten) at random
/// times until `end`.
fn random_events(rng: &mut Rng, end: u64, nr_vms: usize) -> Vec<(u64, Event)> {
    let mut events = Vec::new();
    let mut t = 0;
    while t < end {
        t += 1 + rng.below(4 * SLICE);
        let ev = if rng.below(10) == 0 {
            Event::Command
        } else {
            Event::Wake(rng.below(nr_vms as u64) as usize)
        };
        events.push((t, ev));
    }
    events
}

#[test]
fn random_loads_keep_every_bound() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let nr_vms = 1 + rng.below(4) as usize;
        let vcpus_per_vm = 1 + rng.below(2) as usize;
        let mut vcpus = Vec::new();
        for vm in 0..nr_vms {
            for vcpu in 0..vcpus_per_vm {
                let behaviour = random_behaviour(&mut rng, 3);
                let mut f = FakeVcpu::new(v(vm, vcpu), behaviour);
                if rng.below(5) == 0 {
                    f.stop_at = Some(rng.below(150 * SLICE));
                }
                vcpus.push(f);
            }
        }
        let end = 200 * SLICE;
        let mut arch = FakeArch::new(vcpus);
        arch.events = random_events(&mut rng, end, nr_vms);
        if rng.below(2) == 0 {
            arch.chores = Some(rng.below(end));
        }
        let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
        simulate(&mut arch, &mut policy, end);
        assert_eq!(
            arch.worst_command, 0,
            "seed {seed}: a console command waited"
        );
        // Ready vCPUs that are alive got CPU time.
        for f in &arch.vcpus {
            if f.alive && f.stop_at.is_none() && matches!(f.behaviour, Behaviour::Hog { .. }) {
                assert!(f.entries > 0, "seed {seed}: {:?} never ran", f.r);
            }
        }
    }
}

#[test]
fn a_wake_up_for_a_waiting_vcpu_cuts_a_chatty_slice() {
    // The same chatty sender, but its peer waits in WFI: every frame may be
    // for it, so the sender's slice is cut to the grace period.
    let mut vcpus = vec![
        FakeVcpu::new(v(0, 0), Behaviour::Chatty { exit_every: 100 }),
        FakeVcpu::new(
            v(1, 0),
            Behaviour::Burst {
                work: 50,
                period: None,
            },
        ),
    ];
    vcpus[1].waiting = true;
    vcpus[1].ready_since = None;
    let mut arch = FakeArch::new(vcpus);
    arch.events = (1..100).map(|i| (i * 5 * SLICE, Event::Wake(1))).collect();
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 500 * SLICE);
    assert!(
        arch.worst_wait <= PARAMS.wake_grace + PARAMS.min_run,
        "worst wait {} ticks",
        arch.worst_wait
    );
}

/// vm0 waits in WFI without a timer and does 300 ticks of work per frame;
/// vm1 runs `while :; do :; done`; a frame for vm0 arrives every
/// `every` ticks.
fn idle_peer_and_hog(every: u64) -> FakeArch {
    let mut idle = FakeVcpu::new(
        v(0, 0),
        Behaviour::Burst {
            work: 300,
            period: None,
        },
    );
    idle.waiting = true;
    idle.ready_since = None;
    let hog = FakeVcpu::new(
        v(1, 0),
        Behaviour::Hog {
            exit_every: 1_000_000,
        },
    );
    let mut arch = FakeArch::new(vec![idle, hog]);
    arch.events = (1..200).map(|i| (i * every + 17, Event::Wake(0))).collect();
    arch
}

#[test]
fn a_vcpu_woken_after_a_long_wait_runs_at_the_waking_exit() {
    // An idle VM answering pings: each frame comes after more than a
    // slice of waiting, so the busy vCPU's run ends at the exit that
    // brought it, without the grace.
    let mut arch = idle_peer_and_hog(3 * SLICE);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 600 * SLICE);
    // The only waits left are the hog's, for vm0's 300 ticks of work
    // (vm0 would wait the grace, 1000 ticks, otherwise).
    assert!(
        arch.worst_wait <= 300,
        "worst wait {} ticks",
        arch.worst_wait
    );
    assert!(
        arch.vcpus[0].entries >= 199,
        "vm0 ran {} times",
        arch.vcpus[0].entries
    );
    assert!(
        arch.vcpus[1].ran > 590 * SLICE,
        "hog ran {}",
        arch.vcpus[1].ran
    );
}

#[test]
fn a_vcpu_woken_after_a_short_wait_gets_the_cpu_after_the_grace() {
    // The receiving end of a stream: woken every half slice, it never
    // waits long, so the sender keeps running for the grace each time
    // (fewer switches) and the bound still holds.
    let mut arch = idle_peer_and_hog(SLICE / 2);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 100 * SLICE);
    assert_eq!(arch.worst_wait, PARAMS.wake_grace);
    assert!(
        arch.vcpus[0].entries >= 199,
        "vm0 ran {} times",
        arch.vcpus[0].entries
    );
}

#[test]
fn the_timer_of_a_ready_vcpu_does_not_cut_a_run() {
    // vm1 is busy and its guest timer ticks every 2 ms; it gets the CPU at
    // the end of vm0's slice anyway, so its ticks must not end vm0's runs
    // (each cut would cost vm0 the rest of its slice).
    let mut vcpus = vec![
        FakeVcpu::new(
            v(0, 0),
            Behaviour::Hog {
                exit_every: 1 << 40,
            },
        ),
        FakeVcpu::new(
            v(1, 0),
            Behaviour::Hog {
                exit_every: 1 << 40,
            },
        ),
    ];
    vcpus[1].timer = Some(SLICE / 5);
    let mut arch = FakeArch::new(vcpus);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    assert_eq!(policy.step(&mut arch), Step::Ran(v(0, 0)));
    assert_eq!(arch.now, SLICE, "vm0 ran its whole slice");
}

#[test]
fn hogs_share_the_cpu_fairly() {
    let vcpus = (0..3)
        .map(|vm| FakeVcpu::new(v(vm, 0), Behaviour::Hog { exit_every: 777 }))
        .collect();
    let mut arch = FakeArch::new(vcpus);
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    simulate(&mut arch, &mut policy, 3000 * SLICE);
    let ran: Vec<u64> = arch.vcpus.iter().map(|f| f.ran).collect();
    let (min, max) = (*ran.iter().min().unwrap(), *ran.iter().max().unwrap());
    assert!(
        max - min <= 2 * (SLICE + PARAMS.min_run),
        "unequal shares {ran:?}"
    );
}

#[test]
fn a_vm_rebooting_in_a_loop_cannot_starve_its_neighbours() {
    // vm0 answers pings, vm1 is busy, vm2 resets itself after every 2
    // slices of running; each restart is 40 units of half a slice.
    let [pinger, hog] = pinger_and_hog();
    let mut vcpus = vec![
        pinger,
        hog,
        FakeVcpu::new(v(2, 0), Behaviour::Hog { exit_every: 3_000 }),
    ];
    vcpus[2].reboot_every = Some(2 * SLICE);
    let mut arch = FakeArch::new(vcpus);
    arch.units_per_restart = 40;
    arch.events = (1..300)
        .map(|i| {
            let ev = if i % 10 == 0 {
                Event::Command
            } else {
                Event::Wake(0)
            };
            (i * 3 * SLICE + 17, ev)
        })
        .collect();
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    let end = 1000 * SLICE;
    let steps = simulate(&mut arch, &mut policy, end);
    // The waits stayed within the bound (checked on every entry and unit);
    // the reboot loop made progress and the others were not starved.
    assert!(
        arch.vcpus[2].restarts >= 10,
        "{} restarts",
        arch.vcpus[2].restarts
    );
    let maintained = steps
        .iter()
        .filter(|s| matches!(s, Step::Maintained(r) if r.vm == 2))
        .count() as u64;
    assert_eq!(maintained, arch.units_done);
    assert!(
        arch.vcpus[1].ran > end * 2 / 5,
        "the busy neighbour got {} of {end}",
        arch.vcpus[1].ran
    );
    assert!(
        arch.vcpus[0].entries >= 270,
        "vm0 ran {} times",
        arch.vcpus[0].entries
    );
    // A console command waits at most for the unit in progress.
    assert!(arch.worst_command <= arch.unit_cost);
}

#[test]
fn restart_units_run_back_to_back_when_the_others_wait() {
    let mut vcpus = vec![
        FakeVcpu::new(
            v(0, 0),
            Behaviour::Burst {
                work: 10,
                period: Some(500 * SLICE),
            },
        ),
        FakeVcpu::new(v(1, 0), Behaviour::Hog { exit_every: 1_000 }),
        FakeVcpu::new(v(1, 1), Behaviour::Hog { exit_every: 1_000 }),
    ];
    vcpus[0].waiting = true;
    vcpus[0].timer = Some(400 * SLICE);
    vcpus[0].ready_since = None;
    vcpus[1].reboot_every = Some(1_500);
    let mut arch = FakeArch::new(vcpus);
    arch.units_per_restart = 25;
    let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
    // vm1's vCPU 0 runs and resets the VM; it is still loaded then.
    assert_eq!(policy.step(&mut arch), Step::Ran(v(1, 0)));
    assert_eq!(policy.loaded(), Some(v(1, 0)));
    assert_eq!(arch.vcpus[1].restart_units, 25);
    // Its vCPU 1 would run while the VM is rebuilt: the real machine
    // reports it dead then.
    arch.vcpus[2].alive = false;
    for _ in 0..25 {
        assert_eq!(policy.step(&mut arch), Step::Maintained(v(1, 0)));
        assert_eq!(policy.loaded(), None, "nothing stays loaded");
    }
    assert_eq!(arch.idles, 0, "the CPU never slept with restart work left");
    assert_eq!(arch.vcpus[1].restarts, 1);
    assert_eq!(policy.step(&mut arch), Step::Ran(v(1, 0)));
}

#[test]
fn random_loads_with_reboot_loops_keep_every_bound() {
    let mut restarts = 0;
    for seed in 1..=150u64 {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        let nr_vms = 2 + rng.below(3) as usize;
        let mut vcpus = Vec::new();
        for vm in 0..nr_vms {
            let behaviour = random_behaviour(&mut rng, 2);
            let mut f = FakeVcpu::new(v(vm, 0), behaviour);
            if rng.below(2) == 0 {
                f.reboot_every = Some(1 + rng.below(5 * SLICE));
            }
            vcpus.push(f);
        }
        let end = 300 * SLICE;
        let mut arch = FakeArch::new(vcpus);
        arch.units_per_restart = 1 + rng.below(60);
        arch.unit_cost = 1 + rng.below(SLICE);
        arch.events = random_events(&mut rng, end, nr_vms);
        let mut policy = PcpuPolicy::new(queue_of(&arch.vcpus), PARAMS);
        simulate(&mut arch, &mut policy, end);
        assert!(
            arch.worst_command <= arch.unit_cost,
            "seed {seed}: a console command waited {} ticks",
            arch.worst_command
        );
        restarts += arch.vcpus.iter().map(|f| f.restarts).sum::<u64>();
    }
    // The loops really rebooted, many times over.
    assert!(restarts > 1000, "only {restarts} restarts in all seeds");
}
