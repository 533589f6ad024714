//! PSCI (Arm DEN 0022) function identifiers and return codes, and the
//! SMCCC (Arm DEN 0028) values the hypervisor answers.

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_SUSPEND (SMC32).
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
/// CPU_SUSPEND (SMC64).
pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
/// CPU_OFF.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// CPU_ON (SMC64).
pub const CPU_ON_64: u32 = 0xc400_0003;
/// AFFINITY_INFO (SMC32).
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// AFFINITY_INFO (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000a;
/// SYSTEM_RESET2 (SMC32, PSCI 1.1).
pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
/// SYSTEM_RESET2 (SMC64, PSCI 1.1).
pub const SYSTEM_RESET2_64: u32 = 0xc400_0012;

/// PSCI return code: success.
pub const SUCCESS: i32 = 0;
/// PSCI return code: not supported.
pub const NOT_SUPPORTED: i32 = -1;
/// PSCI return code: invalid parameters.
pub const INVALID_PARAMETERS: i32 = -2;
/// PSCI return code: denied.
pub const DENIED: i32 = -3;
/// PSCI return code: already on.
pub const ALREADY_ON: i32 = -4;
/// PSCI return code: on pending.
pub const ON_PENDING: i32 = -5;
/// PSCI return code: internal failure.
pub const INTERNAL_FAILURE: i32 = -6;
/// PSCI return code: not present.
pub const NOT_PRESENT: i32 = -7;
/// PSCI return code: disabled.
pub const DISABLED: i32 = -8;
/// PSCI return code: invalid address.
pub const INVALID_ADDRESS: i32 = -9;

/// PSCI version 1.1 as returned by PSCI_VERSION (major << 16 | minor).
pub const VERSION_1_1: u32 = 0x0001_0001;

/// AFFINITY_INFO result: the CPU is on.
pub const AFFINITY_ON: i32 = 0;
/// AFFINITY_INFO result: the CPU is off.
pub const AFFINITY_OFF: i32 = 1;
/// AFFINITY_INFO result: the CPU is being turned on.
pub const AFFINITY_ON_PENDING: i32 = 2;

/// MIGRATE_INFO_TYPE result: no trusted OS needing migration.
pub const MIGRATE_TYPE_NOT_PRESENT: i32 = 2;

/// SMCCC_VERSION.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// SMCCC generic "not supported" return value.
pub const SMCCC_NOT_SUPPORTED: i64 = -1;
