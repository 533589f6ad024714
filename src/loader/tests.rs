//! Host tests: real-looking headers built here, plus a dtc-compiled fixture.
//!
//! Longer than 800 lines on purpose: the kernel-header and device-tree
//! builders at the top serve every test (placement, header checks, DTB
//! checks); one file keeps the fixtures next to all their uses.

use super::*;
use crate::platform::*;

const MIB: u64 = 1 << 20;
const RAM: GuestRam = GuestRam {
    base: RAM_BASE,
    size: GUEST_RAM_SIZE,
};

/// A dtc-compiled guest tree: memory 0x4000_0000+0x1000_0000, initramfs
/// 0x4800_0000..0x4810_0000 in /chosen (see testdata/guest.dts).
const FIXTURE: &[u8] = include_bytes!("testdata/guest.dtb.bin");

/// A kernel `Image` as Linux builds it: EFI "MZ" code0, text_offset 0,
/// flags = LE | 4K pages | anywhere, `len` bytes of file.
fn kernel(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
    let hdr = ImageHeader {
        code0: U32::new(0xfa40_5a4d), // "MZ" + add x13, x18, #0x16
        code1: U32::new(0x1480_0000), // b primary_entry
        text_offset: U64::new(text_offset),
        image_size: U64::new(image_size),
        flags: U64::new(flags),
        res2: U64::new(0),
        res3: U64::new(0),
        res4: U64::new(0),
        magic: U32::new(IMAGE_MAGIC),
        res5: U32::new(0x40),
    };
    let mut v = hdr.as_bytes().to_vec();
    v.resize(len.max(IMAGE_HEADER_SIZE), 0xaa);
    v.truncate(len);
    v
}

/// A typical 6.1 arm64 kernel: 30 MiB file, 32 MiB image_size.
fn linux() -> Vec<u8> {
    kernel(0, 32 * MIB, 0b1010, 30 * MIB as usize)
}

/// Minimal FDT writer (version 17) for building test trees.
#[derive(Default)]
struct Fdt {
    structs: Vec<u8>,
    strings: Vec<u8>,
}

impl Fdt {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.structs.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn pad(&mut self) {
        while self.structs.len() % 4 != 0 {
            self.structs.push(0);
        }
    }
    fn begin(&mut self, name: &str) -> &mut Self {
        self.u32(1);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self
    }
    fn end(&mut self) -> &mut Self {
        self.u32(2)
    }
    fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let off = match self
            .strings
            .windows(name.len() + 1)
            .position(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
        {
            Some(o) => o,
            None => {
                let o = self.strings.len();
                self.strings.extend_from_slice(name.as_bytes());
                self.strings.push(0);
                o
            }
        };
        self.u32(3).u32(value.len() as u32).u32(off as u32);
        self.structs.extend_from_slice(value);
        self.pad();
        self
    }
    fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &v)
    }
    fn finish(&mut self) -> Vec<u8> {
        self.u32(9);
        let off_struct = 40 + 16;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut v = Vec::new();
        for f in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            40,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            v.extend_from_slice(&f.to_be_bytes());
        }
        v.extend_from_slice(&[0; 16]); // empty memory reservation map
        v.extend_from_slice(&self.structs);
        v.extend_from_slice(&self.strings);
        v
    }
}

/// A guest tree with `mem` bytes of RAM and optionally an initramfs.
fn tree(mem: u64, initrd: Option<(u64, u64)>) -> Vec<u8> {
    let mut f = Fdt::default();
    f.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .prop("compatible", b"linux,dummy-virt\0");
    f.begin("memory@40000000")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, RAM_BASE as u32, (mem >> 32) as u32, mem as u32])
        .end();
    f.begin("chosen").prop("bootargs", b"console=ttyAMA0\0");
    if let Some((s, e)) = initrd {
        f.cells("linux,initrd-start", &[(s >> 32) as u32, s as u32])
            .cells("linux,initrd-end", &[(e >> 32) as u32, e as u32]);
    }
    f.end();
    f.begin("pl011@9000000")
        .cells("reg", &[0, 0x0900_0000, 0, 0x1000])
        .end();
    f.end().finish()
}

