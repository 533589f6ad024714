//! One test (at least) per rule of the format.

use super::*;
use crate::platform::*;

/// The example from the format description, inline comments included.
const EXAMPLE: &str = "\
hvconf=1                      # format version, required first key
placement=timeslice           # timeslice | per-pcpu
vms=2                         # 1..=platform::MAX_VMS
vcpus=1                       # vCPUs per VM
mem=0x10000000                # guest RAM per VM
kernel=0x48000000,27303872    # staged address,size
initrd=0x50000000,1234567     # optional
disk=0x58000000,8388608       # optional
dtb0=0x44100000,4096          # one per VM
dtb1=0x44200000,4096
net=on                        # default on
console=prefix                # default prefix
";

/// The smallest valid configuration: one VM, required keys only.
const MINIMAL: &str = "hvconf=1\nplacement=timeslice\nvms=1\nvcpus=1\nmem=0x4000000\n\
                       kernel=0x48000000,0x100000\ndtb0=0x44100000,0x1000\n";

fn parse(s: &str) -> Result<BootConfig, ConfigError> {
    BootConfig::parse(s.as_bytes())
}

/// Parses `s`, expects an error and returns (line, message).
fn fail(s: &str) -> (Option<usize>, String) {
    let e = parse(s).unwrap_err();
    (e.line, e.to_string())
}

/// MINIMAL with `line` appended.
fn with(line: &str) -> String {
    format!("{MINIMAL}{line}\n")
}

/// MINIMAL with the line starting `key=` replaced by `line`.
fn replace(key: &str, line: &str) -> String {
    MINIMAL
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key}=")) {
                line
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ── Accepted input ───────────────────────────────────────────────────

#[test]
fn the_documented_example_parses() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.placement, Placement::TimeSliced);
    assert_eq!((c.vms, c.vcpus), (2, 1));
    assert_eq!(c.mem, 0x1000_0000);
    assert_eq!(
        c.kernel,
        Staged {
            addr: 0x4800_0000,
            size: 27_303_872
        }
    );
    assert_eq!(
        c.initrd,
        Some(Staged {
            addr: 0x5000_0000,
            size: 1_234_567
        })
    );
    assert_eq!(
        c.disk,
        Some(Staged {
            addr: 0x5800_0000,
            size: 8_388_608
        })
    );
    assert_eq!(
        c.dtbs(),
        &[
            Staged {
                addr: 0x4410_0000,
                size: 4096
            },
            Staged {
                addr: 0x4420_0000,
                size: 4096
            }
        ]
    );
    assert_eq!(c.dtb(1).unwrap().addr, 0x4420_0000);
    assert_eq!(c.dtb(2), None);
    assert!(c.net);
    assert_eq!(c.console, ConsoleMode::Prefix);
}

#[test]
fn optional_keys_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.initrd, None);
    assert_eq!(c.disk, None);
    assert!(c.net, "net defaults to on");
    assert_eq!(c.console, ConsoleMode::Prefix);
    let c = parse(&with("net=off\nconsole=raw")).unwrap();
    assert!(!c.net);
    assert_eq!(c.console, ConsoleMode::Raw);
    let c = parse(&replace("placement", "placement=per-pcpu")).unwrap();
    assert_eq!(c.placement, Placement::PerPcpu);
}

#[test]
fn keys_may_come_in_any_order_after_hvconf() {
    let c = parse(
        "hvconf=1\ndtb1=0x44200000,16\ndtb0=0x44100000,16\nkernel=0x48000000,64\nmem=67108864\n\
         vcpus=4\nvms=2\nplacement=timeslice\n",
    )
    .unwrap();
    assert_eq!(c.vms, 2);
    assert_eq!(c.vcpus, 4);
    assert_eq!(c.dtb(1).unwrap().size, 16);
}

#[test]
fn comments_blank_lines_whitespace_and_crlf() {
    let text = "\r\n# leading comment\n\n   \t\n  hvconf = 1 \r\n placement\t=\ttimeslice\n\
                vms=1#no space before the comment\nvcpus=1\r\nmem = 0x4000000 # trailing\n\
                kernel = 0x48000000 , 0x100000\ndtb0=0x44100000,0x1000\n# done";
    let c = parse(text).unwrap();
    assert_eq!(c.kernel.size, 0x10_0000);
    assert_eq!(c.mem, 0x400_0000);
}

