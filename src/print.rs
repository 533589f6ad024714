//! Formatted output for the hypervisor's own messages.
//!
//! The logic layer never owns a UART; at boot the arch layer registers a
//! writer with [`set_writer`], and [`hv_print!`](crate::hv_print) /
//! [`hv_println!`](crate::hv_println) format into it. Before a writer is
//! registered (and in host tests) output is dropped.
//!
//! Each call is formatted completely into a buffer first and handed to the
//! writer in one piece (up to [`PRINT_BUFFER`] bytes), so that messages
//! printed by two physical CPUs at once do not mix inside a line.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicPtr, Ordering};

/// A function that writes a string to the hypervisor console.
pub type WriterFn = fn(&str);

static WRITER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Registers the function that receives all hypervisor output.
pub fn set_writer(writer: WriterFn) {
    WRITER.store(writer as *mut (), Ordering::Release);
}

fn writer() -> Option<WriterFn> {
    let raw = WRITER.load(Ordering::Acquire);
    if raw.is_null() {
        None
    } else {
        // Function and data pointers have the same size on every target.
        // SAFETY: the only non-null value ever stored is a `WriterFn` cast
        // to a data pointer in `set_writer`.
        Some(unsafe { core::mem::transmute::<*mut (), WriterFn>(raw) })
    }
}

/// Bytes one print call is assembled in before it is written.
pub const PRINT_BUFFER: usize = 2048;

/// Collects formatted text and hands it to the writer in as few pieces as
/// possible (one, unless the text is longer than [`PRINT_BUFFER`]).
struct Batch<'w> {
    buf: [u8; PRINT_BUFFER],
    len: usize,
    write: &'w dyn Fn(&str),
}

impl Batch<'_> {
    fn flush(&mut self) {
        if self.len > 0 {
            // Only whole `&str`s are ever appended, so the buffer is UTF-8
            // up to `len` (a split never falls inside a character).
            if let Ok(text) = core::str::from_utf8(&self.buf[..self.len]) {
                (self.write)(text);
            }
            self.len = 0;
        }
    }
}

impl Write for Batch<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > PRINT_BUFFER {
            self.flush();
        }
        if s.len() > PRINT_BUFFER {
            (self.write)(s);
        } else {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
        }
        Ok(())
    }
}

/// Formats `args` and writes the result to the registered writer in one
/// piece (used by the macros).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    if let Some(write) = writer() {
        let mut batch = Batch {
            buf: [0; PRINT_BUFFER],
            len: 0,
            write: &write,
        };
        let _ = batch.write_fmt(args);
        batch.flush();
    }
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! hv_print {
    ($($arg:tt)*) => { $crate::print::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the hypervisor console.
#[macro_export]
macro_rules! hv_println {
    () => { $crate::print::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::print::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record(s: &str) {
        // Other tests may print concurrently; keep only this test's text.
        if s.contains("vm1 exits") || s.starts_with("ab") || s.starts_with('x') {
            CALLS.lock().unwrap().push(s.to_string());
        }
    }

    #[test]
    fn a_line_reaches_the_writer_in_one_piece() {
        set_writer(record);
        crate::hv_println!("vm{} exits: hvc={} mmio={}", 1, 2, 3);
        let long = "x".repeat(PRINT_BUFFER + 10);
        crate::hv_print!("{}{}", "ab", long);
        let calls = CALLS.lock().unwrap();
        assert!(calls.contains(&"vm1 exits: hvc=2 mmio=3\n".to_string()));
        // Longer than the buffer: still complete, in order.
        let start = calls.iter().position(|c| c.starts_with("ab")).unwrap();
        assert_eq!(calls[start..].concat(), format!("ab{long}"));
    }
}
