//! Per-vCPU state: registers the world switch moves, the EL1 system
//! registers, the virtual timer and the power state.
//!
//! Plain data plus the decisions that go with it; the arch layer
//! (`arch/aarch64/vcpu.rs`) moves these values in and out of the CPU.

use core::mem::offset_of;

use crate::debug_regs::DebugRegs;
use crate::psci::PowerState;
use crate::vgic::VcpuIfState;

/// SPSR for entering a guest: EL1h with D, A, I, F masked (0x3c5).
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// SPSR_ELx.BTYPE, bits `[11:10]` (FEAT_BTI).
pub const SPSR_BTYPE: u64 = 0b11 << 10;

/// Guest state that the assembly switches on every entry and exit.
#[repr(C, align(16))]
#[derive(Clone, Debug)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL2 (the guest PC to return to).
    pub elr: u64,
    /// SPSR_EL2 (the guest PSTATE).
    pub spsr: u64,
    /// ESR_EL2 of the last exit.
    pub esr: u64,
    /// FAR_EL2 of the last exit.
    pub far: u64,
    /// HPFAR_EL2 of the last exit.
    pub hpfar: u64,
    /// The hypervisor's stack pointer while the guest runs.
    pub host_sp: u64,
    _pad: u64,
    /// q0..q31.
    pub q: [u128; 32],
    /// FPSR.
    pub fpsr: u64,
    /// FPCR.
    pub fpcr: u64,
    /// SP_EL0: switched by the assembly because the hypervisor itself runs
    /// on SP_EL0 at EL2.
    pub sp_el0: u64,
    /// Non-zero while the vCPU's SVE state is [`GuestRegs::sve`] rather
    /// than just `q` (see [`SveRegs`]): SVE does not trap while it runs,
    /// and the assembly saves and loads Z, P and FFR on every exit and
    /// entry (after `q`, whose values are the low 128 bits of Z).
    pub sve_live: u64,
    /// The SVE registers, meaningful while `sve_live` is set.
    pub sve: SveRegs,
}

impl GuestRegs {
    /// All-zero registers.
    pub const fn new() -> Self {
        GuestRegs {
            x: [0; 31],
            elr: 0,
            spsr: 0,
            esr: 0,
            far: 0,
            hpfar: 0,
            host_sp: 0,
            _pad: 0,
            q: [0; 32],
            fpsr: 0,
            fpcr: 0,
            sp_el0: 0,
            sve_live: 0,
            sve: SveRegs::new(),
        }
    }
}

impl Default for GuestRegs {
    fn default() -> Self {
        Self::new()
    }
}

// The assembly below hard-codes these offsets.
const _: () = {
    assert!(offset_of!(GuestRegs, x) == 0);
    assert!(offset_of!(GuestRegs, elr) == 248);
    assert!(offset_of!(GuestRegs, spsr) == 256);
    assert!(offset_of!(GuestRegs, esr) == 264);
    assert!(offset_of!(GuestRegs, far) == 272);
    assert!(offset_of!(GuestRegs, hpfar) == 280);
    assert!(offset_of!(GuestRegs, host_sp) == 288);
    assert!(offset_of!(GuestRegs, q) == 304);
    assert!(offset_of!(GuestRegs, fpsr) == 816);
    assert!(offset_of!(GuestRegs, fpcr) == 824);
    assert!(offset_of!(GuestRegs, sp_el0) == 832);
    assert!(offset_of!(GuestRegs, sve_live) == 840);
    assert!(offset_of!(GuestRegs, sve) == 848);
    assert!(offset_of!(SveRegs, z) == 0);
    assert!(offset_of!(SveRegs, p) == 2048);
};

/// Largest vector length the SVE storage holds, in bytes
/// ([`crate::id_regs::SVE_MAX_VL_BYTES`]).
pub const SVE_VL_MAX: usize = crate::id_regs::SVE_MAX_VL_BYTES;

