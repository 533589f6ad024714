//! Host tests: the Linux probe sequence against the emulated registers, and
//! delivery through a simulated virtual CPU interface that edits the list
//! registers the way the hardware does when the guest acknowledges
//! (ICV_IAR1_EL1) and ends (ICV_EOIR1_EL1, EOImode 0) interrupts.
//!
//! Longer than 800 lines on purpose: the register accessors, the Linux
//! probe sequence and the simulated CPU interface at the top are used by
//! every test of the distributor, redistributors and list registers.

use super::*;
use crate::mmio::AccessSize::{Byte, Double, Half, Word};
use crate::platform::{GICD_BASE, GICR_BASE, GICR_STRIDE, INTID_VIRT_TIMER};
use hal::gicv3::{gicd, gicr};
use hal::ich::{
    HCR_EOICOUNT_SHIFT, IchHcr, IchVmcr, ListRegister, LrState, Sgi1r, eisr_from_lrs, hcr_eoi_count,
};
use std::vec::Vec;

// ── Register access helpers ─────────────────────────────────────────────

pub(super) fn dr(g: &mut Vgic, off: u64) -> u32 {
    g.dist_read(off, Word) as u32
}
pub(super) fn dw(g: &mut Vgic, off: u64, v: u32) {
    g.dist_write(off, Word, u64::from(v));
}
pub(super) fn rr(g: &mut Vgic, vcpu: usize, off: u64) -> u32 {
    g.redist_read(vcpu as u64 * GICR_STRIDE + off, Word) as u32
}
pub(super) fn rw(g: &mut Vgic, vcpu: usize, off: u64, v: u32) {
    g.redist_write(vcpu as u64 * GICR_STRIDE + off, Word, u64::from(v));
}

