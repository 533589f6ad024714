//! Read-only checks of a flattened device tree blob (DTB): the header, the
//! block layout, and the few nodes the boot plan depends on (`/memory`,
//! `/chosen` `linux,initrd-start`/`-end`).
//!
//! Every read is bounds-checked; a malformed blob is a [`LoadError`], never a
//! panic or an out-of-bounds access.
//!
//! # Why this reader is written here and not taken from the `fdt` crate
//! The `fdt` crate (0.1.5, the current release; 0.2 is an alpha) was
//! examined as a replacement and does not cover what this module checks:
//! - `Fdt::new` checks only the magic and that `totalsize` fits the buffer.
//!   It does not check `version`/`last_comp_version`, the
//!   [`platform::GUEST_DTB_MAX`] limit, or that the memory reservation,
//!   structure and strings blocks lie inside `totalsize`, clear of the
//!   header and aligned ([`LoadError::DtbBadLayout`]).
//! - It parses lazily and trusts the structure block: its node and property
//!   walkers `unwrap`, `expect`, `assert_eq!` and `panic!` on unexpected
//!   tokens, truncated properties and non-UTF-8 names. The DTB is staged by
//!   whoever launches the VM, so a malformed one must be an error the loader
//!   reports, never a panic at EL2.
//! - It never validates the token stream as a whole, so it cannot give the
//!   errors this walker does (unbalanced `FDT_END_NODE`, a property outside
//!   any node, a named root, a missing `FDT_END`; its own `FDT_END`
//!   constant is 5 where the Devicetree Specification says 9), each with the
//!   offset of the bad token ([`LoadError::DtbBadStructure`]).
//! - Its cell-size lookup (used by its `/memory` `reg` decoding) panics on
//!   an `#address-cells` or `#size-cells` value shorter than one cell
//!   instead of refusing it.
//!
//! What the boot plan reads (`/memory` `reg` under the root's cell sizes,
//! `/chosen` `linux,initrd-start`/`-end`) is a few lines on top of the
//! checked walk, so the crate would add a dependency without removing the
//! checks. The loader only reads the blob; it never writes or patches it.

use zerocopy::byteorder::big_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::LoadError;
use crate::platform;

/// FDT magic, stored big-endian at offset 0.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Oldest FDT version accepted (the first with `size_dt_strings`).
pub const FDT_MIN_VERSION: u32 = 16;
/// Newest FDT format this parser understands (`last_comp_version` must not
/// exceed it).
pub const FDT_MAX_COMPAT_VERSION: u32 = 17;
/// Most `/memory` ranges recorded.
pub const MAX_MEMORY_RANGES: usize = 8;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// The FDT header (version 17 layout, 40 bytes, all fields big-endian).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FdtHeader {
    /// 0xd00dfeed.
    pub magic: U32,
    /// Size of the whole blob in bytes.
    pub totalsize: U32,
    /// Offset of the structure block.
    pub off_dt_struct: U32,
    /// Offset of the strings block.
    pub off_dt_strings: U32,
    /// Offset of the memory reservation block.
    pub off_mem_rsvmap: U32,
    /// Format version.
    pub version: U32,
    /// Oldest version this blob is backwards compatible with.
    pub last_comp_version: U32,
    /// Physical ID of the boot CPU.
    pub boot_cpuid_phys: U32,
    /// Size of the strings block.
    pub size_dt_strings: U32,
    /// Size of the structure block (version 17).
    pub size_dt_struct: U32,
}

/// Bytes of the version-17 header.
pub const FDT_HEADER_SIZE: usize = core::mem::size_of::<FdtHeader>();

/// What the boot plan needs to know about a device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtbInfo {
    /// `totalsize`: the bytes to copy into the guest.
    pub totalsize: u32,
    /// Format version.
    pub version: u32,
    /// `(base, size)` of each `/memory` range, in order.
    memory: [(u64, u64); MAX_MEMORY_RANGES],
    memory_count: usize,
    /// `/chosen` `linux,initrd-start` and `linux,initrd-end`, if present.
    pub initrd: Option<(u64, u64)>,
}

