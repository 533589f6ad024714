//! Target `vgic`: distributor and redistributor MMIO at every offset and
//! width, SPIs, PPIs and SGIs injected, list registers flushed, changed
//! the way the hardware would as the guest acknowledges and deactivates
//! interrupts, and synced back. After every operation, for every vCPU whose
//! list registers are loaded: no INTID is listed twice (an SPI not even on
//! two vCPUs), every listed INTID exists, no LR asks for a hardware
//! deactivation, and the LRs the CPU does not implement stay zero.

use arbitrary::Arbitrary;
use hal::ich::{ListRegister, LrState};
use hypervisor::irq::IrqSink;
use hypervisor::mmio::AccessSize;
use hypervisor::vgic::{NR_IRQS, NR_PRIVATE, VcpuIfState, Vgic};

use crate::virtio_model::Width;

/// One operation.
#[derive(Arbitrary, Debug)]
pub enum VgicOp {
    /// A distributor access.
    Dist {
        /// Offset (wraps at 64 KiB).
        offset: u16,
        /// Width.
        width: Width,
        /// Value (writes).
        value: u64,
        /// Write or read.
        write: bool,
    },
    /// A redistributor access.
    Redist {
        /// Offset into all frames (wraps).
        offset: u32,
        /// Width.
        width: Width,
        /// Value (writes).
        value: u64,
        /// Write or read.
        write: bool,
    },
    /// A device raises an SPI edge.
    Spi(u8),
    /// A device sets an SPI line.
    SpiLevel(u8, bool),
    /// A timer PPI edge.
    Ppi(u8, u8),
    /// A PPI line.
    PpiLevel(u8, u8, bool),
    /// A trapped ICC_SGI1R_EL1 write.
    Sgi(u8, u64),
    /// A trapped ICC_SGI0R_EL1 write.
    Sgi0(u8, u64),
    /// Flush vCPU `n`'s LRs before entry.
    Flush(u8),
    /// The guest acknowledges LR `lr` of vCPU `n`.
    Ack(u8, u8),
    /// The guest deactivates LR `lr` of vCPU `n`.
    Deactivate(u8, u8),
    /// The guest changes its VMCR (priority mask, group enables).
    Vmcr(u8, u64),
    /// Sync vCPU `n` after exit.
    Sync(u8),
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// vCPUs (1..=4).
    pub vcpus: u8,
    /// List registers per vCPU (1..=4 each).
    pub lrs: [u8; 4],
    /// Operations.
    pub ops: Vec<VgicOp>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    let n = usize::from(input.vcpus % 4) + 1;
    let mut gic = Vgic::new(n);
    let mut cpus: Vec<VcpuIfState> = (0..n)
        .map(|v| VcpuIfState::new(usize::from(input.lrs[v] % 4) + 1))
        .collect();
    let mut loaded = vec![false; n];
    let dist = gic.dist_region();
    let redist = gic.redist_region();
    for op in input.ops.iter().take(512) {
        match *op {
            VgicOp::Dist {
                offset,
                width,
                value,
                write,
            } => access(&mut gic, dist.base + u64::from(offset), width, value, write),
            VgicOp::Redist {
                offset,
                width,
                value,
                write,
            } => {
                let off = u64::from(offset) % redist.size;
                access(&mut gic, redist.base + off, width, value, write)
            }
            VgicOp::Spi(i) => gic.raise_edge(u32::from(i)),
            VgicOp::SpiLevel(i, high) => gic.set_level(u32::from(i), high),
            VgicOp::Ppi(v, i) => gic.inject_ppi(usize::from(v) % n, u32::from(i % 32)),
            VgicOp::PpiLevel(v, i, high) => {
                gic.set_ppi_level(usize::from(v) % n, u32::from(i % 32), high)
            }
            VgicOp::Sgi(v, value) => {
                gic.send_sgi(usize::from(v) % n, value);
            }
            VgicOp::Sgi0(v, value) => {
                gic.send_sgi0(usize::from(v) % n, value);
            }
            VgicOp::Flush(v) => {
                let v = usize::from(v) % n;
                let out = gic.flush(v, &mut cpus[v]);
                assert!(
                    out.loaded <= cpus[v].lr_count(),
                    "flush loaded too many LRs"
                );
                loaded[v] = true;
            }
            VgicOp::Ack(v, lr) => guest_lr(&mut cpus, &loaded, n, v, lr, |s| match s {
                LrState::Pending => LrState::Active,
                other => other,
            }),
            VgicOp::Deactivate(v, lr) => guest_lr(&mut cpus, &loaded, n, v, lr, |s| match s {
                LrState::Active => LrState::Invalid,
                LrState::PendingActive => LrState::Pending,
                other => other,
            }),
            VgicOp::Vmcr(v, vmcr) => {
                let v = usize::from(v) % n;
                cpus[v].vmcr = vmcr;
            }
            VgicOp::Sync(v) => {
                let v = usize::from(v) % n;
                gic.sync(v, &mut cpus[v]);
                loaded[v] = false;
            }
        }
        gic.take_kicks();
        check(&cpus, &loaded);
    }
}

fn access(gic: &mut Vgic, gpa: u64, width: Width, value: u64, write: bool) {
    let size: AccessSize = width.size();
    if write {
        assert!(gic.mmio_write(gpa, size, value & size.mask()) || !claims(gic, gpa, size));
    } else if let Some(v) = gic.mmio_read(gpa, size) {
        assert_eq!(
            v & !size.mask(),
            0,
            "read of {gpa:#x} wider than the access"
        );
    }
}

fn claims(gic: &Vgic, gpa: u64, size: AccessSize) -> bool {
    let len = u64::from(size.bytes());
    gic.dist_region().offset_of(gpa, len).is_some()
        || gic.redist_region().offset_of(gpa, len).is_some()
}

/// The hardware's view of the guest acting on one loaded LR.
fn guest_lr(
    cpus: &mut [VcpuIfState],
    loaded: &[bool],
    n: usize,
    v: u8,
    lr: u8,
    next: impl Fn(LrState) -> LrState,
) {
    let v = usize::from(v) % n;
    let count = cpus[v].lr_count();
    let i = usize::from(lr) % count;
    if !loaded[v] {
        return;
    }
    let reg = ListRegister(cpus[v].lrs[i]);
    cpus[v].lrs[i] = reg.with_state(next(reg.state())).raw();
}

fn check(cpus: &[VcpuIfState], loaded: &[bool]) {
    let mut spis = Vec::new();
    for (v, cpu) in cpus.iter().enumerate() {
        for (i, &raw) in cpu.lrs.iter().enumerate().skip(cpu.lr_count()) {
            assert_eq!(raw, 0, "vCPU {v}: unimplemented LR {i} written");
        }
        if !loaded[v] {
            continue;
        }
        let mut seen = Vec::new();
        for &raw in &cpu.lrs[..cpu.lr_count()] {
            let lr = ListRegister(raw);
            if matches!(lr.state(), LrState::Invalid) {
                continue;
            }
            let id = lr.vintid();
            assert!((id as usize) < NR_IRQS, "vCPU {v}: LR lists INTID {id}");
            assert!(!lr.hw(), "vCPU {v}: LR for INTID {id} has HW set");
            assert!(!seen.contains(&id), "vCPU {v}: INTID {id} in two LRs");
            seen.push(id);
            if id as usize >= NR_PRIVATE {
                assert!(!spis.contains(&id), "SPI {id} listed on two vCPUs");
                spis.push(id);
            }
        }
    }
}
