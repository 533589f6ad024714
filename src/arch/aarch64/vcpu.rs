//! Moving a vCPU's EL1, timer and configuration registers in and out of the
//! physical CPU.
//!
//! `load` before the first entry of a vCPU on this CPU, `put` when another
//! vCPU (or none) is going to run here. While the same vCPU keeps running,
//! nothing but the general-purpose state switched by the world switch moves.
//!
//! Per-CPU feature state: the pointer-authentication keys move with
//! `load`/`put`. SVE is lazy: CPTR_EL2.TZ traps a vCPU's first SVE
//! instruction ([`sve_trap`]), after which its Z, P and FFR move with every
//! world switch and its ZCR_EL1 with `load`/`put`, until a `put` finds its
//! SVE state to hold nothing beyond FP/SIMD (see [`crate::vcpu::SveRegs`]).

use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTHCTL_EL2, CNTKCTL_EL1, CNTPCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTVOFF_EL2,
    CPTR_EL2, HCR_EL2, ID_AA64DFR0_EL1, MDCR_EL2, ReadWriteable, Readable, VTCR_EL2, VTTBR_EL2,
    Writeable,
};
use hal::{el2, read_sysreg, write_sysreg};

use crate::debug_regs;
use crate::id_regs::{self, GuestIdRegs, ID_REG_COUNT, Switched};
use crate::vcpu::{El1Regs, GuestRegs, SveRegs, Vcpu};

/// CPTR_EL2.TZ: SVE instructions and ZCR_ELx accesses trap to EL2 (at EL2
/// too). A raw bit: `aarch64-cpu` 11.2 defines only the TAM field of
/// CPTR_EL2.
const CPTR_TZ: u64 = 1 << 8;

/// What this machine has that the hypervisor switches per vCPU, found once.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// The SVE vector length in bytes at EL2 (capped through ZCR_EL2.LEN),
    /// or 0 without SVE.
    pub sve_vl: usize,
    /// Pointer authentication is implemented.
    pub pauth: bool,
    /// Activity monitors are implemented.
    pub amu: bool,
}

static FEATURES: spin::Once<Features> = spin::Once::new();

/// Reads the host's ID register space (op0 = 3, op1 = 0, CRn = 0, CRm =
/// 1..7): the registers the architecture defines there, the reserved
/// encodings left at zero.
fn host_id_regs() -> [u64; ID_REG_COUNT] {
    let mut host = [0u64; ID_REG_COUNT];
    macro_rules! read_ids {
        ($($crm:literal $op2:literal),* $(,)?) => {$({
            let value: u64;
            // SAFETY: an MRS of the ID register space (op0 = 3, op1 = 0,
            // CRn = 0, CRm = 1..7), readable at EL2: defined registers or
            // reserved encodings that read as zero; no side effects.
            unsafe {
                core::arch::asm!(
                    concat!("mrs {0}, s3_0_c0_c", stringify!($crm), "_", stringify!($op2)),
                    out(reg) value,
                    options(nomem, nostack, preserves_flags)
                );
            }
            host[id_regs::slot($crm, $op2)] = value;
        })*};
    }
    read_ids!(
        1 0, 1 1, 1 2, 1 3, 1 4, 1 5, 1 6, 1 7,
        2 0, 2 1, 2 2, 2 3, 2 4, 2 5, 2 6, 2 7,
        3 0, 3 1, 3 2, 3 4, 3 5, 3 6,
        4 0, 4 1, 4 4,
        5 0,
        6 0, 6 1, 6 2,
        7 0, 7 1, 7 2,
    );
    host
}

/// Sets or clears CPTR_EL2.TZ on this CPU (only writes on a change).
fn set_sve_trap(trap: bool) {
    let cptr = CPTR_EL2.get();
    let want = if trap {
        cptr | CPTR_TZ
    } else {
        cptr & !CPTR_TZ
    };
    if want != cptr {
        // TZ only decides whether SVE traps; the hypervisor itself executes
        // SVE only in the world switch, with TZ clear.
        CPTR_EL2.set(want);
        // SAFETY: a context synchronization event; no state changes.
        unsafe { core::arch::asm!("isb") };
    }
}

/// Caps this CPU's SVE vector length (ZCR_EL2.LEN) and returns it in bytes.
fn cap_sve_vl() -> usize {
    set_sve_trap(false);
    let vl: u64;
    // SAFETY: ZCR_EL2 (S3_4_C1_C2_0) only sets the vector length of EL2
    // and below; no SVE state is live while it changes. RDVL X0, #1
    // (encoded, the assembler may lack SVE) reads the result.
    unsafe {
        write_sysreg!("s3_4_c1_c2_0", id_regs::ZCR_EL2_LEN);
        core::arch::asm!("isb", ".inst 0x04bf5020", out("x0") vl);
    }
    set_sve_trap(true);
    vl as usize
}

