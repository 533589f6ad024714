//! The VM lifecycle commands of the escape key: `Ctrl-\ r N` restarts VM
//! N, `Ctrl-\ k N` stops it; both confirm with a line and are listed in the
//! help.

use super::*;

struct Keys {
    mux: ConsoleMux,
    out: Vec<u8>,
}

impl Keys {
    fn new(vms: usize) -> Self {
        let mut config = ConsoleConfig::new(vms, 10);
        config.colour = false;
        Keys {
            mux: ConsoleMux::new(config),
            out: Vec::new(),
        }
    }

    fn typed(&mut self, bytes: &[u8]) -> Vec<InputAction> {
        let out = &mut self.out;
        bytes
            .iter()
            .map(|&b| {
                self.mux
                    .feed_input(b, &mut |o: &[u8]| out.extend_from_slice(o))
            })
            .collect()
    }

    fn take(&mut self) -> String {
        String::from_utf8(core::mem::take(&mut self.out)).unwrap()
    }
}

const ESC: u8 = ESCAPE_BYTE;

#[test]
fn r_and_a_number_restart_that_vm_with_a_confirmation() {
    let mut k = Keys::new(3);
    let actions = k.typed(&[ESC, b'r']);
    assert_eq!(actions, [InputAction::None, InputAction::None]);
    assert!(k.mux.escape_pending(), "waiting for the VM number");
    assert_eq!(k.typed(b"2"), [InputAction::RestartVm(2)]);
    assert!(!k.mux.escape_pending());
    assert_eq!(k.take(), "[hv] console: restarting vm2\r\n");
    // Input goes to the focused VM again afterwards; focus is unchanged.
    assert_eq!(k.typed(b"x"), [InputAction::Deliver { vm: 0, byte: b'x' }]);
    assert_eq!(k.mux.stats().commands, 1);
}

#[test]
fn k_and_a_number_stop_that_vm_with_a_confirmation() {
    let mut k = Keys::new(2);
    let actions = k.typed(&[ESC, b'k', b'1']);
    assert_eq!(actions[2], InputAction::StopVm(1));
    assert_eq!(k.take(), "[hv] console: stopping vm1\r\n");
}

#[test]
fn a_missing_vm_or_a_non_digit_is_refused() {
    let mut k = Keys::new(2);
    assert_eq!(k.typed(&[ESC, b'k', b'5'])[2], InputAction::None);
    assert_eq!(k.take(), "[hv] console: no vm5 (vm0-vm1)\r\n");
    // A non-digit after r prints the help and is not delivered.
    assert_eq!(k.typed(&[ESC, b'r', b'q'])[2], InputAction::None);
    let help = k.take();
    assert!(help.contains("[hv]   r N     restart vm N (also after it stopped)\r\n"));
    assert!(help.contains("[hv]   k N     stop vm N\r\n"));
    assert_eq!(k.mux.stats().bad_commands, 2);
    assert_eq!(k.mux.stats().commands, 0);
    // Back to normal input.
    assert_eq!(k.typed(b"1"), [InputAction::Deliver { vm: 0, byte: b'1' }]);
}

#[test]
fn the_help_lists_the_new_keys() {
    let mut k = Keys::new(2);
    k.typed(&[ESC, b'h']);
    let help = k.take();
    let lines: Vec<&str> = help.split("\r\n").filter(|l| !l.is_empty()).collect();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
    assert!(at("show device statistics") < at("r N     restart"));
    assert!(at("r N     restart") < at("k N     stop"));
    assert!(lines.iter().all(|l| l.starts_with("[hv] ")));
}
