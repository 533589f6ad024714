//! The run loops: every physical CPU runs the vCPUs placed on it.
//!
//! (About 860 lines on purpose: the hardware side of the scheduling
//! policy — interrupts, console, statistics, entry/exit, restarts and
//! capture flushing — shares the per-pCPU state and the statics below;
//! the decisions themselves are in `sched::policy`.)
//!
//! One loop serves all three modes of the design (single VM, several VMs
//! time-sliced on one pCPU, VMs pinned to pCPUs): what differs is only the
//! run queue each pCPU gets ([`crate::sched::build_run_queues`]). The
//! decisions — which vCPU runs, how long its slice is, when a wake-up ends
//! it, when the CPU sleeps and until when — are the host-tested policy in
//! [`crate::sched::policy`]; this file is its hardware side (`Machine`):
//!
//! * housekeeping: physical interrupts (hypervisor tick, virtual timer,
//!   vGIC maintenance, UART input on pCPU 0, kick SGIs), the statistics
//!   command, console flushes;
//! * delivery of what waits for each VM (console input bytes into its
//!   PL011, frames from its switch port into its virtio-net RX queue) and
//!   each vCPU's status (a vCPU in WFI is ready only when an interrupt is
//!   deliverable to it; the timer of a vCPU out of the CPU is checked in
//!   software);
//! * one guest entry and exit (vGIC flush/sync, world switch, exit
//!   handling), reporting whether it woke another vCPU of this pCPU (a frame
//!   for its port, console input, an SGI or CPU_ON, a kick) or left a
//!   console command waiting;
//! * the EL2 timer and `wfi`;
//! * VM restarts (a guest's PSCI `SYSTEM_RESET`, or `Ctrl-\ r N`): one
//!   bounded unit of [`crate::restart::restart_step`] per turn the policy
//!   gives the VM ([`PcpuArch::maintain`]), and stops from the console
//!   (`Ctrl-\ k N`). Console requests reach the VM's pCPU through
//!   `LIFECYCLE` and a kick, and are carried out in its housekeeping.
//!
//! Each VM is only ever touched by the pCPU it is placed on; what crosses
//! pCPUs goes through lock-free rings (console input, network frames) and a
//! kick SGI.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use spin::{Mutex, MutexGuard};

use crate::console::{ConsoleMux, ConsoleSink, InputAction};
use crate::mmio::DeviceContext;
use crate::net::{PORT_RX, VSWITCH};
use crate::platform::{
    INTID_HYP_TIMER, INTID_VGIC_MAINTENANCE, INTID_VIRT_TIMER, MAX_PCPUS, MAX_VMS, SGI_KICK,
    UART_INTID,
};
use crate::print::{REPORT_GATE, REPORT_LOCK_ATTEMPTS};
use crate::psci::PowerState;
use crate::restart::{RestartProgress, restart_step};
use crate::sched::{
    Exit, ExitAction, PcpuArch, PcpuPolicy, RunQueue, SchedParams, Step, VcpuRef, VcpuStatus,
};
use crate::spsc::SpscRing;
use crate::trap::decode_sync;
use crate::vgic::{
    EntryPlan, ExitFacts, exit_needs_model, keep_interface, stay_kept, timer_line_settled,
};
use crate::virtio::net::{NetDeviceReport, drain_rx, retry_tx};
use crate::vm::{ExitOutcome, Fault, StopReason, Vm, VmState};

use super::guest::{self, VmSlot, clean_guest_range};
use super::world_switch::{ExitKind, enter_guest};
use super::{capture_file, gic, semihosting, timer, uart, vcpu, vgic_hw};

/// Milliseconds of counter time in `ticks` (counted from the machine's
/// reset when `ticks` is a counter value).
pub fn counter_ms(ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / vcpu::counter_frequency().max(1)
}

