//! Target `virtio_net`: two VMs, each with its own RAM and virtio-net
//! device, connected through a switch. Besides the per-guest checks of
//! [`crate::virtio_model`]:
//!
//! - one VM's activity (MMIO, TX, RX drains) never changes the other VM's
//!   RAM;
//! - TX chains complete with used length 0;
//! - every frame a VM receives is a 12-byte header (all zero but
//!   `num_buffers`) followed by a frame the *other* VM transmitted
//!   unmodified, carrying that VM's own MAC as source (spoofed frames never
//!   arrive); without `MRG_RXBUF` `num_buffers` is 1 and the used length
//!   exactly header + frame; with it (negotiated by every run) the frame
//!   is the `num_buffers` used entries published together, none of them
//!   empty, their used lengths adding up to header + frame.

use arbitrary::Arbitrary;
use hypervisor::net::{
    MAX_PORTS, NET_RX_BYTES, NET_RX_DEPTH, NetRxRing, NetSwitch, PortConfig, VSwitch,
};
use hypervisor::virtio::net::feature::MRG_RXBUF;
use hypervisor::virtio::net::{VirtioNet, drain_rx};
use std::sync::Mutex;

use crate::virtio_model::{Completion, DATA_BASE, DATA_SIZE, Guest, Op};

static RINGS: [NetRxRing<NET_RX_DEPTH, NET_RX_BYTES>; MAX_PORTS] =
    [const { NetRxRing::new() }; MAX_PORTS];
static SWITCH: NetSwitch = VSwitch::new(&RINGS);
/// The switch is shared by every run in the process; runs take turns.
static TURN: Mutex<()> = Mutex::new(());

const VMS: usize = 2;

/// Where a transmitted frame is addressed.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Dst {
    /// The other VM's MAC.
    Peer,
    /// Broadcast.
    Broadcast,
    /// The sender's own MAC.
    Itself,
    /// Any address.
    Any([u8; 6]),
}

/// One guest operation.
#[derive(Arbitrary, Debug)]
pub enum NetOp {
    /// Transmit one frame from VM `vm % 2`.
    Tx {
        /// Sender.
        vm: u8,
        /// Destination.
        dst: Dst,
        /// Forge the source MAC.
        spoof: Option<[u8; 6]>,
        /// Frame length (wraps at 1600: some are too long or too short).
        len: u16,
        /// Payload byte.
        fill: u8,
        /// Header and frame in separate descriptors.
        split: bool,
        /// Notify the TX queue afterwards.
        notify: bool,
    },
    /// Post `count` receive buffers of `len` bytes on VM `vm % 2`.
    PostRx {
        /// VM.
        vm: u8,
        /// Buffers (1..=8).
        count: u8,
        /// Length of each (wraps at 2048).
        len: u16,
        /// Notify the RX queue afterwards.
        notify: bool,
    },
    /// The run loop drains VM `vm % 2`'s port ring.
    Drain(u8),
    /// Any generic operation on VM `vm % 2`.
    Vm(u8, Op),
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// QueueNum of both queues of both VMs.
    pub size: u16,
    /// What the guests do.
    pub ops: Vec<NetOp>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    SWITCH.reset();
    let mut guests: Vec<Guest<VirtioNet>> = (0..VMS)
        .map(|vm| {
            SWITCH
                .add_port(vm, PortConfig::locked_to(VirtioNet::mac_for_vm(vm)))
                .expect("port");
            Guest::new(VirtioNet::with_switch(vm, &SWITCH), 1)
        })
        .collect();
    let size = 1u16 << (input.size % 9);
    for g in &mut guests {
        g.bring_up(size);
    }
    let mut sent: [Vec<Vec<u8>>; VMS] = [Vec::new(), Vec::new()];
    let mut rx_next = [0u64; VMS];
    for op in input.ops.iter().take(128) {
        let vm = match op {
            NetOp::Tx { vm, .. }
            | NetOp::PostRx { vm, .. }
            | NetOp::Drain(vm)
            | NetOp::Vm(vm, _) => usize::from(*vm) % VMS,
        };
        let g = &mut guests[vm];
        match op {
            NetOp::Tx {
                dst,
                spoof,
                len,
                fill,
                split,
                notify,
                ..
            } => {
                let own = VirtioNet::mac_for_vm(vm);
                let dst = match dst {
                    Dst::Peer => VirtioNet::mac_for_vm(1 - vm),
                    Dst::Broadcast => [0xff; 6],
                    Dst::Itself => own,
                    Dst::Any(m) => *m,
                };
                let len = usize::from(*len) % 1600;
                let mut frame = vec![*fill; len];
                let src = spoof.unwrap_or(own);
                for (i, b) in dst.iter().chain(&src).enumerate().take(len) {
                    frame[i] = *b;
                }
                sent[vm].push(frame.clone());
                let mut packet = vec![0u8; 12];
                packet.extend_from_slice(&frame);
                let at = DATA_BASE + 0x100;
                g.store(at, &packet);
                let bufs = if *split && len > 0 {
                    vec![(at, 12, false), (at + 12, len as u32, false)]
                } else {
                    vec![(at, packet.len() as u32, false)]
                };
                g.offer(1, &bufs, &[], true);
                if *notify {
                    g.notify(1);
                }
            }
            NetOp::PostRx {
                count, len, notify, ..
            } => {
                let len = u64::from(*len) % 2048;
                for _ in 0..count % 8 + 1 {
                    let at = DATA_BASE + 0x1000 + rx_next[vm] % (DATA_SIZE - 0x1000 - 2048);
                    rx_next[vm] += len.max(1);
                    g.offer(0, &[(at, len as u32, true)], &[], true);
                }
                if *notify {
                    g.notify(0);
                }
            }
            NetOp::Drain(_) => {
                if let Some(ring) = SWITCH.ring(vm) {
                    g.step(|dev, ctx| drain_rx(dev, ring, ctx));
                }
            }
            NetOp::Vm(_, op) => g.apply(op),
        }
        guests[1 - vm].assert_untouched("the other VM's activity");
        check_frames(&mut guests[vm], vm, &sent);
    }
}

