//! The raw descriptor chain and its guest addresses are private to the
//! virtio core: no device can bypass its typestate.
use hypervisor::virtio::chain::Chain;

fn main() {}
