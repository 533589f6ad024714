//! The emulated PL011 UART every VM sees at [`UART_BASE`] (INTID
//! [`UART_INTID`], level-sensitive).
//!
//! The model is good enough for Linux's `amba-pl011` driver with interrupts
//! and for `earlycon=pl011,...`. Behaviour follows QEMU's `hw/char/pl011.c`
//! where that is a faithful model of the TRM (Arm DDI 0183), and is
//! documented below where it deliberately differs.
//!
//! # Transmit
//! A byte written to DR is appended to a bounded output buffer
//! ([`TX_BUFFER_SIZE`] bytes) that the run loop drains with
//! [`Pl011::take_output`] or [`Pl011::drain_output`] and hands to the
//! console multiplexer. The transmitter is modelled as infinitely fast:
//! FR.TXFE is always set, FR.TXFF and FR.BUSY are never set, so a polling
//! writer (earlycon, `pl011_console_write`) never waits. If the output
//! buffer is full the byte is dropped and counted in
//! [`Pl011Stats::tx_dropped`]; the buffer is large enough that a guest never
//! fills it between two drains of a normally running loop.
//!
//! Every DR write sets RIS.TXIS: the TX FIFO drains instantly, so after each
//! write it is at or below any trigger level. As in QEMU and on hardware
//! (the interrupt fires on the *transition* to the trigger level), TXIS is
//! clear after reset and is cleared only by writing ICR.TXIC; the next DR
//! write raises it again. Linux's driver fills the FIFO from process context
//! while FR.TXFF is clear, so with TXFF never set it writes everything at
//! once and only enables TXIM when it could not; TXIS being set after every
//! write means an enabled TXIM is always answered by an interrupt, so the
//! console cannot stall waiting for one.
//!
//! The UART/transmit enable bits in CR are stored but not enforced for
//! transmission (earlycon writes DR with the reset CR, whose UARTEN is 0;
//! QEMU behaves the same way). In loopback mode (CR.LBE) a written byte goes
//! into the receive FIFO instead of the console.
//!
//! # Receive
//! [`Pl011::push_input`] appends a byte from the physical console to the RX
//! FIFO ([`RX_FIFO_SIZE`] entries; returns `false` and counts when full).
//! Reading DR pops the FIFO; reading DR while empty returns 0.
//!
//! * RXIS is set when a byte arrives and the FIFO level is at or above the
//!   receive trigger level selected by IFLS.RXIFLSEL (fractions 1/8 .. 7/8
//!   of a 16-entry FIFO, the depth Linux assumes for this PeriphID; 1 when
//!   LCR_H.FEN is clear). It is cleared when reads take the level below the
//!   trigger, or by ICR.RXIC, and re-evaluated when IFLS or LCR_H change the
//!   trigger level. Unlike QEMU, toggling FEN does not flush the FIFO
//!   (console input is never thrown away; Linux drains the FIFO at startup
//!   anyway).
//! * RTIS (receive timeout) models the hardware timeout as having expired
//!   immediately: it is set whenever data is present, i.e. when a byte
//!   arrives and after a DR read that leaves data in the FIFO (the hardware
//!   restarts its timeout on each read). It is cleared when the FIFO becomes
//!   empty, or by ICR.RTIC until the next arrival or read. Data can therefore
//!   never sit in the FIFO without a pending RTIS unless the guest explicitly
//!   cleared it.
//!
//! Overrun is not signalled to the guest: a full FIFO makes
//! [`Pl011::push_input`] return `false` so the caller may retry later.
//!
//! # Interrupt line
//! The combined line UARTINTR = `(RIS & IMSC) != 0` is pushed through
//! [`IrqSink::set_level`] on [`Pl011::intid`] after every access or input
//! that may change it (the call is repeated even when the level is
//! unchanged; a level-sensitive sink treats that as a no-op).
//!
//! # Accesses
//! 8-, 16- and 32-bit accesses are accepted when naturally aligned: Linux's
//! driver uses 16-bit accesses (32-bit with `reg-io-width = <4>`), the AMBA
//! bus reads the ID registers with 32-bit loads, earlycon reads FR with
//! 32-bit and writes DR with 8-bit accesses. A register is selected by the
//! word containing the access. An access to the low byte lane of a register
//! (offset divisible by 4) has the register's full effect with the written
//! value zero-extended; a read of a higher lane returns those bits of the
//! register without side effects (all defined bits are in the low 16, so
//! they are normally zero) and a write to a higher lane is ignored and
//! counted. 64-bit or misaligned accesses, unknown offsets, writes to
//! read-only registers and reads of ICR are counted in
//! [`Pl011Stats::bad_accesses`]; such reads return 0 and such writes are
//! ignored.

