//! The cost of one VM exit, by kind: a tiny guest at EL1 times loops of an
//! MMIO read of an emulated register (PL011 UARTFR), an MMIO write (PL011
//! UARTIMSC, same value), an HVC (PSCI_VERSION) and a WFI woken by the
//! virtual timer armed 64 ticks (about 1 us) before it, next to the same
//! loop reading RAM (no exit). (A WFI with an interrupt already pending
//! does not trap under QEMU: it returns before the trap check.) The guest runs through the run loop
//! Linux guests use ([`runtime::run_until_stopped`]: the scheduling policy,
//! vGIC, timers, device emulation), so each figure is one full round trip
//! guest -> hypervisor -> guest in counter time.
//!
//! Shared by the `exit-cost` suite (`make run`: few iterations, checks the
//! exit counts) and the `hypervisor-exitbench` image (`make bench`).

use core::arch::global_asm;

use hypervisor::arch::aarch64::guest::slot;
use hypervisor::arch::aarch64::{gic, runtime, vcpu, vgic_hw};
use hypervisor::devices::Device;
use hypervisor::devices::pl011::Pl011;
use hypervisor::platform::RAM_BASE;
use hypervisor::sched::{RunQueue, VcpuRef};
use hypervisor::vgic::VcpuIfState;
use hypervisor::vm::{StopReason, VmState};

/// The loops the guest times, in the order of its result slots.
pub const KINDS: [&str; 5] = ["ram-read", "mmio-read", "mmio-write", "hvc", "wfi-timer"];
/// Guest-physical offset (from RAM base) of the guest's result slots: the
/// counter ticks of each loop of [`KINDS`].
const RESULTS: u64 = 0x1000;
/// The VM slot the measurement uses (the other suites use 0..=2).
const VM: usize = 3;
const RAM: u64 = 2 << 20;

unsafe extern "C" {
    static guest_exit_cost_start: u8;
    static guest_exit_cost_end: u8;
}

fn guest_code() -> &'static [u8] {
    let start = &raw const guest_exit_cost_start;
    let len = (&raw const guest_exit_cost_end as usize).saturating_sub(start as usize);
    // SAFETY: the two labels delimit the guest blob in the image's read-only
    // data, emitted below with the end after the start.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// One measurement: counter ticks per kind for `iterations` round trips,
/// and the VM's exit counters afterwards.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// Iterations of every loop.
    pub iterations: u64,
    /// Counter ticks of each loop of [`KINDS`].
    pub ticks: [u64; 5],
    /// MMIO exits.
    pub mmio: u64,
    /// HVC exits.
    pub hvc: u64,
    /// WFI exits.
    pub wfi: u64,
    /// Exits that left the interface state in the hardware.
    pub interface_kept: u64,
    /// Entries that touched neither the vGIC nor the interface.
    pub entries_untouched: u64,
    /// How the VM ended (0 = the guest's own exit call with status 0).
    pub exited_ok: bool,
}

impl Measurement {
    /// Each loop made exactly its exits: two MMIO loops (and the three
    /// vGIC set-up writes), one HVC per iteration plus the exit call, at
    /// most one WFI per iteration and some (a WFI reached after the timer
    /// fired does not trap); the RAM loop none.
    pub fn exits_as_expected(&self) -> bool {
        let n = self.iterations;
        self.mmio == 2 * n + 3 && self.hvc == n + 1 && (1..=n).contains(&self.wfi)
    }

    /// Nanoseconds of counter time per iteration of loop `kind`.
    pub fn ns_per_iteration(&self, kind: usize) -> u64 {
        let freq = vcpu::counter_frequency().max(1);
        (self.ticks[kind] as u128 * 1_000_000_000 / freq as u128 / self.iterations.max(1) as u128)
            as u64
    }
}

