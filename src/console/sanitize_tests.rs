//! Forging attempts through the console multiplexer, checked on a rendered
//! screen: the byte stream the mux produces is applied to a small terminal
//! model, and every line of the result must start with the prefix of the
//! source that wrote it.

use super::*;

/// A minimal VT model: a grid without wrapping, a cursor, and the controls
/// a forging guest would try (CR, LF, BS, TAB, CSI A/B/C/D/G/H/f/J/K/P/X/@,
/// SGR ignored, OSC/DCS strings and other escapes skipped).
struct Screen {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Screen {
    fn render(bytes: &[u8]) -> Vec<String> {
        let mut s = Screen {
            rows: vec![Vec::new()],
            row: 0,
            col: 0,
        };
        let mut i = 0;
        while i < bytes.len() {
            i = s.step(bytes, i);
        }
        s.rows
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_string())
            .collect()
    }

    fn put(&mut self, c: char) {
        while self.rows.len() <= self.row {
            self.rows.push(Vec::new());
        }
        let row = &mut self.rows[self.row];
        while row.len() <= self.col {
            row.push(' ');
        }
        row[self.col] = c;
        self.col += 1;
    }

    fn line(&mut self) -> &mut Vec<char> {
        while self.rows.len() <= self.row {
            self.rows.push(Vec::new());
        }
        &mut self.rows[self.row]
    }

    /// Applies the control or character at `i`; returns the next index.
    fn step(&mut self, b: &[u8], i: usize) -> usize {
        match b[i] {
            b'\r' => self.col = 0,
            b'\n' => self.row += 1,
            0x08 => self.col = self.col.saturating_sub(1),
            b'\t' => self.col = (self.col / 8 + 1) * 8,
            0x1b => return self.escape(b, i + 1),
            c if (0x20..0x7f).contains(&c) => self.put(c as char),
            c if c >= 0x80 => self.put('?'),
            _ => {}
        }
        i + 1
    }

    fn escape(&mut self, b: &[u8], i: usize) -> usize {
        match b.get(i) {
            Some(b'[') => self.csi(b, i + 1),
            Some(b']' | b'P' | b'_' | b'^' | b'X') => {
                let mut j = i + 1;
                while j < b.len() {
                    if b[j] == 0x07 {
                        return j + 1;
                    }
                    if b[j] == 0x1b && b.get(j + 1) == Some(&b'\\') {
                        return j + 2;
                    }
                    j += 1;
                }
                j
            }
            Some(_) => i + 1,
            None => i,
        }
    }

    fn csi(&mut self, b: &[u8], mut j: usize) -> usize {
        let start = j;
        while j < b.len() && !(0x40..=0x7e).contains(&b[j]) {
            j += 1;
        }
        let Some(&fin) = b.get(j) else {
            return j;
        };
        let params: Vec<usize> = core::str::from_utf8(&b[start..j])
            .unwrap_or("")
            .split(';')
            .map(|p| p.trim_start_matches('?').parse().unwrap_or(0))
            .collect();
        let n = params.first().copied().unwrap_or(0);
        let n1 = n.max(1);
        match fin {
            b'A' => self.row = self.row.saturating_sub(n1),
            b'B' => self.row += n1,
            b'C' => self.col += n1,
            b'D' => self.col = self.col.saturating_sub(n1),
            b'G' => self.col = n1 - 1,
            b'H' | b'f' => {
                self.row = n1 - 1;
                self.col = params.get(1).copied().unwrap_or(1).max(1) - 1;
            }
            b'K' | b'J' => {
                let col = self.col;
                let line = self.line();
                match n {
                    0 => line.truncate(col),
                    1 => line.iter_mut().take(col + 1).for_each(|c| *c = ' '),
                    _ => line.clear(),
                }
                if fin == b'J' && n == 2 {
                    self.rows.iter_mut().for_each(Vec::clear);
                }
            }
            b'P' => {
                let col = self.col;
                let line = self.line();
                for _ in 0..n1 {
                    if col < line.len() {
                        line.remove(col);
                    }
                }
            }
            _ => {}
        }
        j + 1
    }
}

struct Console {
    mux: ConsoleMux,
    out: Vec<u8>,
    now: u64,
}

