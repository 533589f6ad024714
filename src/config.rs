//! The boot configuration: which VMs to run, how, and where QEMU staged
//! their images.
//!
//! (About 960 lines on purpose: the format's contract, every key's parser
//! and every error message with the line it came from are kept in one
//! place, so the documented format and the code cannot drift; the tests
//! are in `config/tests.rs`.)
//!
//! # Format (the contract with the Makefile)
//! QEMU places a text file at [`platform::HOST_CONFIG_ADDR`]
//! (`-device loader,file=hv.conf,addr=0x44000000,force-raw=on`). The
//! hypervisor reads at most [`platform::HOST_CONFIG_MAX`] (4096) bytes; the
//! text ends at the first NUL byte or at that limit. If there is no NUL in
//! the whole window, the file must end with a newline (otherwise it was
//! probably longer than 4096 bytes and got cut off, which is an error).
//!
//! * One `key=value` per line; `\n` or `\r\n` line ends; UTF-8.
//! * `#` starts a comment that runs to the end of the line (values never
//!   contain `#`); blank lines are ignored.
//! * Whitespace around keys and values is trimmed. Keys are case-sensitive.
//! * Numbers are decimal (`8388608`) or hexadecimal with `0x`/`0X`
//!   (`0x800000`); no signs, no separators.
//! * A staged image is `address,size` (each a number).
//! * Every key may appear at most once; unknown keys are errors.
//!
//! | key | value | required | rule |
//! |-----|-------|----------|------|
//! | `hvconf` | `1` | yes, **first key** | format version |
//! | `placement` | `timeslice` \| `per-pcpu` | yes | `timeslice`: every vCPU time-sliced on pCPU 0; `per-pcpu`: VM *n* pinned to pCPU *n* (needs `vms <=` [`platform::MAX_PCPUS`]) |
//! | `vms` | number | yes | `1..=`[`platform::MAX_VMS`] |
//! | `vcpus` | number | yes | vCPUs per VM, `1..=`[`platform::MAX_VCPUS`] |
//! | `mem` | number | yes | guest RAM per VM in bytes: `>= 64 MiB`, `<=` [`platform::GUEST_RAM_SIZE`], a multiple of 4 KiB |
//! | `kernel` | `addr,size` | yes | inside `[HOST_KERNEL_ADDR, +HOST_KERNEL_MAX)` |
//! | `initrd` | `addr,size` | no | inside `[HOST_INITRD_ADDR, +HOST_INITRD_MAX)` |
//! | `disk` | `addr,size` | no | virtio-blk image (each VM gets a private copy), inside `[HOST_DISK_ADDR, +HOST_DISK_MAX)`, size a multiple of 512 |
//! | `dtb<N>` | `addr,size` | one per VM, `N = 0..vms-1` | inside `[HOST_DTB_BASE + N * HOST_DTB_STRIDE, +HOST_DTB_STRIDE)` |
//! | `net` | `on` \| `off` | no (default `on`) | attach virtio-net |
//! | `console` | `prefix` \| `raw` | no (default `prefix`) | prefix each guest console line with its VM |
//! | `net_vlans` | list | no (default all `1`) | access VLAN of each VM's switch port, in VM order (`1,1,2`), each `1..=`[`MAX_VLAN`]; VMs beyond the list get VLAN 1 |
//! | `net_rate_mbit` | list | no (default all `0`) | transmit limit of each VM's port in Mbit/s (`0,50`), each `0..=`[`MAX_RATE_MBIT`], 0 = unlimited; VMs beyond the list are unlimited |
//! | `net_offloads` | list | no (default all `1`) | whether each VM's virtio-net offers checksum and segmentation offload (`1,0`), each `0` or `1`; a VM without gets only plain frames (the switch completes checksums and cuts offload frames for it); VMs beyond the list get them |
//! | `net_capture` | absolute path | no | capture every frame the switch sees into this host file (pcapng, written through QEMU semihosting); at most [`CAPTURE_PATH_MAX`] bytes, no `#` |
//!
//! A list is numbers separated by commas, at most one per VM (`vms`).
//!
//! Staged ranges must be non-empty. `dtb<N>` with `N >= vms` is an error
//! (`N` is decimal without leading zeros).
//!
//! ```text
//! hvconf=1                      # format version, required first key
//! placement=timeslice
//! vms=2
//! vcpus=1
//! mem=0x10000000
//! kernel=0x48000000,27303872
//! initrd=0x50000000,1234567
//! disk=0x58000000,8388608
//! dtb0=0x44100000,4096
//! dtb1=0x44200000,4096
//! net=on
//! console=prefix
//! ```
//!
//! Errors ([`ConfigError`]) carry the line number and quote the offending
//! key or value.
//!
//! ```
//! use hypervisor::config::{BootConfig, Placement};
//! let text = b"hvconf=1\nplacement=per-pcpu\nvms=1\nvcpus=2\nmem=0x8000000\n\
//!              kernel=0x48000000,0x1000000\ndtb0=0x44100000,0x1000\n\0garbage";
//! let c = BootConfig::parse(text).unwrap();
//! assert_eq!(c.placement, Placement::PerPcpu);
//! assert_eq!(c.dtb(0).unwrap().addr, 0x4410_0000);
//! assert!(c.net);
//! let e = BootConfig::parse(b"hvconf=1\nvms=9\n").unwrap_err();
//! assert_eq!(e.to_string(), "boot config line 2: vms=9 is out of range (1..=4)");
//! ```

