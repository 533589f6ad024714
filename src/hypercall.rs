//! The hypervisor's own small hypercall space (SMCCC vendor-specific
//! hypervisor service range, OEN 6).