/// One vCPU's SVE registers, as the assembly stores them at the
/// hypervisor's vector length `vl` (bytes; at most [`SVE_VL_MAX`]): Z*n* at
/// byte `n * vl` of `z`, P*n* at byte `n * vl / 8` of `p`, FFR after P15
/// (at `16 * vl / 8`).
///
/// The state machine (driven by the arch layer): a vCPU starts *lazy*, its
/// SVE state being only its FP/SIMD registers (`q`) with every Z bit above
/// 128, every P and FFR zero; SVE traps (CPTR_EL2.TZ). On its first SVE
/// trap, [`SveRegs::load_from_fpsimd`] builds the full state, the vCPU
/// becomes *live* and SVE is enabled for it. When it is put, it goes back
/// to lazy if [`SveRegs::is_fpsimd_only`] says nothing is lost; otherwise it
/// stays live and its SVE state is loaded eagerly with the vCPU. So FP/SIMD
/// writes made while SVE traps (which zero Z above 128 bits in hardware
/// too) never lose a Z register's upper bits.
#[repr(C, align(16))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SveRegs {
    /// Z0..Z31.
    pub z: [u64; 32 * SVE_VL_MAX / 8],
    /// P0..P15 and FFR.
    pub p: [u64; 17 * SVE_VL_MAX / 64],
    /// ZCR_EL1.
    pub zcr_el1: u64,
    /// SVE traps taken (lazy to live transitions).
    pub traps: u64,
}

impl Default for SveRegs {
    fn default() -> Self {
        Self::new()
    }
}

impl SveRegs {
    /// All zero.
    pub const fn new() -> Self {
        SveRegs {
            z: [0; 32 * SVE_VL_MAX / 8],
            p: [0; 17 * SVE_VL_MAX / 64],
            zcr_el1: 0,
            traps: 0,
        }
    }

    /// Z*n* (`vl / 8` words), or an empty slice for an unusable `vl`.
    pub fn zreg(&self, n: usize, vl: usize) -> &[u64] {
        if !Self::valid_vl(vl) || n >= 32 {
            return &[];
        }
        &self.z[n * vl / 8..(n + 1) * vl / 8]
    }

    /// A vector length in bytes the storage can hold: a multiple of 16 up
    /// to [`SVE_VL_MAX`].
    pub const fn valid_vl(vl: usize) -> bool {
        vl >= 16 && vl <= SVE_VL_MAX && vl % 16 == 0
    }

    /// Builds the state of a lazy vCPU at vector length `vl` from its
    /// FP/SIMD registers: Z*n* = `q[n]` zero-extended, P and FFR zero.
    /// ZCR_EL1 and the trap count are kept.
    pub fn load_from_fpsimd(&mut self, q: &[u128; 32], vl: usize) {
        self.z = [0; 32 * SVE_VL_MAX / 8];
        self.p = [0; 17 * SVE_VL_MAX / 64];
        if !Self::valid_vl(vl) {
            return;
        }
        let words = vl / 8;
        for (n, value) in q.iter().enumerate() {
            self.z[n * words] = *value as u64;
            self.z[n * words + 1] = (*value >> 64) as u64;
        }
    }

    /// The state holds nothing beyond FP/SIMD registers `q` at vector length
    /// `vl`: every Z*n* equals `q[n]` zero-extended, and P and FFR are
    /// zero. Such a vCPU can go back to lazy without losing anything.
    pub fn is_fpsimd_only(&self, q: &[u128; 32], vl: usize) -> bool {
        if !Self::valid_vl(vl) {
            return false;
        }
        let words = vl / 8;
        let z_ok = q.iter().enumerate().all(|(n, value)| {
            let z = &self.z[n * words..(n + 1) * words];
            z[0] == *value as u64 && z[1] == (*value >> 64) as u64 && z[2..].iter().all(|w| *w == 0)
        });
        // P0..P15 and FFR: 17 registers of vl / 8 bytes.
        let p_bytes = 17 * vl / 8;
        let p_ok = self
            .p
            .iter()
            .enumerate()
            .all(|(i, w)| i * 8 >= p_bytes || *w == 0);
        z_ok && p_ok
    }
}

/// The pointer-authentication keys of a vCPU (HCR_EL2.APK lets the guest
/// write them directly; they are switched with the vCPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PauthKeys {
    /// APIAKeyLo/Hi, APIBKeyLo/Hi, APDAKeyLo/Hi, APDBKeyLo/Hi,
    /// APGAKeyLo/Hi_EL1, in this order.
    pub keys: [u64; 10],
}

/// EL1 system registers a Linux guest owns, switched when a different vCPU
/// is loaded on a physical CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // one field per architectural register, named after it
pub struct El1Regs {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub cpacr: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cntkctl: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub csselr: u64,
}

/// SCTLR_EL1 reset value for a guest: MMU and caches off, RES1 bits set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

impl El1Regs {
    /// The state of a vCPU at reset (MMU off, caches off).
    pub const fn reset() -> Self {
        El1Regs {
            sctlr: SCTLR_EL1_RESET,
            ttbr0: 0,
            ttbr1: 0,
            tcr: 0,
            mair: 0,
            amair: 0,
            vbar: 0,
            contextidr: 0,
            tpidr_el0: 0,
            tpidrro_el0: 0,
            tpidr_el1: 0,
            cpacr: 0,
            esr: 0,
            far: 0,
            afsr0: 0,
            afsr1: 0,
            par: 0,
            cntkctl: 0,
            sp_el1: 0,
            elr_el1: 0,
            spsr_el1: 0,
            csselr: 0,
        }
    }
}

