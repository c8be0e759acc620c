//! Reading figures out of serial logs: the hypervisor's exit counts and footprint lines, the
//! bench guests' `BENCH` lines (tests/linux/bench-init), exitbench's and heartbeat's reports.
//! Every reader takes the whole log and answers `None`/empty when its line is not there.

use regex::Regex;
use serde::Serialize;

/// Exit counts of one guest, as printed when it stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ExitCounts {
    pub total: u64,
    /// By reason, largest first (the hypervisor's order).
    pub by_reason: Vec<(String, u64)>,
}

/// One timed transfer from bench-init: `BENCH <what> round=<r> bytes=<n> cs=<centiseconds>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    pub what: String,
    pub round: u32,
    pub bytes: u64,
    pub centiseconds: u64,
}

/// exitbench's measurement: `n` CPUIDs took `exit_ticks`, `n` LFENCE iterations `base_ticks`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExitBench {
    pub n: u64,
    pub exit_ticks: u64,
    pub base_ticks: u64,
}

/// heartbeat's closing rate report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeartRate {
    pub beats: u64,
    pub ticks: u64,
    pub spins: u64,
    pub tsc_hz: u64,
}

impl HeartRate {
    /// The share of the nominal beat rate achieved: beats times the period the guest meant
    /// (`period_ms` at the TSC rate it was told) over the ticks they took. Computed in the
    /// guest's own terms, so a different TSC calibration from one boot to the next cancels out.
    pub fn on_time_share(&self, period_ms: u64) -> Option<f64> {
        (self.ticks > 0).then(|| {
            self.beats as f64 * self.tsc_hz as f64 * period_ms as f64 / 1000.0 / self.ticks as f64
        })
    }

    /// Spin iterations per 10^6 TSC ticks: how much CPU the guest got.
    pub fn spins_per_mtick(&self) -> Option<f64> {
        (self.ticks > 0).then(|| self.spins as f64 * 1e6 / self.ticks as f64)
    }
}

/// The hypervisor's own memory, from its `footprint: hypervisor` line (KiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct OwnFootprint {
    pub image_kib: u64,
    pub heap_used_kib: u64,
    pub heap_kib: u64,
    pub other_kib: u64,
}

/// What one guest costs, from its `footprint: guest` line (KiB).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GuestFootprint {
    pub guest: String,
    pub ram_kib: u64,
    pub frames_kib: u64,
    pub heap_kib: u64,
}

fn regex(pattern: &str) -> Regex {
    // The patterns are constants of this file; the unit tests compile every one.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad pattern {pattern}: {e}"))
}

fn num(caps: &regex::Captures, i: usize) -> Option<u64> {
    caps.get(i)?.as_str().parse().ok()
}

/// What follows `key` on the last line of `guest`'s (the hypervisor's `[... guest] ` prefix)
/// that has it.
fn after_last<'a>(log: &'a str, guest: &str, key: &str) -> Option<&'a str> {
    let head = format!(" {guest}] ");
    let line = log
        .lines()
        .rfind(|l| l.contains(&head) && l.contains(key))?;
    Some(&line[line.find(key)? + key.len()..])
}

/// `name count, name count, ...`; items that do not end in a count are skipped.
fn named_counts(list: &str) -> Vec<(String, u64)> {
    list.split(',')
        .filter_map(|item| {
            let (name, count) = item.trim().rsplit_once(' ')?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// The exit counts the hypervisor printed when `guest` stopped (the last such line).
pub fn exit_counts(log: &str, guest: &str) -> Option<ExitCounts> {
    let rest = after_last(log, guest, "exits total ")?;
    let (total, reasons) = rest.split_once(':').unwrap_or((rest, ""));
    Some(ExitCounts {
        total: total.trim().parse().ok()?,
        by_reason: named_counts(reasons),
    })
}

/// The port I/O exits of `guest` by port (`io exits by port: 0x3f8 1200, …, other 5`, printed
/// after its exit counts), as counts whose reasons are the ports.
pub fn port_counts(log: &str, guest: &str) -> Option<ExitCounts> {
    let by_reason = named_counts(after_last(log, guest, "io exits by port: ")?);
    Some(ExitCounts {
        total: by_reason.iter().map(|(_, count)| count).sum(),
        by_reason,
    })
}

/// The `BENCH` transfer lines printed by the guest whose lines start with `prefix` (`""` for a
/// plain QEMU boot, `"[client] "` under Bulkhead).
pub fn transfers(log: &str, prefix: &str) -> Vec<Transfer> {
    let re = regex(r"BENCH (\S+) round=(\d+) bytes=(\d+) cs=(\d+)");
    log.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let c = re.captures(l)?;
            Some(Transfer {
                what: c.get(1)?.as_str().to_owned(),
                round: u32::try_from(num(&c, 2)?).ok()?,
                bytes: num(&c, 3)?,
                centiseconds: num(&c, 4)?,
            })
        })
        .collect()
}

/// The `BENCH error ...` lines, for the report.
pub fn bench_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.find("BENCH error ").map(|at| l[at..].trim().to_owned()))
        .collect()
}

/// exitbench's timing line.
pub fn exitbench(log: &str) -> Option<ExitBench> {
    let re = regex(r"exitbench: cpuid (\d+) in (\d+) ticks, \S+ loop \d+ in (\d+) ticks");
    let c = log.lines().find_map(|l| re.captures(l))?;
    Some(ExitBench {
        n: num(&c, 1)?,
        exit_ticks: num(&c, 2)?,
        base_ticks: num(&c, 3)?,
    })
}

