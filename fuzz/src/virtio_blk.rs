//! Target `virtio_blk`: virtio-blk driven through the transport with
//! well-formed and malformed requests and random guest memory, checked by
//! [`crate::virtio_model`] and by a model of the disk: an OUT completed
//! with status OK wrote exactly its data to the disk, an IN completed OK
//! returned exactly the disk's bytes, GET_ID returned the ID, nothing else
//! changes the disk, and a completed request's used length covers its
//! whole writable part (data, then the status byte at its end).

use arbitrary::Arbitrary;
use hypervisor::virtio::blk::{DEFAULT_ID, MemDisk, VirtioBlk};
use std::cell::Cell;

use crate::mem::overlaps;
use crate::virtio_model::{DATA_BASE, DATA_SIZE, Guest, Op};

/// Bytes of the fuzzed disk (16 sectors).
pub const DISK_SIZE: usize = 8192;

thread_local! {
    static DISK: Cell<Option<*mut u8>> = const { Cell::new(None) };
}

/// Runs `f` with a virtio-blk backend over this thread's disk (zeroed).
pub fn with_disk<R>(f: impl FnOnce(VirtioBlk) -> R) -> R {
    with_disk_filled(0, f)
}

/// Runs `f` with a virtio-blk backend over this thread's disk, whose byte
/// `i` is `seed ^ i as u8`.
pub fn with_disk_filled<R>(seed: u8, f: impl FnOnce(VirtioBlk) -> R) -> R {
    let ptr = DISK.with(|d| {
        let ptr = d
            .get()
            .unwrap_or_else(|| Box::leak(vec![0u8; DISK_SIZE].into_boxed_slice()).as_mut_ptr());
        d.set(None); // taken: a nested call would allocate its own
        ptr
    });
    // SAFETY: `ptr` is this thread's leaked `DISK_SIZE`-byte buffer, taken
    // out of `DISK` above, so nothing else refers to it until the device
    // that borrows it is dropped at the end of `f` and it is put back.
    let bytes: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, DISK_SIZE) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed ^ i as u8;
    }
    let r = f(VirtioBlk::new(MemDisk::new(bytes)));
    DISK.with(|d| d.set(Some(ptr)));
    r
}

/// Request types as the guest writes them.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Kind {
    /// IN.
    Read,
    /// OUT.
    Write,
    /// FLUSH.
    Flush,
    /// GET_ID.
    GetId,
    /// Any type value.
    Other(u32),
}

/// One guest operation.
#[derive(Arbitrary, Debug)]
pub enum BlkOp {
    /// A request laid out as Linux does: header, data buffers, status.
    Request {
        /// Type.
        kind: Kind,
        /// Sector (wraps at 32 so some fall past the end).
        sector: u8,
        /// Data length in bytes (0 allowed; not always whole sectors).
        data: u16,
        /// Split the data into this many buffers (1..=4).
        split: u8,
        /// Byte the OUT data is filled with.
        fill: u8,
        /// Where the buffers go in the data area.
        place: u16,
    },
    /// QueueNotify.
    Notify,
    /// Any generic operation.
    Other(Op),
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Initial disk contents seed.
    pub seed: u8,
    /// What the guest does.
    pub ops: Vec<BlkOp>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    with_disk_filled(input.seed, |blk| {
        let mut model: Vec<u8> = blk.disk().as_bytes().to_vec();
        let mut guest = Guest::new(blk, 0);
        guest.bring_up(64);
        for op in input.ops.iter().take(128) {
            match op {
                BlkOp::Request {
                    kind,
                    sector,
                    data,
                    split,
                    fill,
                    place,
                } => request(&mut guest, *kind, *sector, *data, *split, *fill, *place),
                BlkOp::Notify => guest.notify(0),
                BlkOp::Other(op) => guest.apply(op),
            }
            check_disk(&mut guest, &mut model);
        }
    });
}

