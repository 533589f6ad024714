//! PSCI 1.1 for guests: the decision part.
//!
//! [`handle`] looks at a PSCI (or SMCCC) call a guest made over HVC or SMC
//! and the power state of the VM's vCPUs, and says what to do: return a
//! value in x0, power a vCPU on or off, or stop/reset the VM. The run loop
//! carries the decision out. Function IDs and error codes come from
//! `hal::psci` (Arm DEN 0022D).

use hal::psci as id;

/// Power state of one vCPU as PSCI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Not running; CPU_ON may start it.
    Off,
    /// CPU_ON accepted, the vCPU has not run yet.
    OnPending,
    /// Running (or runnable).
    On,
}

/// What the caller must do after a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciAction {
    /// Write this value to x0 and continue.
    Return(u64),
    /// Start vCPU `target` at `entry` with x0 = `context_id` (EL1h, MMU off),
    /// then return PSCI SUCCESS to the caller.
    CpuOn {
        /// Index of the vCPU to start.
        target: usize,
        /// Guest-physical entry point.
        entry: u64,
        /// Value for the started vCPU's x0.
        context_id: u64,
    },
    /// Power the calling vCPU off (it does not return).
    CpuOff,
    /// Power the whole VM off.
    SystemOff,
    /// Reset the whole VM (SYSTEM_RESET, or SYSTEM_RESET2 with any reset
    /// type: every reset of a VM is a cold restart).
    SystemReset,
}

/// Is `fid` a PSCI/SMCCC function this module understands?
pub const fn is_psci_or_smccc(fid: u32) -> bool {
    // SMCCC OEN 0 (Arm Architecture Service) and 4 (Standard Secure Service:
    // PSCI), fast calls, 32- and 64-bit.
    let oen = (fid >> 24) & 0x3f;
    fid & 0x8000_0000 != 0 && (oen == 0 || oen == 4)
}

fn ret(code: i32) -> PsciAction {
    PsciAction::Return(code as i64 as u64)
}

/// Maps an MPIDR affinity value to a vCPU index: vCPU `n` has Aff0 = `n` and
/// all higher affinity fields 0 (matching the guest's device tree).
pub fn vcpu_of_mpidr(mpidr: u64, nr_vcpus: usize) -> Option<usize> {
    let affinity = mpidr & 0xff_00ff_ffff;
    if affinity & !0xff != 0 {
        return None;
    }
    let index = (affinity & 0xff) as usize;
    (index < nr_vcpus).then_some(index)
}

