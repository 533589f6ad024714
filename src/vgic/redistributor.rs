//! The emulated redistributors (`GICR_*`): one RD_base + SGI_base frame pair
//! per vCPU, frame `n` belonging to vCPU `n`.

use super::distributor::{BitReg, Widths, id_reg};
use super::{IIDR, Vgic};
use crate::mmio::AccessSize;
use hal::gicv3::{gicr, gicr_typer, gicr_waker};

/// PIDR0 of a redistributor.
const GICR_PIDR0: u32 = 0x93;

/// `GICR_ICFGR0`: every SGI is edge-triggered (read-only).
const SGI_CONFIG: u32 = 0xaaaa_aaaa;

impl Vgic {
    /// `GICR_TYPER` of vCPU `vcpu`'s redistributor: Processor_Number and
    /// Affinity (Aff0) = `vcpu`, Last on the final frame, no LPIs, 16 PPIs.
    pub fn gicr_typer(&self, vcpu: usize) -> u64 {
        let v = vcpu as u64;
        let last = if vcpu == self.num_vcpus - 1 {
            gicr_typer::LAST
        } else {
            0
        };
        (v << gicr_typer::AFFINITY_SHIFT) | (v << gicr_typer::PROCESSOR_NUMBER_SHIFT) | last
    }

    /// Splits an offset into the redistributor region into (vCPU, offset in
    /// its frame pair), counting accesses past the last vCPU's frame.
    fn redist_frame(&mut self, offset: u64) -> Option<(usize, u64)> {
        let vcpu = (offset / gicr::STRIDE) as usize;
        if vcpu >= self.num_vcpus {
            self.unknown();
            return None;
        }
        Some((vcpu, offset % gicr::STRIDE))
    }

    /// A load of `size` bytes from the redistributor region at `offset`
    /// (frame `n` at `n * GICR_STRIDE`); the result is zero-extended.
    pub fn redist_read(&mut self, offset: u64, size: AccessSize) -> u64 {
        self.redist_read_reg(offset, size) & size.mask()
    }

    fn redist_read_reg(&mut self, offset: u64, size: AccessSize) -> u64 {
        let Some((vcpu, off)) = self.redist_frame(offset) else {
            return 0;
        };
        match off {
            gicr::CTLR | gicr::IIDR | gicr::STATUSR | gicr::WAKER => {
                if !self.check_width(off, size, Widths::Word) {
                    return 0;
                }
                u64::from(match off {
                    gicr::IIDR => IIDR,
                    gicr::WAKER if self.asleep[vcpu] => {
                        gicr_waker::PROCESSOR_SLEEP | gicr_waker::CHILDREN_ASLEEP
                    }
                    // CTLR: no LPIs, no pending writes. STATUSR: RAZ/WI.
                    _ => 0,
                })
            }
            0x0008..=0x000f => {
                if !self.check_width(off, size, Widths::WordOrDouble) {
                    return 0;
                }
                let typer = self.gicr_typer(vcpu);
                if off == 0xc { typer >> 32 } else { typer }
            }
            // PROPBASER / PENDBASER: RAZ/WI without LPIs.
            0x0070..=0x007f => {
                self.check_width(off, size, Widths::WordOrDouble);
                0
            }
            0xffd0..=0xffff => {
                if !self.check_width(off, size, Widths::Word) {
                    return 0;
                }
                u64::from(id_reg(off, GICR_PIDR0))
            }
            o if o >= gicr::SGI_BASE => self.sgi_frame_read(vcpu, o - gicr::SGI_BASE, size),
            _ => self.unknown(),
        }
    }