#[test]
fn numbers_hex_and_decimal() {
    for (text, mem) in [
        ("mem=0x4000000", 0x400_0000),
        ("mem=0X4000000", 0x400_0000),
        ("mem=0x4000ABC000", 0),
        ("mem=67108864", 0x400_0000),
        ("mem=0x10000000", 0x1000_0000),
    ] {
        let r = parse(&replace("mem", text));
        if mem == 0 {
            assert!(r.is_err(), "{text}");
        } else {
            assert_eq!(r.unwrap().mem, mem, "{text}");
        }
    }
    assert_eq!(parse_number("0xfFfF"), Some(0xffff));
    assert_eq!(parse_number("18446744073709551615"), Some(u64::MAX));
    for bad in [
        "",
        "0x",
        "x10",
        "12a",
        "-1",
        "+1",
        "1_000",
        "1 0",
        "0b101",
        "18446744073709551616",
        "0x10000000000000000",
        "١٢",
    ] {
        assert_eq!(parse_number(bad), None, "{bad:?}");
    }
}

#[test]
fn nul_ends_the_text() {
    let mut region = MINIMAL.as_bytes().to_vec();
    region.push(0);
    region.extend_from_slice(b"this=is garbage\n\xff\xfe");
    region.resize(HOST_CONFIG_MAX as usize + 100, 0xaa);
    assert_eq!(parse_str_region(&region).vms, 1);
    // A NUL in the middle of a line cuts the line there.
    let text = MINIMAL.replace("dtb0=0x44100000,0x1000", "dtb0=0x44100000,0x1000\0,junk");
    assert_eq!(parse(&text).unwrap().dtb(0).unwrap().size, 0x1000);
}

fn parse_str_region(region: &[u8]) -> BootConfig {
    BootConfig::parse(region).unwrap()
}

#[test]
fn text_without_nul_in_the_whole_window() {
    let max = HOST_CONFIG_MAX as usize;
    // Exactly fills the window and ends with a newline: accepted.
    let mut text = MINIMAL.to_string();
    text.push_str(&"#".repeat(max - text.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), max);
    assert!(parse(&text).is_ok());
    // Bytes beyond the window are never read.
    let mut longer = text.clone().into_bytes();
    longer.extend_from_slice(b"vms=3\n");
    assert_eq!(BootConfig::parse(&longer).unwrap().vms, 1);
    // Fills the window but the last line is cut off.
    let mut cut = MINIMAL.to_string();
    cut.push_str(&"#".repeat(max - cut.len() - 8));
    cut.push_str("\nvms=123");
    assert_eq!(cut.len(), max);
    let (line, msg) = fail(&cut);
    assert_eq!(line, None);
    assert_eq!(
        msg,
        "boot config: no NUL terminator in the 0x1000-byte window and the last line is cut off \
         (is the file larger than 4096 bytes?)"
    );
    // A short region without NUL (the host tests' case) is fine.
    assert!(BootConfig::parse(MINIMAL.trim_end().as_bytes()).is_ok());
}

// ── hvconf ───────────────────────────────────────────────────────────

#[test]
fn hvconf_must_be_the_first_key() {
    let (line, msg) = fail("# comment\n\nvms=2\nhvconf=1\n");
    assert_eq!(line, Some(3));
    assert_eq!(
        msg,
        "boot config line 3: the first key must be hvconf=1, found 'vms'"
    );
    assert_eq!(fail("").1, "boot config: missing required key 'hvconf'");
    assert_eq!(
        fail("# only a comment\n").1,
        "boot config: missing required key 'hvconf'"
    );
}

#[test]
fn hvconf_version_must_be_1() {
    let (line, msg) = fail("hvconf=2\n");
    assert_eq!(line, Some(1));
    assert_eq!(
        msg,
        "boot config line 1: unsupported format version hvconf=2 (this hypervisor reads hvconf=1)"
    );
    assert!(
        fail("hvconf=one\n")
            .1
            .contains("unsupported format version hvconf=one")
    );
    assert!(parse(&MINIMAL.replace("hvconf=1", "hvconf=0x1")).is_ok());
}