impl DtbInfo {
    /// The `(base, size)` ranges of the `/memory` nodes.
    pub fn memory(&self) -> &[(u64, u64)] {
        &self.memory[..self.memory_count]
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A NUL-terminated string starting at `off`, without the NUL.
fn cstr(b: &[u8], off: usize) -> Option<&[u8]> {
    let rest = b.get(off..)?;
    let len = rest.iter().position(|&c| c == 0)?;
    Some(&rest[..len])
}

fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// Reads a big-endian number of `cells` 32-bit cells.
fn read_cells(b: &[u8], cells: u32) -> Option<u64> {
    match (cells, b.len()) {
        (1, 4) => Some(u64::from(be32(b, 0)?)),
        (2, 8) => Some(u64::from(be32(b, 0)?) << 32 | u64::from(be32(b, 4)?)),
        _ => None,
    }
}

/// Which depth-1 node the walker is inside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Chosen,
    Memory,
    Other,
}

/// Checks a device tree blob and extracts [`DtbInfo`].
///
/// Checks: the header fits, the magic, `version >= 16` and
/// `last_comp_version <= 17`, `totalsize <= platform::GUEST_DTB_MAX` and
/// `<=` the staged bytes, the memory reservation, structure and strings
/// blocks lie inside `totalsize` and are aligned, and the structure block is
/// a well-formed token stream ending in FDT_END.
pub fn check_dtb(blob: &[u8]) -> Result<DtbInfo, LoadError> {
    let Ok((hdr, _)) = FdtHeader::read_from_prefix(blob) else {
        return Err(LoadError::DtbTruncated {
            staged: blob.len() as u64,
            needed: FDT_HEADER_SIZE as u64,
        });
    };
    let magic = hdr.magic.get();
    if magic != FDT_MAGIC {
        return Err(LoadError::DtbBadMagic { magic });
    }
    let version = hdr.version.get();
    let last_comp_version = hdr.last_comp_version.get();
    if version < FDT_MIN_VERSION || last_comp_version > FDT_MAX_COMPAT_VERSION {
        return Err(LoadError::DtbBadVersion {
            version,
            last_comp_version,
        });
    }
    let totalsize = hdr.totalsize.get();
    if u64::from(totalsize) > platform::GUEST_DTB_MAX {
        return Err(LoadError::DtbTooLarge { totalsize });
    }
    if totalsize as usize > blob.len() {
        return Err(LoadError::DtbTruncated {
            staged: blob.len() as u64,
            needed: u64::from(totalsize),
        });
    }
    let blob = &blob[..totalsize as usize];

    let struct_off = hdr.off_dt_struct.get();
    // Version 16 has no size_dt_struct: the block may run to the end.
    let struct_size = if version >= 17 {
        hdr.size_dt_struct.get()
    } else {
        totalsize.saturating_sub(struct_off)
    };
    let header_end = if version >= 17 { 40 } else { 36 };
    let rsv_off = hdr.off_mem_rsvmap.get();
    let strings_off = hdr.off_dt_strings.get();
    let strings_size = hdr.size_dt_strings.get();
    let blocks = [
        ("memory reservation", rsv_off, 16, 8),
        ("structure", struct_off, struct_size, 4),
        ("strings", strings_off, strings_size, 1),
    ];
    for (block, offset, size, align) in blocks {
        let end = u64::from(offset) + u64::from(size);
        if offset < header_end || end > u64::from(totalsize) || offset % align != 0 {
            return Err(LoadError::DtbBadLayout {
                block,
                offset,
                size,
                totalsize,
            });
        }
    }
    let structs = &blob[struct_off as usize..(struct_off + struct_size) as usize];
    let strings = &blob[strings_off as usize..(strings_off + strings_size) as usize];
    let mut info = DtbInfo {
        totalsize,
        version,
        memory: [(0, 0); MAX_MEMORY_RANGES],
        memory_count: 0,
        initrd: None,
    };
    walk_structure(structs, strings, struct_off, &mut info)?;
    Ok(info)
}

/// Walks the structure block token by token.
fn walk_structure(
    structs: &[u8],
    strings: &[u8],
    base: u32,
    info: &mut DtbInfo,
) -> Result<(), LoadError> {
    let bad = |pos: usize, what: &'static str| LoadError::DtbBadStructure {
        offset: u64::from(base) + pos as u64,
        what,
    };
    let mut pos = 0usize;
    let mut depth = 0u32;
    let mut node = Node::Other;
    // Root defaults (Devicetree Specification 2.3.5).
    let mut address_cells = 2u32;
    let mut size_cells = 1u32;
    // Per memory node: device_type seen, reg value.
    let mut mem_is_memory = false;
    let mut mem_reg: Option<&[u8]> = None;
    let mut initrd_start: Option<u64> = None;
    let mut initrd_end: Option<u64> = None;