fn plan(kernel: &[u8], initrd: Option<&[u8]>, dtb: &[u8]) -> Result<BootPlan, LoadError> {
    BootPlan::new(
        RAM,
        &StagedImages {
            kernel,
            initrd,
            dtb,
        },
    )
}

// ── The Image header ─────────────────────────────────────────────────

#[test]
fn header_layout_matches_booting_rst() {
    let k = kernel(0x1234, 0x5678, 0x9, 64);
    assert_eq!(
        &k[0x08..0x10],
        &0x1234u64.to_le_bytes(),
        "text_offset @0x08"
    );
    assert_eq!(&k[0x10..0x18], &0x5678u64.to_le_bytes(), "image_size @0x10");
    assert_eq!(&k[0x18..0x20], &0x9u64.to_le_bytes(), "flags @0x18");
    assert_eq!(&k[0x38..0x3c], b"ARM\x64", "magic @0x38");
}

#[test]
fn modern_kernel_header_is_parsed() {
    let k = parse_kernel(&linux()).unwrap();
    assert_eq!(
        k,
        KernelImage {
            text_offset: 0,
            image_size: 32 * MIB,
            file_size: 30 * MIB,
            page_size: PageSize::K4,
            phys_anywhere: true,
        }
    );
    assert_eq!(k.footprint(), 32 * MIB);
    let k = parse_kernel(&kernel(0x8_0000, MIB, 0b0110, 4096)).unwrap();
    assert_eq!(k.page_size, PageSize::K64);
    assert!(!k.phys_anywhere);
    assert_eq!(k.text_offset, 0x8_0000);
    assert_eq!(
        parse_kernel(&kernel(0, MIB, 0b0100, 64)).unwrap().page_size,
        PageSize::K16
    );
    assert_eq!(
        parse_kernel(&kernel(0, MIB, 0, 64)).unwrap().page_size,
        PageSize::Unspecified
    );
}

#[test]
fn zero_image_size_means_legacy_text_offset() {
    // Pre-v3.17: text_offset of unknown endianness, image_size 0.
    let k = parse_kernel(&kernel(0x0000_0800_0000_0000, 0, 0, 8 * MIB as usize)).unwrap();
    assert_eq!(k.text_offset, 0x8_0000);
    assert_eq!(k.image_size, 0);
    assert_eq!(k.footprint(), 8 * MIB, "the file size is all we know");
    let p = plan(
        &kernel(0, 0, 0, 8 * MIB as usize),
        None,
        &tree(GUEST_RAM_SIZE, None),
    )
    .unwrap();
    assert_eq!(p.kernel_gpa, GUEST_KERNEL_GPA + 0x8_0000);
}

#[test]
fn bad_magic_suggests_what_the_file_is() {
    let mut k = linux();
    k[0x38..0x3c].copy_from_slice(b"ARM\x65");
    let e = parse_kernel(&k).unwrap_err();
    assert_eq!(
        e,
        LoadError::KernelBadMagic {
            magic: 0x654d_5241,
            looks_like: None
        }
    );
    assert_eq!(
        e.to_string(),
        "kernel Image: bad magic 0x654d5241 at offset 0x38 (expected 'ARMd' = 0x644d5241); is \
         this a compressed vmlinuz?"
    );

    let mut gz = vec![0x1f, 0x8b, 0x08, 0x00];
    gz.resize(4096, 0x55);
    let msg = parse_kernel(&gz).unwrap_err().to_string();
    assert!(
        msg.contains("gzip-compressed kernel (vmlinuz / Image.gz)"),
        "{msg}"
    );

    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(4096, 0);
    let msg = parse_kernel(&elf).unwrap_err().to_string();
    assert!(msg.contains("ELF vmlinux"), "{msg}");

    let msg = parse_kernel(&[0u8; 4096]).unwrap_err().to_string();
    assert!(msg.contains("all zeros: was the kernel staged"), "{msg}");
}

#[test]
fn big_endian_kernels_are_refused() {
    let e = parse_kernel(&kernel(0, 32 * MIB, 0b1011, 4096)).unwrap_err();
    assert_eq!(e, LoadError::KernelBigEndian { flags: 0b1011 });
    assert!(e.to_string().contains("flags 0xb mark a big-endian kernel"));
}

