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
mod tests {
    use super::*;
    use crate::devices::Device;
    use crate::devices::test_device::{TEST_DEVICE_BASE, TestDevice};
    use crate::mmio::AccessSize;
    use crate::trap::decode_sync;

    fn vm(vcpus: usize) -> Vm {
        let mem = GuestMemory::from_static(
            0x4000_0000,
            Box::leak(vec![0u8; 0x10000].into_boxed_slice()),
        );
        let mut vm = Vm::new(1, mem, vcpus);
        vm.devices
            .attach(Device::Test(TestDevice::new(TEST_DEVICE_BASE)))
            .unwrap();
        vm.start(0x4000_0000, 0);
        vm
    }

    fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
        (0x24 << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | ((sse as u64) << 21)
            | (srt << 16)
            | ((sf as u64) << 15)
            | ((wnr as u64) << 6)
            | 7
    }

    fn mmio_exit(gpa: u64, esr: u64) -> Exit {
        decode_sync(esr, gpa, gpa >> 8)
    }

    #[test]
    fn mmio_store_then_signed_load_round_trip() {
        let mut vm = vm(1);
        vm.vcpus[0].regs.x[3] = 0x80;
        let out = vm.handle_exit(
            0,
            mmio_exit(TEST_DEVICE_BASE, dabt(0, false, 3, false, true)),
        );
        assert_eq!(out, ExitOutcome::Continue);
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0004);
        let out = vm.handle_exit(
            0,
            mmio_exit(TEST_DEVICE_BASE, dabt(0, true, 4, true, false)),
        );
        assert_eq!(out, ExitOutcome::Continue);
        assert_eq!(vm.vcpus[0].regs.x[4], 0xffff_ffff_ffff_ff80);
        assert_eq!(vm.devices.test_device().unwrap().last.size, 1);
        assert_eq!(vm.stats.mmio, 2);
    }

    #[test]
    fn unclaimed_mmio_stops_only_this_vm_with_report() {
        let mut vm = vm(1);
        let out = vm.handle_exit(0, mmio_exit(0x0c00_0000, dabt(2, false, 1, false, false)));
        match out {
            ExitOutcome::Stop(StopReason::Fault(Fault::UnclaimedMmio {
                vcpu: 0,
                pc,
                access,
            })) => {
                assert_eq!(pc, 0x4000_0000);
                assert_eq!(access.ipa, 0x0c00_0000);
                assert_eq!(access.size, AccessSize::Word);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!vm.is_running());
        assert_eq!(vm.stats.faults, 1);
    }

    #[test]
    fn psci_version_over_hvc_and_smc() {
        let mut vm = vm(1);
        vm.vcpus[0].regs.x[0] = hal::psci::PSCI_VERSION as u64;
        assert_eq!(
            vm.handle_exit(0, Exit::Hvc { imm: 0 }),
            ExitOutcome::Continue
        );
        assert_eq!(vm.vcpus[0].regs.x[0], 0x10001);
        assert_eq!(
            vm.vcpus[0].regs.elr, 0x4000_0000,
            "HVC returns to ELR as is"
        );
        vm.vcpus[0].regs.x[0] = hal::psci::PSCI_VERSION as u64;
        assert_eq!(
            vm.handle_exit(0, Exit::Smc { imm: 0, len: 4 }),
            ExitOutcome::Continue
        );
        assert_eq!(vm.vcpus[0].regs.x[0], 0x10001);
        assert_eq!(
            vm.vcpus[0].regs.elr, 0x4000_0004,
            "SMC skips the instruction"
        );
    }

    #[test]
    fn cpu_on_starts_secondary_and_wakes_it() {
        let mut vm = vm(4);
        vm.vcpus[0].regs.x[..4].copy_from_slice(&[
            hal::psci::CPU_ON_64 as u64,
            2,
            0x4000_1000,
            0x77,
        ]);
        assert_eq!(
            vm.handle_exit(0, Exit::Hvc { imm: 0 }),
            ExitOutcome::Wake(1 << 2)
        );
        assert_eq!(vm.vcpus[0].regs.x[0], 0);
        assert_eq!(vm.vcpus[2].power, PowerState::On);
        assert_eq!(vm.vcpus[2].regs.elr, 0x4000_1000);
        assert_eq!(vm.vcpus[2].regs.x[0], 0x77);
        // Again: already on.
        vm.vcpus[0].regs.x[..4].copy_from_slice(&[hal::psci::CPU_ON_64 as u64, 2, 0x4000_1000, 0]);
        vm.handle_exit(0, Exit::Hvc { imm: 0 });
        assert_eq!(vm.vcpus[0].regs.x[0] as i64, -4);
    }

    #[test]
    fn system_off_and_hypercalls() {
        let mut vm = vm(1);
        vm.vcpus[0].regs.x[0] = hypercall::HC_VM_ID as u64;
        vm.handle_exit(0, Exit::Hvc { imm: 0 });
        assert_eq!(vm.vcpus[0].regs.x[0], 1);
        vm.vcpus[0].regs.x[0] = 0xc600_00ff;
        vm.handle_exit(0, Exit::Hvc { imm: 0 });
        assert_eq!(vm.vcpus[0].regs.x[0] as i64, -1);
        vm.vcpus[0].regs.x[0] = hypercall::HC_PUTC as u64;
        vm.vcpus[0].regs.x[1] = b'A' as u64;
        vm.handle_exit(0, Exit::Hvc { imm: 0 });
        let mut seen = Vec::new();
        vm.hypercall_output.drain(|b| seen.extend_from_slice(b));
        assert_eq!(seen, b"A");
        vm.vcpus[0].regs.x[0] = hal::psci::SYSTEM_OFF as u64;
        assert_eq!(
            vm.handle_exit(0, Exit::Hvc { imm: 0 }),
            ExitOutcome::Stop(StopReason::PoweredOff)
        );
    }

    /// ESR_EL2.IL: the trapped instruction was 32 bits long.
    const IL: u64 = 1 << 25;

    #[test]
    fn wfi_blocks_and_skips_by_instruction_length() {
        let mut vm = vm(1);
        // A 32-bit WFI (A64 or T32 wide).
        assert_eq!(
            vm.handle_exit(0, decode_sync((0x01 << 26) | IL, 0, 0)),
            ExitOutcome::Block
        );
        assert!(vm.vcpus[0].in_wfi);
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0004);
        // A 16-bit T32 WFI (IL = 0) from an AArch32 task.
        assert_eq!(
            vm.handle_exit(0, decode_sync(0x01 << 26, 0, 0)),
            ExitOutcome::Block
        );
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0006);
        // WFE, 16-bit then 32-bit.
        assert_eq!(
            vm.handle_exit(0, decode_sync((0x01 << 26) | 1, 0, 0)),
            ExitOutcome::Yield
        );
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0008);
        assert_eq!(
            vm.handle_exit(0, decode_sync((0x01 << 26) | IL | 1, 0, 0)),
            ExitOutcome::Yield
        );
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_000c);
        assert_eq!((vm.stats.wfi, vm.stats.wfe), (2, 2));
    }

    #[test]
    fn mmio_skips_by_instruction_length() {
        let mut vm = vm(1);
        vm.vcpus[0].regs.x[1] = 0x5a;
        // A 16-bit T32 STRB (IL = 0): the PC moves by 2.
        let narrow = dabt(0, false, 1, false, true) & !IL;
        assert_eq!(
            vm.handle_exit(0, mmio_exit(TEST_DEVICE_BASE, narrow)),
            ExitOutcome::Continue
        );
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0002);
        // A 16-bit LDRB reads the value back, PC again by 2.
        let narrow_load = dabt(0, false, 2, false, false) & !IL;
        vm.handle_exit(0, mmio_exit(TEST_DEVICE_BASE, narrow_load));
        assert_eq!(vm.vcpus[0].regs.x[2], 0x5a);
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0004);
        // A 32-bit access: by 4.
        vm.handle_exit(
            0,
            mmio_exit(TEST_DEVICE_BASE, dabt(0, false, 1, false, true)),
        );
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0008);
    }

    #[test]
    fn aborts_without_syndrome_stop_the_vm() {
        let mut vm = vm(1);
        let out = vm.handle_exit(0, decode_sync((0x24 << 26) | 7, 0x10, 0x100));
        assert!(matches!(
            out,
            ExitOutcome::Stop(StopReason::Fault(Fault::BadAbort { .. }))
        ));
    }

    fn sysreg(vm: &mut Vm, vcpu: usize, id: u32, rt: u32, read: bool) -> ExitOutcome {
        let iss = id | (rt << 5) | read as u32;
        vm.handle_exit(vcpu, decode_sync((0x18 << 26) | IL | iss as u64, 0, 0))
    }

    #[test]
    fn pmu_reads_zero_and_debug_registers_stay_per_vcpu() {
        use crate::debug_regs::{PMCR_EL0, dbgbcr, dbgbvr};
        let mut vm = vm(2);
        vm.vcpus[1].reset_to(0x4000_0000, 0);
        // vCPU 0 enables the PMU and arms breakpoint 0.
        vm.vcpus[0].regs.x[2] = 1;
        sysreg(&mut vm, 0, PMCR_EL0, 2, false);
        vm.vcpus[0].regs.x[3] = 0x4000_0040;
        vm.vcpus[0].regs.x[4] = 0x1e7;
        sysreg(&mut vm, 0, dbgbvr(0), 3, false);
        sysreg(&mut vm, 0, dbgbcr(0), 4, false);
        // It reads its own breakpoint back, but PMCR_EL0 stays zero (N = 0).
        vm.vcpus[0].regs.x[5] = 99;
        sysreg(&mut vm, 0, PMCR_EL0, 5, true);
        assert_eq!(vm.vcpus[0].regs.x[5], 0);
        sysreg(&mut vm, 0, dbgbvr(0), 6, true);
        assert_eq!(vm.vcpus[0].regs.x[6], 0x4000_0040);
        // vCPU 1 sees none of it.
        vm.vcpus[1].regs.x[7] = 99;
        sysreg(&mut vm, 1, dbgbcr(0), 7, true);
        assert_eq!(vm.vcpus[1].regs.x[7], 0);
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0014);
        assert_eq!((vm.stats.sysreg_pmu, vm.stats.sysreg_debug), (2, 4));
        assert_eq!((vm.stats.sysreg, vm.stats.sysreg_raz_wi), (6, 0));
    }

    #[test]
    fn id_registers_read_the_sanitized_table() {
        use crate::id_regs::{self, AA64DFR0, AA64PFR0, GuestIdRegs, ID_REG_COUNT, Switched};
        let mut host = [0u64; ID_REG_COUNT];
        host[AA64PFR0] = 0x0000_0001_0100_1111; // SVE, GICv3
        host[AA64DFR0] = 0x0000_0000_0000_0106; // PMUv3
        let table = id_regs::install(GuestIdRegs::sanitize(
            &host,
            Switched {
                sve: true,
                pauth: true,
            },
        ));
        let mut vm = vm(1);
        vm.vcpus[0].regs.x[3] = 99;
        // MRS x3, ID_AA64PFR0_EL1; MRS x4, ID_AA64DFR0_EL1.
        sysreg(&mut vm, 0, hal::esr::sysreg_id(3, 0, 0, 4, 0), 3, true);
        sysreg(&mut vm, 0, hal::esr::sysreg_id(3, 0, 0, 5, 0), 4, true);
        assert_eq!(vm.vcpus[0].regs.x[3], table.get(AA64PFR0));
        assert_eq!(vm.vcpus[0].regs.x[4], table.get(AA64DFR0));
        assert_eq!(vm.vcpus[0].regs.x[4] & 0xf00, 0, "no PMU");
        assert_eq!(vm.stats.sysreg_id, 2);
        assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0008);
    }

    #[test]
    fn trapped_sysreg_read_is_zero() {
        let mut vm = vm(1);
        vm.vcpus[0].regs.x[5] = 99;
        // MRS x5, CNTP_CTL_EL0 (op0=3 op1=3 CRn=14 CRm=2 op2=1), read.
        let iss = hal::esr::sysreg_id(3, 3, 14, 2, 1) | (5 << 5) | 1;
        assert_eq!(
            vm.handle_exit(0, decode_sync((0x18 << 26) | IL | iss as u64, 0, 0)),
            ExitOutcome::Continue
        );
        assert_eq!(vm.vcpus[0].regs.x[5], 0);
        assert_eq!(vm.stats.sysreg_raz_wi, 1);
    }
}
