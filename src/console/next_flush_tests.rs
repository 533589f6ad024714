//! When the multiplexer asks to be woken to show a partial line.

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
