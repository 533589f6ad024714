//! The emulated PL011 driven as Linux and its earlycon drive it: the AMBA
//! probe, transmit and receive paths with their interrupts and FIFO limits,
//! loopback, and bad offsets and access widths.

use super::*;
use crate::guest_memory::GuestMemory;
use crate::irq::RecordingIrqSink;
use hal::pl011::{FR_BUSY, FR_TXFF};

const W: AccessSize = AccessSize::Word;
const H: AccessSize = AccessSize::Half;
const B: AccessSize = AccessSize::Byte;

/// A guest driving the device through the `MmioDevice` interface.
struct Guest {
    uart: Pl011,
    irq: RecordingIrqSink,
    mem: GuestMemory,
}

impl Guest {
    fn new() -> Self {
        let backing: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
        Guest {
            uart: Pl011::new(),
            irq: RecordingIrqSink::new(),
            mem: GuestMemory::from_static(0x4000_0000, backing),
        }
    }

    fn read(&mut self, offset: u64, size: AccessSize) -> u64 {
        let mut ctx = DeviceContext {
            mem: &self.mem,
            irq: &mut self.irq,
            vcpu: 0,
        };
        MmioDevice::read(&mut self.uart, offset, size, &mut ctx)
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64) {
        let mut ctx = DeviceContext {
            mem: &self.mem,
            irq: &mut self.irq,
            vcpu: 0,
        };
        MmioDevice::write(&mut self.uart, offset, size, value, &mut ctx)
    }

    fn push(&mut self, byte: u8) -> bool {
        self.uart.push_input(byte, &mut self.irq)
    }

    fn line(&self) -> bool {
        self.irq.level_of(UART_INTID)
    }

    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.uart.drain_output(|b| out.extend_from_slice(b));
        out
    }

    /// Linux's `pl011_fifo_to_tty`: read FR, stop on RXFE, read DR.
    fn linux_rx_chars(&mut self) -> Vec<u8> {
        let mut got = Vec::new();
        for _ in 0..256 {
            if self.read(offset::FR, H) as u32 & FR_RXFE != 0 {
                break;
            }
            got.push(self.read(offset::DR, H) as u8);
        }
        got
    }
}

#[test]
fn region_and_intid_follow_qemu_virt() {
    let uart = Pl011::new();
    assert_eq!(uart.region(), MmioRegion::new(0x0900_0000, 0x1000));
    assert_eq!(uart.intid(), 33);
    let other = Pl011::at(0x1c09_0000, 37);
    assert_eq!(other.region().base, 0x1c09_0000);
    assert_eq!(other.intid(), 37);
}

#[test]
fn amba_probe_reads_id_registers() {
    let mut g = Guest::new();
    // drivers/amba/bus.c reads PeriphID and CellID with 32-bit loads at
    // size - 0x20 + 4 * i and keeps the low byte of each.
    let mut pid = 0u32;
    let mut cid = 0u32;
    for i in 0..4 {
        pid |= (g.read(0xfe0 + 4 * i, W) as u32 & 0xff) << (8 * i);
        cid |= (g.read(0xff0 + 4 * i, W) as u32 & 0xff) << (8 * i);
    }
    assert_eq!(cid, 0xb105_f00d, "AMBA PrimeCell magic");
    assert_eq!(
        pid & 0x000f_ffff,
        0x0004_1011,
        "matches Linux's pl011_ids[0]"
    );
    assert_eq!(pid, 0x0014_1011);
    // Byte-wide reads of the IDs work too.
    assert_eq!(g.read(0xfe0, B), 0x11);
    assert_eq!(g.read(0xffc, B), 0xb1);
    assert_eq!(g.uart.stats().bad_accesses, 0);
}

#[test]
fn reset_values() {
    let mut g = Guest::new();
    assert_eq!(g.read(offset::FR, W) as u32, FR_TXFE | FR_RXFE);
    assert_eq!(g.read(offset::CR, W), 0x300);
    assert_eq!(g.read(offset::IFLS, W), 0x12);
    assert_eq!(g.read(offset::LCR_H, W), 0);
    assert_eq!(g.read(offset::IMSC, W), 0);
    assert_eq!(g.read(offset::RIS, W), 0);
    assert_eq!(g.read(offset::MIS, W), 0);
    assert_eq!(g.read(offset::RSR_ECR, W), 0);
    assert!(!g.uart.irq_level());
}

