//! Host tests: build tables, walk them in software, check every mapping.
//!
//! Longer than 800 lines on purpose: every test builds tables with the
//! same fake allocators (`VecPool`, `LyingPool`) and checks them with the
//! same software walk; one file keeps the fixtures next to all their uses.

use super::*;
use crate::platform::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// PARange of QEMU's cortex-a72 (44 bits).
const A72_PARANGE: u64 = 4;

/// A `Vec`-backed allocator with made-up, deliberately non-contiguous,
/// descending physical addresses.
struct VecPool {
    tables: Vec<(u64, Box<Table>)>,
    capacity: usize,
    next_pa: u64,
}

impl VecPool {
    fn new(capacity: usize) -> Self {
        VecPool {
            tables: Vec::new(),
            capacity,
            next_pa: 0x3f00_0000,
        }
    }
}

impl TableAlloc for VecPool {
    fn alloc(&mut self) -> Result<u64, AllocError> {
        if self.tables.len() == self.capacity {
            return Err(AllocError::Exhausted {
                capacity: self.capacity,
            });
        }
        let pa = self.next_pa;
        self.next_pa -= 3 * PAGE_SIZE; // gaps, descending
        self.tables.push((pa, Box::new([0; ENTRIES])));
        Ok(pa)
    }
    fn remaining(&self) -> usize {
        self.capacity - self.tables.len()
    }
    fn table(&self, pa: u64) -> Option<&Table> {
        self.tables.iter().find(|t| t.0 == pa).map(|t| &*t.1)
    }
    fn table_mut(&mut self, pa: u64) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.0 == pa)
            .map(|t| &mut *t.1)
    }
}

/// An allocator that claims to have tables but refuses to hand them out.
struct LyingPool(VecPool);

impl TableAlloc for LyingPool {
    fn alloc(&mut self) -> Result<u64, AllocError> {
        if self.0.tables.is_empty() {
            self.0.alloc()
        } else {
            Err(AllocError::Exhausted { capacity: 1 })
        }
    }
    fn remaining(&self) -> usize {
        100
    }
    fn table(&self, pa: u64) -> Option<&Table> {
        self.0.table(pa)
    }
    fn table_mut(&mut self, pa: u64) -> Option<&mut Table> {
        self.0.table_mut(pa)
    }
}

impl<T: TableAlloc + ?Sized> TableAlloc for Box<T> {
    fn alloc(&mut self) -> Result<u64, AllocError> {
        (**self).alloc()
    }
    fn remaining(&self) -> usize {
        (**self).remaining()
    }
    fn table(&self, pa: u64) -> Option<&Table> {
        (**self).table(pa)
    }
    fn table_mut(&mut self, pa: u64) -> Option<&mut Table> {
        (**self).table_mut(pa)
    }
}

fn pool<const N: usize>(base: u64) -> Box<TablePool<N>> {
    let mut p: Box<TablePool<N>> = Box::default();
    p.bind(base).unwrap();
    p
}

/// Checks that every page in `[start, end)` translates exactly as the
/// recorded regions say (or not at all), with the permissions of its kind.
fn check_pages<A: TableAlloc>(t: &Stage2Tables<A>, start: u64, end: u64) {
    let mut ipa = start;
    while ipa < end {
        let want = t
            .regions()
            .iter()
            .find(|r| ipa >= r.ipa && ipa < r.ipa + r.size)
            .copied();
        let got = t.translate(ipa + 0x123);
        match (want, got) {
            (None, None) => {}
            (Some(r), Some(tr)) => {
                assert_eq!(tr.pa, r.pa + (ipa - r.ipa) + 0x123, "IPA {ipa:#x}");
                assert_eq!(tr.kind(), Some(r.kind), "IPA {ipa:#x}");
            }
            (w, g) => panic!("IPA {ipa:#x}: expected {w:?}, walked {g:?}"),
        }
        ipa += PAGE_SIZE;
    }
}

// ── VTCR / VTTBR / PS ────────────────────────────────────────────────

#[test]
fn vtcr_fields_match_the_design() {
    let t = build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, 0, GUEST_RAM_SIZE).unwrap();
    let v = t.vtcr();
    assert_eq!(v & 0x3f, 25, "T0SZ");
    assert_eq!((v >> 6) & 3, 1, "SL0 = start at level 1");
    assert_eq!((v >> 8) & 3, 1, "IRGN0 write-back");
    assert_eq!((v >> 10) & 3, 1, "ORGN0 write-back");
    assert_eq!((v >> 12) & 3, 3, "SH0 inner shareable");
    assert_eq!((v >> 14) & 3, 0, "TG0 4 KiB");
    assert_eq!((v >> 16) & 7, 2, "PS 40 bits");
    assert_eq!((v >> 19) & 1, 0, "VS 8-bit VMID");
    assert_eq!((v >> 21) & 3, 0, "no HA/HD");
    assert_eq!(v >> 31, 1, "RES1");
    assert_eq!(t.ps(), 2);
}

