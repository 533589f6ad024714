//! The console multiplexer: attributes guest output to its VM line by line,
//! routes input to the VM with focus, and interprets the escape key.
//!
//! One physical UART is shared by the hypervisor and up to
//! [`MAX_VMS`] VMs. [`ConsoleMux`] is pure logic: the run loop feeds it each
//! VM's output (drained from that VM's emulated PL011) and the hypervisor's
//! own messages, and it writes the byte stream for the physical UART to a
//! [`ConsoleSink`]; the run loop feeds it bytes read from the physical UART
//! and it answers with an [`InputAction`]. Nothing here is
//! terminal-specific: it works the same with a pipe on QEMU's stdin.
//!
//! # Output
//! In [`OutputMode::Prefix`] (the default) every output line begins with
//! its source's prefix, `[vm0] `, `[vm1] `, … or `[hv] `, exactly once, and
//! the characters of two sources are never mixed inside a line:
//!
//! * Each source has a line buffer of [`LINE_CAPACITY`] bytes. A complete
//!   line (ended by `\n`) is written in one go: prefix, text, line ending.
//! * `\r\n` (what Linux's tty layer emits), `\n` alone and `\r\r\n` all end
//!   a line once; the mux writes its own line ending
//!   ([`LineEnding::CrLf`] by default). A lone `\r` followed by more text
//!   (progress meters, shell line redraws) is reproduced as `\r` followed by
//!   the prefix again, so the redrawn text overwrites the old text but keeps
//!   its attribution; a lone `\r` at the start of a line is dropped.
//! * A line longer than the buffer is written in pieces as the buffer fills
//!   (never dropped); the pieces continue the same physical line unless
//!   another source prints in between.
//! * A source whose partial line is on screen ("owns the open line") has
//!   further output written through immediately, without a new prefix:
//!   typing echo after a prompt appears at once. As soon as another source
//!   prints, the open line is first terminated with a line ending; the
//!   original source's continuation then starts a new, prefixed line.
//!
//! * Control characters and escape sequences in VM output are neutralised
//!   by a per-VM [`Sanitizer`] as the text reaches the console: a VM cannot
//!   move the cursor into its prefix, erase it, or move to another line, so
//!   its text never appears under another source's prefix, while a shell's
//!   line editing (backspace, `ESC[K`, colours) keeps working. See
//!   [`sanitize`] for the rule; [`ConsoleMux::output_stats`] counts what was
//!   dropped per VM.
//!
//! In [`OutputMode::Raw`] VM output is passed through byte for byte, without
//! prefixes or line buffering (for a single VM whose user wants a clean
//! console). Hypervisor messages keep their `[hv] ` prefix and still start
//! on a fresh line.
//!
//! # Idle-flush contract
//! A partial line (a shell prompt `~ # ` without newline) must become
//! visible. The run loop calls [`ConsoleMux::flush_idle`]`(now)`
//! periodically (e.g. every scheduling tick) with the same monotonic clock
//! it passes to [`ConsoleMux::write`]. Every source whose buffered partial
//! line holds bytes that arrived at least [`ConsoleConfig::idle_ticks`]
//! ticks before `now` (measured from the *first* byte of the buffered part)
//! is written out, oldest first, and then owns the open line. The latency of
//! a prompt is therefore at most `idle_ticks` plus the flush period; a
//! source that already owns the open line never waits. `idle_ticks = 0`
//! makes every `flush_idle` call write all partial lines.
//! [`ConsoleMux::flush_all`] writes everything regardless of age and ends
//! the open line (for shutdown or before printing through another path).
//!
//! # Input and the escape key
//! Input bytes go to the VM with focus (VM 0 at start) as
//! [`InputAction::Deliver`]. The escape key is **Ctrl-\\** ([`ESCAPE_BYTE`],
//! 0x1c), followed by a command byte:
//!
//! | after Ctrl-\\ | effect                                                      |
//! |---------------|-------------------------------------------------------------|
//! | `0`-`9`       | focus VM n, if it exists (otherwise a message, no change)   |
//! | `n`           | focus the next VM (wrapping)                                |
//! | `s`           | [`InputAction::ShowStats`]: the run loop prints counters    |
//! | `c`           | [`InputAction::ToggleCapture`]: packet capture on or off    |
//! | `r` then `0`-`9` | [`InputAction::RestartVm`]: restart VM n (also a stopped one) |
//! | `k` then `0`-`9` | [`InputAction::StopVm`]: stop VM n                       |
//! | `h`, `?`      | print help                                                  |
//! | Ctrl-\\       | deliver a literal 0x1c to the focused VM                    |
//! | anything else | print help                                                  |
//!
//! A focus change prints `[hv] console focus: vm1` through the output path;
//! `r`/`k` confirm with `[hv] console: restarting vm1` or
//! `[hv] console: stopping vm1`, and name a missing VM instead.
//!
//! Why Ctrl-\\: QEMU's character-device multiplexer (`-nographic`, i.e.
//! `-serial mon:stdio`) intercepts only its own escape character, Ctrl-A
//! by default (`-echr`), and passes every other byte to the UART. For
//! `mon:stdio` QEMU also sets `signal=off`, clearing ISIG on the host
//! terminal, so Ctrl-\\ reaches the guest as a byte instead of raising
//! SIGQUIT. (With a plain `-serial stdio` QEMU leaves ISIG on and Ctrl-\\
//! would kill QEMU; use `-nographic` or `-chardev stdio,id=c,signal=off`.)
//! From a pipe there is no terminal at all and 0x1c is an ordinary byte.
//! Inside a Linux guest Ctrl-\\ is VQUIT (SIGQUIT to the foreground job),
//! rarely needed on a console, and still available by typing it twice.