#[test]
fn linux_probe_and_startup_sequence() {
    let mut g = Guest::new();
    // pl011_register_port: mask and clear everything.
    g.write(offset::IMSC, H, 0);
    g.write(offset::ICR, H, 0xffff);
    // pl011_hwinit: clear errors and RX, read IMSC, enable RX interrupts.
    g.write(offset::ICR, H, 0x7c0 | 0x50);
    let _ = g.read(offset::IMSC, H);
    g.write(offset::IMSC, H, u64::from(INT_RT | INT_RX));
    // pl011_startup: IFLS, CR.
    g.write(offset::IFLS, H, 0x12);
    let cr = g.read(offset::CR, H) & (1 << 11 | 1 << 10);
    g.write(offset::CR, H, cr | 0x301);
    let _ = g.read(offset::FR, H);
    // pl011_enable_interrupts: clear RT/RX, drain, enable.
    g.write(offset::ICR, H, u64::from(INT_RT | INT_RX));
    assert!(g.linux_rx_chars().is_empty());
    g.write(offset::IMSC, H, u64::from(INT_RT | INT_RX));
    // pl011_set_termios: baud divisors, LCR_H after them, CR.
    g.write(offset::FBRD, H, 0x1b);
    g.write(offset::IBRD, H, 0x0d);
    g.write(offset::LCR_H, H, 0x70);
    g.write(offset::CR, H, 0x301);
    assert_eq!(g.read(offset::IBRD, H), 0x0d);
    assert_eq!(g.read(offset::FBRD, H), 0x1b);
    assert_eq!(g.read(offset::LCR_H, H), 0x70);
    assert_eq!(g.read(offset::CR, H), 0x301);
    assert_eq!(g.read(offset::IMSC, H) as u32, INT_RT | INT_RX);
    assert!(!g.line(), "nothing pending after startup");
    assert_eq!(g.uart.stats().bad_accesses, 0);
}

#[test]
fn registers_store_and_mask() {
    let mut g = Guest::new();
    g.write(offset::IBRD, W, 0xdead_beef);
    g.write(offset::FBRD, W, 0xffff_ffff);
    g.write(offset::LCR_H, W, 0x1ff);
    g.write(offset::CR, W, 0xffff_ff7f); // LBE left clear
    g.write(offset::IFLS, W, 0xff);
    g.write(offset::DMACR, W, 0xff);
    g.write(offset::ILPR, W, 0x1234);
    g.write(offset::IMSC, W, 0xffff_ffff);
    assert_eq!(g.read(offset::IBRD, W), 0xbeef);
    assert_eq!(g.read(offset::FBRD, W), 0x3f);
    assert_eq!(g.read(offset::LCR_H, W), 0xff);
    assert_eq!(g.read(offset::CR, W), 0xff7f);
    assert_eq!(g.read(offset::IFLS, W), 0x3f);
    assert_eq!(g.read(offset::DMACR, W), 0x7);
    assert_eq!(g.read(offset::ILPR, W), 0x34);
    assert_eq!(g.read(offset::IMSC, W) as u32, INT_ALL);
}

#[test]
fn earlycon_polling_write() {
    let mut g = Guest::new();
    // pl011_putc: readl(FR) until !TXFF, writeb(DR), readl(FR) while BUSY.
    for &c in b"Booting Linux\r\n" {
        let fr = g.read(offset::FR, W) as u32;
        assert_eq!(fr & FR_TXFF, 0);
        assert_ne!(fr & FR_TXFE, 0);
        g.write(offset::DR, B, u64::from(c));
        assert_eq!(g.read(offset::FR, W) as u32 & FR_BUSY, 0);
    }
    assert_eq!(g.output(), b"Booting Linux\r\n");
    assert_eq!(g.uart.stats().tx_bytes, 15);
    // Interrupts are masked: the line stays low even though TXIS is set.
    assert!(!g.line());
    assert_ne!(g.read(offset::RIS, W) as u32 & INT_TX, 0);
    assert_eq!(g.read(offset::MIS, W), 0);
}

#[test]
fn dr_write_uses_only_the_data_byte() {
    let mut g = Guest::new();
    g.write(offset::DR, W, 0xffff_ff41);
    g.write(offset::DR, H, 0x0142);
    assert_eq!(g.output(), b"AB");
}