#[test]
fn vttbr_holds_vmid_and_root() {
    let t = build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, 1, GUEST_RAM_SIZE).unwrap();
    assert_eq!(t.root_pa(), 0x7000_0000);
    assert_eq!(t.vttbr(Vmid::new(5).unwrap()), (5 << 48) | 0x7000_0000);
    assert_eq!(t.vttbr(Vmid::new(255).unwrap()) >> 48, 255);
    assert_eq!(t.vttbr(Vmid::new(1).unwrap()) & 1, 0, "CnP clear");
}

#[test]
fn parange_encodings() {
    for parange in [0u64, 1] {
        let e = Stage2Builder::new(VecPool::new(4), parange).unwrap_err();
        assert!(
            matches!(e, Stage2Error::ParangeTooSmall { .. }),
            "{parange}"
        );
    }
    for parange in [7u64, 8, 15, 0x100] {
        assert_eq!(
            Stage2Builder::new(VecPool::new(4), parange).unwrap_err(),
            Stage2Error::ParangeReserved { parange }
        );
    }
    // Whatever the machine offers, the standard layout needs only 40 bits.
    for parange in 2..=6 {
        let t = build_vm_tables(pool::<4>(0x7000_0000), parange, 3, GUEST_RAM_SIZE).unwrap();
        assert_eq!(t.ps(), 2, "PARange {parange}");
    }
    let msg = Stage2Builder::new(VecPool::new(4), 1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "ID_AA64MMFR0_EL1.PARange = 0x1 (36-bit physical addresses) cannot hold the 39-bit \
         guest-physical space; at least PARange 0x2 (40 bits) is needed"
    );
}

#[test]
fn ps_grows_with_the_output_addresses() {
    // PA up to the very end of a 40-bit space still fits PS = 40 bits.
    let mut b = Stage2Builder::new(pool::<4>(0x7000_0000), 4).unwrap();
    b.map(
        0x4000_0000,
        (1 << 40) - BLOCK_SIZE,
        BLOCK_SIZE,
        MemKind::RAM,
    )
    .unwrap();
    assert_eq!(b.finish().unwrap().ps(), 2);

    // One byte further needs PS = 42 bits.
    let mut b = Stage2Builder::new(pool::<4>(0x7000_0000), 4).unwrap();
    b.map(0x4000_0000, 1 << 40, BLOCK_SIZE, MemKind::RAM)
        .unwrap();
    let t = b.finish().unwrap();
    assert_eq!(t.ps(), 3);
    assert_eq!(t.translate(0x4000_0000).unwrap().pa, 1 << 40);

    // Tables above 1 TiB count too.
    let mut b = Stage2Builder::new(pool::<4>(1 << 41), 4).unwrap();
    b.map(0x4000_0000, 0x6000_0000, BLOCK_SIZE, MemKind::RAM)
        .unwrap();
    assert_eq!(b.finish().unwrap().ps(), 3);
}

#[test]
fn pa_beyond_parange_is_refused() {
    let mut b = Stage2Builder::new(pool::<4>(0x7000_0000), 2).unwrap();
    let e = b
        .map(0x4000_0000, 1 << 40, PAGE_SIZE, MemKind::RAM)
        .unwrap_err();
    assert_eq!(
        e,
        Stage2Error::PaOutOfRange {
            pa: 1 << 40,
            size: PAGE_SIZE,
            pa_bits: 40
        }
    );
    assert_eq!(
        e.to_string(),
        "stage-2 mapping PA 0x10000000000+0x1000 ends beyond the machine's 40-bit physical \
         address space (limit 0x10000000000)"
    );
    // Straddling the limit is refused as a whole.
    assert!(
        b.map(
            0x4000_0000,
            (1 << 40) - PAGE_SIZE,
            2 * PAGE_SIZE,
            MemKind::RAM
        )
        .is_err()
    );
    // The last page is fine.
    b.map(0x4000_0000, (1 << 40) - PAGE_SIZE, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    // PARange 6 (52 bits) is capped at 48 output bits.
    let mut b = Stage2Builder::new(pool::<4>(0x7000_0000), 6).unwrap();
    assert!(matches!(
        b.map(0x4000_0000, 1 << 48, PAGE_SIZE, MemKind::RAM),
        Err(Stage2Error::PaOutOfRange { pa_bits: 48, .. })
    ));
}

#[test]
fn tables_out_of_reach_are_refused() {
    let e = Stage2Builder::new(pool::<4>(1 << 40), 2).unwrap_err();
    assert_eq!(
        e,
        Stage2Error::BadTableAddress {
            pa: 1 << 40,
            pa_bits: 40
        }
    );
}

// ── The per-VM layout ────────────────────────────────────────────────

#[test]
fn vm_ram_is_mapped_one_to_one_onto_its_carve_out() {
    for vm in 0..MAX_VMS {
        let t = build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, vm, GUEST_RAM_SIZE).unwrap();
        let carve = HOST_VM_BASE + vm as u64 * HOST_VM_STRIDE;
        assert_eq!(vm_ram_pa(vm), Some(carve));
        assert_eq!(t.tables_used(), 2, "root + one level-2 table, all blocks");
        let mut off = 0;
        while off < GUEST_RAM_SIZE {
            for probe in [0, 0x8, 0xff8] {
                let tr = t.translate(RAM_BASE + off + probe).unwrap();
                assert_eq!(tr.pa, carve + off + probe);
                assert_eq!(tr.level, 2);
                assert_eq!(tr.size, BLOCK_SIZE);
                assert_eq!(
                    tr.perms,
                    S2Perms {
                        read: true,
                        write: true,
                        exec: true
                    }
                );
                assert_eq!(tr.memattr, 0b1111);
                assert_eq!(tr.shareability, 0b11);
                assert_eq!(tr.kind(), Some(MemKind::RAM));
            }
            off += PAGE_SIZE;
        }
    }
}