#[test]
fn truncated_headers_are_refused_without_panicking() {
    let full = linux();
    for len in [0, 1, 8, 0x38, 63] {
        assert_eq!(
            parse_kernel(&full[..len]),
            Err(LoadError::KernelTruncated { staged: len as u64 })
        );
    }
    assert!(parse_kernel(&full[..64]).is_ok());
    assert_eq!(
        parse_kernel(&full[..10]).unwrap_err().to_string(),
        "kernel Image: only 10 bytes staged, the arm64 Image header needs 64"
    );
}

#[test]
fn image_size_must_end_below_the_dtb() {
    let room = GUEST_DTB_GPA - GUEST_KERNEL_GPA; // 0x7c0_0000
    let dtb = tree(GUEST_RAM_SIZE, None);
    assert!(plan(&kernel(0, room, 0b1010, 4096), None, &dtb).is_ok());
    let e = plan(&kernel(0, room + 1, 0b1010, 4096), None, &dtb).unwrap_err();
    assert_eq!(
        e,
        LoadError::KernelTooLarge {
            kernel_gpa: GUEST_KERNEL_GPA,
            image_size: room + 1,
            file_size: 4096,
            dtb_gpa: GUEST_DTB_GPA
        }
    );
    assert_eq!(
        e.to_string(),
        "kernel Image: image_size 0x7c00001 exceeds the 0x7c00000 bytes available below the DTB \
         at 0x47e00000 (Image placed at 0x40200000)"
    );
    // text_offset counts too, and absurd values cannot overflow.
    assert!(matches!(
        plan(&kernel(0x8_0000, room, 0b1010, 4096), None, &dtb),
        Err(LoadError::KernelTooLarge { .. })
    ));
    assert!(matches!(
        plan(&kernel(u64::MAX, 1, 0, 4096), None, &dtb),
        Err(LoadError::KernelTooLarge { .. })
    ));
    assert!(matches!(
        plan(&kernel(0, u64::MAX, 0, 4096), None, &dtb),
        Err(LoadError::KernelTooLarge { .. })
    ));
    // A legacy kernel is measured by its file.
    let e = plan(&kernel(0, 0, 0, room as usize), None, &dtb).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("kernel Image: file size 0x7c00000 exceeds the 0x7b80000 bytes"),
        "{e}"
    );
}

#[test]
fn a_file_longer_than_image_size_is_placed_by_file_size() {
    // E.g. an appended signature.
    let k = kernel(0, MIB, 0b1010, 2 * MIB as usize);
    assert_eq!(parse_kernel(&k).unwrap().footprint(), 2 * MIB);
    let p = plan(&k, None, &tree(GUEST_RAM_SIZE, None)).unwrap();
    assert_eq!(p.kernel_end(), GUEST_KERNEL_GPA + 2 * MIB);
}

// ── The plan ─────────────────────────────────────────────────────────

#[test]
fn standard_boot_plan() {
    let initrd = vec![0x30u8; MIB as usize];
    let p = plan(&linux(), Some(&initrd), FIXTURE).unwrap();
    assert_eq!(p.kernel_base, 0x4020_0000);
    assert_eq!(p.kernel_gpa, 0x4020_0000);
    assert_eq!(p.entry(), 0x4020_0000);
    assert_eq!(p.kernel_end(), 0x4220_0000);
    assert_eq!(p.dtb_gpa, 0x47e0_0000);
    assert_eq!(p.x0(), 0x47e0_0000);
    assert_eq!(p.x0() % 8, 0);
    assert_eq!(p.dtb_size, FIXTURE.len() as u64);
    assert_eq!(p.initrd, Some((0x4800_0000, MIB)));
    assert_eq!(p.dtb.memory(), &[(0x4000_0000, 0x1000_0000)]);
    // Each VM's error names the VM.
    let e = plan_boot(
        2,
        RAM,
        &StagedImages {
            kernel: &linux(),
            initrd: None,
            dtb: FIXTURE,
        },
    )
    .unwrap_err();
    assert_eq!(e.vm, 2);
    assert!(
        e.to_string()
            .starts_with("VM 2: device tree: /chosen names")
    );
}

#[test]
fn text_offset_0x80000_kernels_are_placed_above_the_base() {
    let k = kernel(0x8_0000, 20 * MIB, 0b0010, 4096);
    let p = plan(&k, None, &tree(GUEST_RAM_SIZE, None)).unwrap();
    assert_eq!(p.kernel_base, GUEST_KERNEL_GPA);
    assert_eq!(p.entry(), GUEST_KERNEL_GPA + 0x8_0000);
}

