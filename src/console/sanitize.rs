//! Neutralising control characters and escape sequences in a VM's console
//! output, so that no VM can make its text appear under another source's
//! prefix (`[hv] `, `[vmN] `) while its shell's line editing keeps working.
//!
//! The multiplexer writes each VM's text through one [`Sanitizer`] per VM,
//! at the moment the text reaches the physical console, and tells it when
//! it has just written that VM's prefix ([`Sanitizer::line_start`]) and
//! when the VM's line ends ([`Sanitizer::end_line`]). The rule:
//!
//! * The sanitizer tracks the cursor column relative to the end of the
//!   prefix, counting only what surely moved the cursor right: printable
//!   ASCII and TAB count 1, other characters (UTF-8 sequences, which may be
//!   zero, one or two columns wide) count 0. The count never exceeds the
//!   real distance, so a move left that stays within it cannot reach the
//!   prefix.
//! * Backspace and cursor left (`ESC[nD`) are clamped to that column; what
//!   would cross into the prefix is dropped.
//! * Allowed sequences: SGR (`ESC[…m`, colours and attributes; the mux
//!   resets them with `ESC[0m` before the VM's line ends, is interrupted or
//!   its prefix is re-written, so colour never leaks onto another line),
//!   erase to the end of the line (`ESC[K`, `ESC[0K`; `ESC[J`/`ESC[0J`,
//!   which ash's line editor uses, is written as `ESC[K`, the same thing on
//!   the last line, which is where the open line always is), and delete,
//!   erase or insert characters at the cursor (`ESC[nP`, `ESC[nX`, `ESC[n@`).
//! * Everything else is dropped and counted: any other CSI sequence
//!   (absolute column or position, up/down, erasing the line's start, the
//!   whole line or the screen, cursor right, save/restore, scroll regions,
//!   status queries, private modes), every other escape sequence (`ESC 7`,
//!   `ESC 8`, `ESC c`, charset designations, …), whole control strings
//!   (OSC, DCS, APC, PM, SOS, up to BEL or `ESC \`), C0 controls other than
//!   BEL, BS and TAB, DEL, and bytes that are not valid UTF-8 (so 8-bit C1
//!   controls such as 0x9B never reach the terminal).
//! * CR and LF never reach the sanitizer: the mux turns a lone CR into a CR
//!   followed by the prefix again, and ends lines itself. An unfinished
//!   sequence is abandoned when the line ends.
//!
//! Trade-off: because UTF-8 characters count zero columns, backspacing over
//! non-ASCII text can leave it visible; the guest's input is unaffected.

use core::fmt;

use super::ConsoleSink;

/// Longest CSI parameter string kept; longer sequences are dropped.
const MAX_PARAMS: usize = 16;

/// What a [`Sanitizer`] dropped or clamped for one VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SanitizeStats {
    /// Control bytes (C0 other than BEL/BS/TAB, DEL) and invalid UTF-8
    /// bytes dropped.
    pub controls: u64,
    /// Backspaces and cursor-left moves clamped at the prefix.
    pub clamped_moves: u64,
    /// Escape and CSI sequences dropped.
    pub sequences: u64,
    /// Control strings (OSC, DCS, APC, PM, SOS) dropped.
    pub strings: u64,
    /// Colour resets written so attributes do not leak past the line.
    pub colour_resets: u64,
}

impl SanitizeStats {
    /// Everything dropped or clamped (colour resets are additions).
    pub const fn neutralised(&self) -> u64 {
        self.controls + self.clamped_moves + self.sequences + self.strings
    }
}

impl fmt::Display for SanitizeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "neutralised {} (controls {}, moves clamped {}, sequences {}, strings {}), \
             colour resets {}",
            self.neutralised(),
            self.controls,
            self.clamped_moves,
            self.sequences,
            self.strings,
            self.colour_resets
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and intermediate bytes (a charset designation, …).
    EscapeIntermediate,
    /// Inside `ESC [`.
    Csi,
    /// Inside a control string; `true` right after an ESC in it.
    String(bool),
}