#[test]
fn everything_but_ram_is_unmapped() {
    let t = build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, 0, GUEST_RAM_SIZE).unwrap();
    let ram_end = RAM_BASE + GUEST_RAM_SIZE;
    // Devices.
    for a in [
        GICD_BASE,
        GICD_BASE + GICD_SIZE - 4,
        UART_BASE,
        UART_BASE + 0xffc,
    ] {
        assert!(t.translate(a).is_none(), "{a:#x}");
    }
    for cpu in 0..MAX_VCPUS as u64 {
        let r = GICR_BASE + cpu * GICR_STRIDE;
        assert!(t.translate(r).is_none());
        assert!(t.translate(r + 0x1_0000).is_none(), "SGI frame");
    }
    for slot in 0..32 {
        let (base, _) = virtio_slot(slot);
        assert!(t.translate(base).is_none(), "virtio slot {slot}");
        assert!(t.translate(base + 0x1fc).is_none());
    }
    // Every page below RAM and from the end of RAM up to 4 GiB.
    check_pages(&t, 0, RAM_BASE);
    check_pages(&t, ram_end, 4 * GIB);
    // The edges exactly.
    assert!(t.translate(RAM_BASE - 1).is_none());
    assert!(t.translate(RAM_BASE).is_some());
    assert!(t.translate(ram_end - 1).is_some());
    assert_eq!(
        t.walk(ram_end),
        Err(WalkFault::Translation { level: 2 }),
        "next 2 MiB entry of the same level-2 table"
    );
    // Above: other level-1 entries are invalid, sampled up to the IPA limit.
    let mut a = 4 * GIB;
    while a < 1 << IPA_BITS {
        assert_eq!(t.walk(a), Err(WalkFault::Translation { level: 1 }));
        a += 7 * GIB + 0x1234_5000;
    }
    assert_eq!(
        t.walk((1 << IPA_BITS) - 1),
        Err(WalkFault::Translation { level: 1 })
    );
    assert_eq!(
        t.walk(1 << IPA_BITS),
        Err(WalkFault::IpaOutOfRange { ipa: 1 << IPA_BITS })
    );
    assert!(t.translate(u64::MAX).is_none());
}

#[test]
fn two_vms_same_ipa_layout_different_pas() {
    let mut p0 = pool::<4>(0x7000_0000);
    let mut p1 = pool::<4>(0x7010_0000);
    let t0 = build_vm_tables(&mut *p0, A72_PARANGE, 0, GUEST_RAM_SIZE).unwrap();
    let t1 = build_vm_tables(&mut *p1, A72_PARANGE, 1, GUEST_RAM_SIZE).unwrap();
    assert_ne!(t0.root_pa(), t1.root_pa());
    assert_eq!(t0.vtcr(), t1.vtcr());
    let mut off = 0;
    while off < GUEST_RAM_SIZE {
        let a = t0.translate(RAM_BASE + off).unwrap().pa;
        let b = t1.translate(RAM_BASE + off).unwrap().pa;
        assert_eq!(b - a, HOST_VM_STRIDE);
        off += BLOCK_SIZE / 2;
    }
    // The carve-outs do not overlap each other.
    assert!(HOST_VM_BASE + GUEST_RAM_SIZE <= vm_ram_pa(1).unwrap());
}

#[test]
fn smaller_ram_maps_only_what_was_asked() {
    let t = build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, 2, 64 * MIB).unwrap();
    assert!(t.translate(RAM_BASE + 64 * MIB - 1).is_some());
    assert!(t.translate(RAM_BASE + 64 * MIB).is_none());
}

