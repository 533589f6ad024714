//! The fuzz targets' committed inputs as ordinary tests (stable, no
//! libFuzzer): every seed under `fuzz/seeds/<target>/` and every crash
//! reproducer under `tests/fuzz/<target>/` is fed to the target's `run`,
//! which panics if an invariant is violated. A fixed-seed batch of random
//! inputs per target follows, so the harnesses themselves stay exercised.
//!
//! Built by the `fuzz/` crate (`make test-host` runs it).

use std::fs;
use std::path::{Path, PathBuf};

use hypervisor_fuzz::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_target_has_seeds_and_passes_them() {
    let mut total = 0;
    for (name, run) in TARGETS {
        let seeds = inputs(&root().join("fuzz/seeds").join(name));
        assert!(!seeds.is_empty(), "{name}: no committed seeds");
        for path in &seeds {
            let data = fs::read(path).expect("seed readable");
            run(&data);
        }
        total += seeds.len();
    }
    println!("{total} seeds passed");
}

#[test]
fn crash_reproducers_pass() {
    for (name, run) in TARGETS {
        for path in inputs(&root().join("tests/fuzz").join(name)) {
            println!("{name}: {}", path.display());
            run(&fs::read(&path).expect("reproducer readable"));
        }
    }
}

#[test]
fn random_inputs_pass() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, run) in TARGETS {
        let start = std::time::Instant::now();
        for _ in 0..200 {
            let len = (next() % 2048) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            run(&data);
        }
        println!("{name}: 200 random inputs in {:?}", start.elapsed());
    }
}

#[test]
fn gso_seeds_reach_the_segmenter() {
    let seeds = inputs(&root().join("fuzz/seeds/gso"));
    let accepted = seeds
        .iter()
        .filter(|p| hypervisor_fuzz::gso::accepted(&fs::read(p).expect("seed readable")))
        .count();
    println!(
        "gso: {accepted} of {} seeds validated and segmented",
        seeds.len()
    );
    assert!(accepted >= 8, "the seeds must reach segmentation");
}