#![forbid(unsafe_code)]

use core::fmt;

use hal::pl011::{
    FR_RXFE, FR_RXFF, FR_TXFE, INT_ALL, INT_RT, INT_RX, INT_TX, PCELL_ID, PERIPH_ID, offset,
};

use crate::irq::IrqSink;
use crate::mmio::{AccessSize, DeviceContext, MmioDevice, MmioRegion};
use crate::platform::{UART_BASE, UART_INTID, UART_SIZE};

/// Entries in the receive FIFO.
pub const RX_FIFO_SIZE: usize = 32;
/// Bytes of guest output buffered between two drains by the run loop.
pub const TX_BUFFER_SIZE: usize = 4096;
/// FIFO depth the receive trigger levels are computed for (the depth Linux
/// assumes for a PL011 with this PeriphID, revision 1).
pub const NOMINAL_FIFO_DEPTH: usize = 16;

/// Reset value of UARTCR: TXE and RXE set, UART disabled.
const CR_RESET: u32 = 0x0300;
/// Reset value of UARTIFLS: both trigger levels at 1/2.
const IFLS_RESET: u32 = 0x12;
/// UARTCR loopback enable.
const CR_LBE: u32 = 1 << 7;
/// UARTLCR_H FIFO enable.
const LCR_H_FEN: u32 = 1 << 4;

/// Counters a VM's PL011 keeps for the console's statistics command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pl011Stats {
    /// Bytes the guest wrote to DR that reached the output buffer.
    pub tx_bytes: u64,
    /// Bytes the guest wrote to DR while the output buffer was full.
    pub tx_dropped: u64,
    /// Bytes accepted by [`Pl011::push_input`] (and loopback bytes).
    pub rx_bytes: u64,
    /// Bytes refused by [`Pl011::push_input`] because the RX FIFO was full.
    pub rx_overflows: u64,
    /// DR reads while the RX FIFO was empty (harmless, returns 0).
    pub rx_empty_reads: u64,
    /// Accesses to unknown offsets, with a bad width or alignment, writes
    /// to read-only registers and reads of write-only ones.
    pub bad_accesses: u64,
    /// Offset of the most recent bad access.
    pub last_bad_offset: u64,
}

impl fmt::Display for Pl011Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx {} (dropped {}), rx {} (overflow {}, empty reads {}), bad accesses {}",
            self.tx_bytes,
            self.tx_dropped,
            self.rx_bytes,
            self.rx_overflows,
            self.rx_empty_reads,
            self.bad_accesses
        )?;
        if self.bad_accesses != 0 {
            write!(f, " (last at {:#x})", self.last_bad_offset)?;
        }
        Ok(())
    }
}

