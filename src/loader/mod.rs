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

mod error;
mod fdt;

#[cfg(test)]
mod tests;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::guest_memory::GuestMemory;
use crate::platform;

pub use error::{LoadError, VmLoadError};
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
