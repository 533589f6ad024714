//! The pcapng encoding of the switch's packet capture (IETF draft
//! "PCAP Next Generation (pcapng) Capture File Format"), little-endian.
//!
//! A capture file is one section: a Section Header Block ([`write_shb`]),
//! one Interface Description Block per switch port ([`write_idb`]:
//! interface `n` is port `n`, link type Ethernet, `if_name` `vmN`,
//! `if_tsresol`), then one Enhanced Packet Block per frame
//! ([`write_epb`]). A frame the switch dropped carries an `epb_flags`
//! option (direction inbound, plus the link-layer error bits that fit the
//! reason: "packet too short"/"packet too long") and an `opt_comment`
//! `dropped: <reason>`; a forwarded frame carries `epb_flags` inbound only.
//!
//! # Timestamps
//! The hypervisor's clock is the generic timer's counter. `if_tsresol` is
//! that counter's period when it is a power of ten or of two
//! ([`TsResolution::for_frequency`]); otherwise timestamps are nanoseconds
//! (QEMU's 62.5 MHz counter ticks every 16 ns, so the conversion is exact).
//! Time 0 is the counter's zero (about when QEMU started): tools show
//! dates in January 1970.
//!
//! Everything here writes into caller-provided buffers and returns the
//! bytes written, or `None` if the buffer is too small (nothing is then
//! meaningful in it): no allocation, usable at EL2.

/// Block type of the Section Header Block.
pub const BLOCK_SHB: u32 = 0x0A0D_0D0A;
/// Block type of the Interface Description Block.
pub const BLOCK_IDB: u32 = 0x0000_0001;
/// Block type of the Enhanced Packet Block.
pub const BLOCK_EPB: u32 = 0x0000_0006;
/// The byte-order magic in the Section Header Block.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// Option code `opt_endofopt`.
pub const OPT_END: u16 = 0;
/// Option code `opt_comment` (UTF-8 text).
pub const OPT_COMMENT: u16 = 1;
/// Option code `shb_userappl`.
pub const OPT_SHB_USERAPPL: u16 = 4;
/// Option code `if_name`.
pub const OPT_IF_NAME: u16 = 2;
/// Option code `if_description`.
pub const OPT_IF_DESCRIPTION: u16 = 3;
/// Option code `if_tsresol`.
pub const OPT_IF_TSRESOL: u16 = 9;
/// Option code `epb_flags`.
pub const OPT_EPB_FLAGS: u16 = 2;

/// `epb_flags` bits: direction inbound (bits 0-1 = 01).
pub const FLAG_INBOUND: u32 = 0b01;
/// `epb_flags` link-layer error bit: packet too short.
pub const FLAG_TOO_SHORT: u32 = 1 << 26;
/// `epb_flags` link-layer error bit: packet too long.
pub const FLAG_TOO_LONG: u32 = 1 << 25;

/// Fixed bytes of an Enhanced Packet Block: type, length, interface,
/// timestamp (2 words), captured and original length, trailing length.
pub const EPB_FIXED: usize = 32;

/// Rounds `n` up to a multiple of 4.
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Bytes of one option with a value of `len` bytes.
pub const fn option_len(len: usize) -> usize {
    4 + pad4(len)
}

/// Bytes of an Enhanced Packet Block for a frame of `frame_len` bytes with
/// `epb_flags` and, if non-empty, a comment of `comment_len` bytes.
pub const fn epb_len(frame_len: usize, comment_len: usize) -> usize {
    let comment = if comment_len > 0 {
        option_len(comment_len)
    } else {
        0
    };
    EPB_FIXED + pad4(frame_len) + option_len(4) + comment + 4
}

/// The `if_tsresol` of an interface and how counter ticks become its
/// units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsResolution {
    /// The `if_tsresol` byte: `n` for 10^-n s, `0x80 | n` for 2^-n s.
    pub code: u8,
    freq: u64,
    /// Units per second.
    units: u64,
}