use core::fmt;

use crate::platform;

// `dtb<N>` names in messages are built with one digit.
const _: () = assert!(platform::MAX_VMS <= 10);

/// Smallest guest RAM accepted.
pub const MIN_MEM: u64 = 64 << 20;
/// The only format version understood.
pub const FORMAT_VERSION: u64 = 1;
/// Disk images are made of sectors of this size.
pub const SECTOR_SIZE: u64 = 512;
/// Largest VLAN ID of `net_vlans`.
pub const MAX_VLAN: u16 = crate::net::MAX_VLAN;
/// Largest transmit limit of `net_rate_mbit` (100 Gbit/s).
pub const MAX_RATE_MBIT: u32 = 100_000;
/// Longest `net_capture` path in bytes.
pub const CAPTURE_PATH_MAX: usize = 200;

/// The host file of the packet capture (`net_capture`): an absolute path,
/// kept NUL-terminated for semihosting `SYS_OPEN`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CapturePath {
    buf: [u8; CAPTURE_PATH_MAX + 1],
    len: usize,
}

impl CapturePath {
    fn new(path: &str) -> Option<CapturePath> {
        if path.len() > CAPTURE_PATH_MAX || path.contains('\0') {
            return None;
        }
        let mut buf = [0u8; CAPTURE_PATH_MAX + 1];
        buf.get_mut(..path.len())?.copy_from_slice(path.as_bytes());
        Some(CapturePath {
            buf,
            len: path.len(),
        })
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }

    /// The path followed by a NUL byte.
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        self.buf.get(..=self.len).unwrap_or(&[])
    }
}

impl fmt::Debug for CapturePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

pub use crate::sched::Placement;

/// How guest console output is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Each line prefixed with its VM.
    Prefix,
    /// Bytes passed through unchanged.
    Raw,
}

/// An image QEMU placed in host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    /// Host-physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A parsed and validated boot configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// vCPU placement.
    pub placement: Placement,
    /// Number of VMs, `1..=MAX_VMS`.
    pub vms: usize,
    /// vCPUs per VM, `1..=MAX_VCPUS`.
    pub vcpus: usize,
    /// Guest RAM per VM in bytes.
    pub mem: u64,
    /// The kernel `Image` (shared by all VMs).
    pub kernel: Staged,
    /// The initramfs (shared by all VMs).
    pub initrd: Option<Staged>,
    /// The virtio-blk disk image (copied per VM).
    pub disk: Option<Staged>,
    dtbs: [Staged; platform::MAX_VMS],
    /// Attach virtio-net.
    pub net: bool,
    /// Console line attribution.
    pub console: ConsoleMode,
    /// Access VLAN of each VM's switch port.
    pub net_vlans: [u16; platform::MAX_VMS],
    /// Transmit limit of each VM's switch port in Mbit/s (0: unlimited).
    pub net_rate_mbit: [u32; platform::MAX_VMS],
    /// Whether each VM's virtio-net offers checksum and segmentation
    /// offload.
    pub net_offloads: [bool; platform::MAX_VMS],
    /// The packet capture file, if any.
    pub net_capture: Option<CapturePath>,
}

