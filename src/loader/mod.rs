//! Guest image checks and placement: the arm64 `Image` header, initramfs and
//! device tree blob.
//!
//! Everything here works on byte slices of the *staged* images (where QEMU's
//! `-device loader` put them in host memory) and never indexes out of
//! bounds, whatever the bytes are. [`plan_boot`] checks the three images
//! and decides where each goes in the guest; [`BootPlan::load_into`] then
//! copies them through [`GuestMemory`].
//!
//! # Guest-physical layout (Documentation/arch/arm64/booting.rst)
//! ```text
//! RAM_BASE          0x4000_0000  (2 MiB left free: the kernel's 2 MiB-aligned base sits above)
//! GUEST_KERNEL_GPA  0x4020_0000  2 MiB-aligned base; the Image goes at base + text_offset
//!                                and needs image_size bytes from there, ending <= the DTB
//! GUEST_DTB_GPA     0x47e0_0000  the DTB (8-byte aligned, <= 2 MiB, its own 2 MiB block)
//! GUEST_INITRD_GPA  0x4800_0000  the initramfs, which must end INITRD_HEADROOM (32 MiB)
//!                                below the end of guest RAM
//! ```
//! * The kernel entry is the first byte of the Image (code0); x0 = DTB
//!   address, x1..x3 = 0 (see [`BootPlan::entry`], [`BootPlan::x0`]).
//! * `image_size == 0` (kernels before v3.17): text_offset is taken as
//!   0x80000 as booting.rst says, and the footprint is the file size; every
//!   byte up to the DTB is then left free for the kernel, as booting.rst
//!   asks. When the staged file is longer than `image_size` (e.g. an
//!   appended signature), the file size is used.
//! * **Initramfs headroom**: the initramfs may grow up to 32 MiB below the
//!   end of guest RAM. The kernel unpacks the archive into page-cache memory
//!   *before* it frees the archive, so RAM that is all archive cannot boot;
//!   32 MiB is what a small BusyBox initramfs needs to unpack and start
//!   `/init` in a 256 MiB guest. Kernel and initramfs also lie inside one
//!   1 GiB-aligned window of at most 32 GiB (booting.rst).
//! * The device tree must describe memory that lies inside guest RAM (or
//!   the guest touches addresses stage 2 does not map) and that covers the
//!   kernel, DTB and initramfs; if `/chosen` names an initramfs it must be
//!   exactly the one staged, and a staged initramfs must be named there
//!   (the Makefile generates the DTB with `linux,initrd-start = 0x48000000`
//!   and `linux,initrd-end` = start + size).

mod fdt;

#[cfg(test)]
mod tests;

use core::fmt;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::guest_memory::{GuestMemory, MemError};
use crate::platform;

pub use fdt::{
    DtbInfo, FDT_HEADER_SIZE, FDT_MAGIC, FDT_MAX_COMPAT_VERSION, FDT_MIN_VERSION, FdtHeader,
    MAX_MEMORY_RANGES, check_dtb,
};

/// "ARM\x64", little-endian at offset 0x38 of the Image header.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Offset of the magic in the Image header.
pub const IMAGE_MAGIC_OFFSET: usize = 0x38;
/// Bytes of the Image header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// text_offset assumed when image_size is 0 (kernels before v3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The kernel's base must be 2 MiB aligned.
pub const KERNEL_ALIGN: u64 = 0x20_0000;
/// Guest RAM that must stay free above the initramfs.
pub const INITRD_HEADROOM: u64 = 32 << 20;
/// Kernel and initramfs must share a 1 GiB-aligned window this large.
pub const INITRD_WINDOW: u64 = 32 << 30;

const GIB: u64 = 1 << 30;

