//! The EL2 test image: runs every in-QEMU suite and exits QEMU with the
//! result (`make run`).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the self-test image runs at EL2 under QEMU: use `make run`");
    std::process::exit(2);
}