#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};

use crate::platform::MAX_VMS;

#[cfg(test)]
mod command_tests;
mod input;
pub mod sanitize;
#[cfg(test)]
mod sanitize_tests;

pub use sanitize::{SanitizeStats, Sanitizer};

/// Bytes of a source's line buffered before it is written in pieces.
pub const LINE_CAPACITY: usize = 512;
/// The escape key: Ctrl-\ (ASCII FS, 0x1c).
pub const ESCAPE_BYTE: u8 = 0x1c;

/// Number of line buffers: one per possible VM plus the hypervisor's.
const SOURCES: usize = MAX_VMS + 1;
/// Index of the hypervisor's line buffer.
const HV_INDEX: usize = MAX_VMS;

/// Who produced some output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The hypervisor itself (prefix `[hv] `).
    Hv,
    /// VM `n` (prefix `[vmn] `).
    Vm(usize),
}

/// How VM output is presented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputMode {
    /// Line-buffered, every line prefixed with its source.
    #[default]
    Prefix,
    /// VM output passed through unchanged, without prefixes.
    Raw,
}

/// Line ending the mux writes after each line it emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineEnding {
    /// `\r\n`, right for a raw terminal and for logs.
    #[default]
    CrLf,
    /// `\n` only.
    Lf,
}

impl LineEnding {
    /// The bytes of this line ending.
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }
}

/// Configuration of a [`ConsoleMux`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Number of VMs (clamped to `1..=MAX_VMS`).
    pub vm_count: usize,
    /// Prefixed or raw VM output.
    pub mode: OutputMode,
    /// Colour the prefixes with ANSI escape sequences.
    pub colour: bool,
    /// Age, in the caller's clock ticks, after which [`ConsoleMux::flush_idle`]
    /// writes out a partial line.
    pub idle_ticks: u64,
    /// Line ending written after each line.
    pub line_ending: LineEnding,
}

impl ConsoleConfig {
    /// Prefix mode, no colour, `\r\n` line endings, for `vm_count` VMs with
    /// partial lines flushed after `idle_ticks`.
    pub const fn new(vm_count: usize, idle_ticks: u64) -> Self {
        ConsoleConfig {
            vm_count,
            mode: OutputMode::Prefix,
            colour: false,
            idle_ticks,
            line_ending: LineEnding::CrLf,
        }
    }
}

/// Where the mux writes the byte stream for the physical UART.
///
/// Implemented for every `FnMut(&[u8])`, so a closure can be passed as
/// `&mut |bytes: &[u8]| ...`.
pub trait ConsoleSink {
    /// Writes `bytes` to the physical console, in order.
    fn write_bytes(&mut self, bytes: &[u8]);
}

impl<F: FnMut(&[u8])> ConsoleSink for F {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self(bytes)
    }
}