/// heartbeat's rate line.
pub fn heart_rate(log: &str) -> Option<HeartRate> {
    let re = regex(r"heartbeat: rate (\d+) beats in (\d+) ticks, (\d+) spins, TSC (\d+) Hz");
    let c = log.lines().find_map(|l| re.captures(l))?;
    Some(HeartRate {
        beats: num(&c, 1)?,
        ticks: num(&c, 2)?,
        spins: num(&c, 3)?,
        tsc_hz: num(&c, 4)?,
    })
}

/// The TSC rate the hypervisor calibrated (`boot: TSC N MHz`); Linux guests are told it.
pub fn tsc_mhz(log: &str) -> Option<u64> {
    let re = regex(r"boot: TSC (\d+) MHz");
    let c = log.lines().find_map(|l| re.captures(l))?;
    num(&c, 1)
}

/// The hypervisor's own footprint line.
pub fn own_footprint(log: &str) -> Option<OwnFootprint> {
    let re = regex(
        r"footprint: hypervisor image (\d+) KiB \(heap (\d+) KiB in use of (\d+) KiB\), other frames (\d+) KiB",
    );
    let c = log.lines().find_map(|l| re.captures(l))?;
    Some(OwnFootprint {
        image_kib: num(&c, 1)?,
        heap_used_kib: num(&c, 2)?,
        heap_kib: num(&c, 3)?,
        other_kib: num(&c, 4)?,
    })
}

/// Every guest's footprint line, in manifest order.
pub fn guest_footprints(log: &str) -> Vec<GuestFootprint> {
    let re = regex(
        r"footprint: guest (\S+): RAM (\d+) KiB, overhead (\d+) KiB frames \+ (\d+) KiB heap",
    );
    log.lines()
        .filter_map(|l| {
            let c = re.captures(l)?;
            Some(GuestFootprint {
                guest: c.get(1)?.as_str().to_owned(),
                ram_kib: num(&c, 2)?,
                frames_kib: num(&c, 3)?,
                heap_kib: num(&c, 4)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\x1b[H\x1b[J  Booting `Bulkhead'\n\
[cpu0] INFO  boot: TSC 2601 MHz\n\
[cpu0] INFO  hypervisor::setup: footprint: hypervisor image 17032 KiB (heap 120 KiB in use of 16384 KiB), other frames 1700 KiB, boot modules 10480 KiB\n\
[cpu0] INFO  hypervisor::setup: footprint: guest linux: RAM 262144 KiB, overhead 65560 KiB frames + 12 KiB heap\n\
[linux] LINUX USERSPACE up 3.81 s (kernel 6.1.0-56-amd64)\n\
[linux] BENCH blk-write round=1 bytes=67108864 cs=412\n\
[peer] BENCH blk-write round=1 bytes=1 cs=1\n\
[linux] BENCH error blk-read: dd: can't open '/dev/vda'\n\
[cpu1 linux] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 142836: io 134138, npf 3723, intr-window 391\n\
[cpu1 linux] INFO  guest: io exits by port: 0x3f8 134000, 0x70 38, other 100\n\
[cpu3 peer] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 5: io 5\n\
[exitbench] exitbench: cpuid 20000 in 52000000 ticks, lfence loop 20000 in 400000 ticks, TSC 2601744000 Hz\n\
[heartbeat] heartbeat: rate 20 beats in 5203488000 ticks, 90000000 spins, TSC 2601744000 Hz\n";

    #[test]
    fn exit_counts_of_one_guest() {
        let c = exit_counts(LOG, "linux").unwrap();
        assert_eq!(c.total, 142836);
        assert_eq!(
            c.by_reason,
            vec![
                ("io".to_owned(), 134138),
                ("npf".to_owned(), 3723),
                ("intr-window".to_owned(), 391)
            ]
        );
        assert_eq!(exit_counts(LOG, "peer").unwrap().total, 5);
        assert_eq!(exit_counts(LOG, "heartbeat"), None);
        let ports = port_counts(LOG, "linux").unwrap();
        assert_eq!(ports.total, 134138);
        assert_eq!(ports.by_reason[1], ("0x70".to_owned(), 38));
        assert_eq!(port_counts(LOG, "peer"), None);
    }

    #[test]
    fn transfers_of_one_guest_and_errors() {
        let t = transfers(LOG, "[linux] ");
        assert_eq!(
            t,
            vec![Transfer {
                what: "blk-write".into(),
                round: 1,
                bytes: 67108864,
                centiseconds: 412
            }]
        );
        assert_eq!(
            transfers("BENCH net-peer round=2 bytes=9 cs=3\n", "").len(),
            1
        );
        assert_eq!(
            bench_errors(LOG),
            vec!["BENCH error blk-read: dd: can't open '/dev/vda'".to_owned()]
        );
    }

    #[test]
    fn exitbench_heartbeat_and_footprint_lines() {
        let e = exitbench(LOG).unwrap();
        assert_eq!((e.n, e.exit_ticks, e.base_ticks), (20000, 52000000, 400000));
        let h = heart_rate(LOG).unwrap();
        assert_eq!(h.beats, 20);
        assert!((h.spins_per_mtick().unwrap() - 90e6 / 5203.488).abs() < 1e-6);
        // 20 beats of 250 ms at 2601744000 Hz meant 13008720000 ticks; they took 5203488000.
        assert!((h.on_time_share(250).unwrap() - 2.5).abs() < 1e-9);
        let own = own_footprint(LOG).unwrap();
        assert_eq!(
            (own.image_kib, own.heap_used_kib, own.other_kib),
            (17032, 120, 1700)
        );
        let g = guest_footprints(LOG);
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].guest.as_str(), g[0].frames_kib), ("linux", 65560));
        assert_eq!(tsc_mhz(LOG), Some(2601));
        assert!(exitbench("").is_none() && heart_rate("").is_none() && tsc_mhz("").is_none());
        assert!(own_footprint("").is_none() && guest_footprints("").is_empty());
    }
}
