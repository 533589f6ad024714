//! Host tests of the flush reuse path (`reuse`): every operation that can
//! change what a flush loads makes the next flush scan, operations that
//! change nothing let it reuse, and a reused flush always equals the scan.

use super::tests::{
    booted, dw, enable_ppi, enable_spi, eoi, iar, linux_cpu, route, rw, set_priority,
};
use super::*;
use crate::mmio::AccessSize::{Byte, Word};
use crate::platform::{GICR_STRIDE, INTID_VIRT_TIMER};
use hal::gicv3::{gicd, gicr};
use hal::ich::{HCR_EOICOUNT_SHIFT, ListRegister, Sgi1r};

pub(super) type States = [VcpuIfState; 2];
/// Something the exit handler (or another vCPU) does to the model.
type ModelOp = fn(&mut Vgic, &mut States);
/// Something the guest does to its list registers.
type GuestOp = fn(&mut VcpuIfState);

/// Two vCPUs after Linux's probe: SPI 48 (edge, priority 0x80) and 49
/// (level) enabled and routed to vCPU 0; SPI 50 (edge) enabled and routed
/// to vCPU 1; SPI 52 configured but disabled; the virtual timer and PPI 26
/// (level) enabled on vCPU 0, PPI 26's line high; SGI 4 of vCPU 0 in
/// Group 0. SPI 48 is pending, so vCPU 0's flush loads it.
pub(super) fn setup() -> (Vgic, States) {
    let mut g = booted(2);
    enable_spi(&mut g, 48, true);
    set_priority(&mut g, 48, 0x80);
    enable_spi(&mut g, 49, false);
    enable_spi(&mut g, 50, true);
    route(&mut g, 50, 1);
    enable_ppi(&mut g, 0, INTID_VIRT_TIMER, false);
    enable_ppi(&mut g, 0, 26, false);
    g.set_ppi_level(0, 26, true);
    rw(&mut g, 0, gicr::IGROUPR0, !(1 << 4));
    g.raise_edge(48);
    g.take_kicks();
    (g, [linux_cpu(4), linux_cpu(4)])
}

pub(super) fn sgi_to(target: u16, intid: u8) -> u64 {
    Sgi1r {
        intid,
        target_list: 1 << target,
        ..Sgi1r::default()
    }
    .encode()
}

/// One exit of vCPU 0: `prepare` runs first, then vCPU 0 is flushed, the
/// guest does `guest` to its LRs, the exit syncs, `model` runs (the exit
/// handler or another vCPU), and vCPU 0 is flushed again. Returns the
/// second flush's `(scanned, reused)` counts, after checking that its
/// result equals a scan from the same state.
fn exit_with(
    prepare: fn(&mut Vgic, &mut States),
    guest: fn(&mut VcpuIfState),
    model: fn(&mut Vgic, &mut States),
) -> (u64, u64) {
    let (mut g, mut sts) = setup();
    prepare(&mut g, &mut sts);
    g.flush(0, &mut sts[0]);
    guest(&mut sts[0]);
    g.sync(0, &mut sts[0]);
    model(&mut g, &mut sts);

    let mut reference = g.clone();
    let mut ref_state = sts[0];
    reference.forget_flush(0);
    let want = reference.flush(0, &mut ref_state);

    let before = *g.counters();
    let got = g.flush(0, &mut sts[0]);
    assert_eq!(got, want, "flush outcome");
    assert_eq!(sts[0], ref_state, "interface state");
    assert_eq!(g.private, reference.private, "SGI/PPI state");
    assert_eq!(g.spis, reference.spis, "SPI state");
    assert_eq!(g.lr_intid, reference.lr_intid);
    assert_eq!(g.lr_used, reference.lr_used);
    let after = *g.counters();
    (
        after.flush_scanned - before.flush_scanned,
        after.flush_reused - before.flush_reused,
    )
}

fn nothing(_: &mut Vgic, _: &mut States) {}
fn no_guest(_: &mut VcpuIfState) {}

const SCAN: (u64, u64) = (1, 0);
const REUSE: (u64, u64) = (0, 1);