/// What the run loop should do with a byte of console input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputAction {
    /// Nothing (the byte was part of an escape sequence).
    None,
    /// Push `byte` into VM `vm`'s emulated UART.
    Deliver {
        /// The VM with focus.
        vm: usize,
        /// The byte to deliver.
        byte: u8,
    },
    /// Print device statistics (the mux does not know the devices).
    ShowStats,
    /// Turn the switch's packet capture on or off (the run loop reports).
    ToggleCapture,
    /// Restart VM `n` (`Ctrl-\ r n`); the mux has printed a confirmation.
    RestartVm(usize),
    /// Stop VM `n` (`Ctrl-\ k n`); the mux has printed a confirmation.
    StopVm(usize),
}

/// A VM command waiting for its VM number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmCommand {
    Restart,
    Stop,
}

/// Counters of the multiplexer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleStats {
    /// Lines ended (by their source or by the mux's own messages).
    pub lines: u64,
    /// Partial lines written by [`ConsoleMux::flush_idle`] or
    /// [`ConsoleMux::flush_all`].
    pub partial_flushes: u64,
    /// Pieces written because a line filled its buffer.
    pub long_line_splits: u64,
    /// Open partial lines ended early because another source printed.
    pub interrupted_lines: u64,
    /// Output bytes naming a VM that does not exist (dropped).
    pub bad_source_bytes: u64,
    /// Input bytes fed to [`ConsoleMux::feed_input`].
    pub input_bytes: u64,
    /// Input bytes delivered to a VM.
    pub delivered: u64,
    /// Escape commands executed.
    pub commands: u64,
    /// Escape commands not understood (or naming a missing VM).
    pub bad_commands: u64,
}

impl fmt::Display for ConsoleStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lines {}, partial flushes {}, long splits {}, interrupted {}, bad source bytes {}, \
             input {} (delivered {}, commands {}, bad {})",
            self.lines,
            self.partial_flushes,
            self.long_line_splits,
            self.interrupted_lines,
            self.bad_source_bytes,
            self.input_bytes,
            self.delivered,
            self.commands,
            self.bad_commands
        )
    }
}

/// One source's pending line.
#[derive(Clone)]
struct LineBuf {
    buf: [u8; LINE_CAPACITY],
    len: usize,
    /// Clock value when the first byte now in `buf` arrived.
    since: u64,
    /// The last byte seen was `\r`; whether it ends the line depends on the
    /// next byte.
    cr_pending: bool,
    /// Part of the current line has already been written.
    visible: bool,
}

impl LineBuf {
    const fn new() -> Self {
        LineBuf {
            buf: [0; LINE_CAPACITY],
            len: 0,
            since: 0,
            cr_pending: false,
            visible: false,
        }
    }
}

/// A small formatting buffer for the mux's own messages (truncates).
struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The console multiplexer. See the [module documentation](self).
#[derive(Clone)]
pub struct ConsoleMux {
    config: ConsoleConfig,
    lines: [LineBuf; SOURCES],
    /// The source whose partial line is on screen, not yet ended.
    open: Option<Source>,
    focus: usize,
    escape_pending: bool,
    /// `r` or `k` was typed after the escape key; the VM number comes next.
    vm_command: Option<VmCommand>,
    stats: ConsoleStats,
    /// Output filters, one per VM.
    sanitizers: [Sanitizer; MAX_VMS],
}

impl fmt::Debug for ConsoleMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleMux")
            .field("config", &self.config)
            .field("open", &self.open)
            .field("focus", &self.focus)
            .field("escape_pending", &self.escape_pending)
            .field("vm_command", &self.vm_command)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Adapter that formats into the hypervisor's output stream.
struct HvWriter<'a> {
    mux: &'a mut ConsoleMux,
    now: u64,
    out: &'a mut dyn ConsoleSink,
}

impl fmt::Write for HvWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.mux.write(Source::Hv, s.as_bytes(), self.now, self.out);
        Ok(())
    }
}