/// The 64-byte arm64 `Image` header (all fields little-endian).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ImageHeader {
    /// Executable code (or "MZ" for an EFI stub).
    pub code0: U32,
    /// Executable code.
    pub code1: U32,
    /// Offset of the Image from its 2 MiB-aligned base.
    pub text_offset: U64,
    /// Bytes the kernel needs from the start of the Image (0 before v3.17).
    pub image_size: U64,
    /// Bit 0 big-endian, bits 1-2 page size, bit 3 physical placement.
    pub flags: U64,
    /// Reserved.
    pub res2: U64,
    /// Reserved.
    pub res3: U64,
    /// Reserved.
    pub res4: U64,
    /// [`IMAGE_MAGIC`].
    pub magic: U32,
    /// Reserved (PE header offset for EFI).
    pub res5: U32,
}

const _: () = assert!(core::mem::size_of::<ImageHeader>() == IMAGE_HEADER_SIZE);

/// Kernel page size from the Image flags (bits 1-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 0: not stated.
    Unspecified,
    /// 1: 4 KiB.
    K4,
    /// 2: 16 KiB (not supported by cortex-a72).
    K16,
    /// 3: 64 KiB.
    K64,
}

/// A checked kernel `Image`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// Offset from the 2 MiB-aligned base (0x80000 if image_size was 0).
    pub text_offset: u64,
    /// image_size from the header (0 for pre-v3.17 kernels).
    pub image_size: u64,
    /// Bytes staged (copied into the guest).
    pub file_size: u64,
    /// Page size the kernel was built for.
    pub page_size: PageSize,
    /// Flags bit 3: the base may be anywhere in RAM (otherwise it should
    /// be close to the start of RAM).
    pub phys_anywhere: bool,
}

impl KernelImage {
    /// Bytes that must be free from the start of the Image.
    pub fn footprint(&self) -> u64 {
        self.image_size.max(self.file_size)
    }
}

