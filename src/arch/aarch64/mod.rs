//! AArch64 EL2: boot, exception vectors, world switch, MMU, GIC, timers.
