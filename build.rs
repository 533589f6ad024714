//! Build script: on bare-metal AArch64, link the EL2 images with the
//! hypervisor's linker script. Host builds (tests, clippy) need nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/arch/aarch64/link.ld");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "none" && arch == "aarch64" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/src/arch/aarch64/link.ld");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    }
}