/// Why an image was refused or could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Fewer than 64 bytes of kernel.
    KernelTruncated {
        /// Bytes staged.
        staged: u64,
    },
    /// No "ARMd" magic at 0x38.
    KernelBadMagic {
        /// The value found.
        magic: u32,
        /// What the bytes look like instead.
        looks_like: Option<&'static str>,
    },
    /// Flags bit 0 says big-endian.
    KernelBigEndian {
        /// The flags field.
        flags: u64,
    },
    /// The kernel's footprint (image_size, or the file size if larger)
    /// does not end below the DTB.
    KernelTooLarge {
        /// Where the Image goes.
        kernel_gpa: u64,
        /// image_size from the header.
        image_size: u64,
        /// Bytes staged.
        file_size: u64,
        /// Where the DTB goes.
        dtb_gpa: u64,
    },
    /// Fewer staged DTB bytes than its header (or the header itself) needs.
    DtbTruncated {
        /// Bytes staged.
        staged: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// The DTB magic is wrong.
    DtbBadMagic {
        /// The value found (read big-endian).
        magic: u32,
    },
    /// The DTB version is too old or too new.
    DtbBadVersion {
        /// `version`.
        version: u32,
        /// `last_comp_version`.
        last_comp_version: u32,
    },
    /// `totalsize` exceeds `platform::GUEST_DTB_MAX`.
    DtbTooLarge {
        /// `totalsize`.
        totalsize: u32,
    },
    /// A DTB block lies outside `totalsize`, overlaps the header or is
    /// misaligned.
    DtbBadLayout {
        /// Which block.
        block: &'static str,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u32,
        /// `totalsize`.
        totalsize: u32,
    },
    /// The structure block is malformed.
    DtbBadStructure {
        /// Offset in the blob.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A property the plan needs is malformed.
    DtbBadProperty {
        /// Which property (and why).
        name: &'static str,
    },
    /// The DTB has no `/memory` node with `device_type = "memory"`.
    DtbNoMemory,
    /// A `/memory` range reaches outside guest RAM.
    DtbMemoryOutsideRam {
        /// Range start.
        base: u64,
        /// Range size.
        size: u64,
        /// Guest RAM start.
        ram_base: u64,
        /// Guest RAM end.
        ram_end: u64,
    },
    /// No `/memory` range covers the kernel, DTB and initramfs.
    DtbMemoryMissesImages {
        /// First byte the images use.
        start: u64,
        /// End of the images.
        end: u64,
    },
    /// `/chosen` names a different initramfs than the one staged.
    DtbInitrdMismatch {
        /// `linux,initrd-start`.
        dtb_start: u64,
        /// `linux,initrd-end`.
        dtb_end: u64,
        /// Where the initramfs goes.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// `/chosen` names an initramfs but none was staged.
    DtbInitrdNotStaged {
        /// `linux,initrd-start`.
        dtb_start: u64,
        /// `linux,initrd-end`.
        dtb_end: u64,
    },
    /// An initramfs was staged but `/chosen` does not name it.
    InitrdNotInDtb {
        /// Where the initramfs goes.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// The initramfs is empty.
    InitrdEmpty,
    /// The initramfs does not fit below the headroom at the end of RAM.
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// Where it goes.
        gpa: u64,
        /// End of guest RAM.
        ram_end: u64,
    },
    /// Kernel and initramfs do not share a 1 GiB-aligned 32 GiB window.
    InitrdWindow {
        /// Start of the kernel.
        kernel_gpa: u64,
        /// End of the initramfs.
        initrd_end: u64,
    },
    /// Guest RAM does not hold the fixed boot layout.
    RamTooSmall {
        /// Guest RAM start.
        ram_base: u64,
        /// Guest RAM end.
        ram_end: u64,
        /// Range the layout needs.
        need_start: u64,
        /// End of that range.
        need_end: u64,
    },
    /// `ram_base + ram_size` overflows.
    RamInvalid {
        /// Guest RAM start.
        base: u64,
        /// Guest RAM size.
        size: u64,
    },
    /// [`BootPlan::load_into`] got different images than were planned.
    StagedChanged {
        /// Which image.
        what: &'static str,
        /// Bytes when planned.
        planned: u64,
        /// Bytes now.
        given: u64,
    },
    /// Copying into guest memory failed.
    Memory {
        /// Which image.
        what: &'static str,
        /// The guest-memory error.
        error: MemError,
    },
}

/// Guesses what a non-Image kernel file is, from its first bytes.
fn identify(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x1f, 0x8b, ..] => Some("a gzip-compressed kernel (vmlinuz / Image.gz): decompress it"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("a zstd-compressed kernel: decompress it"),
        [0x7f, b'E', b'L', b'F', ..] => Some("an ELF vmlinux: use arch/arm64/boot/Image"),
        _ if bytes.iter().take(IMAGE_HEADER_SIZE).all(|&b| b == 0) => {
            Some("all zeros: was the kernel staged at the configured address?")
        }
        _ => None,
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadError::*;
        match *self {
            KernelTruncated { staged } => write!(
                f,
                "kernel Image: only {staged} bytes staged, the arm64 Image header needs \
                 {IMAGE_HEADER_SIZE}"
            ),
            KernelBadMagic { magic, looks_like } => {
                write!(
                    f,
                    "kernel Image: bad magic {magic:#010x} at offset {IMAGE_MAGIC_OFFSET:#x} \
                     (expected 'ARMd' = {IMAGE_MAGIC:#010x}); "
                )?;
                match looks_like {
                    Some(what) => write!(f, "the file looks like {what}"),
                    None => write!(f, "is this a compressed vmlinuz?"),
                }
            }
            KernelBigEndian { flags } => write!(
                f,
                "kernel Image: flags {flags:#x} mark a big-endian kernel; only little-endian \
                 guests are supported"
            ),
            KernelTooLarge {
                kernel_gpa,
                image_size,
                file_size,
                dtb_gpa,
            } => {
                let (what, size) = if file_size > image_size {
                    ("file size", file_size)
                } else {
                    ("image_size", image_size)
                };
                write!(
                    f,
                    "kernel Image: {what} {size:#x} exceeds the {:#x} bytes available below \
                     the DTB at {dtb_gpa:#x} (Image placed at {kernel_gpa:#x})",
                    dtb_gpa.saturating_sub(kernel_gpa)
                )
            }
            DtbTruncated { staged, needed } => write!(
                f,
                "device tree: truncated, {staged:#x} bytes staged but {needed:#x} needed"
            ),
            DtbBadMagic { magic } => {
                write!(
                    f,
                    "device tree: bad magic {magic:#010x} at offset 0 (expected {FDT_MAGIC:#010x})"
                )?;
                if magic == FDT_MAGIC.swap_bytes() {
                    write!(f, "; the blob is byte-swapped")
                } else if magic == 0 {
                    write!(f, "; was the DTB staged at the configured address?")
                } else {
                    Ok(())
                }
            }
            DtbBadVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "device tree: version {version} (compatible back to {last_comp_version}) is not \
                 supported; need version >= {FDT_MIN_VERSION} compatible with \
                 {FDT_MAX_COMPAT_VERSION}"
            ),
            DtbTooLarge { totalsize } => write!(
                f,
                "device tree: totalsize {totalsize:#x} exceeds the {:#x}-byte maximum",
                platform::GUEST_DTB_MAX
            ),
            DtbBadLayout {
                block,
                offset,
                size,
                totalsize,
            } => write!(
                f,
                "device tree: {block} block at offset {offset:#x}, size {size:#x} lies outside \
                 the blob (totalsize {totalsize:#x}), overlaps the header or is misaligned"
            ),
            DtbBadStructure { offset, what } => {
                write!(
                    f,
                    "device tree: malformed structure block at offset {offset:#x}: {what}"
                )
            }
            DtbBadProperty { name } => write!(f, "device tree: malformed property {name}"),
            DtbNoMemory => write!(
                f,
                "device tree: no /memory node with device_type = \"memory\""
            ),
            DtbMemoryOutsideRam {
                base,
                size,
                ram_base,
                ram_end,
            } => write!(
                f,
                "device tree: /memory range {base:#x}+{size:#x} reaches outside guest RAM \
                 {ram_base:#x}..{ram_end:#x} (does the tree match the configured mem?)"
            ),
            DtbMemoryMissesImages { start, end } => write!(
                f,
                "device tree: no /memory range covers the boot images at {start:#x}..{end:#x}"
            ),
            DtbInitrdMismatch {
                dtb_start,
                dtb_end,
                start,
                end,
            } => write!(
                f,
                "device tree: /chosen linux,initrd-start/end = {dtb_start:#x}..{dtb_end:#x} but \
                 the initramfs is placed at {start:#x}..{end:#x} (regenerate the DTB for this \
                 initramfs)"
            ),
            DtbInitrdNotStaged { dtb_start, dtb_end } => write!(
                f,
                "device tree: /chosen names an initramfs at {dtb_start:#x}..{dtb_end:#x} but \
                 none was staged"
            ),
            InitrdNotInDtb { start, end } => write!(
                f,
                "initramfs: placed at {start:#x}..{end:#x} but the device tree's /chosen has no \
                 linux,initrd-start/end, so the kernel would ignore it"
            ),
            InitrdEmpty => write!(f, "initramfs: staged size is 0"),
            InitrdTooLarge { size, gpa, ram_end } => write!(
                f,
                "initramfs ({size} bytes, {size:#x}) does not fit in guest RAM: placed at \
                 {gpa:#x} it must end {INITRD_HEADROOM:#x} bytes (32 MiB, room for the kernel \
                 to unpack it) below the end of RAM at {ram_end:#x}, so at most {:#x} bytes fit",
                ram_end.saturating_sub(INITRD_HEADROOM).saturating_sub(gpa)
            ),
            InitrdWindow {
                kernel_gpa,
                initrd_end,
            } => write!(
                f,
                "initramfs: kernel at {kernel_gpa:#x} and initramfs ending at {initrd_end:#x} do \
                 not fit one 1 GiB-aligned 32 GiB window"
            ),
            RamTooSmall {
                ram_base,
                ram_end,
                need_start,
                need_end,
            } => write!(
                f,
                "guest RAM {ram_base:#x}..{ram_end:#x} does not hold the fixed boot layout, which \
                 needs {need_start:#x}..{need_end:#x} (use mem >= {:#x})",
                need_end.saturating_sub(ram_base)
            ),
            RamInvalid { base, size } => write!(
                f,
                "guest RAM {base:#x}+{size:#x} overflows the address space"
            ),
            StagedChanged {
                what,
                planned,
                given,
            } => write!(
                f,
                "{what}: planned with {planned:#x} bytes but {given:#x} bytes given to load"
            ),
            Memory { what, error } => write!(f, "{what}: copying into guest RAM failed: {error}"),
        }
    }
}