/// Creates the guest with `iterations` per loop, runs it to its end
/// through the production run loop on this CPU and returns its figures.
pub fn measure(iterations: u64) -> Result<Measurement, &'static str> {
    gic::init_distributor();
    gic::init_cpu(0);
    vcpu::init_el2_for_guests();
    {
        let mut g = slot(VM).ok_or("no VM slot")?;
        g.create(VM, RAM, 1).map_err(|_| "cannot create the VM")?;
        g.load_image(RAM_BASE, guest_code())
            .map_err(|_| "cannot load the guest")?;
        let vtr = vgic_hw::vtr();
        for v in g.vm.vcpus.iter_mut() {
            v.gic = VcpuIfState::from_vtr(vtr);
        }
        g.vm.devices
            .attach(Device::Pl011(Pl011::new()))
            .map_err(|_| "cannot attach the UART")?;
        g.vm.start(RAM_BASE, iterations);
    }
    runtime::register_vm(VM, 0);
    let mut queue = RunQueue::new();
    queue.add(VcpuRef { vm: VM, vcpu: 0 });
    runtime::run_until_stopped(0, queue);
    let g = slot(VM).ok_or("no VM slot")?;
    let mut ticks = [0u64; 5];
    for (i, t) in ticks.iter_mut().enumerate() {
        *t =
            g.vm.mem
                .read_obj::<u64>(RAM_BASE + RESULTS + 8 * i as u64)
                .map_err(|_| "cannot read the results")?;
    }
    let s = g.vm.stats;
    Ok(Measurement {
        iterations,
        ticks,
        mmio: s.mmio,
        hvc: s.hvc,
        wfi: s.wfi,
        interface_kept: s.interface_kept,
        entries_untouched: s.entries_untouched,
        exited_ok: g.vm.state == VmState::Stopped(StopReason::Exited(0)),
    })
}

// x0 = iterations per loop. Results (counter ticks per loop) at RAM base
// + 0x1000. x22 counts down, x23 holds the start count.
global_asm!(
    r#"
    .section .rodata.guests, "a"
    .balign 4

.macro LOOP_BEGIN
    mov     x22, x19
    isb
    mrs     x23, cntvct_el0
3:
.endm
.macro LOOP_END slot
    subs    x22, x22, #1
    b.ne    3b
    isb
    mrs     x24, cntvct_el0
    sub     x24, x24, x23
    str     x24, [x20, #(\slot * 8)]
.endm

    .global guest_exit_cost_start
guest_exit_cost_start:
    mov     x19, x0
    movz    x20, #0x4000, lsl #16
    add     x20, x20, #0x1000
    movz    x21, #0x0900, lsl #16       /* PL011 */
    msr     daifset, #0xf               /* interrupts stay pending */

    LOOP_BEGIN
    ldr     w4, [x20, #64]
    LOOP_END 0

    LOOP_BEGIN
    ldr     w4, [x21, #0x18]            /* UARTFR */
    LOOP_END 1

    LOOP_BEGIN
    str     wzr, [x21, #0x38]           /* UARTIMSC = 0, as it is */
    LOOP_END 2

    LOOP_BEGIN
    movz    x0, #0x0000
    movk    x0, #0x8400, lsl #16        /* PSCI_VERSION */
    hvc     #0
    LOOP_END 3

    /* PPI 27 (virtual timer) enabled in group 1 at the vGIC; each WFI
       waits for the timer, due 64 ticks after it is armed: the WFI traps,
       the vCPU blocks until the timer fires, and the guest acknowledges
       the interrupt (PSTATE.I stays set, so it is never taken). */
    movz    x9, #0x0800, lsl #16        /* GICD */
    mov     w10, #0x12                  /* ARE | EnableGrp1 */
    str     w10, [x9]
    movz    x9, #0x080b, lsl #16        /* GICR of vCPU 0, SGI frame */
    mov     w10, #-1
    str     w10, [x9, #0x80]            /* IGROUPR0: all group 1 */
    mov     w10, #(1 << 27)
    str     w10, [x9, #0x100]           /* ISENABLER0: PPI 27 */
    mov     x10, #0xff
    msr     s3_0_c4_c6_0, x10           /* ICC_PMR_EL1 */
    mov     x10, #1
    msr     s3_0_c12_c12_7, x10         /* ICC_IGRPEN1_EL1 */
    isb

    LOOP_BEGIN
    mrs     x10, cntvct_el0
    add     x10, x10, #64
    msr     cntv_cval_el0, x10
    mov     x11, #1
    msr     cntv_ctl_el0, x11           /* enabled, not masked */
    isb
    wfi
    mrs     x12, s3_0_c12_c12_0         /* ICC_IAR1_EL1 */
    msr     s3_0_c12_c12_1, x12         /* ICC_EOIR1_EL1 */
    isb
    LOOP_END 4
    msr     cntv_ctl_el0, xzr

    mov     x1, #0
    movz    x0, #0x0001
    movk    x0, #0xc600, lsl #16        /* HC_EXIT(0) */
    hvc     #0
4:  b       4b
    .global guest_exit_cost_end
guest_exit_cost_end:
"#
);