/// Small output buffer so passed-through text is written in runs.
struct Out<'a> {
    buf: [u8; 64],
    len: usize,
    sink: &'a mut dyn ConsoleSink,
}

impl Out<'_> {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            self.sink.write_bytes(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

/// One VM's output filter (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Sanitizer {
    state: State,
    /// Columns the cursor surely is right of the prefix's end.
    col: usize,
    /// An SGR sequence was written since the last reset.
    sgr_dirty: bool,
    /// UTF-8 continuation bytes still expected.
    utf8_need: u8,
    params: [u8; MAX_PARAMS],
    params_len: usize,
    /// The CSI has intermediate bytes, a private marker or too many
    /// parameters: it will be dropped whatever its final byte.
    csi_odd: bool,
    stats: SanitizeStats,
}

impl Default for Sanitizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Sanitizer {
    /// A sanitizer at the start of a line.
    pub const fn new() -> Self {
        Sanitizer {
            state: State::Ground,
            col: 0,
            sgr_dirty: false,
            utf8_need: 0,
            params: [0; MAX_PARAMS],
            params_len: 0,
            csi_odd: false,
            stats: SanitizeStats {
                controls: 0,
                clamped_moves: 0,
                sequences: 0,
                strings: 0,
                colour_resets: 0,
            },
        }
    }

    /// The counters.
    pub const fn stats(&self) -> SanitizeStats {
        self.stats
    }

    /// The mux has just written this VM's prefix: the cursor is at the
    /// start of its text.
    pub fn line_start(&mut self) {
        self.col = 0;
    }

    /// Writes `ESC[0m` if an SGR sequence is in effect (before the line
    /// ends, is interrupted, or the prefix is written again).
    pub fn reset_colour(&mut self, out: &mut dyn ConsoleSink) {
        if self.sgr_dirty {
            out.write_bytes(b"\x1b[0m");
            self.sgr_dirty = false;
            self.stats.colour_resets += 1;
        }
    }

    /// The VM's line ends: resets colour, abandons an unfinished sequence.
    pub fn end_line(&mut self, out: &mut dyn ConsoleSink) {
        self.reset_colour(out);
        if self.state != State::Ground {
            self.stats.sequences += 1;
        }
        self.state = State::Ground;
        self.utf8_need = 0;
        self.col = 0;
    }

    /// Writes what may pass of `bytes` (VM text without CR and LF) to `out`.
    pub fn write(&mut self, bytes: &[u8], out: &mut dyn ConsoleSink) {
        let mut out = Out {
            buf: [0; 64],
            len: 0,
            sink: out,
        };
        for &byte in bytes {
            self.byte(byte, &mut out);
        }
        out.flush();
    }

    fn byte(&mut self, byte: u8, out: &mut Out<'_>) {
        match self.state {
            State::Ground => self.ground(byte, out),
            State::Escape => self.escape(byte, out),
            State::EscapeIntermediate => match byte {
                0x20..=0x2f => {}
                0x30..=0x7e => {
                    self.stats.sequences += 1;
                    self.state = State::Ground;
                }
                _ => self.abandon(byte, out),
            },
            State::Csi => self.csi(byte, out),
            State::String(after_esc) => match byte {
                0x07 => self.state = State::Ground,
                b'\\' if after_esc => self.state = State::Ground,
                0x1b => self.state = State::String(true),
                _ if after_esc => {
                    // ESC ends the string and starts a new sequence.
                    self.state = State::Escape;
                    self.escape(byte, out);
                }
                _ => {}
            },
        }
    }

    /// An unexpected byte inside a sequence: the sequence is dropped and
    /// the byte processed on its own.
    fn abandon(&mut self, byte: u8, out: &mut Out<'_>) {
        self.stats.sequences += 1;
        self.state = State::Ground;
        self.ground(byte, out);
    }