#[test]
fn initrd_must_leave_headroom() {
    // 0x4800_0000 up to 0x5000_0000 - 32 MiB = 0x4e00_0000: 0x600_0000 bytes.
    let max = 0x600_0000u64;
    let fits = vec![0u8; max as usize];
    let end = GUEST_INITRD_GPA + max;
    let dtb = tree(GUEST_RAM_SIZE, Some((GUEST_INITRD_GPA, end)));
    assert_eq!(
        plan(&linux(), Some(&fits), &dtb).unwrap().initrd,
        Some((GUEST_INITRD_GPA, max))
    );
    let big = vec![0u8; max as usize + 1];
    let dtb = tree(GUEST_RAM_SIZE, Some((GUEST_INITRD_GPA, end + 1)));
    let e = plan(&linux(), Some(&big), &dtb).unwrap_err();
    assert_eq!(
        e,
        LoadError::InitrdTooLarge {
            size: max + 1,
            gpa: GUEST_INITRD_GPA,
            ram_end: 0x5000_0000
        }
    );
    assert_eq!(
        e.to_string(),
        "initramfs (100663297 bytes, 0x6000001) does not fit in guest RAM: placed at \
         0x48000000 it must end 0x2000000 bytes (32 MiB, room for the kernel to unpack it) \
         below the end of RAM at 0x50000000, so at most 0x6000000 bytes fit"
    );
}

#[test]
fn empty_initrd_is_refused() {
    assert_eq!(
        plan(&linux(), Some(&[]), &tree(GUEST_RAM_SIZE, None)),
        Err(LoadError::InitrdEmpty)
    );
}