#[test]
fn an_exit_that_changed_nothing_reuses_the_list_registers() {
    assert_eq!(exit_with(nothing, no_guest, nothing), REUSE);
    // With nothing loaded too (the common MMIO/HVC exit of an idle guest).
    let (mut g, mut sts) = setup();
    let st = &mut sts[1];
    for round in 0..5 {
        assert_eq!(g.flush(1, st).loaded, 0);
        g.sync(1, st);
        assert_eq!(g.counters().flush_reused, round);
    }
    // A reused flush loads the same LRs again, and the guest can take them.
    let (mut g, mut sts) = setup();
    let st = &mut sts[0];
    g.flush(0, st);
    let first = st.lrs;
    g.sync(0, st);
    g.flush(0, st);
    assert_eq!(g.counters().flush_reused, 1);
    assert_eq!(st.lrs, first);
    assert_eq!(ListRegister(st.lrs[0]).vintid(), 48);
    assert_eq!(iar(st), Some(48));
}

#[test]
fn queries_and_unchanged_levels_keep_reuse() {
    let cases: [(&str, ModelOp); 9] = [
        ("timer level unchanged (low)", |g, _| {
            g.set_ppi_level(0, INTID_VIRT_TIMER, false)
        }),
        ("PPI level unchanged (high)", |g, _| {
            g.set_ppi_level(0, 26, true)
        }),
        ("SPI level unchanged", |g, _| g.set_level(49, false)),
        ("register reads", |g, _| {
            for off in [gicd::ISPENDR + 4, gicd::ISACTIVER + 4, gicd::CTLR] {
                g.dist_read(off, Word);
            }
            g.redist_read(gicr::ISPENDR0, Word);
        }),
        ("queries", |g, sts| {
            g.has_deliverable(0, &sts[0]);
            g.pending_count(0);
            g.is_pending(0, 48);
        }),
        ("kicks taken", |g, _| {
            g.take_kicks();
        }),
        ("set-enable of no INTID", |g, _| {
            dw(g, gicd::ISENABLER + 4, 0)
        }),
        ("GICD_CTLR rewritten unchanged", |g, _| {
            dw(g, gicd::CTLR, 0x13)
        }),
        ("other vCPU's clean exit", |g, sts| {
            g.flush(1, &mut sts[1]);
            g.sync(1, &mut sts[1]);
        }),
    ];
    for (name, op) in cases {
        assert_eq!(exit_with(nothing, no_guest, op), REUSE, "{name}");
    }
}

#[test]
fn guest_progress_on_the_list_registers_forces_a_scan() {
    let cases: [(&str, GuestOp); 4] = [
        ("acknowledged", |st| {
            iar(st);
        }),
        ("acknowledged and ended", |st| {
            let i = iar(st).expect("48 is pending");
            eoi(st, i);
        }),
        ("EOIcount", |st| st.hcr |= 1 << HCR_EOICOUNT_SHIFT),
        ("any LR bit", |st| st.lrs[0] ^= 1 << 41),
    ];
    for (name, guest) in cases {
        assert_eq!(exit_with(nothing, guest, nothing), SCAN, "{name}");
    }
}

#[test]
fn a_sync_that_finds_progress_moves_the_generation_on() {
    let cases: [(&str, GuestOp); 3] = [
        ("unchanged", no_guest),
        ("acknowledged", |st| {
            iar(st);
        }),
        ("EOIcount", |st| st.hcr |= 1 << HCR_EOICOUNT_SHIFT),
    ];
    for (i, (name, guest)) in cases.into_iter().enumerate() {
        let (mut g, mut sts) = setup();
        g.flush(0, &mut sts[0]);
        guest(&mut sts[0]);
        let generation = g.generation;
        g.sync(0, &mut sts[0]);
        let progress = i != 0;
        // Other vCPUs see the generation; this one also its own flag.
        assert_eq!(g.generation != generation, progress, "{name}");
        assert_eq!(g.hw_unchanged[0], !progress, "{name}");
    }
}