/// Register index and bit of `intid` in a bit-per-INTID bank.
pub(super) fn bank(base: u64, intid: u32) -> (u64, u32) {
    (base + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

/// Everything Linux's irq-gic-v3 driver does at boot, for `g.num_vcpus()`
/// CPUs, checking what it checks. Leaves the distributor enabled (ARE,
/// Group 0 and 1), all SPIs level, priority 0xa0, disabled, routed to CPU 0;
/// every redistributor awake with SGIs enabled and PPIs disabled.
fn linux_probe(g: &mut Vgic) {
    // gic_validate_dist_version
    assert_eq!(dr(g, gicd::PIDR2) & 0xf0, 0x30);
    // gic_init_bases
    let typer = dr(g, gicd::TYPER);
    let nr_lines = ((typer & 0x1f) + 1) * 32;
    assert_eq!(nr_lines, 128);
    assert_eq!(((typer >> 19) & 0x1f) + 1, 10, "IDbits");
    assert_eq!(
        typer & (gicd_typer_bits::LPIS | gicd_typer_bits::MBIS | gicd_typer_bits::ESPI),
        0
    );
    assert_eq!(typer & gicd_typer_bits::RSS, 0);
    let iidr = dr(g, gicd::IIDR);
    assert_ne!(iidr, 0, "IIDR 0 triggers Linux's HIP07 quirk");
    assert_eq!(dr(g, gicd::TYPER2), 0);

    // gic_dist_init
    dw(g, gicd::CTLR, 0);
    assert_eq!(dr(g, gicd::CTLR) & (1 << 31), 0, "RWP");
    for i in (32..nr_lines).step_by(32) {
        dw(g, gicd::IGROUPR + u64::from(i / 8), !0);
    }
    // gic_dist_config
    for i in (32..nr_lines).step_by(16) {
        dw(g, gicd::ICFGR + u64::from(i / 4), 0);
    }
    for i in (32..nr_lines).step_by(4) {
        dw(g, gicd::IPRIORITYR + u64::from(i), 0xa0a0_a0a0);
    }
    for i in (32..nr_lines).step_by(32) {
        dw(g, gicd::ICACTIVER + u64::from(i / 8), !0);
        dw(g, gicd::ICENABLER + u64::from(i / 8), !0);
    }
    assert_eq!(dr(g, gicd::CTLR) & (1 << 31), 0, "RWP");
    dw(g, gicd::CTLR, 0x13); // ARE_NS | ENABLE_G1A | ENABLE_G1
    assert_eq!(dr(g, gicd::CTLR), 0x53, "DS | ARE | Grp1 | Grp0");
    for i in 32..nr_lines {
        g.dist_write(gicd::IROUTER + u64::from(i) * 8, Double, 0);
    }

    // gic_populate_rdist / gic_iterate_rdists for each CPU, then
    // gic_cpu_init.
    for cpu in 0..g.num_vcpus() {
        let mut frame = 0;
        loop {
            assert_eq!(rr(g, frame, gicr::PIDR2) & 0xf0, 0x30);
            let typer = g.redist_read(frame as u64 * GICR_STRIDE + gicr::TYPER, Double);
            if typer >> 32 == cpu as u64 {
                break;
            }
            assert_eq!(typer & 0x10, 0, "Last before finding CPU {cpu}");
            frame += 1;
        }
        assert_eq!(frame, cpu);
        // gic_enable_redist(true)
        let waker = rr(g, cpu, gicr::WAKER);
        assert_eq!(waker, 0b110, "asleep at reset");
        rw(g, cpu, gicr::WAKER, waker & !0b10);
        assert_eq!(rr(g, cpu, gicr::WAKER) & 0b100, 0, "ChildrenAsleep cleared");
        // SGIs/PPIs: Group 1, gic_cpu_config
        rw(g, cpu, gicr::IGROUPR0, !0);
        rw(g, cpu, gicr::ICACTIVER0, !0);
        rw(g, cpu, gicr::ICENABLER0, 0xffff_0000);
        rw(g, cpu, gicr::ISENABLER0, 0x0000_ffff);
        for i in (0..32).step_by(4) {
            rw(g, cpu, gicr::IPRIORITYR + i, 0xa0a0_a0a0);
        }
        assert_eq!(rr(g, cpu, gicr::CTLR) & (1 << 3), 0, "GICR RWP");
    }
}

mod gicd_typer_bits {
    pub use hal::gicv3::gicd_typer::{ESPI, LPIS, MBIS, RSS};
}

/// Configures the trigger of PPI `intid` of `vcpu` and enables it, as
/// Linux's irq_set_type + irq_enable do.
pub(super) fn enable_ppi(g: &mut Vgic, vcpu: usize, intid: u32, edge: bool) {
    let cfg = rr(g, vcpu, gicr::ICFGR1);
    let bit = 2 << ((intid % 16) * 2);
    rw(
        g,
        vcpu,
        gicr::ICFGR1,
        if edge { cfg | bit } else { cfg & !bit },
    );
    rw(g, vcpu, gicr::ISENABLER0, 1 << intid);
}

/// Configures the trigger of SPI `intid` and enables it.
pub(super) fn enable_spi(g: &mut Vgic, intid: u32, edge: bool) {
    let off = gicd::ICFGR + u64::from(intid / 16) * 4;
    let cfg = dr(g, off);
    let bit = 2 << ((intid % 16) * 2);
    dw(g, off, if edge { cfg | bit } else { cfg & !bit });
    let (reg, bit) = bank(gicd::ISENABLER, intid);
    dw(g, reg, bit);
}

pub(super) fn set_priority(g: &mut Vgic, intid: u32, prio: u8) {
    g.dist_write(gicd::IPRIORITYR + u64::from(intid), Byte, u64::from(prio));
}

pub(super) fn route(g: &mut Vgic, intid: u32, vcpu: u64) {
    g.dist_write(gicd::IROUTER + u64::from(intid) * 8, Double, vcpu);
}

// ── Simulated virtual CPU interface (hardware) + guest ─────────────────

/// A vCPU with Linux's CPU-interface settings: PMR 0xf0, Group 1 enabled.
pub(super) fn linux_cpu(num_lrs: usize) -> VcpuIfState {
    let mut st = VcpuIfState::new(num_lrs);
    st.vmcr = IchVmcr(IchVmcr::VENG1).with_vpmr(0xf0).0;
    st
}

fn lrs(st: &VcpuIfState) -> impl Iterator<Item = (usize, ListRegister)> + '_ {
    st.lrs[..st.lr_count()]
        .iter()
        .map(|&v| ListRegister(v))
        .enumerate()
}

/// ICV_IAR1_EL1: the highest-priority Group 1 LR in state Pending that beats
/// the priority mask and the running priority becomes Active.
pub(super) fn iar(st: &mut VcpuIfState) -> Option<u32> {
    let vmcr = IchVmcr(st.vmcr);
    if !vmcr.veng1() {
        return None;
    }
    let running = lrs(st)
        .filter(|(_, l)| l.state().is_active())
        .map(|(_, l)| u16::from(l.priority()))
        .min()
        .unwrap_or(0x100);
    let (slot, lr) = lrs(st)
        .filter(|(_, l)| l.state() == LrState::Pending && l.group1())
        .filter(|(_, l)| l.priority() < vmcr.vpmr() && u16::from(l.priority()) < running)
        .min_by_key(|(i, l)| (l.priority(), *i))?;
    st.lrs[slot] = lr.with_state(LrState::Active).raw();
    Some(lr.vintid())
}

/// ICV_EOIR1_EL1 in EOImode 0: priority drop and deactivation.
pub(super) fn eoi(st: &mut VcpuIfState, intid: u32) {
    let hit = lrs(st).find(|(_, l)| l.vintid() == intid && l.state().is_active());
    match hit {
        Some((slot, l)) => {
            let next = LrState::from_parts(l.state().is_pending(), false);
            st.lrs[slot] = l.with_state(next).raw();
        }
        None => {
            let count = hcr_eoi_count(st.hcr) + 1;
            st.hcr =
                (st.hcr & !(0x1f << HCR_EOICOUNT_SHIFT)) | (u64::from(count) << HCR_EOICOUNT_SHIFT);
        }
    }
}

/// True while the maintenance interrupt (PPI 25) is asserted.
fn maintenance(st: &VcpuIfState) -> bool {
    let hcr = IchHcr::from_bits_retain(st.hcr);
    let live = &st.lrs[..st.lr_count()];
    let valid = lrs(st)
        .filter(|(_, l)| l.state() != LrState::Invalid)
        .count();
    let any_pending = lrs(st).any(|(_, l)| l.state() == LrState::Pending);
    eisr_from_lrs(live) != 0
        || (hcr.contains(IchHcr::UIE) && valid <= 1)
        || (hcr.contains(IchHcr::LRENPIE) && hcr_eoi_count(st.hcr) != 0)
        || (hcr.contains(IchHcr::NPIE) && !any_pending)
}

/// Runs `vcpu` until it goes idle: the guest takes and completes interrupts
/// one by one (calling `during` after each acknowledge, as a handler that
/// talks to its device), exits whenever the maintenance interrupt is
/// asserted, and the run loop syncs and flushes around every exit. Returns
/// the acknowledged INTIDs in order.
fn run_guest(
    g: &mut Vgic,
    vcpu: usize,
    st: &mut VcpuIfState,
    mut during: impl FnMut(&mut Vgic, u32),
) -> Vec<u32> {
    let mut order = Vec::new();
    for _entry in 0..1000 {
        let out = g.flush(vcpu, st);
        assert_eq!(st.hcr & 1, 1, "ICH_HCR_EL2.En");
        assert_no_duplicate_lrs(g);
        if out.waiting > 0 {
            assert_eq!(out.loaded, st.lr_count());
        }
        let mut exited = false;
        loop {
            if maintenance(st) {
                exited = true;
                break;
            }
            let Some(intid) = iar(st) else { break };
            order.push(intid);
            during(g, intid);
            eoi(st, intid);
        }
        g.sync(vcpu, st);
        assert!(st.lrs.iter().all(|&l| l == 0), "sync empties the LRs");
        if !exited {
            return order;
        }
    }
    panic!("maintenance interrupt storm");
}

fn run(g: &mut Vgic, vcpu: usize, st: &mut VcpuIfState) -> Vec<u32> {
    run_guest(g, vcpu, st, |_, _| {})
}

/// No interrupt is in two LRs of any vCPU at once.
fn assert_no_duplicate_lrs(g: &Vgic) {
    let mut seen = std::collections::BTreeSet::new();
    for v in 0..g.num_vcpus() {
        for slot in 0..usize::from(g.lr_used[v]) {
            let intid = u32::from(g.lr_intid[v][slot]);
            let key = if intid < 32 {
                (v, intid)
            } else {
                (usize::MAX, intid)
            };
            assert!(seen.insert(key), "INTID {intid} in two LRs");
        }
    }
}

pub(super) fn booted(num_vcpus: usize) -> Vgic {
    let mut g = Vgic::new(num_vcpus);
    linux_probe(&mut g);
    assert_eq!(*g.counters(), VgicCounters::default(), "probe is clean");
    g.take_kicks();
    g
}

// ── Probe and register semantics ────────────────────────────────────────

#[test]
fn linux_probe_sequence_is_clean() {
    for n in 1..=MAX_VCPUS {
        let mut g = booted(n);
        for v in 0..n {
            let typer = g.gicr_typer(v);
            assert_eq!(typer >> 32, v as u64, "affinity");
            assert_eq!((typer >> 8) & 0xffff, v as u64, "Processor_Number");
            assert_eq!(typer & 0x10 != 0, v == n - 1, "Last");
            assert_eq!(typer & 1, 0, "PLPIS");
            assert_eq!(rr(&mut g, v, gicr::ISENABLER0), 0x0000_ffff);
            assert_eq!(rr(&mut g, v, gicr::IGROUPR0), !0);
            assert_eq!(rr(&mut g, v, gicr::ICFGR0), 0xaaaa_aaaa, "SGIs are edge");
            assert_eq!(rr(&mut g, v, gicr::IPRIORITYR + 0x1c), 0xa0a0_a0a0);
        }
        assert_eq!(dr(&mut g, gicd::IPRIORITYR + 124), 0xa0a0_a0a0);
        assert_eq!(dr(&mut g, gicd::ISENABLER + 4), 0);
        assert_eq!(dr(&mut g, gicd::IGROUPR + 12), !0);
        assert_eq!(g.redist_region().size, n as u64 * GICR_STRIDE);
    }
}

#[test]
fn distributor_identification() {
    let mut g = Vgic::new(2);
    assert_eq!(dr(&mut g, gicd::PIDR2), 0x3b);
    assert_eq!(dr(&mut g, 0xffe0), 0x92, "PIDR0");
    assert_eq!(dr(&mut g, 0xfff0), 0x0d, "CIDR0");
    assert_eq!(dr(&mut g, 0xfffc), 0xb1, "CIDR3");
    assert_eq!(rr(&mut g, 1, 0xffe0), 0x93, "GICR PIDR0");
    assert_eq!(rr(&mut g, 1, gicr::PIDR2), 0x3b);
    assert_eq!(dr(&mut g, gicd::IIDR), IIDR);
    assert_eq!(rr(&mut g, 0, gicr::IIDR), IIDR);
    let typer = dr(&mut g, gicd::TYPER);
    assert_eq!(typer & 0x1f, IT_LINES_NUMBER);
    assert_eq!(typer & (1 << 10), 0, "SecurityExtn (DS = 1)");
    assert_eq!(typer & (1 << 25), 0, "1-of-N supported");
    // CTLR: DS and ARE are RAO/WI, only the group enables stick.
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50);
    dw(&mut g, gicd::CTLR, 0xffff_ffff);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x53);
    dw(&mut g, gicd::CTLR, 0);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50);
    // Read-only registers ignore writes (and count them).
    dw(&mut g, gicd::TYPER, 0);
    dw(&mut g, gicd::PIDR2, 0);
    rw(&mut g, 0, gicr::TYPER, 0);
    assert_eq!(dr(&mut g, gicd::TYPER), typer);
    assert_eq!(g.counters().read_only_write, 3);
}

