//! Target `boot_config`: the boot configuration text, either raw bytes or
//! assembled from plausible and implausible `key=value` lines. Every error
//! formats; every accepted configuration satisfies the documented rules
//! (checked here against the platform constants, not the parser), and
//! writing it out again and parsing that gives the same configuration.

use arbitrary::Arbitrary;
use hypervisor::config::{BootConfig, ConsoleMode, Placement, Staged};
use hypervisor::platform::{
    HOST_CONFIG_MAX, HOST_DISK_ADDR, HOST_DISK_MAX, HOST_DTB_BASE, HOST_DTB_STRIDE,
    HOST_INITRD_ADDR, HOST_INITRD_MAX, HOST_KERNEL_ADDR, HOST_KERNEL_MAX, MAX_PCPUS, MAX_VCPUS,
    MAX_VMS,
};
use std::fmt::Write;

/// A key.
#[derive(Arbitrary, Clone, Debug)]
pub enum Key {
    /// `hvconf`.
    Hvconf,
    /// `placement`.
    Placement,
    /// `vms`.
    Vms,
    /// `vcpus`.
    Vcpus,
    /// `mem`.
    Mem,
    /// `kernel`.
    Kernel,
    /// `initrd`.
    Initrd,
    /// `disk`.
    Disk,
    /// `dtb<n>`.
    Dtb(u8),
    /// `net`.
    Net,
    /// `console`.
    Console,
    /// Any text.
    Other(String),
}

/// A number as text.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Num {
    /// Decimal.
    Dec(u64),
    /// Hexadecimal.
    Hex(u64),
    /// Near a base: `base + off`.
    Near(u8, u32),
}

impl Num {
    fn text(self, base: u64) -> String {
        match self {
            Num::Dec(v) => v.to_string(),
            Num::Hex(v) => format!("{v:#x}"),
            Num::Near(_, off) => format!("{:#x}", base.wrapping_add(u64::from(off))),
        }
    }
}

/// A value.
#[derive(Arbitrary, Clone, Debug)]
pub enum Value {
    /// A number.
    Num(Num),
    /// `addr,size`.
    Range(Num, Num),
    /// A word from the format.
    Word(u8),
    /// Any text.
    Text(String),
}

/// One line.
#[derive(Arbitrary, Clone, Debug)]
pub struct Line {
    /// Key.
    pub key: Key,
    /// Value.
    pub value: Value,
    /// Extra spaces, a comment, `\r`.
    pub decor: u8,
}

/// The input.
#[derive(Arbitrary, Debug)]
pub enum Input {
    /// Raw bytes.
    Raw(Vec<u8>),
    /// Assembled lines, then a NUL and trailing garbage (or not).
    Lines(Vec<Line>, Option<Vec<u8>>),
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Hvconf => "hvconf".into(),
        Key::Placement => "placement".into(),
        Key::Vms => "vms".into(),
        Key::Vcpus => "vcpus".into(),
        Key::Mem => "mem".into(),
        Key::Kernel => "kernel".into(),
        Key::Initrd => "initrd".into(),
        Key::Disk => "disk".into(),
        Key::Dtb(n) => format!("dtb{}", n % 6),
        Key::Net => "net".into(),
        Key::Console => "console".into(),
        Key::Other(s) => s.clone(),
    }
}

fn base_of(key: &Key) -> u64 {
    match key {
        Key::Kernel => HOST_KERNEL_ADDR,
        Key::Initrd => HOST_INITRD_ADDR,
        Key::Disk => HOST_DISK_ADDR,
        Key::Dtb(n) => HOST_DTB_BASE + u64::from(n % 6) * HOST_DTB_STRIDE,
        Key::Mem => 64 << 20,
        _ => 0,
    }
}

const WORDS: &[&str] = &[
    "1",
    "timeslice",
    "per-pcpu",
    "on",
    "off",
    "prefix",
    "raw",
    "2",
    "0",
];