impl ConsoleMux {
    /// A multiplexer with empty buffers and focus on VM 0.
    pub const fn new(config: ConsoleConfig) -> Self {
        let mut config = config;
        if config.vm_count == 0 {
            config.vm_count = 1;
        } else if config.vm_count > MAX_VMS {
            config.vm_count = MAX_VMS;
        }
        ConsoleMux {
            config,
            lines: [const { LineBuf::new() }; SOURCES],
            open: None,
            focus: 0,
            escape_pending: false,
            vm_command: None,
            stats: ConsoleStats {
                lines: 0,
                partial_flushes: 0,
                long_line_splits: 0,
                interrupted_lines: 0,
                bad_source_bytes: 0,
                input_bytes: 0,
                delivered: 0,
                commands: 0,
                bad_commands: 0,
            },
            sanitizers: [const { Sanitizer::new() }; MAX_VMS],
        }
    }

    /// What was neutralised in VM `vm`'s output (zero for a VM that does
    /// not exist).
    pub fn output_stats(&self, vm: usize) -> SanitizeStats {
        self.sanitizers
            .get(vm)
            .map(Sanitizer::stats)
            .unwrap_or_default()
    }

    /// The configuration in effect (with `vm_count` clamped).
    pub const fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    /// Number of VMs.
    pub const fn vm_count(&self) -> usize {
        self.config.vm_count
    }

    /// The VM that receives input.
    pub const fn focus(&self) -> usize {
        self.focus
    }

    /// The mux's counters.
    pub const fn stats(&self) -> ConsoleStats {
        self.stats
    }

    /// True while an escape key has been read and its command is not yet
    /// complete (the command byte, or the VM number after `r` or `k`).
    pub const fn escape_pending(&self) -> bool {
        self.escape_pending || self.vm_command.is_some()
    }

    /// Turns prefix colouring on or off.
    pub fn set_colour(&mut self, colour: bool) {
        self.config.colour = colour;
    }

    /// Switches the output mode, first writing out all buffered output.
    pub fn set_mode(&mut self, mode: OutputMode, out: &mut dyn ConsoleSink) {
        if mode != self.config.mode {
            self.flush_all(out);
            self.config.mode = mode;
        }
    }

    /// Gives VM `vm` the input focus and announces it; `false` (and a
    /// message) if there is no such VM.
    pub fn set_focus(&mut self, vm: usize, out: &mut dyn ConsoleSink) -> bool {
        if vm >= self.config.vm_count {
            let mut msg = StackBuf::<96>::new();
            let _ = write!(
                msg,
                "console: no vm{} (vm0-vm{})",
                vm,
                self.config.vm_count - 1
            );
            self.announce(msg.as_bytes(), out);
            return false;
        }
        self.focus = vm;
        let mut msg = StackBuf::<48>::new();
        let _ = write!(msg, "console focus: vm{vm}");
        self.announce(msg.as_bytes(), out);
        true
    }

    /// Processes output `bytes` from `src` that arrived at time `now`.
    /// Output for a VM that does not exist is dropped and counted.
    pub fn write(&mut self, src: Source, bytes: &[u8], now: u64, out: &mut dyn ConsoleSink) {
        let Some(idx) = self.index(src) else {
            self.stats.bad_source_bytes += bytes.len() as u64;
            return;
        };
        if self.config.mode == OutputMode::Raw && src != Source::Hv {
            self.write_raw(src, bytes, out);
            return;
        }
        for &byte in bytes {
            self.process(idx, src, byte, now, out);
        }
        // The owner of the open line never waits.
        if self.open == Some(src) {
            self.emit_partial(idx, src, out);
        }
    }

    /// [`ConsoleMux::write`] for VM `vm`.
    pub fn write_vm(&mut self, vm: usize, bytes: &[u8], now: u64, out: &mut dyn ConsoleSink) {
        self.write(Source::Vm(vm), bytes, now, out);
    }

    /// [`ConsoleMux::write`] for the hypervisor's own output.
    pub fn write_hv(&mut self, bytes: &[u8], now: u64, out: &mut dyn ConsoleSink) {
        self.write(Source::Hv, bytes, now, out);
    }

    /// Formats `args` into the hypervisor's output stream (same rules as
    /// [`ConsoleMux::write_hv`]; end with `\n` for a complete line).
    pub fn hv_fmt(&mut self, args: fmt::Arguments<'_>, now: u64, out: &mut dyn ConsoleSink) {
        let mut writer = HvWriter {
            mux: self,
            now,
            out,
        };
        let _ = writer.write_fmt(args);
    }

