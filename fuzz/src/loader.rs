//! Target `loader`: the arm64 `Image` header, the device tree blob and the
//! boot plan. Kernels and device trees are built from fuzzed fields (magic,
//! offsets, sizes, flags; memory ranges, `/chosen` initramfs bounds) and
//! then optionally damaged byte by byte. Every error formats; an accepted
//! plan keeps the kernel footprint, the device tree and the initramfs
//! inside RAM, apart from each other, the kernel 2 MiB-aligned plus its
//! text offset, and the device tree's memory covering all of them; loading
//! it copies exactly the staged bytes to those places and nothing around
//! them.

use arbitrary::Arbitrary;
use hypervisor::loader::{BootPlan, GuestRam, StagedImages, check_dtb, parse_kernel};
use hypervisor::platform::{GUEST_INITRD_GPA, RAM_BASE};

use crate::mem::{OwnedRam, overlaps};

const RAM_SIZE: u64 = 256 << 20;

/// The kernel's header fields.
#[derive(Arbitrary, Debug)]
pub struct KernelSpec {
    /// Correct magic?
    pub magic: bool,
    /// text_offset.
    pub text_offset: u32,
    /// image_size (None: 0, a legacy kernel; Some: file size + this).
    pub image_size: Option<u32>,
    /// flags.
    pub flags: u8,
    /// File length (at least a header when the magic is right).
    pub len: u16,
}

/// The device tree's fields.
#[derive(Arbitrary, Debug)]
pub struct DtbSpec {
    /// `/memory` ranges (offset from RAM_BASE, size), up to 3.
    pub memory: Vec<(u32, u32)>,
    /// `/chosen` initramfs bounds: None, matching the staged one, or any.
    pub initrd: Option<Option<(u64, u64)>>,
    /// `#address-cells`, `#size-cells` = 1 instead of 2.
    pub narrow: bool,
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Kernel.
    pub kernel: KernelSpec,
    /// Device tree, or raw bytes.
    pub dtb: Result<DtbSpec, Vec<u8>>,
    /// Initramfs length.
    pub initrd: Option<u16>,
    /// RAM size in MiB (None: 256).
    pub ram_mib: Option<u16>,
    /// Damage: (position, xor) pairs applied to the kernel (even) or the
    /// device tree (odd).
    pub damage: Vec<(u16, u8)>,
}

fn kernel(spec: &KernelSpec) -> Vec<u8> {
    let len = usize::from(spec.len).max(if spec.magic { 64 } else { 0 });
    let mut k = vec![0xa5u8; len];
    if len >= 64 {
        k[0..8].fill(0);
        k[8..16].copy_from_slice(&u64::from(spec.text_offset).to_le_bytes());
        let size = spec.image_size.map_or(0, |s| len as u64 + u64::from(s));
        k[16..24].copy_from_slice(&size.to_le_bytes());
        k[24..32].copy_from_slice(&u64::from(spec.flags).to_le_bytes());
        k[32..56].fill(0);
        if spec.magic {
            k[56..60].copy_from_slice(b"ARM\x64");
        }
    }
    k
}

