//! Host tests of the kept exit (`deferred`): every exit or state that must
//! settle does, an entry after a kept exit touches nothing only when no
//! interrupt state changed, and an injection handled before the deferred
//! sync ends in the same state as one handled after an eager sync.

use super::reuse_tests::{States, setup, sgi_to};
use super::tests::{dw, eoi, iar, route, rw, set_priority};
use super::*;
use crate::mmio::AccessSize::{self, Byte, Double, Word};
use crate::platform::{GICD_BASE, GICR_BASE, GICR_STRIDE, INTID_VIRT_TIMER, UART_BASE};
use crate::trap::{Exit, MmioAccess};
use hal::esr::{Esr, SysRegIss};
use hal::gicv3::{gicd, gicr};
use hal::ich::HCR_EOICOUNT_SHIFT;

const GOOD: ExitFacts = ExitFacts {
    sync_exception: true,
    needs_model: false,
    misr: 0,
    timer_settled: true,
    interface_known: true,
};

#[test]
fn only_a_plain_exit_keeps_the_interface() {
    assert!(keep_interface(&GOOD));
    let bad = [
        (
            "interrupt exit",
            ExitFacts {
                sync_exception: false,
                ..GOOD
            },
        ),
        (
            "handler needs the model",
            ExitFacts {
                needs_model: true,
                ..GOOD
            },
        ),
        (
            "timer line may change",
            ExitFacts {
                timer_settled: false,
                ..GOOD
            },
        ),
        (
            "interface turned off or unknown",
            ExitFacts {
                interface_known: false,
                ..GOOD
            },
        ),
    ];
    for (name, facts) in bad {
        assert!(!keep_interface(&facts), "{name}");
    }
    // Every maintenance condition (EOI, underflow, no pending, ...).
    for bit in 0..8 {
        let facts = ExitFacts {
            misr: 1 << bit,
            ..GOOD
        };
        assert!(!keep_interface(&facts), "MISR bit {bit}");
    }
}

fn mmio(ipa: u64, size: AccessSize, is_write: bool) -> Exit {
    Exit::Mmio(MmioAccess {
        ipa,
        size,
        is_write,
        reg: 1,
        sign_extend: false,
        sixty_four: false,
        instr_len: 4,
    })
}

#[test]
fn exits_that_touch_interrupt_state_need_the_model() {
    let g = Vgic::new(2);
    let needs = [
        ("GICD_CTLR read", mmio(GICD_BASE, Word, false)),
        (
            "GICD_ISPENDR write",
            mmio(GICD_BASE + gicd::ISPENDR + 4, Word, true),
        ),
        (
            "GICD_ISACTIVER read",
            mmio(GICD_BASE + gicd::ISACTIVER + 4, Word, false),
        ),
        (
            "GICR of vCPU 0",
            mmio(GICR_BASE + gicr::ISPENDR0, Word, false),
        ),
        (
            "GICR of vCPU 1",
            mmio(GICR_BASE + GICR_STRIDE + gicr::ISACTIVER0, Word, true),
        ),
        (
            "last byte of the redistributors",
            mmio(GICR_BASE + 2 * GICR_STRIDE - 1, Byte, false),
        ),
        (
            "straddling the start of the distributor",
            mmio(GICD_BASE - 4, Double, false),
        ),
        ("WFI", Exit::Wfi { len: 4 }),
        ("WFE", Exit::Wfe { len: 4 }),
        (
            "SGI (ICC_SGI1R_EL1)",
            Exit::SysReg {
                iss: SysRegIss(0),
                len: 4,
            },
        ),
        (
            "bad abort",
            Exit::BadAbort {
                ipa: UART_BASE,
                esr: Esr(0),
            },
        ),
        (
            "instruction abort",
            Exit::InstructionAbort {
                ipa: 0,
                esr: Esr(0),
            },
        ),
        ("anything else", Exit::Other(Esr(0))),
    ];
    for (name, exit) in needs {
        assert!(exit_needs_model(&exit, &g), "{name}");
    }
    let plain = [
        ("UART read", mmio(UART_BASE + 0x18, Word, false)),
        ("UART write", mmio(UART_BASE + 0x38, Word, true)),
        (
            "just below the distributor",
            mmio(GICD_BASE - 4, Word, false),
        ),
        (
            "just past this VM's redistributors",
            mmio(GICR_BASE + 2 * GICR_STRIDE, Word, false),
        ),
        ("HVC", Exit::Hvc { imm: 0 }),
        ("SMC", Exit::Smc { imm: 0, len: 4 }),
    ];
    for (name, exit) in plain {
        assert!(!exit_needs_model(&exit, &g), "{name}");
    }
}