#[test]
fn gicr_typer_64_bit_and_halves() {
    let mut g = Vgic::new(3);
    for v in 0..3 {
        let full = g.redist_read(v as u64 * GICR_STRIDE + gicr::TYPER, Double);
        let lo = rr(&mut g, v, gicr::TYPER);
        let hi = rr(&mut g, v, gicr::TYPER + 4);
        assert_eq!(full, u64::from(lo) | (u64::from(hi) << 32));
        assert_eq!(full, g.gicr_typer(v));
    }
    assert_eq!(g.gicr_typer(2) & 0x10, 0x10);
    assert_eq!(g.gicr_typer(1) & 0x10, 0);
    assert_eq!(*g.counters(), VgicCounters::default());
}

#[test]
fn waker_handshake_both_ways() {
    let mut g = Vgic::new(2);
    assert_eq!(rr(&mut g, 1, gicr::WAKER), 0b110);
    rw(&mut g, 1, gicr::WAKER, 0);
    assert_eq!(rr(&mut g, 1, gicr::WAKER), 0);
    // gic_enable_redist(false): set ProcessorSleep, check it stuck, wait
    // for ChildrenAsleep.
    rw(&mut g, 1, gicr::WAKER, 0b10);
    assert_eq!(rr(&mut g, 1, gicr::WAKER), 0b110);
    // ChildrenAsleep is read-only.
    rw(&mut g, 1, gicr::WAKER, 0b100);
    assert_eq!(rr(&mut g, 1, gicr::WAKER), 0);
    assert_eq!(rr(&mut g, 0, gicr::WAKER), 0b110, "frames are independent");
}

#[test]
fn priority_byte_and_word_access() {
    let mut g = Vgic::new(2);
    g.dist_write(gicd::IPRIORITYR + 50, Byte, 0x47);
    assert_eq!(
        g.dist_read(gicd::IPRIORITYR + 50, Byte),
        0x40,
        "5 priority bits"
    );
    dw(&mut g, gicd::IPRIORITYR + 52, 0x1122_33ff);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 52), 0x1020_30f8);
    assert_eq!(g.priority(0, 53), Some(0x30));
    assert_eq!(g.dist_read(gicd::IPRIORITYR + 55, Byte), 0x10);
    // Redistributor: per vCPU.
    g.redist_write(GICR_STRIDE + gicr::IPRIORITYR + 27, Byte, 0x80);
    assert_eq!(g.priority(1, 27), Some(0x80));
    assert_eq!(g.priority(0, 27), Some(0));
    assert_eq!(rr(&mut g, 1, gicr::IPRIORITYR + 24), 0x8000_0000);
    // SGI/PPI priorities in the distributor are RES0 with ARE.
    dw(&mut g, gicd::IPRIORITYR + 16, !0);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 16), 0);
    assert_eq!(g.priority(0, 16), Some(0));
    assert_eq!(g.counters().unimplemented_intid, 2);
    // 16-bit and misaligned accesses are refused.
    g.dist_write(gicd::IPRIORITYR + 60, Half, 0xffff);
    g.dist_write(gicd::IPRIORITYR + 61, Word, 0xffff_ffff);
    assert_eq!(g.priority(0, 60), Some(0));
    assert_eq!(g.counters().bad_width, 2);
}

#[test]
fn irouter_64_bit_and_32_bit_halves() {
    let mut g = Vgic::new(4);
    let off = gicd::IROUTER + 8 * 40;
    g.dist_write(off, Double, 0x0000_00ff_8000_0003 | (0x7f << 40));
    assert_eq!(
        g.dist_read(off, Double),
        0x0000_00ff_8000_0003,
        "RES0 bits dropped"
    );
    assert_eq!(g.dist_read(off, Word), 0x8000_0003);
    assert_eq!(g.dist_read(off + 4, Word), 0xff);
    // 32-bit halves.
    g.dist_write(off + 4, Word, 0);
    g.dist_write(off, Word, 2);
    assert_eq!(g.dist_read(off, Double), 2);
    assert_eq!(g.spi_target(40), Some(2));
    // Aff1 != 0: no such vCPU.
    g.dist_write(off, Word, 0x100);
    assert_eq!(g.spi_target(40), None);
    // Aff0 beyond the last vCPU.
    g.dist_write(off, Word, 4);
    assert_eq!(g.spi_target(40), None);
    assert_eq!(g.counters().unroutable_spi, 2);
    // IROUTER of SGIs/PPIs and beyond the last SPI: reserved.
    g.dist_write(gicd::IROUTER + 8 * 31, Double, 1);
    g.dist_write(gicd::IROUTER + 8 * 128, Double, 1);
    assert_eq!(g.dist_read(gicd::IROUTER + 8 * 128, Double), 0);
    assert_eq!(g.counters().unimplemented_intid, 3);
    // Byte access to IROUTER is not allowed.
    g.dist_write(off, Byte, 1);
    assert_eq!(g.counters().bad_width, 1);
}

#[test]
fn irm_routes_to_lowest_awake_vcpu() {
    let mut g = Vgic::new(4);
    route(&mut g, 60, 1 << 31);
    assert_eq!(g.spi_target(60), Some(0), "nobody awake: vCPU 0");
    rw(&mut g, 2, gicr::WAKER, 0);
    assert_eq!(g.spi_target(60), Some(2));
    rw(&mut g, 1, gicr::WAKER, 0);
    assert_eq!(g.spi_target(60), Some(1));
    rw(&mut g, 1, gicr::WAKER, 2);
    assert_eq!(g.spi_target(60), Some(2));
    assert_eq!(g.counters().unroutable_spi, 0);
}

#[test]
fn group_and_group_modifier_registers() {
    let mut g = Vgic::new(1);
    dw(&mut g, gicd::IGROUPR + 4, 0x0000_ffff);
    assert_eq!(dr(&mut g, gicd::IGROUPR + 4), 0x0000_ffff);
    dw(&mut g, gicd::IGRPMODR + 4, 0x1234_5678);
    assert_eq!(dr(&mut g, gicd::IGRPMODR + 4), 0x1234_5678);
    rw(&mut g, 0, gicr::IGRPMODR0, 0xff);
    assert_eq!(rr(&mut g, 0, gicr::IGRPMODR0), 0xff);
    rw(&mut g, 0, gicr::IGROUPR0, 0xffff_fffe);
    assert_eq!(rr(&mut g, 0, gicr::IGROUPR0), 0xffff_fffe);
    // Distributor bank 0 (SGIs/PPIs) is RES0 with ARE.
    dw(&mut g, gicd::IGROUPR, 0);
    assert_eq!(dr(&mut g, gicd::IGROUPR), 0);
    assert_eq!(rr(&mut g, 0, gicr::IGROUPR0), 0xffff_fffe);
}

