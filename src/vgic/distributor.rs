//! The emulated distributor (`GICD_*`), plus the register helpers the
//! redistributor shares (bit-per-INTID banks, priorities, configuration).

use super::{IIDR, IT_LINES_NUMBER, NR_IRQS, NR_PRIVATE, PRIORITY_MASK, SPI_BASE, Vgic};
use crate::mmio::{AccessSize, MmioRegion};
use crate::platform::{GICD_BASE, GICD_SIZE, GICR_BASE, GICR_STRIDE};
use hal::gicv3::{gicd, gicd_ctlr, gicd_typer, irouter};

/// Which access sizes a register accepts (always naturally aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Widths {
    /// 32-bit only (most registers).
    Word,
    /// 8- or 32-bit (IPRIORITYR, ITARGETSR, CPENDSGIR, SPENDSGIR).
    ByteOrWord,
    /// 32- or 64-bit (IROUTER, GICR_TYPER, PROPBASER, PENDBASER).
    WordOrDouble,
}

impl Widths {
    pub(super) fn allows(self, offset: u64, size: AccessSize) -> bool {
        let size_ok = match self {
            Widths::Word => size == AccessSize::Word,
            Widths::ByteOrWord => matches!(size, AccessSize::Byte | AccessSize::Word),
            Widths::WordOrDouble => matches!(size, AccessSize::Word | AccessSize::Double),
        };
        size_ok && offset % u64::from(size.bytes()) == 0
    }
}

/// The bit-per-INTID register banks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BitReg {
    /// IGROUPR: 1 = Group 1.
    Group,
    /// ISENABLER.
    SetEnable,
    /// ICENABLER.
    ClearEnable,
    /// ISPENDR.
    SetPending,
    /// ICPENDR.
    ClearPending,
    /// ISACTIVER.
    SetActive,
    /// ICACTIVER.
    ClearActive,
    /// IGRPMODR.
    GroupModifier,
}

impl BitReg {
    /// The bank at `offset` (relative to the distributor or SGI_base) and
    /// the register number within it.
    pub(super) fn decode(offset: u64) -> Option<(BitReg, u32)> {
        let (reg, base) = match offset {
            0x0080..=0x00ff => (BitReg::Group, gicd::IGROUPR),
            0x0100..=0x017f => (BitReg::SetEnable, gicd::ISENABLER),
            0x0180..=0x01ff => (BitReg::ClearEnable, gicd::ICENABLER),
            0x0200..=0x027f => (BitReg::SetPending, gicd::ISPENDR),
            0x0280..=0x02ff => (BitReg::ClearPending, gicd::ICPENDR),
            0x0300..=0x037f => (BitReg::SetActive, gicd::ISACTIVER),
            0x0380..=0x03ff => (BitReg::ClearActive, gicd::ICACTIVER),
            0x0d00..=0x0d7f => (BitReg::GroupModifier, gicd::IGRPMODR),
            _ => return None,
        };
        Some((reg, ((offset - base) / 4) as u32))
    }
}

/// CoreSight ID registers PIDR4..PIDR7, PIDR0..PIDR3, CIDR0..CIDR3 (0xFFD0..=
/// 0xFFFC): Arm GIC, ArchRev 3 in PIDR2. PIDR0 (index 4) differs between the
/// distributor and redistributors and is patched by the caller.
const ID_REGS: [u32; 12] = [
    0x44, 0x00, 0x00, 0x00, 0x92, 0xb4, 0x3b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];

/// The value of ID register `offset` (0xFFD0..=0xFFFC) with PIDR0 = `pidr0`.
pub(super) fn id_reg(offset: u64, pidr0: u32) -> u32 {
    let index = ((offset - gicd::IDREGS) / 4) as usize;
    if index == 4 {
        pidr0
    } else {
        ID_REGS.get(index).copied().unwrap_or(0)
    }
}

/// PIDR0 of the distributor.
const GICD_PIDR0: u32 = 0x92;

/// `GICD_TYPER`: ITLinesNumber for [`NR_IRQS`], IDbits = 9 (10-bit INTIDs, no
/// LPIs), no ESPI/MBIS/LPIS, SecurityExtn = 0 (DS = 1), 1-of-N supported.
pub(super) const GICD_TYPER_VALUE: u32 = IT_LINES_NUMBER | (9 << gicd_typer::ID_BITS_SHIFT);

impl Vgic {
    /// The distributor's guest-physical region.
    pub const fn dist_region(&self) -> MmioRegion {
        MmioRegion::new(GICD_BASE, GICD_SIZE)
    }