impl BootConfig {
    /// Parses the configuration region (up to
    /// [`platform::HOST_CONFIG_MAX`] bytes; see the module docs).
    pub fn parse(region: &[u8]) -> Result<BootConfig, ConfigError> {
        parse(config_text(region)?)
    }

    /// Device tree of VM `vm`, if `vm < vms`.
    pub fn dtb(&self, vm: usize) -> Option<Staged> {
        self.dtbs().get(vm).copied()
    }

    /// Device trees of all VMs, indexed by VM.
    pub fn dtbs(&self) -> &[Staged] {
        &self.dtbs[..self.vms]
    }
}

/// A short copy of a key or value for error messages (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Snippet {
    buf: [u8; Snippet::CAP],
    len: u8,
    cut: bool,
}

impl Snippet {
    const CAP: usize = 40;

    fn new(s: &str) -> Snippet {
        let mut len = s.len().min(Self::CAP);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        let mut buf = [0; Self::CAP];
        buf[..len].copy_from_slice(&s.as_bytes()[..len]);
        Snippet {
            buf,
            len: len as u8,
            cut: len < s.len(),
        }
    }

    /// The text (possibly shortened).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.as_str().chars() {
            write!(f, "{}", c.escape_debug())?;
        }
        if self.cut {
            write!(f, "...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Why the configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line, or `None` for problems with the file as a whole.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// The reason inside a [`ConfigError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// No NUL in the whole window and the last line is cut off.
    Truncated,
    /// The line is not UTF-8.
    NotUtf8,
    /// The line has no `=`, or nothing before it.
    NotKeyValue {
        /// The line.
        text: Snippet,
    },
    /// The first key is not `hvconf`.
    HvconfNotFirst {
        /// The key found instead.
        key: Snippet,
    },
    /// `hvconf` is not `1`.
    UnsupportedVersion {
        /// The value found.
        value: Snippet,
    },
    /// A key this format does not have.
    UnknownKey {
        /// The key.
        key: Snippet,
    },
    /// A key given twice.
    DuplicateKey {
        /// The key.
        key: Snippet,
        /// Line of the first occurrence.
        first_line: usize,
    },
    /// `key=` with nothing after the `=`.
    EmptyValue {
        /// The key.
        key: Snippet,
    },
    /// Not a decimal or `0x` hexadecimal number that fits 64 bits.
    BadNumber {
        /// The key.
        key: Snippet,
        /// The value.
        value: Snippet,
    },
    /// Not `address,size`.
    BadRange {
        /// The key.
        key: Snippet,
        /// The value.
        value: Snippet,
    },
    /// Not one of the allowed words.
    BadChoice {
        /// The key.
        key: Snippet,
        /// The value.
        value: Snippet,
        /// The allowed words.
        expected: &'static str,
    },
    /// A count outside its bounds.
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// `mem` is not a multiple of 4 KiB.
    MemNotPageMultiple {
        /// The value.
        mem: u64,
    },
    /// A staged range of size 0.
    EmptyImage {
        /// The key.
        key: Snippet,
    },
    /// A staged range outside its staging window.
    OutsideWindow {
        /// The key.
        key: Snippet,
        /// Start of the range.
        addr: u64,
        /// Its size.
        size: u64,
        /// Start of the window.
        window: u64,
        /// End of the window.
        window_end: u64,
    },
    /// The disk size is not a whole number of sectors.
    DiskNotSectorMultiple {
        /// The size.
        size: u64,
    },
    /// `dtb<N>` with `N >= MAX_VMS`.
    DtbIndexTooLarge {
        /// The key.
        key: Snippet,
    },
    /// `dtb<N>` with `N >= vms`.
    DtbWithoutVm {
        /// The VM index.
        vm: usize,
        /// The number of VMs.
        vms: usize,
    },
    /// `per-pcpu` with more VMs than physical CPUs.
    TooManyVmsForPcpus {
        /// The number of VMs.
        vms: usize,
    },
    /// A required key is absent.
    MissingKey {
        /// The key (`dtb<N>` spelled out).
        key: Snippet,
    },
    /// A per-VM list with more entries than VMs.
    TooManyEntries {
        /// The key.
        key: &'static str,
        /// Entries given.
        count: usize,
        /// The number of VMs.
        vms: usize,
    },
    /// `net_capture` is not an absolute path, or too long.
    BadCapturePath {
        /// The value.
        value: Snippet,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind::*;
        match self.line {
            Some(line) => write!(f, "boot config line {line}: ")?,
            None => write!(f, "boot config: ")?,
        }
        match self.kind {
            Truncated => write!(
                f,
                "no NUL terminator in the {:#x}-byte window and the last line is cut off (is the \
                 file larger than {} bytes?)",
                platform::HOST_CONFIG_MAX,
                platform::HOST_CONFIG_MAX
            ),
            NotUtf8 => write!(f, "not valid UTF-8"),
            NotKeyValue { text } => write!(f, "expected key=value, found '{text}'"),
            HvconfNotFirst { key } => write!(
                f,
                "the first key must be hvconf={FORMAT_VERSION}, found '{key}'"
            ),
            UnsupportedVersion { value } => write!(
                f,
                "unsupported format version hvconf={value} (this hypervisor reads \
                 hvconf={FORMAT_VERSION})"
            ),
            UnknownKey { key } => write!(f, "unknown key '{key}'"),
            DuplicateKey { key, first_line } => {
                write!(f, "duplicate key '{key}' (first set on line {first_line})")
            }
            EmptyValue { key } => write!(f, "{key}= has no value"),
            BadNumber { key, value } => write!(
                f,
                "{key}={value}: '{value}' is not a number (decimal or 0x-hex, 64-bit)"
            ),
            BadRange { key, value } => write!(
                f,
                "{key}={value}: expected address,size (e.g. 0x48000000,27303872)"
            ),
            BadChoice {
                key,
                value,
                expected,
            } => write!(f, "{key}={value}: expected {expected}"),
            OutOfRange {
                key,
                value,
                min,
                max,
            } => {
                if key == "mem" {
                    write!(
                        f,
                        "mem={value:#x} is out of range ({min:#x}..={max:#x} bytes)"
                    )
                } else {
                    write!(f, "{key}={value} is out of range ({min}..={max})")
                }
            }
            MemNotPageMultiple { mem } => {
                write!(f, "mem={mem:#x} is not a multiple of 4 KiB (0x1000)")
            }
            EmptyImage { key } => write!(f, "{key}: staged size is 0"),
            OutsideWindow {
                key,
                addr,
                size,
                window,
                window_end,
            } => write!(
                f,
                "{key}: range {addr:#x}+{size:#x} lies outside its staging window \
                 {window:#x}..{window_end:#x}"
            ),
            DiskNotSectorMultiple { size } => write!(
                f,
                "disk: size {size} ({size:#x}) is not a multiple of the {SECTOR_SIZE}-byte sector"
            ),
            DtbIndexTooLarge { key } => write!(
                f,
                "{key}: VM index beyond the maximum of {} VMs (dtb0..dtb{})",
                platform::MAX_VMS,
                platform::MAX_VMS - 1
            ),
            DtbWithoutVm { vm, vms } => write!(
                f,
                "dtb{vm} given but vms={vms} (VMs are numbered 0..{})",
                vms.saturating_sub(1)
            ),
            TooManyVmsForPcpus { vms } => write!(
                f,
                "placement=per-pcpu pins VM n to pCPU n, but vms={vms} exceeds the {} physical CPUs",
                platform::MAX_PCPUS
            ),
            MissingKey { key } => write!(f, "missing required key '{key}'"),
            TooManyEntries { key, count, vms } => write!(
                f,
                "{key} has {count} entries but vms={vms} (one per VM at most)"
            ),
            BadCapturePath { value } => write!(
                f,
                "net_capture={value}: expected an absolute path of at most {CAPTURE_PATH_MAX} bytes"
            ),
        }
    }
}

/// The configuration text inside the staged region: up to the first NUL,
/// at most [`platform::HOST_CONFIG_MAX`] bytes.
pub fn config_text(region: &[u8]) -> Result<&[u8], ConfigError> {
    let max = platform::HOST_CONFIG_MAX as usize;
    let window = &region[..region.len().min(max)];
    match window.iter().position(|&b| b == 0) {
        Some(nul) => Ok(&window[..nul]),
        None if window.len() == max && window.last() != Some(&b'\n') => Err(ConfigError {
            line: None,
            kind: ConfigErrorKind::Truncated,
        }),
        None => Ok(window),
    }
}

/// A value and the line it was set on.
type At<T> = Option<(T, usize)>;

#[derive(Default)]
struct Seen {
    hvconf: At<()>,
    placement: At<Placement>,
    vms: At<usize>,
    vcpus: At<usize>,
    mem: At<u64>,
    kernel: At<Staged>,
    initrd: At<Staged>,
    disk: At<Staged>,
    dtbs: [At<Staged>; platform::MAX_VMS],
    net: At<bool>,
    console: At<ConsoleMode>,
    net_vlans: At<PerVm<u16>>,
    net_rate_mbit: At<PerVm<u32>>,
    net_offloads: At<PerVm<bool>>,
    net_capture: At<CapturePath>,
}

/// A per-VM list as given: values and how many.
#[derive(Clone, Copy)]
struct PerVm<T> {
    values: [T; platform::MAX_VMS],
    count: usize,
}

fn parse_number(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `dtb<N>`: the VM index, or `None` if the key is not of that shape.
fn dtb_index(key: &str) -> Option<u64> {
    let n = key.strip_prefix("dtb")?;
    let ok =
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    if ok {
        // Very long digit strings saturate and are refused as too large.
        Some(n.parse().unwrap_or(u64::MAX))
    } else {
        None
    }
}

fn parse(text: &[u8]) -> Result<BootConfig, ConfigError> {
    let mut seen = Seen::default();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let err = |kind| ConfigError {
            line: Some(line),
            kind,
        };
        let raw = match raw.iter().position(|&b| b == b'#') {
            Some(hash) => &raw[..hash],
            None => raw,
        };
        let s = core::str::from_utf8(raw)
            .map_err(|_| err(ConfigErrorKind::NotUtf8))?
            .trim();
        if s.is_empty() {
            continue;
        }
        let Some((key, value)) = s.split_once('=') else {
            return Err(err(ConfigErrorKind::NotKeyValue {
                text: Snippet::new(s),
            }));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(err(ConfigErrorKind::NotKeyValue {
                text: Snippet::new(s),
            }));
        }
        if seen.hvconf.is_none() && key != "hvconf" {
            return Err(err(ConfigErrorKind::HvconfNotFirst {
                key: Snippet::new(key),
            }));
        }
        set(&mut seen, key, value, line).map_err(err)?;
    }
    finish(&seen)
}

fn set(seen: &mut Seen, key: &str, value: &str, line: usize) -> Result<(), ConfigErrorKind> {
    use ConfigErrorKind::*;
    let k = Snippet::new(key);
    let v = Snippet::new(value);
    // Which slot, checked for duplicates before the value is looked at.
    fn fresh<T>(slot: &At<T>, key: Snippet) -> Result<(), ConfigErrorKind> {
        match slot {
            Some((_, first_line)) => Err(DuplicateKey {
                key,
                first_line: *first_line,
            }),
            None => Ok(()),
        }
    }
    let number = || parse_number(value).ok_or(BadNumber { key: k, value: v });
    let range = || -> Result<Staged, ConfigErrorKind> {
        let (a, s) = value.split_once(',').ok_or(BadRange { key: k, value: v })?;
        let (a, s) = (a.trim(), s.trim());
        let num = |x: &str| parse_number(x).ok_or(BadNumber { key: k, value: v });
        if a.is_empty() || s.is_empty() || s.contains(',') {
            return Err(BadRange { key: k, value: v });
        }
        Ok(Staged {
            addr: num(a)?,
            size: num(s)?,
        })
    };
    // A comma-separated list of numbers in `min..=max`, at most MAX_VMS.
    let list = |name: &'static str, min: u64, max: u64| -> Result<PerVm<u64>, ConfigErrorKind> {
        let mut out = PerVm {
            values: [0u64; platform::MAX_VMS],
            count: 0,
        };
        for item in value.split(',') {
            let n = parse_number(item.trim()).ok_or(BadNumber { key: k, value: v })?;
            if !(min..=max).contains(&n) {
                return Err(OutOfRange {
                    key: name,
                    value: n,
                    min,
                    max,
                });
            }
            let Some(slot) = out.values.get_mut(out.count) else {
                return Err(TooManyEntries {
                    key: name,
                    count: value.split(',').count(),
                    vms: platform::MAX_VMS,
                });
            };
            *slot = n;
            out.count += 1;
        }
        Ok(out)
    };
    let count = |name: &'static str, max: usize| -> Result<usize, ConfigErrorKind> {
        let n = number()?;
        if n == 0 || n > max as u64 {
            return Err(OutOfRange {
                key: name,
                value: n,
                min: 1,
                max: max as u64,
            });
        }
        Ok(n as usize)
    };
    let staged = |window: u64, len: u64| -> Result<Staged, ConfigErrorKind> {
        let r = range()?;
        if r.size == 0 {
            return Err(EmptyImage { key: k });
        }
        let window_end = window + len;
        let inside =
            r.addr >= window && r.addr.checked_add(r.size).is_some_and(|e| e <= window_end);
        if !inside {
            return Err(OutsideWindow {
                key: k,
                addr: r.addr,
                size: r.size,
                window,
                window_end,
            });
        }
        Ok(r)
    };

    if value.is_empty() && key_is_known(key) {
        // Duplicates first: "vms=" twice is still a duplicate.
        if let Some(first_line) = first_line_of(seen, key) {
            return Err(DuplicateKey { key: k, first_line });
        }
        return Err(EmptyValue { key: k });
    }
    match key {
        "hvconf" => {
            fresh(&seen.hvconf, k)?;
            if parse_number(value) != Some(FORMAT_VERSION) {
                return Err(UnsupportedVersion { value: v });
            }
            seen.hvconf = Some(((), line));
        }
        "placement" => {
            fresh(&seen.placement, k)?;
            let p = match value {
                "timeslice" => Placement::TimeSliced,
                "per-pcpu" => Placement::PerPcpu,
                _ => {
                    return Err(BadChoice {
                        key: k,
                        value: v,
                        expected: "timeslice or per-pcpu",
                    });
                }
            };
            seen.placement = Some((p, line));
        }
        "vms" => {
            fresh(&seen.vms, k)?;
            seen.vms = Some((count("vms", platform::MAX_VMS)?, line));
        }
        "vcpus" => {
            fresh(&seen.vcpus, k)?;
            seen.vcpus = Some((count("vcpus", platform::MAX_VCPUS)?, line));
        }
        "mem" => {
            fresh(&seen.mem, k)?;
            let mem = number()?;
            if !(MIN_MEM..=platform::GUEST_RAM_SIZE).contains(&mem) {
                return Err(OutOfRange {
                    key: "mem",
                    value: mem,
                    min: MIN_MEM,
                    max: platform::GUEST_RAM_SIZE,
                });
            }
            if mem % 0x1000 != 0 {
                return Err(MemNotPageMultiple { mem });
            }
            seen.mem = Some((mem, line));
        }
        "kernel" => {
            fresh(&seen.kernel, k)?;
            let r = staged(platform::HOST_KERNEL_ADDR, platform::HOST_KERNEL_MAX)?;
            seen.kernel = Some((r, line));
        }
        "initrd" => {
            fresh(&seen.initrd, k)?;
            let r = staged(platform::HOST_INITRD_ADDR, platform::HOST_INITRD_MAX)?;
            seen.initrd = Some((r, line));
        }
        "disk" => {
            fresh(&seen.disk, k)?;
            let r = staged(platform::HOST_DISK_ADDR, platform::HOST_DISK_MAX)?;
            if r.size % SECTOR_SIZE != 0 {
                return Err(DiskNotSectorMultiple { size: r.size });
            }
            seen.disk = Some((r, line));
        }
        "net" => {
            fresh(&seen.net, k)?;
            let on = match value {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(BadChoice {
                        key: k,
                        value: v,
                        expected: "on or off",
                    });
                }
            };
            seen.net = Some((on, line));
        }
        "console" => {
            fresh(&seen.console, k)?;
            let c = match value {
                "prefix" => ConsoleMode::Prefix,
                "raw" => ConsoleMode::Raw,
                _ => {
                    return Err(BadChoice {
                        key: k,
                        value: v,
                        expected: "prefix or raw",
                    });
                }
            };
            seen.console = Some((c, line));
        }
        "net_vlans" => {
            fresh(&seen.net_vlans, k)?;
            let l = list("net_vlans", 1, u64::from(MAX_VLAN))?;
            let values = l.values.map(|n| n as u16);
            seen.net_vlans = Some((
                PerVm {
                    values,
                    count: l.count,
                },
                line,
            ));
        }
        "net_rate_mbit" => {
            fresh(&seen.net_rate_mbit, k)?;
            let l = list("net_rate_mbit", 0, u64::from(MAX_RATE_MBIT))?;
            let values = l.values.map(|n| n as u32);
            seen.net_rate_mbit = Some((
                PerVm {
                    values,
                    count: l.count,
                },
                line,
            ));
        }
        "net_offloads" => {
            fresh(&seen.net_offloads, k)?;
            let l = list("net_offloads", 0, 1)?;
            let values = l.values.map(|n| n == 1);
            seen.net_offloads = Some((
                PerVm {
                    values,
                    count: l.count,
                },
                line,
            ));
        }
        "net_capture" => {
            fresh(&seen.net_capture, k)?;
            let path = CapturePath::new(value)
                .filter(|_| value.starts_with('/'))
                .ok_or(BadCapturePath { value: v })?;
            seen.net_capture = Some((path, line));
        }
        _ => {
            let Some(n) = dtb_index(key) else {
                return Err(UnknownKey { key: k });
            };
            let Some(slot) = usize::try_from(n).ok().filter(|&n| n < platform::MAX_VMS) else {
                return Err(DtbIndexTooLarge { key: k });
            };
            fresh(&seen.dtbs[slot], k)?;
            let window = platform::HOST_DTB_BASE + slot as u64 * platform::HOST_DTB_STRIDE;
            let r = staged(window, platform::HOST_DTB_STRIDE)?;
            seen.dtbs[slot] = Some((r, line));
        }
    }
    Ok(())
}