#[test]
fn config_registers() {
    let mut g = Vgic::new(1);
    // SPIs 48..=63: all edge.
    dw(&mut g, gicd::ICFGR + 12, 0xaaaa_aaaa);
    assert!(g.is_edge(0, 48) && g.is_edge(0, 63));
    assert!(!g.is_edge(0, 47));
    assert_eq!(dr(&mut g, gicd::ICFGR + 12), 0xaaaa_aaaa);
    // Even bits are RES0.
    dw(&mut g, gicd::ICFGR + 8, 0x5555_5555);
    assert_eq!(dr(&mut g, gicd::ICFGR + 8), 0);
    // SGIs are fixed edge; PPIs are programmable.
    rw(&mut g, 0, gicr::ICFGR0, 0);
    assert_eq!(rr(&mut g, 0, gicr::ICFGR0), 0xaaaa_aaaa);
    assert!(g.is_edge(0, 3));
    rw(&mut g, 0, gicr::ICFGR1, 2 << ((27 - 16) * 2));
    assert!(g.is_edge(0, 27));
    assert_eq!(rr(&mut g, 0, gicr::ICFGR1), 2 << 22);
    // Distributor ICFGR0/1 (SGIs/PPIs) are RES0 with ARE.
    dw(&mut g, gicd::ICFGR + 4, 0);
    assert!(g.is_edge(0, 27));
}

#[test]
fn set_clear_pending_active_enable_registers() {
    let mut g = booted(2);
    let (reg, bit) = bank(gicd::ISPENDR, 70);
    dw(&mut g, reg, bit);
    assert!(g.is_pending(0, 70));
    assert_eq!(
        dr(&mut g, bank(gicd::ICPENDR, 70).0),
        bit,
        "ICPENDR reads pending too"
    );
    dw(&mut g, bank(gicd::ICPENDR, 70).0, bit);
    assert!(!g.is_pending(0, 70));
    dw(&mut g, bank(gicd::ISACTIVER, 70).0, bit);
    assert!(g.is_active(0, 70));
    assert_eq!(dr(&mut g, bank(gicd::ICACTIVER, 70).0), bit);
    dw(&mut g, bank(gicd::ICACTIVER, 70).0, bit);
    assert!(!g.is_active(0, 70));
    dw(&mut g, bank(gicd::ISENABLER, 70).0, bit);
    assert!(g.is_enabled(0, 70));
    assert_eq!(dr(&mut g, bank(gicd::ICENABLER, 70).0), bit);
    // Writing zeros changes nothing.
    dw(&mut g, bank(gicd::ICENABLER, 70).0, 0);
    assert!(g.is_enabled(0, 70));
    // A level line keeps a level interrupt pending through ICPENDR.
    g.set_level(71, true);
    dw(&mut g, bank(gicd::ICPENDR, 71).0, 1 << (71 % 32));
    assert!(g.is_pending(0, 71));
    g.set_level(71, false);
    assert!(!g.is_pending(0, 71));
    // Redistributor banks are per vCPU.
    rw(&mut g, 1, gicr::ISPENDR0, 1 << 20);
    assert!(g.is_pending(1, 20));
    assert!(!g.is_pending(0, 20));
    rw(&mut g, 1, gicr::ISACTIVER0, 1 << 5);
    assert_eq!(rr(&mut g, 1, gicr::ISACTIVER0), 1 << 5);
    rw(&mut g, 1, gicr::ICACTIVER0, 1 << 5);
    assert_eq!(rr(&mut g, 1, gicr::ICACTIVER0), 0);
    assert_eq!(*g.counters(), VgicCounters::default());
}

#[test]
fn bad_offsets_and_widths_are_counted_not_fatal() {
    let mut g = Vgic::new(2);
    let before = g.clone();
    // Unknown distributor offsets.
    for off in [
        0x0014, 0x0040, 0x0048, 0x0f04, 0x1000, 0x3000, 0x5ffc, 0x7fe0, 0x8000, 0xc000,
    ] {
        assert_eq!(g.dist_read(off, Word), 0);
        g.dist_write(off, Word, !0);
    }
    assert_eq!(g.counters().unknown_offset, 20);
    // Wrong widths on existing registers.
    assert_eq!(g.dist_read(gicd::CTLR, Half), 0);
    assert_eq!(g.dist_read(gicd::CTLR, Double), 0);
    g.dist_write(gicd::CTLR, Byte, 0x3);
    g.dist_write(gicd::ISENABLER + 4, Double, !0);
    g.dist_write(gicd::ISENABLER + 4, Byte, 0xff);
    g.dist_write(gicd::IGROUPR + 6, Word, 0); // misaligned
    assert_eq!(g.counters().bad_width, 6);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50, "byte write to CTLR ignored");
    assert_eq!(dr(&mut g, gicd::ISENABLER + 4), 0);
    // Unimplemented INTIDs: banks beyond INTID 127.
    dw(&mut g, gicd::ISENABLER + 16, !0);
    assert_eq!(dr(&mut g, gicd::ISENABLER + 16), 0);
    dw(&mut g, gicd::ICFGR + 32, !0);
    assert_eq!(g.counters().unimplemented_intid, 3);
    // Redistributor: unknown offsets, frames beyond the last vCPU.
    let base = g.counters().unknown_offset;
    assert_eq!(rr(&mut g, 0, 0x0040), 0);
    rw(&mut g, 0, gicr::SGI_BASE + 0x0084, !0);
    assert_eq!(rr(&mut g, 2, gicr::TYPER), 0);
    rw(&mut g, 3, gicr::WAKER, 0);
    assert_eq!(g.redist_read(u64::MAX - 7, Double), 0);
    assert_eq!(g.dist_read(u64::MAX - 3, Word), 0);
    assert_eq!(g.counters().unknown_offset - base, 6);
    rw(&mut g, 0, gicr::WAKER + 1, 0);
    g.redist_write(gicr::WAKER, Byte, 0);
    assert_eq!(
        rr(&mut g, 0, gicr::WAKER),
        0b110,
        "bad WAKER writes ignored"
    );
    // Nothing else changed.
    assert_eq!(g.ctlr, before.ctlr);
    assert_eq!(g.asleep, before.asleep);
    assert!((0..128).all(|i| !g.is_enabled(0, i) && !g.is_pending(0, i)));
}

#[test]
fn mmio_dispatch_by_guest_physical_address() {
    let mut g = Vgic::new(2);
    assert_eq!(g.mmio_read(GICD_BASE + gicd::PIDR2, Word), Some(0x3b));
    assert_eq!(
        g.mmio_read(GICR_BASE + GICR_STRIDE + gicr::TYPER, Double),
        Some(g.gicr_typer(1))
    );
    assert!(g.mmio_write(GICR_BASE + GICR_STRIDE + gicr::WAKER, Word, 0));
    assert_eq!(rr(&mut g, 1, gicr::WAKER), 0);
    assert_eq!(g.mmio_read(GICR_BASE + 2 * GICR_STRIDE, Word), None);
    assert_eq!(g.mmio_read(GICD_BASE - 4, Word), None);
    assert!(!g.mmio_write(0x0900_0000, Word, 0));
    assert_eq!(
        g.mmio_read(GICD_BASE + 0xfffe, Word),
        None,
        "straddles the end"
    );
}

/// Every offset, size and value pattern against both frames: never panics,
/// and only touches state through registers that exist.
#[test]
fn exhaustive_register_sweep_does_not_panic() {
    let mut g = Vgic::new(MAX_VCPUS);
    let sizes = [Byte, Half, Word, Double];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for off in 0..0x1_0000u64 {
        for size in sizes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g.dist_read(off, size);
            g.dist_write(off, size, x);
        }
    }
    for off in (0..(MAX_VCPUS as u64 + 1) * GICR_STRIDE).step_by(3) {
        for size in sizes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g.redist_read(off, size);
            g.redist_write(off, size, x);
        }
    }
    assert!(g.counters().unknown_offset > 0);
    assert!(g.counters().bad_width > 0);
    // The model is still usable.
    let mut st = linux_cpu(4);
    g.flush(0, &mut st);
    g.sync(0, &mut st);
}