impl LoadError {
    /// Attaches the VM this error is about.
    pub fn in_vm(self, vm: usize) -> VmLoadError {
        VmLoadError { vm, error: self }
    }
}

/// A [`LoadError`] for one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmLoadError {
    /// Index of the VM (its DTB is `dtb<vm>` in the boot configuration).
    pub vm: usize,
    /// What went wrong.
    pub error: LoadError,
}

impl fmt::Display for VmLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VM {}: ", self.vm)?;
        if let LoadError::DtbBadMagic { .. }
        | LoadError::DtbTruncated { .. }
        | LoadError::DtbBadVersion { .. }
        | LoadError::DtbTooLarge { .. }
        | LoadError::DtbBadLayout { .. }
        | LoadError::DtbBadStructure { .. }
        | LoadError::DtbBadProperty { .. } = self.error
        {
            write!(f, "(dtb{}) ", self.vm)?;
        }
        write!(f, "{}", self.error)
    }
}

/// Checks an arm64 `Image` header (Documentation/arch/arm64/booting.rst).
pub fn parse_kernel(image: &[u8]) -> Result<KernelImage, LoadError> {
    let staged = image.len() as u64;
    let Ok((hdr, _)) = ImageHeader::read_from_prefix(image) else {
        return Err(LoadError::KernelTruncated { staged });
    };
    let magic = hdr.magic.get();
    if magic != IMAGE_MAGIC {
        return Err(LoadError::KernelBadMagic {
            magic,
            looks_like: identify(image),
        });
    }
    let flags = hdr.flags.get();
    if flags & 1 != 0 {
        return Err(LoadError::KernelBigEndian { flags });
    }
    let image_size = hdr.image_size.get();
    // Before v3.17 text_offset had the kernel's endianness and image_size
    // was 0; booting.rst: "text_offset can be assumed to be 0x80000".
    let text_offset = if image_size == 0 {
        LEGACY_TEXT_OFFSET
    } else {
        hdr.text_offset.get()
    };
    let page_size = match (flags >> 1) & 3 {
        1 => PageSize::K4,
        2 => PageSize::K16,
        3 => PageSize::K64,
        _ => PageSize::Unspecified,
    };
    Ok(KernelImage {
        text_offset,
        image_size,
        file_size: staged,
        page_size,
        phys_anywhere: flags & (1 << 3) != 0,
    })
}