#[test]
fn vm_helper_errors_name_the_vm() {
    let e =
        build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, MAX_VMS, GUEST_RAM_SIZE).unwrap_err();
    assert_eq!(e.kind, VmStage2ErrorKind::NoSuchVm);
    assert_eq!(e.to_string(), "VM 4: no such VM (at most 4 VMs)");

    let e = build_vm_tables(
        pool::<4>(0x7000_0000),
        A72_PARANGE,
        1,
        GUEST_RAM_SIZE + PAGE_SIZE,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "VM 1: guest RAM size 0x10001000 exceeds the 0x10000000 bytes its carve-out holds"
    );

    let e = build_vm_tables(pool::<4>(0x7000_0000), A72_PARANGE, 2, 0x123).unwrap_err();
    assert_eq!(
        e.to_string(),
        "VM 2: stage-2 mapping IPA 0x40000000 -> PA 0x88000000, size 0x123: the size is not \
         a multiple of 4 KiB"
    );

    let e = build_vm_tables(pool::<1>(0x7000_0000), A72_PARANGE, 0, GUEST_RAM_SIZE).unwrap_err();
    assert_eq!(
        e.to_string(),
        "VM 0: stage-2 mapping IPA 0x40000000+0x10000000 needs 1 more translation table(s) but \
         only 0 are left in the pool"
    );
}

// ── Blocks and pages ─────────────────────────────────────────────────

#[test]
fn unaligned_edges_use_pages_aligned_middle_uses_blocks() {
    let mut p = pool::<8>(0x7000_0000);
    let mut b = Stage2Builder::new(&mut *p, A72_PARANGE).unwrap();
    // 1 MiB of pages, two 2 MiB blocks, 1 MiB of pages.
    let (ipa, pa, size) = (0x4010_0000, 0x6010_0000, 6 * MIB);
    b.map(ipa, pa, size, MemKind::RAM).unwrap();
    let t = b.finish().unwrap();
    assert_eq!(t.tables_used(), 4, "root, level 2, two level 3");
    let level_at = |a: u64| t.translate(a).unwrap().level;
    assert_eq!(level_at(0x4010_0000), 3);
    assert_eq!(level_at(0x401f_f000), 3);
    assert_eq!(level_at(0x4020_0000), 2);
    assert_eq!(level_at(0x405f_ffff), 2);
    assert_eq!(level_at(0x4060_0000), 3);
    assert_eq!(level_at(0x406f_f000), 3);
    assert!(t.translate(0x4070_0000).is_none());
    assert!(t.translate(0x400f_f000).is_none());
    check_pages(&t, 0x4000_0000, 0x4080_0000);
}

#[test]
fn differently_aligned_ipa_and_pa_use_pages_only() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    // IPA 2 MiB aligned, PA only 4 KiB aligned: no block can be used.
    b.map(0x4000_0000, 0x6000_1000, 4 * MIB, MemKind::RAM)
        .unwrap();
    let t = b.finish().unwrap();
    assert_eq!(t.tables_used(), 4);
    for off in (0..4 * MIB).step_by(PAGE_SIZE as usize) {
        let tr = t.translate(0x4000_0000 + off).unwrap();
        assert_eq!(tr.level, 3);
        assert_eq!(tr.size, PAGE_SIZE);
        assert_eq!(tr.pa, 0x6000_1000 + off);
    }
}

#[test]
fn small_aligned_range_shorter_than_a_block_uses_pages() {
    let mut b = Stage2Builder::new(VecPool::new(4), A72_PARANGE).unwrap();
    b.map(
        0x4000_0000,
        0x6000_0000,
        BLOCK_SIZE - PAGE_SIZE,
        MemKind::RAM,
    )
    .unwrap();
    let t = b.finish().unwrap();
    assert_eq!(t.translate(0x4000_0000).unwrap().level, 3);
    assert!(t.translate(0x4000_0000 + BLOCK_SIZE - PAGE_SIZE).is_none());
}

#[test]
fn range_crossing_a_1_gib_boundary_gets_two_level2_tables() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    b.map(GIB - 3 * MIB, 0x6000_0000 - 3 * MIB, 8 * MIB, MemKind::RAM)
        .unwrap();
    let t = b.finish().unwrap();
    // 1 MiB of pages, 3 blocks, 1 MiB of pages: root + 2 level-2 + 2 level-3.
    assert_eq!(t.tables_used(), 5);
    check_pages(&t, GIB - 4 * MIB, GIB + 6 * MIB);
    assert_eq!(t.translate(GIB).unwrap().level, 2);
}

