//! Host tests of `Vm::handle_exit` with synthetic exits.

use super::*;
use crate::devices::Device;
use crate::devices::test_device::{TEST_DEVICE_BASE, TestDevice};
use crate::mmio::AccessSize;
use crate::trap::decode_sync;

fn vm(vcpus: usize) -> Vm {
    let mem = GuestMemory::from_static(
        0x4000_0000,
        Box::leak(vec![0u8; 0x10000].into_boxed_slice()),
    );
    let mut vm = Vm::new(1, mem, vcpus);
    vm.devices
        .attach(Device::Test(TestDevice::new(TEST_DEVICE_BASE)))
        .unwrap();
    vm.start(0x4000_0000, 0);
    vm
}

fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool) -> u64 {
    (0x24 << 26)
        | (1 << 25)
        | (1 << 24)
        | (sas << 22)
        | ((sse as u64) << 21)
        | (srt << 16)
        | ((sf as u64) << 15)
        | ((wnr as u64) << 6)
        | 7
}

fn mmio_exit(gpa: u64, esr: u64) -> Exit {
    decode_sync(esr, gpa, gpa >> 8)
}

#[test]
fn mmio_store_then_signed_load_round_trip() {
    let mut vm = vm(1);
    vm.vcpus[0].regs.x[3] = 0x80;
    let out = vm.handle_exit(
        0,
        mmio_exit(TEST_DEVICE_BASE, dabt(0, false, 3, false, true)),
    );
    assert_eq!(out, ExitOutcome::Continue);
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0004);
    let out = vm.handle_exit(
        0,
        mmio_exit(TEST_DEVICE_BASE, dabt(0, true, 4, true, false)),
    );
    assert_eq!(out, ExitOutcome::Continue);
    assert_eq!(vm.vcpus[0].regs.x[4], 0xffff_ffff_ffff_ff80);
    assert_eq!(vm.devices.test_device().unwrap().last.size, 1);
    assert_eq!(vm.stats.mmio, 2);
}

