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

    /// Prints the escape-key help through the output path.
    pub fn print_help(&mut self, out: &mut dyn ConsoleSink) {
        const HELP: [&[u8]; 8] = [
            b"console: escape is Ctrl-\\ (0x1c), then:",
            b"  0-9     focus that vm",
            b"  n       focus the next vm",
            b"  s       show device statistics",
            b"  r N     restart vm N (also after it stopped)",
            b"  k N     stop vm N",
            b"  h ?     this help",
            b"  Ctrl-\\  send a literal Ctrl-\\ to the focused vm",
        ];
        for line in HELP {
            self.announce(line, out);
        }
        let mut msg = StackBuf::<64>::new();
        let _ = write!(
            msg,
            "console focus: vm{} of vm0-vm{}",
            self.focus,
            self.config.vm_count - 1
        );
        self.announce(msg.as_bytes(), out);
    }

    /// Interprets one byte read from the physical console. Messages the
    /// escape commands produce (focus changes, help) are written to `out`.
    pub fn feed_input(&mut self, byte: u8, out: &mut dyn ConsoleSink) -> InputAction {
        self.stats.input_bytes += 1;
        if let Some(command) = self.vm_command.take() {
            return self.vm_command(command, byte, out);
        }
        if !self.escape_pending {
            if byte == ESCAPE_BYTE {
                self.escape_pending = true;
                return InputAction::None;
            }
            return self.deliver(byte);
        }
        self.escape_pending = false;
        match byte {
            ESCAPE_BYTE => self.deliver(ESCAPE_BYTE),
            b'0'..=b'9' => {
                if self.set_focus(usize::from(byte - b'0'), out) {
                    self.stats.commands += 1;
                } else {
                    self.stats.bad_commands += 1;
                }
                InputAction::None
            }
            b'n' => {
                self.stats.commands += 1;
                let next = (self.focus + 1) % self.config.vm_count;
                self.set_focus(next, out);
                InputAction::None
            }
            b's' => {
                self.stats.commands += 1;
                InputAction::ShowStats
            }
            b'r' => {
                self.vm_command = Some(VmCommand::Restart);
                InputAction::None
            }
            b'k' => {
                self.vm_command = Some(VmCommand::Stop);
                InputAction::None
            }
            b'h' | b'?' => {
                self.stats.commands += 1;
                self.print_help(out);
                InputAction::None
            }
            _ => {
                self.stats.bad_commands += 1;
                self.print_help(out);
                InputAction::None
            }
        }
    }

    /// The VM number after `Ctrl-\ r` or `Ctrl-\ k`.
    fn vm_command(
        &mut self,
        command: VmCommand,
        byte: u8,
        out: &mut dyn ConsoleSink,
    ) -> InputAction {
        let vm = match byte {
            b'0'..=b'9' => usize::from(byte - b'0'),
            _ => {
                self.stats.bad_commands += 1;
                self.print_help(out);
                return InputAction::None;
            }
        };
        let mut msg = StackBuf::<64>::new();
        if vm >= self.config.vm_count {
            self.stats.bad_commands += 1;
            let _ = write!(
                msg,
                "console: no vm{} (vm0-vm{})",
                vm,
                self.config.vm_count - 1
            );
            self.announce(msg.as_bytes(), out);
            return InputAction::None;
        }
        self.stats.commands += 1;
        let (verb, action) = match command {
            VmCommand::Restart => ("restarting", InputAction::RestartVm(vm)),
            VmCommand::Stop => ("stopping", InputAction::StopVm(vm)),
        };
        let _ = write!(msg, "console: {verb} vm{vm}");
        self.announce(msg.as_bytes(), out);
        action
    }

    fn deliver(&mut self, byte: u8) -> InputAction {
        self.stats.delivered += 1;
        InputAction::Deliver {
            vm: self.focus,
            byte,
        }
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
mod next_flush_tests {
    use super::*;

    #[test]
    fn next_flush_follows_the_oldest_partial_line() {
        let mut mux = ConsoleMux::new(ConsoleConfig::new(2, 10));
        let mut out: Vec<u8> = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        assert_eq!(mux.next_flush_at(), None);
        mux.write_vm(1, b"~ # ", 100, &mut sink);
        mux.write_vm(0, b"login: ", 105, &mut sink);
        assert_eq!(mux.next_flush_at(), Some(110));
        mux.flush_idle(110, &mut sink);
        assert_eq!(mux.next_flush_at(), Some(115));
        mux.flush_idle(115, &mut sink);
        assert_eq!(mux.next_flush_at(), None);
    }

    #[test]
    fn a_pending_carriage_return_alone_needs_no_flush() {
        // "\r" then "\n" may arrive in separate writes; in between nothing
        // is waiting to be shown, so no flush deadline may be reported
        // (a deadline that flush_idle never clears would fire forever).
        let mut mux = ConsoleMux::new(ConsoleConfig::new(1, 10));
        let mut out: Vec<u8> = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        mux.write_vm(0, b"done\r", 100, &mut sink);
        assert_eq!(mux.next_flush_at(), Some(110));
        mux.flush_idle(110, &mut sink);
        assert_eq!(mux.next_flush_at(), None);
        mux.write_vm(0, b"\n", 120, &mut sink);
        assert_eq!(mux.next_flush_at(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: u64 = 10;

    /// A mux with its output captured.
    struct Term {
        mux: ConsoleMux,
        out: Vec<u8>,
    }

    impl Term {
        fn new(vms: usize) -> Self {
            Self::with(ConsoleConfig::new(vms, IDLE))
        }

        fn with(config: ConsoleConfig) -> Self {
            Term {
                mux: ConsoleMux::new(config),
                out: Vec::new(),
            }
        }

        fn w(&mut self, src: Source, bytes: &[u8], now: u64) {
            let out = &mut self.out;
            self.mux
                .write(src, bytes, now, &mut |b: &[u8]| out.extend_from_slice(b));
        }

        fn vm(&mut self, vm: usize, bytes: &[u8], now: u64) {
            self.w(Source::Vm(vm), bytes, now);
        }

        fn idle(&mut self, now: u64) {
            let out = &mut self.out;
            self.mux
                .flush_idle(now, &mut |b: &[u8]| out.extend_from_slice(b));
        }

        fn flush_all(&mut self) {
            let out = &mut self.out;
            self.mux.flush_all(&mut |b: &[u8]| out.extend_from_slice(b));
        }

        fn key(&mut self, byte: u8) -> InputAction {
            let out = &mut self.out;
            self.mux
                .feed_input(byte, &mut |b: &[u8]| out.extend_from_slice(b))
        }

        /// Output so far as text, then cleared.
        fn take(&mut self) -> String {
            String::from_utf8(core::mem::take(&mut self.out)).unwrap()
        }
    }

    #[test]
    fn complete_lines_get_exactly_one_prefix() {
        let mut t = Term::new(2);
        t.vm(0, b"hello\r\nworld\r\n", 0);
        assert_eq!(t.take(), "[vm0] hello\r\n[vm0] world\r\n");
        t.vm(1, b"one\ntwo\n", 1);
        assert_eq!(t.take(), "[vm1] one\r\n[vm1] two\r\n");
        t.w(Source::Hv, b"starting vm1\n", 2);
        assert_eq!(t.take(), "[hv] starting vm1\r\n");
        assert_eq!(t.mux.stats().lines, 5);
    }

    #[test]
    fn crlf_is_one_line_end_even_split_across_writes() {
        let mut t = Term::new(1);
        t.vm(0, b"abc\r", 0);
        assert_eq!(t.take(), "");
        t.vm(0, b"\ndef\r", 0);
        assert_eq!(t.take(), "[vm0] abc\r\n");
        t.vm(0, b"\n", 0);
        assert_eq!(t.take(), "[vm0] def\r\n");
        // A doubled CR (an application's "\r\n" through ONLCR) is one end too.
        t.vm(0, b"ghi\r\r\nj\r", 0);
        t.vm(0, b"\r", 0);
        t.vm(0, b"\n", 0);
        assert_eq!(t.take(), "[vm0] ghi\r\n[vm0] j\r\n");
    }

    #[test]
    fn lf_line_ending_option() {
        let mut config = ConsoleConfig::new(1, IDLE);
        config.line_ending = LineEnding::Lf;
        let mut t = Term::with(config);
        t.vm(0, b"a\r\nb\n", 0);
        assert_eq!(t.take(), "[vm0] a\n[vm0] b\n");
    }

    #[test]
    fn empty_lines_keep_their_prefix() {
        let mut t = Term::new(1);
        t.vm(0, b"\r\n\r\nx\r\n", 0);
        assert_eq!(t.take(), "[vm0] \r\n[vm0] \r\n[vm0] x\r\n");
    }

    #[test]
    fn lone_carriage_return_redraws_with_prefix() {
        let mut t = Term::new(1);
        t.vm(0, b"10%\r20%\r30%\r\n", 0);
        assert_eq!(t.take(), "[vm0] 10%\r[vm0] 20%\r[vm0] 30%\r\n");
        // A CR at the start of a line is already satisfied.
        t.vm(0, b"\rfoo\r\n", 0);
        assert_eq!(t.take(), "[vm0] foo\r\n");
        // A CR split from its text by a write boundary behaves the same.
        t.vm(0, b"ab\r", 0);
        t.vm(0, b"cd\n", 0);
        assert_eq!(t.take(), "[vm0] ab\r[vm0] cd\r\n");
    }

    #[test]
    fn partial_line_waits_while_another_vm_prints() {
        let mut t = Term::new(2);
        t.vm(0, b"abc", 0);
        t.vm(1, b"xyz\r\n", 1);
        assert_eq!(t.take(), "[vm1] xyz\r\n");
        t.vm(0, b"def\r\n", 2);
        assert_eq!(t.take(), "[vm0] abcdef\r\n");
    }

    #[test]
    fn idle_flush_shows_prompt_and_continues_without_prefix() {
        let mut t = Term::new(2);
        t.vm(0, b"~ # ", 100);
        t.idle(105);
        assert_eq!(t.take(), "", "younger than the threshold");
        t.idle(110);
        assert_eq!(t.take(), "[vm0] ~ # ");
        assert_eq!(t.mux.stats().partial_flushes, 1);
        // Echo of typed characters continues the open line immediately.
        t.vm(0, b"l", 111);
        assert_eq!(t.take(), "l");
        t.vm(0, b"s", 112);
        assert_eq!(t.take(), "s");
        t.vm(0, b"\r\n", 113);
        assert_eq!(t.take(), "\r\n");
        t.vm(0, b"bin  dev  etc\r\n", 114);
        assert_eq!(t.take(), "[vm0] bin  dev  etc\r\n");
        assert_eq!(t.mux.stats().interrupted_lines, 0);
    }

    #[test]
    fn idle_flushed_line_is_ended_before_another_source_prints() {
        let mut t = Term::new(2);
        t.vm(0, b"~ # ", 0);
        t.idle(IDLE);
        t.vm(1, b"[    1.0] eth0: link up\r\n", 20);
        t.vm(0, b"ls\r\n", 30);
        assert_eq!(
            t.take(),
            "[vm0] ~ # \r\n[vm1] [    1.0] eth0: link up\r\n[vm0] ls\r\n"
        );
        assert_eq!(t.mux.stats().interrupted_lines, 1);
    }

    #[test]
    fn line_end_after_interruption_does_not_add_an_empty_line() {
        let mut t = Term::new(2);
        t.vm(0, b"abc", 0);
        t.idle(IDLE);
        t.vm(1, b"x\n", 11);
        t.vm(0, b"\r\n", 12);
        t.vm(0, b"next\r\n", 13);
        assert_eq!(t.take(), "[vm0] abc\r\n[vm1] x\r\n[vm0] next\r\n");
    }

    #[test]
    fn idle_flush_is_oldest_first_and_per_source() {
        let mut t = Term::new(3);
        t.vm(2, b"two> ", 3);
        t.vm(1, b"one> ", 1);
        t.w(Source::Hv, b"hv...", 8);
        t.idle(12);
        // vm1 (age 11) and vm2 (age 9): only vm1 is due.
        assert_eq!(t.take(), "[vm1] one> ");
        t.idle(18);
        assert_eq!(t.take(), "\r\n[vm2] two> \r\n[hv] hv...");
        t.flush_all();
        assert_eq!(t.take(), "\r\n");
    }

    #[test]
    fn zero_idle_threshold_flushes_on_every_call() {
        let mut t = Term::with(ConsoleConfig::new(1, 0));
        t.vm(0, b"$ ", 50);
        t.idle(50);
        assert_eq!(t.take(), "[vm0] $ ");
    }

    #[test]
    fn clock_going_backwards_does_not_flush() {
        let mut t = Term::new(1);
        t.vm(0, b"$ ", 1000);
        t.idle(5);
        assert_eq!(t.take(), "");
    }

    #[test]
    fn long_line_is_emitted_in_pieces_never_dropped() {
        let mut t = Term::new(1);
        let long: Vec<u8> = (0..1200).map(|i| b'a' + (i % 26) as u8).collect();
        t.vm(0, &long, 0);
        let mut expect = b"[vm0] ".to_vec();
        expect.extend_from_slice(&long);
        // The first 512 bytes go out when the buffer fills; the rest
        // continues the open line at once.
        assert_eq!(t.take().as_bytes(), &expect[..]);
        assert_eq!(t.mux.stats().long_line_splits, 1);
        t.vm(0, b"!\r\n", 1);
        assert_eq!(t.take(), "!\r\n");
    }

    #[test]
    fn long_line_interrupted_gets_a_new_prefix() {
        let mut t = Term::new(2);
        t.vm(0, &[b'x'; LINE_CAPACITY + 10], 0);
        t.vm(1, b"hi\n", 1);
        t.vm(0, b"tail\n", 2);
        let text = t.take();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            format!("[vm0] {}", "x".repeat(LINE_CAPACITY + 10))
        );
        assert_eq!(lines[1], "[vm1] hi");
        assert_eq!(lines[2], "[vm0] tail");
        assert_eq!(lines[3], "");
    }

    #[test]
    fn long_line_split_while_others_buffer() {
        // A line filling its buffer while another VM holds a partial line:
        // the other VM's partial stays buffered and intact.
        let mut t = Term::new(2);
        t.vm(1, b"pending", 0);
        t.vm(0, &[b'y'; LINE_CAPACITY], 1);
        t.vm(0, b"\n", 2);
        t.vm(1, b" done\n", 3);
        let y = "y".repeat(LINE_CAPACITY);
        assert_eq!(t.take(), format!("[vm0] {y}\r\n[vm1] pending done\r\n"));
    }

    #[test]
    fn hypervisor_messages_follow_the_same_rules() {
        let mut t = Term::new(1);
        t.vm(0, b"~ # ", 0);
        t.idle(IDLE);
        let out = &mut t.out;
        t.mux.hv_fmt(
            format_args!("vm{} exited with {}\n", 0, -1),
            11,
            &mut |b: &[u8]| out.extend_from_slice(b),
        );
        assert_eq!(t.take(), "[vm0] ~ # \r\n[hv] vm0 exited with -1\r\n");
        // A partial hv message is buffered like a VM's.
        t.w(Source::Hv, b"loading...", 20);
        t.vm(0, b"x\n", 21);
        t.w(Source::Hv, b" ok\n", 22);
        assert_eq!(t.take(), "[vm0] x\r\n[hv] loading... ok\r\n");
    }

    #[test]
    fn raw_mode_passes_vm_output_through() {
        let mut config = ConsoleConfig::new(1, IDLE);
        config.mode = OutputMode::Raw;
        let mut t = Term::with(config);
        t.vm(0, b"Booting\r\n~ # ", 0);
        assert_eq!(t.take(), "Booting\r\n~ # ");
        // A hypervisor line starts on a fresh line and keeps its prefix.
        t.w(Source::Hv, b"note\n", 1);
        assert_eq!(t.take(), "\r\n[hv] note\r\n");
        t.vm(0, b"\x1b[1mbold\r\x1b[0m\n", 2);
        assert_eq!(t.take(), "\x1b[1mbold\r\x1b[0m\n");
        t.w(Source::Hv, b"after a complete line\n", 3);
        assert_eq!(t.take(), "[hv] after a complete line\r\n");
    }

    #[test]
    fn switching_mode_flushes_buffers() {
        let mut t = Term::new(1);
        t.vm(0, b"partial", 0);
        let out = &mut t.out;
        t.mux
            .set_mode(OutputMode::Raw, &mut |b: &[u8]| out.extend_from_slice(b));
        assert_eq!(t.take(), "[vm0] partial\r\n");
        t.vm(0, b"raw", 1);
        assert_eq!(t.take(), "raw");
        assert_eq!(t.mux.config().mode, OutputMode::Raw);
    }

    #[test]
    fn colour_is_off_by_default_and_optional() {
        let mut t = Term::new(2);
        t.vm(1, b"plain\n", 0);
        assert!(!t.take().contains('\x1b'));
        t.mux.set_colour(true);
        t.vm(1, b"green?\n", 0);
        t.w(Source::Hv, b"hv\n", 0);
        assert_eq!(
            t.take(),
            "\x1b[1;36m[vm1]\x1b[0m green?\r\n\x1b[1;35m[hv]\x1b[0m hv\r\n"
        );
    }

    #[test]
    fn output_for_missing_vm_is_dropped_and_counted() {
        let mut t = Term::new(2);
        t.vm(2, b"ghost\n", 0);
        t.vm(usize::MAX, b"x", 0);
        assert_eq!(t.take(), "");
        assert_eq!(t.mux.stats().bad_source_bytes, 7);
    }

    #[test]
    fn vm_count_is_clamped() {
        assert_eq!(ConsoleMux::new(ConsoleConfig::new(0, 1)).vm_count(), 1);
        assert_eq!(
            ConsoleMux::new(ConsoleConfig::new(99, 1)).vm_count(),
            MAX_VMS
        );
    }

    #[test]
    fn flush_all_leaves_console_at_line_start() {
        let mut t = Term::new(2);
        t.vm(0, b"a", 1);
        t.vm(1, b"b", 0);
        t.flush_all();
        assert_eq!(t.take(), "[vm1] b\r\n[vm0] a\r\n");
        t.flush_all();
        assert_eq!(t.take(), "");
    }

    /// xorshift64* for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Source `i`'s private alphabet, so that mixing is detectable.
    fn alphabet(i: usize) -> &'static [u8] {
        [b"abcdef".as_slice(), b"ghijkl", b"mnopqr", b"stuvwx"][i]
    }

    fn sources() -> [Source; 4] {
        [Source::Vm(0), Source::Vm(1), Source::Vm(2), Source::Hv]
    }

    fn prefix_of(i: usize) -> &'static str {
        ["[vm0] ", "[vm1] ", "[vm2] ", "[hv] "][i]
    }

    /// Random text for source `i`: lines of random length (some longer
    /// than the line buffer, some empty) ending in "\r\n" or "\n", maybe
    /// followed by a partial line.
    fn random_stream(rng: &mut Rng, i: usize) -> Vec<u8> {
        let mut s = Vec::new();
        for _ in 0..rng.below(30) {
            let len = match rng.below(10) {
                0 => 0,
                1 => LINE_CAPACITY as u64 + rng.below(700),
                _ => rng.below(80),
            };
            for _ in 0..len {
                let a = alphabet(i);
                s.push(a[rng.below(a.len() as u64) as usize]);
            }
            if rng.below(3) == 0 {
                s.extend_from_slice(b"\n");
            } else {
                s.extend_from_slice(b"\r\n");
            }
        }
        for _ in 0..rng.below(20) {
            s.push(alphabet(i)[0]);
        }
        s
    }

    /// Per-source (text, line-boundary offsets) of an input stream.
    fn input_lines(stream: &[u8]) -> (Vec<u8>, Vec<usize>, usize) {
        let mut text = Vec::new();
        let mut ends = Vec::new();
        let mut empty = 0;
        let mut line_len = 0;
        for &b in stream {
            match b {
                b'\r' => {}
                b'\n' => {
                    ends.push(text.len());
                    if line_len == 0 {
                        empty += 1;
                    }
                    line_len = 0;
                }
                _ => {
                    text.push(b);
                    line_len += 1;
                }
            }
        }
        (text, ends, empty)
    }

    #[test]
    fn interleaved_output_never_mixes_within_a_line() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut t = Term::new(3);
            let streams: Vec<Vec<u8>> = (0..4).map(|i| random_stream(&mut rng, i)).collect();
            let mut pos = [0usize; 4];
            let mut now = 0u64;
            while (0..4).any(|i| pos[i] < streams[i].len()) {
                let i = rng.below(4) as usize;
                if pos[i] == streams[i].len() {
                    continue;
                }
                let n = (1 + rng.below(40) as usize).min(streams[i].len() - pos[i]);
                now += rng.below(4);
                t.w(sources()[i], &streams[i][pos[i]..pos[i] + n], now);
                pos[i] += n;
                if rng.below(4) == 0 {
                    t.idle(now);
                }
            }
            t.flush_all();
            let out = t.take();

            // Every physical line is one prefix followed by one source's text.
            assert!(out.is_empty() || out.ends_with("\r\n"), "seed {seed}");
            let mut pieces: Vec<Vec<String>> = vec![Vec::new(); 4];
            for line in out.split("\r\n").filter(|l| !l.is_empty()) {
                let i = (0..4)
                    .find(|&i| line.starts_with(prefix_of(i)))
                    .unwrap_or_else(|| panic!("seed {seed}: unprefixed line {line:?}"));
                let body = &line[prefix_of(i).len()..];
                assert!(
                    body.bytes().all(|b| alphabet(i).contains(&b)),
                    "seed {seed}: mixed line {line:?}"
                );
                pieces[i].push(body.to_string());
            }

            // Each source's text survives in order, its line ends are kept,
            // and only its genuinely empty lines show up empty.
            for i in 0..4 {
                let (text, ends, empty) = input_lines(&streams[i]);
                let joined: String = pieces[i].concat();
                assert_eq!(joined.as_bytes(), &text[..], "seed {seed} source {i}");
                let mut piece_ends = Vec::new();
                let mut total = 0;
                for p in &pieces[i] {
                    total += p.len();
                    piece_ends.push(total);
                }
                let mut remaining = piece_ends.clone();
                for e in &ends {
                    let k = remaining
                        .iter()
                        .position(|x| x == e)
                        .unwrap_or_else(|| panic!("seed {seed} source {i}: lost line end"));
                    remaining.remove(k);
                }
                let empty_pieces = pieces[i].iter().filter(|p| p.is_empty()).count();
                assert_eq!(empty_pieces, empty, "seed {seed} source {i}");
            }
        }
    }

    #[test]
    fn single_vm_has_one_prefix_per_line_under_random_chunking() {
        for seed in 1..=50u64 {
            let mut rng = Rng(seed * 7919);
            let mut t = Term::new(1);
            let mut stream = Vec::new();
            let mut lines = 0;
            for _ in 0..40 {
                for _ in 0..rng.below(LINE_CAPACITY as u64 - 1) {
                    stream.push(b'a' + rng.below(26) as u8);
                }
                stream.extend_from_slice(b"\r\n");
                lines += 1;
            }
            let mut pos = 0;
            while pos < stream.len() {
                let n = (1 + rng.below(100) as usize).min(stream.len() - pos);
                t.vm(0, &stream[pos..pos + n], pos as u64);
                pos += n;
            }
            let out = t.take();
            assert_eq!(out.matches("[vm0] ").count(), lines, "seed {seed}");
            assert_eq!(out.matches("\r\n").count(), lines, "seed {seed}");
            assert_eq!(out.replace("[vm0] ", "").as_bytes(), &stream[..]);
        }
    }

    #[test]
    fn input_goes_to_the_focused_vm() {
        let mut t = Term::new(2);
        assert_eq!(t.mux.focus(), 0);
        assert_eq!(t.key(b'l'), InputAction::Deliver { vm: 0, byte: b'l' });
        // Ordinary control characters pass through (Ctrl-A, Ctrl-C, ...).
        assert_eq!(t.key(0x01), InputAction::Deliver { vm: 0, byte: 0x01 });
        assert_eq!(t.key(0x03), InputAction::Deliver { vm: 0, byte: 0x03 });
        assert_eq!(t.take(), "");
    }

    #[test]
    fn escape_digit_switches_focus_and_announces_it() {
        let mut t = Term::new(2);
        assert_eq!(t.key(ESCAPE_BYTE), InputAction::None);
        assert!(t.mux.escape_pending());
        assert_eq!(t.key(b'1'), InputAction::None);
        assert!(!t.mux.escape_pending());
        assert_eq!(t.mux.focus(), 1);
        assert_eq!(t.take(), "[hv] console focus: vm1\r\n");
        assert_eq!(t.key(b'x'), InputAction::Deliver { vm: 1, byte: b'x' });
        t.key(ESCAPE_BYTE);
        t.key(b'0');
        assert_eq!(t.mux.focus(), 0);
        assert_eq!(t.take(), "[hv] console focus: vm0\r\n");
    }

    #[test]
    fn escape_n_cycles_through_vms() {
        let mut t = Term::new(3);
        let mut seen = Vec::new();
        for _ in 0..4 {
            t.key(ESCAPE_BYTE);
            t.key(b'n');
            seen.push(t.mux.focus());
        }
        assert_eq!(seen, [1, 2, 0, 1]);
        assert!(t.take().ends_with("[hv] console focus: vm1\r\n"));
        // With one VM, 'n' stays on it.
        let mut one = Term::new(1);
        one.key(ESCAPE_BYTE);
        one.key(b'n');
        assert_eq!(one.mux.focus(), 0);
    }

    #[test]
    fn escape_twice_sends_a_literal_escape() {
        let mut t = Term::new(2);
        t.key(ESCAPE_BYTE);
        t.key(b'1');
        t.take();
        assert_eq!(t.key(ESCAPE_BYTE), InputAction::None);
        assert_eq!(
            t.key(ESCAPE_BYTE),
            InputAction::Deliver {
                vm: 1,
                byte: ESCAPE_BYTE
            }
        );
        // And the state is back to normal afterwards.
        assert_eq!(t.key(b'1'), InputAction::Deliver { vm: 1, byte: b'1' });
        assert_eq!(t.take(), "");
    }

    #[test]
    fn escape_s_asks_for_statistics() {
        let mut t = Term::new(1);
        t.key(ESCAPE_BYTE);
        assert_eq!(t.key(b's'), InputAction::ShowStats);
        assert_eq!(t.take(), "");
    }

    #[test]
    fn out_of_range_vm_number_keeps_focus() {
        let mut t = Term::new(2);
        t.key(ESCAPE_BYTE);
        assert_eq!(t.key(b'7'), InputAction::None);
        assert_eq!(t.mux.focus(), 0);
        assert_eq!(t.take(), "[hv] console: no vm7 (vm0-vm1)\r\n");
        t.key(ESCAPE_BYTE);
        t.key(b'2');
        assert_eq!(t.mux.focus(), 0);
        assert_eq!(t.mux.stats().bad_commands, 2);
        let out = &mut t.out;
        assert!(!t.mux.set_focus(9, &mut |b: &[u8]| out.extend_from_slice(b)));
    }

    #[test]
    fn help_and_unknown_commands() {
        let mut t = Term::new(2);
        t.key(ESCAPE_BYTE);
        assert_eq!(t.key(b'h'), InputAction::None);
        let help = t.take();
        assert!(help.starts_with("[hv] console: escape is Ctrl-\\ (0x1c), then:\r\n"));
        assert!(help.contains("[hv]   s       show device statistics\r\n"));
        assert!(help.ends_with("[hv] console focus: vm0 of vm0-vm1\r\n"));
        assert!(
            help.split("\r\n")
                .filter(|l| !l.is_empty())
                .all(|l| l.starts_with("[hv] "))
        );
        t.key(ESCAPE_BYTE);
        t.key(b'?');
        assert_eq!(t.take(), help);
        t.key(ESCAPE_BYTE);
        assert_eq!(t.key(b'z'), InputAction::None);
        assert_eq!(t.take(), help);
        assert_eq!(t.mux.stats().bad_commands, 1);
        assert_eq!(t.mux.focus(), 0);
    }

    #[test]
    fn announcements_end_an_open_partial_line() {
        let mut t = Term::new(2);
        t.vm(0, b"~ # ", 0);
        t.idle(IDLE);
        t.key(ESCAPE_BYTE);
        t.key(b'1');
        t.vm(0, b"\r\n", 20);
        t.vm(1, b"~ # ", 21);
        t.idle(40);
        assert_eq!(
            t.take(),
            "[vm0] ~ # \r\n[hv] console focus: vm1\r\n[vm1] ~ # "
        );
        // The hypervisor's own buffered partial output is left alone.
        t.w(Source::Hv, b"half", 41);
        t.key(ESCAPE_BYTE);
        t.key(b'0');
        t.w(Source::Hv, b" done\n", 42);
        assert_eq!(
            t.take(),
            "\r\n[hv] console focus: vm0\r\n[hv] half done\r\n"
        );
    }

    #[test]
    fn scripted_input_from_a_pipe() {
        let mut t = Term::new(2);
        let script = b"ls\n\x1c1uname -a\n\x1c\x1c\x1cs\x1c0x";
        let actions: Vec<InputAction> = script.iter().map(|&b| t.key(b)).collect();
        let delivered: Vec<(usize, u8)> = actions
            .iter()
            .filter_map(|a| match *a {
                InputAction::Deliver { vm, byte } => Some((vm, byte)),
                _ => None,
            })
            .collect();
        let mut expect: Vec<(usize, u8)> = b"ls\n".iter().map(|&b| (0, b)).collect();
        expect.extend(b"uname -a\n".iter().map(|&b| (1, b)));
        expect.push((1, ESCAPE_BYTE));
        expect.push((0, b'x'));
        assert_eq!(delivered, expect);
        assert_eq!(
            actions
                .iter()
                .filter(|a| **a == InputAction::ShowStats)
                .count(),
            1
        );
        assert_eq!(
            t.take(),
            "[hv] console focus: vm1\r\n[hv] console focus: vm0\r\n"
        );
        let s = t.mux.stats();
        assert_eq!(s.input_bytes, script.len() as u64);
        assert_eq!(s.delivered, 14);
        assert_eq!(s.commands, 3);
    }

    #[test]
    fn stats_display() {
        let mut t = Term::new(1);
        t.vm(0, b"x\n", 0);
        let text = format!("{}", t.mux.stats());
        assert!(text.starts_with("lines 1, "), "{text}");
    }
}