#[test]
fn every_interrupt_state_change_forces_a_scan() {
    let cases: [(&str, ModelOp); 32] = [
        ("SPI edge (in flight)", |g, _| g.raise_edge(48)),
        ("SPI edge (other vCPU)", |g, _| g.raise_edge(50)),
        ("SPI level high", |g, _| g.set_level(49, true)),
        ("SPI level high, disabled SPI", |g, _| g.set_level(52, true)),
        ("PPI injected", |g, _| g.inject_ppi(0, INTID_VIRT_TIMER)),
        ("timer level high", |g, _| {
            g.set_ppi_level(0, INTID_VIRT_TIMER, true)
        }),
        ("PPI level low", |g, _| g.set_ppi_level(0, 26, false)),
        ("SGI from the other vCPU", |g, _| {
            g.send_sgi(1, sgi_to(0, 3));
        }),
        ("Group 0 SGI from the other vCPU", |g, _| {
            g.send_sgi0(1, sgi_to(0, 4));
        }),
        ("GICD_CTLR", |g, _| dw(g, gicd::CTLR, 0x1)),
        ("GICD_ISENABLER", |g, _| dw(g, gicd::ISENABLER + 4, 1 << 20)),
        ("GICD_ICENABLER", |g, _| dw(g, gicd::ICENABLER + 4, 1 << 16)),
        ("GICD_ISPENDR", |g, _| dw(g, gicd::ISPENDR + 4, 1 << 17)),
        ("GICD_ICPENDR", |g, _| dw(g, gicd::ICPENDR + 4, 1 << 16)),
        ("GICD_ISACTIVER", |g, _| dw(g, gicd::ISACTIVER + 4, 1 << 17)),
        ("GICD_ICACTIVER", |g, _| dw(g, gicd::ICACTIVER + 4, 1 << 16)),
        ("GICD_IPRIORITYR", |g, _| set_priority(g, 48, 0x20)),
        ("GICD_ICFGR", |g, _| dw(g, gicd::ICFGR + 12, 0)),
        ("GICD_IGROUPR", |g, _| dw(g, gicd::IGROUPR + 4, !(1 << 16))),
        ("GICD_IROUTER", |g, _| route(g, 48, 1)),
        ("GICR_ISENABLER0", |g, _| {
            rw(g, 0, gicr::ISENABLER0, 1 << 20)
        }),
        ("GICR_ICENABLER0", |g, _| {
            rw(g, 0, gicr::ICENABLER0, 1 << INTID_VIRT_TIMER)
        }),
        ("GICR_ISPENDR0", |g, _| rw(g, 0, gicr::ISPENDR0, 1 << 5)),
        ("GICR_ICPENDR0", |g, _| rw(g, 0, gicr::ICPENDR0, 1 << 26)),
        ("GICR_ISACTIVER0", |g, _| rw(g, 0, gicr::ISACTIVER0, 1 << 6)),
        ("GICR_ICACTIVER0", |g, _| {
            rw(g, 0, gicr::ICACTIVER0, 1 << 26)
        }),
        ("GICR_IPRIORITYR", |g, _| {
            g.redist_write(gicr::IPRIORITYR + 26, Byte, 0x10)
        }),
        ("GICR_ICFGR1", |g, _| rw(g, 0, gicr::ICFGR1, 2 << 20)),
        ("GICR_IGROUPR0", |g, _| rw(g, 0, gicr::IGROUPR0, 0)),
        ("GICR_WAKER", |g, _| {
            g.redist_write(GICR_STRIDE + gicr::WAKER, Word, 2)
        }),
        ("CPU_ON (interface reset)", |g, _| g.forget_flush(0)),
        ("VM reset", |g, _| *g = Vgic::new(2)),
    ];
    for (name, op) in cases {
        assert_eq!(exit_with(nothing, no_guest, op), SCAN, "{name}");
    }
}

