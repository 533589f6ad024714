//! The in-QEMU test runner: runs registered suites, counts results, prints
//! `N passed, M failed`.