#[test]
fn ram_too_small_for_the_fixed_layout() {
    let small = GuestRam {
        base: RAM_BASE,
        size: 64 * MIB,
    };
    let e = BootPlan::new(
        small,
        &StagedImages {
            kernel: &linux(),
            initrd: None,
            dtb: &tree(64 * MIB, None),
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "guest RAM 0x40000000..0x44000000 does not hold the fixed boot layout, which needs \
         0x40200000..0x48000000 (use mem >= 0x8000000)"
    );
    // 128 MiB holds kernel and DTB, but an initramfs would not fit.
    let ram128 = GuestRam {
        base: RAM_BASE,
        size: 128 * MIB,
    };
    let ok = BootPlan::new(
        ram128,
        &StagedImages {
            kernel: &linux(),
            initrd: None,
            dtb: &tree(128 * MIB, None),
        },
    );
    assert!(ok.is_ok());
    let e = BootPlan::new(
        ram128,
        &StagedImages {
            kernel: &linux(),
            initrd: Some(&[1, 2, 3]),
            dtb: &tree(128 * MIB, Some((GUEST_INITRD_GPA, GUEST_INITRD_GPA + 3))),
        },
    )
    .unwrap_err();
    assert!(matches!(e, LoadError::InitrdTooLarge { .. }));
    // Overflowing RAM.
    let e = BootPlan::new(
        GuestRam {
            base: u64::MAX,
            size: 2,
        },
        &StagedImages {
            kernel: &linux(),
            initrd: None,
            dtb: FIXTURE,
        },
    )
    .unwrap_err();
    assert_eq!(
        e,
        LoadError::RamInvalid {
            base: u64::MAX,
            size: 2
        }
    );
}

// ── Device tree ──────────────────────────────────────────────────────

#[test]
fn dtc_compiled_fixture_is_understood() {
    let info = check_dtb(FIXTURE).unwrap();
    assert_eq!(info.version, 17);
    assert_eq!(info.totalsize as usize, FIXTURE.len());
    assert_eq!(info.memory(), &[(0x4000_0000, 0x1000_0000)]);
    assert_eq!(info.initrd, Some((0x4800_0000, 0x4810_0000)));
    // The staged region is usually larger than the blob.
    let mut padded = FIXTURE.to_vec();
    padded.resize(0x10_0000, 0);
    assert_eq!(check_dtb(&padded).unwrap(), info);
}

#[test]
fn test_writer_matches_dtc() {
    // Our writer produces what dtc would accept (checked with dtc once) and
    // what the parser reads back.
    let info = check_dtb(&tree(GUEST_RAM_SIZE, Some((0x4800_0000, 0x4900_0000)))).unwrap();
    assert_eq!(info.memory(), &[(RAM_BASE, GUEST_RAM_SIZE)]);
    assert_eq!(info.initrd, Some((0x4800_0000, 0x4900_0000)));
}

#[test]
fn dtb_bad_magic() {
    let mut d = FIXTURE.to_vec();
    d[0] = 0xde;
    let e = check_dtb(&d).unwrap_err();
    assert_eq!(e, LoadError::DtbBadMagic { magic: 0xde0d_feed });
    assert_eq!(
        e.to_string(),
        "device tree: bad magic 0xde0dfeed at offset 0 (expected 0xd00dfeed)"
    );
    d[..4].copy_from_slice(&FDT_MAGIC.to_le_bytes());
    assert!(
        check_dtb(&d)
            .unwrap_err()
            .to_string()
            .ends_with("byte-swapped")
    );
    let msg = check_dtb(&[0u8; 4096]).unwrap_err().to_string();
    assert!(
        msg.ends_with("was the DTB staged at the configured address?"),
        "{msg}"
    );
    // Display never panics on extreme field values.
    let _ = LoadError::KernelTooLarge {
        kernel_gpa: u64::MAX,
        image_size: u64::MAX,
        file_size: 0,
        dtb_gpa: 0,
    }
    .to_string();
    let _ = LoadError::RamTooSmall {
        ram_base: u64::MAX,
        ram_end: 0,
        need_start: 0,
        need_end: 0,
    }
    .to_string();
    assert_eq!(
        LoadError::DtbBadMagic { magic: 1 }.in_vm(1).to_string(),
        "VM 1: (dtb1) device tree: bad magic 0x00000001 at offset 0 (expected 0xd00dfeed)"
    );
}

#[test]
fn dtb_truncated() {
    for len in [0, 4, 39] {
        assert_eq!(
            check_dtb(&FIXTURE[..len]),
            Err(LoadError::DtbTruncated {
                staged: len as u64,
                needed: 40
            })
        );
    }
    let short = &FIXTURE[..FIXTURE.len() - 1];
    let e = check_dtb(short).unwrap_err();
    assert_eq!(
        e,
        LoadError::DtbTruncated {
            staged: FIXTURE.len() as u64 - 1,
            needed: FIXTURE.len() as u64
        }
    );
    assert_eq!(
        e.to_string(),
        "device tree: truncated, 0x55b bytes staged but 0x55c needed"
    );
    // Every prefix fails cleanly.
    for len in 0..FIXTURE.len() {
        assert!(check_dtb(&FIXTURE[..len]).is_err());
    }
}

#[test]
fn dtb_too_big() {
    let mut d = FIXTURE.to_vec();
    d[4..8].copy_from_slice(&(GUEST_DTB_MAX as u32 + 1).to_be_bytes());
    d.resize(GUEST_DTB_MAX as usize + 1, 0);
    let e = check_dtb(&d).unwrap_err();
    assert_eq!(
        e,
        LoadError::DtbTooLarge {
            totalsize: 0x20_0001
        }
    );
    assert_eq!(
        e.to_string(),
        "device tree: totalsize 0x200001 exceeds the 0x200000-byte maximum"
    );
}

#[test]
fn dtb_version_checks() {
    let mut d = FIXTURE.to_vec();
    d[20..24].copy_from_slice(&15u32.to_be_bytes());
    assert_eq!(
        check_dtb(&d),
        Err(LoadError::DtbBadVersion {
            version: 15,
            last_comp_version: 16
        })
    );
    let mut d = FIXTURE.to_vec();
    d[24..28].copy_from_slice(&18u32.to_be_bytes());
    let e = check_dtb(&d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "device tree: version 17 (compatible back to 18) is not supported; need version >= 16 \
         compatible with 17"
    );
}

#[test]
fn dtb_block_layout_checks() {
    let field =
        |d: &mut Vec<u8>, off: usize, v: u32| d[off..off + 4].copy_from_slice(&v.to_be_bytes());
    let total = FIXTURE.len() as u32;
    // Structure block running past totalsize.
    let mut d = FIXTURE.to_vec();
    field(&mut d, 36, total);
    let e = check_dtb(&d).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::DtbBadLayout {
                block: "structure",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("structure block at offset 0x38"));
    // Strings offset overflowing u32 arithmetic.
    let mut d = FIXTURE.to_vec();
    field(&mut d, 12, u32::MAX);
    assert!(matches!(
        check_dtb(&d),
        Err(LoadError::DtbBadLayout {
            block: "strings",
            ..
        })
    ));
    // Misaligned reservation map, and one overlapping the header.
    let mut d = FIXTURE.to_vec();
    field(&mut d, 16, 0x2c);
    assert!(matches!(
        check_dtb(&d),
        Err(LoadError::DtbBadLayout {
            block: "memory reservation",
            ..
        })
    ));
    let mut d = FIXTURE.to_vec();
    field(&mut d, 16, 0x8);
    assert!(matches!(
        check_dtb(&d),
        Err(LoadError::DtbBadLayout {
            block: "memory reservation",
            ..
        })
    ));
}

#[test]
fn dtb_structure_checks() {
    // Missing FDT_END: drop the final token by shrinking the struct block.
    let mut f = Fdt::default();
    f.begin("").end();
    let mut d = f.finish();
    let size = u32::from_be_bytes(d[36..40].try_into().unwrap());
    d[36..40].copy_from_slice(&(size - 4).to_be_bytes());
    let e = check_dtb(&d).unwrap_err();
    assert_eq!(
        e,
        LoadError::DtbBadStructure {
            offset: 0x38 + 12,
            what: "structure block ends without FDT_END"
        }
    );
    assert_eq!(
        e.to_string(),
        "device tree: malformed structure block at offset 0x44: structure block ends without \
         FDT_END"
    );
    // Unknown token.
    let mut f = Fdt::default();
    f.begin("").u32(7).end();
    assert!(matches!(
        check_dtb(&f.finish()),
        Err(LoadError::DtbBadStructure {
            what: "unknown token",
            ..
        })
    ));
    // END inside an open node, END_NODE with no node, property outside nodes.
    let mut f = Fdt::default();
    f.begin("");
    assert!(matches!(
        check_dtb(&f.finish()),
        Err(LoadError::DtbBadStructure {
            what: "FDT_END inside an open node",
            ..
        })
    ));
    let mut f = Fdt::default();
    f.end();
    assert!(check_dtb(&f.finish()).is_err());
    let mut f = Fdt::default();
    f.prop("x", b"");
    assert!(check_dtb(&f.finish()).is_err());
    // A property whose length runs off the block.
    let mut f = Fdt::default();
    f.begin("").u32(3).u32(0x7fff_ffff).u32(0).end();
    assert!(matches!(
        check_dtb(&f.finish()),
        Err(LoadError::DtbBadStructure {
            what: "property value runs past the structure block",
            ..
        })
    ));
    // A property name offset outside the strings block.
    let mut f = Fdt::default();
    f.begin("").u32(3).u32(0).u32(0x1000).end();
    assert!(check_dtb(&f.finish()).is_err());
}

#[test]
fn random_corruption_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let header = kernel(0, 32 * MIB, 0b1010, 256);
    for _ in 0..3000 {
        let mut d = FIXTURE.to_vec();
        for _ in 0..1 + rnd(4) {
            let i = rnd(d.len());
            d[i] = rnd(256) as u8;
        }
        let _ = check_dtb(&d);
        let mut k = header.clone();
        let i = rnd(64);
        k[i] = rnd(256) as u8;
        let _ = parse_kernel(&k);
    }
}