    /// A store of the low `size` bytes of `value` to the redistributor
    /// region at `offset`.
    pub fn redist_write(&mut self, offset: u64, size: AccessSize, value: u64) {
        let value = value & size.mask();
        let Some((vcpu, off)) = self.redist_frame(offset) else {
            return;
        };
        match off {
            // CTLR: EnableLPIs is RES0 without LPIs; STATUSR: RAZ/WI.
            gicr::CTLR | gicr::STATUSR => {
                self.check_width(off, size, Widths::Word);
            }
            gicr::WAKER => {
                if self.check_width(off, size, Widths::Word) {
                    let sleep = value as u32 & gicr_waker::PROCESSOR_SLEEP != 0;
                    if sleep != self.asleep[vcpu] {
                        self.asleep[vcpu] = sleep;
                        // 1-of-N SPI routing depends on who is awake.
                        self.touch_all();
                    }
                }
            }
            gicr::IIDR => {
                if self.check_width(off, size, Widths::Word) {
                    self.counters.read_only_write += 1;
                }
            }
            0x0008..=0x000f => {
                if self.check_width(off, size, Widths::WordOrDouble) {
                    self.counters.read_only_write += 1;
                }
            }
            0x0070..=0x007f => {
                self.check_width(off, size, Widths::WordOrDouble);
            }
            0xffd0..=0xffff => {
                if self.check_width(off, size, Widths::Word) {
                    self.counters.read_only_write += 1;
                }
            }
            o if o >= gicr::SGI_BASE => {
                self.sgi_frame_write(vcpu, o - gicr::SGI_BASE, size, value as u32)
            }
            _ => {
                self.unknown();
            }
        }
    }

    /// A load from vCPU `vcpu`'s SGI_base frame at `off` (0..0x10000).
    fn sgi_frame_read(&mut self, vcpu: usize, off: u64, size: AccessSize) -> u64 {
        match off {
            0x0080..=0x0083
            | 0x0100..=0x0103
            | 0x0180..=0x0183
            | 0x0200..=0x0203
            | 0x0280..=0x0283
            | 0x0300..=0x0303
            | 0x0380..=0x0383
            | 0x0d00..=0x0d03 => {
                let Some((reg, _)) = BitReg::decode(off) else {
                    return self.unknown();
                };
                if !self.check_width(off, size, Widths::Word) {
                    return 0;
                }
                u64::from(self.read_bits(vcpu, 0, reg))
            }
            0x0400..=0x041f => {
                if !self.check_width(off, size, Widths::ByteOrWord) {
                    return 0;
                }
                u64::from(self.read_priorities(vcpu, (off - 0x400) as u32, size))
            }
            0x0c00..=0x0c07 => {
                if !self.check_width(off, size, Widths::Word) {
                    return 0;
                }
                if off == 0x0c00 {
                    u64::from(SGI_CONFIG)
                } else {
                    u64::from(self.read_config(vcpu, 16))
                }
            }
            // NSACR: RAZ/WI with DS = 1.
            0x0e00..=0x0e03 => {
                self.check_width(off, size, Widths::Word);
                0
            }
            _ => self.unknown(),
        }
    }

    /// A store to vCPU `vcpu`'s SGI_base frame at `off` (0..0x10000).
    fn sgi_frame_write(&mut self, vcpu: usize, off: u64, size: AccessSize, value: u32) {
        match off {
            0x0080..=0x0083
            | 0x0100..=0x0103
            | 0x0180..=0x0183
            | 0x0200..=0x0203
            | 0x0280..=0x0283
            | 0x0300..=0x0303
            | 0x0380..=0x0383
            | 0x0d00..=0x0d03 => {
                let Some((reg, _)) = BitReg::decode(off) else {
                    self.unknown();
                    return;
                };
                if self.check_width(off, size, Widths::Word) {
                    self.write_bits(vcpu, 0, reg, value);
                }
            }
            0x0400..=0x041f => {
                if self.check_width(off, size, Widths::ByteOrWord) {
                    self.write_priorities(vcpu, (off - 0x400) as u32, size, value);
                }
            }
            0x0c00..=0x0c07 => {
                // ICFGR0 (SGIs) is fixed; ICFGR1 configures the PPIs.
                if self.check_width(off, size, Widths::Word) && off == 0x0c04 {
                    self.write_config(vcpu, 16, value);
                }
            }
            0x0e00..=0x0e03 => {
                self.check_width(off, size, Widths::Word);
            }
            _ => {
                self.unknown();
            }
        }
    }
}