#[test]
fn several_regions_share_tables() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    b.map(0x4000_0000, 0x6000_0000, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    // Same 2 MiB, same level-3 table.
    b.map(0x4000_2000, 0x6000_2000, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    // Adjacent (not overlapping) to the first.
    b.map(0x4000_1000, 0x6100_1000, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    let t = b.finish().unwrap();
    assert_eq!(t.tables_used(), 3);
    assert_eq!(t.regions().len(), 3);
    check_pages(&t, 0x4000_0000, 0x4020_0000);
}

#[test]
fn pseudo_random_layouts_translate_exactly() {
    // Deterministic LCG; no external crates.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for _round in 0..20 {
        let mut b = Stage2Builder::new(VecPool::new(64), A72_PARANGE).unwrap();
        let mut cursor_ipa = 0x4000_0000;
        let mut cursor_pa = 0x6000_0000;
        for _ in 0..6 {
            cursor_ipa += rnd(3) * BLOCK_SIZE + rnd(512) * PAGE_SIZE;
            cursor_pa += rnd(3) * BLOCK_SIZE + if rnd(2) == 0 { 0 } else { rnd(512) * PAGE_SIZE };
            let size = rnd(3) * BLOCK_SIZE + (1 + rnd(700)) * PAGE_SIZE;
            let kind = match rnd(4) {
                0 => MemKind::RAM,
                1 => MemKind::Normal {
                    access: Access::ReadOnly,
                    exec: true,
                },
                2 => MemKind::Normal {
                    access: Access::ReadWrite,
                    exec: false,
                },
                _ => MemKind::Device,
            };
            b.map(cursor_ipa, cursor_pa, size, kind).unwrap();
            cursor_ipa += size;
            cursor_pa += size;
        }
        let t = b.finish().unwrap();
        check_pages(&t, 0x4000_0000 - BLOCK_SIZE, cursor_ipa + BLOCK_SIZE);
    }
}

// ── Descriptor bits ──────────────────────────────────────────────────

#[test]
fn descriptor_bits_for_each_kind() {
    let ram = leaf_desc(0x6000_0000, 2, MemKind::RAM);
    assert_eq!(ram & 3, 0b01, "level-2 block");
    assert_eq!((ram >> 2) & 0xf, 0b1111, "MemAttr normal WB");
    assert_eq!((ram >> 6) & 3, 0b11, "S2AP RW");
    assert_eq!((ram >> 8) & 3, 0b11, "inner shareable");
    assert_ne!(ram & (1 << 10), 0, "AF");
    assert_eq!(ram >> 53, 0, "executable, no upper attributes");
    assert_eq!(ram & OA_MASK, 0x6000_0000);

    let page = leaf_desc(0x6000_1000, 3, MemKind::RAM);
    assert_eq!(page & 3, 0b11, "level-3 page");
    assert_eq!(page & OA_MASK, 0x6000_1000);

    let ro_nx = leaf_desc(
        0x6000_0000,
        3,
        MemKind::Normal {
            access: Access::ReadOnly,
            exec: false,
        },
    );
    assert_eq!((ro_nx >> 6) & 3, 0b01, "S2AP read-only");
    assert_eq!((ro_nx >> 53) & 3, 0b10, "XN[1:0] = 0b10");

    let dev = leaf_desc(0x0900_0000, 3, MemKind::Device);
    assert_eq!((dev >> 2) & 0xf, 0b0001, "Device-nGnRE");
    assert_eq!((dev >> 6) & 3, 0b11);
    assert_ne!(dev & (1 << 54), 0, "XN");

    let tbl = table_desc(0x7000_3000);
    assert_eq!(tbl, 0x7000_3000 | 0b11);
}

#[test]
fn permissions_survive_the_walk() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    let ro = MemKind::Normal {
        access: Access::ReadOnly,
        exec: true,
    };
    let nx = MemKind::Normal {
        access: Access::ReadWrite,
        exec: false,
    };
    b.map(0x4000_0000, 0x6000_0000, BLOCK_SIZE, ro).unwrap();
    b.map(0x4020_0000, 0x6020_0000, PAGE_SIZE, nx).unwrap();
    b.map(0x0900_0000, 0x0900_0000, PAGE_SIZE, MemKind::Device)
        .unwrap();
    let t = b.finish().unwrap();
    let p = t.translate(0x4000_0010).unwrap();
    assert_eq!(
        p.perms,
        S2Perms {
            read: true,
            write: false,
            exec: true
        }
    );
    assert_eq!(p.kind(), Some(ro));
    let p = t.translate(0x4020_0010).unwrap();
    assert_eq!(
        p.perms,
        S2Perms {
            read: true,
            write: true,
            exec: false
        }
    );
    assert_eq!(p.kind(), Some(nx));
    let d = t.translate(0x0900_0018).unwrap();
    assert_eq!(d.kind(), Some(MemKind::Device));
    assert_eq!(d.memattr, 0b0001);
}

// ── Refusals ─────────────────────────────────────────────────────────

