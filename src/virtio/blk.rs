//! virtio-blk (device ID 2, virtio 1.2 section 5.2) over a disk that lives
//! in hypervisor memory.
//!
//! The disk is a [`MemDisk`]: a `&'static mut [u8]` the hypervisor owns (a
//! carve-out of host RAM on target, a leaked `Vec` in tests), never guest
//! RAM. Data moves between the guest's buffers and the disk with slice
//! copies through [`Reader::read_exact`] and [`Writer::write_all`].
//!
//! # Requests
//! A request is a chain: a 16-byte [`RequestHeader`] (type, reserved,
//! sector), data (device-readable for OUT, device-writable for IN and
//! GET_ID), and a one-byte status that is the *last* writable byte.
//!
//! | type | does | errors |
//! |---|---|---|
//! | IN (0) | copies sectors into the writable data | IOERR: data length not a multiple of 512, range past the end |
//! | OUT (1) | copies the readable data onto sectors | IOERR: same |
//! | FLUSH (4) | nothing to do (the disk is memory) | — |
//! | GET_ID (8) | writes the 20-byte ID (truncated to the buffer) | — |
//! | anything else | — | UNSUPP |
//!
//! Every request goes through the [`BlkRequest`] typestate:
//! [`HeaderPending`] → [`Data`] (the header was read; data can be read
//! from the readable part or written into the writable part *without* its
//! last byte) → [`StatusWritten`] (remaining data bytes zeroed, status
//! written last) → completed. A request dropped before its status is
//! written is returned with used length 0.
//!
//! ```
//! use hypervisor::virtio::blk::{BlkRequest, HeaderPending, request_type, status};
//!
//! /// Answers every request with its type's status, moving no data.
//! fn answer(request: BlkRequest<'_, HeaderPending>) -> Option<u32> {
//!     let (header, data) = request.read_header().ok()?;
//!     let code = match header.map(|h| h.request_type.get()) {
//!         Some(request_type::FLUSH) => status::OK,
//!         Some(_) => status::UNSUPP,
//!         None => status::IOERR, // shorter than 16 bytes
//!     };
//!     Some(data.finish(code).ok()?.complete())
//! }
//! ```
//!
//! A header shorter than 16 bytes is IOERR. A chain with no writable byte
//! has nowhere to put a status: it is completed with length 0 and counted
//! ([`BlkStats::no_status_byte`]). When a request fails, data bytes it did
//! not fill are zeroed, so the used length (always data + status, as QEMU
//! reports it) never claims bytes the device did not write.

use core::marker::PhantomData;
use core::ops::Range;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::chain::{Chain, MAX_CHAIN_DESCRIPTORS, QueueRole, Reader, Writer, sealed};
use super::device::{VirtioDevice, read_config_bytes};
use super::error::BufferError;
use super::lifecycle::{Features, LiveQueues};
use super::regs;
use super::stats::bump;

/// Bytes per sector: the unit of `capacity` and `sector`, always 512.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the GET_ID string.
pub const ID_BYTES: usize = 20;
/// Default ID string.
pub const DEFAULT_ID: &[u8] = b"hv-virtio-blk";

/// virtio-blk feature bits (spec 5.2.3), as 64-bit masks.
pub mod feature {
    /// `size_max` is valid.
    pub const SIZE_MAX: u64 = 1 << 1;
    /// `seg_max` is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// `geometry` is valid.
    pub const GEOMETRY: u64 = 1 << 4;
    /// The device is read-only.
    pub const RO: u64 = 1 << 5;
    /// `blk_size` is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// FLUSH is supported.
    pub const FLUSH: u64 = 1 << 9;
    /// `topology` is valid.
    pub const TOPOLOGY: u64 = 1 << 10;
    /// `writeback` is writable.
    pub const CONFIG_WCE: u64 = 1 << 11;
    /// Multiple queues.
    pub const MQ: u64 = 1 << 12;
    /// DISCARD is supported.
    pub const DISCARD: u64 = 1 << 13;
    /// WRITE_ZEROES is supported.
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types (spec 5.2.6).
pub mod request_type {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Flush the write cache.
    pub const FLUSH: u32 = 4;
    /// Read the device ID string.
    pub const GET_ID: u32 = 8;
    /// Read the device lifetime (not supported).
    pub const GET_LIFETIME: u32 = 10;
    /// Discard sectors (not supported).
    pub const DISCARD: u32 = 11;
    /// Write zeroes (not supported).
    pub const WRITE_ZEROES: u32 = 13;
    /// Secure erase (not supported).
    pub const SECURE_ERASE: u32 = 14;
}

/// Request status values (spec 5.2.6).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Request not supported.
    pub const UNSUPP: u8 = 2;
}

