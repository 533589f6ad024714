//! The packet capture's host file: opened through semihosting at boot
//! (`net_capture` in the boot configuration), filled from
//! [`CAPTURE`]'s ring by the run loops' housekeeping, closed when the run
//! ends. `Ctrl-\ c` turns the capture on and off.
//!
//! Nothing here runs inside the switch's lock: the switch only copies
//! records into the ring; the semihosting writes (one trap to QEMU per
//! slice of the ring) happen here, outside any guest and any switch work.

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

use crate::config::BootConfig;
use crate::net::{CAPTURE, VSWITCH};

use super::semihosting::{self, HostFile};
use super::vcpu;

/// The open capture file (None: no capture configured, or it could not be
/// opened).
static FILE: Mutex<Option<HostFile>> = Mutex::new(None);
/// Set by the console's `Ctrl-\ c`; carried out by pCPU 0's housekeeping.
static TOGGLE_REQUESTED: AtomicBool = AtomicBool::new(false);

/// A small formatting buffer (names and descriptions of interfaces).
struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    const fn new() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Opens the capture file of `config` (if it names one and the network is
/// on), writes its headers (one interface per VM port) and turns capture
/// on. Call once, after the ports were added and before any guest runs.
pub fn start(config: &BootConfig) {
    let Some(path) = config.net_capture.filter(|_| config.net) else {
        return;
    };
    let Some(file) = semihosting::open_write(path.as_bytes_with_nul()) else {
        crate::hv_println!(
            "capture: cannot open {} on the host (is QEMU run with -semihosting?); no capture",
            path.as_str()
        );
        return;
    };
    let vms = config.vms.min(crate::platform::MAX_VMS);
    let mut names = [const { Text::<8>::new() }; crate::platform::MAX_VMS];
    let mut descriptions = [const { Text::<64>::new() }; crate::platform::MAX_VMS];
    let mut ports = [("", ""); crate::platform::MAX_VMS];
    for vm in 0..vms {
        let _ = write!(names[vm], "vm{vm}");
        let _ = write!(
            descriptions[vm],
            "switch port {vm}, vlan {}",
            config.net_vlans[vm]
        );
        if config.net_rate_mbit[vm] != 0 {
            let _ = write!(
                descriptions[vm],
                ", tx limit {} Mbit/s",
                config.net_rate_mbit[vm]
            );
        }
    }
    for vm in 0..vms {
        ports[vm] = (names[vm].as_str(), descriptions[vm].as_str());
    }
    if !CAPTURE.begin(vcpu::counter_frequency(), &ports[..vms]) {
        crate::hv_println!("capture: the file headers do not fit the ring; no capture");
        semihosting::close(file);
        return;
    }
    *FILE.lock() = Some(file);
    flush();
    VSWITCH.set_capture(true);
    crate::hv_println!(
        "capture: on, every frame of the switch to {} (pcapng; Ctrl-\\ c toggles)",
        path.as_str()
    );
}

/// Writes what the ring holds to the file (any pCPU; one at a time).
pub fn flush() {
    if CAPTURE.pending() == 0 {
        return;
    }
    let Some(file) = *FILE.lock() else {
        return;
    };
    CAPTURE.drain(|bytes| semihosting::write(file, bytes));
}

/// When the ring must be flushed next: 10 ms after its oldest record,
/// or now if it is a quarter full. `None` when it is empty.
pub fn flush_deadline() -> Option<u64> {
    let since = CAPTURE.pending_since()?;
    if CAPTURE.pending() >= CAPTURE.capacity() / 4 {
        return Some(0);
    }
    Some(since.saturating_add(vcpu::counter_frequency() / 100))
}

/// The console asked to turn capture on or off (pCPU 0's UART handler).
pub fn request_toggle() {
    TOGGLE_REQUESTED.store(true, Ordering::SeqCst);
}

/// A toggle is waiting for pCPU 0's housekeeping.
pub fn toggle_requested() -> bool {
    TOGGLE_REQUESTED.load(Ordering::SeqCst)
}

/// Carries out a requested toggle (pCPU 0's housekeeping): turns capture
/// on or off, writes out what was recorded, and reports.
pub fn apply_toggle() {
    if !TOGGLE_REQUESTED.swap(false, Ordering::SeqCst) {
        return;
    }
    if FILE.lock().is_none() {
        crate::hv_println!(
            "capture: no capture file (make run-multi-vm NET_CAPTURE=FILE, or net_capture= in hv.conf)"
        );
        return;
    }
    let on = !VSWITCH.capture_enabled();
    let clock = VSWITCH.set_capture(on);
    flush();
    let stats = CAPTURE.stats();
    crate::hv_println!(
        "capture: {} at switch frame {}; {}",
        if on { "on" } else { "off" },
        clock,
        stats
    );
}

/// The run ends: writes out the rest and closes the file.
pub fn finish() {
    VSWITCH.set_capture(false);
    flush();
    if let Some(file) = FILE.lock().take() {
        semihosting::close(file);
        crate::hv_println!("capture: closed; {}", CAPTURE.stats());
    }
}
