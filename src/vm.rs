//! A virtual machine and what happens when one of its vCPUs exits.
//!
//! [`Vm::handle_exit`] is the policy half of trap handling: given a decoded
//! [`Exit`], it emulates the MMIO access, answers the PSCI call or
//! hypercall, advances the PC, and tells the run loop what to do next
//! ([`ExitOutcome`]). It is plain logic over the VM's state and is tested on
//! the host with synthetic exits; the run loop in the arch layer only moves
//! registers and calls it.

use crate::debug_regs::{self, Owner};
use crate::devices::DeviceManager;
use crate::guest_memory::GuestMemory;
use crate::hypercall::{self, Hypercall};
use crate::id_regs;
use crate::loader::{BootPlan, LoadError, Segment, StagedImages};
use crate::mmio::DeviceContext;
use crate::platform::MAX_VCPUS;
use crate::psci::{self, PowerState, PsciAction};
use crate::trap::{Exit, MmioAccess};
use crate::vcpu::Vcpu;
use crate::vgic::Vgic;
use hal::esr::{self, Esr};

/// ICC_SGI0R_EL1 (S3_0_C12_C11_7): Group 0 SGIs.
const ICC_SGI0R_EL1: u32 = esr::sysreg_id(3, 0, 12, 11, 7);
/// ICC_ASGI1R_EL1 (S3_0_C12_C11_6): Group 1 SGIs for the other Security
/// state, equivalent to SGI0R with a single Security state.
const ICC_ASGI1R_EL1: u32 = esr::sysreg_id(3, 0, 12, 11, 6);

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// PSCI SYSTEM_OFF.
    PoweredOff,
    /// PSCI SYSTEM_RESET of a VM that has no boot images to restart from
    /// (a VM with them restarts instead; see [`crate::restart`]).
    ResetRequested,
    /// Stopped from the console (`Ctrl-\ k N`).
    StoppedFromConsole,
    /// The guest called the exit hypercall with this status.
    Exited(u64),
    /// The guest did something the hypervisor cannot emulate.
    Fault(Fault),
}

/// A guest fault that stopped its VM, with what is needed to report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A load/store to a guest-physical address no device claims.
    UnclaimedMmio {
        /// vCPU index.
        vcpu: usize,
        /// Guest PC.
        pc: u64,
        /// The access.
        access: MmioAccess,
    },
    /// A data abort without a usable syndrome.
    BadAbort {
        /// vCPU index.
        vcpu: usize,
        /// Guest PC.
        pc: u64,
        /// Faulting intermediate physical address.
        ipa: u64,
        /// Raw syndrome.
        esr: Esr,
    },
    /// The guest executed from an unmapped address.
    InstructionAbort {
        /// vCPU index.
        vcpu: usize,
        /// Guest PC.
        pc: u64,
        /// Faulting intermediate physical address.
        ipa: u64,
        /// Raw syndrome.
        esr: Esr,
    },
    /// Any other unexpected exception class.
    Unexpected {
        /// vCPU index.
        vcpu: usize,
        /// Guest PC.
        pc: u64,
        /// Raw syndrome.
        esr: Esr,
    },
}

/// What the run loop does after an exit was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitOutcome {
    /// Re-enter the same vCPU.
    Continue,
    /// The vCPU waits for an interrupt (WFI) or powered itself off: run
    /// something else.
    Block,
    /// The vCPU is spinning (WFE): let others run, then come back.
    Yield,
    /// Other vCPUs of this VM (bit mask) may have become runnable (CPU_ON,
    /// SGI): wake or kick them.
    Wake(u32),
    /// The whole VM stopped.
    Stop(StopReason),
    /// The VM began a restart ([`Vm::begin_restart`]): none of its vCPUs
    /// runs until the run loop has rebuilt it.
    Restart,
}

