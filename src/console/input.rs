//! Console input: the escape key (`Ctrl-\`) and its commands — focus,
//! statistics, packet capture, restart and stop of a VM, help — and delivery of every
//! other byte to the VM with focus.

use core::fmt::Write as _;

use super::{ConsoleMux, ConsoleSink, ESCAPE_BYTE, InputAction, StackBuf, VmCommand};

impl ConsoleMux {
    /// Prints the escape-key help through the output path.
    pub fn print_help(&mut self, out: &mut dyn ConsoleSink) {
        const HELP: [&[u8]; 9] = [
            b"console: escape is Ctrl-\\ (0x1c), then:",
            b"  0-9     focus that vm",
            b"  n       focus the next vm",
            b"  s       show device statistics",
            b"  r N     restart vm N (also after it stopped)",
            b"  k N     stop vm N",
            b"  c       packet capture on/off (NET_CAPTURE=FILE)",
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
            b'c' => {
                self.stats.commands += 1;
                InputAction::ToggleCapture
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
}