#[test]
fn interrupt_driven_tx() {
    let mut g = Guest::new();
    // Enable TXIM with nothing written since reset: no interrupt yet
    // (hardware and QEMU raise TXIS on the FIFO draining, not at reset).
    g.write(offset::IMSC, H, u64::from(INT_TX));
    assert!(!g.line());
    // A write raises TXIS and, unmasked, the line.
    g.write(offset::DR, H, u64::from(b'x'));
    assert!(g.line());
    assert_eq!(g.read(offset::MIS, H) as u32, INT_TX);
    // ICR.TXIC clears it and the line drops.
    g.write(offset::ICR, H, u64::from(INT_TX));
    assert!(!g.line());
    assert_eq!(g.read(offset::RIS, H) as u32 & INT_TX, 0);
    // The next write raises it again.
    g.write(offset::DR, H, u64::from(b'y'));
    assert!(g.line());
    // Masking TXIM (Linux's pl011_stop_tx) drops the line, RIS stays.
    g.write(offset::IMSC, H, 0);
    assert!(!g.line());
    assert_ne!(g.read(offset::RIS, H) as u32 & INT_TX, 0);
    // Unmasking while TXIS is set raises it immediately.
    g.write(offset::IMSC, H, u64::from(INT_TX));
    assert!(g.line());
    assert_eq!(g.output(), b"xy");
}

#[test]
fn linux_tx_irq_handler_terminates() {
    // pl011_int with TXIM enabled: it writes up to fifosize/2 bytes per
    // pass and masks TXIM when its buffer is empty; the device must keep
    // asking while the driver has data and go quiet afterwards.
    let mut g = Guest::new();
    let mut pending: Vec<u8> = b"a long line that needs several passes\r\n".to_vec();
    g.write(offset::DR, H, u64::from(b'>'));
    g.write(offset::IMSC, H, u64::from(INT_RT | INT_RX | INT_TX));
    let mut passes = 0;
    while g.line() {
        passes += 1;
        assert!(passes < 100, "interrupt storm");
        let status = g.read(offset::RIS, H) as u32 & g.read(offset::IMSC, H) as u32;
        g.write(
            offset::ICR,
            H,
            u64::from(status & !(INT_TX | INT_RT | INT_RX)),
        );
        if status & INT_TX != 0 {
            for _ in 0..8 {
                if pending.is_empty() {
                    break;
                }
                g.write(offset::DR, H, u64::from(pending.remove(0)));
            }
            if pending.is_empty() {
                g.write(offset::IMSC, H, u64::from(INT_RT | INT_RX));
            }
        }
    }
    assert_eq!(passes, 5);
    assert_eq!(g.output(), b">a long line that needs several passes\r\n");
}

#[test]
fn rx_path_raises_and_drops_the_line() {
    let mut g = Guest::new();
    g.write(offset::LCR_H, H, 0x70); // FIFOs on, 8 bits
    g.write(offset::IMSC, H, u64::from(INT_RT | INT_RX));
    assert!(g.push(b'l'));
    // One byte: below the 1/2 trigger (8) so only the timeout fires.
    assert_eq!(g.read(offset::RIS, H) as u32, INT_RT);
    assert!(g.line());
    assert_eq!(g.read(offset::FR, H) as u32 & FR_RXFE, 0);
    assert!(g.push(b's'));
    assert_eq!(g.linux_rx_chars(), b"ls");
    assert!(!g.line());
    assert_eq!(g.read(offset::RIS, H), 0);
    assert_ne!(g.read(offset::FR, H) as u32 & FR_RXFE, 0);
    assert_eq!(g.uart.stats().rx_bytes, 2);
}

#[test]
fn rx_trigger_level() {
    let mut g = Guest::new();
    g.write(offset::LCR_H, H, 0x70);
    g.write(offset::IMSC, H, u64::from(INT_RX));
    for i in 0..7 {
        assert!(g.push(b'0' + i));
        assert!(!g.line(), "below trigger after {} bytes", i + 1);
    }
    assert!(g.push(b'7'));
    assert!(g.line(), "RXIS at 8 bytes (1/2 of 16)");
    assert_eq!(g.read(offset::DR, H), u64::from(b'0'));
    assert!(!g.line(), "RXIS clears below the trigger");
    // Lowering the trigger to 1/8 (2 bytes) re-raises it.
    g.write(offset::IFLS, H, 0);
    assert!(g.line());
    // With FIFOs disabled the trigger is one byte.
    g.write(offset::IFLS, H, 0x12);
    assert!(!g.line());
    g.write(offset::LCR_H, H, 0x60);
    assert!(g.line());
    assert_eq!(g.linux_rx_chars(), b"1234567");
    assert!(!g.line());
}