    /// Writes out every partial line that has waited at least
    /// [`ConsoleConfig::idle_ticks`] by `now`, oldest first. See the
    /// module documentation for the contract.
    pub fn flush_idle(&mut self, now: u64, out: &mut dyn ConsoleSink) {
        let idle = self.config.idle_ticks;
        self.flush_where(out, |line| now.saturating_sub(line.since) >= idle);
    }

    /// The clock value at which [`ConsoleMux::flush_idle`] will next have a
    /// partial line to write out, if any is buffered: the run loop arms a
    /// timer for it so a prompt shows up even when every guest is idle.
    pub fn next_flush_at(&self) -> Option<u64> {
        self.lines
            .iter()
            .filter(|line| line.len > 0)
            .map(|line| line.since.saturating_add(self.config.idle_ticks))
            .min()
    }

    /// Writes out every partial line regardless of age, oldest first, and
    /// ends the open line so that the console is at the start of a line.
    pub fn flush_all(&mut self, out: &mut dyn ConsoleSink) {
        self.flush_where(out, |_| true);
        self.terminate_open(out);
    }

    /// Line-buffer index of `src`, if it exists.
    fn index(&self, src: Source) -> Option<usize> {
        match src {
            Source::Hv => Some(HV_INDEX),
            Source::Vm(n) if n < self.config.vm_count => Some(n),
            Source::Vm(_) => None,
        }
    }

    fn source_of(idx: usize) -> Source {
        if idx == HV_INDEX {
            Source::Hv
        } else {
            Source::Vm(idx)
        }
    }

    fn eol(&self, out: &mut dyn ConsoleSink) {
        out.write_bytes(self.config.line_ending.bytes());
    }

    fn write_prefix(&self, src: Source, out: &mut dyn ConsoleSink) {
        const COLOURS: [&[u8]; 5] = [
            b"\x1b[1;32m",
            b"\x1b[1;36m",
            b"\x1b[1;33m",
            b"\x1b[1;34m",
            b"\x1b[1;31m",
        ];
        let mut prefix = StackBuf::<48>::new();
        if self.config.colour {
            prefix.push(match src {
                Source::Hv => b"\x1b[1;35m",
                Source::Vm(n) => COLOURS[n % COLOURS.len()],
            });
        }
        let _ = match src {
            Source::Hv => prefix.write_str("[hv]"),
            Source::Vm(n) => write!(prefix, "[vm{n}]"),
        };
        if self.config.colour {
            prefix.push(b"\x1b[0m");
        }
        prefix.push(b" ");
        out.write_bytes(prefix.as_bytes());
    }

    /// Ends the open partial line, if any, because something else is
    /// about to be printed.
    fn terminate_open(&mut self, out: &mut dyn ConsoleSink) {
        if let Some(src) = self.open.take() {
            if let Some(s) = self.sanitizer(src) {
                s.reset_colour(out);
            }
            self.eol(out);
            self.stats.interrupted_lines += 1;
        }
    }

    /// Makes `src` the owner of the open line, ending someone else's first
    /// and writing `src`'s prefix.
    fn open_line(&mut self, src: Source, out: &mut dyn ConsoleSink) {
        if self.open != Some(src) {
            self.terminate_open(out);
            self.write_prefix(src, out);
            if let Some(s) = self.sanitizer(src) {
                s.line_start();
            }
            self.open = Some(src);
        }
    }

    /// The output filter of `src` (the hypervisor's own text has none).
    fn sanitizer(&mut self, src: Source) -> Option<&mut Sanitizer> {
        match src {
            Source::Hv => None,
            Source::Vm(n) => self.sanitizers.get_mut(n),
        }
    }

    /// Writes `src`'s buffered text (through its sanitizer) and empties the
    /// buffer.
    fn write_text(&mut self, idx: usize, src: Source, out: &mut dyn ConsoleSink) {
        let line = &mut self.lines[idx];
        let text = &line.buf[..line.len];
        match src {
            Source::Hv => out.write_bytes(text),
            Source::Vm(n) => {
                if let Some(s) = self.sanitizers.get_mut(n) {
                    s.write(text, out);
                }
            }
        }
        line.len = 0;
    }