// ── Injection and delivery ──────────────────────────────────────────────

#[test]
fn spi_edge_inject_flush_ack_eoi() {
    let mut g = booted(1);
    enable_spi(&mut g, 48, true);
    set_priority(&mut g, 48, 0x80);
    let mut st = linux_cpu(4);
    assert_eq!(
        g.flush(0, &mut st),
        FlushOutcome {
            loaded: 0,
            waiting: 0
        }
    );
    assert!(st.lrs.iter().all(|&l| l == 0));

    g.raise_edge(48);
    assert!(g.is_pending(0, 48));
    assert!(g.take_kicks().contains(0));
    assert_eq!(g.pending_count(0), 1);
    let out = g.flush(0, &mut st);
    assert_eq!(
        out,
        FlushOutcome {
            loaded: 1,
            waiting: 0
        }
    );
    let lr = ListRegister(st.lrs[0]);
    assert_eq!(lr.vintid(), 48);
    assert_eq!(lr.state(), LrState::Pending);
    assert_eq!(lr.priority(), 0x80);
    assert!(lr.group1());
    assert!(!lr.hw());
    assert!(!lr.eoi_maintenance(), "edge: no EOI request");
    assert_eq!(IchHcr::from_bits_retain(st.hcr), IchHcr::EN);
    assert!(
        g.is_pending(0, 48),
        "ISPENDR still shows the in-flight interrupt"
    );

    // Guest acknowledges; exit for some other reason.
    assert_eq!(iar(&mut st), Some(48));
    let out = g.sync(0, &mut st);
    assert_eq!(
        out,
        SyncOutcome {
            folded: 1,
            completed: 0,
            eoi_maintenance: 0
        }
    );
    assert!(g.is_active(0, 48));
    assert!(!g.is_pending(0, 48));
    // Re-entry: the active interrupt goes back so the guest can EOI it.
    g.flush(0, &mut st);
    assert_eq!(ListRegister(st.lrs[0]).state(), LrState::Active);
    eoi(&mut st, 48);
    assert_eq!(ListRegister(st.lrs[0]).state(), LrState::Invalid);
    let out = g.sync(0, &mut st);
    assert_eq!(out.completed, 1);
    assert!(!g.is_active(0, 48) && !g.is_pending(0, 48));
    assert_eq!(g.flush(0, &mut st).loaded, 0);
    // Delivered once (acknowledged), not again when the active state went
    // back for the EOI; nothing refused.
    assert_eq!(
        *g.counters(),
        VgicCounters {
            delivered_spi: 1,
            // Every entry changed something: each flush scanned.
            flush_scanned: 4,
            ..VgicCounters::default()
        }
    );
}

#[test]
fn edge_repended_while_active_is_pending_and_active() {
    let mut g = booted(1);
    enable_spi(&mut g, 49, true);
    let mut st = linux_cpu(4);
    g.raise_edge(49);
    g.flush(0, &mut st);
    assert_eq!(iar(&mut st), Some(49));
    // A second edge while the guest handles the first.
    g.raise_edge(49);
    g.sync(0, &mut st);
    assert!(g.is_active(0, 49) && g.is_pending(0, 49));
    g.flush(0, &mut st);
    let lr = ListRegister(st.lrs[0]);
    assert_eq!(lr.state(), LrState::PendingActive);
    assert_eq!(st.lrs[1], 0, "one LR per interrupt");
    assert_eq!(iar(&mut st), None, "pending+active cannot be taken yet");
    eoi(&mut st, 49);
    assert_eq!(iar(&mut st), Some(49), "second edge delivered after EOI");
    eoi(&mut st, 49);
    g.sync(0, &mut st);
    assert!(!g.is_active(0, 49) && !g.is_pending(0, 49));
}

#[test]
fn edges_collapse_while_in_lr() {
    let mut g = booted(1);
    enable_spi(&mut g, 50, true);
    let mut st = linux_cpu(4);
    g.raise_edge(50);
    g.flush(0, &mut st);
    g.raise_edge(50);
    g.raise_edge(50);
    // The guest never acknowledged: one pending interrupt, not three.
    g.sync(0, &mut st);
    assert_eq!(run(&mut g, 0, &mut st), vec![50]);
}

#[test]
fn disabled_interrupts_stay_pending_and_undelivered() {
    let mut g = booted(1);
    let mut st = linux_cpu(4);
    g.raise_edge(52); // configured but not enabled
    assert!(g.take_kicks().is_empty(), "nothing deliverable: no kick");
    assert_eq!(g.flush(0, &mut st).loaded, 0);
    assert!(g.is_pending(0, 52));
    assert_eq!(g.pending_count(0), 0);
    g.sync(0, &mut st);
    let (reg, bit) = bank(gicd::ISENABLER, 52);
    dw(&mut g, reg, bit);
    assert!(
        g.take_kicks().contains(0),
        "enabling a pending interrupt kicks"
    );
    assert_eq!(run(&mut g, 0, &mut st), vec![52]);
    // Disabled while in flight: the next flush leaves it out.
    g.raise_edge(52);
    g.flush(0, &mut st);
    dw(&mut g, bank(gicd::ICENABLER, 52).0, bit);
    assert!(
        g.take_kicks().contains(0),
        "in-flight interrupt changed: kick its vCPU"
    );
    g.sync(0, &mut st);
    assert_eq!(g.flush(0, &mut st).loaded, 0);
    assert!(g.is_pending(0, 52));
}

#[test]
fn gicd_ctlr_group_enables_gate_delivery() {
    let mut g = booted(1);
    enable_spi(&mut g, 53, true);
    enable_spi(&mut g, 54, true);
    // INTID 54 in Group 0.
    let (reg, _) = bank(gicd::IGROUPR, 54);
    let groups = dr(&mut g, reg);
    dw(&mut g, reg, groups & !(1 << (54 % 32)));
    let mut st = linux_cpu(4);
    st.vmcr |= IchVmcr::VENG0;

    dw(&mut g, gicd::CTLR, 0x1); // Group 0 only
    g.raise_edge(53);
    g.raise_edge(54);
    assert_eq!(g.flush(0, &mut st).loaded, 1);
    let lr = ListRegister(st.lrs[0]);
    assert_eq!(lr.vintid(), 54);
    assert!(!lr.group1(), "Group 0: virtual FIQ");
    g.sync(0, &mut st);

    dw(&mut g, gicd::CTLR, 0x2); // Group 1 only
    assert_eq!(g.flush(0, &mut st).loaded, 1);
    assert_eq!(ListRegister(st.lrs[0]).vintid(), 53);
    g.sync(0, &mut st);

    dw(&mut g, gicd::CTLR, 0);
    assert_eq!(g.flush(0, &mut st).loaded, 0);
    assert!(g.is_pending(0, 53) && g.is_pending(0, 54));
    g.sync(0, &mut st);

    // Active interrupts keep their LR even with the group disabled.
    dw(&mut g, gicd::CTLR, 0x2);
    g.flush(0, &mut st);
    assert_eq!(iar(&mut st), Some(53));
    g.sync(0, &mut st);
    dw(&mut g, gicd::CTLR, 0);
    g.flush(0, &mut st);
    assert_eq!(ListRegister(st.lrs[0]).state(), LrState::Active);
}