/// The features this device offers (VERSION_1 is added by the transport).
pub const OFFERED_FEATURES: u64 = feature::SEG_MAX | feature::BLK_SIZE | feature::FLUSH;

/// Most data segments per request: the chain limit minus the header and
/// the status descriptors.
pub const SEG_MAX: u32 = MAX_CHAIN_DESCRIPTORS as u32 - 2;

/// The request header at the start of the readable part
/// (`struct virtio_blk_req` up to `data`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RequestHeader {
    /// One of [`request_type`].
    pub request_type: U32,
    /// Reserved, ignored.
    pub reserved: U32,
    /// First sector (512-byte units) for IN and OUT.
    pub sector: U64,
}

/// The configuration space (`struct virtio_blk_config`, without the zoned
/// extension). Fields whose feature is not offered read as 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkConfig {
    /// Size in 512-byte sectors.
    pub capacity: U64,
    /// Largest segment (with `SIZE_MAX`).
    pub size_max: U32,
    /// Most data segments per request (with `SEG_MAX`).
    pub seg_max: U32,
    /// Geometry: cylinders (with `GEOMETRY`).
    pub cylinders: U16,
    /// Geometry: heads.
    pub heads: u8,
    /// Geometry: sectors per track.
    pub sectors: u8,
    /// Optimal block size (with `BLK_SIZE`).
    pub blk_size: U32,
    /// Topology: log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Topology: offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Topology: suggested minimum I/O size in blocks.
    pub min_io_size: U16,
    /// Topology: optimal I/O size in blocks.
    pub opt_io_size: U32,
    /// Write-back cache mode (with `CONFIG_WCE`).
    pub writeback: u8,
    /// Padding.
    pub unused0: u8,
    /// Number of queues (with `MQ`).
    pub num_queues: U16,
    /// DISCARD limit.
    pub max_discard_sectors: U32,
    /// DISCARD segment limit.
    pub max_discard_seg: U32,
    /// DISCARD alignment.
    pub discard_sector_alignment: U32,
    /// WRITE_ZEROES limit.
    pub max_write_zeroes_sectors: U32,
    /// WRITE_ZEROES segment limit.
    pub max_write_zeroes_seg: U32,
    /// WRITE_ZEROES may unmap.
    pub write_zeroes_may_unmap: u8,
    /// Padding.
    pub unused1: [u8; 3],
    /// SECURE_ERASE limit.
    pub max_secure_erase_sectors: U32,
    /// SECURE_ERASE segment limit.
    pub max_secure_erase_seg: U32,
    /// SECURE_ERASE alignment.
    pub secure_erase_sector_alignment: U32,
}

const _: () = assert!(size_of::<RequestHeader>() == 16);
const _: () = assert!(core::mem::offset_of!(BlkConfig, seg_max) == 12);
const _: () = assert!(core::mem::offset_of!(BlkConfig, blk_size) == 20);
const _: () = assert!(core::mem::offset_of!(BlkConfig, writeback) == 32);
const _: () = assert!(core::mem::offset_of!(BlkConfig, num_queues) == 34);
const _: () = assert!(core::mem::offset_of!(BlkConfig, max_secure_erase_sectors) == 60);
const _: () = assert!(size_of::<BlkConfig>() == 72);

/// A disk held in hypervisor memory, addressed in 512-byte sectors.
///
/// The capacity is the backing length rounded down to whole sectors.
pub struct MemDisk {
    bytes: &'static mut [u8],
}

