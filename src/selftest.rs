//! The in-QEMU test runner.
//!
//! The self-test image (`src/bin/selftest.rs`, run by `make run`) registers
//! [`Suite`]s of [`Test`]s; [`Runner`] runs them, prints each test's name and
//! result, and counts. The final line, printed by [`Runner::finish`], is
//! `N passed, M failed, K skipped` with every number counted by the runner,
//! and the image exits QEMU with status 0 only if M is 0. A test that cannot
//! run on the emulated CPU ends with [`skip`] and counts as skipped.
//!
//! A test is a plain `fn() -> TestResult`; the [`check!`](crate::check),
//! [`check_eq!`](crate::check_eq) and [`check_ok!`](crate::check_ok) macros
//! return a [`Failure`] naming the file, line and failed condition. The same
//! test functions can be wrapped in `#[test]` on the host.

use core::fmt;

/// Where and why a test failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Source file of the failed check.
    pub file: &'static str,
    /// Line of the failed check.
    pub line: u32,
    /// The failed condition, as written.
    pub what: &'static str,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: check failed: {}",
            self.file, self.line, self.what
        )
    }
}

/// Result of one test.
pub type TestResult = Result<(), Failure>;

/// A named test.
#[derive(Clone, Copy)]
pub struct Test {
    /// Name printed before the result.
    pub name: &'static str,
    /// The test body.
    pub run: fn() -> TestResult,
}

/// A named group of tests.
#[derive(Clone, Copy)]
pub struct Suite {
    /// Name printed as the suite header and before each test name.
    pub name: &'static str,
    /// The tests, run in order.
    pub tests: &'static [Test],
}

/// Why the test that is running skipped itself (see [`skip`]).
static SKIP_REASON: spin::Mutex<Option<&'static str>> = spin::Mutex::new(None);

/// Ends a test that cannot run on this machine (e.g. the CPU lacks the
/// feature it tests): `return skip("no SVE")`. The runner counts it as
/// skipped, neither passed nor failed, and prints the reason.
pub fn skip(reason: &'static str) -> TestResult {
    *SKIP_REASON.lock() = Some(reason);
    Ok(())
}

/// Runs suites and counts results.
#[derive(Debug, Default)]
pub struct Runner {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Runner {
    /// A runner with nothing run yet.
    pub const fn new() -> Self {
        Runner {
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Runs one test, prints its result and counts it. Returns false only
    /// if it failed.
    pub fn run_test(&mut self, suite: &str, test: &Test) -> bool {
        crate::hv_print!("[{}] {} ... ", suite, test.name);
        SKIP_REASON.lock().take();
        let result = (test.run)();
        let skipped = SKIP_REASON.lock().take();
        match (result, skipped) {
            (Ok(()), None) => {
                self.passed += 1;
                crate::hv_println!("ok");
                true
            }
            (Ok(()), Some(reason)) => {
                self.skipped += 1;
                crate::hv_println!("skipped: {}", reason);
                true
            }
            (Err(failure), _) => {
                self.failed += 1;
                crate::hv_println!("FAILED\n[{}] {}: {}", suite, test.name, failure);
                false
            }
        }
    }

    /// Runs every test of `suite`.
    pub fn run_suite(&mut self, suite: &Suite) {
        crate::hv_println!("\n== suite {} ({} tests) ==", suite.name, suite.tests.len());
        for test in suite.tests {
            self.run_test(suite.name, test);
        }
    }

    /// Tests passed so far.
    pub fn passed(&self) -> usize {
        self.passed
    }

    /// Tests failed so far.
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Tests skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Prints the summary line and returns true if nothing failed.
    pub fn finish(&self) -> bool {
        crate::hv_println!(
            "\n{} passed, {} failed, {} skipped",
            self.passed,
            self.failed,
            self.skipped
        );
        self.failed == 0
    }
}

/// Fails the test unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err($crate::selftest::Failure {
                file: file!(),
                line: line!(),
                what: stringify!($cond),
            });
        }
    };
}