fn assemble(lines: &[Line], tail: &Option<Vec<u8>>) -> Vec<u8> {
    let mut text = String::new();
    for line in lines {
        let base = base_of(&line.key);
        let value = match &line.value {
            Value::Num(n) => n.text(base),
            Value::Range(a, s) => format!("{},{}", a.text(base), s.text(0x1000)),
            Value::Word(w) => WORDS[usize::from(*w) % WORDS.len()].into(),
            Value::Text(t) => t.clone(),
        };
        let pad = if line.decor & 1 != 0 { "  " } else { "" };
        let _ = write!(text, "{pad}{}{pad}={pad}{value}", key_text(&line.key));
        if line.decor & 2 != 0 {
            text.push_str(" # comment");
        }
        text.push_str(if line.decor & 4 != 0 { "\r\n" } else { "\n" });
    }
    let mut bytes = text.into_bytes();
    if let Some(tail) = tail {
        bytes.push(0);
        bytes.extend_from_slice(tail);
    }
    bytes
}

fn inside(s: Staged, base: u64, max: u64) -> bool {
    s.size > 0 && s.addr >= base && s.addr.checked_add(s.size).is_some_and(|e| e <= base + max)
}

/// Writes `c` out in the documented format.
fn render(c: &BootConfig) -> String {
    let mut t = String::from("hvconf=1\n");
    let placement = match c.placement {
        Placement::TimeSliced => "timeslice",
        Placement::PerPcpu => "per-pcpu",
    };
    let _ = writeln!(t, "placement={placement}");
    let _ = writeln!(t, "vms={}\nvcpus={}\nmem={:#x}", c.vms, c.vcpus, c.mem);
    let _ = writeln!(t, "kernel={:#x},{}", c.kernel.addr, c.kernel.size);
    if let Some(s) = c.initrd {
        let _ = writeln!(t, "initrd={:#x},{}", s.addr, s.size);
    }
    if let Some(s) = c.disk {
        let _ = writeln!(t, "disk={:#x},{}", s.addr, s.size);
    }
    for (n, s) in c.dtbs().iter().enumerate() {
        let _ = writeln!(t, "dtb{n}={:#x},{:#x}", s.addr, s.size);
    }
    let _ = writeln!(t, "net={}", if c.net { "on" } else { "off" });
    let console = match c.console {
        ConsoleMode::Prefix => "prefix",
        ConsoleMode::Raw => "raw",
    };
    let _ = writeln!(t, "console={console}");
    t
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some(input) = crate::decode::<Input>(data) else {
        return;
    };
    let bytes = match &input {
        Input::Raw(b) => b.clone(),
        Input::Lines(lines, tail) => assemble(lines, tail),
    };
    let window = &bytes[..bytes.len().min(HOST_CONFIG_MAX as usize)];
    let c = match BootConfig::parse(window) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!((1..=MAX_VMS).contains(&c.vms), "vms {}", c.vms);
    assert!((1..=MAX_VCPUS).contains(&c.vcpus), "vcpus {}", c.vcpus);
    assert!(c.mem >= 64 << 20 && c.mem % 4096 == 0, "mem {:#x}", c.mem);
    assert!(c.mem <= hypervisor::platform::GUEST_RAM_SIZE);
    if c.placement == Placement::PerPcpu {
        assert!(c.vms <= MAX_PCPUS);
    }
    assert!(
        inside(c.kernel, HOST_KERNEL_ADDR, HOST_KERNEL_MAX),
        "kernel"
    );
    if let Some(s) = c.initrd {
        assert!(inside(s, HOST_INITRD_ADDR, HOST_INITRD_MAX), "initrd");
    }
    if let Some(s) = c.disk {
        assert!(
            inside(s, HOST_DISK_ADDR, HOST_DISK_MAX) && s.size % 512 == 0,
            "disk"
        );
    }
    assert_eq!(c.dtbs().len(), c.vms, "one dtb per VM");
    for vm in 0..c.vms {
        let s = c.dtb(vm).expect("dtb of every VM");
        let base = HOST_DTB_BASE + vm as u64 * HOST_DTB_STRIDE;
        assert!(inside(s, base, HOST_DTB_STRIDE), "dtb{vm}");
    }
    assert!(c.dtb(c.vms).is_none());
    let again = BootConfig::parse(render(&c).as_bytes())
        .unwrap_or_else(|e| panic!("accepted configuration does not round-trip: {e}"));
    assert_eq!(again, c, "round trip");
}