#[test]
fn dtb_memory_must_lie_in_guest_ram() {
    let e = plan(&linux(), None, &tree(GUEST_RAM_SIZE + MIB, None)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "device tree: /memory range 0x40000000+0x10100000 reaches outside guest RAM \
         0x40000000..0x50000000 (does the tree match the configured mem?)"
    );
    // A tree describing less RAM than the layout needs.
    let e = plan(&linux(), None, &tree(64 * MIB, None)).unwrap_err();
    assert_eq!(
        e,
        LoadError::DtbMemoryMissesImages {
            start: 0x4020_0000,
            end: GUEST_DTB_GPA + tree(64 * MIB, None).len() as u64
        }
    );
    // No memory node at all.
    let mut f = Fdt::default();
    f.begin("").begin("chosen").end().end();
    assert_eq!(
        plan(&linux(), None, &f.finish()),
        Err(LoadError::DtbNoMemory)
    );
    // A memory@ node without device_type is not memory (Linux ignores it).
    let mut f = Fdt::default();
    f.begin("")
        .begin("memory@40000000")
        .cells("reg", &[0, RAM_BASE as u32, 0, GUEST_RAM_SIZE as u32])
        .end()
        .end();
    assert_eq!(
        plan(&linux(), None, &f.finish()),
        Err(LoadError::DtbNoMemory)
    );
}