/// Fails the test unless `left == right`, printing both values.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            $crate::hv_println!("\n    left : {:?}\n    right: {:?}", left, right);
            return Err($crate::selftest::Failure {
                file: file!(),
                line: line!(),
                what: concat!(stringify!($left), " == ", stringify!($right)),
            });
        }
    }};
}

/// Unwraps an `Ok`/`Some`, failing the test (and printing the error) otherwise.
#[macro_export]
macro_rules! check_ok {
    ($expr:expr) => {
        match $crate::selftest::IntoCheck::into_check($expr) {
            Some(value) => value,
            None => {
                return Err($crate::selftest::Failure {
                    file: file!(),
                    line: line!(),
                    what: stringify!($expr),
                });
            }
        }
    };
}

/// Values [`check_ok!`](crate::check_ok) can unwrap.
pub trait IntoCheck<T> {
    /// The success value, or `None` after printing why there is none.
    fn into_check(self) -> Option<T>;
}

impl<T, E: fmt::Debug> IntoCheck<T> for Result<T, E> {
    fn into_check(self) -> Option<T> {
        match self {
            Ok(value) => Some(value),
            Err(err) => {
                crate::hv_println!("\n    error: {:?}", err);
                None
            }
        }
    }
}

impl<T> IntoCheck<T> for Option<T> {
    fn into_check(self) -> Option<T> {
        if self.is_none() {
            crate::hv_println!("\n    got None");
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes() -> TestResult {
        let two = core::hint::black_box(2);
        check!(two + 1 == 3);
        check_eq!(two, 2);
        let v = check_ok!(Some(5));
        check_eq!(v, 5);
        Ok(())
    }

    fn fails_check() -> TestResult {
        let two = core::hint::black_box(2);
        check!(two == 3);
        Ok(())
    }

    fn fails_eq() -> TestResult {
        let one = core::hint::black_box(1u8);
        check_eq!(one, 2u8);
        Ok(())
    }

    fn skips() -> TestResult {
        if core::hint::black_box(true) {
            return skip("not on this machine");
        }
        Ok(())
    }

    fn fails_ok() -> TestResult {
        let _v: u32 = check_ok!(Err::<u32, &str>("broken"));
        Ok(())
    }

    static SUITE: Suite = Suite {
        name: "demo",
        tests: &[
            Test {
                name: "passes",
                run: passes,
            },
            Test {
                name: "fails_check",
                run: fails_check,
            },
            Test {
                name: "fails_eq",
                run: fails_eq,
            },
            Test {
                name: "fails_ok",
                run: fails_ok,
            },
            Test {
                name: "skips",
                run: skips,
            },
            Test {
                name: "passes_again",
                run: passes,
            },
        ],
    };

    #[test]
    fn runner_counts_passes_failures_and_skips() {
        let mut runner = Runner::new();
        runner.run_suite(&SUITE);
        assert_eq!(runner.passed(), 2);
        assert_eq!(runner.failed(), 3);
        assert_eq!(runner.skipped(), 1);
        assert!(!runner.finish());

        // A skip is neither a pass nor a failure. (One test: the skip
        // reason is global, so tests that skip must not run in parallel.)
        static ONLY_SKIP: Suite = Suite {
            name: "skip",
            tests: &[Test {
                name: "skips",
                run: skips,
            }],
        };
        let mut runner = Runner::new();
        runner.run_suite(&ONLY_SKIP);
        assert_eq!(
            (runner.passed(), runner.failed(), runner.skipped()),
            (0, 0, 1)
        );
        assert!(runner.finish());
    }

    #[test]
    fn failure_names_the_condition() {
        let failure = fails_check().unwrap_err();
        assert_eq!(failure.what, "two == 3");
        assert!(failure.file.ends_with("selftest.rs"));
        assert_eq!(fails_eq().unwrap_err().what, "one == 2u8");
    }

    #[test]
    fn empty_runner_succeeds() {
        assert!(Runner::new().finish());
    }
}