/// The machine's features (found on the first call, which also installs
/// the guests' ID register table).
pub fn features() -> &'static Features {
    FEATURES.call_once(|| {
        let host = host_id_regs();
        let mut sve_vl = if id_regs::has_sve(host[id_regs::AA64PFR0]) {
            cap_sve_vl()
        } else {
            0
        };
        if !SveRegs::valid_vl(sve_vl) {
            sve_vl = 0;
        }
        let pauth = id_regs::has_pauth(host[id_regs::AA64ISAR1], host[id_regs::AA64ISAR2]);
        let amu = id_regs::field(host[id_regs::AA64PFR0], 44) != 0;
        id_regs::install(GuestIdRegs::sanitize(
            &host,
            Switched {
                sve: sve_vl != 0,
                pauth,
            },
        ));
        Features { sve_vl, pauth, amu }
    })
}

/// HCR_EL2 for running guests on this machine ([`el2::hcr_guest`]: TID3,
/// and APK/API with pointer authentication).
pub fn hcr_guest() -> u64 {
    el2::hcr_guest(features().pauth)
}

/// Makes CPTR_EL2.TZ match the vCPU about to run: SVE enabled only while
/// its SVE state is live. On a CPU without SVE, TZ controls nothing (SVE
/// instructions are undefined at EL1 whatever it holds), so CPTR_EL2 is
/// not even read: this runs before every guest entry.
pub fn sve_sync_trap(regs: &GuestRegs) {
    let vl = features().sve_vl;
    if vl != 0 {
        set_sve_trap(regs.sve_live == 0);
    }
}

/// The vCPU `regs` took an SVE trap: if the machine has SVE and the vCPU's
/// SVE state is lazy, build its full state from its FP/SIMD registers,
/// restore its ZCR_EL1, enable SVE and return true (the guest re-executes
/// the instruction). Otherwise false: the trap is a real exit.
pub fn sve_trap(regs: &mut GuestRegs) -> bool {
    let vl = features().sve_vl;
    if vl == 0 || regs.sve_live != 0 {
        return false;
    }
    regs.sve.load_from_fpsimd(&regs.q, vl);
    regs.sve.traps += 1;
    regs.sve_live = 1;
    set_sve_trap(false);
    // SAFETY: ZCR_EL1 (S3_0_C1_C2_0) is this vCPU's own vector-length
    // control, accessible at EL2 now that TZ is clear.
    unsafe {
        write_sysreg!("s3_0_c1_c2_0", regs.sve.zcr_el1);
        core::arch::asm!("isb");
    }
    true
}

/// MDCR_EL2 for running guests: every PMU access (TPM, TPMCR) and every
/// debug register access (TDA, TDOSA, TDRA) traps to EL2 and is emulated
/// by [`debug_regs`], so no VM sees counts or breakpoints of another; TDE
/// stays 0 (debug exceptions are not routed to EL2, and with MDSCR_EL1 = 0
/// none is generated). HPMN keeps all counters in the guest range (PMCR.N),
/// and HPMD (PMUv3p1) prohibits counting at EL2 in case one ever ran.
fn init_debug_traps() {
    let pmuver = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer) as u8;
    let hpmn = if debug_regs::pmu_implemented(pmuver) {
        (read_sysreg!("pmcr_el0") >> 11) & 0x1f
    } else {
        0
    };
    let traps = MDCR_EL2::TPM::SET
        + MDCR_EL2::TPMCR::SET
        + MDCR_EL2::TDA::SET
        + MDCR_EL2::TDOSA::SET
        + MDCR_EL2::TDRA::SET
        + MDCR_EL2::TDE::RouteToEL1
        + MDCR_EL2::HPMN.val(hpmn);
    if debug_regs::pmu_has_hpmd(pmuver) {
        MDCR_EL2.write(traps + MDCR_EL2::HPMD::SET);
    } else {
        MDCR_EL2.write(traps);
    }
    // SAFETY: MDSCR_EL1 = 0 disables breakpoints, watchpoints and software
    // step for EL1/EL0; guests only ever see their own trapped copy.
    unsafe { write_sysreg!("mdscr_el1", 0) };
}