/// Where guest RAM is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRam {
    /// Guest-physical start (platform::RAM_BASE).
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The staged bytes of one VM's images.
#[derive(Clone, Copy, Debug)]
pub struct StagedImages<'a> {
    /// The kernel `Image`.
    pub kernel: &'a [u8],
    /// The initramfs, if any.
    pub initrd: Option<&'a [u8]>,
    /// This VM's device tree blob (the staged region may be longer than
    /// the blob's totalsize).
    pub dtb: &'a [u8],
}

/// Where everything goes; the result of [`plan_boot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPlan {
    /// Guest RAM the plan was made for.
    pub ram: GuestRam,
    /// The checked kernel.
    pub kernel: KernelImage,
    /// 2 MiB-aligned base the Image is placed relative to.
    pub kernel_base: u64,
    /// Where the Image's first byte goes (base + text_offset).
    pub kernel_gpa: u64,
    /// Where the device tree goes (8-byte aligned).
    pub dtb_gpa: u64,
    /// Bytes of device tree copied (its totalsize).
    pub dtb_size: u64,
    /// `(gpa, size)` of the initramfs, if any.
    pub initrd: Option<(u64, u64)>,
    /// What the device tree says.
    pub dtb: DtbInfo,
}

impl BootPlan {
    /// Checks the images and places them (see the module docs).
    pub fn new(ram: GuestRam, images: &StagedImages<'_>) -> Result<BootPlan, LoadError> {
        let ram_end = ram
            .base
            .checked_add(ram.size)
            .ok_or(LoadError::RamInvalid {
                base: ram.base,
                size: ram.size,
            })?;
        let kernel = parse_kernel(images.kernel)?;
        let dtb = check_dtb(images.dtb)?;

        // Kernel: 2 MiB-aligned base + text_offset, footprint below the DTB.
        let kernel_base = platform::GUEST_KERNEL_GPA & !(KERNEL_ALIGN - 1);
        let dtb_gpa = platform::GUEST_DTB_GPA;
        let footprint = kernel.footprint();
        let kernel_gpa = kernel_base.saturating_add(kernel.text_offset);
        match kernel_gpa.checked_add(footprint) {
            Some(end) if end <= dtb_gpa => {}
            _ => {
                return Err(LoadError::KernelTooLarge {
                    kernel_gpa,
                    image_size: kernel.image_size,
                    file_size: kernel.file_size,
                    dtb_gpa,
                });
            }
        }
        let dtb_size = u64::from(dtb.totalsize);
        // Cannot overflow: totalsize <= GUEST_DTB_MAX.
        let dtb_end = dtb_gpa + dtb_size;
        if kernel_base < ram.base || dtb_end > ram_end {
            return Err(LoadError::RamTooSmall {
                ram_base: ram.base,
                ram_end,
                need_start: kernel_base,
                need_end: dtb_gpa + platform::GUEST_DTB_MAX,
            });
        }

        // Initramfs.
        let initrd = match images.initrd {
            None => None,
            Some([]) => return Err(LoadError::InitrdEmpty),
            Some(bytes) => {
                let size = bytes.len() as u64;
                let gpa = platform::GUEST_INITRD_GPA;
                let limit = ram_end.saturating_sub(INITRD_HEADROOM);
                match gpa.checked_add(size) {
                    Some(end) if end <= limit => {}
                    _ => return Err(LoadError::InitrdTooLarge { size, gpa, ram_end }),
                }
                let end = gpa + size;
                let window_start = kernel_gpa & !(GIB - 1);
                if end.saturating_sub(window_start) > INITRD_WINDOW {
                    return Err(LoadError::InitrdWindow {
                        kernel_gpa,
                        initrd_end: end,
                    });
                }
                Some((gpa, size))
            }
        };

        // The device tree must agree with the layout.
        if dtb.memory().is_empty() {
            return Err(LoadError::DtbNoMemory);
        }
        for &(base, size) in dtb.memory() {
            let inside = base >= ram.base && base.checked_add(size).is_some_and(|e| e <= ram_end);
            if !inside {
                return Err(LoadError::DtbMemoryOutsideRam {
                    base,
                    size,
                    ram_base: ram.base,
                    ram_end,
                });
            }
        }
        let images_end = initrd
            .map_or(dtb_end, |(gpa, size)| gpa + size)
            .max(dtb_end);
        let covered = dtb
            .memory()
            .iter()
            .any(|&(base, size)| base <= kernel_base && images_end <= base + size);
        if !covered {
            return Err(LoadError::DtbMemoryMissesImages {
                start: kernel_base,
                end: images_end,
            });
        }
        match (dtb.initrd, initrd) {
            (None, None) => {}
            (Some((dtb_start, dtb_end)), None) => {
                return Err(LoadError::DtbInitrdNotStaged { dtb_start, dtb_end });
            }
            (None, Some((gpa, size))) => {
                return Err(LoadError::InitrdNotInDtb {
                    start: gpa,
                    end: gpa + size,
                });
            }
            (Some((dtb_start, dtb_end)), Some((gpa, size))) => {
                if dtb_start != gpa || dtb_end != gpa + size {
                    return Err(LoadError::DtbInitrdMismatch {
                        dtb_start,
                        dtb_end,
                        start: gpa,
                        end: gpa + size,
                    });
                }
            }
        }

        Ok(BootPlan {
            ram,
            kernel,
            kernel_base,
            kernel_gpa,
            dtb_gpa,
            dtb_size,
            initrd,
            dtb,
        })
    }

