//! The virtio typestates reject misuse at compile time. Each file in
//! `tests/compile_fail/` is one misuse; it must fail to compile with
//! exactly the compiler output in its `.stderr` file, so a renamed method
//! or a relaxed bound makes this test fail instead of passing silently.
//!
//! After an intended change of the messages (or of the pinned toolchain),
//! regenerate them with `TRYBUILD=overwrite cargo test --test
//! typestate_compile_fail` and review the diff.

#[test]
fn typestate_misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