// ── Keys ─────────────────────────────────────────────────────────────

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let (line, msg) = fail(&with("colour=blue"));
    assert_eq!(line, Some(8));
    assert_eq!(msg, "boot config line 8: unknown key 'colour'");
    // Case-sensitive.
    assert!(fail(&with("VMS=2")).1.ends_with("unknown key 'VMS'"));
    // dtb-like keys that are not dtb<N>.
    for key in ["dtb", "dtbx", "dtb01", "dtb-1", "dtb 1", "xdtb0"] {
        let (_, msg) = fail(&with(&format!("{key}=0x44100000,16")));
        assert!(msg.contains("unknown key"), "{key}: {msg}");
    }
}

#[test]
fn duplicate_keys_are_errors() {
    let (line, msg) = fail(&with("vms=1"));
    assert_eq!(line, Some(8));
    assert_eq!(
        msg,
        "boot config line 8: duplicate key 'vms' (first set on line 3)"
    );
    assert!(
        fail(&with("dtb0=0x44100000,16"))
            .1
            .contains("duplicate key 'dtb0' (first set on line 7)")
    );
    assert!(
        fail(&with("hvconf=1"))
            .1
            .contains("duplicate key 'hvconf' (first set on line 1)")
    );
    assert!(
        fail(&with("net=on\nnet=on"))
            .1
            .contains("duplicate key 'net' (first set on line 8)")
    );
    // Even when the second one is empty.
    assert!(fail(&with("mem=")).1.contains("duplicate key 'mem'"));
}

#[test]
fn every_required_key_is_required() {
    for key in ["placement", "vms", "vcpus", "mem", "kernel", "dtb0"] {
        let text: String = MINIMAL
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}=")))
            .map(|l| format!("{l}\n"))
            .collect();
        let (line, msg) = fail(&text);
        assert_eq!(line, None, "{key}");
        assert_eq!(msg, format!("boot config: missing required key '{key}'"));
    }
}

#[test]
fn every_vm_needs_a_dtb_and_no_dtb_without_a_vm() {
    let text = replace("vms", "vms=3") + "\ndtb2=0x44300000,16\n";
    assert_eq!(fail(&text).1, "boot config: missing required key 'dtb1'");
    let text = with("dtb1=0x44200000,16\ndtb3=0x44400000,16");
    let (line, msg) = fail(&text);
    assert_eq!(line, Some(8));
    assert_eq!(
        msg,
        "boot config line 8: dtb1 given but vms=1 (VMs are numbered 0..0)"
    );
    let (line, msg) = fail(&with("dtb4=0x44500000,16"));
    assert_eq!(line, Some(8));
    assert_eq!(
        msg,
        "boot config line 8: dtb4: VM index beyond the maximum of 4 VMs (dtb0..dtb3)"
    );
    assert!(
        fail(&with("dtb99999999999999999999999=0x44500000,16"))
            .1
            .contains("VM index beyond")
    );
    // Four VMs, four trees.
    let text = replace("vms", "vms=4")
        + "\ndtb1=0x44200000,16\ndtb2=0x44300000,16\ndtb3=0x44400000,0x100000\n";
    let c = parse(&text).unwrap();
    assert_eq!(c.dtbs().len(), 4);
    assert_eq!(c.dtb(3).unwrap().size, 0x10_0000);
}

#[test]
fn lines_must_be_key_value() {
    let (line, msg) = fail(&with("vms 2"));
    assert_eq!(line, Some(8));
    assert_eq!(msg, "boot config line 8: expected key=value, found 'vms 2'");
    assert!(
        fail(&with("=5"))
            .1
            .contains("expected key=value, found '=5'")
    );
    assert!(fail(&with("  = ")).1.contains("expected key=value"));
}

#[test]
fn empty_values_are_errors() {
    let (line, msg) = fail(&replace("mem", "mem=   # nothing"));
    assert_eq!(line, Some(5));
    assert_eq!(msg, "boot config line 5: mem= has no value");
    assert!(fail(&with("disk=")).1.ends_with("disk= has no value"));
    // An empty value for an unknown key reports the key.
    assert!(fail(&with("foo=")).1.ends_with("unknown key 'foo'"));
}

#[test]
fn non_utf8_lines_are_errors() {
    let mut bytes = MINIMAL.as_bytes().to_vec();
    bytes.extend_from_slice(b"net=o\xffn\n");
    let e = BootConfig::parse(&bytes).unwrap_err();
    assert_eq!(e.line, Some(8));
    assert_eq!(e.to_string(), "boot config line 8: not valid UTF-8");
    // Invalid bytes inside a comment are ignored.
    let mut bytes = MINIMAL.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    assert!(BootConfig::parse(&bytes).is_ok());
}

