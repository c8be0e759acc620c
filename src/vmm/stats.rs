//! Per-guest exit counters by reason, printed when a guest stops and by the monitor.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Distinct ports counted one by one; the guest chooses its ports, so the table is bounded and
/// later ports share one bucket.
pub const MAX_PORTS: usize = 64;

/// Exit counts by reason name, kept in first-seen order (few distinct reasons), and port I/O
/// exits by port (`cargo xtask bench` reports both).
#[derive(Clone, Debug, Default)]
pub struct ExitStats {
    counts: Vec<(&'static str, u64)>,
    ports: Vec<(u16, u64)>,
    other_ports: u64,
}

impl ExitStats {
    /// Counts one exit of kind `name`.
    pub fn count(&mut self, name: &'static str) {
        match self.counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((name, 1)),
        }
    }

    /// Counts one port I/O exit at `port`.
    pub fn count_port(&mut self, port: u16) {
        self.add_port(port, 1);
    }

    fn add_port(&mut self, port: u16, n: u64) {
        if let Some((_, c)) = self.ports.iter_mut().find(|(p, _)| *p == port) {
            *c += n;
        } else if self.ports.len() < MAX_PORTS {
            self.ports.push((port, n));
        } else {
            self.other_ports += n;
        }
    }

    /// One line: `0x3f8 1200, 0x70 300, …, other 5` (the `top` busiest ports, largest first).
    pub fn ports_summary(&self, top: usize) -> String {
        let mut v = self.ports.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = v.iter().skip(top).map(|(_, c)| c).sum::<u64>() + self.other_ports;
        let mut s = String::new();
        for (i, (p, c)) in v.iter().take(top).enumerate() {
            let _ = write!(s, "{}{p:#x} {c}", if i == 0 { "" } else { ", " });
        }
        if rest > 0 {
            let _ = write!(s, "{}other {rest}", if s.is_empty() { "" } else { ", " });
        }
        s
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
        for &(p, c) in &other.ports {
            self.add_port(p, c);
        }
        self.other_ports += other.other_ports;
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

    #[test]
    fn ports_are_counted_within_a_bound() {
        let mut s = ExitStats::default();
        for _ in 0..3 {
            s.count_port(0x3f8);
        }
        s.count_port(0x70);
        let mut t = ExitStats::default();
        t.count_port(0x70);
        t.count_port(0xcf8);
        s.merge(&t);
        assert_eq!(s.ports_summary(2), "0x3f8 3, 0x70 2, other 1");
        assert_eq!(ExitStats::default().ports_summary(4), "");
        let mut many = ExitStats::default();
        for port in 0..(MAX_PORTS as u16 + 10) {
            many.count_port(port);
        }
        assert_eq!(many.ports.len(), MAX_PORTS);
        assert!(many.ports_summary(0).ends_with("other 74"));
    }
}