/// A fixed-capacity byte FIFO.
#[derive(Clone)]
struct ByteRing<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> ByteRing<N> {
    const fn new() -> Self {
        ByteRing {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    const fn len(&self) -> usize {
        self.len
    }

    const fn is_empty(&self) -> bool {
        self.len == 0
    }

    const fn is_full(&self) -> bool {
        self.len == N
    }

    fn push(&mut self, byte: u8) -> bool {
        if self.is_full() {
            return false;
        }
        let tail = (self.head + self.len) % N;
        self.buf[tail] = byte;
        self.len += 1;
        true
    }

    fn peek(&self) -> Option<u8> {
        (!self.is_empty()).then(|| self.buf[self.head])
    }

    fn pop(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(byte)
    }

    /// The queued bytes as (up to) two contiguous slices, oldest first.
    fn as_slices(&self) -> (&[u8], &[u8]) {
        let first_len = self.len.min(N - self.head);
        let first = &self.buf[self.head..self.head + first_len];
        let second = &self.buf[..self.len - first_len];
        (first, second)
    }

    /// Drops the `n` oldest bytes (at most all of them).
    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % N;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }
}

/// One VM's emulated PL011.
#[derive(Clone)]
pub struct Pl011 {
    region: MmioRegion,
    intid: u32,
    rx: ByteRing<RX_FIFO_SIZE>,
    tx: ByteRing<TX_BUFFER_SIZE>,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dmacr: u32,
    stats: Pl011Stats,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Pl011 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pl011")
            .field("region", &self.region)
            .field("intid", &self.intid)
            .field("rx_level", &self.rx.len())
            .field("tx_pending", &self.tx.len())
            .field("cr", &self.cr)
            .field("lcr_h", &self.lcr_h)
            .field("imsc", &self.imsc)
            .field("ris", &self.ris)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The decoded target of an access: which register word, and whether the
/// access touches its low byte lane.
struct Decoded {
    word: u64,
    low_lane: bool,
    shift: u32,
}

impl Pl011 {
    /// A PL011 in its reset state at the QEMU `virt` location
    /// ([`UART_BASE`], INTID [`UART_INTID`]).
    pub const fn new() -> Self {
        Self::at(UART_BASE, UART_INTID)
    }

    /// A PL011 in its reset state with its 4 KiB frame at `base`, signalling
    /// on `intid`.
    pub const fn at(base: u64, intid: u32) -> Self {
        Pl011 {
            region: MmioRegion::new(base, UART_SIZE),
            intid,
            rx: ByteRing::new(),
            tx: ByteRing::new(),
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            ris: 0,
            dmacr: 0,
            stats: Pl011Stats {
                tx_bytes: 0,
                tx_dropped: 0,
                rx_bytes: 0,
                rx_overflows: 0,
                rx_empty_reads: 0,
                bad_accesses: 0,
                last_bad_offset: 0,
            },
        }
    }

    /// The INTID this UART signals on.
    pub const fn intid(&self) -> u32 {
        self.intid
    }

    /// The device's counters.
    pub const fn stats(&self) -> Pl011Stats {
        self.stats
    }

    /// Current level of the combined interrupt line, `(RIS & IMSC) != 0`.
    pub const fn irq_level(&self) -> bool {
        self.ris & self.imsc != 0
    }

    /// Value of the flag register (UARTFR).
    pub const fn flags(&self) -> u32 {
        let mut fr = FR_TXFE;
        if self.rx.is_empty() {
            fr |= FR_RXFE;
        }
        if self.rx.is_full() {
            fr |= FR_RXFF;
        }
        fr
    }

    /// Bytes waiting in the RX FIFO.
    pub const fn rx_level(&self) -> usize {
        self.rx.len()
    }

    /// Free entries in the RX FIFO (how many bytes [`Pl011::push_input`]
    /// would accept now).
    pub const fn rx_space(&self) -> usize {
        RX_FIFO_SIZE - self.rx.len()
    }

    /// Bytes of guest output waiting to be drained.
    pub const fn output_pending(&self) -> usize {
        self.tx.len()
    }

    /// Run-loop entry point: delivers one byte of console input to the
    /// guest. Returns `false` (and counts an overflow) if the RX FIFO is
    /// full; the byte is then not queued and the caller may retry later.
    pub fn push_input(&mut self, byte: u8, irq: &mut dyn IrqSink) -> bool {
        let accepted = self.receive(byte);
        self.update_irq(irq);
        accepted
    }

