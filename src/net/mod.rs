//! Inter-VM networking: per-port frame rings and the L2 virtual switch.
