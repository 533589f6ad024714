//! The hypervisor's EL2 image: boots the VMs described by the boot
//! configuration and runs them until they stop.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod image {
    use hypervisor::arch::aarch64::{self as arch, launch};
    use hypervisor::hv_println;

    #[unsafe(no_mangle)]
    extern "C" fn hv_primary_main(cpu: usize) -> ! {
        arch::init_console();
        hv_println!(
            "hypervisor: starting on CPU {} at EL{}, {} physical CPUs",
            cpu,
            arch::cpu::current_el(),
            arch::gic::cpu_count()
        );
        launch::boot_from_config()
    }

    #[unsafe(no_mangle)]
    extern "C" fn hv_secondary_main(cpu: usize) -> ! {
        launch::secondary_main(cpu)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs at EL2 under QEMU: use `make run-linux` or `make run-multi-vm`");
    std::process::exit(2);
}