/// Exit counters by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // one counter per exit reason, named after it
pub struct ExitStats {
    pub hvc: u64,
    pub smc: u64,
    pub mmio: u64,
    pub wfi: u64,
    pub wfe: u64,
    pub sysreg: u64,
    pub irq: u64,
    pub faults: u64,
    /// Trapped system-register accesses emulated as RAZ/WI.
    pub sysreg_raz_wi: u64,
    /// Trapped PMU register accesses (the guest sees no PMU).
    pub sysreg_pmu: u64,
    /// Trapped debug register accesses (stored per vCPU, never applied).
    pub sysreg_debug: u64,
    /// Trapped ID register reads (answered from the sanitized table).
    pub sysreg_id: u64,
    /// Exits that left the virtual CPU interface state in the hardware
    /// without reading it back (see `vgic::keep_interface`).
    pub interface_kept: u64,
    /// Entries that wrote nothing to the virtual CPU interface and ran no
    /// flush: a kept exit with no interrupt state changed since.
    pub entries_untouched: u64,
}

impl ExitStats {
    /// All counters zero.
    pub const fn new() -> Self {
        ExitStats {
            hvc: 0,
            smc: 0,
            mmio: 0,
            wfi: 0,
            wfe: 0,
            sysreg: 0,
            irq: 0,
            faults: 0,
            sysreg_raz_wi: 0,
            sysreg_pmu: 0,
            sysreg_debug: 0,
            sysreg_id: 0,
            interface_kept: 0,
            entries_untouched: 0,
        }
    }
}

/// What a VM boots from, kept for its restarts: the images to copy into
/// its RAM (pristine copies the hypervisor only ever reads) and where its
/// boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootImage {
    /// The images, copied in this order.
    pub segments: [Option<Segment<'static>>; 3],
    /// Guest-physical entry point of vCPU 0.
    pub entry: u64,
    /// vCPU 0's `x0` at entry.
    pub x0: u64,
}

impl BootImage {
    /// The boot of a Linux VM: the segments of `plan` over the staged
    /// `images` (see [`BootPlan::segments`]), entry at the kernel with the
    /// device tree in `x0`.
    pub fn from_plan(
        plan: &BootPlan,
        images: &StagedImages<'static>,
    ) -> Result<BootImage, LoadError> {
        Ok(BootImage {
            segments: plan.segments(images)?,
            entry: plan.entry(),
            x0: plan.x0(),
        })
    }
}

/// Where a restart is (see [`crate::restart`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPhase {
    /// Reset the vCPUs, the vGIC and the devices (next unit).
    Reset,
    /// Zero RAM from guest-physical `next` on.
    Clear {
        /// First byte not yet zeroed.
        next: u64,
    },
    /// Copy boot segment `segment` (see [`BootPlan::segments`]) from byte
    /// `offset` on.
    Load {
        /// Index into the segments.
        segment: usize,
        /// Bytes of it already copied.
        offset: u64,
    },
}

/// Lifecycle of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    /// At least one vCPU may run.
    Running,
    /// Being rebuilt from its boot images (see [`crate::restart`]); no
    /// vCPU runs.
    Restarting(RestartPhase),
    /// Stopped; its vCPUs never run again.
    Stopped(StopReason),
}

/// One virtual machine.
pub struct Vm {
    /// VM index (also its VSwitch port and console number).
    pub id: usize,
    /// Its RAM.
    pub mem: GuestMemory,
    /// Its emulated devices.
    pub devices: DeviceManager,
    /// Its vCPUs (the first `nr_vcpus` exist).
    pub vcpus: [Vcpu; MAX_VCPUS],
    /// Number of vCPUs.
    pub nr_vcpus: usize,
    /// Lifecycle.
    pub state: VmState,
    /// Exit counters.
    pub stats: ExitStats,
    /// CNTVOFF_EL2 for this VM.
    pub cntvoff: u64,
    /// Bytes the guest wrote with the console hypercall, waiting for the run
    /// loop (which owns the console).
    pub hypercall_output: OutputBuffer,
    /// The virtual GIC: interrupt state of every vCPU, and the interrupt
    /// controller the VM's devices raise their lines on.
    pub vgic: Vgic,
    /// The pristine images the VM boots from, kept for its restarts (none
    /// for test guests: they stop on a reset request).
    pub boot: Option<BootImage>,
    /// Restarts completed since the VM was created.
    pub restarts: u64,
}