impl TsResolution {
    /// The resolution for a counter of `freq` Hz: the counter's own period
    /// if `freq` is a power of ten (up to 10^9) or of two, nanoseconds
    /// otherwise.
    pub fn for_frequency(freq: u64) -> TsResolution {
        let freq = freq.max(1);
        let mut p = 1u64;
        for n in 0..=9u8 {
            if p == freq {
                return TsResolution {
                    code: n,
                    freq,
                    units: freq,
                };
            }
            p *= 10;
        }
        if freq.is_power_of_two() {
            return TsResolution {
                code: 0x80 | freq.trailing_zeros() as u8,
                freq,
                units: freq,
            };
        }
        TsResolution {
            code: 9,
            freq,
            units: 1_000_000_000,
        }
    }

    /// A timestamp in this resolution's units for counter value `ticks`.
    pub fn timestamp(&self, ticks: u64) -> u64 {
        if self.units == self.freq {
            return ticks;
        }
        let t = u128::from(ticks) * u128::from(self.units) / u128::from(self.freq);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Units per second.
    pub fn units_per_second(&self) -> u64 {
        self.units
    }
}

/// A bounds-checked little-endian writer over a byte buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn bytes(&mut self, data: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(data.len())?;
        self.buf.get_mut(self.pos..end)?.copy_from_slice(data);
        self.pos = end;
        Some(())
    }

    fn u16(&mut self, v: u16) -> Option<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> Option<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn pad(&mut self) -> Option<()> {
        let n = pad4(self.pos) - self.pos;
        self.bytes(&[0u8; 3][..n])
    }

    fn option(&mut self, code: u16, value: &[u8]) -> Option<()> {
        self.u16(code)?;
        self.u16(u16::try_from(value.len()).ok()?)?;
        self.bytes(value)?;
        self.pad()
    }

    /// Writes the block's total length into word 1 and as the last word.
    fn close_block(&mut self) -> Option<usize> {
        let total = self.pos.checked_add(4)?;
        let word = u32::try_from(total).ok()?.to_le_bytes();
        self.u32(0)?;
        self.buf.get_mut(4..8)?.copy_from_slice(&word);
        self.buf.get_mut(total - 4..total)?.copy_from_slice(&word);
        Some(total)
    }
}

/// Writes a Section Header Block (version 1.0, section length unknown,
/// `shb_userappl` = `application`) at the start of `buf`.
pub fn write_shb(buf: &mut [u8], application: &str) -> Option<usize> {
    let mut o = Out { buf, pos: 0 };
    o.u32(BLOCK_SHB)?;
    o.u32(0)?;
    o.u32(BYTE_ORDER_MAGIC)?;
    o.u16(1)?;
    o.u16(0)?;
    o.bytes(&(-1i64).to_le_bytes())?;
    o.option(OPT_SHB_USERAPPL, application.as_bytes())?;
    o.option(OPT_END, &[])?;
    o.close_block()
}

/// Writes an Interface Description Block (Ethernet, `snaplen`, `if_name`
/// `name`, `if_description` `description` if non-empty, `if_tsresol`).
pub fn write_idb(
    buf: &mut [u8],
    snaplen: u32,
    name: &str,
    description: &str,
    tsresol: TsResolution,
) -> Option<usize> {
    let mut o = Out { buf, pos: 0 };
    o.u32(BLOCK_IDB)?;
    o.u32(0)?;
    o.u16(LINKTYPE_ETHERNET)?;
    o.u16(0)?;
    o.u32(snaplen)?;
    o.option(OPT_IF_NAME, name.as_bytes())?;
    if !description.is_empty() {
        o.option(OPT_IF_DESCRIPTION, description.as_bytes())?;
    }
    o.option(OPT_IF_TSRESOL, &[tsresol.code])?;
    o.option(OPT_END, &[])?;
    o.close_block()
}

/// One packet for [`write_epb`].
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Interface (= switch port).
    pub interface: u32,
    /// In the interface's `if_tsresol` units.
    pub timestamp: u64,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (at least `data.len()`).
    pub orig_len: usize,
    /// `epb_flags`.
    pub flags: u32,
    /// `opt_comment`, omitted if empty.
    pub comment: &'a str,
}

