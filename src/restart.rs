//! Per-VM restart (PSCI `SYSTEM_RESET`/`SYSTEM_RESET2`, or the
//! console's `Ctrl-\ r N`) in bounded steps.
//!
//! A restart brings one VM back to the state it booted in, while the other
//! VMs keep running:
//!
//! 1. [`Vm::begin_restart`] marks the VM [`VmState::Restarting`]; its vCPUs
//!    stop where they are. (A VM with no [`BootImage`] to restart from, such
//!    as a test guest, stops with [`StopReason::ResetRequested`] instead.)
//! 2. The run loop calls [`restart_step`] once per turn the VM gets, outside
//!    any guest, with a byte budget. Each call does one bounded unit:
//!    * [`RestartPhase::Reset`]: the vCPUs (registers, EL1 state, timers,
//!      power), the vGIC, the hypercall output buffer and the devices go
//!      back to their reset state ([`reset_devices`]): the PL011 is new, the
//!      virtio transports are reset as if the driver wrote 0 to `Status`,
//!      and the VM's switch port forgets the MACs it learned and the frames
//!      queued for it, while its source-MAC lock stays. The virtio-blk disk
//!      keeps its contents, as a real disk does across a reboot.
//!    * [`RestartPhase::Clear`]: zeroes at most `budget` bytes of RAM.
//!    * [`RestartPhase::Load`]: copies at most `budget` bytes of the kernel,
//!      device tree and initramfs from their pristine staged copies
//!      ([`BootImage`]; the hypervisor only ever reads them), then powers on
//!      vCPU 0 at the kernel entry with `x0` = the device tree.
//!
//! So a guest that reboots in a loop costs its neighbours at most one unit
//! per turn: the scheduler treats a restarting VM as one more contender
//! ([`crate::sched::VcpuStatus::maintenance`]). The stage-2 tables, the
//! VMID and the carve-out are not touched: nothing is allocated or freed.

use crate::devices::pl011::Pl011;
use crate::devices::test_device::TestDevice;
use crate::guest_memory::GuestMemory;
use crate::loader::LoadError;
use crate::mmio::{AccessSize, DeviceContext, MmioDevice};
use crate::psci::PowerState;
use crate::vgic::Vgic;
pub use crate::vm::{BootImage, RestartPhase};
use crate::vm::{ExitOutcome, StopReason, Vm, VmState};

/// What one [`restart_step`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartProgress {
    /// More units are needed.
    Working,
    /// The VM runs again from its kernel entry.
    Done,
    /// The VM is not restarting (nothing was done).
    Idle,
    /// An image does not fit the VM's RAM; the VM stopped.
    Failed(LoadError),
}

/// Smallest useful budget of a restart unit (a smaller one is raised to it).
pub const MIN_UNIT: u64 = 4096;

impl Vm {
    /// Starts a restart of this VM (see the [module docs](self)): every
    /// vCPU stops where it is, and the run loop then calls
    /// [`restart_step`] until it returns [`RestartProgress::Done`]. Without
    /// a [`BootImage`] the VM stops with [`StopReason::ResetRequested`].
    pub fn begin_restart(&mut self) -> ExitOutcome {
        if self.boot.is_none() {
            return self.stop_with(StopReason::ResetRequested);
        }
        self.state = VmState::Restarting(RestartPhase::Reset);
        for vcpu in &mut self.vcpus {
            vcpu.power = PowerState::Off;
        }
        ExitOutcome::Restart
    }

    /// True while a restart is in progress.
    pub fn is_restarting(&self) -> bool {
        matches!(self.state, VmState::Restarting(_))
    }
}