#[test]
fn overlapping_ipa_ranges_are_refused() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    b.map(0x4000_0000, 0x6000_0000, 4 * MIB, MemKind::RAM)
        .unwrap();
    for (ipa, size) in [
        (0x4000_0000, 4 * MIB),       // identical
        (0x403f_f000, PAGE_SIZE),     // last page
        (0x3fff_f000, 2 * PAGE_SIZE), // straddles the start
        (0x3000_0000, GIB),           // contains it
        (0x4010_0000, PAGE_SIZE),     // inside
    ] {
        let e = b.map(ipa, 0x7000_0000, size, MemKind::RAM).unwrap_err();
        assert_eq!(
            e,
            Stage2Error::IpaOverlap {
                ipa,
                size,
                other_ipa: 0x4000_0000,
                other_size: 4 * MIB
            }
        );
    }
    // Adjacent on both sides is fine.
    b.map(0x3fff_f000, 0x7000_0000, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    b.map(0x4040_0000, 0x7000_1000, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    let e = b
        .map(0x4040_0000, 0x7100_0000, PAGE_SIZE, MemKind::RAM)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "stage-2 mapping IPA 0x40400000+0x1000 overlaps the mapping at IPA 0x40400000+0x1000"
    );
}

#[test]
fn overlapping_pa_ranges_are_refused() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    b.map(0x4000_0000, 0x6000_0000, 4 * MIB, MemKind::RAM)
        .unwrap();
    let e = b
        .map(0x5000_0000, 0x6020_0000, PAGE_SIZE, MemKind::RAM)
        .unwrap_err();
    assert_eq!(
        e,
        Stage2Error::PaOverlap {
            pa: 0x6020_0000,
            size: PAGE_SIZE,
            other_pa: 0x6000_0000,
            other_size: 4 * MIB
        }
    );
    assert!(e.to_string().contains("host memory mapped twice"));
}

#[test]
fn unaligned_and_empty_ranges_are_refused() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    let cases = [
        (0x4000_0800, 0x6000_0000, PAGE_SIZE, "the IPA"),
        (0x4000_0000, 0x6000_0008, PAGE_SIZE, "the PA"),
        (0x4000_0000, 0x6000_0000, PAGE_SIZE + 1, "the size"),
    ];
    for (ipa, pa, size, what) in cases {
        let e = b.map(ipa, pa, size, MemKind::RAM).unwrap_err();
        assert_eq!(e, Stage2Error::Misaligned { ipa, pa, size });
        assert!(e.to_string().contains(what), "{e}");
    }
    assert_eq!(
        b.map(0x4000_0000, 0x6000_0000, 0, MemKind::RAM),
        Err(Stage2Error::EmptyRange { ipa: 0x4000_0000 })
    );
    assert!(b.regions().is_empty());
}

#[test]
fn ipa_beyond_39_bits_is_refused() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    let limit = 1u64 << 39;
    b.map(limit - PAGE_SIZE, 0x6000_0000, PAGE_SIZE, MemKind::RAM)
        .unwrap();
    let e = b
        .map(limit - PAGE_SIZE, 0x6100_0000, 2 * PAGE_SIZE, MemKind::RAM)
        .unwrap_err();
    assert_eq!(
        e,
        Stage2Error::IpaOutOfRange {
            ipa: limit - PAGE_SIZE,
            size: 2 * PAGE_SIZE
        }
    );
    assert_eq!(
        e.to_string(),
        "stage-2 mapping IPA 0x7ffffff000+0x2000 ends beyond the 39-bit guest-physical space \
         (limit 0x8000000000)"
    );
    assert!(matches!(
        b.map(limit, 0x6100_0000, PAGE_SIZE, MemKind::RAM),
        Err(Stage2Error::IpaOutOfRange { .. })
    ));
    // Wrapping sizes are refused without overflow.
    assert!(matches!(
        b.map(0x4000_0000, 0x6100_0000, !0xfffu64, MemKind::RAM),
        Err(Stage2Error::IpaOutOfRange { .. })
    ));
    assert!(matches!(
        b.map(0x4000_0000, !0xfffu64, PAGE_SIZE, MemKind::RAM),
        Err(Stage2Error::PaOutOfRange { .. })
    ));
    let t = b.finish().unwrap();
    assert_eq!(t.translate(limit - 1).unwrap().pa, 0x6000_0fff);
}

#[test]
fn running_out_of_tables_changes_nothing() {
    let mut p = pool::<3>(0x7000_0000);
    let mut b = Stage2Builder::new(&mut *p, A72_PARANGE).unwrap();
    b.map(0x4020_0000, 0x6000_0000, 2 * BLOCK_SIZE, MemKind::RAM)
        .unwrap(); // needs the level-2 table: 2 of 3 used
    // Needs a level-3 table in this 1 GiB and a level-2 + level-3 in the next.
    let e = b
        .map(
            GIB - PAGE_SIZE,
            0x6100_0000 - PAGE_SIZE,
            2 * PAGE_SIZE,
            MemKind::RAM,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Stage2Error::OutOfTables {
            ipa: GIB - PAGE_SIZE,
            size: 2 * PAGE_SIZE,
            needed: 3,
            available: 1
        }
    );
    // Nothing was allocated or written.
    let t = b.finish().unwrap();
    assert_eq!(t.tables_used(), 2);
    assert!(t.translate(GIB - PAGE_SIZE).is_none());
    assert!(t.translate(GIB).is_none());
    assert_eq!(t.regions().len(), 1);
    assert_eq!(t.into_alloc().used(), 2);
}