#[test]
fn unclaimed_mmio_stops_only_this_vm_with_report() {
    let mut vm = vm(1);
    let out = vm.handle_exit(0, mmio_exit(0x0c00_0000, dabt(2, false, 1, false, false)));
    match out {
        ExitOutcome::Stop(StopReason::Fault(Fault::UnclaimedMmio {
            vcpu: 0,
            pc,
            access,
        })) => {
            assert_eq!(pc, 0x4000_0000);
            assert_eq!(access.ipa, 0x0c00_0000);
            assert_eq!(access.size, AccessSize::Word);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!vm.is_running());
    assert_eq!(vm.stats.faults, 1);
}

#[test]
fn psci_version_over_hvc_and_smc() {
    let mut vm = vm(1);
    vm.vcpus[0].regs.x[0] = hal::psci::PSCI_VERSION as u64;
    assert_eq!(
        vm.handle_exit(0, Exit::Hvc { imm: 0 }),
        ExitOutcome::Continue
    );
    assert_eq!(vm.vcpus[0].regs.x[0], 0x10001);
    assert_eq!(
        vm.vcpus[0].regs.elr, 0x4000_0000,
        "HVC returns to ELR as is"
    );
    vm.vcpus[0].regs.x[0] = hal::psci::PSCI_VERSION as u64;
    assert_eq!(
        vm.handle_exit(0, Exit::Smc { imm: 0, len: 4 }),
        ExitOutcome::Continue
    );
    assert_eq!(vm.vcpus[0].regs.x[0], 0x10001);
    assert_eq!(
        vm.vcpus[0].regs.elr, 0x4000_0004,
        "SMC skips the instruction"
    );
}

#[test]
fn cpu_on_starts_secondary_and_wakes_it() {
    let mut vm = vm(4);
    vm.vcpus[0].regs.x[..4].copy_from_slice(&[hal::psci::CPU_ON_64 as u64, 2, 0x4000_1000, 0x77]);
    assert_eq!(
        vm.handle_exit(0, Exit::Hvc { imm: 0 }),
        ExitOutcome::Wake(1 << 2)
    );
    assert_eq!(vm.vcpus[0].regs.x[0], 0);
    assert_eq!(vm.vcpus[2].power, PowerState::On);
    assert_eq!(vm.vcpus[2].regs.elr, 0x4000_1000);
    assert_eq!(vm.vcpus[2].regs.x[0], 0x77);
    // Again: already on.
    vm.vcpus[0].regs.x[..4].copy_from_slice(&[hal::psci::CPU_ON_64 as u64, 2, 0x4000_1000, 0]);
    vm.handle_exit(0, Exit::Hvc { imm: 0 });
    assert_eq!(vm.vcpus[0].regs.x[0] as i64, -4);
}

#[test]
fn system_off_and_hypercalls() {
    let mut vm = vm(1);
    vm.vcpus[0].regs.x[0] = hypercall::HC_VM_ID as u64;
    vm.handle_exit(0, Exit::Hvc { imm: 0 });
    assert_eq!(vm.vcpus[0].regs.x[0], 1);
    vm.vcpus[0].regs.x[0] = 0xc600_00ff;
    vm.handle_exit(0, Exit::Hvc { imm: 0 });
    assert_eq!(vm.vcpus[0].regs.x[0] as i64, -1);
    vm.vcpus[0].regs.x[0] = hypercall::HC_PUTC as u64;
    vm.vcpus[0].regs.x[1] = b'A' as u64;
    vm.handle_exit(0, Exit::Hvc { imm: 0 });
    let mut seen = Vec::new();
    vm.hypercall_output.drain(|b| seen.extend_from_slice(b));
    assert_eq!(seen, b"A");
    vm.vcpus[0].regs.x[0] = hal::psci::SYSTEM_OFF as u64;
    assert_eq!(
        vm.handle_exit(0, Exit::Hvc { imm: 0 }),
        ExitOutcome::Stop(StopReason::PoweredOff)
    );
}

/// ESR_EL2.IL: the trapped instruction was 32 bits long.
const IL: u64 = 1 << 25;

#[test]
fn wfi_blocks_and_skips_by_instruction_length() {
    let mut vm = vm(1);
    // A 32-bit WFI (A64 or T32 wide).
    assert_eq!(
        vm.handle_exit(0, decode_sync((0x01 << 26) | IL, 0, 0)),
        ExitOutcome::Block
    );
    assert!(vm.vcpus[0].in_wfi);
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0004);
    // A 16-bit T32 WFI (IL = 0) from an AArch32 task.
    assert_eq!(
        vm.handle_exit(0, decode_sync(0x01 << 26, 0, 0)),
        ExitOutcome::Block
    );
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0006);
    // WFE, 16-bit then 32-bit.
    assert_eq!(
        vm.handle_exit(0, decode_sync((0x01 << 26) | 1, 0, 0)),
        ExitOutcome::Yield
    );
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0008);
    assert_eq!(
        vm.handle_exit(0, decode_sync((0x01 << 26) | IL | 1, 0, 0)),
        ExitOutcome::Yield
    );
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_000c);
    assert_eq!((vm.stats.wfi, vm.stats.wfe), (2, 2));
}

#[test]
fn mmio_skips_by_instruction_length() {
    let mut vm = vm(1);
    vm.vcpus[0].regs.x[1] = 0x5a;
    // A 16-bit T32 STRB (IL = 0): the PC moves by 2.
    let narrow = dabt(0, false, 1, false, true) & !IL;
    assert_eq!(
        vm.handle_exit(0, mmio_exit(TEST_DEVICE_BASE, narrow)),
        ExitOutcome::Continue
    );
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0002);
    // A 16-bit LDRB reads the value back, PC again by 2.
    let narrow_load = dabt(0, false, 2, false, false) & !IL;
    vm.handle_exit(0, mmio_exit(TEST_DEVICE_BASE, narrow_load));
    assert_eq!(vm.vcpus[0].regs.x[2], 0x5a);
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0004);
    // A 32-bit access: by 4.
    vm.handle_exit(
        0,
        mmio_exit(TEST_DEVICE_BASE, dabt(0, false, 1, false, true)),
    );
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0008);
}

#[test]
fn aborts_without_syndrome_stop_the_vm() {
    let mut vm = vm(1);
    let out = vm.handle_exit(0, decode_sync((0x24 << 26) | 7, 0x10, 0x100));
    assert!(matches!(
        out,
        ExitOutcome::Stop(StopReason::Fault(Fault::BadAbort { .. }))
    ));
}

