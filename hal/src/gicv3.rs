//! GICv3 distributor and redistributor register maps (Arm IHI 0069).
//!
//! Offsets are shared by the hypervisor's physical GIC driver and by the
//! emulated distributor/redistributors that guests see.
