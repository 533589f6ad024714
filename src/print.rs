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
//!
//! A panic or an exception taken at EL2 must be reported even when it
//! happens while the console lock is held — by this CPU (a fault inside
//! the console code) or by a CPU that will never let it go. The writer
//! takes the console lock through [`REPORT_GATE`]: in normal operation it
//! waits for the lock; once a report has begun ([`ReportGate::begin`]) it
//! tries for a bounded time and otherwise writes around the lock, and every
//! later line of the report does so at once.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

use spin::{Mutex, MutexGuard, Once};

/// A function that writes a string to the hypervisor console.
pub type WriterFn = fn(&str);

static WRITER: Once<WriterFn> = Once::new();

/// Registers the function that receives all hypervisor output. Only the
/// first registration takes effect; returns whether this one did.
pub fn set_writer(writer: WriterFn) -> bool {
    let mut registered = false;
    WRITER.call_once(|| {
        registered = true;
        writer
    });
    registered
}

fn writer() -> Option<WriterFn> {
    WRITER.get().copied()
}

/// Attempts a report makes to take the console lock before it writes
/// around it: far longer than any one console write holds the lock (QEMU's
/// PL011 never makes the transmitter wait), short enough (tens of
/// milliseconds under emulation) that a report always comes out.
pub const REPORT_LOCK_ATTEMPTS: u32 = 1 << 20;

const GATE_NORMAL: u8 = 0;
const GATE_REPORTING: u8 = 1;
const GATE_BYPASS: u8 = 2;

/// Decides whether console output may wait for the console lock.
pub struct ReportGate {
    state: AtomicU8,
}

/// The gate the hypervisor's console writer goes through.
pub static REPORT_GATE: ReportGate = ReportGate::new();

impl ReportGate {
    /// A gate in normal operation.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(GATE_NORMAL),
        }
    }

    /// A panic or exception report begins: from now on the console lock
    /// is never waited for without bound.
    pub fn begin(&self) {
        let _ = self.state.compare_exchange(
            GATE_NORMAL,
            GATE_REPORTING,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Whether output has given up on the lock (a report found it held).
    pub fn bypassing(&self) -> bool {
        self.state.load(Ordering::SeqCst) == GATE_BYPASS
    }

    /// Takes `lock` for one console write. In normal operation this waits
    /// for the lock. During a report it tries `attempts` times; if the
    /// lock stays held it returns `None` (the caller writes to the device
    /// directly) and so does every later call, without trying again.
    pub fn lock<'a, T>(&self, lock: &'a Mutex<T>, attempts: u32) -> Option<MutexGuard<'a, T>> {
        match self.state.load(Ordering::SeqCst) {
            GATE_NORMAL => Some(lock.lock()),
            GATE_REPORTING => {
                for _ in 0..attempts {
                    if let Some(guard) = lock.try_lock() {
                        return Some(guard);
                    }
                    core::hint::spin_loop();
                }
                self.state.store(GATE_BYPASS, Ordering::SeqCst);
                None
            }
            _ => None,
        }
    }
}

impl Default for ReportGate {
    fn default() -> Self {
        Self::new()
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

    static CALLS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    fn record(s: &str) {
        // Other tests may print concurrently; keep only this test's text.
        if s.contains("vm1 exits") || s.starts_with("ab") || s.starts_with('x') {
            CALLS.lock().unwrap().push(s.to_string());
        }
    }

    fn ignore(_: &str) {}

    #[test]
    fn a_line_reaches_the_writer_in_one_piece() {
        assert!(set_writer(record), "the first writer is registered");
        assert!(!set_writer(ignore), "a second writer is refused");
        crate::hv_println!("vm{} exits: hvc={} mmio={}", 1, 2, 3);
        let long = "x".repeat(PRINT_BUFFER + 10);
        crate::hv_print!("{}{}", "ab", long);
        let calls = CALLS.lock().unwrap();
        assert!(calls.contains(&"vm1 exits: hvc=2 mmio=3\n".to_string()));
        // Longer than the buffer: still complete, in order.
        let start = calls.iter().position(|c| c.starts_with("ab")).unwrap();
        assert_eq!(calls[start..].concat(), format!("ab{long}"));
    }

    #[test]
    fn normal_output_waits_for_the_lock() {
        let gate = ReportGate::new();
        let lock = Mutex::new(0u32);
        *gate.lock(&lock, 1).expect("free lock") += 1;
        assert_eq!(*lock.lock(), 1);
        assert!(!gate.bypassing());
    }

    #[test]
    fn a_report_takes_a_free_lock() {
        let gate = ReportGate::new();
        gate.begin();
        let lock = Mutex::new(());
        assert!(gate.lock(&lock, 1).is_some());
        assert!(!gate.bypassing());
    }

    #[test]
    fn a_report_writes_around_a_lock_held_by_its_own_cpu() {
        let gate = ReportGate::new();
        let lock = Mutex::new(());
        let held = lock.lock(); // the console code was interrupted here
        gate.begin();
        assert!(gate.lock(&lock, 1000).is_none(), "no deadlock");
        assert!(gate.bypassing());
        drop(held);
        // The rest of the report does not try again, even with the lock free.
        assert!(gate.lock(&lock, 1000).is_none());
    }

    #[test]
    fn a_report_waits_for_a_lock_released_by_another_cpu() {
        let gate = ReportGate::new();
        let lock = Mutex::new(());
        let taken = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let held = lock.lock();
                taken.wait();
                std::thread::sleep(std::time::Duration::from_millis(5));
                drop(held);
            });
            taken.wait();
            gate.begin();
            assert!(gate.lock(&lock, u32::MAX).is_some());
        });
        assert!(!gate.bypassing());
    }
}