fn sysreg(vm: &mut Vm, vcpu: usize, id: u32, rt: u32, read: bool) -> ExitOutcome {
    let iss = id | (rt << 5) | read as u32;
    vm.handle_exit(vcpu, decode_sync((0x18 << 26) | IL | iss as u64, 0, 0))
}

#[test]
fn pmu_reads_zero_and_debug_registers_stay_per_vcpu() {
    use crate::debug_regs::{PMCR_EL0, dbgbcr, dbgbvr};
    let mut vm = vm(2);
    vm.vcpus[1].reset_to(0x4000_0000, 0);
    // vCPU 0 enables the PMU and arms breakpoint 0.
    vm.vcpus[0].regs.x[2] = 1;
    sysreg(&mut vm, 0, PMCR_EL0, 2, false);
    vm.vcpus[0].regs.x[3] = 0x4000_0040;
    vm.vcpus[0].regs.x[4] = 0x1e7;
    sysreg(&mut vm, 0, dbgbvr(0), 3, false);
    sysreg(&mut vm, 0, dbgbcr(0), 4, false);
    // It reads its own breakpoint back, but PMCR_EL0 stays zero (N = 0).
    vm.vcpus[0].regs.x[5] = 99;
    sysreg(&mut vm, 0, PMCR_EL0, 5, true);
    assert_eq!(vm.vcpus[0].regs.x[5], 0);
    sysreg(&mut vm, 0, dbgbvr(0), 6, true);
    assert_eq!(vm.vcpus[0].regs.x[6], 0x4000_0040);
    // vCPU 1 sees none of it.
    vm.vcpus[1].regs.x[7] = 99;
    sysreg(&mut vm, 1, dbgbcr(0), 7, true);
    assert_eq!(vm.vcpus[1].regs.x[7], 0);
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0014);
    assert_eq!((vm.stats.sysreg_pmu, vm.stats.sysreg_debug), (2, 4));
    assert_eq!((vm.stats.sysreg, vm.stats.sysreg_raz_wi), (6, 0));
}

#[test]
fn id_registers_read_the_sanitized_table() {
    use crate::id_regs::{self, AA64DFR0, AA64PFR0, GuestIdRegs, ID_REG_COUNT, Switched};
    let mut host = [0u64; ID_REG_COUNT];
    host[AA64PFR0] = 0x0000_0001_0100_1111; // SVE, GICv3
    host[AA64DFR0] = 0x0000_0000_0000_0106; // PMUv3
    let table = id_regs::install(GuestIdRegs::sanitize(
        &host,
        Switched {
            sve: true,
            pauth: true,
        },
    ));
    let mut vm = vm(1);
    vm.vcpus[0].regs.x[3] = 99;
    // MRS x3, ID_AA64PFR0_EL1; MRS x4, ID_AA64DFR0_EL1.
    sysreg(&mut vm, 0, hal::esr::sysreg_id(3, 0, 0, 4, 0), 3, true);
    sysreg(&mut vm, 0, hal::esr::sysreg_id(3, 0, 0, 5, 0), 4, true);
    assert_eq!(vm.vcpus[0].regs.x[3], table.get(AA64PFR0));
    assert_eq!(vm.vcpus[0].regs.x[4], table.get(AA64DFR0));
    assert_eq!(vm.vcpus[0].regs.x[4] & 0xf00, 0, "no PMU");
    assert_eq!(vm.stats.sysreg_id, 2);
    assert_eq!(vm.vcpus[0].regs.elr, 0x4000_0008);
}

#[test]
fn trapped_sysreg_read_is_zero() {
    let mut vm = vm(1);
    vm.vcpus[0].regs.x[5] = 99;
    // MRS x5, CNTP_CTL_EL0 (op0=3 op1=3 CRn=14 CRm=2 op2=1), read.
    let iss = hal::esr::sysreg_id(3, 3, 14, 2, 1) | (5 << 5) | 1;
    assert_eq!(
        vm.handle_exit(0, decode_sync((0x18 << 26) | IL | iss as u64, 0, 0)),
        ExitOutcome::Continue
    );
    assert_eq!(vm.vcpus[0].regs.x[5], 0);
    assert_eq!(vm.stats.sysreg_raz_wi, 1);
}