    /// The redistributors' guest-physical region: one frame per vCPU.
    pub const fn redist_region(&self) -> MmioRegion {
        MmioRegion::new(GICR_BASE, self.num_vcpus as u64 * GICR_STRIDE)
    }

    /// Handles a guest load at `gpa` if it falls in the distributor or
    /// redistributor region; `None` if the address is not the vGIC's.
    pub fn mmio_read(&mut self, gpa: u64, size: AccessSize) -> Option<u64> {
        let len = u64::from(size.bytes());
        if let Some(offset) = self.dist_region().offset_of(gpa, len) {
            Some(self.dist_read(offset, size))
        } else {
            let offset = self.redist_region().offset_of(gpa, len)?;
            Some(self.redist_read(offset, size))
        }
    }

    /// Handles a guest store at `gpa` if it falls in the distributor or
    /// redistributor region; false if the address is not the vGIC's.
    pub fn mmio_write(&mut self, gpa: u64, size: AccessSize, value: u64) -> bool {
        let len = u64::from(size.bytes());
        if let Some(offset) = self.dist_region().offset_of(gpa, len) {
            self.dist_write(offset, size, value);
            true
        } else if let Some(offset) = self.redist_region().offset_of(gpa, len) {
            self.redist_write(offset, size, value);
            true
        } else {
            false
        }
    }

    /// Checks the width of an access to a register that exists; counts and
    /// returns false if it is not allowed.
    pub(super) fn check_width(&mut self, offset: u64, size: AccessSize, widths: Widths) -> bool {
        let ok = widths.allows(offset, size);
        if !ok {
            self.counters.bad_width += 1;
        }
        ok
    }

    /// A load of `size` bytes from the distributor at `offset`
    /// (0..0x10000); the result is zero-extended.
    pub fn dist_read(&mut self, offset: u64, size: AccessSize) -> u64 {
        self.dist_read_reg(offset, size) & size.mask()
    }

    fn dist_read_reg(&mut self, offset: u64, size: AccessSize) -> u64 {
        match offset {
            gicd::CTLR | gicd::TYPER | gicd::IIDR | gicd::TYPER2 | gicd::STATUSR => {
                if !self.check_width(offset, size, Widths::Word) {
                    return 0;
                }
                u64::from(match offset {
                    gicd::CTLR => gicd_ctlr::DS | gicd_ctlr::ARE | self.ctlr,
                    gicd::TYPER => GICD_TYPER_VALUE,
                    gicd::IIDR => IIDR,
                    _ => 0, // TYPER2 (no extended features), STATUSR (RAZ/WI)
                })
            }
            0x0080..=0x03ff | 0x0d00..=0x0d7f => {
                let Some((reg, n)) = BitReg::decode(offset) else {
                    return self.unknown();
                };
                if !self.check_width(offset, size, Widths::Word) {
                    return 0;
                }
                match Self::dist_bank_base(n) {
                    Some(base) => u64::from(self.read_bits(0, base, reg)),
                    None => self.unimplemented(),
                }
            }
            0x0400..=0x07ff => {
                if !self.check_width(offset, size, Widths::ByteOrWord) {
                    return 0;
                }
                let first = (offset - gicd::IPRIORITYR) as u32;
                if first < SPI_BASE || first as usize >= NR_IRQS {
                    return self.unimplemented();
                }
                u64::from(self.read_priorities(0, first, size))
            }
            // ITARGETSR, CPENDSGIR, SPENDSGIR: RES0 with affinity routing.
            0x0800..=0x0bff | 0x0f10..=0x0f2f => {
                self.check_width(offset, size, Widths::ByteOrWord);
                0
            }
            0x0c00..=0x0cff => {
                if !self.check_width(offset, size, Widths::Word) {
                    return 0;
                }
                let n = ((offset - gicd::ICFGR) / 4) as u32;
                if n < 2 || (n as usize) >= NR_IRQS / 16 {
                    return self.unimplemented();
                }
                u64::from(self.read_config(0, n * 16))
            }
            // NSACR: RAZ/WI with DS = 1. SGIR: write-only, RES0 with ARE.
            0x0e00..=0x0eff | gicd::SGIR => {
                self.check_width(offset, size, Widths::Word);
                0
            }
            0x6000..=0x7fdf => {
                if !self.check_width(offset, size, Widths::WordOrDouble) {
                    return 0;
                }
                let intid = ((offset - gicd::IROUTER) / 8) as u32;
                let Some(index) = Self::spi_index(intid) else {
                    return self.unimplemented();
                };
                let value = self.irouter[index];
                if offset % 8 == 4 { value >> 32 } else { value }
            }
            0xffd0..=0xffff => {
                if !self.check_width(offset, size, Widths::Word) {
                    return 0;
                }
                u64::from(id_reg(offset, GICD_PIDR0))
            }
            _ => self.unknown(),
        }
    }