    /// Guest-physical entry point: the first instruction of the Image.
    pub fn entry(&self) -> u64 {
        self.kernel_gpa
    }

    /// Value for x0 at entry: the device tree's guest-physical address
    /// (x1..x3 must be 0).
    pub fn x0(&self) -> u64 {
        self.dtb_gpa
    }

    /// End of the kernel's footprint (the kernel owns
    /// `kernel_gpa..kernel_end()` at entry).
    pub fn kernel_end(&self) -> u64 {
        self.kernel_gpa.saturating_add(self.kernel.footprint())
    }

    /// Copies the images into guest RAM: the whole staged kernel at
    /// [`BootPlan::kernel_gpa`], the device tree's `totalsize` bytes at
    /// [`BootPlan::dtb_gpa`], the initramfs at its address. `images` must be
    /// the ones the plan was made from.
    ///
    /// Afterwards the caller must clean these ranges to the point of
    /// coherency (DC CVAC over the host mapping) and invalidate the
    /// instruction cache: the guest starts with its MMU off, so its first
    /// accesses are non-cacheable (booting.rst, "Caches, MMUs").
    pub fn load_into(&self, mem: &GuestMemory, images: &StagedImages<'_>) -> Result<(), LoadError> {
        for segment in self.segments(images)?.into_iter().flatten() {
            mem.write(segment.gpa, segment.bytes)
                .map_err(|error| LoadError::Memory {
                    what: segment.what,
                    error,
                })?;
        }
        Ok(())
    }