/// A small byte buffer for hypercall console output.
#[derive(Clone, Copy, Debug)]
pub struct OutputBuffer {
    bytes: [u8; 256],
    len: usize,
    /// Bytes dropped because the buffer was full.
    pub dropped: u64,
}

impl OutputBuffer {
    const fn new() -> Self {
        OutputBuffer {
            bytes: [0; 256],
            len: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        match self.bytes.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.dropped += 1,
        }
    }

    /// Takes the buffered bytes, calling `f` with them, and empties it.
    pub fn drain(&mut self, f: impl FnOnce(&[u8])) {
        if self.len > 0 {
            f(&self.bytes[..self.len]);
            self.len = 0;
        }
    }
}

impl Vm {
    /// A VM with `nr_vcpus` vCPUs (at least 1, at most MAX_VCPUS), all off.
    ///
    /// A `Vm` is tens of kilobytes; on target VMs live in static slots
    /// created with [`Vm::empty`] and set up in place with [`Vm::reset`].
    pub fn new(id: usize, mem: GuestMemory, nr_vcpus: usize) -> Self {
        let mut vm = Vm::empty();
        vm.reset(id, mem, nr_vcpus);
        vm
    }

    /// A stopped VM without memory, vCPUs or devices (for static slots).
    pub const fn empty() -> Self {
        Vm {
            id: 0,
            mem: GuestMemory::empty(),
            devices: DeviceManager::new(),
            vcpus: [Vcpu::new(0), Vcpu::new(1), Vcpu::new(2), Vcpu::new(3)],
            nr_vcpus: 0,
            state: VmState::Stopped(StopReason::PoweredOff),
            stats: ExitStats::new(),
            cntvoff: 0,
            hypercall_output: OutputBuffer::new(),
            vgic: Vgic::new(1),
            boot: None,
            restarts: 0,
        }
    }

    /// Re-initialises this VM in place as VM `id` with `mem` and
    /// `nr_vcpus` vCPUs (all off), no devices, no boot images, and fresh
    /// counters.
    pub fn reset(&mut self, id: usize, mem: GuestMemory, nr_vcpus: usize) {
        self.id = id;
        self.mem = mem;
        self.devices.clear();
        for (index, vcpu) in self.vcpus.iter_mut().enumerate() {
            vcpu.reset_off(index);
        }
        self.nr_vcpus = nr_vcpus.clamp(1, MAX_VCPUS);
        self.state = VmState::Running;
        self.stats = ExitStats::new();
        self.cntvoff = 0;
        self.hypercall_output = OutputBuffer::new();
        self.vgic = Vgic::new(self.nr_vcpus);
        self.boot = None;
        self.restarts = 0;
    }

    /// Powers on vCPU 0 at `entry` with `x0 = arg0` (the boot CPU).
    pub fn start(&mut self, entry: u64, arg0: u64) {
        self.vcpus[0].reset_to(entry, arg0);
    }

    /// True if the VM has not stopped.
    pub fn is_running(&self) -> bool {
        self.state == VmState::Running
    }

    fn power_states(&self) -> [PowerState; MAX_VCPUS] {
        core::array::from_fn(|i| self.vcpus[i].power)
    }

    /// Stops the VM for `reason` (every vCPU powers off) and returns the
    /// matching outcome.
    pub fn stop_with(&mut self, reason: StopReason) -> ExitOutcome {
        if let StopReason::Fault(_) = reason {
            self.stats.faults += 1;
        }
        self.state = VmState::Stopped(reason);
        for vcpu in &mut self.vcpus {
            vcpu.power = PowerState::Off;
        }
        ExitOutcome::Stop(reason)
    }