    /// A store of the low `size` bytes of `value` to the distributor at
    /// `offset` (0..0x10000).
    pub fn dist_write(&mut self, offset: u64, size: AccessSize, value: u64) {
        let value = value & size.mask();
        match offset {
            gicd::CTLR => {
                if self.check_width(offset, size, Widths::Word) {
                    let enables = gicd_ctlr::ENABLE_GRP0 | gicd_ctlr::ENABLE_GRP1;
                    let new = value as u32 & enables;
                    if new != self.ctlr {
                        self.ctlr = new;
                        self.touch_all();
                    }
                }
            }
            gicd::STATUSR => {
                self.check_width(offset, size, Widths::Word);
            }
            gicd::TYPER | gicd::IIDR | gicd::TYPER2 => {
                if self.check_width(offset, size, Widths::Word) {
                    self.counters.read_only_write += 1;
                }
            }
            0x0080..=0x03ff | 0x0d00..=0x0d7f => {
                let Some((reg, n)) = BitReg::decode(offset) else {
                    self.unknown();
                    return;
                };
                if !self.check_width(offset, size, Widths::Word) {
                    return;
                }
                match Self::dist_bank_base(n) {
                    Some(base) => self.write_bits(0, base, reg, value as u32),
                    None => {
                        self.unimplemented();
                    }
                }
            }
            0x0400..=0x07ff => {
                if !self.check_width(offset, size, Widths::ByteOrWord) {
                    return;
                }
                let first = (offset - gicd::IPRIORITYR) as u32;
                if first < SPI_BASE || first as usize >= NR_IRQS {
                    self.unimplemented();
                    return;
                }
                self.write_priorities(0, first, size, value as u32);
            }
            0x0800..=0x0bff | 0x0f10..=0x0f2f => {
                self.check_width(offset, size, Widths::ByteOrWord);
            }
            0x0c00..=0x0cff => {
                if !self.check_width(offset, size, Widths::Word) {
                    return;
                }
                let n = ((offset - gicd::ICFGR) / 4) as u32;
                if n < 2 || (n as usize) >= NR_IRQS / 16 {
                    self.unimplemented();
                    return;
                }
                self.write_config(0, n * 16, value as u32);
            }
            0x0e00..=0x0eff | gicd::SGIR => {
                self.check_width(offset, size, Widths::Word);
            }
            0x6000..=0x7fdf => {
                if !self.check_width(offset, size, Widths::WordOrDouble) {
                    return;
                }
                let intid = ((offset - gicd::IROUTER) / 8) as u32;
                let Some(index) = Self::spi_index(intid) else {
                    self.unimplemented();
                    return;
                };
                let old = self.irouter[index];
                let new = match (size, offset % 8) {
                    (AccessSize::Double, _) => value,
                    (_, 0) => (old & !0xffff_ffff) | value,
                    _ => (old & 0xffff_ffff) | (value << 32),
                };
                self.write_irouter(intid, index, new);
            }
            0xffd0..=0xffff => {
                if self.check_width(offset, size, Widths::Word) {
                    self.counters.read_only_write += 1;
                }
            }
            _ => {
                self.unknown();
            }
        }
    }

    fn write_irouter(&mut self, intid: u32, index: usize, value: u64) {
        // The in-flight SPI's old target may hold it in an LR: tell it.
        self.touch(0, intid);
        let value = value & irouter::VALID_MASK;
        self.irouter[index] = value;
        if self.route(value).is_none() {
            self.counters.unroutable_spi += 1;
        }
        self.touch(0, intid);
    }

    /// First INTID of distributor bit-bank register `n`, if it covers SPIs
    /// this vGIC implements (register 0, SGIs/PPIs, is RES0 with ARE).
    fn dist_bank_base(n: u32) -> Option<u32> {
        let base = n * 32;
        (base >= SPI_BASE && (base as usize) < NR_IRQS).then_some(base)
    }

    /// Index into the SPI arrays of an implemented SPI.
    pub(super) fn spi_index(intid: u32) -> Option<usize> {
        let intid = intid as usize;
        (NR_PRIVATE..NR_IRQS)
            .contains(&intid)
            .then(|| intid - NR_PRIVATE)
    }

