//! Boot: read the boot configuration QEMU staged, create and load every VM,
//! start the other physical CPUs and enter the run loops.
//!
//! Every check on the user's input (configuration, kernel, initramfs,
//! device trees, disk) happens here before any guest runs; a problem is
//! reported in plain words and QEMU exits with status 2.

use crate::config::{BootConfig, ConsoleMode, Staged};
use crate::console::{ConsoleConfig, ConsoleMux, OutputMode};
use crate::devices::Device;
use crate::devices::empty_virtio::EmptyVirtioSlot;
use crate::devices::pl011::Pl011;
use crate::loader::{GuestRam, StagedImages, plan_boot};
use crate::platform::{
    self, GUEST_RAM_SIZE, HOST_CONFIG_ADDR, HOST_CONFIG_MAX, MAX_PCPUS, RAM_BASE, UART_INTID,
    VIRTIO_BLK_SLOT, VIRTIO_NET_SLOT, virtio_slot,
};
use crate::restart::BootImage;
use crate::sched::{Placement, build_run_queues};
use crate::vgic::VcpuIfState;
use crate::virtio::VirtioMmioTransport;
use crate::virtio::blk::{MemDisk, VirtioBlk};

use super::guest::{self, carve_out, clean_guest_range};
use super::{gic, psci_smc, runtime, semihosting, vcpu, vgic_hw};

/// Reports a fatal problem with the user's input and exits QEMU with
/// status 2.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    crate::hv_println!("hypervisor: FATAL: {}", args);
    semihosting::exit(semihosting::EXIT_BAD_INPUT)
}

/// Bytes QEMU staged at `staged` (validated by the configuration parser to
/// lie in their staging window of host RAM).
fn staged_bytes(staged: Staged) -> &'static [u8] {
    // SAFETY: valid for reads for 'static and never written by the hypervisor.
    // The configuration parser checked that `[addr, addr + size)` lies in
    // a staging window: host RAM reserved for QEMU's loader, identity-mapped.
    unsafe { core::slice::from_raw_parts(staged.addr as usize as *const u8, staged.size as usize) }
}

/// Boots the VMs the configuration describes; never returns.
pub fn boot_from_config() -> ! {
    let started = vcpu::counter();
    gic::init_distributor();
    gic::init_cpu(0);
    vcpu::init_el2_for_guests();

    // SAFETY: the configuration window is host RAM reserved for QEMU's
    // loader (platform memory plan), identity-mapped, and only read.
    let region = unsafe {
        core::slice::from_raw_parts(
            HOST_CONFIG_ADDR as usize as *const u8,
            HOST_CONFIG_MAX as usize,
        )
    };
    let config = match BootConfig::parse(region) {
        Ok(c) => c,
        Err(e) => fatal(format_args!(
            "{e}\n  (the Makefile writes the boot configuration to {HOST_CONFIG_ADDR:#x}; run through `make run-linux` or see README)"
        )),
    };
    let pcpus = gic::cpu_count();
    // With more VMs than pCPUs, VM n goes to pCPU n mod pCPUs: the VMs
    // sharing a pCPU are time-sliced there.
    let placement = config.placement;
    crate::hv_println!(
        "hypervisor: {} VM(s) x {} vCPU(s), {} MiB each, {} on {} pCPU(s)",
        config.vms,
        config.vcpus,
        config.mem >> 20,
        match placement {
            Placement::TimeSliced => "time-sliced",
            Placement::PerPcpu if config.vms > pcpus => "VM n on pCPU n mod pCPUs",
            Placement::PerPcpu => "one VM per pCPU",
        },
        placement.pcpus_used(config.vms, pcpus)
    );

    let vtr = vgic_hw::vtr();
    for id in 0..config.vms {
        create_vm(id, &config, vtr);
        runtime::register_vm(id, placement.pcpu_of(id, pcpus));
    }
    super::capture_file::start(&config);

    let mut console = ConsoleConfig::new(config.vms, vcpu::counter_frequency() / 20);
    if config.console == ConsoleMode::Raw {
        console.mode = OutputMode::Raw;
    }
    runtime::install_console(ConsoleMux::new(console));
    gic::enable_spi(UART_INTID, 0);

    // Counter time since the machine's reset: start-up work (VM RAM,
    // image copies, devices) is the difference of the two.
    crate::hv_println!(
        "hypervisor: boot timing: started at {} ms, VMs built at {} ms",
        runtime::counter_ms(started),
        runtime::counter_ms(vcpu::counter())
    );
    runtime::set_queues(build_run_queues(placement, config.vms, config.vcpus, pcpus));
    for cpu in 1..placement.pcpus_used(config.vms, pcpus).min(MAX_PCPUS) {
        let status = psci_smc::cpu_on(cpu);
        if status != 0 {
            fatal(format_args!(
                "could not start physical CPU {cpu}: PSCI CPU_ON returned {status}"
            ));
        }
    }
    runtime::pcpu_main(0)
}

/// Entry of secondary physical CPUs after boot.
pub fn secondary_main(cpu: usize) -> ! {
    gic::init_cpu(cpu);
    vcpu::init_el2_for_guests();
    runtime::pcpu_main(cpu)
}