fn request(
    guest: &mut Guest<VirtioBlk>,
    kind: Kind,
    sector: u8,
    data: u16,
    split: u8,
    fill: u8,
    place: u16,
) {
    let request_type: u32 = match kind {
        Kind::Read => 0,
        Kind::Write => 1,
        Kind::Flush => 4,
        Kind::GetId => 8,
        Kind::Other(t) => t,
    };
    let data = u64::from(data) % 4096;
    let start = (DATA_BASE + u64::from(place) % (DATA_SIZE / 2)) & !7;
    let header_at = start;
    let data_at = start + 16;
    let status_at = data_at + data;
    if status_at + 1 > DATA_BASE + DATA_SIZE {
        return;
    }
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&request_type.to_le_bytes());
    header[8..16].copy_from_slice(&u64::from(sector % 32).to_le_bytes());
    let device_writes = request_type != 1;
    let mut bufs = vec![(header_at, 16u32, false)];
    let parts = u64::from(split % 4 + 1).min(data.max(1));
    let mut at = data_at;
    for p in 0..parts {
        let len = if p + 1 == parts {
            data_at + data - at
        } else {
            data / parts
        };
        if len > 0 {
            bufs.push((at, len as u32, device_writes));
        }
        at += len;
    }
    bufs.push((status_at, 1, true));
    if !device_writes && data > 0 {
        guest.store(data_at, &vec![fill; data as usize]);
    }
    guest.offer(0, &bufs, &header, true);
}

/// Concatenated bytes of `bufs` in the guest's shadow.
fn gather(guest: &Guest<VirtioBlk>, bufs: &[(u64, u32)]) -> Vec<u8> {
    bufs.iter()
        .flat_map(|&(a, l)| guest.shadow.read(a, (l as usize).min(1 << 16)))
        .collect()
}

/// Checks the completions of the last step against the disk model.
fn check_disk(guest: &mut Guest<VirtioBlk>, model: &mut [u8]) {
    let done = guest.take_completions();
    if guest.is_desynced() {
        model.copy_from_slice(guest.dev.backend().disk().as_bytes());
        return;
    }
    for c in &done {
        if c.len == 0 || c.queue != 0 {
            continue;
        }
        let room: u64 = c.writable.iter().map(|&(_, l)| u64::from(l)).sum();
        assert_eq!(
            u64::from(c.len),
            room,
            "blk: used length must cover data and status"
        );
        // Buffers shared between requests of one step: the model cannot
        // tell which write came first; take the device's disk as truth.
        let tangled = done.iter().any(|o| {
            c.readable.iter().any(|&(a, l)| {
                o.writable
                    .iter()
                    .any(|&(b, m)| overlaps(a, u64::from(l), b, u64::from(m)))
            })
        }) || done.iter().filter(|o| o.head != c.head).any(|o| {
            c.writable.iter().any(|&(a, l)| {
                o.writable
                    .iter()
                    .any(|&(b, m)| overlaps(a, u64::from(l), b, u64::from(m)))
            })
        });
        if tangled {
            model.copy_from_slice(guest.dev.backend().disk().as_bytes());
            continue;
        }
        let readable = gather(guest, &c.readable);
        let written = gather(guest, &c.writable);
        let status = *written.last().expect("len > 0");
        assert!(status <= 2, "blk: status byte {status}");
        if readable.len() < 16 || status != 0 {
            continue;
        }
        let kind = u32::from_le_bytes(readable[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(readable[8..16].try_into().expect("8 bytes"));
        let at = (sector * 512) as usize;
        match kind {
            0 => {
                let data = &written[..written.len() - 1];
                assert_eq!(
                    Some(data),
                    model.get(at..at + data.len()),
                    "blk: IN returned other bytes than the disk's"
                );
            }
            1 => {
                let data = &readable[16..];
                let dst = model
                    .get_mut(at..at + data.len())
                    .expect("blk: OUT past the disk completed OK");
                dst.copy_from_slice(data);
            }
            8 => {
                let n = (written.len() - 1).min(20);
                let mut id = [0u8; 20];
                id[..DEFAULT_ID.len()].copy_from_slice(DEFAULT_ID);
                assert_eq!(&written[..n], &id[..n], "blk: GET_ID");
            }
            _ => {}
        }
    }
    assert!(
        guest.dev.backend().disk().as_bytes() == &*model,
        "blk: disk differs from the model"
    );
}