/// Injects `prios` (INTID 64 + i with priority prios[i]) and checks they are
/// all delivered, highest priority (then lowest INTID) first.
fn overflow_in_priority_order(num_lrs: usize) {
    let prios: [u8; 12] = [
        0xa0, 0x20, 0xf0, 0x20, 0x80, 0x08, 0xa0, 0x40, 0x00, 0xe8, 0x80, 0x10,
    ];
    let mut g = booted(1);
    for (i, &p) in prios.iter().enumerate() {
        let intid = 64 + i as u32;
        enable_spi(&mut g, intid, true);
        set_priority(&mut g, intid, p);
        g.raise_edge(intid);
    }
    let mut st = linux_cpu(num_lrs);
    let order = run(&mut g, 0, &mut st);
    let mut expected: Vec<(u8, u32)> = prios
        .iter()
        .enumerate()
        .map(|(i, &p)| (p, 64 + i as u32))
        .collect();
    expected.sort();
    // PMR 0xf0 masks priority 0xf0 (not strictly higher): it stays pending.
    let expected: Vec<u32> = expected
        .into_iter()
        .filter(|&(p, _)| p < 0xf0)
        .map(|(_, i)| i)
        .collect();
    assert_eq!(order, expected);
    assert_eq!(g.pending_count(0), 1);
    assert!(g.is_pending(0, 66));
    assert!(g.counters().lr_overflows > 0);
    // Unmask it: delivered at the next entry.
    st.vmcr = IchVmcr(st.vmcr).with_vpmr(0xff).0;
    assert!(g.has_deliverable(0, &st));
    assert_eq!(run(&mut g, 0, &mut st), vec![66]);
    assert_eq!(g.pending_count(0), 0);
    assert!((64..76).all(|i| !g.is_active(0, i)));
}

#[test]
fn more_pending_than_lrs_four_lrs() {
    overflow_in_priority_order(4);
}

#[test]
fn more_pending_than_lrs_one_lr() {
    overflow_in_priority_order(1);
}

#[test]
fn more_pending_than_lrs_two_lrs() {
    overflow_in_priority_order(2);
}

#[test]
fn overflow_requests_the_right_maintenance() {
    let mut g = booted(1);
    for intid in 80..86 {
        enable_spi(&mut g, intid, true);
        g.raise_edge(intid);
    }
    let mut st = linux_cpu(4);
    let out = g.flush(0, &mut st);
    assert_eq!(
        out,
        FlushOutcome {
            loaded: 4,
            waiting: 2
        }
    );
    assert!(IchHcr::from_bits_retain(st.hcr).contains(IchHcr::UIE));
    assert!(!IchHcr::from_bits_retain(st.hcr).contains(IchHcr::LRENPIE));
    assert!(!maintenance(&st));
    g.sync(0, &mut st);
    assert!(
        !IchHcr::from_bits_retain(st.hcr).contains(IchHcr::UIE),
        "sync clears UIE"
    );

    let mut one = linux_cpu(1);
    g.flush(0, &mut one);
    let lr = ListRegister(one.lrs[0]);
    assert!(
        lr.eoi_maintenance(),
        "single LR: EOI request instead of UIE"
    );
    assert!(!IchHcr::from_bits_retain(one.hcr).contains(IchHcr::UIE));
    assert!(!maintenance(&one));
    g.sync(0, &mut one);

    // No overflow: no maintenance requested at all.
    let mut g = booted(1);
    enable_spi(&mut g, 80, true);
    g.raise_edge(80);
    g.flush(0, &mut one);
    assert!(!ListRegister(one.lrs[0]).eoi_maintenance());
    assert_eq!(IchHcr::from_bits_retain(one.hcr), IchHcr::EN);
}

#[test]
fn higher_priority_arrival_preempts_queue_at_next_entry() {
    let mut g = booted(1);
    for intid in 90..96 {
        enable_spi(&mut g, intid, true);
        set_priority(&mut g, intid, 0x80);
        g.raise_edge(intid);
    }
    enable_spi(&mut g, 33, false);
    set_priority(&mut g, 33, 0x10);
    let mut st = linux_cpu(4);
    let mut injected = false;
    let order = run_guest(&mut g, 0, &mut st, |g, intid| {
        if intid == 91 && !injected {
            injected = true;
            g.set_level(33, true);
        }
        if intid == 33 {
            g.set_level(33, false);
        }
    });
    // 90..=93 were loaded. Once 92 is done only 93 is left valid, so the
    // underflow maintenance interrupt exits, and the refill puts 33 (raised
    // while 91 was handled) ahead of 93, 94 and 95.
    assert_eq!(order, vec![90, 91, 92, 33, 93, 94, 95]);
}

#[test]
fn level_triggered_resampling() {
    let mut g = booted(1);
    enable_spi(&mut g, 33, false);
    let mut st = linux_cpu(4);
    g.set_level(33, true);
    g.flush(0, &mut st);
    let lr = ListRegister(st.lrs[0]);
    assert_eq!(lr.state(), LrState::Pending);
    assert!(lr.eoi_maintenance(), "level: EOI maintenance request");

    // The handler does not clear the device: the line is still high at EOI,
    // so the interrupt is delivered again after the EOI maintenance exit.
    assert_eq!(iar(&mut st), Some(33));
    eoi(&mut st, 33);
    assert!(maintenance(&st), "EISR asserts the maintenance interrupt");
    let out = g.sync(0, &mut st);
    assert_eq!(out.eoi_maintenance, 1);
    assert!(g.is_pending(0, 33), "line still high: pending again");
    // This time the handler clears the device before EOI.
    let order = run_guest(&mut g, 0, &mut st, |g, _| g.set_level(33, false));
    assert_eq!(order, vec![33]);
    assert!(!g.is_pending(0, 33));

    // Line drops before the guest even acknowledges: resampled away.
    g.set_level(33, true);
    g.flush(0, &mut st);
    g.set_level(33, false);
    g.sync(0, &mut st);
    assert!(!g.is_pending(0, 33));
    assert_eq!(g.flush(0, &mut st).loaded, 0);
}

#[test]
fn level_ispendr_latch_is_consumed_by_acknowledge() {
    let mut g = booted(1);
    enable_spi(&mut g, 34, false);
    let mut st = linux_cpu(4);
    dw(&mut g, bank(gicd::ISPENDR, 34).0, 1 << 2);
    g.flush(0, &mut st);
    g.sync(0, &mut st);
    assert!(g.is_pending(0, 34), "not acknowledged: still pending");
    assert_eq!(run(&mut g, 0, &mut st), vec![34]);
    assert!(!g.is_pending(0, 34), "software pending consumed, line low");
}

#[test]
fn virtual_timer_ppi_is_per_vcpu() {
    let mut g = booted(2);
    enable_ppi(&mut g, 0, INTID_VIRT_TIMER, false);
    enable_ppi(&mut g, 1, INTID_VIRT_TIMER, false);
    g.redist_write(GICR_STRIDE + gicr::IPRIORITYR + 27, Byte, 0x30);
    let mut s0 = linux_cpu(4);
    let mut s1 = linux_cpu(4);
    g.set_ppi_level(1, INTID_VIRT_TIMER, true);
    assert_eq!(g.take_kicks(), VcpuMask::single(1));
    assert_eq!(g.flush(0, &mut s0).loaded, 0);
    assert_eq!(g.flush(1, &mut s1).loaded, 1);
    let lr = ListRegister(s1.lrs[0]);
    assert_eq!((lr.vintid(), lr.priority()), (27, 0x30));
    assert!(lr.eoi_maintenance());
    g.sync(0, &mut s0);
    g.sync(1, &mut s1);
    let order = run_guest(&mut g, 1, &mut s1, |g, _| g.set_ppi_level(1, 27, false));
    assert_eq!(order, vec![27]);
    // Edge-style injection of a PPI.
    enable_ppi(&mut g, 0, 23, true);
    g.inject_ppi(0, 23);
    assert_eq!(run(&mut g, 0, &mut s0), vec![23]);
}

