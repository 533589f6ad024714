//! The hypervisor's `memcpy` (every frame and image copy goes through
//! it): correct for every size and alignment pair, and how long a 64 KiB
//! copy takes (printed, not asserted).

use hypervisor::arch::aarch64::vcpu;
use hypervisor::selftest::{Suite, Test, TestResult};
use hypervisor::{check, hv_println};

/// The suite.
pub static SUITE: Suite = Suite {
    name: "memcpy",
    tests: &[
        Test {
            name: "every_size_and_alignment",
            run: every_size_and_alignment,
        },
        Test {
            name: "speed_of_64k_copies",
            run: speed_of_64k_copies,
        },
    ],
};

const AREA: usize = 80 * 1024;

/// Source and destination areas (statics: too big for the test's stack).
static AREAS: spin::Mutex<([u8; AREA], [u8; AREA])> = spin::Mutex::new(([0; AREA], [0; AREA]));

/// Copies `len` bytes from `src[so..]` to `dst[do_..]` through the
/// compiler's `memcpy` (a length it cannot see through).
fn copy(src: &[u8], so: usize, dst: &mut [u8], do_: usize, len: usize) {
    let len = core::hint::black_box(len);
    dst[do_..do_ + len].copy_from_slice(&src[so..so + len]);
}

fn every_size_and_alignment() -> TestResult {
    let mut areas = AREAS.lock();
    let (src, dst) = &mut *areas;
    for (i, b) in src.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13) ^ (i >> 8) as u8;
    }
    let sizes = (0..=300).chain([511, 512, 4095, 4096, 4097, 65_535, 65_549]);
    for len in sizes {
        for so in 0..16 {
            for do_ in [0, 1, 4, 7, 8, 12, 15] {
                dst[..len + 64].fill(0xa5);
                copy(src, so, dst, do_, len);
                check!(dst[..do_].iter().all(|&b| b == 0xa5));
                check!(dst[do_..do_ + len] == src[so..so + len]);
                check!(dst[do_ + len..len + 64].iter().all(|&b| b == 0xa5));
            }
        }
    }
    Ok(())
}

fn speed_of_64k_copies() -> TestResult {
    let mut areas = AREAS.lock();
    let (src, dst) = &mut *areas;
    const LEN: usize = 64 * 1024;
    const ROUNDS: u64 = 32;
    let freq = vcpu::counter_frequency().max(1);
    for (so, do_, what) in [(0, 0, "aligned"), (12, 0, "source at +12")] {
        let start = vcpu::counter();
        for _ in 0..ROUNDS {
            copy(src, so, dst, do_, LEN);
        }
        let ticks = vcpu::counter() - start;
        let ns = ticks * 1_000_000_000 / freq / ROUNDS;
        let mb_s = (LEN as u64 * ROUNDS) * freq / ticks.max(1) / 1_000_000;
        hv_println!("    memcpy: 64 KiB {what}: {ns} ns per copy ({mb_s} MB/s)");
        check!(dst[do_..do_ + LEN] == src[so..so + LEN]);
    }
    Ok(())
}