#[test]
fn rx_timeout_after_icr_and_reads() {
    let mut g = Guest::new();
    g.write(offset::LCR_H, H, 0x70);
    g.write(offset::IMSC, H, u64::from(INT_RT));
    g.push(b'a');
    g.push(b'b');
    assert!(g.line());
    // An explicit clear is honoured while nothing happens...
    g.write(offset::ICR, H, u64::from(INT_RT));
    assert!(!g.line());
    // ...and a read that leaves data restarts (and expires) the timeout.
    assert_eq!(g.read(offset::DR, H), u64::from(b'a'));
    assert!(g.line());
    assert_eq!(g.read(offset::DR, H), u64::from(b'b'));
    assert!(!g.line());
    // A new arrival after a clear raises it again.
    g.push(b'c');
    g.write(offset::ICR, H, u64::from(INT_RT));
    assert!(!g.line());
    g.push(b'd');
    assert!(g.line());
}

#[test]
fn rx_fifo_overflow_is_counted() {
    let mut g = Guest::new();
    for i in 0..RX_FIFO_SIZE {
        assert!(g.push(i as u8));
    }
    assert_eq!(g.uart.rx_space(), 0);
    assert_ne!(g.read(offset::FR, W) as u32 & FR_RXFF, 0);
    assert!(!g.push(0xaa));
    assert!(!g.push(0xbb));
    assert_eq!(g.uart.stats().rx_overflows, 2);
    assert_eq!(g.uart.stats().rx_bytes, RX_FIFO_SIZE as u64);
    // The FIFO content is intact and in order.
    let got = g.linux_rx_chars();
    assert_eq!(got, (0..RX_FIFO_SIZE as u8).collect::<Vec<_>>());
    assert_eq!(g.read(offset::FR, W) as u32 & FR_RXFF, 0);
    assert!(g.push(0xcc));
}

#[test]
fn empty_dr_read_is_harmless() {
    let mut g = Guest::new();
    assert_eq!(g.read(offset::DR, W), 0);
    assert_eq!(g.read(offset::DR, B), 0);
    assert_eq!(g.uart.stats().rx_empty_reads, 2);
    assert_eq!(g.uart.stats().bad_accesses, 0);
}

#[test]
fn earlycon_byte_reads_of_dr() {
    let mut g = Guest::new();
    g.push(b'q');
    // pl011_getc with UPIO_MEM: readl(FR), readb(DR).
    assert_eq!(g.read(offset::FR, W) as u32 & FR_RXFE, 0);
    assert_eq!(g.read(offset::DR, B), u64::from(b'q'));
    assert_ne!(g.read(offset::FR, W) as u32 & FR_RXFE, 0);
}

#[test]
fn tx_buffer_full_drops_and_counts() {
    let mut g = Guest::new();
    for i in 0..TX_BUFFER_SIZE + 10 {
        g.write(offset::DR, B, (i % 251) as u64);
        // The guest never sees backpressure.
        assert_eq!(g.read(offset::FR, W) as u32 & FR_TXFF, 0);
    }
    let s = g.uart.stats();
    assert_eq!(s.tx_bytes, TX_BUFFER_SIZE as u64);
    assert_eq!(s.tx_dropped, 10);
    let mut buf = [0u8; 1000];
    let n = g.uart.take_output(&mut buf);
    assert_eq!(n, 1000);
    assert!(buf.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(g.uart.output_pending(), TX_BUFFER_SIZE - 1000);
    // Refill past the wrap point and check ordering across it.
    for i in 0..1000 {
        g.write(offset::DR, B, (i % 7) as u64);
    }
    let out = g.output();
    assert_eq!(out.len(), TX_BUFFER_SIZE);
    assert!(
        out[..TX_BUFFER_SIZE - 1000]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((i + 1000) % 251) as u8)
    );
    assert!(
        out[TX_BUFFER_SIZE - 1000..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 7) as u8)
    );
    assert_eq!(g.uart.output_pending(), 0);
}