/// A flattened device tree with a root, `/memory` and `/chosen`.
fn dtb(spec: &DtbSpec, initrd: Option<(u64, u64)>) -> Vec<u8> {
    let mut strings: Vec<u8> = Vec::new();
    let mut name = |s: &str| {
        let off = strings.len() as u32;
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        off
    };
    let (ac, sc) = if spec.narrow { (1u32, 1u32) } else { (2, 2) };
    let mut st: Vec<u8> = Vec::new();
    let be = |st: &mut Vec<u8>, v: u32| st.extend_from_slice(&v.to_be_bytes());
    let node = |st: &mut Vec<u8>, n: &str| {
        st.extend_from_slice(&1u32.to_be_bytes());
        st.extend_from_slice(n.as_bytes());
        st.push(0);
        while !st.len().is_multiple_of(4) {
            st.push(0);
        }
    };
    let prop = |st: &mut Vec<u8>, nameoff: u32, value: &[u8]| {
        st.extend_from_slice(&3u32.to_be_bytes());
        st.extend_from_slice(&(value.len() as u32).to_be_bytes());
        st.extend_from_slice(&nameoff.to_be_bytes());
        st.extend_from_slice(value);
        while !st.len().is_multiple_of(4) {
            st.push(0);
        }
    };
    let cells = |v: u64, n: u32| -> Vec<u8> {
        if n == 1 {
            (v as u32).to_be_bytes().to_vec()
        } else {
            v.to_be_bytes().to_vec()
        }
    };
    let n_ac = name("#address-cells");
    let n_sc = name("#size-cells");
    let n_dt = name("device_type");
    let n_reg = name("reg");
    let n_is = name("linux,initrd-start");
    let n_ie = name("linux,initrd-end");
    node(&mut st, "");
    prop(&mut st, n_ac, &ac.to_be_bytes());
    prop(&mut st, n_sc, &sc.to_be_bytes());
    for (i, &(off, size)) in spec.memory.iter().take(3).enumerate() {
        node(&mut st, &format!("memory@{i}"));
        prop(&mut st, n_dt, b"memory\0");
        let mut reg = cells(RAM_BASE + u64::from(off), ac);
        reg.extend(cells(u64::from(size) << 4, sc));
        prop(&mut st, n_reg, &reg);
        be(&mut st, 2);
    }
    node(&mut st, "chosen");
    let bounds = match spec.initrd {
        Some(None) => initrd,
        Some(Some(b)) => Some(b),
        None => None,
    };
    if let Some((s, e)) = bounds {
        prop(&mut st, n_is, &s.to_be_bytes());
        prop(&mut st, n_ie, &e.to_be_bytes());
    }
    be(&mut st, 2);
    be(&mut st, 2);
    be(&mut st, 9);
    let off_rsv = 40u32;
    let off_struct = off_rsv + 16;
    let off_strings = off_struct + st.len() as u32;
    let total = off_strings + strings.len() as u32;
    let mut blob = Vec::new();
    for v in [
        0xd00d_feedu32,
        total,
        off_struct,
        off_strings,
        off_rsv,
        17,
        16,
        0,
        strings.len() as u32,
        st.len() as u32,
    ] {
        blob.extend_from_slice(&v.to_be_bytes());
    }
    blob.extend_from_slice(&[0u8; 16]);
    blob.extend_from_slice(&st);
    blob.extend_from_slice(&strings);
    blob
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    let mut k = kernel(&input.kernel);
    let initrd: Option<Vec<u8>> = input
        .initrd
        .map(|n| (0..n).map(|i| (i as u8) ^ 0x3c).collect());
    let bounds = initrd
        .as_ref()
        .map(|b| (GUEST_INITRD_GPA, GUEST_INITRD_GPA + b.len() as u64));
    let mut d = match &input.dtb {
        Ok(spec) => dtb(spec, bounds),
        Err(raw) => raw.clone(),
    };
    for (i, &(pos, x)) in input.damage.iter().take(8).enumerate() {
        let target = if i % 2 == 0 { &mut k } else { &mut d };
        if !target.is_empty() {
            let n = target.len();
            target[usize::from(pos) % n] ^= x;
        }
    }
    if let Err(e) = parse_kernel(&k) {
        assert!(!e.to_string().is_empty());
    }
    if let Ok(info) = check_dtb(&d) {
        assert!(
            info.totalsize as usize <= d.len(),
            "totalsize beyond the blob"
        );
    }
    let ram = GuestRam {
        base: RAM_BASE,
        size: input.ram_mib.map_or(RAM_SIZE, |m| u64::from(m % 512) << 20),
    };
    let images = StagedImages {
        kernel: &k,
        initrd: initrd.as_deref(),
        dtb: &d,
    };
    let plan = match BootPlan::new(ram, &images) {
        Ok(plan) => plan,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let ram_end = ram.base + ram.size;
    let kernel = (plan.kernel_gpa, plan.kernel_end() - plan.kernel_gpa);
    let tree = (plan.dtb_gpa, plan.dtb_size);
    assert_eq!(plan.entry(), plan.kernel_gpa);
    assert_eq!(plan.x0(), plan.dtb_gpa);
    assert_eq!(plan.kernel_base % (2 << 20), 0, "kernel base alignment");
    assert_eq!(plan.kernel_gpa, plan.kernel_base + plan.kernel.text_offset);
    assert!(kernel.1 >= k.len() as u64, "footprint holds the file");
    let mut ranges = vec![kernel, tree];
    if let Some(r) = plan.initrd {
        ranges.push(r);
    }
    for &(a, l) in &ranges {
        assert!(
            a >= ram.base && a + l <= ram_end,
            "{a:#x}+{l:#x} outside RAM"
        );
        let covered = plan
            .dtb
            .memory()
            .iter()
            .any(|&(b, s)| b <= a && a + l <= b + s);
        assert!(covered, "{a:#x}+{l:#x} not in the device tree's memory");
    }
    for (i, &(a, l)) in ranges.iter().enumerate() {
        for &(b, m) in &ranges[i + 1..] {
            assert!(!overlaps(a, l, b, m), "images overlap");
        }
    }
    if ram.size > RAM_SIZE {
        return;
    }
    let mem = OwnedRam::new(ram.base, ram.size as usize);
    plan.load_into(mem.mem(), &images)
        .expect("load a checked plan");
    let mut staged: Vec<(u64, &[u8])> = vec![
        (plan.kernel_gpa, &k),
        (plan.dtb_gpa, &d[..plan.dtb_size as usize]),
    ];
    if let (Some((gpa, _)), Some(b)) = (plan.initrd, initrd.as_deref()) {
        staged.push((gpa, b));
    }
    for (gpa, bytes) in staged {
        let mut got = vec![0u8; bytes.len()];
        mem.mem().read(gpa, &mut got).expect("inside RAM");
        assert!(got == bytes, "{gpa:#x}: loaded bytes differ");
        for edge in [gpa.wrapping_sub(1), gpa + bytes.len() as u64] {
            let mut b = [0u8];
            if mem.mem().read(edge, &mut b).is_ok()
                && !ranges.iter().any(|&(a, l)| edge >= a && edge < a + l)
            {
                assert_eq!(b[0], 0, "byte {edge:#x} next to an image was written");
            }
        }
    }
}