#[test]
fn spi_routing_and_active_affinity() {
    let mut g = booted(2);
    enable_spi(&mut g, 56, true);
    route(&mut g, 56, 1);
    let mut s0 = linux_cpu(4);
    let mut s1 = linux_cpu(4);
    g.raise_edge(56);
    assert_eq!(g.take_kicks(), VcpuMask::single(1));
    assert_eq!(g.flush(0, &mut s0).loaded, 0);
    assert_eq!(g.flush(1, &mut s1).loaded, 1);
    assert_eq!(iar(&mut s1), Some(56));
    g.sync(1, &mut s1);
    // Re-routed and re-pended while active on vCPU 1: stays with vCPU 1 as
    // pending+active until deactivated there.
    route(&mut g, 56, 0);
    g.raise_edge(56);
    g.sync(0, &mut s0);
    assert_eq!(g.flush(0, &mut s0).loaded, 0);
    g.flush(1, &mut s1);
    assert_eq!(ListRegister(s1.lrs[0]).state(), LrState::PendingActive);
    eoi(&mut s1, 56);
    g.sync(1, &mut s1);
    assert!(!g.is_active(0, 56));
    // Now the pending part goes to the new target.
    assert_eq!(g.flush(1, &mut s1).loaded, 0);
    assert_eq!(g.flush(0, &mut s0).loaded, 1);
    assert_eq!(ListRegister(s0.lrs[0]).state(), LrState::Pending);
}

#[test]
fn spi_in_flight_on_one_vcpu_is_not_loaded_on_another() {
    let mut g = booted(2);
    enable_spi(&mut g, 57, true);
    let mut s0 = linux_cpu(4);
    let mut s1 = linux_cpu(4);
    g.raise_edge(57);
    g.flush(0, &mut s0); // vCPU 0 now runs with 57 in an LR
    route(&mut g, 57, 1);
    assert!(
        g.take_kicks().contains(0),
        "holder of the in-flight SPI is kicked"
    );
    assert_eq!(g.flush(1, &mut s1).loaded, 0);
    assert_no_duplicate_lrs(&g);
    // vCPU 0 exits without having taken it: now vCPU 1 gets it.
    g.sync(0, &mut s0);
    assert_eq!(g.flush(1, &mut s1).loaded, 1);
    assert_eq!(g.flush(0, &mut s0).loaded, 0);
}

#[test]
fn register_writes_to_in_flight_interrupts_win_at_sync() {
    let mut g = booted(2);
    enable_spi(&mut g, 58, true);
    enable_spi(&mut g, 59, true);
    let mut s0 = linux_cpu(4);
    g.raise_edge(58);
    g.raise_edge(59);
    g.flush(0, &mut s0);
    // vCPU 1 clears 58's pending state and deactivates 59 (which vCPU 0
    // acknowledges meanwhile) while both are in vCPU 0's LRs.
    assert_eq!(iar(&mut s0), Some(58));
    dw(&mut g, bank(gicd::ICPENDR, 59).0, 1 << (59 % 32));
    assert!(!g.is_pending(0, 59));
    dw(&mut g, bank(gicd::ICACTIVER, 58).0, 1 << (58 % 32));
    g.sync(0, &mut s0);
    assert!(
        !g.is_active(0, 58),
        "ICACTIVER wins over the LR's active bit"
    );
    assert!(
        !g.is_pending(0, 59),
        "ICPENDR wins over the LR's pending bit"
    );
    assert_eq!(g.flush(0, &mut s0).loaded, 0);
}

#[test]
fn eoicount_deactivates_active_interrupts_without_lr() {
    let mut g = booted(1);
    // Three active interrupts (set by the guest through ISACTIVER), one LR.
    for (intid, prio) in [(100, 0x60), (101, 0x20), (102, 0x40)] {
        set_priority(&mut g, intid, prio);
        dw(&mut g, bank(gicd::ISACTIVER, intid).0, 1 << (intid % 32));
    }
    let mut st = linux_cpu(1);
    let out = g.flush(0, &mut st);
    assert_eq!(
        out,
        FlushOutcome {
            loaded: 1,
            waiting: 2
        }
    );
    assert_eq!(
        ListRegister(st.lrs[0]).vintid(),
        101,
        "highest-priority active first"
    );
    assert!(IchHcr::from_bits_retain(st.hcr).contains(IchHcr::LRENPIE));
    // The guest deactivates 101 (in the LR) and 102 (not in an LR).
    eoi(&mut st, 101);
    eoi(&mut st, 102);
    assert_eq!(hcr_eoi_count(st.hcr), 1);
    assert!(maintenance(&st));
    g.sync(0, &mut st);
    assert_eq!(hcr_eoi_count(st.hcr), 0, "sync consumes EOIcount");
    assert_eq!(g.counters().eoi_count_fixups, 1);
    assert!(!g.is_active(0, 101));
    assert!(!g.is_active(0, 102), "highest-priority active without LR");
    assert!(g.is_active(0, 100));
    g.flush(0, &mut st);
    assert_eq!(ListRegister(st.lrs[0]).vintid(), 100);
    assert!(!IchHcr::from_bits_retain(st.hcr).contains(IchHcr::LRENPIE));
}

#[test]
fn flush_without_sync_neither_duplicates_nor_loses() {
    let mut g = booted(1);
    for intid in [40, 41] {
        enable_spi(&mut g, intid, true);
        g.raise_edge(intid);
    }
    let mut st = linux_cpu(4);
    g.flush(0, &mut st);
    let first = st.lrs;
    g.flush(0, &mut st);
    assert_eq!(st.lrs, first);
    assert_no_duplicate_lrs(&g);
    assert_eq!(run(&mut g, 0, &mut st), vec![40, 41]);
}

#[test]
fn mangled_list_registers_are_counted() {
    let mut g = booted(1);
    enable_spi(&mut g, 42, true);
    g.raise_edge(42);
    let mut st = linux_cpu(4);
    g.flush(0, &mut st);
    st.lrs[0] = ListRegister::virtual_irq(99, 0, true, LrState::Invalid).raw();
    g.sync(0, &mut st);
    assert_eq!(g.counters().lr_mismatch, 1);
    assert!(g.is_pending(0, 42), "no progress assumed, nothing lost");
    assert!(!g.is_active(0, 99));
}

#[test]
fn has_deliverable_honours_vmcr() {
    let mut g = booted(1);
    enable_spi(&mut g, 43, true);
    set_priority(&mut g, 43, 0x80);
    let mut st = VcpuIfState::new(4);
    assert!(!g.has_deliverable(0, &st));
    g.raise_edge(43);
    assert!(!g.has_deliverable(0, &st), "VENG1 = 0, VPMR = 0");
    st.vmcr = IchVmcr(IchVmcr::VENG1).with_vpmr(0x80).0;
    assert!(
        !g.has_deliverable(0, &st),
        "priority 0x80 is masked by PMR 0x80"
    );
    st.vmcr = IchVmcr(IchVmcr::VENG1).with_vpmr(0x88).0;
    assert!(g.has_deliverable(0, &st));
    // In an LR (vCPU not yet synced): still deliverable until acknowledged.
    g.flush(0, &mut st);
    assert!(g.has_deliverable(0, &st));
    iar(&mut st);
    assert!(
        !g.has_deliverable(0, &st),
        "acknowledged: active, nothing pending"
    );
    g.sync(0, &mut st);
    assert!(!g.has_deliverable(0, &st));
    // Pending+active is not signalled either.
    g.raise_edge(43);
    assert!(!g.has_deliverable(0, &st));
    assert!(!g.has_deliverable(7, &st));
}

// ── SGIs ────────────────────────────────────────────────────────────────