#[test]
fn exactly_enough_tables_is_enough() {
    // Root, then a level-2 and a level-3 table on each side of 1 GiB.
    let mut b = Stage2Builder::new(pool::<5>(0x7000_0000), A72_PARANGE).unwrap();
    b.map(
        GIB - PAGE_SIZE,
        0x6100_0000 - PAGE_SIZE,
        2 * PAGE_SIZE,
        MemKind::RAM,
    )
    .unwrap();
    let t = b.finish().unwrap();
    assert_eq!(t.tables_used(), 5);
    check_pages(&t, GIB - 2 * PAGE_SIZE, GIB + 2 * PAGE_SIZE);
}

#[test]
fn too_many_regions() {
    let mut b = Stage2Builder::new(VecPool::new(8), A72_PARANGE).unwrap();
    for i in 0..MAX_REGIONS as u64 {
        b.map(
            0x4000_0000 + i * 2 * PAGE_SIZE,
            0x6000_0000 + i * 2 * PAGE_SIZE,
            PAGE_SIZE,
            MemKind::RAM,
        )
        .unwrap();
    }
    assert_eq!(
        b.map(0x5000_0000, 0x7000_0000, PAGE_SIZE, MemKind::RAM),
        Err(Stage2Error::TooManyRegions)
    );
}

#[test]
fn unbound_pool_is_reported() {
    let mut p: Box<TablePool<4>> = Box::default();
    let e = Stage2Builder::new(&mut *p, A72_PARANGE).unwrap_err();
    assert_eq!(e, Stage2Error::Alloc(AllocError::Unbound));
    assert!(e.to_string().contains("no physical address"));
}

#[test]
fn a_lying_allocator_poisons_the_builder() {
    let mut b = Stage2Builder::new(LyingPool(VecPool::new(8)), A72_PARANGE).unwrap();
    let e = b
        .map(0x4000_0000, 0x6000_0000, PAGE_SIZE, MemKind::RAM)
        .unwrap_err();
    assert_eq!(e, Stage2Error::Alloc(AllocError::Exhausted { capacity: 1 }));
    assert_eq!(
        b.map(0x5000_0000, 0x7000_0000, PAGE_SIZE, MemKind::RAM),
        Err(Stage2Error::Poisoned)
    );
    assert_eq!(b.finish().unwrap_err(), Stage2Error::Poisoned);
}

// ── The walker against hand-made tables ──────────────────────────────

/// Root at 0x1000, level 2 at 0x2000, level 3 at 0x3000; IPA 0x4000_0000.
fn hand_tables(l3_entry: u64) -> VecPool {
    let mut p = VecPool::new(3);
    p.tables.push((0x1000, Box::new([0; ENTRIES])));
    p.tables.push((0x2000, Box::new([0; ENTRIES])));
    p.tables.push((0x3000, Box::new([0; ENTRIES])));
    p.table_mut(0x1000).unwrap()[1] = table_desc(0x2000);
    p.table_mut(0x2000).unwrap()[0] = table_desc(0x3000);
    p.table_mut(0x3000).unwrap()[0] = l3_entry;
    p
}

#[test]
fn walker_reports_hardware_faults() {
    let good = leaf_desc(0x6000_0000, 3, MemKind::RAM);
    let p = hand_tables(good);
    assert_eq!(walk(&p, 0x1000, 40, 0x4000_0abc).unwrap().pa, 0x6000_0abc);

    let p = hand_tables(good & !DESC_AF);
    assert_eq!(
        walk(&p, 0x1000, 40, 0x4000_0000),
        Err(WalkFault::AccessFlag { level: 3 })
    );
    // 0b01 at level 3 is reserved: translation fault.
    let p = hand_tables(good & !DESC_TABLE);
    assert_eq!(
        walk(&p, 0x1000, 40, 0x4000_0000),
        Err(WalkFault::Translation { level: 3 })
    );
    // Output address beyond PS.
    let p = hand_tables(leaf_desc(1 << 40, 3, MemKind::RAM));
    assert_eq!(
        walk(&p, 0x1000, 40, 0x4000_0000),
        Err(WalkFault::AddressSize { level: 3 })
    );
    assert!(walk(&p, 0x1000, 42, 0x4000_0000).is_ok());
    // Next-table address beyond PS.
    let mut p = hand_tables(good);
    p.table_mut(0x1000).unwrap()[1] = table_desc(1 << 41);
    assert_eq!(
        walk(&p, 0x1000, 40, 0x4000_0000),
        Err(WalkFault::AddressSize { level: 1 })
    );
    // A table the allocator does not know.
    p.table_mut(0x1000).unwrap()[1] = table_desc(0x9000);
    assert_eq!(
        walk(&p, 0x1000, 40, 0x4000_0000),
        Err(WalkFault::MissingTable {
            level: 2,
            pa: 0x9000
        })
    );
    assert_eq!(
        WalkFault::MissingTable {
            level: 2,
            pa: 0x9000
        }
        .to_string(),
        "level-2 table at PA 0x9000 is not a table of this pool"
    );
    // A 1 GiB level-1 block is followed too.
    p.table_mut(0x1000).unwrap()[1] = leaf_desc(0x8000_0000, 1, MemKind::RAM);
    let t = walk(&p, 0x1000, 40, 0x4123_4567).unwrap();
    assert_eq!((t.pa, t.level, t.size), (0x8123_4567, 1, GIB));
}