    /// What [`BootPlan::load_into`] copies, in order: the kernel, the
    /// device tree (its `totalsize` bytes) and the initramfs if any, each
    /// with its guest-physical address. Fails if `images` are not the ones
    /// the plan was made from. A VM restart copies the same segments again,
    /// a piece at a time.
    pub fn segments<'a>(
        &self,
        images: &StagedImages<'a>,
    ) -> Result<[Option<Segment<'a>>; 3], LoadError> {
        let same = |what, planned: u64, given: usize| {
            if planned == given as u64 {
                Ok(())
            } else {
                Err(LoadError::StagedChanged {
                    what,
                    planned,
                    given: given as u64,
                })
            }
        };
        same("kernel Image", self.kernel.file_size, images.kernel.len())?;
        let dtb = images
            .dtb
            .get(..self.dtb_size as usize)
            .ok_or(LoadError::StagedChanged {
                what: "device tree",
                planned: self.dtb_size,
                given: images.dtb.len() as u64,
            })?;
        let initrd = match (self.initrd, images.initrd) {
            (Some((gpa, size)), Some(bytes)) => {
                same("initramfs", size, bytes.len())?;
                Some(Segment {
                    what: "initramfs",
                    gpa,
                    bytes,
                })
            }
            (None, None) => None,
            (planned, given) => {
                return Err(LoadError::StagedChanged {
                    what: "initramfs",
                    planned: planned.map_or(0, |p| p.1),
                    given: given.map_or(0, |g| g.len() as u64),
                });
            }
        };
        Ok([
            Some(Segment {
                what: "kernel Image",
                gpa: self.kernel_gpa,
                bytes: images.kernel,
            }),
            Some(Segment {
                what: "device tree",
                gpa: self.dtb_gpa,
                bytes: dtb,
            }),
            initrd,
        ])
    }
}

/// One image as it is copied into guest RAM (see [`BootPlan::segments`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// What it is ("kernel Image", "device tree", "initramfs").
    pub what: &'static str,
    /// Guest-physical address of its first byte.
    pub gpa: u64,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// [`BootPlan::new`] with the VM attached to any error.
pub fn plan_boot(
    vm: usize,
    ram: GuestRam,
    images: &StagedImages<'_>,
) -> Result<BootPlan, VmLoadError> {
    BootPlan::new(ram, images).map_err(|e| e.in_vm(vm))
}