fn key_is_known(key: &str) -> bool {
    matches!(
        key,
        "hvconf"
            | "placement"
            | "vms"
            | "vcpus"
            | "mem"
            | "kernel"
            | "initrd"
            | "disk"
            | "net"
            | "console"
            | "net_vlans"
            | "net_rate_mbit"
            | "net_capture"
    ) || dtb_index(key).is_some()
}

fn first_line_of(seen: &Seen, key: &str) -> Option<usize> {
    fn l<T>(a: &At<T>) -> Option<usize> {
        a.as_ref().map(|(_, line)| *line)
    }
    match key {
        "hvconf" => l(&seen.hvconf),
        "placement" => l(&seen.placement),
        "vms" => l(&seen.vms),
        "vcpus" => l(&seen.vcpus),
        "mem" => l(&seen.mem),
        "kernel" => l(&seen.kernel),
        "initrd" => l(&seen.initrd),
        "disk" => l(&seen.disk),
        "net" => l(&seen.net),
        "console" => l(&seen.console),
        "net_vlans" => l(&seen.net_vlans),
        "net_rate_mbit" => l(&seen.net_rate_mbit),
        "net_capture" => l(&seen.net_capture),
        _ => dtb_index(key)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| seen.dtbs.get(n))
            .and_then(l),
    }
}