// ── The pool ─────────────────────────────────────────────────────────

#[test]
fn pool_hands_out_consecutive_zeroed_tables() {
    let mut p = pool::<3>(0x8000_0000);
    assert_eq!(p.capacity(), 3);
    assert_eq!(p.alloc(), Ok(0x8000_0000));
    p.table_mut(0x8000_0000).unwrap()[7] = 42;
    assert_eq!(p.alloc(), Ok(0x8000_1000));
    assert_eq!(p.alloc(), Ok(0x8000_2000));
    assert_eq!(p.remaining(), 0);
    assert_eq!(p.alloc(), Err(AllocError::Exhausted { capacity: 3 }));
    assert_eq!(p.table(0x8000_0000).unwrap()[7], 42);
    // Unknown, unallocated and misaligned addresses are not tables.
    assert!(p.table(0x7fff_f000).is_none());
    assert!(p.table(0x8000_0800).is_none());
    assert!(p.table(0x8000_3000).is_none());
    p.reset();
    assert_eq!(p.used(), 0);
    assert!(p.table(0x8000_0000).is_none());
    assert_eq!(p.alloc(), Ok(0x8000_0000));
    assert_eq!(p.table(0x8000_0000).unwrap()[7], 0, "reset zeroes");
}

#[test]
fn pool_binding_rules() {
    let mut p: Box<TablePool<2>> = Box::default();
    assert_eq!(p.remaining(), 0);
    assert_eq!(p.alloc(), Err(AllocError::Unbound));
    assert_eq!(
        p.bind(0x8000_0800),
        Err(BindError::Misaligned {
            base_pa: 0x8000_0800
        })
    );
    assert!(matches!(p.bind(!0xfffu64), Err(BindError::Overflow { .. })));
    p.bind(0x8000_0000).unwrap();
    p.alloc().unwrap();
    assert_eq!(p.bind(0x9000_0000), Err(BindError::InUse { used: 1 }));
    assert_eq!(
        BindError::InUse { used: 1 }.to_string(),
        "cannot move a table pool while 1 of its tables are in use"
    );
    p.reset();
    p.bind_identity().unwrap();
    let base = p.base_pa().unwrap();
    assert_eq!(base % PAGE_SIZE, 0, "the pool type is 4 KiB aligned");
    assert_eq!(base, &*p as *const TablePool<2> as usize as u64);
}

#[test]
fn tables_give_the_pool_back() {
    let mut p = pool::<4>(0x7000_0000);
    let t = build_vm_tables(&mut *p, A72_PARANGE, 0, GUEST_RAM_SIZE).unwrap();
    let a = t.into_alloc();
    assert_eq!(a.used(), 2);
    a.reset();
    assert_eq!(p.used(), 0);
}

#[test]
fn error_messages_are_specific() {
    assert_eq!(
        Stage2Error::OutOfTables {
            ipa: 0x4000_0000,
            size: 0x1000,
            needed: 2,
            available: 1
        }
        .to_string(),
        "stage-2 mapping IPA 0x40000000+0x1000 needs 2 more translation table(s) but only 1 \
         are left in the pool"
    );
    assert_eq!(
        Stage2Error::ParangeReserved { parange: 9 }.to_string(),
        "ID_AA64MMFR0_EL1.PARange = 0x9 is a reserved encoding"
    );
    assert_eq!(
        Stage2Error::BadTableAddress {
            pa: 1 << 40,
            pa_bits: 40
        }
        .to_string(),
        "translation table at PA 0x10000000000 is not 4 KiB aligned or lies beyond the 40-bit \
         physical address space"
    );
    // Display never panics, whatever a caller puts in the fields.
    let _ = Stage2Error::PaOutOfRange {
        pa: u64::MAX,
        size: u64::MAX,
        pa_bits: 200,
    }
    .to_string();
    assert_eq!(
        WalkFault::IpaOutOfRange { ipa: 1 << 39 }.to_string(),
        "IPA 0x8000000000 is beyond the 39-bit guest-physical space"
    );
}