    fn ground(&mut self, byte: u8, out: &mut Out<'_>) {
        if self.utf8_need > 0 {
            if (0x80..=0xbf).contains(&byte) {
                self.utf8_need -= 1;
                out.push(&[byte]);
                return;
            }
            // Truncated sequence: the terminal shows a replacement for it.
            self.utf8_need = 0;
        }
        match byte {
            0x20..=0x7e => {
                self.col += 1;
                out.push(&[byte]);
            }
            b'\t' => {
                self.col += 1;
                out.push(&[byte]);
            }
            0x07 => out.push(&[byte]),
            0x08 => {
                if self.col > 0 {
                    self.col -= 1;
                    out.push(&[byte]);
                } else {
                    self.stats.clamped_moves += 1;
                }
            }
            0x1b => self.state = State::Escape,
            0xc2..=0xdf => self.utf8_lead(byte, 1, out),
            0xe0..=0xef => self.utf8_lead(byte, 2, out),
            0xf0..=0xf4 => self.utf8_lead(byte, 3, out),
            _ => self.stats.controls += 1,
        }
    }

    fn utf8_lead(&mut self, byte: u8, need: u8, out: &mut Out<'_>) {
        self.utf8_need = need;
        out.push(&[byte]);
    }

    fn escape(&mut self, byte: u8, out: &mut Out<'_>) {
        match byte {
            b'[' => {
                self.state = State::Csi;
                self.params_len = 0;
                self.csi_odd = false;
            }
            b']' | b'P' | b'_' | b'^' | b'X' => {
                self.stats.strings += 1;
                self.state = State::String(false);
            }
            0x1b => {}
            0x20..=0x2f => self.state = State::EscapeIntermediate,
            0x30..=0x7e => {
                self.stats.sequences += 1;
                self.state = State::Ground;
            }
            _ => self.abandon(byte, out),
        }
    }

    fn csi(&mut self, byte: u8, out: &mut Out<'_>) {
        match byte {
            0x30..=0x3f => {
                if matches!(byte, b'<'..=b'?') {
                    self.csi_odd = true;
                }
                match self.params.get_mut(self.params_len) {
                    Some(slot) => {
                        *slot = byte;
                        self.params_len += 1;
                    }
                    None => self.csi_odd = true,
                }
            }
            0x20..=0x2f => self.csi_odd = true,
            0x40..=0x7e => {
                self.state = State::Ground;
                self.csi_final(byte, out);
            }
            0x1b => {
                self.stats.sequences += 1;
                self.state = State::Escape;
            }
            _ => self.abandon(byte, out),
        }
    }

    /// The single numeric parameter, `None` if there are several or
    /// something else than digits.
    fn single_param(&self) -> Option<Option<u32>> {
        let params = &self.params[..self.params_len];
        if params.is_empty() {
            return Some(None);
        }
        let mut value: u32 = 0;
        for &d in params {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value.saturating_mul(10).saturating_add(u32::from(d - b'0'));
        }
        Some(Some(value))
    }

    fn csi_final(&mut self, fin: u8, out: &mut Out<'_>) {
        if self.csi_odd {
            self.stats.sequences += 1;
            return;
        }
        let params_len = self.params_len;
        let params = self.params;
        let pass = |out: &mut Out<'_>| {
            out.push(b"\x1b[");
            out.push(&params[..params_len]);
            out.push(&[fin]);
        };
        match (fin, self.single_param()) {
            (b'm', _)
                if params[..params_len]
                    .iter()
                    .all(|&b| b.is_ascii_digit() || b == b';' || b == b':') =>
            {
                self.sgr_dirty = true;
                pass(out);
            }
            (b'K', Some(None | Some(0))) => pass(out),
            (b'J', Some(None | Some(0))) => out.push(b"\x1b[K"),
            (b'P' | b'X' | b'@', Some(_)) => pass(out),
            (b'D', Some(n)) => {
                let want = n.unwrap_or(1).max(1) as usize;
                let go = want.min(self.col);
                if go < want {
                    self.stats.clamped_moves += 1;
                }
                if go > 0 {
                    self.col -= go;
                    let mut num = [0u8; 20];
                    out.push(b"\x1b[");
                    out.push(format_decimal(go, &mut num));
                    out.push(b"D");
                }
            }
            _ => self.stats.sequences += 1,
        }
    }
}

/// `n` in decimal, in `buf`.
fn format_decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}