/// CNTV_CTL_EL0.ENABLE.
pub const CNTV_CTL_ENABLE: u64 = 1 << 0;
/// CNTV_CTL_EL0.IMASK.
pub const CNTV_CTL_IMASK: u64 = 1 << 1;
/// CNTV_CTL_EL0.ISTATUS (read-only).
pub const CNTV_CTL_ISTATUS: u64 = 1 << 2;

/// The guest's EL1 virtual timer (PPI 27) and how the hypervisor forwards it.
///
/// Choice: *masked and re-armed*, not the LR HW bit. When the physical
/// virtual-timer interrupt fires while the vCPU runs, the hypervisor sets
/// CNTV_CTL_EL0.IMASK (so the physical line drops and the CPU is not stormed),
/// notes that it did ([`VirtualTimer::hyp_masked`]), and raises the vCPU's
/// virtual PPI 27 as a level. The level stays high until the guest
/// reprograms the timer (Linux writes CTL with IMASK clear when it sets the
/// next event) or, after it has handled the interrupt, leaves IMASK set
/// itself. This keeps every physical interrupt owned by the hypervisor and
/// lets any number of vCPUs share a physical CPU's timer without migrating
/// active states, at the cost of an exit per timer tick (the HW bit would
/// save the EOI exit, which we do not take anyway since EOIs of non-HW
/// interrupts do not trap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualTimer {
    /// CNTV_CTL_EL0 as last saved.
    pub ctl: u64,
    /// CNTV_CVAL_EL0 as last saved.
    pub cval: u64,
    /// The hypervisor set IMASK on the guest's behalf.
    pub hyp_masked: bool,
}

impl VirtualTimer {
    /// Records that the physical timer interrupt fired: returns the CTL
    /// value to write back (IMASK set).
    pub fn on_fired(&mut self, ctl: u64) -> u64 {
        self.ctl = ctl | CNTV_CTL_IMASK;
        self.hyp_masked = true;
        self.ctl
    }

    /// Updates the state from a freshly read CTL and whether the vGIC still
    /// holds the virtual interrupt (pending or active); returns the level of
    /// the virtual PPI 27.
    pub fn line_level(&mut self, ctl: u64, vgic_holds_irq: bool) -> bool {
        self.ctl = ctl;
        if self.hyp_masked && (ctl & CNTV_CTL_IMASK == 0 || !vgic_holds_irq) {
            // Either the guest rewrote CTL (IMASK clear again), or it has
            // handled the interrupt and left the mask as its own.
            self.hyp_masked = false;
        }
        let guest_masked = ctl & CNTV_CTL_IMASK != 0 && !self.hyp_masked;
        ctl & CNTV_CTL_ENABLE != 0 && ctl & CNTV_CTL_ISTATUS != 0 && !guest_masked
    }

    /// For a vCPU that is not running (its timer is not programmed in the
    /// hardware): would the timer condition hold at virtual count `now`?
    pub fn expired_at(&self, now: u64) -> bool {
        let guest_masked = self.ctl & CNTV_CTL_IMASK != 0 && !self.hyp_masked;
        self.ctl & CNTV_CTL_ENABLE != 0 && !guest_masked && now >= self.cval
    }

    /// The virtual count at which the timer fires, if armed and unmasked.
    pub fn deadline(&self) -> Option<u64> {
        let guest_masked = self.ctl & CNTV_CTL_IMASK != 0 && !self.hyp_masked;
        (self.ctl & CNTV_CTL_ENABLE != 0 && !guest_masked).then_some(self.cval)
    }
}

/// List registers assumed until the arch layer reads ICH_VTR_EL2 (QEMU's
/// cortex-a72 has 4).
pub const DEFAULT_LIST_REGS: usize = 4;

/// Everything about one vCPU.
#[derive(Clone, Debug)]
pub struct Vcpu {
    /// Index in its VM (MPIDR Aff0).
    pub index: usize,
    /// General-purpose, FP/SIMD, PC and PSTATE.
    pub regs: GuestRegs,
    /// EL1 system registers.
    pub el1: El1Regs,
    /// The virtual timer.
    pub timer: VirtualTimer,
    /// PSCI power state.
    pub power: PowerState,
    /// Waiting in WFI for an interrupt.
    pub in_wfi: bool,
    /// The virtual CPU interface (list registers, ICH_HCR/VMCR, APRs).
    pub gic: VcpuIfState,
    /// The trapped debug registers as this vCPU wrote them (never loaded
    /// into the hardware).
    pub debug: DebugRegs,
    /// Pointer-authentication keys.
    pub pauth: PauthKeys,
}