impl MemDisk {
    /// A disk over `bytes` (which the disk keeps exclusive use of).
    pub fn new(bytes: &'static mut [u8]) -> Self {
        MemDisk { bytes }
    }

    /// Capacity in sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_SIZE
    }

    /// The whole disk (e.g. for tests and for writing an image back).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
    }

    /// Byte range of `len` bytes at `sector`, if entirely on the disk.
    fn range(&self, sector: u64, len: usize) -> Option<Range<usize>> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(u64::try_from(len).ok()?)?;
        if end > self.capacity_sectors() * SECTOR_SIZE {
            return None;
        }
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// `len` bytes starting at `sector`, if entirely on the disk.
    pub fn sectors(&self, sector: u64, len: usize) -> Option<&[u8]> {
        let range = self.range(sector, len)?;
        self.bytes.get(range)
    }

    /// `len` bytes starting at `sector`, mutably, if entirely on the disk.
    pub fn sectors_mut(&mut self, sector: u64, len: usize) -> Option<&mut [u8]> {
        let range = self.range(sector, len)?;
        self.bytes.get_mut(range)
    }
}

impl core::fmt::Debug for MemDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemDisk")
            .field("sectors", &self.capacity_sectors())
            .finish()
    }
}

/// Counters of the block backend (chain-level problems are counted by the
/// queue, see [`QueueStats`](super::QueueStats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// IN requests completed with OK.
    pub reads: u64,
    /// OUT requests completed with OK.
    pub writes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// GET_ID requests.
    pub get_ids: u64,
    /// Bytes copied from the disk to the guest.
    pub bytes_read: u64,
    /// Bytes copied from the guest to the disk.
    pub bytes_written: u64,
    /// Requests completed with IOERR.
    pub io_errors: u64,
    /// Of those, requests whose header was shorter than 16 bytes.
    pub short_headers: u64,
    /// Of those, IN/OUT whose data length is not a multiple of 512.
    pub misaligned: u64,
    /// Of those, IN/OUT past the end of the disk.
    pub out_of_range: u64,
    /// Requests completed with UNSUPP.
    pub unsupported: u64,
    /// Chains without a writable byte for the status (completed with
    /// length 0, no status written).
    pub no_status_byte: u64,
}

/// The role of a virtio-blk request queue: every chain it yields is a
/// [`BlkRequest`]`<`[`HeaderPending`]`>`.
#[derive(Debug)]
pub enum Requests {}

impl sealed::Enter for Requests {
    fn enter(chain: Chain<'_>) -> BlkRequest<'_, HeaderPending> {
        BlkRequest {
            chain,
            state: PhantomData,
        }
    }
}

impl QueueRole for Requests {
    type Entry<'c> = BlkRequest<'c, HeaderPending>;
}

/// Request state: nothing read yet.
#[derive(Debug)]
pub struct HeaderPending;
/// Request state: the header was read; data moves next.
#[derive(Debug)]
pub struct Data;
/// Request state: the status byte was written; only completion remains.
#[derive(Debug)]
pub struct StatusWritten;

/// The chain has no writable byte, so no status can be reported. It was
/// returned with used length 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoStatusByte;

/// A virtio-blk request in state `S`: [`HeaderPending`] → [`Data`] →
/// [`StatusWritten`] → completed.
#[must_use = "a block request must get its status and be completed"]
#[derive(Debug)]
pub struct BlkRequest<'c, S> {
    chain: Chain<'c>,
    state: PhantomData<S>,
}

impl<'c> BlkRequest<'c, HeaderPending> {
    /// Reads the 16-byte header: `Some` if the readable part holds a whole
    /// one, `None` (the request must then fail with IOERR) otherwise. A
    /// chain with no writable byte has nowhere to put the status: it is
    /// returned at once (used length 0) as [`NoStatusByte`].
    pub fn read_header(
        mut self,
    ) -> Result<(Option<RequestHeader>, BlkRequest<'c, Data>), NoStatusByte> {
        if self.chain.writable_len() == 0 {
            self.chain.discard();
            return Err(NoStatusByte);
        }
        let header = self.chain.reader().read_obj::<RequestHeader>().ok();
        Ok((
            header,
            BlkRequest {
                chain: self.chain,
                state: PhantomData,
            },
        ))
    }
}