// ── Values ───────────────────────────────────────────────────────────

#[test]
fn choices() {
    let (line, msg) = fail(&replace("placement", "placement=round-robin"));
    assert_eq!(line, Some(2));
    assert_eq!(
        msg,
        "boot config line 2: placement=round-robin: expected timeslice or per-pcpu"
    );
    assert!(
        fail(&with("net=yes"))
            .1
            .ends_with("net=yes: expected on or off")
    );
    assert!(
        fail(&with("net=ON"))
            .1
            .ends_with("net=ON: expected on or off")
    );
    assert!(
        fail(&with("console=pretty"))
            .1
            .ends_with("console=pretty: expected prefix or raw")
    );
}

#[test]
fn counts_have_bounds() {
    for (text, ok) in [
        ("vms=0", false),
        ("vms=1", true),
        ("vms=5", false),
        ("vcpus=0", false),
        ("vcpus=4", true),
        ("vcpus=5", false),
    ] {
        let key = text.split('=').next().unwrap();
        assert_eq!(parse(&replace(key, text)).is_ok(), ok, "{text}");
    }
    assert_eq!(
        fail(&replace("vms", "vms=5")).1,
        "boot config line 3: vms=5 is out of range (1..=4)"
    );
    assert_eq!(
        fail(&replace("vcpus", "vcpus=0")).1,
        "boot config line 4: vcpus=0 is out of range (1..=4)"
    );
    assert_eq!(
        fail(&replace("vms", "vms=two")).1,
        "boot config line 3: vms=two: 'two' is not a number (decimal or 0x-hex, 64-bit)"
    );
}

#[test]
fn mem_bounds_and_alignment() {
    assert!(parse(&replace("mem", "mem=0x4000000")).is_ok());
    assert!(parse(&replace("mem", &format!("mem={GUEST_RAM_SIZE:#x}"))).is_ok());
    assert_eq!(
        fail(&replace("mem", "mem=0x3fff000")).1,
        "boot config line 5: mem=0x3fff000 is out of range (0x4000000..=0x10000000 bytes)"
    );
    assert!(
        fail(&replace("mem", "mem=0x10001000"))
            .1
            .contains("out of range")
    );
    assert_eq!(
        fail(&replace("mem", "mem=0x4000800")).1,
        "boot config line 5: mem=0x4000800 is not a multiple of 4 KiB (0x1000)"
    );
}

#[test]
fn ranges_must_be_address_comma_size() {
    for bad in [
        "kernel=0x48000000",
        "kernel=0x48000000,",
        "kernel=,5",
        "kernel=0x48000000,5,6",
        "kernel=0x48000000;5",
    ] {
        let (line, msg) = fail(&replace("kernel", bad));
        assert_eq!(line, Some(6), "{bad}");
        assert!(msg.contains("expected address,size"), "{bad}: {msg}");
    }
    assert!(
        fail(&replace("kernel", "kernel=0x48000000,lots"))
            .1
            .contains("is not a number")
    );
    assert_eq!(
        fail(&replace("kernel", "kernel=0x48000000,0")).1,
        "boot config line 6: kernel: staged size is 0"
    );
}

#[test]
fn kernel_must_lie_in_its_window() {
    let end = HOST_KERNEL_ADDR + HOST_KERNEL_MAX;
    // Exactly the window.
    let c = parse(&replace(
        "kernel",
        &format!("kernel={HOST_KERNEL_ADDR:#x},{HOST_KERNEL_MAX:#x}"),
    ))
    .unwrap();
    assert_eq!(c.kernel.size, HOST_KERNEL_MAX);
    // Below, past the end, straddling, and overflowing.
    for (addr, size) in [
        (HOST_KERNEL_ADDR - 0x1000, 0x1000),
        (end, 1),
        (end - 0x1000, 0x1001),
        (HOST_KERNEL_ADDR, u64::MAX),
        (u64::MAX, 1),
    ] {
        let (line, msg) = fail(&replace("kernel", &format!("kernel={addr:#x},{size:#x}")));
        assert_eq!(line, Some(6));
        assert!(
            msg.contains("lies outside its staging window 0x48000000..0x50000000"),
            "{msg}"
        );
    }
    assert_eq!(
        fail(&replace("kernel", "kernel=0x47000000,0x100")).1,
        "boot config line 6: kernel: range 0x47000000+0x100 lies outside its staging window \
         0x48000000..0x50000000"
    );
}

