//! Guests at EL1: tiny bare-metal guests make hypercalls, access an
//! emulated device at every width, fault on purpose, and prove that two VMs
//! with the same guest-physical layout cannot see each other's memory, PMU,
//! breakpoints, SVE registers or pointer-authentication keys.

use hal::read_sysreg;
use hypervisor::arch::aarch64::guest::{VmSlot, carve_out, slot};
use hypervisor::arch::aarch64::vcpu::features;
use hypervisor::devices::Device;
use hypervisor::devices::test_device::{TEST_DEVICE_BASE, TestDevice};
use hypervisor::mmio::AccessSize;
use hypervisor::platform::RAM_BASE;
use hypervisor::selftest::{Suite, Test, TestResult, skip};
use hypervisor::vm::{ExitOutcome, Fault, StopReason};
use hypervisor::{check, check_eq, check_ok};
use spin::MutexGuard;

use super::guests::{self, GuestCode, UNMAPPED_GPA};

/// The suite.
pub static SUITE: Suite = Suite {
    name: "el1-guests",
    tests: &[
        Test {
            name: "hvc_and_smc_calls_answered",
            run: hvc_and_smc_calls_answered,
        },
        Test {
            name: "mmio_every_width_signed_and_unsigned",
            run: mmio_every_width,
        },
        Test {
            name: "unmapped_access_stops_only_that_vm",
            run: unmapped_access_stops_only_that_vm,
        },
        Test {
            name: "abort_without_syndrome_stops_vm",
            run: abort_without_syndrome_stops_vm,
        },
        Test {
            name: "stage2_isolates_same_layout_vms",
            run: stage2_isolates_same_layout_vms,
        },
        Test {
            name: "pmu_and_breakpoints_do_not_leak",
            run: pmu_and_breakpoints_do_not_leak,
        },
        Test {
            name: "sve_and_pauth_state_stays_per_vm",
            run: sve_and_pauth_state_stays_per_vm,
        },
    ],
};

const RAM: u64 = 2 * 1024 * 1024;
const MAX_EXITS: usize = 1000;

fn boot(
    id: usize,
    code: GuestCode,
    x0: u64,
    x1: u64,
) -> Result<MutexGuard<'static, VmSlot>, hypervisor::selftest::Failure> {
    let mut g = check_ok!(slot(id));
    check_ok!(g.create(id, RAM, 1));
    check_ok!(g.load_image(RAM_BASE, code.bytes()));
    g.vm.start(RAM_BASE, x0);
    g.vm.vcpus[0].regs.x[1] = x1;
    Ok(g)
}

fn hvc_and_smc_calls_answered() -> TestResult {
    let mut g = boot(0, guests::hvc(), 0, 0)?;
    let outcome = g.run_alone(0, MAX_EXITS);
    check_eq!(outcome, ExitOutcome::Stop(StopReason::Exited(0)));
    check_eq!(g.vm.stats.smc, 1);
    check_eq!(g.vm.stats.hvc, 5);
    Ok(())
}

fn mmio_every_width() -> TestResult {
    let mut g = boot(0, guests::mmio(), 0, 0)?;
    check_ok!(
        g.vm.devices
            .attach(Device::Test(TestDevice::new(TEST_DEVICE_BASE)))
    );
    let outcome = g.run_alone(0, MAX_EXITS);
    // Status bits name the failed check (see the guest's EXPECT lines).
    check_eq!(outcome, ExitOutcome::Stop(StopReason::Exited(0)));
    let dev = check_ok!(g.vm.devices.test_device());
    check_eq!(dev.by_width, [4, 3, 3, 6]);
    check_eq!(dev.writes, 5);
    check_eq!(dev.reads, 11);
    check_eq!(g.vm.stats.mmio, 16);
    Ok(())
}