    /// Moves up to `buf.len()` bytes of guest output, oldest first, into
    /// `buf`; returns how many.
    pub fn take_output(&mut self, buf: &mut [u8]) -> usize {
        let (first, second) = self.tx.as_slices();
        let n1 = first.len().min(buf.len());
        buf[..n1].copy_from_slice(&first[..n1]);
        let n2 = second.len().min(buf.len() - n1);
        buf[n1..n1 + n2].copy_from_slice(&second[..n2]);
        self.tx.consume(n1 + n2);
        n1 + n2
    }

    /// Hands all pending guest output to `sink` (in at most two calls, oldest
    /// first) and empties the output buffer. Returns the number of bytes.
    pub fn drain_output(&mut self, mut sink: impl FnMut(&[u8])) -> usize {
        let (first, second) = self.tx.as_slices();
        let total = first.len() + second.len();
        if !first.is_empty() {
            sink(first);
        }
        if !second.is_empty() {
            sink(second);
        }
        self.tx.consume(total);
        total
    }

    /// Receive trigger level: bytes in the FIFO at which RXIS is raised.
    fn rx_trigger(&self) -> usize {
        if self.lcr_h & LCR_H_FEN == 0 {
            return 1;
        }
        let eighths = match (self.ifls >> 3) & 0x7 {
            0 => 1,
            1 => 2,
            3 => 6,
            4 => 7,
            // 0b010 is 1/2; reserved encodings behave as 1/2 too.
            _ => 4,
        };
        NOMINAL_FIFO_DEPTH * eighths / 8
    }

    /// Queues a received byte and updates RXIS/RTIS (not the line).
    fn receive(&mut self, byte: u8) -> bool {
        if !self.rx.push(byte) {
            self.stats.rx_overflows += 1;
            return false;
        }
        self.stats.rx_bytes += 1;
        self.ris |= INT_RT;
        if self.rx.len() >= self.rx_trigger() {
            self.ris |= INT_RX;
        }
        true
    }

    /// Pops the RX FIFO for a DR read.
    fn read_dr(&mut self) -> u32 {
        let Some(byte) = self.rx.pop() else {
            self.stats.rx_empty_reads += 1;
            self.rsr = 0;
            return 0;
        };
        // Received data carries no error bits: the RSR stays clear.
        self.rsr = 0;
        if self.rx.is_empty() {
            self.ris &= !(INT_RT | INT_RX);
        } else {
            self.ris |= INT_RT;
            if self.rx.len() < self.rx_trigger() {
                self.ris &= !INT_RX;
            }
        }
        u32::from(byte)
    }

    fn write_dr(&mut self, value: u32) {
        let byte = value as u8;
        if self.cr & CR_LBE != 0 {
            // Loopback: the byte is received instead of transmitted.
            self.receive(byte);
        } else if self.tx.push(byte) {
            self.stats.tx_bytes += 1;
        } else {
            self.stats.tx_dropped += 1;
        }
        self.ris |= INT_TX;
    }

    /// Re-evaluates RXIS after the trigger level may have changed.
    fn retrigger_rx(&mut self) {
        if !self.rx.is_empty() && self.rx.len() >= self.rx_trigger() {
            self.ris |= INT_RX;
        } else {
            self.ris &= !INT_RX;
        }
    }

    fn update_irq(&self, irq: &mut dyn IrqSink) {
        irq.set_level(self.intid, self.irq_level());
    }

    fn bad_access(&mut self, offset: u64) {
        self.stats.bad_accesses += 1;
        self.stats.last_bad_offset = offset;
    }

    /// Checks width and alignment and finds the register word.
    fn decode(offset: u64, size: AccessSize) -> Option<Decoded> {
        let bytes = u64::from(size.bytes());
        if bytes > 4 || offset % bytes != 0 || offset >= UART_SIZE {
            return None;
        }
        Some(Decoded {
            word: offset & !3,
            low_lane: offset & 3 == 0,
            shift: ((offset & 3) * 8) as u32,
        })
    }

