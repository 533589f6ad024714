//! GICv3 virtualization control registers (ICH_*_EL2) encodings.