impl<'c> BlkRequest<'c, Data> {
    /// The data the driver sent: the readable bytes after the header.
    pub fn data_in(&mut self) -> Reader<'_> {
        self.chain.reader()
    }

    /// Room for data to the driver: the writable part without the status
    /// byte, which only [`BlkRequest::finish`] writes.
    pub fn data_out(&mut self) -> Writer<'_> {
        self.chain.writer_reserving(1)
    }

    /// Zeroes the data bytes not written (so the used length never claims
    /// bytes the device did not write), then writes `status` as the last
    /// writable byte. On a copy failure (impossible for a validated chain)
    /// the request is returned with used length 0.
    pub fn finish(mut self, status: u8) -> Result<BlkRequest<'c, StatusWritten>, BufferError> {
        let mut reply = self.chain.writer();
        let unfilled = reply.remaining().saturating_sub(1);
        match reply
            .fill(0, unfilled)
            .and_then(|()| reply.write_obj(&status))
        {
            Ok(()) => Ok(BlkRequest {
                chain: self.chain,
                state: PhantomData,
            }),
            Err(e) => {
                self.chain.discard();
                Err(e)
            }
        }
    }
}

impl BlkRequest<'_, StatusWritten> {
    /// Returns the request to the driver; the used length is data +
    /// status.
    pub fn complete(self) -> u32 {
        self.chain.complete()
    }
}

/// The virtio-blk backend.
#[derive(Debug)]
pub struct VirtioBlk {
    disk: MemDisk,
    id: [u8; ID_BYTES],
    features: Option<Features>,
    stats: BlkStats,
}

impl VirtioBlk {
    /// A block device over `disk` with the ID [`DEFAULT_ID`].
    pub fn new(disk: MemDisk) -> Self {
        Self::with_id(disk, DEFAULT_ID)
    }

    /// A block device over `disk` whose GET_ID answers `id` (NUL-padded,
    /// truncated to 20 bytes).
    pub fn with_id(disk: MemDisk, id: &[u8]) -> Self {
        let mut padded = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        padded[..n].copy_from_slice(&id[..n]);
        VirtioBlk {
            disk,
            id: padded,
            features: None,
            stats: BlkStats::default(),
        }
    }

    /// The disk.
    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }

    /// The counters.
    pub fn stats(&self) -> &BlkStats {
        &self.stats
    }

    /// The features negotiated at DRIVER_OK (None before, and after reset).
    pub fn features(&self) -> Option<Features> {
        self.features
    }

    /// The configuration space contents.
    pub fn config(&self) -> BlkConfig {
        BlkConfig {
            capacity: U64::new(self.disk.capacity_sectors()),
            seg_max: U32::new(SEG_MAX),
            blk_size: U32::new(SECTOR_SIZE as u32),
            ..BlkConfig::default()
        }
    }

    /// Serves one request: header, data, status, completion.
    fn serve(&mut self, request: BlkRequest<'_, HeaderPending>) {
        let Ok((header, mut data)) = request.read_header() else {
            bump(&mut self.stats.no_status_byte);
            return;
        };
        let result = match header {
            None => {
                bump(&mut self.stats.short_headers);
                status::IOERR
            }
            Some(header) => match header.request_type.get() {
                request_type::IN => self.read(header.sector.get(), &mut data.data_out()),
                request_type::OUT => self.write(header.sector.get(), &mut data.data_in()),
                request_type::FLUSH => {
                    bump(&mut self.stats.flushes);
                    status::OK
                }
                request_type::GET_ID => {
                    bump(&mut self.stats.get_ids);
                    let mut reply = data.data_out();
                    let n = (reply.capacity() as usize).min(ID_BYTES);
                    match reply.write_all(&self.id[..n]) {
                        Ok(()) => status::OK,
                        Err(_) => status::IOERR,
                    }
                }
                _ => status::UNSUPP,
            },
        };
        match result {
            status::IOERR => bump(&mut self.stats.io_errors),
            status::UNSUPP => bump(&mut self.stats.unsupported),
            _ => {}
        }
        match data.finish(result) {
            Ok(done) => {
                done.complete();
            }
            // Unreachable for a validated chain; returned with length 0.
            Err(_) => bump(&mut self.stats.io_errors),
        }
    }

    /// IN: disk → guest, as many bytes as `reply` holds (the writable
    /// data before the status byte).
    fn read(&mut self, sector: u64, reply: &mut Writer<'_>) -> u8 {
        let len = reply.capacity();
        if u64::from(len) % SECTOR_SIZE != 0 {
            bump(&mut self.stats.misaligned);
            return status::IOERR;
        }
        let Some(data) = self.disk.sectors(sector, len as usize) else {
            bump(&mut self.stats.out_of_range);
            return status::IOERR;
        };
        match reply.write_all(data) {
            Ok(()) => {
                bump(&mut self.stats.reads);
                self.stats.bytes_read = self.stats.bytes_read.saturating_add(u64::from(len));
                status::OK
            }
            Err(_) => status::IOERR,
        }
    }

    /// OUT: guest → disk, all the readable bytes after the header.
    fn write(&mut self, sector: u64, request: &mut Reader<'_>) -> u8 {
        let len = request.remaining();
        if u64::from(len) % SECTOR_SIZE != 0 {
            bump(&mut self.stats.misaligned);
            return status::IOERR;
        }
        let Some(data) = self.disk.sectors_mut(sector, len as usize) else {
            bump(&mut self.stats.out_of_range);
            return status::IOERR;
        };
        match request.read_exact(data) {
            Ok(()) => {
                bump(&mut self.stats.writes);
                self.stats.bytes_written = self.stats.bytes_written.saturating_add(u64::from(len));
                status::OK
            }
            Err(_) => status::IOERR,
        }
    }
}