#[test]
fn dtb_cells_and_ranges() {
    // One-cell addresses and sizes, two ranges.
    let mut f = Fdt::default();
    f.begin("")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1])
        .begin("memory")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0x4000_0000, 0x0800_0000, 0x4800_0000, 0x0800_0000])
        .end()
        .end();
    let info = check_dtb(&f.finish()).unwrap();
    assert_eq!(
        info.memory(),
        &[(0x4000_0000, 0x800_0000), (0x4800_0000, 0x800_0000)]
    );
    // Defaults when the root has no cell sizes: 2 address, 1 size cell.
    let mut f = Fdt::default();
    f.begin("")
        .begin("memory@0")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0x4000_0000, 0x1000_0000])
        .end()
        .end();
    assert_eq!(
        check_dtb(&f.finish()).unwrap().memory(),
        &[(0x4000_0000, 0x1000_0000)]
    );
    // A reg that is not a whole number of (address, size) pairs.
    let mut f = Fdt::default();
    f.begin("")
        .begin("memory@0")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0x4000_0000, 0, 0x1000]) // 4 cells, pairs are 3
        .end()
        .end();
    let e = check_dtb(&f.finish()).unwrap_err();
    assert!(e.to_string().contains("/memory reg"), "{e}");
    // Unsupported cell counts.
    let mut f = Fdt::default();
    f.begin("")
        .cells("#address-cells", &[3])
        .begin("memory@0")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0, 0x4000_0000, 0x1000_0000])
        .end()
        .end();
    assert!(check_dtb(&f.finish()).is_err());
    // Nested memory-named nodes are not /memory.
    let mut f = Fdt::default();
    f.begin("")
        .begin("soc")
        .begin("memory@0")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0x4000_0000, 0x1000_0000])
        .end()
        .end()
        .end();
    assert!(check_dtb(&f.finish()).unwrap().memory().is_empty());
}

#[test]
fn dtb_chosen_initrd_must_match_the_staged_one() {
    let initrd = vec![7u8; 0x1234];
    let end = GUEST_INITRD_GPA + 0x1234;
    // Matching: fine, 32-bit cells too.
    assert!(
        plan(
            &linux(),
            Some(&initrd),
            &tree(GUEST_RAM_SIZE, Some((GUEST_INITRD_GPA, end)))
        )
        .is_ok()
    );
    let mut f = Fdt::default();
    f.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .begin("memory@40000000")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, RAM_BASE as u32, 0, GUEST_RAM_SIZE as u32])
        .end()
        .begin("chosen")
        .cells("linux,initrd-start", &[GUEST_INITRD_GPA as u32])
        .cells("linux,initrd-end", &[end as u32])
        .end()
        .end();
    assert!(plan(&linux(), Some(&initrd), &f.finish()).is_ok());

    // Stale DTB (initramfs rebuilt, DTB not).
    let e = plan(&linux(), Some(&initrd), FIXTURE).unwrap_err();
    assert_eq!(
        e,
        LoadError::DtbInitrdMismatch {
            dtb_start: 0x4800_0000,
            dtb_end: 0x4810_0000,
            start: 0x4800_0000,
            end
        }
    );
    assert_eq!(
        e.to_string(),
        "device tree: /chosen linux,initrd-start/end = 0x48000000..0x48100000 but the initramfs \
         is placed at 0x48000000..0x48001234 (regenerate the DTB for this initramfs)"
    );
    // Named but not staged.
    assert_eq!(
        plan(&linux(), None, FIXTURE),
        Err(LoadError::DtbInitrdNotStaged {
            dtb_start: 0x4800_0000,
            dtb_end: 0x4810_0000
        })
    );
    // Staged but not named.
    let e = plan(&linux(), Some(&initrd), &tree(GUEST_RAM_SIZE, None)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "initramfs: placed at 0x48000000..0x48001234 but the device tree's /chosen has no \
         linux,initrd-start/end, so the kernel would ignore it"
    );
    // Half a pair, reversed pair, odd sizes.
    let chosen = |props: &[(&str, &[u32])]| {
        let mut f = Fdt::default();
        f.begin("").begin("chosen");
        for (n, v) in props {
            f.cells(n, v);
        }
        f.end().end();
        check_dtb(&f.finish())
    };
    assert!(chosen(&[("linux,initrd-start", &[0x4800_0000])]).is_err());
    assert!(chosen(&[("linux,initrd-end", &[0x4800_0000])]).is_err());
    assert!(
        chosen(&[
            ("linux,initrd-start", &[0x4900_0000]),
            ("linux,initrd-end", &[0x4800_0000])
        ])
        .is_err()
    );
    assert!(
        chosen(&[
            ("linux,initrd-start", &[0, 0, 0x4800_0000]),
            ("linux,initrd-end", &[0x4900_0000])
        ])
        .is_err()
    );
}

