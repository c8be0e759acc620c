//! Per-guest exit counters by reason, printed when a guest stops and by the monitor.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Exit counts by reason name, kept in first-seen order (few distinct reasons).
#[derive(Clone, Debug, Default)]
pub struct ExitStats {
    counts: Vec<(&'static str, u64)>,
}

impl ExitStats {
    /// Counts one exit of kind `name`.
    pub fn count(&mut self, name: &'static str) {
        match self.counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((name, 1)),
        }
    }

    /// Exits of kind `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| *c)
    }

    /// All exits.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c).sum()
    }

    /// Adds another vCPU's counts.
    pub fn merge(&mut self, other: &ExitStats) {
        for &(n, c) in &other.counts {
            match self.counts.iter_mut().find(|(m, _)| *m == n) {
                Some((_, d)) => *d += c,
                None => self.counts.push((n, c)),
            }
        }
    }

    /// One line: `total 1234: io 1000, cpuid 200, …` (largest first).
    pub fn summary(&self) -> String {
        let mut v = self.counts.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut s = String::new();
        let _ = write!(s, "total {}", self.total());
        for (i, (n, c)) in v.iter().enumerate() {
            let _ = write!(s, "{}{n} {c}", if i == 0 { ": " } else { ", " });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_summarises() {
        let mut s = ExitStats::default();
        for _ in 0..3 {
            s.count("io");
        }
        s.count("cpuid");
        let mut t = ExitStats::default();
        t.count("cpuid");
        t.count("hlt");
        s.merge(&t);
        assert_eq!(s.get("cpuid"), 2);
        assert_eq!(s.total(), 6);
        assert_eq!(s.summary(), "total 6: io 3, cpuid 2, hlt 1");
    }
}
