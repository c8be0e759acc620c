//! The `PASS <guest>/<check>` / `FAIL <guest>/<check>: <why>` markers and the final verdict.
//!
//! Scenario runners match these at line starts; free-form lines start with `<guest>:` instead.

use core::fmt::Display;

use crate::println;
use crate::runtime::exit;

/// Tally of one guest's checks.
#[derive(Debug)]
pub struct Checks {
    guest: &'static str,
    passed: u32,
    failed: u32,
}

impl Checks {
    pub fn new(guest: &'static str) -> Self {
        Self {
            guest,
            passed: 0,
            failed: 0,
        }
    }

    /// Prints `PASS <guest>/<check>`.
    pub fn pass(&mut self, check: &str) {
        self.passed += 1;
        println!("PASS {}/{}", self.guest, check);
    }

    /// Prints `FAIL <guest>/<check>: <why>`.
    pub fn fail(&mut self, check: &str, why: impl Display) {
        self.failed += 1;
        println!("FAIL {}/{}: {}", self.guest, check, why);
    }

    /// Passes or fails `check` by `result`; returns whether it passed.
    pub fn check<E: Display>(&mut self, check: &str, result: Result<(), E>) -> bool {
        match result {
            Ok(()) => {
                self.pass(check);
                true
            }
            Err(why) => {
                self.fail(check, why);
                false
            }
        }
    }

    /// Passes `check` when `is_ok`, else fails it with `why`.
    pub fn expect(&mut self, check: &str, is_ok: bool, why: impl Display) -> bool {
        self.check(check, if is_ok { Ok(()) } else { Err(why) })
    }

    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Checks run so far, passed or failed.
    pub fn count(&self) -> u32 {
        self.passed + self.failed
    }

    /// Prints the one line a hostile-guest report collects, in a fixed format:
    /// `HOSTILE SUMMARY <guest> cases=N iterations=M failed=F ms=T` (`iterations` counts the
    /// individual hostile actions: MSR accesses, CPUID leaves, probed addresses, …).
    pub fn hostile_summary(&self, iterations: u64, elapsed_ms: u64) {
        println!(
            "HOSTILE SUMMARY {} cases={} iterations={} failed={} ms={}",
            self.guest,
            self.count(),
            iterations,
            self.failed,
            elapsed_ms
        );
    }

    /// Prints `PASS <guest>` and exits 0 when nothing failed, else
    /// `FAIL <guest>: N of M checks failed` and exits 1.
    pub fn finish(self) -> ! {
        if self.failed == 0 {
            println!("PASS {}", self.guest);
            exit(0)
        }
        println!(
            "FAIL {}: {} of {} checks failed",
            self.guest,
            self.failed,
            self.failed + self.passed
        );
        exit(1)
    }
}