fn sgi(target_list: u16, intid: u8) -> Sgi1r {
    Sgi1r {
        target_list,
        intid,
        ..Sgi1r::default()
    }
}

#[test]
fn sgi_target_list() {
    let mut g = booted(4);
    let t = g.send_sgi(0, sgi(0b1010, 3).encode());
    assert_eq!(t, VcpuMask(0b1010));
    assert!(g.is_pending(1, 3) && g.is_pending(3, 3));
    assert!(!g.is_pending(0, 3) && !g.is_pending(2, 3));
    assert_eq!(g.take_kicks(), VcpuMask(0b1010));
    // Self-IPI through the target list.
    assert_eq!(g.send_sgi(2, sgi(0b0100, 15).encode()), VcpuMask::single(2));
    assert!(g.is_pending(2, 15));
    // Bits beyond the last vCPU are dropped and counted.
    assert_eq!(g.send_sgi(0, sgi(0xfff0, 1).encode()), VcpuMask::EMPTY);
    assert_eq!(g.counters().sgi_dropped, 12);
    // An empty target list is a valid no-op.
    assert_eq!(g.send_sgi(0, sgi(0, 1).encode()), VcpuMask::EMPTY);
    assert_eq!(g.counters().sgi_dropped, 12);
}

#[test]
fn sgi_affinity_fields_target_nothing_in_flat_topology() {
    let mut g = booted(4);
    for s in [
        Sgi1r {
            aff1: 1,
            ..sgi(0b1111, 2)
        },
        Sgi1r {
            aff2: 1,
            ..sgi(0b1111, 2)
        },
        Sgi1r {
            aff3: 1,
            ..sgi(0b1111, 2)
        },
        Sgi1r {
            rs: 1,
            ..sgi(0b1111, 2)
        },
    ] {
        assert_eq!(g.send_sgi(0, s.encode()), VcpuMask::EMPTY);
    }
    assert_eq!(g.counters().sgi_dropped, 16);
    assert!((0..4).all(|v| !g.is_pending(v, 2)));
}

#[test]
fn sgi_irm_is_all_but_self() {
    let mut g = booted(4);
    // IRM = 1: the other fields are ignored.
    let s = Sgi1r {
        irm: true,
        aff1: 7,
        target_list: 0x1,
        ..sgi(0, 9)
    };
    assert_eq!(g.send_sgi(2, s.encode()), VcpuMask(0b1011));
    assert!(g.is_pending(0, 9) && g.is_pending(1, 9) && g.is_pending(3, 9));
    assert!(!g.is_pending(2, 9));
    let mut single = booted(1);
    assert_eq!(single.send_sgi(0, s.encode()), VcpuMask::EMPTY);
    assert_eq!(single.counters().sgi_dropped, 0);
}

#[test]
fn sgi_intid_field_and_bad_sender() {
    let mut g = booted(2);
    for intid in 0..16u8 {
        let raw = sgi(0b10, intid).encode() | (0xf << 28); // RES0 bits set
        assert_eq!(g.send_sgi(0, raw), VcpuMask::single(1));
        assert!(g.is_pending(1, u32::from(intid)));
    }
    assert_eq!(g.send_sgi(5, sgi(1, 0).encode()), VcpuMask::EMPTY);
    assert_eq!(g.counters().bad_vcpu, 1);
}

#[test]
fn sgi_delivery_end_to_end_and_group0_register() {
    let mut g = booted(2);
    let mut s1 = linux_cpu(4);
    g.send_sgi(0, sgi(0b10, 1).encode());
    g.send_sgi(0, sgi(0b10, 0).encode());
    assert_eq!(run(&mut g, 1, &mut s1), vec![0, 1]);
    // ICC_SGI0R_EL1 only reaches Group 0 SGIs.
    assert_eq!(g.send_sgi0(0, sgi(0b10, 4).encode()), VcpuMask::EMPTY);
    rw(&mut g, 1, gicr::IGROUPR0, !(1 << 4));
    assert_eq!(g.send_sgi0(0, sgi(0b10, 4).encode()), VcpuMask::single(1));
    // ICC_SGI1R_EL1 reaches either group (GICD_CTLR.DS = 1).
    assert_eq!(g.send_sgi(0, sgi(0b10, 4).encode()), VcpuMask::single(1));
}

// ── Misuse of the injection API ─────────────────────────────────────────

#[test]
fn injection_api_misuse_is_counted() {
    let mut g = booted(2);
    g.raise_edge(27); // PPI through IrqSink
    g.raise_edge(5); // SGI through IrqSink
    g.set_level(128, true); // beyond the last SPI
    g.raise_edge(u32::MAX);
    g.inject_ppi(0, 40); // not a PPI
    g.set_ppi_level(0, 3, true); // an SGI
    assert_eq!(g.counters().bad_intid, 6);
    g.inject_ppi(2, 27);
    g.set_ppi_level(usize::MAX, 27, true);
    let mut st = linux_cpu(4);
    g.flush(9, &mut st);
    g.sync(9, &mut st);
    assert_eq!(g.counters().bad_vcpu, 4);
    assert!(!g.is_pending(0, 27) && !g.is_pending(1, 27));
    assert_eq!(g.pending_count(9), 0);
}

#[test]
fn vcpu_count_is_clamped() {
    assert_eq!(Vgic::new(0).num_vcpus(), 1);
    assert_eq!(Vgic::new(100).num_vcpus(), MAX_VCPUS);
    assert_eq!(VcpuIfState::new(99).num_lrs, 16);
    assert_eq!(VcpuIfState::from_vtr(0x90b8_0003).num_lrs, 4);
}

/// Random guest behaviour (register writes, injections, SGIs, random LR
/// contents at sync) never panics and never puts an interrupt in two LRs.
#[test]
fn random_operations_keep_invariants() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for num_lrs in [1, 2, 4, 16] {
        let mut g = booted(MAX_VCPUS);
        let mut states = [linux_cpu(num_lrs); MAX_VCPUS];
        for _ in 0..20_000 {
            let r = next();
            let v = (r >> 8) as usize % MAX_VCPUS;
            match r % 10 {
                0 => g.raise_edge((r >> 16) as u32 % 140),
                1 => g.set_level((r >> 16) as u32 % 140, r & (1 << 40) != 0),
                2 => {
                    g.send_sgi(v, next());
                }
                3 => {
                    let off = gicd::ISENABLER + (r >> 16) % 0x300;
                    g.dist_write(off & !3, Word, next());
                }
                4 => route(&mut g, 32 + (r >> 16) as u32 % 96, (r >> 32) % 6),
                5 => g.set_ppi_level(v, 16 + (r >> 16) as u32 % 16, r & (1 << 40) != 0),
                6 => {
                    g.flush(v, &mut states[v]);
                    assert_no_duplicate_lrs(&g);
                }
                7 => {
                    // The guest does something to its LRs.
                    let st = &mut states[v];
                    while let Some(i) = iar(st) {
                        if next() % 2 == 0 {
                            eoi(st, i);
                        }
                    }
                    if next() % 8 == 0 {
                        st.lrs[(r >> 16) as usize % 16] = next();
                        st.hcr |= (next() & 0x1f) << HCR_EOICOUNT_SHIFT;
                    }
                }
                8 => {
                    g.sync(v, &mut states[v]);
                }
                _ => {
                    rw(
                        &mut g,
                        v,
                        gicr::ISENABLER0 + ((r >> 16) % 8) * 0x80,
                        next() as u32,
                    );
                }
            }
        }
        for (v, st) in states.iter_mut().enumerate() {
            g.sync(v, st);
        }
        assert!(g.lr_used.iter().all(|&u| u == 0));
        assert!(g.spis.iter().all(|i| !i.in_lr));
    }
}