#[test]
fn take_output_in_small_pieces() {
    let mut g = Guest::new();
    for &c in b"hello world" {
        g.write(offset::DR, W, u64::from(c));
    }
    let mut all = Vec::new();
    let mut buf = [0u8; 3];
    loop {
        let n = g.uart.take_output(&mut buf);
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    assert_eq!(all, b"hello world");
    assert_eq!(g.uart.take_output(&mut []), 0);
}

#[test]
fn loopback_receives_instead_of_transmitting() {
    let mut g = Guest::new();
    g.write(offset::CR, H, u64::from(0x301 | CR_LBE));
    g.write(offset::DR, H, 0x55);
    assert!(g.output().is_empty());
    assert_eq!(g.read(offset::DR, H), 0x55);
    g.write(offset::CR, H, 0x301);
    g.write(offset::DR, H, 0x56);
    assert_eq!(g.output(), [0x56]);
}

#[test]
fn bad_offsets_and_widths_are_counted() {
    let mut g = Guest::new();
    // Unknown offsets read 0 and ignore writes.
    for off in [0x008u64, 0x01c, 0x04c, 0x100, 0xf00, 0xfdc] {
        assert_eq!(g.read(off, W), 0);
        g.write(off, W, 0xffff_ffff);
    }
    assert_eq!(g.uart.stats().bad_accesses, 12);
    assert_eq!(g.uart.stats().last_bad_offset, 0xfdc);
    // 64-bit and misaligned accesses.
    assert_eq!(g.read(offset::FR, AccessSize::Double), 0);
    g.write(offset::DR, AccessSize::Double, 0x41);
    assert_eq!(g.read(0x19, H), 0);
    g.write(0x02, W, 0x41);
    assert_eq!(g.uart.stats().bad_accesses, 16);
    // Read-only registers ignore writes, ICR reads as 0.
    g.write(offset::FR, W, 0);
    g.write(offset::RIS, W, 0xffff);
    g.write(offset::MIS, W, 0xffff);
    g.write(0xfe0, W, 0);
    assert_eq!(g.read(offset::ICR, W), 0);
    assert_eq!(g.uart.stats().bad_accesses, 21);
    // Offsets past the frame (not routed here normally) are refused.
    assert_eq!(g.read(UART_SIZE, W), 0);
    assert_eq!(g.read(!3u64, W), 0);
    g.write(u64::MAX, B, 0);
    assert_eq!(g.uart.stats().bad_accesses, 24);
    // Nothing leaked into the output or the registers.
    assert!(g.output().is_empty());
    assert_eq!(g.read(offset::FR, W) as u32, FR_TXFE | FR_RXFE);
    assert_eq!(g.read(offset::RIS, W), 0);
}

#[test]
fn upper_byte_lanes() {
    let mut g = Guest::new();
    g.write(offset::CR, W, 0x0b01);
    assert_eq!(g.read(offset::CR + 1, B), 0x0b);
    assert_eq!(g.read(offset::CR + 2, H), 0);
    // A read of DR's upper lane does not pop the FIFO.
    g.push(b'z');
    assert_eq!(g.read(offset::DR + 1, B), 0);
    assert_eq!(g.uart.rx_level(), 1);
    // Writes to upper lanes are ignored and counted.
    let before = g.uart.stats().bad_accesses;
    g.write(offset::DR + 1, B, 0x41);
    g.write(offset::CR + 2, H, 0xffff);
    assert_eq!(g.uart.stats().bad_accesses, before + 2);
    assert!(g.output().is_empty());
    assert_eq!(g.read(offset::CR, W), 0x0b01);
}

#[test]
fn exhaustive_offsets_never_panic() {
    let mut g = Guest::new();
    let sizes = [B, H, W, AccessSize::Double];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for off in 0..UART_SIZE + 16 {
        for size in sizes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = g.read(off, size);
            // Keep the FIFO and loopback from masking other effects.
            if off & !3 != offset::CR {
                g.write(off, size, x);
            }
        }
    }
    // The device still works afterwards.
    g.write(offset::IMSC, W, 0);
    g.write(offset::ICR, W, 0xffff);
    assert!(!g.line());
    g.write(offset::DR, W, u64::from(b'!'));
    assert_eq!(g.output().last(), Some(&b'!'));
}

#[test]
fn stats_display() {
    let mut g = Guest::new();
    g.write(offset::DR, W, 0x41);
    let _ = g.read(0x100, W);
    let text = format!("{}", g.uart.stats());
    assert!(text.contains("tx 1"), "{text}");
    assert!(text.contains("bad accesses 1 (last at 0x100)"), "{text}");
}