/// Per-CPU configuration for running guests, set once per physical CPU.
pub fn init_el2_for_guests() {
    let features = features();
    if features.sve_vl != 0 {
        cap_sve_vl();
    }
    if features.amu {
        // TAM only makes guest activity-monitor accesses trap.
        CPTR_EL2.modify(CPTR_EL2::TAM::SET);
    }
    // The EL2 trap and timer controls for guest execution; no guest is
    // running and EL2's own translation is unaffected.
    HCR_EL2.set(hcr_guest());
    CNTHCTL_EL2.set(el2::CNTHCTL_GUEST);
    CNTVOFF_EL2.set(0);
    // SAFETY: VPIDR_EL2 only changes what EL1 reads as MIDR_EL1.
    unsafe {
        let midr = read_sysreg!("midr_el1");
        write_sysreg!("vpidr_el2", midr);
    }
    init_debug_traps();
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}

/// Loads `vcpu`'s EL1 registers, MPIDR and virtual timer into this CPU.
pub fn load(vcpu: &Vcpu, cntvoff: u64) {
    let r = &vcpu.el1;
    // SAFETY: these are the guest's EL1 registers; EL2 does not use them,
    // and the guest is not running while they are written.
    unsafe {
        write_sysreg!("sctlr_el1", r.sctlr);
        write_sysreg!("ttbr0_el1", r.ttbr0);
        write_sysreg!("ttbr1_el1", r.ttbr1);
        write_sysreg!("tcr_el1", r.tcr);
        write_sysreg!("mair_el1", r.mair);
        write_sysreg!("amair_el1", r.amair);
        write_sysreg!("vbar_el1", r.vbar);
        write_sysreg!("contextidr_el1", r.contextidr);
        write_sysreg!("tpidr_el0", r.tpidr_el0);
        write_sysreg!("tpidrro_el0", r.tpidrro_el0);
        write_sysreg!("tpidr_el1", r.tpidr_el1);
        write_sysreg!("cpacr_el1", r.cpacr);
        write_sysreg!("esr_el1", r.esr);
        write_sysreg!("far_el1", r.far);
        write_sysreg!("afsr0_el1", r.afsr0);
        write_sysreg!("afsr1_el1", r.afsr1);
        write_sysreg!("par_el1", r.par);
        CNTKCTL_EL1.set(r.cntkctl);
        write_sysreg!("sp_el1", r.sp_el1);
        write_sysreg!("elr_el1", r.elr_el1);
        write_sysreg!("spsr_el1", r.spsr_el1);
        write_sysreg!("csselr_el1", r.csselr);
        write_sysreg!("vmpidr_el2", vcpu.mpidr());
        CNTVOFF_EL2.set(cntvoff);
        CNTV_CVAL_EL0.set(vcpu.timer.cval);
        CNTV_CTL_EL0.set(vcpu.timer.ctl & el2::CNTV_CTL_WRITABLE);
        core::arch::asm!("isb");
    }
    let features = features();
    if features.pauth {
        load_pauth_keys(&vcpu.pauth.keys);
    }
    if features.sve_vl != 0 && vcpu.regs.sve_live != 0 {
        set_sve_trap(false);
        // SAFETY: the vCPU's own ZCR_EL1 (S3_0_C1_C2_0), accessible with TZ
        // clear; its Z/P/FFR are loaded by the world switch.
        unsafe { write_sysreg!("s3_0_c1_c2_0", vcpu.regs.sve.zcr_el1) };
    }
    sve_sync_trap(&vcpu.regs);
}

/// Writes the five pointer-authentication keys (APIA, APIB, APDA, APDB,
/// APGA, low then high half).
fn load_pauth_keys(keys: &[u64; 10]) {
    // SAFETY: the guest's keys; EL2 does not use pointer authentication
    // (SCTLR_EL2.En* are clear), and this is only called when the keys exist.
    unsafe {
        write_sysreg!("s3_0_c2_c1_0", keys[0]);
        write_sysreg!("s3_0_c2_c1_1", keys[1]);
        write_sysreg!("s3_0_c2_c1_2", keys[2]);
        write_sysreg!("s3_0_c2_c1_3", keys[3]);
        write_sysreg!("s3_0_c2_c2_0", keys[4]);
        write_sysreg!("s3_0_c2_c2_1", keys[5]);
        write_sysreg!("s3_0_c2_c2_2", keys[6]);
        write_sysreg!("s3_0_c2_c2_3", keys[7]);
        write_sysreg!("s3_0_c2_c3_0", keys[8]);
        write_sysreg!("s3_0_c2_c3_1", keys[9]);
    }
}