fn create_vm(id: usize, config: &BootConfig, vtr: u64) {
    let Some(mut slot) = guest::slot(id) else {
        fatal(format_args!("VM {id}: no such VM slot"));
    };
    if let Err(e) = slot.create(id, config.mem, config.vcpus) {
        fatal(format_args!("{e}"));
    }
    for vcpu in slot.vm.vcpus.iter_mut() {
        vcpu.gic = VcpuIfState::from_vtr(vtr);
    }
    let Some(dtb) = config.dtb(id) else {
        fatal(format_args!(
            "VM {id}: no device tree (dtb{id}) in the boot configuration"
        ));
    };
    let images = StagedImages {
        kernel: staged_bytes(config.kernel),
        initrd: config.initrd.map(staged_bytes),
        dtb: staged_bytes(dtb),
    };
    let ram = GuestRam {
        base: RAM_BASE,
        size: config.mem,
    };
    let plan = match plan_boot(id, ram, &images) {
        Ok(plan) => plan,
        Err(e) => fatal(format_args!("{e}")),
    };
    // Copied with the EL2 `memcpy` (64 bytes per loop, see `memcpy.rs`).
    if let Err(e) = plan.load_into(&slot.vm.mem, &images) {
        fatal(format_args!("VM {id}: {e}"));
    }
    let mem = &slot.vm.mem;
    clean_guest_range(mem, plan.kernel_gpa, images.kernel.len() as u64);
    clean_guest_range(mem, plan.dtb_gpa, plan.dtb_size);
    if let Some((gpa, size)) = plan.initrd {
        clean_guest_range(mem, gpa, size);
    }
    // A restart loads the same staged images again (they are only read).
    match BootImage::from_plan(&plan, &images) {
        Ok(boot) => slot.vm.boot = Some(boot),
        Err(e) => fatal(format_args!("VM {id}: {e}")),
    }

    let devices = &mut slot.vm.devices;
    if let Err(e) = devices.attach(Device::Pl011(Pl011::new())) {
        fatal(format_args!("VM {id}: cannot attach the UART: {e:?}"));
    }
    let (blk_base, blk_intid) = virtio_slot(VIRTIO_BLK_SLOT);
    let blk = match config.disk {
        Some(disk) => {
            let blk = VirtioBlk::new(MemDisk::new(private_disk_copy(id, disk)));
            Device::VirtioBlk(VirtioMmioTransport::new(blk_base, blk_intid, blk))
        }
        None => Device::EmptyVirtio(EmptyVirtioSlot::new(blk_base)),
    };
    if let Err(e) = devices.attach(blk) {
        fatal(format_args!("VM {id}: cannot attach virtio-blk: {e:?}"));
    }
    if config.net {
        let options = crate::devices::NetPortOptions {
            vlan: config.net_vlans[id],
            rate_mbit: config.net_rate_mbit[id],
            offloads: config.net_offloads[id],
            clock: crate::net::Clock {
                now: vcpu::counter,
                freq: vcpu::counter_frequency(),
            },
        };
        if let Err(e) = crate::devices::attach_virtio_net_with(devices, id, options) {
            fatal(format_args!("VM {id}: cannot attach virtio-net: {e:?}"));
        }
    } else {
        let (net_base, _) = virtio_slot(VIRTIO_NET_SLOT);
        if let Err(e) = devices.attach(Device::EmptyVirtio(EmptyVirtioSlot::new(net_base))) {
            fatal(format_args!(
                "VM {id}: cannot attach the virtio-net slot: {e:?}"
            ));
        }
    }
    slot.vm.start(plan.entry(), plan.x0());
    crate::hv_println!(
        "vm{}: kernel at {:#x} ({} bytes), initramfs {}, dtb at {:#x}, entry {:#x}",
        id,
        plan.kernel_gpa,
        images.kernel.len(),
        match plan.initrd {
            Some((gpa, size)) => FmtRange(gpa, size),
            None => FmtRange(0, 0),
        },
        plan.dtb_gpa,
        plan.entry()
    );
}

struct FmtRange(u64, u64);

impl core::fmt::Display for FmtRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.1 == 0 {
            f.write_str("none")
        } else {
            write!(f, "at {:#x} ({} bytes)", self.0, self.1)
        }
    }
}

/// Copies the staged disk image into VM `id`'s private disk area (after its
/// RAM in its carve-out) and returns it.
fn private_disk_copy(id: usize, disk: Staged) -> &'static mut [u8] {
    if disk.size > platform::HOST_DISK_MAX {
        fatal(format_args!(
            "disk image ({} bytes) is larger than the {} bytes a VM's disk area holds",
            disk.size,
            platform::HOST_DISK_MAX
        ));
    }
    let area = carve_out(id) + GUEST_RAM_SIZE;
    // `[area, area + HOST_DISK_MAX)` is the disk part of VM `id`'s carve-out
    // (platform memory plan: RAM first, then the disk); the size was checked
    // against it above.
    // It is valid for 'static and used by nothing but this VM's virtio-blk
    // device, created once per VM creation under the VM slot's lock.
    let (start, len) = (area as usize as *mut u8, disk.size as usize);
    // SAFETY: exclusive 'static memory (see above).
    let bytes = unsafe { core::slice::from_raw_parts_mut(start, len) };
    let staged = staged_bytes(disk);
    bytes.copy_from_slice(staged);
    bytes
}