fn unmapped_access_stops_only_that_vm() -> TestResult {
    let mut bad = boot(0, guests::unmapped(), 0, 0)?;
    let outcome = bad.run_alone(0, MAX_EXITS);
    match outcome {
        ExitOutcome::Stop(StopReason::Fault(Fault::UnclaimedMmio { vcpu, pc, access })) => {
            check_eq!(vcpu, 0);
            check_eq!(access.ipa, UNMAPPED_GPA);
            check_eq!(access.size, AccessSize::Double);
            check!(!access.is_write);
            check_eq!(pc, RAM_BASE + 4);
        }
        _ => check!(false),
    }
    check!(!bad.vm.is_running());
    // The hypervisor is unaffected: another VM runs to completion.
    let mut good = boot(1, guests::hvc(), 0, 0)?;
    check_eq!(
        good.run_alone(0, MAX_EXITS),
        ExitOutcome::Stop(StopReason::Exited(0))
    );
    Ok(())
}

fn abort_without_syndrome_stops_vm() -> TestResult {
    let mut g = boot(0, guests::no_syndrome(), 0, 0)?;
    check_ok!(
        g.vm.devices
            .attach(Device::Test(TestDevice::new(TEST_DEVICE_BASE)))
    );
    match g.run_alone(0, MAX_EXITS) {
        ExitOutcome::Stop(StopReason::Fault(Fault::BadAbort { ipa, esr, .. })) => {
            check_eq!(ipa, TEST_DEVICE_BASE);
            check!(!esr.data_abort().isv());
        }
        _ => check!(false),
    }
    Ok(())
}

fn stage2_isolates_same_layout_vms() -> TestResult {
    const MARK0: u64 = 0xaaaa_0000_0000_aaaa;
    const MARK1: u64 = 0xbbbb_0000_0000_bbbb;
    let marker = RAM_BASE + 0x1000;
    let mut vm0 = boot(0, guests::isolation(), MARK0, 0)?;
    let mut vm1 = boot(1, guests::isolation(), MARK1, 0)?;
    // Same guest-physical address, different host memory.
    let t0 = check_ok!(vm0.translate(marker));
    let t1 = check_ok!(vm1.translate(marker));
    check_eq!(t0.pa, carve_out(0) + 0x1000);
    check_eq!(t1.pa, carve_out(1) + 0x1000);
    check!(vm0.vmid() != vm1.vmid());
    check_eq!(
        vm0.run_alone(0, MAX_EXITS),
        ExitOutcome::Stop(StopReason::Exited(0))
    );
    check_eq!(
        vm1.run_alone(0, MAX_EXITS),
        ExitOutcome::Stop(StopReason::Exited(0))
    );
    check_eq!(check_ok!(vm0.vm.mem.read_obj::<u64>(marker)), MARK0);
    check_eq!(check_ok!(vm1.vm.mem.read_obj::<u64>(marker)), MARK1);
    drop(vm0);

    // VM 0 again, now trying VM 1's marker through VM 1's host-physical
    // address: outside VM 0's RAM, so it faults and VM 1 is untouched.
    let target = carve_out(1) + 0x1000;
    let mut spy = boot(0, guests::isolation(), 0x5157, target)?;
    match spy.run_alone(0, MAX_EXITS) {
        ExitOutcome::Stop(StopReason::Fault(Fault::UnclaimedMmio { access, .. })) => {
            check_eq!(access.ipa, target);
        }
        _ => check!(false),
    }
    check_eq!(check_ok!(vm1.vm.mem.read_obj::<u64>(marker)), MARK1);
    check!(spy.translate(target).is_none());
    Ok(())
}

