//! What the shell prints: the `list` table and the `stats` report, as lines of text. The glue
//! collects the numbers; this module only lays them out.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::devices::virtio::mmio::TransportStats;
use crate::vmm::stats::ExitStats;

/// What every line of the shell's output starts with, so it stands apart from guest output
/// (`[name] …`) and log lines (`[cpuN] …`).
pub const MONITOR_PREFIX: &str = "[monitor] ";

/// One guest in the `list` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestRow<'a> {
    pub name: &'a str,
    pub state: &'static str,
    pub cpus: &'a [usize],
    pub memory_bytes: u64,
    /// Time since the guest (re)started, while it runs.
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
}

/// One virtio device in the `stats` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    pub slot: u32,
    pub name: &'static str,
    pub stats: TransportStats,
}

fn cpu_list(cpus: &[usize]) -> String {
    let words: Vec<String> = cpus.iter().map(|c| format!("{c}")).collect();
    words.join(",")
}

fn memory(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// `12.345 s`, `3 min 12 s`, `2 h 05 min`.
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}.{:03} s", ms % 1000)
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s / 60) % 60)
    }
}

/// The `list` table: a header and one line per guest.
pub fn list(rows: &[GuestRow<'_>]) -> Vec<String> {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let mut out = Vec::with_capacity(rows.len() + 1);
    out.push(format!(
        "{:<width$}  {:<8}  {:<8}  {:>8}  {:>12}  RESTARTS",
        "NAME", "STATE", "CPUS", "MEMORY", "UPTIME"
    ));
    for r in rows {
        let up = r.uptime_ms.map_or_else(|| String::from("-"), uptime);
        out.push(format!(
            "{:<width$}  {:<8}  {:<8}  {:>8}  {:>12}  {}",
            r.name,
            r.state,
            cpu_list(r.cpus),
            memory(r.memory_bytes),
            up,
            r.restarts
        ));
    }
    out
}

/// The `stats NAME` report.
pub fn stats(
    row: &GuestRow<'_>,
    exits: &ExitStats,
    devices: &[DeviceRow],
    unassigned: (u64, u64),
) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "{}: {}, restarts {}, up {}",
        row.name,
        row.state,
        row.restarts,
        row.uptime_ms.map_or_else(|| String::from("-"), uptime)
    ));
    out.push(format!("{} exits {}", row.name, exits.summary()));
    out.push(format!(
        "{} unassigned accesses: ports {}, memory {}",
        row.name, unassigned.0, unassigned.1
    ));
    if devices.is_empty() {
        out.push(format!("{} has no virtio devices", row.name));
    }
    for d in devices {
        let s = &d.stats;
        out.push(format!(
            "{} slot {} {}: requests {}, bytes to guest {}, bytes from guest {}, errors {}, \
             dropped {}, notifies {}, interrupts {}, resets {}, faults {}",
            row.name,
            d.slot,
            d.name,
            s.device.requests,
            s.device.bytes_to_guest,
            s.device.bytes_from_guest,
            s.device.errors,
            s.device.dropped,
            s.notifies,
            s.interrupts,
            s.resets,
            s.faults
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::DeviceStats;

    fn row<'a>(name: &'a str, cpus: &'a [usize]) -> GuestRow<'a> {
        GuestRow {
            name,
            state: "running",
            cpus,
            memory_bytes: 32 << 20,
            uptime_ms: Some(1234),
            restarts: 2,
        }
    }

    #[test]
    fn the_list_is_a_table() {
        let lines = list(&[
            row("heartbeat", &[2]),
            GuestRow {
                state: "stopped",
                uptime_ms: None,
                memory_bytes: 2 << 30,
                ..row("web", &[1, 3])
            },
        ]);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME       STATE"), "{}", lines[0]);
        assert_eq!(
            lines[1],
            "heartbeat  running   2           32 MiB       1.234 s  2"
        );
        assert_eq!(
            lines[2],
            "web        stopped   1,3          2 GiB             -  2"
        );
    }

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(uptime(5), "0.005 s");
        assert_eq!(uptime(192_000), "3 min 12 s");
        assert_eq!(uptime(7_500_000), "2 h 05 min");
    }

    #[test]
    fn stats_show_exits_and_device_counters() {
        let mut exits = ExitStats::default();
        exits.count("io");
        exits.count("io");
        exits.count("hlt");
        let dev = DeviceRow {
            slot: 0,
            name: "virtio-console",
            stats: TransportStats {
                device: DeviceStats {
                    requests: 3,
                    bytes_to_guest: 6,
                    bytes_from_guest: 40,
                    errors: 0,
                    dropped: 1,
                },
                notifies: 4,
                interrupts: 2,
                ..TransportStats::default()
            },
        };
        let lines = stats(&row("hb", &[1]), &exits, &[dev], (7, 0));
        assert_eq!(lines[0], "hb: running, restarts 2, up 1.234 s");
        assert_eq!(lines[1], "hb exits total 3: io 2, hlt 1");
        assert_eq!(lines[2], "hb unassigned accesses: ports 7, memory 0");
        assert!(lines[3].starts_with(
            "hb slot 0 virtio-console: requests 3, bytes to guest 6, bytes from guest 40, \
             errors 0, dropped 1, notifies 4, interrupts 2"
        ));
        let none = stats(&row("hb", &[1]), &ExitStats::default(), &[], (0, 0));
        assert_eq!(none[1], "hb exits total 0");
        assert_eq!(none[3], "hb has no virtio devices");
    }
}