impl Vcpu {
    /// A powered-off vCPU at reset.
    pub const fn new(index: usize) -> Self {
        Vcpu {
            index,
            regs: GuestRegs::new(),
            el1: El1Regs::reset(),
            timer: VirtualTimer {
                ctl: 0,
                cval: 0,
                hyp_masked: false,
            },
            power: PowerState::Off,
            in_wfi: false,
            gic: VcpuIfState::new(DEFAULT_LIST_REGS),
            debug: DebugRegs::reset(),
            pauth: PauthKeys { keys: [0; 10] },
        }
    }

    /// Resets the vCPU in place to its powered-off reset state as vCPU
    /// `index` (no temporary copy of the whole state).
    pub fn reset_off(&mut self, index: usize) {
        self.index = index;
        self.regs.x = [0; 31];
        self.regs.elr = 0;
        self.regs.spsr = SPSR_EL1H_MASKED;
        self.regs.q = [0; 32];
        self.regs.fpsr = 0;
        self.regs.fpcr = 0;
        self.regs.sp_el0 = 0;
        self.regs.sve_live = 0;
        self.regs.sve.load_from_fpsimd(&[0; 32], SVE_VL_MAX);
        self.regs.sve.zcr_el1 = 0;
        self.el1 = El1Regs::reset();
        self.timer = VirtualTimer {
            ctl: 0,
            cval: 0,
            hyp_masked: false,
        };
        self.power = PowerState::Off;
        self.in_wfi = false;
        self.gic = VcpuIfState::new(self.gic.num_lrs);
        self.debug = DebugRegs::reset();
        self.pauth = PauthKeys::default();
    }

    /// Resets the vCPU to start at `entry` in EL1h with the MMU off and
    /// `x0 = arg0`, and marks it on.
    pub fn reset_to(&mut self, entry: u64, arg0: u64) {
        self.reset_off(self.index);
        self.regs.elr = entry;
        self.regs.spsr = SPSR_EL1H_MASKED;
        self.regs.x[0] = arg0;
        self.power = PowerState::On;
    }

    /// Advances the PC past the trapping instruction, `len` bytes long (2
    /// or 4, from ESR_EL2.IL). The emulated instruction completed, so
    /// PSTATE.BTYPE is cleared as the instruction itself would have (BTI:
    /// the next instruction is not a branch target).
    pub fn skip_instruction(&mut self, len: u8) {
        self.regs.elr = self.regs.elr.wrapping_add(u64::from(len));
        self.regs.spsr &= !SPSR_BTYPE;
    }