    /// Writes the buffered part of `src`'s line, leaving the line open.
    fn emit_partial(&mut self, idx: usize, src: Source, out: &mut dyn ConsoleSink) {
        if self.lines[idx].len == 0 {
            return;
        }
        self.open_line(src, out);
        self.write_text(idx, src, out);
        self.lines[idx].visible = true;
    }

    /// Ends `src`'s current line.
    fn end_line(&mut self, idx: usize, src: Source, out: &mut dyn ConsoleSink) {
        let line = &self.lines[idx];
        if line.len == 0 && line.visible && self.open != Some(src) {
            // The visible part was already ended by another source's output;
            // a second line break would leave an empty prefixed line.
            self.lines[idx].visible = false;
            if let Some(s) = self.sanitizer(src) {
                s.end_line(out);
            }
            return;
        }
        self.open_line(src, out);
        self.write_text(idx, src, out);
        self.lines[idx].visible = false;
        if let Some(s) = self.sanitizer(src) {
            s.end_line(out);
        }
        self.eol(out);
        self.open = None;
        self.stats.lines += 1;
    }

    /// A `\r` not followed by `\n`: back to the start of `src`'s line.
    fn carriage_return(&mut self, idx: usize, src: Source, out: &mut dyn ConsoleSink) {
        if self.lines[idx].len == 0 && self.open != Some(src) {
            // Nothing of this line is on screen or pending: already at the
            // start of a line.
            return;
        }
        self.emit_partial(idx, src, out);
        if let Some(s) = self.sanitizer(src) {
            s.reset_colour(out);
        }
        out.write_bytes(b"\r");
        self.write_prefix(src, out);
        if let Some(s) = self.sanitizer(src) {
            s.line_start();
        }
    }

    fn process(&mut self, idx: usize, src: Source, byte: u8, now: u64, out: &mut dyn ConsoleSink) {
        if self.lines[idx].cr_pending {
            match byte {
                b'\r' => return,
                b'\n' => {
                    self.lines[idx].cr_pending = false;
                    self.end_line(idx, src, out);
                    return;
                }
                _ => {
                    self.lines[idx].cr_pending = false;
                    self.carriage_return(idx, src, out);
                }
            }
        }
        match byte {
            b'\r' => self.lines[idx].cr_pending = true,
            b'\n' => self.end_line(idx, src, out),
            _ => {
                let line = &mut self.lines[idx];
                if line.len == 0 {
                    line.since = now;
                }
                line.buf[line.len] = byte;
                line.len += 1;
                if line.len == LINE_CAPACITY {
                    if self.open != Some(src) {
                        self.stats.long_line_splits += 1;
                    }
                    self.emit_partial(idx, src, out);
                }
            }
        }
    }

    fn write_raw(&mut self, src: Source, bytes: &[u8], out: &mut dyn ConsoleSink) {
        let Some(&last) = bytes.last() else {
            return;
        };
        if self.open != Some(src) {
            self.terminate_open(out);
        }
        out.write_bytes(bytes);
        self.open = if last == b'\n' { None } else { Some(src) };
    }

    /// Emits the partial lines selected by `due`, oldest first.
    fn flush_where(&mut self, out: &mut dyn ConsoleSink, due: impl Fn(&LineBuf) -> bool) {
        loop {
            let mut oldest: Option<usize> = None;
            for idx in 0..SOURCES {
                let line = &self.lines[idx];
                if line.len == 0 || self.index(Self::source_of(idx)).is_none() || !due(line) {
                    continue;
                }
                if oldest.is_none_or(|o| line.since < self.lines[o].since) {
                    oldest = Some(idx);
                }
            }
            let Some(idx) = oldest else {
                return;
            };
            self.stats.partial_flushes += 1;
            self.emit_partial(idx, Self::source_of(idx), out);
        }
    }

    /// Prints one complete `[hv] ` line of the mux's own, on a fresh line,
    /// without touching the hypervisor's buffered output.
    fn announce(&mut self, text: &[u8], out: &mut dyn ConsoleSink) {
        self.terminate_open(out);
        self.write_prefix(Source::Hv, out);
        out.write_bytes(text);
        self.eol(out);
        self.stats.lines += 1;
    }
}

#[cfg(test)]
mod next_flush_tests;

#[cfg(test)]
mod tests;