    /// Handles a synchronous exit of vCPU `index`.
    pub fn handle_exit(&mut self, index: usize, exit: Exit) -> ExitOutcome {
        if index >= self.nr_vcpus {
            return ExitOutcome::Block;
        }
        match exit {
            Exit::Hvc { .. } => {
                self.stats.hvc += 1;
                self.handle_call(index)
            }
            Exit::Smc { len, .. } => {
                self.stats.smc += 1;
                self.vcpus[index].skip_instruction(len);
                self.handle_call(index)
            }
            Exit::Mmio(access) => {
                self.stats.mmio += 1;
                self.handle_mmio(index, access)
            }
            Exit::Wfi { len } => {
                self.stats.wfi += 1;
                let vcpu = &mut self.vcpus[index];
                vcpu.skip_instruction(len);
                vcpu.in_wfi = true;
                ExitOutcome::Block
            }
            Exit::Wfe { len } => {
                self.stats.wfe += 1;
                self.vcpus[index].skip_instruction(len);
                ExitOutcome::Yield
            }
            Exit::SysReg { iss, len } => {
                self.stats.sysreg += 1;
                let rt = iss.rt() as usize;
                let value = self.vcpus[index].regs.x.get(rt).copied().unwrap_or(0);
                self.vcpus[index].skip_instruction(len);
                let sgi_targets = match iss.id() {
                    esr::ICC_SGI1R_EL1 if !iss.is_read() => Some(self.vgic.send_sgi(index, value)),
                    ICC_SGI0R_EL1 | ICC_ASGI1R_EL1 if !iss.is_read() => {
                        Some(self.vgic.send_sgi0(index, value))
                    }
                    _ => None,
                };
                match sgi_targets {
                    Some(targets) => self.wake_outcome(index, targets.0),
                    None => self.emulate_sysreg(index, iss, value),
                }
            }
            Exit::BadAbort { ipa, esr } => {
                let pc = self.vcpus[index].regs.elr;
                self.stop_with(StopReason::Fault(Fault::BadAbort {
                    vcpu: index,
                    pc,
                    ipa,
                    esr,
                }))
            }
            Exit::InstructionAbort { ipa, esr } => {
                let pc = self.vcpus[index].regs.elr;
                self.stop_with(StopReason::Fault(Fault::InstructionAbort {
                    vcpu: index,
                    pc,
                    ipa,
                    esr,
                }))
            }
            Exit::Other(esr) => {
                let pc = self.vcpus[index].regs.elr;
                self.stop_with(StopReason::Fault(Fault::Unexpected {
                    vcpu: index,
                    pc,
                    esr,
                }))
            }
        }
    }

    /// A trapped MSR/MRS that is not an SGI: the sanitized ID registers
    /// (see [`id_regs`]), the PMU and debug models (see [`debug_regs`]), or
    /// read-as-zero/write-ignored for the rest (the EL1 physical timer,
    /// which guests do not use). Counted by kind.
    fn emulate_sysreg(&mut self, index: usize, iss: esr::SysRegIss, value: u64) -> ExitOutcome {
        let vcpu = &mut self.vcpus[index];
        let id_value = if iss.is_read() {
            id_regs::guest().read(iss)
        } else {
            None
        };
        let read = match (id_value, debug_regs::classify(iss)) {
            (Some(id_value), _) => {
                self.stats.sysreg_id += 1;
                id_value
            }
            (None, Some(Owner::Pmu)) => {
                self.stats.sysreg_pmu += 1;
                0
            }
            (None, Some(Owner::Debug)) => {
                self.stats.sysreg_debug += 1;
                if iss.is_read() {
                    vcpu.debug.read(iss)
                } else {
                    vcpu.debug.write(iss, value);
                    0
                }
            }
            (None, None) => {
                self.stats.sysreg_raz_wi += 1;
                0
            }
        };
        if iss.is_read()
            && let Some(reg) = vcpu.regs.x.get_mut(iss.rt() as usize)
        {
            *reg = read;
        }
        ExitOutcome::Continue
    }