    loop {
        let token = be32(structs, pos).ok_or(bad(pos, "structure block ends without FDT_END"))?;
        let token_pos = pos;
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(structs, pos).ok_or(bad(pos, "unterminated node name"))?;
                pos = align4(pos + name.len() + 1).ok_or(bad(pos, "node name overflows"))?;
                depth = depth
                    .checked_add(1)
                    .ok_or(bad(token_pos, "nesting too deep"))?;
                if depth == 1 && !name.is_empty() {
                    return Err(bad(token_pos, "the root node has a name"));
                }
                if depth == 2 {
                    node = if name == b"chosen" {
                        Node::Chosen
                    } else if name == b"memory" || name.starts_with(b"memory@") {
                        mem_is_memory = false;
                        mem_reg = None;
                        Node::Memory
                    } else {
                        Node::Other
                    };
                }
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad(token_pos, "FDT_END_NODE outside any node"));
                }
                if depth == 2 && node == Node::Memory && mem_is_memory {
                    let reg = mem_reg.ok_or(bad(token_pos, "memory node without reg"))?;
                    add_memory(info, reg, address_cells, size_cells)?;
                }
                if depth == 2 {
                    node = Node::Other;
                }
                depth -= 1;
            }
            FDT_PROP => {
                let len = be32(structs, pos).ok_or(bad(pos, "truncated property"))? as usize;
                let nameoff = be32(structs, pos + 4).ok_or(bad(pos, "truncated property"))?;
                pos += 8;
                let value = structs
                    .get(pos..pos.checked_add(len).ok_or(bad(pos, "property overflows"))?)
                    .ok_or(bad(pos, "property value runs past the structure block"))?;
                pos = align4(pos + len).ok_or(bad(pos, "property overflows"))?;
                let name = cstr(strings, nameoff as usize)
                    .ok_or(bad(token_pos, "property name outside the strings block"))?;
                if depth == 0 {
                    return Err(bad(token_pos, "property outside any node"));
                }
                match (depth, node, name) {
                    (1, _, b"#address-cells") => {
                        address_cells = read_cells(value, 1).ok_or(LoadError::DtbBadProperty {
                            name: "/#address-cells",
                        })? as u32;
                    }
                    (1, _, b"#size-cells") => {
                        size_cells = read_cells(value, 1).ok_or(LoadError::DtbBadProperty {
                            name: "/#size-cells",
                        })? as u32;
                    }
                    (2, Node::Chosen, b"linux,initrd-start") => {
                        initrd_start = Some(read_number(value, "linux,initrd-start")?);
                    }
                    (2, Node::Chosen, b"linux,initrd-end") => {
                        initrd_end = Some(read_number(value, "linux,initrd-end")?);
                    }
                    (2, Node::Memory, b"device_type") => {
                        mem_is_memory = value == b"memory\0";
                    }
                    (2, Node::Memory, b"reg") => mem_reg = Some(value),
                    _ => {}
                }
            }
            FDT_NOP => {}
            FDT_END => {
                if depth != 0 {
                    return Err(bad(token_pos, "FDT_END inside an open node"));
                }
                break;
            }
            _ => return Err(bad(token_pos, "unknown token")),
        }
    }
    info.initrd = match (initrd_start, initrd_end) {
        (None, None) => None,
        (Some(s), Some(e)) if s <= e => Some((s, e)),
        (Some(_), Some(_)) => {
            return Err(LoadError::DtbBadProperty {
                name: "/chosen/linux,initrd-end (before linux,initrd-start)",
            });
        }
        (Some(_), None) => {
            return Err(LoadError::DtbBadProperty {
                name: "/chosen/linux,initrd-end (missing)",
            });
        }
        (None, Some(_)) => {
            return Err(LoadError::DtbBadProperty {
                name: "/chosen/linux,initrd-start (missing)",
            });
        }
    };
    Ok(())
}

/// `linux,initrd-*` are one or two cells, like Linux's `of_read_number`.
fn read_number(value: &[u8], name: &'static str) -> Result<u64, LoadError> {
    read_cells(value, (value.len() / 4) as u32).ok_or(LoadError::DtbBadProperty { name })
}

fn add_memory(
    info: &mut DtbInfo,
    reg: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<(), LoadError> {
    if !(1..=2).contains(&address_cells) || !(1..=2).contains(&size_cells) {
        return Err(LoadError::DtbBadProperty {
            name: "/#address-cells or /#size-cells (only 1 or 2 supported)",
        });
    }
    let a = address_cells as usize * 4;
    let s = size_cells as usize * 4;
    if reg.is_empty() || reg.len() % (a + s) != 0 {
        return Err(LoadError::DtbBadProperty {
            name: "/memory reg (length is not a multiple of the address and size cells)",
        });
    }
    for pair in reg.chunks_exact(a + s) {
        let base = read_cells(&pair[..a], address_cells);
        let size = read_cells(&pair[a..], size_cells);
        let (Some(base), Some(size)) = (base, size) else {
            return Err(LoadError::DtbBadProperty {
                name: "/memory reg",
            });
        };
        let slot = info
            .memory
            .get_mut(info.memory_count)
            .ok_or(LoadError::DtbBadProperty {
                name: "/memory reg (more than 8 ranges)",
            })?;
        *slot = (base, size);
        info.memory_count += 1;
    }
    Ok(())
}