    /// The VMPIDR_EL2 value for this vCPU (RES1 bit 31, Aff0 = index).
    pub fn mpidr(&self) -> u64 {
        (1 << 31) | (self.index as u64 & 0xff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_regs_layout_matches_assembly() {
        assert_eq!(offset_of!(GuestRegs, fpcr), 824);
        assert_eq!(core::mem::align_of::<GuestRegs>(), 16);
    }

    #[test]
    fn reset_enters_el1h_masked() {
        let mut v = Vcpu::new(2);
        v.regs.x[5] = 9;
        v.reset_to(0x4020_0000, 0x47e0_0000);
        assert_eq!(v.regs.elr, 0x4020_0000);
        assert_eq!(v.regs.spsr, 0x3c5);
        assert_eq!(v.regs.x[0], 0x47e0_0000);
        assert_eq!(v.regs.x[5], 0);
        assert_eq!(v.power, PowerState::On);
        assert_eq!(v.el1.sctlr & 1, 0, "MMU off");
        assert_eq!(v.mpidr(), 0x8000_0002);
    }

    #[test]
    fn skipping_an_emulated_instruction_clears_btype() {
        let mut v = Vcpu::new(0);
        v.reset_to(0x4000_0000, 0);
        v.regs.spsr = SPSR_EL1H_MASKED | (0b10 << 10) | (1 << 29);
        v.skip_instruction(4);
        assert_eq!(v.regs.spsr, SPSR_EL1H_MASKED | (1 << 29));
        assert_eq!(v.regs.elr, 0x4000_0004);
    }

    fn sample_q() -> [u128; 32] {
        core::array::from_fn(|n| (n as u128 + 1) * 0x0101_0101_0101_0101_0202_0202_0202_0202)
    }

    #[test]
    fn sve_state_built_from_fpsimd_is_fpsimd_only() {
        for vl in [16, 32, 48, 64] {
            let mut sve = SveRegs::new();
            sve.p[0] = 0xff; // stale predicate bits are dropped
            sve.zcr_el1 = 3;
            sve.load_from_fpsimd(&sample_q(), vl);
            assert_eq!(sve.zcr_el1, 3, "ZCR_EL1 kept");
            let z5 = sve.zreg(5, vl);
            assert_eq!(z5.len(), vl / 8);
            assert_eq!(u128::from(z5[0]) | (u128::from(z5[1]) << 64), sample_q()[5]);
            assert!(z5[2..].iter().all(|w| *w == 0));
            assert!(sve.is_fpsimd_only(&sample_q(), vl), "vl {vl}");
        }
    }

    #[test]
    fn sve_state_with_upper_bits_or_predicates_is_not_fpsimd_only() {
        let vl = 64;
        let q = sample_q();
        let mut sve = SveRegs::new();
        sve.load_from_fpsimd(&q, vl);
        let mut upper = sve.clone();
        upper.z[31 * 8 + 7] = 1; // Z31 bits 448..511
        assert!(!upper.is_fpsimd_only(&q, vl));
        let mut pred = sve.clone();
        pred.p[1] = 0x10; // P1
        assert!(!pred.is_fpsimd_only(&q, vl));
        let mut ffr = sve.clone();
        ffr.p[16] = 1; // FFR
        assert!(!ffr.is_fpsimd_only(&q, vl));
        // The guest changed a V register since the state was saved.
        let mut q2 = q;
        q2[0] ^= 1;
        assert!(!sve.is_fpsimd_only(&q2, vl));
        // At a 256-bit VL only the first half of the storage is in use.
        let mut short = SveRegs::new();
        short.load_from_fpsimd(&q, 32);
        short.z[32 * 4] = 0xdead; // beyond Z31 at 32 bytes
        short.p[16] = 0xbeef; // beyond FFR at 32 bytes (17 * 4 bytes)
        assert!(short.is_fpsimd_only(&q, 32));
        assert!(!short.is_fpsimd_only(&q, 0), "unusable vector length");
    }

    #[test]
    fn reset_drops_sve_state_and_keys() {
        let mut v = Vcpu::new(1);
        v.regs.sve_live = 1;
        v.regs.sve.z[9] = 7;
        v.regs.sve.zcr_el1 = 3;
        v.pauth.keys[0] = 0x1234;
        v.reset_to(0x4000_0000, 0);
        assert_eq!(v.regs.sve_live, 0);
        assert_eq!(v.regs.sve.zcr_el1, 0);
        assert!(v.regs.sve.is_fpsimd_only(&[0; 32], SVE_VL_MAX));
        assert_eq!(v.pauth, PauthKeys::default());
    }

    const FIRING: u64 = CNTV_CTL_ENABLE | CNTV_CTL_ISTATUS;

    #[test]
    fn timer_fires_masks_and_stays_high_until_reprogrammed() {
        let mut t = VirtualTimer::default();
        let written = t.on_fired(FIRING);
        assert_eq!(written, FIRING | CNTV_CTL_IMASK);
        // Guest has not handled it yet: level stays high.
        assert!(t.line_level(FIRING | CNTV_CTL_IMASK, true));
        // Guest reprograms: writes ENABLE with IMASK clear, condition false.
        assert!(!t.line_level(CNTV_CTL_ENABLE, true));
        assert!(!t.hyp_masked);
    }

    #[test]
    fn guest_mask_after_handling_is_respected() {
        let mut t = VirtualTimer::default();
        t.on_fired(FIRING);
        // Guest handled the interrupt (vGIC idle) and left IMASK set.
        assert!(!t.line_level(FIRING | CNTV_CTL_IMASK, false));
        assert!(!t.hyp_masked);
        // A guest-masked timer never counts as expired.
        assert!(!t.expired_at(u64::MAX));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn descheduled_timer_deadline() {
        let t = VirtualTimer {
            ctl: CNTV_CTL_ENABLE,
            cval: 1000,
            hyp_masked: false,
        };
        assert!(!t.expired_at(999));
        assert!(t.expired_at(1000));
        assert_eq!(t.deadline(), Some(1000));
        let off = VirtualTimer {
            ctl: 0,
            cval: 10,
            hyp_masked: false,
        };
        assert!(!off.expired_at(11));
    }
}