/// Decides a PSCI call. `args` are x1..x3; `vcpus` the power state of each of
/// the VM's vCPUs; `ram` the guest-physical RAM range `(base, size)` used to
/// validate entry points.
pub fn handle(fid: u32, args: [u64; 3], vcpus: &[PowerState], ram: (u64, u64)) -> PsciAction {
    match fid {
        id::PSCI_VERSION => PsciAction::Return(id::VERSION_1_1 as u64),
        id::PSCI_FEATURES => {
            let queried = args[0] as u32;
            let supported = matches!(
                queried,
                id::PSCI_VERSION
                    | id::PSCI_FEATURES
                    | id::CPU_ON_32
                    | id::CPU_ON_64
                    | id::CPU_OFF
                    | id::AFFINITY_INFO_32
                    | id::AFFINITY_INFO_64
                    | id::MIGRATE_INFO_TYPE
                    | id::SYSTEM_OFF
                    | id::SYSTEM_RESET
                    | id::SYSTEM_RESET2_32
                    | id::SYSTEM_RESET2_64
            );
            ret(if supported {
                id::SUCCESS
            } else {
                id::NOT_SUPPORTED
            })
        }
        id::CPU_ON_32 | id::CPU_ON_64 => {
            let (target, entry, context_id) = if fid == id::CPU_ON_32 {
                (
                    args[0] & 0xffff_ffff,
                    args[1] & 0xffff_ffff,
                    args[2] & 0xffff_ffff,
                )
            } else {
                (args[0], args[1], args[2])
            };
            let Some(index) = vcpu_of_mpidr(target, vcpus.len()) else {
                return ret(id::INVALID_PARAMETERS);
            };
            match vcpus[index] {
                PowerState::On => return ret(id::ALREADY_ON),
                PowerState::OnPending => return ret(id::ON_PENDING),
                PowerState::Off => {}
            }
            let (base, size) = ram;
            let inside = entry >= base && entry - base < size;
            if !inside || entry % 4 != 0 {
                return ret(id::INVALID_ADDRESS);
            }
            PsciAction::CpuOn {
                target: index,
                entry,
                context_id,
            }
        }
        id::CPU_OFF => PsciAction::CpuOff,
        id::AFFINITY_INFO_32 | id::AFFINITY_INFO_64 => {
            let (target, level) = if fid == id::AFFINITY_INFO_32 {
                (args[0] & 0xffff_ffff, args[1] & 0xffff_ffff)
            } else {
                (args[0], args[1])
            };
            if level != 0 {
                return ret(id::INVALID_PARAMETERS);
            }
            match vcpu_of_mpidr(target, vcpus.len()) {
                None => ret(id::INVALID_PARAMETERS),
                Some(index) => ret(match vcpus[index] {
                    PowerState::On => id::AFFINITY_ON,
                    PowerState::Off => id::AFFINITY_OFF,
                    PowerState::OnPending => id::AFFINITY_ON_PENDING,
                }),
            }
        }
        id::MIGRATE_INFO_TYPE => ret(id::MIGRATE_TYPE_NOT_PRESENT),
        id::SYSTEM_OFF => PsciAction::SystemOff,
        // SYSTEM_RESET2: the architectural warm reset (type 0) and any
        // vendor-specific type restart the VM the same way as SYSTEM_RESET;
        // the cookie is ignored. It does not return on success.
        id::SYSTEM_RESET | id::SYSTEM_RESET2_32 | id::SYSTEM_RESET2_64 => PsciAction::SystemReset,
        // SMCCC_VERSION and everything else (CPU_SUSPEND, ARCH_WORKAROUND_*,
        // vendor calls): not supported. Linux then assumes SMCCC 1.0 and makes
        // no workaround calls.
        _ => PsciAction::Return(id::SMCCC_NOT_SUPPORTED as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: (u64, u64) = (0x4000_0000, 0x1000_0000);
    const ALL_ON: [PowerState; 1] = [PowerState::On];
    const ONE_OFF: [PowerState; 4] = [
        PowerState::On,
        PowerState::Off,
        PowerState::OnPending,
        PowerState::On,
    ];

    fn ret_i(action: PsciAction) -> i64 {
        match action {
            PsciAction::Return(v) => v as i64,
            other => panic!("expected a return value, got {other:?}"),
        }
    }

    #[test]
    fn version_is_1_1() {
        assert_eq!(
            handle(id::PSCI_VERSION, [0; 3], &ALL_ON, RAM),
            PsciAction::Return(0x10001)
        );
    }

    #[test]
    fn features_lists_exactly_the_implemented_calls() {
        for fid in [
            id::CPU_ON_64,
            id::CPU_OFF,
            id::SYSTEM_OFF,
            id::AFFINITY_INFO_64,
            id::PSCI_FEATURES,
            id::SYSTEM_RESET,
            id::SYSTEM_RESET2_32,
            id::SYSTEM_RESET2_64,
        ] {
            assert_eq!(
                ret_i(handle(id::PSCI_FEATURES, [fid as u64, 0, 0], &ALL_ON, RAM)),
                0
            );
        }
        for fid in [id::CPU_SUSPEND_64, id::SMCCC_VERSION, 0x8400_0013] {
            assert_eq!(
                ret_i(handle(id::PSCI_FEATURES, [fid as u64, 0, 0], &ALL_ON, RAM)),
                -1
            );
        }
    }

    #[test]
    fn cpu_on_starts_an_off_vcpu() {
        assert_eq!(
            handle(id::CPU_ON_64, [1, 0x4020_0000, 0x55], &ONE_OFF, RAM),
            PsciAction::CpuOn {
                target: 1,
                entry: 0x4020_0000,
                context_id: 0x55
            }
        );
    }

    #[test]
    fn cpu_on_error_codes() {
        assert_eq!(
            ret_i(handle(id::CPU_ON_64, [0, 0x4020_0000, 0], &ONE_OFF, RAM)),
            -4
        );
        assert_eq!(
            ret_i(handle(id::CPU_ON_64, [2, 0x4020_0000, 0], &ONE_OFF, RAM)),
            -5
        );
        assert_eq!(
            ret_i(handle(id::CPU_ON_64, [9, 0x4020_0000, 0], &ONE_OFF, RAM)),
            -2
        );
        assert_eq!(
            ret_i(handle(
                id::CPU_ON_64,
                [0x100, 0x4020_0000, 0],
                &ONE_OFF,
                RAM
            )),
            -2
        );
        assert_eq!(
            ret_i(handle(id::CPU_ON_64, [1, 0x1000, 0], &ONE_OFF, RAM)),
            -9
        );
        assert_eq!(
            ret_i(handle(id::CPU_ON_64, [1, 0x5000_0000, 0], &ONE_OFF, RAM)),
            -9
        );
        assert_eq!(
            ret_i(handle(id::CPU_ON_64, [1, 0x4000_0002, 0], &ONE_OFF, RAM)),
            -9
        );
    }

    #[test]
    fn cpu_on_32_truncates_arguments() {
        assert_eq!(
            handle(
                id::CPU_ON_32,
                [0xffff_ffff_0000_0001, 0xffff_ffff_4000_0000, 7],
                &ONE_OFF,
                RAM
            ),
            PsciAction::CpuOn {
                target: 1,
                entry: 0x4000_0000,
                context_id: 7
            }
        );
    }

    #[test]
    fn affinity_info_reports_states() {
        assert_eq!(
            ret_i(handle(id::AFFINITY_INFO_64, [0, 0, 0], &ONE_OFF, RAM)),
            0
        );
        assert_eq!(
            ret_i(handle(id::AFFINITY_INFO_64, [1, 0, 0], &ONE_OFF, RAM)),
            1
        );
        assert_eq!(
            ret_i(handle(id::AFFINITY_INFO_64, [2, 0, 0], &ONE_OFF, RAM)),
            2
        );
        assert_eq!(
            ret_i(handle(id::AFFINITY_INFO_64, [0, 1, 0], &ONE_OFF, RAM)),
            -2
        );
        assert_eq!(
            ret_i(handle(id::AFFINITY_INFO_64, [7, 0, 0], &ONE_OFF, RAM)),
            -2
        );
    }

    #[test]
    fn power_actions_and_unknown_calls() {
        assert_eq!(
            handle(id::CPU_OFF, [0; 3], &ALL_ON, RAM),
            PsciAction::CpuOff
        );
        assert_eq!(
            handle(id::SYSTEM_OFF, [0; 3], &ALL_ON, RAM),
            PsciAction::SystemOff
        );
        for fid in [id::SYSTEM_RESET, id::SYSTEM_RESET2_32, id::SYSTEM_RESET2_64] {
            assert_eq!(
                handle(fid, [0x8000_0000, 7, 0], &ALL_ON, RAM),
                PsciAction::SystemReset
            );
        }
        assert_eq!(
            ret_i(handle(id::MIGRATE_INFO_TYPE, [0; 3], &ALL_ON, RAM)),
            2
        );
        assert_eq!(ret_i(handle(id::SMCCC_VERSION, [0; 3], &ALL_ON, RAM)), -1);
        assert_eq!(ret_i(handle(0x8000_8000, [0; 3], &ALL_ON, RAM)), -1); // ARCH_WORKAROUND_1
        assert_eq!(ret_i(handle(id::CPU_SUSPEND_64, [0; 3], &ALL_ON, RAM)), -1);
    }

    #[test]
    fn mpidr_mapping() {
        assert_eq!(vcpu_of_mpidr(0x8000_0003, 4), Some(3));
        assert_eq!(vcpu_of_mpidr(3, 3), None);
        assert_eq!(vcpu_of_mpidr(0x1_0000, 4), None);
    }

    #[test]
    fn classifies_function_ids() {
        assert!(is_psci_or_smccc(id::CPU_ON_64));
        assert!(is_psci_or_smccc(id::SMCCC_VERSION));
        assert!(!is_psci_or_smccc(0xc600_0000));
        assert!(!is_psci_or_smccc(0x0400_0000));
    }
}