fn pmu_and_breakpoints_do_not_leak() -> TestResult {
    // VM 0 enables the PMU and arms breakpoint 0 on an instruction it then
    // executes with debug enabled at EL1.
    let mut armer = boot(0, guests::debug(), 1, 0)?;
    check_eq!(
        armer.run_alone(0, MAX_EXITS),
        ExitOutcome::Stop(StopReason::Exited(0))
    );
    let stored = armer.vm.vcpus[0].debug;
    check_eq!(stored.bvr[0], RAM_BASE + guests::debug_bp_offset());
    check_eq!(stored.bcr[0], 0x1e7);
    // Every access trapped: 4 PMU writes and 3 reads; 6 debug register
    // writes (BVR, BCR, OSLAR, OSDLR, MDSCR) and reads (BVR, BCR, MDSCR).
    check_eq!(armer.vm.stats.sysreg_pmu, 7);
    check_eq!(armer.vm.stats.sysreg_debug, 8);
    drop(armer);
    // None of it reached this CPU's hardware.
    check_eq!(read_sysreg!("dbgbcr0_el1") & 1, 0);
    check!(read_sysreg!("dbgbvr0_el1") != RAM_BASE + guests::debug_bp_offset());
    check_eq!(read_sysreg!("mdscr_el1"), 0);
    check_eq!(read_sysreg!("pmcr_el0") & 1, 0);
    check_eq!(read_sysreg!("pmcntenset_el0"), 0);
    check_eq!(read_sysreg!("pmccfiltr_el0"), 0);
    // VM 1, same layout, same pCPU, next: sees no counter, no breakpoint,
    // and runs through the address VM 0's breakpoint named.
    let mut looker = boot(1, guests::debug(), 0, 0)?;
    check_eq!(
        looker.run_alone(0, MAX_EXITS),
        ExitOutcome::Stop(StopReason::Exited(0))
    );
    check_eq!(looker.vm.stats.sysreg_pmu, 6);
    check_eq!(looker.vm.stats.sysreg_debug, 5);
    check_eq!(looker.vm.stats.faults, 0);
    Ok(())
}

fn sve_and_pauth_state_stays_per_vm() -> TestResult {
    const ROUNDS: u64 = 100;
    const SEED0: u64 = 0x1111_2222_3333_0001;
    const SEED1: u64 = 0x7777_8888_9999_0003;
    let f = *features();
    if f.sve_vl == 0 || !f.pauth {
        return skip("no SVE or pointer authentication (run with QEMU_CPU=max,pauth-impdef=on)");
    }
    // Two VMs on this pCPU, switched at every WFI of their guest: each
    // load/put moves keys and (once SVE is live) ZCR_EL1, and every world
    // switch Z/P/FFR. Each guest checks its own registers after every
    // switch (see the guest's comment for the status bits).
    let mut vms = [
        boot(0, guests::sve_pauth(), SEED0, ROUNDS)?,
        boot(1, guests::sve_pauth(), SEED1, ROUNDS)?,
    ];
    let mut done = [false; 2];
    let mut switches = 0u64;
    for _ in 0..ROUNDS + 8 {
        for (vm, finished) in vms.iter_mut().zip(done.iter_mut()) {
            if *finished {
                continue;
            }
            match vm.run_alone(0, MAX_EXITS) {
                ExitOutcome::Block => switches += 1,
                outcome => {
                    check_eq!(outcome, ExitOutcome::Stop(StopReason::Exited(0)));
                    *finished = true;
                }
            }
        }
    }
    check_eq!(done, [true, true]);
    // ROUNDS switches plus the two of the FP/SIMD-only phase, per VM.
    check_eq!(switches, 2 * (ROUNDS + 2));
    let results = RAM_BASE + guests::SVE_PAUTH_RESULTS;
    let read = |vm: &VmSlot, offset: u64| vm.vm.mem.read_obj::<u64>(results + offset);
    let (pacga0, pacga1) = (check_ok!(read(&vms[0], 0)), check_ok!(read(&vms[1], 0)));
    let (signed0, signed1) = (check_ok!(read(&vms[0], 8)), check_ok!(read(&vms[1], 8)));
    // Different keys, different signatures of the same pointer.
    check!(pacga0 != pacga1);
    check!(signed0 != signed1);
    // PACIA inserted a code into the pointer's upper bits.
    check!(signed0 != RAM_BASE + 0x10000);
    // The guests ran at the vector length the hypervisor switches.
    check_eq!(check_ok!(read(&vms[0], 16)), f.sve_vl as u64);
    for vm in &vms {
        let vcpu = &vm.vm.vcpus[0];
        // SVE trapped exactly twice: first use, and after the guest was back
        // to FP/SIMD only state (lazy again), which it also is at the end.
        check_eq!(vcpu.regs.sve.traps, 2);
        check_eq!(vcpu.regs.sve_live, 0);
    }
    check_eq!(vms[0].vm.vcpus[0].pauth.keys[0], SEED0);
    check_eq!(vms[1].vm.vcpus[0].pauth.keys[0], SEED1);
    Ok(())
}
