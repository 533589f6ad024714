//! The hypervisor's console driver for the physical PL011 at 0x0900_0000.
//!
//! Output is polled (the FIFO drains at emulation speed on QEMU); input is
//! read in the run loop when the UART's receive interrupt (INTID 33) fires.

use hal::pl011::{FR, Pl011Registers};
use tock_registers::interfaces::{Readable, Writeable};

use crate::platform::UART_BASE;

fn regs() -> &'static Pl011Registers {
    // SAFETY: only ever accessed through shared volatile tock-registers cells.
    // The PL011 register block lives at UART_BASE on QEMU virt and is mapped
    // as Device memory by the EL2 MMU.
    unsafe { &*(UART_BASE as usize as *const Pl011Registers) }
}

/// Enables the UART (8N1, FIFOs) with its receive interrupts unmasked.
pub fn init() {
    let r = regs();
    r.cr.set(0);
    r.lcr_h.set((0b11 << 5) | (1 << 4)); // 8 bits, FIFO enable
    r.imsc.set((1 << 4) | (1 << 6)); // RXIM | RTIM
    r.icr.set(0x7ff);
    r.cr.set((1 << 0) | (1 << 8) | (1 << 9)); // UARTEN | TXE | RXE
}

/// Writes one byte, waiting while the transmit FIFO is full.
pub fn put_byte(byte: u8) {
    let r = regs();
    while r.fr.is_set(FR::TXFF) {
        core::hint::spin_loop();
    }
    r.dr.set(byte as u32);
}

/// Writes bytes, translating `\n` to `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put_byte(b'\r');
        }
        put_byte(b);
    }
}

/// Writes raw bytes without newline translation (guest output, which
/// already carries its own `\r\n`).
pub fn write_raw(bytes: &[u8]) {
    for &b in bytes {
        put_byte(b);
    }
}

/// Reads one received byte, if any.
pub fn get_byte() -> Option<u8> {
    let r = regs();
    if r.fr.is_set(FR::RXFE) {
        None
    } else {
        Some((r.dr.get() & 0xff) as u8)
    }
}

/// Clears the receive interrupts after draining.
pub fn ack_rx_interrupt() {
    regs().icr.set((1 << 4) | (1 << 6));
}
