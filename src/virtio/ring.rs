//! The split-virtqueue wire format (virtio 1.2, 2.7) as zerocopy structs.
//!
//! A split virtqueue is three areas of guest RAM, each written by only one
//! side:
//!
//! | area | written by | layout | alignment | size |
//! |---|---|---|---|---|
//! | descriptor table | driver | `[Descriptor; size]` | 16 | `16 * size` |
//! | available ring (driver area) | driver | [`AvailHeader`], `[le16; size]`, `used_event` | 2 | `6 + 2 * size` |
//! | used ring (device area) | device | [`UsedHeader`], `[UsedElem; size]`, `avail_event` | 4 | `6 + 8 * size` |
//!
//! Every field is little-endian, so the structs use
//! `zerocopy::little_endian` types: a `U32` read on any host yields the
//! value the guest meant, and the structs have alignment 1, so no padding
//! sneaks in. They are only ever *copied* in and out of guest RAM through
//! [`GuestMemory`](crate::guest_memory::GuestMemory); nothing here holds a
//! reference into the guest.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Descriptor flag: the chain continues at [`Descriptor::next`].
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (otherwise device-readable).
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds an indirect descriptor table. Only
/// legal with `VIRTIO_F_INDIRECT_DESC`, which this device never offers.
pub const DESC_F_INDIRECT: u16 = 4;
/// Every descriptor flag defined for split virtqueues.
pub const DESC_F_KNOWN: u16 = DESC_F_NEXT | DESC_F_WRITE | DESC_F_INDIRECT;

/// Available-ring flag: the driver does not want used-buffer interrupts.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used-ring flag: the device does not want available-buffer notifications.
pub const USED_F_NO_NOTIFY: u16 = 1;

/// Largest queue size the split format allows (spec 2.7).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Required alignment of the descriptor table.
pub const DESC_TABLE_ALIGN: u64 = 16;
/// Required alignment of the available ring.
pub const AVAIL_RING_ALIGN: u64 = 2;
/// Required alignment of the used ring.
pub const USED_RING_ALIGN: u64 = 4;

/// One entry of the descriptor table (`struct virtq_desc`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: U64,
    /// Length of the buffer in bytes.
    pub len: U32,
    /// `DESC_F_*` flags.
    pub flags: U16,
    /// Index of the next descriptor if `flags` has [`DESC_F_NEXT`].
    pub next: U16,
}

/// Start of the available ring (`struct virtq_avail` without the array).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AvailHeader {
    /// `AVAIL_F_*` flags.
    pub flags: U16,
    /// Where the driver will put the next entry (free-running, wraps at 2^16).
    pub idx: U16,
}

/// Start of the used ring (`struct virtq_used` without the array).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UsedHeader {
    /// `USED_F_*` flags.
    pub flags: U16,
    /// Where the device will put the next entry (free-running, wraps at 2^16).
    pub idx: U16,
}

/// One entry of the used ring (`struct virtq_used_elem`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UsedElem {
    /// Head index of the completed descriptor chain (le32 for padding reasons).
    pub id: U32,
    /// Bytes the device wrote into the chain's writable part.
    pub len: U32,
}

const _: () = assert!(size_of::<Descriptor>() == 16);
const _: () = assert!(size_of::<AvailHeader>() == 4);
const _: () = assert!(size_of::<UsedHeader>() == 4);
const _: () = assert!(size_of::<UsedElem>() == 8);

/// Offset of `idx` inside either ring header.
pub const RING_IDX_OFFSET: u64 = core::mem::offset_of!(AvailHeader, idx) as u64;
/// Offset of the first ring entry after either ring header.
pub const RING_ENTRIES_OFFSET: u64 = size_of::<AvailHeader>() as u64;

/// Bytes of the descriptor table for a queue of `size` entries.
pub const fn desc_table_bytes(size: u16) -> u64 {
    size as u64 * size_of::<Descriptor>() as u64
}

/// Bytes of the available ring for a queue of `size` entries (header,
/// entries and the trailing `used_event`).
pub const fn avail_ring_bytes(size: u16) -> u64 {
    RING_ENTRIES_OFFSET + size as u64 * 2 + 2
}

/// Bytes of the used ring for a queue of `size` entries (header, entries
/// and the trailing `avail_event`).
pub const fn used_ring_bytes(size: u16) -> u64 {
    RING_ENTRIES_OFFSET + size as u64 * size_of::<UsedElem>() as u64 + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_spec_table() {
        assert_eq!(desc_table_bytes(256), 16 * 256);
        assert_eq!(avail_ring_bytes(256), 6 + 2 * 256);
        assert_eq!(used_ring_bytes(256), 6 + 8 * 256);
        assert_eq!(used_ring_bytes(MAX_QUEUE_SIZE), 6 + 8 * 32768);
    }

    #[test]
    fn descriptor_is_little_endian_on_the_wire() {
        let d = Descriptor {
            addr: U64::new(0x1122_3344_5566_7788),
            len: U32::new(0x0102_0304),
            flags: U16::new(DESC_F_NEXT | DESC_F_WRITE),
            next: U16::new(0x0a0b),
        };
        assert_eq!(
            d.as_bytes(),
            &[
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x04, 0x03, 0x02, 0x01, 0x03, 0x00,
                0x0b, 0x0a
            ]
        );
    }

    #[test]
    fn header_offsets() {
        assert_eq!(RING_IDX_OFFSET, 2);
        assert_eq!(RING_ENTRIES_OFFSET, 4);
    }
}