#[test]
fn initrd_and_disk_windows() {
    assert!(parse(&with("initrd=0x50000000,0x8000000")).is_ok());
    assert!(fail(&with("initrd=0x48000000,16")).1.contains(
        "initrd: range 0x48000000+0x10 lies outside its staging window 0x50000000..0x58000000"
    ));
    assert!(fail(&with("initrd=0x57ffffff,2")).1.contains("outside"));
    assert!(parse(&with("disk=0x58000000,0x4000000")).is_ok());
    assert!(fail(&with("disk=0x5c000000,512")).1.contains(
        "disk: range 0x5c000000+0x200 lies outside its staging window 0x58000000..0x5c000000"
    ));
    assert_eq!(
        fail(&with("disk=0x58000000,1000")).1,
        "boot config line 8: disk: size 1000 (0x3e8) is not a multiple of the 512-byte sector"
    );
    assert!(
        fail(&with("disk=0x58000000,0"))
            .1
            .ends_with("disk: staged size is 0")
    );
}

#[test]
fn each_dtb_has_its_own_window() {
    // dtb1 staged in dtb0's window.
    let text = replace("vms", "vms=2") + "\ndtb1=0x44100000,16\n";
    let (line, msg) = fail(&text);
    assert_eq!(line, Some(8));
    assert_eq!(
        msg,
        "boot config line 8: dtb1: range 0x44100000+0x10 lies outside its staging window \
         0x44200000..0x44300000"
    );
    // A tree larger than its 1 MiB window.
    assert!(
        fail(&replace("dtb0", "dtb0=0x44100000,0x100001"))
            .1
            .contains("outside")
    );
    assert!(
        fail(&replace("dtb0", "dtb0=0x44100000,0"))
            .1
            .ends_with("dtb0: staged size is 0")
    );
}

#[test]
fn per_pcpu_needs_a_pcpu_per_vm() {
    let text = replace("placement", "placement=per-pcpu").replace("vms=1", "vms=4")
        + "\ndtb1=0x44200000,16\ndtb2=0x44300000,16\ndtb3=0x44400000,16\n";
    assert_eq!(parse(&text).unwrap().vms, 4);
    // MAX_VMS == MAX_PCPUS today, so only the message can be checked.
    let e = ConfigError {
        line: Some(2),
        kind: ConfigErrorKind::TooManyVmsForPcpus { vms: 5 },
    };
    assert_eq!(
        e.to_string(),
        "boot config line 2: placement=per-pcpu pins VM n to pCPU n, but vms=5 exceeds the 4 \
         physical CPUs"
    );
}

#[test]
fn long_or_odd_text_is_quoted_safely() {
    let key = "k".repeat(100);
    let msg = fail(&with(&format!("{key}=1"))).1;
    assert_eq!(
        msg,
        format!("boot config line 8: unknown key '{}...'", "k".repeat(40))
    );
    // Multi-byte characters are never split; control characters are escaped.
    let key = format!("{}é", "a".repeat(39));
    let msg = fail(&with(&format!("{key}=1"))).1;
    assert!(
        msg.ends_with(&format!("unknown key '{}...'", "a".repeat(39))),
        "{msg}"
    );
    let msg = fail(&with("we\tird=1")).1;
    assert!(msg.ends_with("unknown key 'we\\tird'"), "{msg}");
}

#[test]
fn random_input_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let alphabet = b"=,#\n\r\t 0123456789abcdefx_hvconfdtbmsk\0\xff\xc3\xa9";
    for _ in 0..5000 {
        let len = rnd(200);
        let bytes: Vec<u8> = (0..len).map(|_| alphabet[rnd(alphabet.len())]).collect();
        let _ = BootConfig::parse(&bytes);
        // Mutations of a valid file too.
        let mut b = EXAMPLE.as_bytes().to_vec();
        let i = rnd(b.len());
        b[i] = alphabet[rnd(alphabet.len())];
        if let Err(e) = BootConfig::parse(&b) {
            let _ = e.to_string();
        }
    }
}

// ── The switch's keys ────────────────────────────────────────────────

