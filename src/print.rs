//! Formatted output for the hypervisor's own messages.
//!
//! The logic layer never owns a UART; at boot the arch layer registers a
//! writer with [`set_writer`], and [`hv_print!`](crate::hv_print) /
//! [`hv_println!`](crate::hv_println) format into it. Before a writer is
//! registered (and in host tests) output is dropped.

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

struct Sink;

impl Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(write) = writer() {
            write(s);
        }
        Ok(())
    }
}

/// Formats `args` to the registered writer (used by the macros).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let _ = Sink.write_fmt(args);
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
    ($($arg:tt)*) => {{
        $crate::print::print_fmt(format_args!($($arg)*));
        $crate::print::print_fmt(format_args!("\n"));
    }};
}