/// Puts `vm`'s devices back into their reset state, in place: a new PL011,
/// the virtio transports reset through their `Status` register (as a driver
/// resets a device; the virtio-blk disk keeps its contents), the test device
/// cleared. The virtio-net device's switch port forgets its learned MACs and
/// queued frames (its MAC lock stays), and kicks not yet delivered are
/// dropped. Returns the frames discarded from the port's ring.
pub fn reset_devices(vm: &mut Vm) -> usize {
    const STATUS: u64 = hal::virtio_mmio::offset::STATUS;
    let mut ctx = DeviceContext {
        mem: &vm.mem,
        irq: &mut vm.vgic,
        vcpu: 0,
    };
    if let Some(uart) = vm.devices.pl011() {
        *uart = Pl011::at(uart.region().base, uart.intid());
    }
    if let Some(blk) = vm.devices.virtio_blk() {
        blk.write(STATUS, AccessSize::Word, 0, &mut ctx);
    }
    let mut dropped = 0;
    if let Some(net) = vm.devices.virtio_net() {
        net.write(STATUS, AccessSize::Word, 0, &mut ctx);
        let backend = net.backend_mut();
        backend.take_kicked_ports();
        dropped = backend.switch().reset_port(backend.port());
    }
    if let Some(test) = vm.devices.test_device() {
        *test = TestDevice::new(test.region().base);
    }
    dropped
}

/// One bounded unit of `vm`'s restart: at most `budget` bytes of its RAM
/// are written (see [`RestartPhase`]). `loaded` is called with each range
/// of boot image just copied (the caller makes it visible to a guest that
/// starts with its MMU off). Returns [`RestartProgress::Done`] once the VM
/// runs again; its restart count then goes up by one.
pub fn restart_step(
    vm: &mut Vm,
    budget: u64,
    loaded: &mut dyn FnMut(&GuestMemory, u64, u64),
) -> RestartProgress {
    let budget = budget.max(MIN_UNIT);
    let VmState::Restarting(phase) = vm.state else {
        return RestartProgress::Idle;
    };
    let Some(boot) = vm.boot else {
        vm.stop_with(StopReason::ResetRequested);
        return RestartProgress::Done;
    };
    let segments = boot.segments;
    let (base, size) = (vm.mem.base(), vm.mem.size());
    let next = match phase {
        RestartPhase::Reset => {
            reset_devices(vm);
            vm.vgic = Vgic::new(vm.nr_vcpus);
            for (index, vcpu) in vm.vcpus.iter_mut().enumerate() {
                vcpu.reset_off(index);
            }
            vm.hypercall_output.drain(|_| {});
            RestartPhase::Clear { next: base }
        }
        RestartPhase::Clear { next } => {
            let len = budget.min(base + size - next);
            // The range lies inside the VM's RAM by construction.
            let _ = vm.mem.fill(next, len, 0);
            if next + len >= base + size {
                RestartPhase::Load {
                    segment: 0,
                    offset: 0,
                }
            } else {
                RestartPhase::Clear { next: next + len }
            }
        }
        RestartPhase::Load { segment, offset } => {
            // Absent segments (no initramfs) cost no unit of their own.
            let next = (segment..segments.len()).find(|&i| segments[i].is_some());
            let Some((index, seg)) = next.and_then(|i| Some((i, segments[i]?))) else {
                vm.state = VmState::Running;
                vm.start(boot.entry, boot.x0);
                vm.restarts += 1;
                return RestartProgress::Done;
            };
            let offset = if index == segment { offset } else { 0 };
            let len = seg.bytes.len() as u64;
            let start = offset.min(len);
            let end = start.saturating_add(budget).min(len);
            let gpa = seg.gpa + start;
            if let Err(error) = vm.mem.write(gpa, &seg.bytes[start as usize..end as usize]) {
                vm.stop_with(StopReason::ResetRequested);
                return RestartProgress::Failed(LoadError::Memory {
                    what: seg.what,
                    error,
                });
            }
            loaded(&vm.mem, gpa, end - start);
            if end >= len {
                RestartPhase::Load {
                    segment: index + 1,
                    offset: 0,
                }
            } else {
                RestartPhase::Load {
                    segment: index,
                    offset: end,
                }
            }
        }
    };
    vm.state = VmState::Restarting(next);
    RestartProgress::Working
}

#[cfg(test)]
mod tests;