#[test]
fn another_vcpus_sync_that_frees_an_interrupt_for_us_forces_a_scan() {
    // SPI 50 is in vCPU 1's LRs when it is routed to vCPU 0; vCPU 0's next
    // flush scans (and cannot load it yet). Then vCPU 1 exits with its LRs
    // unchanged: SPI 50 leaves them, and vCPU 0 must scan again to get it.
    let prepare: fn(&mut Vgic, &mut States) = |g, sts| {
        g.raise_edge(50);
        g.flush(1, &mut sts[1]);
        route(g, 50, 0);
    };
    assert_eq!(exit_with(prepare, no_guest, nothing), REUSE);
    assert_eq!(
        exit_with(prepare, no_guest, |g, sts| {
            g.sync(1, &mut sts[1]);
        }),
        SCAN
    );
    let (mut g, mut sts) = setup();
    prepare(&mut g, &mut sts);
    g.flush(0, &mut sts[0]);
    g.sync(0, &mut sts[0]);
    g.sync(1, &mut sts[1]);
    g.flush(0, &mut sts[0]);
    let loaded: Vec<u32> = sts[0].lrs[..4]
        .iter()
        .map(|&l| ListRegister(l).vintid())
        .collect();
    assert!(loaded.contains(&50), "{loaded:?}");
}

/// Random operations, with most exits changing nothing: a vGIC that reuses
/// flushes and one that always scans produce the same list registers and
/// the same interrupt state after every flush.
#[test]
fn reuse_equals_scan_under_random_operations() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for num_lrs in [1, 2, 4] {
        let mut fast = booted(MAX_VCPUS);
        for intid in 32..44 {
            enable_spi(&mut fast, intid, intid % 2 == 0);
            route(&mut fast, intid, u64::from(intid) % 5);
        }
        for v in 0..MAX_VCPUS {
            enable_ppi(&mut fast, v, INTID_VIRT_TIMER, false);
        }
        let mut slow = fast.clone();
        let mut fast_st = [linux_cpu(num_lrs); MAX_VCPUS];
        let mut slow_st = fast_st;
        for step in 0..30_000 {
            let r = next();
            let v = (r >> 8) as usize % MAX_VCPUS;
            let arg = (r >> 16) as u32;
            let op = r % 32;
            let pair = [(&mut fast, &mut fast_st), (&mut slow, &mut slow_st)];
            for (reference, (g, sts)) in pair.into_iter().enumerate() {
                match op {
                    0 => g.raise_edge(32 + arg % 14),
                    1 => g.set_level(32 + arg % 14, r & (1 << 40) != 0),
                    2 => {
                        g.send_sgi(v, sgi_to((arg % 4) as u16, (arg % 3) as u8));
                    }
                    3 => g.set_ppi_level(v, INTID_VIRT_TIMER, r & (1 << 40) != 0),
                    4 => dw(g, gicd::ICENABLER + 4, 1 << (arg % 12)),
                    5 => dw(g, gicd::ISENABLER + 4, 1 << (arg % 12)),
                    6 => set_priority(g, 32 + arg % 12, (arg >> 8) as u8),
                    7 => route(g, 32 + arg % 12, u64::from(arg >> 8) % 5),
                    8 => dw(g, gicd::ICPENDR + 4, 1 << (arg % 12)),
                    9 => dw(g, gicd::ICACTIVER + 4, 1 << (arg % 12)),
                    10..=13 => {
                        // The guest takes (and maybe ends) interrupts.
                        while let Some(i) = iar(&mut sts[v]) {
                            if (r >> 20) % 2 == 0 {
                                eoi(&mut sts[v], i);
                            }
                        }
                    }
                    14 => {
                        // An EOI without an LR (EOIcount).
                        eoi(&mut sts[v], 1023);
                    }
                    _ => {
                        // An exit: sync, level resample, flush.
                        g.sync(v, &mut sts[v]);
                        let holds =
                            g.is_pending(v, INTID_VIRT_TIMER) || g.is_active(v, INTID_VIRT_TIMER);
                        g.set_ppi_level(v, INTID_VIRT_TIMER, holds && (r >> 40) % 4 != 0);
                        if reference == 1 {
                            g.forget_flush(v);
                        }
                        g.flush(v, &mut sts[v]);
                    }
                }
            }
            assert_eq!(fast_st, slow_st, "step {step}: interface state");
            assert_eq!(fast.private, slow.private, "step {step}");
            assert_eq!(fast.spis, slow.spis, "step {step}");
            assert_eq!(fast.lr_used, slow.lr_used, "step {step}");
        }
        let c = fast.counters();
        assert_eq!(slow.counters().flush_reused, 0);
        assert!(
            c.flush_reused > 1000 && c.flush_scanned > 1000,
            "both paths exercised: {c:?}"
        );
    }
}