#[test]
fn the_timer_line_is_settled_only_when_low_and_not_masked_by_the_hypervisor() {
    assert!(timer_line_settled(false, false));
    assert!(!timer_line_settled(true, false), "hypervisor mask");
    assert!(!timer_line_settled(false, true), "line high");
    assert!(!timer_line_settled(true, true));
}

#[test]
fn an_entry_keeps_the_interface_only_for_its_own_unchanged_kept_exit() {
    assert_eq!(entry_plan(true, true), EntryPlan::Keep);
    assert_eq!(entry_plan(true, false), EntryPlan::SettleThenFlush);
    // Nothing kept for this vCPU (another vCPU was loaded, the exit was
    // settled, or it was a normal exit): a normal entry.
    assert_eq!(entry_plan(false, true), EntryPlan::Flush);
    assert_eq!(entry_plan(false, false), EntryPlan::Flush);
}

#[test]
fn a_kept_exit_survives_only_a_continuing_run() {
    assert!(stay_kept(true, false));
    assert!(!stay_kept(false, false), "blocks, yields or stops");
    assert!(!stay_kept(true, true), "console command waiting");
    assert!(!stay_kept(false, true));
}

#[test]
fn ppi_line_reports_the_level() {
    let mut g = Vgic::new(2);
    assert!(!g.ppi_line(0, INTID_VIRT_TIMER));
    g.set_ppi_level(0, INTID_VIRT_TIMER, true);
    assert!(g.ppi_line(0, INTID_VIRT_TIMER));
    assert!(!g.ppi_line(1, INTID_VIRT_TIMER), "banked per vCPU");
    assert!(!g.ppi_line(5, INTID_VIRT_TIMER), "no such vCPU");
    assert!(!g.ppi_line(0, 40), "not a PPI");
    g.set_ppi_level(0, INTID_VIRT_TIMER, false);
    assert!(!g.ppi_line(0, INTID_VIRT_TIMER));
}

type ModelOp = fn(&mut Vgic, &mut States);

/// Everything that can happen to the model between a kept exit and the
/// next entry (in the exit's handler, the delivery before the entry, the
/// housekeeping) that changes interrupt state.
const CHANGES: [(&str, ModelOp); 16] = [
    ("SPI edge (in flight)", |g, _| g.raise_edge(48)),
    ("SPI edge (other vCPU)", |g, _| g.raise_edge(50)),
    ("SPI level high", |g, _| g.set_level(49, true)),
    ("PPI injected", |g, _| g.inject_ppi(0, INTID_VIRT_TIMER)),
    ("timer level high", |g, _| {
        g.set_ppi_level(0, INTID_VIRT_TIMER, true)
    }),
    ("PPI level low", |g, _| g.set_ppi_level(0, 26, false)),
    ("SGI from the other vCPU", |g, _| {
        g.send_sgi(1, sgi_to(0, 3));
    }),
    ("SGI to itself", |g, _| {
        g.send_sgi(0, sgi_to(0, 3));
    }),
    ("GICD_CTLR", |g, _| dw(g, gicd::CTLR, 0x1)),
    ("GICD_ICENABLER", |g, _| dw(g, gicd::ICENABLER + 4, 1 << 16)),
    ("GICD_ICPENDR", |g, _| dw(g, gicd::ICPENDR + 4, 1 << 16)),
    ("GICD_IPRIORITYR", |g, _| set_priority(g, 48, 0x20)),
    ("GICD_IROUTER", |g, _| route(g, 48, 1)),
    ("GICR_ISPENDR0", |g, _| rw(g, 0, gicr::ISPENDR0, 1 << 5)),
    ("CPU_ON (interface reset)", |g, _| g.forget_flush(0)),
    ("VM reset", |g, _| *g = Vgic::new(2)),
];