impl VirtioDevice for VirtioBlk {
    const DEVICE_ID: u32 = regs::device_id::BLOCK;
    const QUEUE_COUNT: u16 = 1;

    fn device_features(&self) -> u64 {
        OFFERED_FEATURES
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) -> bool {
        read_config_bytes(self.config().as_bytes(), offset, data)
    }

    fn activate(&mut self, features: Features) {
        self.features = Some(features);
    }

    fn queue_notify(&mut self, queue: u16, queues: &mut LiveQueues<'_>) {
        let Some(mut requests) = queues.queue::<Requests>(queue) else {
            return;
        };
        while let Some(request) = requests.pop() {
            self.serve(request);
        }
    }

    fn reset(&mut self) {
        self.features = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sectors: usize) -> MemDisk {
        MemDisk::new(Box::leak(vec![0u8; sectors * 512 + 100].into_boxed_slice()))
    }

    #[test]
    fn disk_ranges() {
        let mut d = disk(4);
        assert_eq!(d.capacity_sectors(), 4);
        assert!(d.sectors(3, 512).is_some());
        assert!(d.sectors(3, 513).is_none(), "the partial tail is not disk");
        assert!(d.sectors(4, 0).is_some());
        assert!(d.sectors(5, 0).is_none());
        assert!(d.sectors(u64::MAX, 512).is_none());
        assert!(d.sectors_mut(u64::MAX / 512, 1024).is_none());
    }

    #[test]
    fn config_layout() {
        let blk = VirtioBlk::new(disk(8));
        let cfg = blk.config();
        let bytes = cfg.as_bytes();
        assert_eq!(&bytes[0..8], &8u64.to_le_bytes());
        assert_eq!(&bytes[12..16], &SEG_MAX.to_le_bytes());
        assert_eq!(&bytes[20..24], &512u32.to_le_bytes());
        let mut word = [0u8; 4];
        assert!(blk.read_config(20, &mut word));
        assert_eq!(u32::from_le_bytes(word), 512);
        assert!(!blk.read_config(70, &mut word));
    }

    #[test]
    fn id_is_padded_and_truncated() {
        let blk = VirtioBlk::with_id(disk(1), b"abc");
        assert_eq!(&blk.id[..4], b"abc\0");
        let blk = VirtioBlk::with_id(disk(1), &[b'x'; 30]);
        assert_eq!(blk.id, [b'x'; 20]);
    }
}
