//! The console multiplexer: line attribution, partial lines, focus, the
//! escape key and its commands, colour and statistics.

use super::*;
use crate::test_rng::Rng;

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
fn escape_c_toggles_the_capture() {
    let mut t = Term::new(2);
    t.key(ESCAPE_BYTE);
    assert_eq!(t.key(b'c'), InputAction::ToggleCapture);
    assert_eq!(t.take(), "");
    // Without the escape, `c` is typed into the focused VM.
    assert_eq!(t.key(b'c'), InputAction::Deliver { vm: 0, byte: b'c' });
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
