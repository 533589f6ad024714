//! Target `pl011`: every register at every offset and width, console input
//! and output interleaved. A model of the two byte queues checks that input
//! is accepted while the 32-byte receive FIFO has room and read back from
//! DR in order (FR.RXFE telling the truth), and that the guest's output is
//! exactly the bytes it wrote to DR (loopback bytes going to the receive
//! side instead), oldest first, up to the 4 KiB output buffer.

use arbitrary::Arbitrary;
use hypervisor::devices::pl011::{Pl011, RX_FIFO_SIZE, TX_BUFFER_SIZE};
use hypervisor::irq::RecordingIrqSink;
use hypervisor::mmio::AccessSize;
use std::collections::VecDeque;

use crate::virtio_model::Width;

const DR: u64 = 0x000;
const FR: u64 = 0x018;
const CR: u64 = 0x030;
const FR_RXFE: u64 = 1 << 4;
const CR_LBE: u64 = 1 << 7;

/// The data register's widths.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum DrWidth {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
}

impl DrWidth {
    fn size(self) -> AccessSize {
        match self {
            DrWidth::Byte => AccessSize::Byte,
            DrWidth::Half => AccessSize::Half,
            DrWidth::Word => AccessSize::Word,
        }
    }
}

/// One operation.
#[derive(Arbitrary, Debug)]
pub enum UartOp {
    /// Any register except DR (offsets 8 and up, wrapping at 4 KiB).
    Reg {
        /// Offset.
        offset: u16,
        /// Width.
        width: Width,
        /// Value (writes).
        value: u64,
        /// Write or read.
        write: bool,
    },
    /// The guest writes a byte to DR.
    Put(DrWidth, u32),
    /// The guest reads DR.
    Get(DrWidth),
    /// A console byte arrives.
    Input(u8),
    /// The run loop takes up to `n` output bytes.
    Output(u16),
}

/// The input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Operations.
    pub ops: Vec<UartOp>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    let mut uart = Pl011::new();
    let mut irq = RecordingIrqSink::new();
    let mut rx: VecDeque<u8> = VecDeque::new();
    let mut tx: VecDeque<u8> = VecDeque::new();
    for op in input.ops.iter().take(1024) {
        match *op {
            UartOp::Reg {
                offset,
                width,
                value,
                write,
            } => {
                let size = width.size();
                let off = 8 + u64::from(offset) % (0x1000 - 8);
                if off + u64::from(size.bytes()) > 0x1000 {
                    continue;
                }
                if write {
                    uart.mmio_write(off, size, value & size.mask(), &mut irq);
                } else {
                    let v = uart.mmio_read(off, size, &mut irq);
                    assert_eq!(v & !size.mask(), 0, "read wider than the access");
                }
            }
            UartOp::Put(width, value) => {
                let loopback = uart.mmio_read(CR, AccessSize::Word, &mut irq) & CR_LBE != 0;
                let size = width.size();
                uart.mmio_write(DR, size, u64::from(value) & size.mask(), &mut irq);
                let byte = value as u8;
                if loopback {
                    if rx.len() < RX_FIFO_SIZE {
                        rx.push_back(byte);
                    }
                } else if tx.len() < TX_BUFFER_SIZE {
                    tx.push_back(byte);
                }
            }
            UartOp::Get(width) => {
                let v = uart.mmio_read(DR, width.size(), &mut irq);
                match rx.pop_front() {
                    Some(b) => assert_eq!(v & 0xff, u64::from(b), "DR returned another byte"),
                    None => assert_eq!(v, 0, "DR read with an empty FIFO"),
                }
            }
            UartOp::Input(b) => {
                let accepted = uart.push_input(b, &mut irq);
                assert_eq!(accepted, rx.len() < RX_FIFO_SIZE, "input accepted");
                if accepted {
                    rx.push_back(b);
                }
            }
            UartOp::Output(n) => {
                let mut buf = vec![0u8; usize::from(n) % 5000];
                let got = uart.take_output(&mut buf);
                let want: Vec<u8> = tx.drain(..got.min(tx.len())).collect();
                assert_eq!(&buf[..got], want.as_slice(), "output differs");
                assert!(
                    got == buf.len() || tx.is_empty(),
                    "output left behind with room to take it"
                );
            }
        }
        let fr = uart.mmio_read(FR, AccessSize::Word, &mut irq);
        assert_eq!(fr & FR_RXFE != 0, rx.is_empty(), "FR.RXFE");
        assert_eq!(uart.output_pending(), tx.len(), "output pending");
    }
}
