//! The hypervisor's EL2 image: boots the VMs described by the boot
//! configuration and runs them until they stop.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs at EL2 under QEMU: use `make run-linux` or `make run-multi-vm`");
    std::process::exit(2);
}