    /// Value of a readable register without side effects, or `None` if
    /// `word` is not a readable register.
    fn peek(&self, word: u64) -> Option<u32> {
        let value = match word {
            offset::DR => self.rx.peek().map_or(0, u32::from),
            offset::RSR_ECR => self.rsr,
            offset::FR => self.flags(),
            offset::ILPR => self.ilpr,
            offset::IBRD => self.ibrd,
            offset::FBRD => self.fbrd,
            offset::LCR_H => self.lcr_h,
            offset::CR => self.cr,
            offset::IFLS => self.ifls,
            offset::IMSC => self.imsc,
            offset::RIS => self.ris,
            offset::MIS => self.ris & self.imsc,
            offset::DMACR => self.dmacr,
            w if (offset::PERIPH_ID0..offset::PERIPH_ID0 + 16).contains(&w) => {
                PERIPH_ID[((w - offset::PERIPH_ID0) / 4) as usize]
            }
            w if (offset::PCELL_ID0..offset::PCELL_ID0 + 16).contains(&w) => {
                PCELL_ID[((w - offset::PCELL_ID0) / 4) as usize]
            }
            _ => return None,
        };
        Some(value)
    }

    /// Handles a guest load; returns the value (already masked to `size`).
    pub fn mmio_read(&mut self, offset: u64, size: AccessSize, irq: &mut dyn IrqSink) -> u64 {
        let Some(d) = Self::decode(offset, size) else {
            self.bad_access(offset);
            return 0;
        };
        let value = if d.low_lane && d.word == offset::DR {
            let value = self.read_dr();
            self.update_irq(irq);
            Some(value)
        } else {
            self.peek(d.word).map(|v| v >> d.shift)
        };
        match value {
            Some(v) => u64::from(v) & size.mask(),
            None => {
                // Includes ICR, which is write-only.
                self.bad_access(offset);
                0
            }
        }
    }

    /// Handles a guest store of the low `size` bytes of `value`.
    pub fn mmio_write(&mut self, offset: u64, size: AccessSize, value: u64, irq: &mut dyn IrqSink) {
        let Some(d) = Self::decode(offset, size) else {
            self.bad_access(offset);
            return;
        };
        if !d.low_lane {
            self.bad_access(offset);
            return;
        }
        let value = (value & size.mask()) as u32;
        match d.word {
            offset::DR => self.write_dr(value),
            // Any write to ECR clears the (always clear) error flags.
            offset::RSR_ECR => self.rsr = 0,
            offset::ILPR => self.ilpr = value & 0xff,
            offset::IBRD => self.ibrd = value & 0xffff,
            offset::FBRD => self.fbrd = value & 0x3f,
            offset::LCR_H => {
                self.lcr_h = value & 0xff;
                self.retrigger_rx();
            }
            offset::CR => self.cr = value & 0xffff,
            offset::IFLS => {
                self.ifls = value & 0x3f;
                self.retrigger_rx();
            }
            offset::IMSC => self.imsc = value & INT_ALL,
            offset::ICR => self.ris &= !value,
            offset::DMACR => self.dmacr = value & 0x7,
            _ => {
                // Unknown offsets and read-only registers (FR, RIS, MIS, IDs).
                self.bad_access(offset);
                return;
            }
        }
        self.update_irq(irq);
    }
}

impl MmioDevice for Pl011 {
    fn region(&self) -> MmioRegion {
        self.region
    }

    fn read(&mut self, offset: u64, size: AccessSize, ctx: &mut DeviceContext<'_>) -> u64 {
        self.mmio_read(offset, size, ctx.irq)
    }

    fn write(&mut self, offset: u64, size: AccessSize, value: u64, ctx: &mut DeviceContext<'_>) {
        self.mmio_write(offset, size, value, ctx.irq)
    }
}

#[cfg(test)]
mod tests;