// ── Copying into guest RAM ───────────────────────────────────────────

fn guest_ram() -> GuestMemory {
    GuestMemory::from_static(
        RAM_BASE,
        Box::leak(vec![0u8; GUEST_RAM_SIZE as usize].into_boxed_slice()),
    )
}

#[test]
fn load_into_copies_each_image_to_its_place() {
    let k = kernel(0, 4 * MIB, 0b1010, 3 * MIB as usize + 5);
    let initrd: Vec<u8> = (0..MIB as usize).map(|i| i as u8).collect();
    let mut dtb = FIXTURE.to_vec();
    dtb.resize(0x10_0000, 0xee); // staged region longer than the blob
    let images = StagedImages {
        kernel: &k,
        initrd: Some(&initrd),
        dtb: &dtb,
    };
    let p = BootPlan::new(RAM, &images).unwrap();
    let mem = guest_ram();
    p.load_into(&mem, &images).unwrap();

    let mut got = vec![0u8; k.len()];
    mem.read(p.kernel_gpa, &mut got).unwrap();
    assert_eq!(got, k);
    let mut got = vec![0u8; FIXTURE.len() + 1];
    mem.read(p.dtb_gpa, &mut got).unwrap();
    assert_eq!(&got[..FIXTURE.len()], FIXTURE);
    assert_eq!(got[FIXTURE.len()], 0, "only totalsize bytes copied");
    let mut got = vec![0u8; initrd.len()];
    mem.read(GUEST_INITRD_GPA, &mut got).unwrap();
    assert_eq!(got, initrd);
    assert_eq!(mem.read_obj::<u8>(RAM_BASE).unwrap(), 0);
}

#[test]
fn load_into_refuses_other_images_and_small_memory() {
    let k = linux();
    let initrd = vec![1u8; MIB as usize];
    let images = StagedImages {
        kernel: &k,
        initrd: Some(&initrd),
        dtb: FIXTURE,
    };
    let p = BootPlan::new(RAM, &images).unwrap();
    let other = StagedImages {
        kernel: &k[..k.len() - 1],
        ..images
    };
    let e = p.load_into(&guest_ram(), &other).unwrap_err();
    assert_eq!(
        e.to_string(),
        "kernel Image: planned with 0x1e00000 bytes but 0x1dfffff bytes given to load"
    );
    let other = StagedImages {
        initrd: None,
        ..images
    };
    assert!(matches!(
        p.load_into(&guest_ram(), &other),
        Err(LoadError::StagedChanged {
            what: "initramfs",
            ..
        })
    ));
    let other = StagedImages {
        dtb: &FIXTURE[..10],
        ..images
    };
    assert!(p.load_into(&guest_ram(), &other).is_err());
    // Guest memory smaller than the plan's RAM.
    let small = GuestMemory::from_static(
        RAM_BASE,
        Box::leak(vec![0u8; 0x800_0000].into_boxed_slice()),
    );
    let e = p.load_into(&small, &images).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::Memory {
                what: "initramfs",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("initramfs: copying into guest RAM failed: guest range")
    );
}