    /// Counts an access to an unknown offset; the RAZ value.
    pub(super) fn unknown(&mut self) -> u64 {
        self.counters.unknown_offset += 1;
        0
    }

    /// Counts an access to a register of unimplemented INTIDs; the RAZ value.
    pub(super) fn unimplemented(&mut self) -> u64 {
        self.counters.unimplemented_intid += 1;
        0
    }

    // ── Shared by distributor and redistributor ──────────────────────

    /// Reads bank `reg` for the 32 INTIDs from `base` (`vcpu` selects the
    /// bank of SGIs/PPIs).
    pub(super) fn read_bits(&self, vcpu: usize, base: u32, reg: BitReg) -> u32 {
        let mut value = 0;
        for bit in 0..32 {
            let Some(irq) = self.irq(vcpu, base + bit) else {
                continue;
            };
            let set = match reg {
                BitReg::Group => irq.group1,
                BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                BitReg::SetPending | BitReg::ClearPending => irq.pending(),
                BitReg::SetActive | BitReg::ClearActive => irq.active,
                BitReg::GroupModifier => irq.grpmod,
            };
            value |= u32::from(set) << bit;
        }
        value
    }

    /// Writes bank `reg` for the 32 INTIDs from `base`.
    pub(super) fn write_bits(&mut self, vcpu: usize, base: u32, reg: BitReg, value: u32) {
        for bit in 0..32 {
            let one = value & (1 << bit) != 0;
            let intid = base + bit;
            // Set/clear banks only act on 1 bits.
            let acts = one || matches!(reg, BitReg::Group | BitReg::GroupModifier);
            if !acts {
                continue;
            }
            let target = if intid >= SPI_BASE {
                self.spi_target(intid)
            } else {
                Some(vcpu)
            };
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            match reg {
                BitReg::Group => irq.group1 = one,
                BitReg::GroupModifier => irq.grpmod = one,
                BitReg::SetEnable => irq.enabled = true,
                BitReg::ClearEnable => irq.enabled = false,
                BitReg::SetPending => irq.latch = true,
                BitReg::ClearPending => {
                    irq.latch = false;
                    if irq.in_lr && irq.lr_pending {
                        irq.lr_pending_cleared = true;
                        irq.lr_pending = false;
                    }
                }
                BitReg::SetActive | BitReg::ClearActive => {
                    let active = reg == BitReg::SetActive;
                    if irq.in_lr {
                        irq.lr_active_written = true;
                    } else if active && !irq.active && intid >= SPI_BASE {
                        irq.active_vcpu = target.unwrap_or(0) as u8;
                    }
                    irq.active = active;
                }
            }
            self.touch(vcpu, intid);
        }
    }

    /// Reads one priority byte (byte access) or four (word access) starting
    /// at INTID `first`.
    pub(super) fn read_priorities(&self, vcpu: usize, first: u32, size: AccessSize) -> u32 {
        let count = u32::from(size.bytes());
        (0..count).fold(0, |acc, i| {
            let p = self.irq(vcpu, first + i).map_or(0, |irq| irq.priority);
            acc | (u32::from(p) << (8 * i))
        })
    }

    /// Writes one or four priority bytes starting at INTID `first`.
    pub(super) fn write_priorities(
        &mut self,
        vcpu: usize,
        first: u32,
        size: AccessSize,
        value: u32,
    ) {
        for i in 0..u32::from(size.bytes()) {
            let intid = first + i;
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                irq.priority = (value >> (8 * i)) as u8 & PRIORITY_MASK;
                self.touch(vcpu, intid);
            }
        }
    }

    /// Reads an ICFGR register covering the 16 INTIDs from `first`: bit
    /// 2k+1 set = edge-triggered.
    pub(super) fn read_config(&self, vcpu: usize, first: u32) -> u32 {
        (0..16).fold(0, |acc, k| {
            let edge = self.irq(vcpu, first + k).is_some_and(|irq| irq.edge);
            acc | (u32::from(edge) << (2 * k + 1))
        })
    }

    /// Writes an ICFGR register covering the 16 INTIDs from `first` (not
    /// SGIs, whose configuration is fixed).
    pub(super) fn write_config(&mut self, vcpu: usize, first: u32, value: u32) {
        for k in 0..16 {
            let intid = first + k;
            if intid < super::PPI_BASE {
                continue;
            }
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                irq.edge = value & (1 << (2 * k + 1)) != 0;
                self.touch(vcpu, intid);
            }
        }
    }
}
