//! The loader's error catalogue: every reason a kernel, device tree or
//! initramfs is refused or cannot be placed ([`LoadError`]), and the same
//! for one VM ([`VmLoadError`]), each with the message the hypervisor
//! prints before it stops with exit status 2.

use core::fmt;

use crate::guest_memory::MemError;
use crate::platform;

use super::{
    FDT_MAGIC, FDT_MAX_COMPAT_VERSION, FDT_MIN_VERSION, IMAGE_HEADER_SIZE, IMAGE_MAGIC,
    IMAGE_MAGIC_OFFSET, INITRD_HEADROOM,
};

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
    /// [`BootPlan::load_into`](super::BootPlan::load_into) got different images than were planned.
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