/// Reads the five pointer-authentication keys (the order of
/// [`load_pauth_keys`]).
fn save_pauth_keys(keys: &mut [u64; 10]) {
    keys[0] = read_sysreg!("s3_0_c2_c1_0");
    keys[1] = read_sysreg!("s3_0_c2_c1_1");
    keys[2] = read_sysreg!("s3_0_c2_c1_2");
    keys[3] = read_sysreg!("s3_0_c2_c1_3");
    keys[4] = read_sysreg!("s3_0_c2_c2_0");
    keys[5] = read_sysreg!("s3_0_c2_c2_1");
    keys[6] = read_sysreg!("s3_0_c2_c2_2");
    keys[7] = read_sysreg!("s3_0_c2_c2_3");
    keys[8] = read_sysreg!("s3_0_c2_c3_0");
    keys[9] = read_sysreg!("s3_0_c2_c3_1");
}

/// Saves this CPU's EL1 registers and virtual timer into `vcpu` and stops
/// the timer so it cannot fire for whatever runs next.
pub fn put(vcpu: &mut Vcpu) {
    let r: &mut El1Regs = &mut vcpu.el1;
    r.sctlr = read_sysreg!("sctlr_el1");
    r.ttbr0 = read_sysreg!("ttbr0_el1");
    r.ttbr1 = read_sysreg!("ttbr1_el1");
    r.tcr = read_sysreg!("tcr_el1");
    r.mair = read_sysreg!("mair_el1");
    r.amair = read_sysreg!("amair_el1");
    r.vbar = read_sysreg!("vbar_el1");
    r.contextidr = read_sysreg!("contextidr_el1");
    r.tpidr_el0 = read_sysreg!("tpidr_el0");
    r.tpidrro_el0 = read_sysreg!("tpidrro_el0");
    r.tpidr_el1 = read_sysreg!("tpidr_el1");
    r.cpacr = read_sysreg!("cpacr_el1");
    r.esr = read_sysreg!("esr_el1");
    r.far = read_sysreg!("far_el1");
    r.afsr0 = read_sysreg!("afsr0_el1");
    r.afsr1 = read_sysreg!("afsr1_el1");
    r.par = read_sysreg!("par_el1");
    r.cntkctl = CNTKCTL_EL1.get();
    r.sp_el1 = read_sysreg!("sp_el1");
    r.elr_el1 = read_sysreg!("elr_el1");
    r.spsr_el1 = read_sysreg!("spsr_el1");
    r.csselr = read_sysreg!("csselr_el1");
    vcpu.timer.cval = CNTV_CVAL_EL0.get();
    vcpu.timer.ctl = CNTV_CTL_EL0.get();
    let features = features();
    if features.pauth {
        save_pauth_keys(&mut vcpu.pauth.keys);
    }
    // Z, P and FFR were stored at the last exit; ZCR_EL1 is still in the
    // hardware. A state that holds nothing but FP/SIMD goes back to lazy.
    let regs = &mut vcpu.regs;
    if features.sve_vl != 0 && regs.sve_live != 0 {
        set_sve_trap(false);
        regs.sve.zcr_el1 = read_sysreg!("s3_0_c1_c2_0");
        if regs.sve.is_fpsimd_only(&regs.q, features.sve_vl) {
            regs.sve_live = 0;
        }
    }
    set_sve_trap(true);
    // Disable the EL1 virtual timer of the vCPU being descheduled; its
    // state was saved just above.
    CNTV_CTL_EL0.set(0);
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}

/// Reads the running vCPU's CNTV_CTL_EL0.
pub fn timer_ctl() -> u64 {
    CNTV_CTL_EL0.get()
}

/// Writes the running vCPU's CNTV_CTL_EL0.
pub fn set_timer_ctl(ctl: u64) {
    // The loaded vCPU's virtual timer control; only ENABLE and IMASK are
    // writable.
    CNTV_CTL_EL0.set(ctl & el2::CNTV_CTL_WRITABLE);
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}

/// Activates a VM's stage-2 translation on this CPU.
pub fn activate_stage2(vtcr: u64, vttbr: u64) {
    // VTCR/VTTBR only affect EL1/EL0 translation, which runs only after
    // this; the tables were completed by the stage-2 builder.
    VTCR_EL2.set(vtcr);
    VTTBR_EL2.set(vttbr);
    // SAFETY: a context synchronization event; no state changes.
    unsafe { core::arch::asm!("isb") };
}

/// Invalidates all stage-1 and stage-2 TLB entries of the VMID currently
/// in VTTBR_EL2, on every CPU in the inner-shareable domain.
pub fn flush_guest_tlb() {
    // SAFETY: TLB maintenance has no effect beyond dropping cached
    // translations of the current VMID.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb");
    }
}

/// The physical counter (CNTPCT_EL0).
pub fn counter() -> u64 {
    // SAFETY: ISB orders the counter read after earlier instructions.
    unsafe { core::arch::asm!("isb") };
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}