/// Writes an Enhanced Packet Block for `p`. Its length is
/// [`epb_len`]`(p.data.len(), p.comment.len())`.
pub fn write_epb(buf: &mut [u8], p: &Packet<'_>) -> Option<usize> {
    let len = u32::try_from(p.data.len()).ok()?;
    let orig = u32::try_from(p.orig_len.max(p.data.len())).ok()?;
    let (frame, flags, comment) = (p.data, p.flags, p.comment);
    let mut o = Out { buf, pos: 0 };
    o.u32(BLOCK_EPB)?;
    o.u32(0)?;
    o.u32(p.interface)?;
    o.u32((p.timestamp >> 32) as u32)?;
    o.u32(p.timestamp as u32)?;
    o.u32(len)?;
    o.u32(orig)?;
    o.bytes(frame)?;
    o.pad()?;
    o.option(OPT_EPB_FLAGS, &flags.to_le_bytes())?;
    if !comment.is_empty() {
        o.option(OPT_COMMENT, comment.as_bytes())?;
    }
    o.option(OPT_END, &[])?;
    o.close_block()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent reader of what the tests need: blocks, their
    /// fields and options.
    #[derive(Debug, Default)]
    struct Block {
        kind: u32,
        body: Vec<u8>,
        options: Vec<(u16, Vec<u8>)>,
    }

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn le16(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }

    /// Splits a file into blocks; `fixed(kind, body)` says how many body
    /// bytes come before the options.
    fn parse(file: &[u8]) -> Vec<Block> {
        let mut blocks = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let kind = le32(file, at);
            let total = le32(file, at + 4) as usize;
            assert_eq!(total % 4, 0, "block length is a multiple of 4");
            assert_eq!(le32(file, at + total - 4), total as u32, "trailing length");
            let body = file[at + 8..at + total - 4].to_vec();
            let fixed = match kind {
                BLOCK_SHB => 16,
                BLOCK_IDB => 8,
                BLOCK_EPB => 20 + pad4(le32(&body, 12) as usize),
                other => panic!("unexpected block type {other:#x}"),
            };
            let mut options = Vec::new();
            let mut o = fixed;
            loop {
                let code = le16(&body, o);
                let len = le16(&body, o + 2) as usize;
                if code == OPT_END {
                    assert_eq!(len, 0);
                    assert_eq!(o + 4, body.len(), "end of options ends the block");
                    break;
                }
                options.push((code, body[o + 4..o + 4 + len].to_vec()));
                o += 4 + pad4(len);
            }
            blocks.push(Block {
                kind,
                body,
                options,
            });
            at += total;
        }
        assert_eq!(at, file.len());
        blocks
    }

    fn option(b: &Block, code: u16) -> Option<&[u8]> {
        b.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn a_file_reads_back() {
        let mut file = vec![0u8; 4096];
        let res = TsResolution::for_frequency(62_500_000);
        let mut at = write_shb(&mut file, "hypervisor vswitch").unwrap();
        at += write_idb(&mut file[at..], 1514, "vm0", "port 0 vlan 1", res).unwrap();
        at += write_idb(&mut file[at..], 1514, "vm1", "", res).unwrap();
        let frame: Vec<u8> = (0..61u8).collect();
        let pkt = |interface, timestamp, data, comment| Packet {
            interface,
            timestamp,
            data,
            orig_len: 0,
            flags: FLAG_INBOUND,
            comment,
        };
        let n = write_epb(&mut file[at..], &pkt(1, 0x1_0000_0002, &frame, "")).unwrap();
        assert_eq!(n, epb_len(61, 0));
        at += n;
        let n = write_epb(&mut file[at..], &pkt(0, 7, &frame[..14], "dropped: vlan")).unwrap();
        assert_eq!(n, epb_len(14, 13));
        at += n;
        file.truncate(at);

        let blocks = parse(&file);
        assert_eq!(blocks.len(), 5);
        let shb = &blocks[0];
        assert_eq!(shb.kind, BLOCK_SHB);
        assert_eq!(le32(&shb.body, 0), BYTE_ORDER_MAGIC);
        assert_eq!((le16(&shb.body, 4), le16(&shb.body, 6)), (1, 0));
        assert_eq!(&shb.body[8..16], &[0xff; 8]);
        assert_eq!(
            option(shb, OPT_SHB_USERAPPL),
            Some(&b"hypervisor vswitch"[..])
        );
        let idb = &blocks[1];
        assert_eq!(idb.kind, BLOCK_IDB);
        assert_eq!(le16(&idb.body, 0), LINKTYPE_ETHERNET);
        assert_eq!(le32(&idb.body, 4), 1514);
        assert_eq!(option(idb, OPT_IF_NAME), Some(&b"vm0"[..]));
        assert_eq!(option(idb, OPT_IF_DESCRIPTION), Some(&b"port 0 vlan 1"[..]));
        assert_eq!(option(idb, OPT_IF_TSRESOL), Some(&[9u8][..]));
        assert_eq!(option(&blocks[2], OPT_IF_DESCRIPTION), None);
        let epb = &blocks[3];
        assert_eq!(epb.kind, BLOCK_EPB);
        assert_eq!(le32(&epb.body, 0), 1, "interface");
        assert_eq!(
            (le32(&epb.body, 4), le32(&epb.body, 8)),
            (1, 2),
            "timestamp"
        );
        assert_eq!((le32(&epb.body, 12), le32(&epb.body, 16)), (61, 61));
        assert_eq!(&epb.body[20..81], &frame[..]);
        assert_eq!(option(epb, OPT_EPB_FLAGS), Some(&1u32.to_le_bytes()[..]));
        assert_eq!(option(epb, OPT_COMMENT), None);
        let drop = &blocks[4];
        assert_eq!(option(drop, OPT_COMMENT), Some(&b"dropped: vlan"[..]));
        assert_eq!(le32(&drop.body, 12), 14);
    }

    #[test]
    fn too_small_buffers_are_refused() {
        let frame = [0u8; 60];
        let mut buf = vec![0u8; epb_len(60, 5)];
        let p = Packet {
            interface: 0,
            timestamp: 0,
            data: &frame[..40],
            orig_len: 60,
            flags: 1,
            comment: "hello",
        };
        let need = epb_len(40, 5);
        assert_eq!(write_epb(&mut buf, &p), Some(need));
        assert_eq!(u32::from_le_bytes(buf[20..24].try_into().unwrap()), 40);
        assert_eq!(u32::from_le_bytes(buf[24..28].try_into().unwrap()), 60);
        assert_eq!(write_epb(&mut buf[..need - 1], &p), None);
        assert_eq!(write_shb(&mut [0u8; 16], "x"), None);
        let res = TsResolution::for_frequency(1000);
        assert_eq!(write_idb(&mut [0u8; 20], 1514, "vm0", "", res), None);
    }

    #[test]
    fn resolutions() {
        let r = TsResolution::for_frequency(1_000_000_000);
        assert_eq!((r.code, r.timestamp(123)), (9, 123));
        let r = TsResolution::for_frequency(1_000_000);
        assert_eq!((r.code, r.timestamp(5)), (6, 5));
        let r = TsResolution::for_frequency(1 << 24);
        assert_eq!((r.code, r.timestamp(5)), (0x80 | 24, 5));
        // QEMU's counter: 16 ns per tick, exact in nanoseconds.
        let r = TsResolution::for_frequency(62_500_000);
        assert_eq!(r.code, 9);
        assert_eq!(r.timestamp(62_500_000), 1_000_000_000);
        assert_eq!(r.timestamp(3), 48);
        assert_eq!(r.units_per_second(), 1_000_000_000);
        // Very large counts do not overflow.
        assert_eq!(r.timestamp(u64::MAX / 2), u64::MAX);
    }
}
