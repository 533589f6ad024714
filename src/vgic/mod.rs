//! The virtual GICv3: emulated distributor and redistributors, list-register
//! scheduling.