/// The console multiplexer, shared by every pCPU.
pub static CONSOLE: Mutex<Option<ConsoleMux>> = Mutex::new(None);
/// [`ConsoleMux::next_flush_at`] as of the last change of the multiplexer
/// (`u64::MAX`: none), so that the run loop reads the console's deadline
/// before every entry without taking its lock. Every holder of the lock
/// that may change it publishes it ([`publish_flush_at`]) before releasing.
static CONSOLE_FLUSH_AT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Console input bytes for each VM (producer: pCPU 0's UART handler;
/// consumer: the pCPU running the VM).
static INPUT: [SpscRing<u8, 1024>; MAX_VMS] = [const { SpscRing::new(0) }; MAX_VMS];
/// The pCPU each VM is placed on.
static PCPU_OF_VM: [AtomicUsize; MAX_VMS] = [const { AtomicUsize::new(0) }; MAX_VMS];
/// VMs that have not stopped yet.
static VMS_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// VMs that stopped unsuccessfully (fault, non-zero exit).
static VMS_FAILED: AtomicUsize = AtomicUsize::new(0);
/// Bumped by the console's stats command; each pCPU prints its VMs' stats.
static STATS_GENERATION: AtomicU32 = AtomicU32::new(0);
/// Run queue for each pCPU, taken by the pCPU when it starts.
static QUEUES: Mutex<[Option<RunQueue>; MAX_PCPUS]> = Mutex::new([const { None }; MAX_PCPUS]);
/// Times each vCPU was picked (diagnostics, printed with the statistics).
static PICKS: [[AtomicUsize; crate::platform::MAX_VCPUS]; MAX_VMS] =
    [const { [const { AtomicUsize::new(0) }; crate::platform::MAX_VCPUS] }; MAX_VMS];
/// Guest entries of each vCPU (diagnostics).
static ENTRIES: [[AtomicUsize; crate::platform::MAX_VCPUS]; MAX_VMS] =
    [const { [const { AtomicUsize::new(0) }; crate::platform::MAX_VCPUS] }; MAX_VMS];
/// Counter ticks each vCPU spent in guest runs (diagnostics), each run
/// counted between the run loop's clock readings around it, so with its
/// entry and exit handling: one reading per exit is all the loop takes.
static GUEST_TICKS: [[AtomicU64; crate::platform::MAX_VCPUS]; MAX_VMS] =
    [const { [const { AtomicU64::new(0) }; crate::platform::MAX_VCPUS] }; MAX_VMS];
/// Counter ticks each pCPU slept in `wfi` (diagnostics).
static IDLE_TICKS: [AtomicU64; MAX_PCPUS] = [const { AtomicU64::new(0) }; MAX_PCPUS];

/// Adds `n` to a per-vCPU counter that only the pCPU running the vCPU's VM
/// writes (others only read it): a plain load and store, no exclusive
/// read-modify-write loop (which QEMU emulates at a cost) on every exit.
fn add_single_writer(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// [`add_single_writer`] for a `usize` counter.
fn add_single_writer_usize(counter: &AtomicUsize, n: usize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Console requests for each VM ([`REQUEST_RESTART`], [`REQUEST_STOP`];
/// producer: pCPU 0's UART handler; consumer: the VM's pCPU).
static LIFECYCLE: [AtomicU8; MAX_VMS] = [const { AtomicU8::new(0) }; MAX_VMS];
const REQUEST_RESTART: u8 = 1;
const REQUEST_STOP: u8 = 2;
/// Counter value when each VM's current restart began (for the report).
static RESTART_BEGAN: [AtomicU64; MAX_VMS] = [const { AtomicU64::new(0) }; MAX_VMS];
/// Bytes of guest RAM one restart unit zeroes or loads: about one slice of
/// work under QEMU's emulation (far less on hardware), so a VM that reboots
/// in a loop delays each neighbour by at most that per turn.
const RESTART_UNIT: u64 = 1 << 20;

/// Set once the run loops may start.
static STARTED: AtomicBool = AtomicBool::new(false);

struct UartSink;

impl ConsoleSink for UartSink {
    fn write_bytes(&mut self, bytes: &[u8]) {
        uart::write_raw(bytes);
    }
}

/// Writes hypervisor messages through the console multiplexer (so they
/// never land in the middle of a guest's line), or straight to the UART
/// before the multiplexer is installed. The console lock also keeps
/// messages of different pCPUs apart. During a panic or exception report
/// the lock is taken through [`crate::print::REPORT_GATE`]: if it stays
/// held (by this CPU, interrupted inside the console code, or by a CPU
/// that stopped) the report goes to the UART directly instead of
/// deadlocking.
pub fn console_write_hv(s: &str) {
    let now = vcpu::counter();
    let Some(mut console) = REPORT_GATE.lock(&CONSOLE, REPORT_LOCK_ATTEMPTS) else {
        uart::write_bytes(s.as_bytes());
        return;
    };
    match console.as_mut() {
        Some(mux) => {
            mux.write_hv(s.as_bytes(), now, &mut UartSink);
            publish_flush_at(mux);
        }
        None => uart::write_bytes(s.as_bytes()),
    }
}

fn console_write_vm(vm: usize, bytes: &[u8]) {
    let now = vcpu::counter();
    if let Some(mux) = CONSOLE.lock().as_mut() {
        mux.write_vm(vm, bytes, now, &mut UartSink);
        publish_flush_at(mux);
    }
}

/// Publishes `mux`'s flush deadline for [`console_flush_deadline`] (called
/// with the console lock held, after any change).
fn publish_flush_at(mux: &ConsoleMux) {
    let at = mux.next_flush_at().unwrap_or(u64::MAX);
    CONSOLE_FLUSH_AT.store(at, Ordering::Release);
}

/// Installs the console multiplexer and routes hypervisor output through it.
pub fn install_console(mux: ConsoleMux) {
    let mut console = CONSOLE.lock();
    publish_flush_at(&mux);
    *console = Some(mux);
}

/// Registers VM `vm` as placed on `pcpu` and running.
pub fn register_vm(vm: usize, pcpu: usize) {
    if let Some(slot) = PCPU_OF_VM.get(vm) {
        slot.store(pcpu, Ordering::SeqCst);
        VMS_RUNNING.fetch_add(1, Ordering::SeqCst);
    }
}

/// Hands each pCPU its run queue and lets the loops start.
pub fn set_queues(queues: [RunQueue; MAX_PCPUS]) {
    let mut q = QUEUES.lock();
    for (slot, queue) in q.iter_mut().zip(queues) {
        *slot = Some(queue);
    }
    STARTED.store(true, Ordering::SeqCst);
}

/// The hardware side of one physical CPU's loop: implements the
/// scheduling policy's [`PcpuArch`] with the world switch, the vGIC, the
/// EL2 timer and the console.
struct Machine {
    cpu: usize,
    stats_seen: u32,
    /// The vCPU whose EL1 state is in this CPU's registers (mirrors the
    /// policy's view; needed when its timer fires between runs).
    loaded: Option<VcpuRef>,
    /// VMs placed on this pCPU, as a bit mask.
    my_vms: u32,
    /// The VM whose vCPU is running (inside [`PcpuArch::enter`]).
    running_vm: Option<usize>,
    /// Something for another vCPU on this pCPU arrived during the run.
    woke_others: bool,
    /// What the virtual CPU interface holds (`None`: unknown or off); see
    /// [`crate::vgic::if_writes`].
    gic_hw: Option<crate::vgic::VcpuIfState>,
    /// What the EL2 timer is set to (`None`: unknown), so that an unchanged
    /// deadline is not written again.
    hyp_timer: Option<Option<u64>>,
    /// The vCPU whose last exit left its interface state in the hardware,
    /// not yet read back and synced (see `vgic::deferred`); settled before
    /// anything else looks at its interrupt state or uses the interface.
    kept: Option<VcpuRef>,
    /// The last clock reading ([`PcpuArch::now`]).
    clock: u64,
    /// The vCPU entered since that reading, and the reading before its
    /// entry: the next reading accounts its run in `GUEST_TICKS`.
    ran: Option<(VcpuRef, u64)>,
}

/// Runs physical CPU `cpu` forever (pCPU 0 exits QEMU when every VM stopped).
pub fn pcpu_main(cpu: usize) -> ! {
    while !STARTED.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    let queue = QUEUES.lock()[cpu].take().unwrap_or_default();
    let (mut m, mut policy) = Machine::with_queue(cpu, queue);
    loop {
        match policy.step(&mut m) {
            Step::Ran(r) => {
                PICKS[r.vm][r.vcpu].fetch_add(1, Ordering::Relaxed);
            }
            Step::Idled { .. } | Step::Maintained(_) => {}
            Step::AllStopped => {
                m.finish();
                // Other pCPUs' VMs still run: keep serving the console.
                let deadline = m.housekeeping_deadline();
                m.arm_timer(deadline);
                m.idle();
            }
        }
    }
}

/// Runs `queue` on this physical CPU through the same loop as
/// [`pcpu_main`] until every vCPU in it has stopped, and returns (the
/// loaded vCPU saved). For the EL2 test image's measurements of the run
/// loop: its VMs must be created, started and [`register_vm`]-ed on `cpu`,
/// and no other pCPU may run them.
pub fn run_until_stopped(cpu: usize, queue: RunQueue) {
    let (mut m, mut policy) = Machine::with_queue(cpu, queue);
    while policy.step(&mut m) != Step::AllStopped {}
}

fn flush_console_idle() {
    let now = vcpu::counter();
    if let Some(mux) = CONSOLE.lock().as_mut() {
        mux.flush_idle(now, &mut UartSink);
        publish_flush_at(mux);
    }
}

/// The console's next flush (no lock: see [`CONSOLE_FLUSH_AT`]).
fn console_flush_deadline() -> Option<u64> {
    Some(CONSOLE_FLUSH_AT.load(Ordering::Acquire)).filter(|&at| at != u64::MAX)
}

/// Handles every pending physical interrupt. `running` is the VM and vCPU
/// whose state is loaded, if a guest just exited.
fn service_interrupts(p: &mut Machine, mut running: Option<(&mut Vm, usize)>) {
    let mut handled = 0u32;
    while let Some(intid) = gic::acknowledge() {
        handled += 1;
        if handled > 10_000 {
            // A level that never drops would hang the loop: report it and
            // go back to running guests (it will be retried next time).
            gic::end_of_interrupt(intid);
            crate::hv_println!(
                "cpu{}: interrupt storm: INTID {} keeps firing",
                p.cpu,
                intid
            );
            return;
        }
        match intid {
            INTID_HYP_TIMER => {
                timer::disarm();
                p.hyp_timer = Some(None);
            }
            INTID_VIRT_TIMER => match running.as_mut() {
                Some((vm, index)) => virtual_timer_fired(vm, *index),
                // The loaded vCPU's timer fired while the hypervisor was
                // between its runs: the same as during a run. With nothing
                // loaded (`put` disabled the timer) it is a leftover of the
                // last owner, whose timer is tracked in software.
                None => {
                    if let Some(r) = p.loaded {
                        let mut slot = p.lock(r.vm);
                        virtual_timer_fired(&mut slot.vm, r.vcpu);
                    }
                }
            },
            SGI_KICK => {
                // Another pCPU sent something (a frame) for a VM here.
                if p.others_have_input() {
                    p.woke_others = true;
                }
            }
            INTID_VGIC_MAINTENANCE => {}
            UART_INTID => console_input(p),
            other => crate::hv_println!("cpu{}: unexpected physical interrupt {}", p.cpu, other),
        }
        gic::end_of_interrupt(intid);
    }
}

/// The loaded vCPU's virtual timer fired: mask it in the hardware (so the
/// level drops) and raise the vCPU's virtual PPI 27 instead; see
/// [`crate::vcpu::VirtualTimer`].
fn virtual_timer_fired(vm: &mut Vm, index: usize) {
    let masked = vm.vcpus[index].timer.on_fired(vcpu::timer_ctl());
    vcpu::set_timer_ctl(masked);
    vm.vgic.set_ppi_level(index, INTID_VIRT_TIMER, true);
}

/// Reads the physical UART and routes each byte (pCPU 0 only).
fn console_input(p: &mut Machine) {
    while let Some(byte) = uart::get_byte() {
        let action = match CONSOLE.lock().as_mut() {
            Some(mux) => {
                let action = mux.feed_input(byte, &mut UartSink);
                publish_flush_at(mux);
                action
            }
            None => InputAction::None,
        };
        match action {
            InputAction::Deliver { vm, byte } if vm < MAX_VMS => {
                // A full ring counts the drop; the statistics show it.
                INPUT[vm].push(byte);
                p.kick_vm(vm);
            }
            InputAction::ShowStats => {
                STATS_GENERATION.fetch_add(1, Ordering::SeqCst);
                for vm in 0..MAX_VMS {
                    p.kick_vm(vm);
                }
            }
            InputAction::ToggleCapture => {
                capture_file::request_toggle();
                p.woke_others = true;
            }
            InputAction::RestartVm(vm) | InputAction::StopVm(vm) if vm < MAX_VMS => {
                let request = match action {
                    InputAction::StopVm(_) => REQUEST_STOP,
                    _ => REQUEST_RESTART,
                };
                LIFECYCLE[vm].store(request, Ordering::SeqCst);
                p.kick_vm(vm);
            }
            _ => {}
        }
    }
    uart::ack_rx_interrupt();
}

/// Moves console input and network frames waiting for `vm` into its
/// devices (which raise their interrupts through the vGIC).
fn deliver_pending(vm: &mut Vm) {
    if !vm.is_running() {
        // Restarting or stopped: input waits (a restart resets the devices),
        // and a rate-limit pause is forgotten (nothing will retry it).
        VSWITCH.set_tx_retry(vm.id, None);
        return;
    }
    let id = vm.id;
    // A transmitter the rate limit paused: carry on once it may (the clock
    // is read only then).
    if let Some(at) = VSWITCH.tx_retry(id)
        && let now = vcpu::counter()
        && at <= now
        && let Some(net) = vm.devices.virtio_net()
    {
        let mut ctx = DeviceContext {
            mem: &vm.mem,
            irq: &mut vm.vgic,
            vcpu: 0,
        };
        retry_tx(net, &mut ctx, now);
    }
    if !PORT_RX[id].is_empty()
        && let Some(net) = vm.devices.virtio_net()
    {
        let mut ctx = DeviceContext {
            mem: &vm.mem,
            irq: &mut vm.vgic,
            vcpu: 0,
        };
        drain_rx(net, &PORT_RX[id], &mut ctx);
    }
    if let Some(uart) = vm.devices.pl011() {
        while uart.rx_space() > 0 {
            match INPUT[id].pop() {
                Some(byte) => {
                    uart.push_input(byte, &mut vm.vgic);
                }
                None => break,
            }
        }
    }
}

/// Sends what `vm`'s devices produced to the console.
fn drain_output(vm: &mut Vm) {
    let id = vm.id;
    if let Some(uart) = vm.devices.pl011()
        && uart.output_pending() > 0
    {
        uart.drain_output(|bytes| console_write_vm(id, bytes));
    }
    vm.hypercall_output
        .drain(|bytes| console_write_vm(id, bytes));
}

/// Reads vCPU `index`'s virtual CPU interface back after its exit (now, or
/// later for a kept exit: the interface still holds what the guest left
/// there), folds it into the vGIC model and re-evaluates its virtual
/// timer's line. `gic_hw` is the run loop's record of the interface.
fn settle_exit(vm: &mut Vm, index: usize, gic_hw: &mut Option<crate::vgic::VcpuIfState>) {
    let vcpu = &mut vm.vcpus[index];
    vgic_hw::save(&mut vcpu.gic, gic_hw);
    // The maintenance interrupt is a level that stays asserted while its
    // condition holds in ICH_HCR_EL2: with one asserted, the interface is
    // turned off until the next entry; without, it keeps the saved state,
    // and an entry after an exit that changed no interrupt state writes
    // nothing.
    vgic_hw::after_exit(gic_hw);
    vm.vgic.sync(index, &mut vcpu.gic);
    let holds =
        vm.vgic.is_pending(index, INTID_VIRT_TIMER) || vm.vgic.is_active(index, INTID_VIRT_TIMER);
    let level = vm.vcpus[index].timer.line_level(vcpu::timer_ctl(), holds);
    vm.vgic.set_ppi_level(index, INTID_VIRT_TIMER, level);
}

impl Machine {
    /// The machine side of `cpu` and the policy for its run queue.
    fn with_queue(cpu: usize, queue: RunQueue) -> (Machine, PcpuPolicy) {
        let freq = vcpu::counter_frequency().max(1);
        let my_vms = queue.iter().fold(0u32, |mask, r| mask | (1 << r.vm));
        let m = Machine {
            cpu,
            stats_seen: STATS_GENERATION.load(Ordering::Relaxed),
            loaded: None,
            my_vms,
            running_vm: None,
            woke_others: false,
            gic_hw: None,
            hyp_timer: None,
            kept: None,
            clock: 0,
            ran: None,
        };
        (m, PcpuPolicy::new(queue, SchedParams::for_frequency(freq)))
    }

    /// Locks VM `vm`'s slot. Invariant: after boot (the VMs are created
    /// before `STARTED`), a VM's slot is locked only by the pCPU it is
    /// placed on, one slot lock at a time, never across a call into the
    /// policy; other pCPUs reach a VM only through lock-free rings and
    /// atomics. So the lock is always free here, and holding it across
    /// the guest run in [`PcpuArch::enter`] (the vCPU's registers live in
    /// the slot) makes no one wait. `try_lock` asserts that: a held lock
    /// panics with the slot's number instead of deadlocking.
    fn lock(&self, vm: usize) -> MutexGuard<'static, VmSlot> {
        guest::slot_uncontended(vm).unwrap_or_else(|| panic!("no VM slot {vm}"))
    }

    /// Settles the kept exit, if any ([`settle_exit`]); no VM slot may be
    /// held by the caller.
    fn settle_kept(&mut self) {
        if let Some(r) = self.kept.take() {
            let mut slot = self.lock(r.vm);
            settle_exit(&mut slot.vm, r.vcpu, &mut self.gic_hw);
        }
    }

    /// VMs on this pCPU other than the running one with input waiting.
    fn others_have_input(&self) -> bool {
        (0..MAX_VMS).any(|vm| {
            self.my_vms & (1 << vm) != 0
                && Some(vm) != self.running_vm
                && (!PORT_RX[vm].is_empty() || !INPUT[vm].is_empty())
        })
    }

    /// Wakes whoever runs `vm`: another pCPU gets a kick; a VM on this
    /// pCPU other than the running one bounds the running vCPU's slice.
    fn kick_vm(&mut self, vm: usize) {
        let target = PCPU_OF_VM[vm].load(Ordering::Relaxed);
        if target != self.cpu {
            gic::send_sgi(SGI_KICK, target);
        } else if Some(vm) != self.running_vm {
            self.woke_others = true;
        }
    }

    /// Kicks the VMs whose switch ports received frames from `vm`.
    fn kick_receivers(&mut self, vm: &mut Vm) {
        let Some(net) = vm.devices.virtio_net() else {
            return;
        };
        let ports = net.backend_mut().take_kicked_ports();
        for port in 0..MAX_VMS {
            if ports & (1 << port) != 0 {
                self.kick_vm(port);
            }
        }
    }

    fn stats_requested(&self) -> bool {
        STATS_GENERATION.load(Ordering::SeqCst) != self.stats_seen
    }

    /// A console request (restart, stop) waits for a VM of this pCPU.
    fn lifecycle_requested(&self) -> bool {
        (0..MAX_VMS)
            .any(|vm| self.my_vms & (1 << vm) != 0 && LIFECYCLE[vm].load(Ordering::SeqCst) != 0)
    }

    /// Carries out the console's restart and stop requests for this
    /// pCPU's VMs (outside any guest: a restart itself happens in units
    /// through [`PcpuArch::maintain`]).
    fn apply_lifecycle_requests(&mut self) {
        for (id, pending) in LIFECYCLE.iter().enumerate() {
            if self.my_vms & (1 << id) == 0 {
                continue;
            }
            let request = pending.swap(0, Ordering::SeqCst);
            if request == 0 {
                continue;
            }
            let mut slot = self.lock(id);
            let vm = &mut slot.vm;
            let was_stopped = matches!(vm.state, VmState::Stopped(_));
            match request {
                REQUEST_RESTART if vm.boot.is_none() => {
                    crate::hv_println!("vm{} has no boot images to restart from", vm.id);
                }
                REQUEST_RESTART => {
                    vm.begin_restart();
                    begin_restart_report(vm.id, "from the console");
                    if was_stopped {
                        VMS_RUNNING.fetch_add(1, Ordering::SeqCst);
                    }
                }
                _ if was_stopped => crate::hv_println!("vm{} is already stopped", vm.id),
                _ => {
                    let reason = StopReason::StoppedFromConsole;
                    vm.stop_with(reason);
                    report_stop(vm, reason);
                }
            }
        }
    }

    /// Every VM of this pCPU stopped: pCPU 0 ends the run once all pCPUs'
    /// VMs stopped; the others wait (the console may restart a VM here).
    fn finish(&mut self) {
        if self.cpu != 0 {
            return;
        }
        if VMS_RUNNING.load(Ordering::SeqCst) == 0 {
            let failed = VMS_FAILED.load(Ordering::SeqCst);
            if let Some(mux) = CONSOLE.lock().as_mut() {
                mux.flush_all(&mut UartSink);
                publish_flush_at(mux);
            }
            capture_file::finish();
            crate::hv_println!("all VMs stopped ({} unsuccessfully)", failed);
            semihosting::exit(if failed == 0 {
                semihosting::EXIT_SUCCESS
            } else {
                semihosting::EXIT_FAILURE
            });
        }
    }

    fn print_stats_if_asked(&mut self) {
        let generation = STATS_GENERATION.load(Ordering::SeqCst);
        if generation == self.stats_seen {
            return;
        }
        self.stats_seen = generation;
        if self.cpu == 0 {
            crate::hv_print!("{}", VSWITCH.snapshot());
        }
        // Idle time and the counter's time now: two reports give this
        // pCPU's idle share between them (the bench's time split).
        crate::hv_println!(
            "cpu{} idle-ms={} up-ms={}",
            self.cpu,
            counter_ms(IDLE_TICKS[self.cpu].load(Ordering::Relaxed)),
            counter_ms(vcpu::counter())
        );
        for vm in 0..MAX_VMS {
            if self.my_vms & (1 << vm) != 0 {
                let mut slot = self.lock(vm);
                print_vm_stats(&mut slot.vm);
            }
        }
    }
}

impl PcpuArch for Machine {
    fn now(&mut self) -> u64 {
        let now = vcpu::counter();
        // The guest run that ended since the last reading: the policy reads
        // the clock once after every exit, and the entry took its start
        // from the reading before it (see `GUEST_TICKS`).
        if let Some((r, since)) = self.ran.take() {
            add_single_writer(&GUEST_TICKS[r.vm][r.vcpu], now.wrapping_sub(since));
        }
        self.clock = now;
        now
    }

    fn housekeeping(&mut self) {
        // Statistics, lifecycle requests and the policy's status queries
        // read the loaded vCPU's interrupt state.
        self.settle_kept();
        service_interrupts(self, None);
        self.apply_lifecycle_requests();
        self.print_stats_if_asked();
        capture_file::apply_toggle();
        capture_file::flush();
        flush_console_idle();
    }

    fn housekeeping_deadline(&mut self) -> Option<u64> {
        // Console flush, capture flush, and the retry of a transmitter of
        // a VM here that its rate limit paused.
        [console_flush_deadline(), capture_file::flush_deadline()]
            .into_iter()
            .chain(
                (0..MAX_VMS)
                    .filter(|vm| self.my_vms & (1 << vm) != 0)
                    .map(|vm| VSWITCH.tx_retry(vm)),
            )
            .flatten()
            .min()
    }

    fn deliver_pending(&mut self, vm: usize) {
        // Checked without the VM's lock and clock (this runs before every
        // entry): the rings and the retry time are lock-free.
        let waiting = crate::sched::delivery_needed(
            VSWITCH.tx_retry(vm).is_some(),
            !PORT_RX[vm].is_empty(),
            !INPUT[vm].is_empty(),
        );
        if !waiting {
            return;
        }
        let mut slot = self.lock(vm);
        deliver_pending(&mut slot.vm);
        // A retried transmitter may have sent frames to other VMs.
        self.kick_receivers(&mut slot.vm);
    }

    fn status(&mut self, r: VcpuRef, now: u64, loaded: bool) -> VcpuStatus {
        let mut slot = self.lock(r.vm);
        let vm = &mut slot.vm;
        if vm.is_restarting() {
            // One vCPU carries the VM's restart work; the others are off.
            return VcpuStatus {
                alive: r.vcpu == 0,
                ready: r.vcpu == 0,
                deadline: None,
                maintenance: r.vcpu == 0,
            };
        }
        if !vm.is_running() || r.vcpu >= vm.nr_vcpus || vm.vcpus[r.vcpu].power != PowerState::On {
            return VcpuStatus::default();
        }
        let cntvoff = vm.cntvoff;
        let mut deadline = None;
        if !loaded {
            // Its state is not in the hardware: its virtual timer is
            // checked in software.
            let timer = &vm.vcpus[r.vcpu].timer;
            if timer.expired_at(now.wrapping_sub(cntvoff)) {
                vm.vgic.set_ppi_level(r.vcpu, INTID_VIRT_TIMER, true);
            } else {
                deadline = timer.deadline().map(|d| d.wrapping_add(cntvoff));
            }
        }
        let vcpu = &vm.vcpus[r.vcpu];
        VcpuStatus {
            alive: true,
            ready: !vcpu.in_wfi || vm.vgic.has_deliverable(r.vcpu, &vcpu.gic),
            deadline,
            maintenance: false,
        }
    }

    fn load(&mut self, r: VcpuRef) {
        self.settle_kept();
        let slot = self.lock(r.vm);
        slot.activate();
        vcpu::load(&slot.vm.vcpus[r.vcpu], slot.vm.cntvoff);
        self.loaded = Some(r);
    }

    fn put(&mut self, r: VcpuRef) {
        self.settle_kept();
        let mut slot = self.lock(r.vm);
        vcpu::put(&mut slot.vm.vcpus[r.vcpu]);
        self.loaded = None;
    }

    fn arm_timer(&mut self, deadline: Option<u64>) {
        if !crate::sched::hyp_timer_write_needed(self.hyp_timer, deadline) {
            return;
        }
        self.hyp_timer = Some(deadline);
        match deadline {
            Some(deadline) => timer::arm(deadline),
            None => timer::disarm(),
        }
    }

    fn enter(&mut self, r: VcpuRef) -> Exit {
        let mut slot = self.lock(r.vm);
        let vm = &mut slot.vm;
        let index = r.vcpu;
        self.running_vm = Some(r.vm);
        self.woke_others = false;
        vm.vcpus[index].in_wfi = false;
        debug_assert!(self.kept.is_none() || self.kept == Some(r));
        let unchanged = vm
            .vgic
            .flush_unchanged(index, vm.vcpus[index].gic.lr_count());
        match crate::vgic::entry_plan(self.kept.take() == Some(r), unchanged) {
            // The interface holds what the guest left there, and nothing
            // changed: enter without touching it.
            EntryPlan::Keep => vm.stats.entries_untouched += 1,
            plan => {
                if plan == EntryPlan::SettleThenFlush {
                    settle_exit(vm, index, &mut self.gic_hw);
                }
                let vcpu = &mut vm.vcpus[index];
                vm.vgic.flush(index, &mut vcpu.gic);
                vgic_hw::restore(&vcpu.gic, &mut self.gic_hw);
            }
        }
        let entered = self.clock;
        self.ran = Some((r, entered));
        if index == 0 && vm.restarts == 0 && ENTRIES[r.vm][0].load(Ordering::Relaxed) == 0 {
            crate::hv_println!(
                "vm{}: first guest entry at {} ms",
                r.vm,
                counter_ms(entered)
            );
        }
        // SAFETY: the policy loaded this VM's stage 2 and this vCPU's EL1
        // state (`load`) before entering it, so the guest is confined to
        // its memory.
        // HCR_EL2 was set for guests at CPU start; IRQs are masked at EL2.
        let kind = unsafe { enter_guest(&mut vm.vcpus[index].regs) };
        add_single_writer_usize(&ENTRIES[r.vm][index], 1);

        let decoded = match kind {
            ExitKind::Sync => {
                let regs = &vm.vcpus[index].regs;
                Some(decode_sync(regs.esr, regs.far, regs.hpfar))
            }
            _ => None,
        };
        // An exit that touches no interrupt state leaves the interface as
        // the guest left it (see `vgic::deferred`); any other is read back
        // and synced before it is handled.
        let facts = ExitFacts {
            sync_exception: kind == ExitKind::Sync,
            needs_model: decoded.is_none_or(|e| exit_needs_model(&e, &vm.vgic)),
            misr: vgic_hw::misr(),
            timer_settled: timer_line_settled(
                vm.vcpus[index].timer.hyp_masked,
                vm.vgic.ppi_line(index, INTID_VIRT_TIMER),
            ),
            interface_known: self.gic_hw.is_some(),
        };
        if keep_interface(&facts) {
            self.kept = Some(r);
            vm.stats.interface_kept += 1;
        } else {
            settle_exit(vm, index, &mut self.gic_hw);
        }

        let outcome = match (kind, decoded) {
            (ExitKind::Sync, Some(exit)) => vm.handle_exit(index, exit),
            (ExitKind::Irq | ExitKind::Fiq, _) => {
                vm.stats.irq += 1;
                service_interrupts(self, Some((vm, index)));
                ExitOutcome::Continue
            }
            _ => {
                let esr = hal::esr::Esr(vm.vcpus[index].regs.esr);
                let pc = vm.vcpus[index].regs.elr;
                vm.stop_with(StopReason::Fault(Fault::Unexpected {
                    vcpu: index,
                    pc,
                    esr,
                }))
            }
        };
        drain_output(vm);
        self.kick_receivers(vm);
        let action = match outcome {
            ExitOutcome::Continue => ExitAction::Continue,
            ExitOutcome::Wake(mask) => {
                // Woken vCPUs (SGI targets, CPU_ON) are on this pCPU.
                if mask & !(1 << index) != 0 {
                    self.woke_others = true;
                }
                ExitAction::Continue
            }
            ExitOutcome::Block => ExitAction::Block,
            ExitOutcome::Yield => ExitAction::Yield,
            ExitOutcome::Stop(reason) => {
                report_stop(vm, reason);
                ExitAction::Stop
            }
            ExitOutcome::Restart => {
                begin_restart_report(r.vm, "by its guest");
                ExitAction::Block
            }
        };
        let service = self.stats_requested()
            || self.lifecycle_requested()
            || capture_file::toggle_requested();
        if self.kept.is_some() && !stay_kept(action == ExitAction::Continue, service) {
            // The policy looks at this vCPU's interrupt state next, or runs
            // something else.
            self.kept = None;
            settle_exit(vm, index, &mut self.gic_hw);
        }
        drop(slot);
        self.running_vm = None;
        Exit {
            action,
            woke_others: core::mem::take(&mut self.woke_others),
            service,
        }
    }

    fn maintain(&mut self, vm: usize) {
        self.settle_kept();
        let mut slot = self.lock(vm);
        let progress = restart_step(&mut slot.vm, RESTART_UNIT, &mut |mem, gpa, len| {
            clean_guest_range(mem, gpa, len)
        });
        match progress {
            RestartProgress::Working | RestartProgress::Idle => {}
            RestartProgress::Done => {
                // Translations the old guest cached under this VMID must
                // not survive into the new one (nothing of it is loaded).
                slot.activate();
                vcpu::flush_guest_tlb();
                let ms = vcpu::counter()
                    .wrapping_sub(RESTART_BEGAN[vm].load(Ordering::Relaxed))
                    .saturating_mul(1000)
                    / vcpu::counter_frequency().max(1);
                crate::hv_println!(
                    "vm{} restarted (restart {}, {} ms), entry {:#x}",
                    vm,
                    slot.vm.restarts,
                    ms,
                    slot.vm.vcpus[0].regs.elr
                );
            }
            RestartProgress::Failed(e) => {
                crate::hv_println!("vm{} cannot restart: {}", vm, e);
                report_stop(&slot.vm, StopReason::ResetRequested);
            }
        }
    }

    fn idle(&mut self) {
        self.settle_kept();
        vgic_hw::disable(&mut self.gic_hw);
        // IRQs stay masked at EL2; a pending one still wakes the CPU and is
        // serviced by the loop.
        let slept = vcpu::counter();
        // SAFETY: WFI only waits for an interrupt or event.
        unsafe { core::arch::asm!("dsb sy", "wfi") };
        IDLE_TICKS[self.cpu].fetch_add(vcpu::counter().wrapping_sub(slept), Ordering::Relaxed);
    }
}

fn print_vm_stats(vm: &mut Vm) {
    let state = match vm.state {
        VmState::Running => "running",
        VmState::Restarting(_) => "restarting",
        VmState::Stopped(StopReason::PoweredOff) => "powered off",
        VmState::Stopped(StopReason::StoppedFromConsole) => "stopped from the console",
        VmState::Stopped(_) => "stopped",
    };
    crate::hv_println!("vm{} state: {}, restarts {}", vm.id, state, vm.restarts);
    let s = vm.stats;
    crate::hv_println!(
        "vm{} exits: hvc={} smc={} mmio={} wfi={} wfe={} sysreg={} irq={} faults={}",
        vm.id,
        s.hvc,
        s.smc,
        s.mmio,
        s.wfi,
        s.wfe,
        s.sysreg,
        s.irq,
        s.faults
    );
    crate::hv_println!(
        "vm{} exit path: interface-kept={} untouched-entries={}",
        vm.id,
        s.interface_kept,
        s.entries_untouched
    );
    crate::hv_println!(
        "vm{} trapped sysregs: pmu={} debug={} raz-wi={}",
        vm.id,
        s.sysreg_pmu,
        s.sysreg_debug,
        s.sysreg_raz_wi
    );
    // Not inside the print: printing takes the console lock itself.
    let console_out = CONSOLE.lock().as_ref().map(|mux| mux.output_stats(vm.id));
    if let Some(o) = console_out {
        crate::hv_println!("vm{} console output: {}", vm.id, o);
    }
    for index in 0..vm.nr_vcpus {
        let vcpu = &vm.vcpus[index];
        crate::hv_println!(
            "vm{} vcpu{}: {:?}{} pc={:#x} pending-irqs={} deliverable={} timer-ctl={:#x} picked={} entries={} run-ms={}",
            vm.id,
            index,
            vcpu.power,
            if vcpu.in_wfi { " in-wfi" } else { "" },
            vcpu.regs.elr,
            vm.vgic.pending_count(index),
            vm.vgic.has_deliverable(index, &vcpu.gic),
            vcpu.timer.ctl,
            PICKS[vm.id][index].load(Ordering::Relaxed),
            ENTRIES[vm.id][index].load(Ordering::Relaxed),
            GUEST_TICKS[vm.id][index].load(Ordering::Relaxed) * 1000
                / vcpu::counter_frequency().max(1)
        );
    }
    crate::hv_println!(
        "vm{} console input: {} waiting, {} dropped (the guest was not reading)",
        vm.id,
        INPUT[vm.id].len(),
        INPUT[vm.id].dropped()
    );
    crate::hv_println!("vm{} vgic: {}", vm.id, vm.vgic.counters());
    if let Some(uart) = vm.devices.pl011() {
        crate::hv_println!("vm{} uart: {}", vm.id, uart.stats());
    }
    if let Some(blk) = vm.devices.virtio_blk() {
        crate::hv_println!("vm{} virtio-blk: {}", vm.id, blk.stats());
    }
    if let Some(net) = vm.devices.virtio_net() {
        crate::hv_println!("vm{} virtio-net: {}", vm.id, NetDeviceReport(net));
    }
}

/// Notes when VM `id`'s restart began and says why it restarts.
fn begin_restart_report(id: usize, why: &str) {
    RESTART_BEGAN[id].store(vcpu::counter(), Ordering::Relaxed);
    crate::hv_println!("vm{} reset {}: restarting", id, why);
}

/// Prints why a VM stopped, with the VM id, and accounts for it.
fn report_stop(vm: &Vm, reason: StopReason) {
    let id = vm.id;
    match reason {
        StopReason::PoweredOff => crate::hv_println!("vm{} powered off", id),
        StopReason::ResetRequested => {
            crate::hv_println!("vm{} requested a reset but cannot restart; VM stopped", id)
        }
        StopReason::StoppedFromConsole => crate::hv_println!("vm{} stopped from the console", id),
        StopReason::Exited(code) => crate::hv_println!("vm{} exited with status {}", id, code),
        StopReason::Fault(fault) => report_fault(id, fault),
    }
    let failed = !matches!(
        reason,
        StopReason::PoweredOff | StopReason::Exited(0) | StopReason::StoppedFromConsole
    );
    if failed {
        VMS_FAILED.fetch_add(1, Ordering::SeqCst);
    }
    VMS_RUNNING.fetch_sub(1, Ordering::SeqCst);
}

fn report_fault(id: usize, fault: Fault) {
    match fault {
        Fault::UnclaimedMmio { vcpu, pc, access } => crate::hv_println!(
            "vm{} STOPPED: vcpu{} at pc {:#x}: {} of {} bytes at guest-physical {:#x}, which no device claims",
            id,
            vcpu,
            pc,
            if access.is_write { "write" } else { "read" },
            access.size.bytes(),
            access.ipa
        ),
        Fault::BadAbort { vcpu, pc, ipa, esr } => crate::hv_println!(
            "vm{} STOPPED: vcpu{} at pc {:#x}: data abort at guest-physical {:#x} that cannot be emulated ({:?})",
            id,
            vcpu,
            pc,
            ipa,
            esr
        ),
        Fault::InstructionAbort { vcpu, pc, ipa, esr } => crate::hv_println!(
            "vm{} STOPPED: vcpu{} at pc {:#x}: instruction fetch from unmapped guest-physical {:#x} ({:?})",
            id,
            vcpu,
            pc,
            ipa,
            esr
        ),
        Fault::Unexpected { vcpu, pc, esr } => crate::hv_println!(
            "vm{} STOPPED: vcpu{} at pc {:#x}: unexpected exception {:?}",
            id,
            vcpu,
            pc,
            esr
        ),
    }
}