impl Console {
    fn new(vms: usize) -> Self {
        Console {
            mux: ConsoleMux::new(ConsoleConfig::new(vms, 0)),
            out: Vec::new(),
            now: 0,
        }
    }

    fn write(&mut self, src: Source, bytes: &[u8]) {
        self.now += 1;
        let out = &mut self.out;
        self.mux.write(src, bytes, self.now, &mut |b: &[u8]| {
            out.extend_from_slice(b)
        });
        self.mux
            .flush_idle(self.now, &mut |b: &[u8]| out.extend_from_slice(b));
    }

    fn screen(&mut self) -> Vec<String> {
        let out = &mut self.out;
        self.mux.flush_all(&mut |b: &[u8]| out.extend_from_slice(b));
        Screen::render(&self.out)
    }
}

/// Every non-empty line starts with a real prefix, genuine hypervisor
/// lines are intact, and the forger's text (marked `FAKE`) appears only on
/// lines that start with the forger's own prefix.
fn assert_attributed(screen: &[String], forger: &str) {
    for line in screen.iter().filter(|l| !l.is_empty()) {
        let prefix = ["[hv] ", "[vm0] ", "[vm1] "]
            .into_iter()
            .find(|p| line.starts_with(p));
        let Some(prefix) = prefix else {
            panic!("line without a prefix: {line:?} in {screen:#?}");
        };
        if line.contains("FAKE") {
            assert_eq!(prefix, forger, "forged line {line:?} in {screen:#?}");
        }
        if prefix == "[hv] " {
            assert_eq!(line, "[hv] genuine message", "{screen:#?}");
        }
    }
}

/// `attack` from vm1 between genuine lines of the hypervisor and vm0.
fn attempt(attack: &[u8]) -> (Vec<String>, SanitizeStats) {
    let mut c = Console::new(2);
    c.write(Source::Hv, b"genuine message\n");
    c.write(Source::Vm(0), b"vm0 says hello\n");
    c.write(Source::Vm(1), attack);
    c.write(Source::Hv, b"genuine message\n");
    c.write(Source::Vm(1), attack);
    c.write(Source::Vm(0), b"vm0 again\n");
    let screen = c.screen();
    assert_attributed(&screen, "[vm1] ");
    assert!(
        screen.contains(&"[vm0] vm0 says hello".to_string()),
        "{screen:#?}"
    );
    assert!(
        screen.contains(&"[vm0] vm0 again".to_string()),
        "{screen:#?}"
    );
    (screen, c.mux.output_stats(1))
}

#[test]
fn carriage_return_reprints_the_prefix() {
    let (screen, _) = attempt(b"\r[hv] FAKE\n");
    assert!(
        screen.contains(&"[vm1] [hv] FAKE".to_string()),
        "{screen:#?}"
    );
    let (screen, _) = attempt(b"xyz\r[hv] FAKE\n");
    assert!(
        screen.contains(&"[vm1] [hv] FAKE".to_string()),
        "{screen:#?}"
    );
}

#[test]
fn absolute_column_is_dropped() {
    let (screen, stats) = attempt(b"\x1b[1G[vm0] FAKE\n");
    assert!(
        screen.contains(&"[vm1] [vm0] FAKE".to_string()),
        "{screen:#?}"
    );
    assert_eq!(stats.sequences, 2);
}

#[test]
fn erasing_the_line_or_screen_is_dropped() {
    let (_, stats) = attempt(b"abc\x1b[2KFAKE\n");
    assert_eq!(stats.sequences, 2);
    let (_, stats) = attempt(b"abc\x1b[1K\x1b[2J\x1b[HFAKE\n");
    assert_eq!(stats.sequences, 6);
}

#[test]
fn backspaces_stop_at_the_prefix() {
    let mut attack = b"ab".to_vec();
    attack.extend_from_slice(&[0x08; 20]);
    attack.extend_from_slice(b"[hv] FAKE\n");
    let (screen, stats) = attempt(&attack);
    assert!(
        screen.contains(&"[vm1] [hv] FAKE".to_string()),
        "{screen:#?}"
    );
    assert_eq!(stats.clamped_moves, 36);
    let (_, stats) = attempt(b"ab\x1b[99D[hv] FAKE\n");
    assert_eq!(stats.clamped_moves, 2);
}