/// Checks the completions of VM `vm`'s last operation.
fn check_frames(g: &mut Guest<VirtioNet>, vm: usize, sent: &[Vec<Vec<u8>>; VMS]) {
    let done = g.take_completions();
    let merged = g
        .dev
        .backend()
        .features()
        .is_some_and(|f| f.contains(MRG_RXBUF));
    let mut rx = Vec::new();
    for c in &done {
        if c.queue == 1 {
            assert_eq!(c.len, 0, "net: TX completion with a used length");
        } else {
            rx.push(c);
        }
    }
    // Two buffers of one batch over the same bytes: the later write won,
    // so neither can be checked.
    let shared = |c: &Completion| {
        done.iter().filter(|o| !std::ptr::eq(*o, c)).any(|o| {
            c.writable.iter().any(|&(a, l)| {
                o.writable
                    .iter()
                    .any(|&(b, m)| crate::mem::overlaps(a, u64::from(l), b, u64::from(m)))
            })
        })
    };
    let bytes_of = |c: &Completion| -> Vec<u8> {
        c.writable
            .iter()
            .flat_map(|&(a, l)| g.shadow.read(a, (l as usize).min(1 << 16)))
            .take(c.len as usize)
            .collect()
    };
    let mut i = 0;
    while let Some(c) = rx.get(i) {
        i += 1;
        // A returned buffer (dropped frame, malformed chain) is never part
        // of a delivery.
        if c.len == 0 {
            continue;
        }
        if shared(c) {
            if merged {
                // `num_buffers` may have been overwritten: the rest of the
                // batch cannot be split into frames.
                return;
            }
            continue;
        }
        let mut bytes = bytes_of(c);
        assert!(bytes.len() >= 12, "net: RX used length {}", c.len);
        assert_eq!(&bytes[..10], &[0; 10], "net: RX header");
        let n = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
        if merged {
            assert!(n >= 1, "net: num_buffers 0");
            let rest = rx
                .get(i..i + n - 1)
                .unwrap_or_else(|| panic!("net: {n} buffers announced, fewer published with them"));
            i += n - 1;
            let mut unchecked = false;
            for part in rest {
                assert_ne!(part.len, 0, "net: empty buffer inside a frame");
                unchecked |= shared(part);
                bytes.extend(bytes_of(part));
            }
            if unchecked {
                continue;
            }
        } else {
            assert_eq!(n, 1, "net: num_buffers without MRG_RXBUF");
        }
        assert!(
            bytes.len() >= 12 + 14,
            "net: RX frame of {} bytes",
            bytes.len() - 12
        );
        let frame = &bytes[12..];
        let from = (0..VMS)
            .find(|&s| frame[6..12] == VirtioNet::mac_for_vm(s))
            .unwrap_or_else(|| panic!("net: VM {vm} received a frame with a foreign source"));
        assert_ne!(from, vm, "net: VM {vm} received its own frame");
        assert!(
            sent[from].iter().any(|f| f.as_slice() == frame),
            "net: VM {vm} received a frame VM {from} never sent"
        );
    }
}