    /// [`ExitOutcome::Wake`] for the vCPUs in `mask` other than `me`, or
    /// `Continue` if there are none.
    fn wake_outcome(&self, me: usize, mask: u32) -> ExitOutcome {
        let all = (1u32 << self.nr_vcpus) - 1;
        let others = mask & !(1 << me) & all;
        if others == 0 {
            ExitOutcome::Continue
        } else {
            ExitOutcome::Wake(others)
        }
    }

    fn handle_mmio(&mut self, index: usize, access: MmioAccess) -> ExitOutcome {
        let store = access
            .is_write
            .then(|| access.store_value(&self.vcpus[index].regs.x));
        // The vGIC's distributor and redistributors first, then the devices.
        let result = match store {
            None => self.vgic.mmio_read(access.ipa, access.size),
            Some(value) => self
                .vgic
                .mmio_write(access.ipa, access.size, value)
                .then_some(0),
        }
        .or_else(|| {
            let mut ctx = DeviceContext {
                mem: &self.mem,
                irq: &mut self.vgic,
                vcpu: index,
            };
            self.devices
                .dispatch(access.ipa, access.size, store, &mut ctx)
        });
        let vcpu = &mut self.vcpus[index];
        match result {
            Some(loaded) => {
                if !access.is_write
                    && let Some((reg, value)) = access.load_result(loaded)
                {
                    vcpu.regs.x[reg as usize] = value;
                }
                vcpu.skip_instruction(access.instr_len);
                let kicks = self.vgic.take_kicks();
                self.wake_outcome(index, kicks.0)
            }
            None => {
                let pc = vcpu.regs.elr;
                self.stop_with(StopReason::Fault(Fault::UnclaimedMmio {
                    vcpu: index,
                    pc,
                    access,
                }))
            }
        }
    }

    /// PSCI, SMCCC or our own hypercall in x0..x3.
    fn handle_call(&mut self, index: usize) -> ExitOutcome {
        let x = self.vcpus[index].regs.x;
        let fid = x[0] as u32;
        if psci::is_psci_or_smccc(fid) {
            let ram = (self.mem.base(), self.mem.size());
            let states = self.power_states();
            let action = psci::handle(fid, [x[1], x[2], x[3]], &states[..self.nr_vcpus], ram);
            return match action {
                PsciAction::Return(value) => {
                    self.vcpus[index].regs.x[0] = value;
                    ExitOutcome::Continue
                }
                PsciAction::CpuOn {
                    target,
                    entry,
                    context_id,
                } => {
                    self.vcpus[target].reset_to(entry, context_id);
                    // Its interface state was reset: the next entry scans.
                    self.vgic.forget_flush(target);
                    self.vcpus[index].regs.x[0] = hal::psci::SUCCESS as u64;
                    ExitOutcome::Wake(1 << target)
                }
                PsciAction::CpuOff => {
                    self.vcpus[index].power = PowerState::Off;
                    ExitOutcome::Block
                }
                PsciAction::SystemOff => self.stop_with(StopReason::PoweredOff),
                PsciAction::SystemReset => self.begin_restart(),
            };
        }
        match hypercall::decode(fid, x[1]) {
            Some(Hypercall::Version) => self.vcpus[index].regs.x[0] = hypercall::ABI_VERSION,
            Some(Hypercall::VmId) => self.vcpus[index].regs.x[0] = self.id as u64,
            Some(Hypercall::Putc(byte)) => {
                self.hypercall_output.push(byte);
                self.vcpus[index].regs.x[0] = 0;
            }
            Some(Hypercall::Exit(code)) => return self.stop_with(StopReason::Exited(code)),
            None => self.vcpus[index].regs.x[0] = hal::psci::SMCCC_NOT_SUPPORTED as u64,
        }
        ExitOutcome::Continue
    }
}

#[cfg(test)]
mod tests;