#[test]
fn backspaces_after_an_interruption_stop_at_the_new_prefix() {
    let mut c = Console::new(2);
    c.write(Source::Vm(1), b"abcdefgh");
    c.write(Source::Hv, b"genuine message\n");
    let mut attack = vec![0x08; 8];
    attack.extend_from_slice(b"[hv] FAKE\n");
    c.write(Source::Vm(1), &attack);
    let screen = c.screen();
    assert_attributed(&screen, "[vm1] ");
    assert_eq!(c.mux.output_stats(1).clamped_moves, 8);
}

#[test]
fn cursor_up_down_and_save_restore_are_dropped() {
    let (_, stats) = attempt(b"\x1b[A\x1b[B\x1b[5C\r[hv] FAKE\n");
    assert_eq!(stats.sequences, 6);
    let (_, stats) = attempt(b"\x1b7\x1b[s\x1bM\x1b8\x1b[uFAKE\x1b[?25l\x1b[6n\x1bc\x1b(0\n");
    assert_eq!(stats.sequences, 18);
}

#[test]
fn control_strings_and_stray_controls_are_dropped() {
    let (screen, stats) =
        attempt(b"\x1b]0;[hv] FAKE title\x07\x1bP+q\x1b\\x\x0c\x0b\x9b2K\x7fFAKE\n");
    assert!(screen.contains(&"[vm1] x2KFAKE".to_string()), "{screen:#?}");
    assert_eq!(stats.strings, 4);
    assert_eq!(stats.controls, 8);
    // An unterminated string ends with the line: the next line shows.
    let mut c = Console::new(2);
    c.write(Source::Vm(1), b"\x1b]0;never ended\n");
    c.write(Source::Vm(1), b"visible\n");
    assert!(c.screen().contains(&"[vm1] visible".to_string()));
}

#[test]
fn colour_is_reset_before_the_line_ends_or_is_interrupted() {
    let mut c = Console::new(2);
    c.write(Source::Vm(1), b"\x1b[31mred\n");
    assert!(c.out.ends_with(b"red\x1b[0m\r\n"), "{:?}", c.out);
    c.write(Source::Vm(1), b"\x1b[8mhidden");
    c.write(Source::Hv, b"genuine message\n");
    let text = String::from_utf8_lossy(&c.out).to_string();
    assert!(text.contains("hidden\x1b[0m\r\n[hv] genuine"), "{text:?}");
    // A concealed line cannot hide the prefix written again after CR.
    c.write(Source::Vm(1), b"\x1b[8mx\rFAKE\n");
    let text = String::from_utf8_lossy(&c.out).to_string();
    assert!(text.contains("x\x1b[0m\r[vm1] FAKE"), "{text:?}");
    assert_eq!(c.mux.output_stats(1).colour_resets, 3);
}

#[test]
fn ash_line_editing_renders_as_typed() {
    let mut c = Console::new(1);
    c.write(Source::Vm(0), b"~ # ");
    c.write(Source::Vm(0), b"abc");
    c.write(Source::Vm(0), b"\x08 \x08");
    c.write(Source::Vm(0), b"d\n");
    c.write(Source::Vm(0), b"~ # hello\x1b[3D\x1b[K\n");
    c.write(Source::Vm(0), b"~ # wrong\x08\x08\x08\x08\x08\x1b[Jright\n");
    c.write(Source::Vm(0), b"~ # ls -l\x1b[2D\x1b[1P\n");
    c.write(Source::Vm(0), b"~ # ab\r~ # abc\n");
    c.write(Source::Vm(0), b"\x1b[1;32mgreen\x1b[0m caf\xc3\xa9\n");
    let screen = c.screen();
    assert_eq!(
        &screen[..6],
        [
            "[vm0] ~ # abd",
            "[vm0] ~ # he",
            "[vm0] ~ # right",
            "[vm0] ~ # ls l",
            "[vm0] ~ # abc",
            "[vm0] green caf??",
        ],
        "{:?}",
        String::from_utf8_lossy(&c.out)
    );
    assert_eq!(c.mux.output_stats(0).neutralised(), 0);
}