#[test]
fn nothing_changed_keeps_every_entry_untouched() {
    let (mut g, mut sts) = setup();
    g.flush(0, &mut sts[0]);
    let lr_count = sts[0].lr_count();
    // Kept exits and queries change nothing, however many.
    for _ in 0..5 {
        assert!(g.flush_unchanged(0, lr_count));
        g.set_ppi_level(0, INTID_VIRT_TIMER, false);
        g.set_level(49, false);
        g.take_kicks();
    }
    assert!(g.flush_unchanged(0, lr_count));
    // Another vCPU's clean round trip changes nothing for vCPU 0 either.
    g.flush(1, &mut sts[1]);
    g.sync(1, &mut sts[1]);
    assert!(g.flush_unchanged(0, lr_count));
    // But that vCPU's own state is its own: vCPU 1 has no flush record
    // for another list-register count, and no vCPU 2 exists.
    assert!(!g.flush_unchanged(0, lr_count + 1), "list-register count");
    assert!(!g.flush_unchanged(2, lr_count), "no such vCPU");
    assert!(!Vgic::new(2).flush_unchanged(0, lr_count), "never flushed");
}

#[test]
fn every_interrupt_state_change_settles_the_next_entry() {
    for (name, op) in CHANGES {
        let (mut g, mut sts) = setup();
        g.flush(0, &mut sts[0]);
        let lr_count = sts[0].lr_count();
        assert!(g.flush_unchanged(0, lr_count), "{name}: before");
        op(&mut g, &mut sts);
        assert!(!g.flush_unchanged(0, lr_count), "{name}");
        assert_eq!(
            entry_plan(true, g.flush_unchanged(0, lr_count)),
            EntryPlan::SettleThenFlush,
            "{name}"
        );
    }
    // A settle that finds the guest made progress moves the marker on too
    // (an exit that was not kept, or one settled by a vCPU switch).
    let (mut g, mut sts) = setup();
    g.flush(0, &mut sts[0]);
    iar(&mut sts[0]);
    g.sync(0, &mut sts[0]);
    assert!(!g.flush_unchanged(0, sts[0].lr_count()));
}

/// What the guest does to its interface before the exit.
type GuestOp = fn(&mut VcpuIfState);

const GUEST: [(&str, GuestOp); 4] = [
    ("nothing", |_| {}),
    ("acknowledged", |st| {
        iar(st);
    }),
    ("acknowledged and ended", |st| {
        if let Some(i) = iar(st) {
            eoi(st, i);
        }
    }),
    ("EOIcount", |st| st.hcr |= 1 << HCR_EOICOUNT_SHIFT),
];

/// A change handled while the exit is kept (the model sees it with the
/// guest's progress still in the interface), then settled and flushed,
/// ends exactly where the same change handled after an eager sync does.
#[test]
fn a_change_handled_before_the_deferred_sync_equals_one_after_it() {
    for (gname, guest) in GUEST {
        for (name, op) in CHANGES {
            let (mut eager, mut eager_sts) = setup();
            eager.flush(0, &mut eager_sts[0]);
            guest(&mut eager_sts[0]);
            let (mut kept, mut kept_sts) = (eager.clone(), eager_sts);

            eager.sync(0, &mut eager_sts[0]);
            op(&mut eager, &mut eager_sts);
            eager.flush(0, &mut eager_sts[0]);

            op(&mut kept, &mut kept_sts);
            assert_eq!(
                entry_plan(true, kept.flush_unchanged(0, kept_sts[0].lr_count())),
                EntryPlan::SettleThenFlush,
                "{gname} / {name}"
            );
            kept.sync(0, &mut kept_sts[0]);
            kept.flush(0, &mut kept_sts[0]);

            let what = format!("{gname} / {name}");
            assert_eq!(kept_sts, eager_sts, "{what}: interface state");
            assert_eq!(kept.private, eager.private, "{what}: SGI/PPI state");
            assert_eq!(kept.spis, eager.spis, "{what}: SPI state");
            assert_eq!(kept.lr_intid, eager.lr_intid, "{what}");
            assert_eq!(kept.lr_used, eager.lr_used, "{what}");
        }
    }
}