/// MINIMAL with `vms` VMs (their dtbs included) and `extra` lines.
fn vms_with(vms: usize, extra: &str) -> String {
    let mut text = replace("vms", &format!("vms={vms}"));
    for vm in 1..vms {
        text.push_str(&format!(
            "\ndtb{vm}={:#x},0x1000",
            HOST_DTB_BASE + vm as u64 * HOST_DTB_STRIDE
        ));
    }
    format!("{text}\n{extra}\n")
}

#[test]
fn net_switch_keys_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.net_vlans, [1; MAX_VMS]);
    assert_eq!(c.net_rate_mbit, [0; MAX_VMS]);
    assert_eq!(c.net_offloads, [true; MAX_VMS]);
    assert_eq!(c.net_capture, None);
}

#[test]
fn net_offloads_per_vm() {
    let c = parse(&vms_with(3, "net_offloads=1,0")).unwrap();
    assert_eq!(
        &c.net_offloads[..3],
        &[true, false, true],
        "VMs beyond the list: on"
    );
    assert_eq!(
        fail(&with("net_offloads=2")).1,
        "boot config line 8: net_offloads=2 is out of range (0..=1)"
    );
    assert_eq!(
        fail(&vms_with(2, "net_offloads=1,1,0")).1,
        "boot config line 9: net_offloads has 3 entries but vms=2 (one per VM at most)"
    );
}

#[test]
fn net_vlans_and_rates_per_vm() {
    let c = parse(&vms_with(3, "net_vlans=1, 1,2\nnet_rate_mbit=0,50")).unwrap();
    assert_eq!(&c.net_vlans[..3], &[1, 1, 2]);
    assert_eq!(
        &c.net_rate_mbit[..3],
        &[0, 50, 0],
        "VMs beyond the list: unlimited"
    );
    let c = parse(&vms_with(2, "net_vlans=4094")).unwrap();
    assert_eq!(&c.net_vlans[..2], &[4094, 1], "VMs beyond the list: VLAN 1");
    assert_eq!(
        fail(&vms_with(2, "net_vlans=1,2,3")),
        (
            Some(9),
            "boot config line 9: net_vlans has 3 entries but vms=2 (one per VM at most)".into()
        )
    );
    assert_eq!(
        fail(&with("net_vlans=0")).1,
        "boot config line 8: net_vlans=0 is out of range (1..=4094)"
    );
    assert_eq!(
        fail(&with("net_vlans=4095")).1,
        "boot config line 8: net_vlans=4095 is out of range (1..=4094)"
    );
    assert_eq!(
        fail(&with("net_rate_mbit=100001")).1,
        "boot config line 8: net_rate_mbit=100001 is out of range (0..=100000)"
    );
    assert_eq!(
        fail(&with("net_rate_mbit=1,,2")).1,
        "boot config line 8: net_rate_mbit=1,,2: '1,,2' is not a number (decimal or 0x-hex, 64-bit)"
    );
    assert!(
        fail(&with("net_vlans=1,1,1,1,1"))
            .1
            .contains("net_vlans has 5 entries")
    );
    assert_eq!(
        fail(&with("net_vlans=")).1,
        "boot config line 8: net_vlans= has no value"
    );
    assert!(
        fail(&with("net_vlans=1\nnet_vlans=1"))
            .1
            .contains("duplicate key 'net_vlans'")
    );
}

#[test]
fn net_capture_path() {
    let c = parse(&with("net_capture=/tmp/run dir/cap.pcapng")).unwrap();
    let path = c.net_capture.unwrap();
    assert_eq!(path.as_str(), "/tmp/run dir/cap.pcapng");
    assert_eq!(path.as_bytes_with_nul(), b"/tmp/run dir/cap.pcapng\0");
    let longest = format!("/{}", "a".repeat(CAPTURE_PATH_MAX - 1));
    assert_eq!(
        parse(&with(&format!("net_capture={longest}")))
            .unwrap()
            .net_capture
            .unwrap()
            .as_str(),
        longest
    );
    for bad in [
        "cap.pcapng",
        "./cap.pcapng",
        &format!("/{}", "a".repeat(CAPTURE_PATH_MAX)),
    ] {
        let (line, msg) = fail(&with(&format!("net_capture={bad}")));
        assert_eq!(line, Some(8));
        assert!(
            msg.contains("expected an absolute path of at most 200 bytes"),
            "{msg}"
        );
    }
}