fn finish(seen: &Seen) -> Result<BootConfig, ConfigError> {
    let missing = |key: &str| ConfigError {
        line: None,
        kind: ConfigErrorKind::MissingKey {
            key: Snippet::new(key),
        },
    };
    seen.hvconf.ok_or(missing("hvconf"))?;
    let (placement, placement_line) = seen.placement.ok_or(missing("placement"))?;
    let (vms, _) = seen.vms.ok_or(missing("vms"))?;
    let (vcpus, _) = seen.vcpus.ok_or(missing("vcpus"))?;
    let (mem, _) = seen.mem.ok_or(missing("mem"))?;
    let (kernel, _) = seen.kernel.ok_or(missing("kernel"))?;

    let mut dtbs = [Staged { addr: 0, size: 0 }; platform::MAX_VMS];
    for (vm, slot) in seen.dtbs.iter().enumerate() {
        match (slot, vm < vms) {
            (Some((r, _)), true) => dtbs[vm] = *r,
            (None, true) => {
                // MAX_VMS <= 10, so one digit suffices.
                let name = [b'd', b't', b'b', b'0' + (vm % 10) as u8];
                return Err(missing(core::str::from_utf8(&name).unwrap_or("dtb?")));
            }
            (Some((_, line)), false) => {
                return Err(ConfigError {
                    line: Some(*line),
                    kind: ConfigErrorKind::DtbWithoutVm { vm, vms },
                });
            }
            (None, false) => {}
        }
    }
    let per_vm = |key: &'static str, list: Option<(usize, usize)>| match list {
        Some((count, line)) if count > vms => Err(ConfigError {
            line: Some(line),
            kind: ConfigErrorKind::TooManyEntries { key, count, vms },
        }),
        _ => Ok(()),
    };
    per_vm("net_vlans", seen.net_vlans.map(|(l, line)| (l.count, line)))?;
    per_vm(
        "net_rate_mbit",
        seen.net_rate_mbit.map(|(l, line)| (l.count, line)),
    )?;
    per_vm(
        "net_offloads",
        seen.net_offloads.map(|(l, line)| (l.count, line)),
    )?;
    let mut net_offloads = [true; platform::MAX_VMS];
    if let Some((l, _)) = seen.net_offloads {
        net_offloads[..l.count].copy_from_slice(&l.values[..l.count]);
    }
    let mut net_vlans = [crate::net::DEFAULT_VLAN; platform::MAX_VMS];
    if let Some((l, _)) = seen.net_vlans {
        net_vlans[..l.count].copy_from_slice(&l.values[..l.count]);
    }
    let mut net_rate_mbit = [0u32; platform::MAX_VMS];
    if let Some((l, _)) = seen.net_rate_mbit {
        net_rate_mbit[..l.count].copy_from_slice(&l.values[..l.count]);
    }
    if placement == Placement::PerPcpu && vms > platform::MAX_PCPUS {
        return Err(ConfigError {
            line: Some(placement_line),
            kind: ConfigErrorKind::TooManyVmsForPcpus { vms },
        });
    }
    Ok(BootConfig {
        placement,
        vms,
        vcpus,
        mem,
        kernel,
        initrd: seen.initrd.map(|(r, _)| r),
        disk: seen.disk.map(|(r, _)| r),
        dtbs,
        net: seen.net.is_none_or(|(on, _)| on),
        console: seen.console.map_or(ConsoleMode::Prefix, |(c, _)| c),
        net_vlans,
        net_rate_mbit,
        net_offloads,
        net_capture: seen.net_capture.map(|(p, _)| p),
    })
}

#[cfg(test)]
mod tests;
