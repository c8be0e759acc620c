//! From per-run figures to the report: ratio rows (median and spread of the per-run ratios),
//! exits per Linux boot by reason, the footprint; rendered as a terminal table, Markdown and
//! JSON.

use serde::Serialize;

use super::parse::{ExitCounts, GuestFootprint, OwnFootprint};
use super::stats::{self, Spread};
use super::suite::Raw;

/// One compared figure.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub bench: &'static str,
    pub figure: &'static str,
    /// `ours / peer`: what the ratio divides.
    pub compares: &'static str,
    pub ratio: Option<Spread>,
    pub ours_median: Option<f64>,
    pub peer_median: Option<f64>,
    pub unit: &'static str,
}

/// Exits of one reason per Linux boot.
#[derive(Clone, Debug, Serialize)]
pub struct ExitReason {
    pub reason: String,
    pub per_boot: Spread,
    /// Of the median total.
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub runs: usize,
    pub rows: Vec<Row>,
    pub boot_exit_total: Option<Spread>,
    pub boot_exits: Vec<ExitReason>,
    /// Port I/O exits per Linux boot by port (share: of port I/O exits).
    pub boot_ports: Vec<ExitReason>,
    pub blk_exit_total: Option<Spread>,
    pub net_exit_total: Option<Spread>,
    pub own_footprint: Option<OwnFootprint>,
    /// ELF bytes the loader places (text, data) and in memory (with .bss and its heap).
    pub image_file_bytes: Option<u64>,
    pub image_mem_bytes: Option<u64>,
    pub guest_footprints: Vec<(String, GuestFootprint)>,
    pub problems: Vec<String>,
    pub raw: Raw,
}

fn median(values: &[Option<f64>]) -> Option<f64> {
    stats::spread(&stats::present(values)).map(|s| s.median)
}

fn row(
    bench: &'static str,
    figure: &'static str,
    compares: &'static str,
    unit: &'static str,
    ours: &[Option<f64>],
    peer: &[Option<f64>],
) -> Row {
    Row {
        bench,
        figure,
        compares,
        ratio: stats::spread(&stats::ratios(ours, peer)),
        ours_median: median(ours),
        peer_median: median(peer),
        unit,
    }
}

/// Each reason's count per boot, with 0 for a boot that had none of it.
fn by_reason(boots: &[ExitCounts]) -> Vec<ExitReason> {
    let total = stats::spread(&boots.iter().map(|b| b.total as f64).collect::<Vec<_>>());
    let mut names: Vec<&str> = Vec::new();
    for b in boots {
        for (n, _) in &b.by_reason {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let mut out: Vec<ExitReason> = names
        .into_iter()
        .filter_map(|name| {
            let counts: Vec<f64> = boots
                .iter()
                .map(|b| {
                    b.by_reason
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(0.0, |(_, c)| *c as f64)
                })
                .collect();
            let per_boot = stats::spread(&counts)?;
            let share = total.map_or(0.0, |t| per_boot.median / t.median.max(1.0));
            Some(ExitReason {
                reason: name.to_owned(),
                per_boot,
                share,
            })
        })
        .collect();
    out.sort_by(|a, b| b.per_boot.median.total_cmp(&a.per_boot.median));
    out
}

fn totals(boots: &[ExitCounts]) -> Option<Spread> {
    stats::spread(&boots.iter().map(|b| b.total as f64).collect::<Vec<_>>())
}

/// The report for `raw`; `image` is the hypervisor ELF's (file, memory) load size.
pub fn build(raw: Raw, image: Option<(u64, u64)>) -> Report {
    let r = &raw;
    let rows = vec![
        row(
            "boot",
            "wall time to userspace",
            "Bulkhead / QEMU -kernel",
            "s",
            &r.boot_wall_hv_s,
            &r.boot_wall_plain_s,
        ),
        row(
            "boot",
            "guest uptime at userspace",
            "Bulkhead / QEMU -kernel",
            "s",
            &r.boot_uptime_hv_s,
            &r.boot_uptime_plain_s,
        ),
        row(
            "blk",
            "1 MiB O_DIRECT reads",
            "Bulkhead / QEMU virtio-blk",
            "MB/s",
            &r.blk_read_hv_mbps,
            &r.blk_read_plain_mbps,
        ),
        row(
            "blk",
            "1 MiB O_DIRECT writes",
            "Bulkhead / QEMU virtio-blk",
            "MB/s",
            &r.blk_write_hv_mbps,
            &r.blk_write_plain_mbps,
        ),
        row(
            "net",
            "TCP bulk (nc)",
            "switch / guest loopback",
            "MB/s",
            &r.net_peer_mbps,
            &r.net_loopback_mbps,
        ),
        row(
            "exits",
            "CPUID loop, QEMU TCG/SVM",
            "exiting / LFENCE loop",
            "x",
            &r.exit_cost_qemu,
            &vec![Some(1.0); r.exit_cost_qemu.len()],
        ),
        row(
            "exits",
            "CPUID loop, Bochs/VMX",
            "exiting / LFENCE loop",
            "x",
            &r.exit_cost_bochs,
            &vec![Some(1.0); r.exit_cost_bochs.len()],
        ),
        row(
            "noisy",
            "heartbeat CPU (spins per Mtick)",
            "hammer / quiet neighbour",
            "/Mtick",
            &r.heart_spins_hammer,
            &r.heart_spins_quiet,
        ),
        row(
            "noisy",
            "heartbeat CPU (spins per Mtick)",
            "hammer / alone",
            "/Mtick",
            &r.heart_spins_hammer,
            &r.heart_spins_alone,
        ),
        row(
            "noisy",
            "heartbeat beats on time (share of nominal)",
            "hammer / alone",
            "",
            &r.heart_beats_hammer,
            &r.heart_beats_alone,
        ),
        row(
            "tsc",
            "TSC rate Bulkhead calibrated",
            "Bulkhead's / host's",
            "MHz",
            &r.hv_tsc_mhz,
            &vec![r.host_tsc_mhz; r.hv_tsc_mhz.len()],
        ),
    ];
    let rows = rows
        .into_iter()
        .filter(|row| row.ratio.is_some() || row.ours_median.is_some())
        .collect();
    Report {
        runs: raw.runs,
        rows,
        boot_exit_total: totals(&raw.boot_exits),
        boot_exits: by_reason(&raw.boot_exits),
        boot_ports: by_reason(&raw.boot_ports),
        blk_exit_total: totals(&raw.blk_exits),
        net_exit_total: totals(&raw.net_exits),
        own_footprint: raw.own_footprint,
        image_file_bytes: image.map(|i| i.0),
        image_mem_bytes: image.map(|i| i.1),
        guest_footprints: raw.guest_footprints.clone(),
        problems: raw.problems.clone(),
        raw,
    }
}

fn num(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(x) if unit == "x" => format!("{x:.1}"),
        Some(x) if x >= 100.0 => format!("{x:.0} {unit}"),
        Some(x) => format!("{x:.2} {unit}"),
    }
}

fn ratio_cells(s: Option<Spread>) -> (String, String, String) {
    match s {
        None => ("-".into(), "-".into(), "0".into()),
        Some(s) => (
            format!("{:.2}x", s.median),
            format!("{:.2}–{:.2}", s.min, s.max),
            s.runs.to_string(),
        ),
    }
}

/// The rows as cells: bench, figure, compares, ratio, spread, runs, medians.
fn cells(report: &Report) -> Vec<[String; 7]> {
    report
        .rows
        .iter()
        .map(|r| {
            let (ratio, spread, runs) = ratio_cells(r.ratio);
            let medians = if r.unit == "x" {
                format!(
                    "{} LFENCE iterations per exit",
                    num(r.ours_median.map(|m| m - 1.0), "x")
                )
            } else {
                format!(
                    "{} / {}",
                    num(r.ours_median, r.unit),
                    num(r.peer_median, r.unit)
                )
            };
            [
                r.bench.into(),
                r.figure.into(),
                r.compares.into(),
                ratio,
                spread,
                runs,
                medians,
            ]
        })
        .collect()
}

const HEADERS: [&str; 7] = [
    "bench",
    "figure",
    "ratio of",
    "median",
    "min–max",
    "runs",
    "medians (context)",
];

/// The table for the terminal.
pub fn table(report: &Report) -> String {
    let rows = cells(report);
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(widths) {
            s.push_str(&format!("{c}{}  ", " ".repeat(w - c.chars().count())));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&HEADERS.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    if let Some(t) = report.boot_exit_total {
        let top: Vec<String> = report
            .boot_exits
            .iter()
            .take(4)
            .map(|e| {
                format!(
                    "{} {:.0} ({:.0}%)",
                    e.reason,
                    e.per_boot.median,
                    e.share * 100.0
                )
            })
            .collect();
        out.push_str(&format!(
            "exits per Linux boot: {:.0} ({})\n",
            t.median,
            top.join(", ")
        ));
    }
    if !report.boot_ports.is_empty() {
        let top: Vec<String> = report
            .boot_ports
            .iter()
            .take(4)
            .map(|e| format!("{} {:.0}", e.reason, e.per_boot.median))
            .collect();
        out.push_str(&format!("port I/O exits by port: {}\n", top.join(", ")));
    }
    out
}

/// One Markdown table row per reason (or port): median per boot, spread and share; the exit
/// and port tables share these columns.
fn push_exit_rows(md: &mut String, exits: &[ExitReason]) {
    for e in exits {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.1}% |\n",
            e.reason,
            e.per_boot.median,
            e.per_boot.min,
            e.per_boot.max,
            e.share * 100.0
        ));
    }
}

fn kib(v: u64) -> String {
    if v >= 10 << 10 {
        format!("{:.1} MiB", v as f64 / 1024.0)
    } else {
        format!("{v} KiB")
    }
}

/// The Markdown report.
pub fn markdown(report: &Report) -> String {
    let mut md = String::from("# Bulkhead benchmark report\n\n");
    md.push_str(&format!(
        "Made by `cargo xtask bench` ({} run{} each; see docs/BENCHMARKS.md for what each figure \
         compares). Every figure is a ratio of two sides measured back to back in the same run; \
         the medians are context only.\n\n",
        report.runs,
        if report.runs == 1 { "" } else { "s" }
    ));
    md.push_str(&format!(
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    ));
    for r in cells(report) {
        md.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    md.push_str("\n## Exits per Linux boot (boot to userspace, then power-off)\n\n");
    if let Some(t) = report.boot_exit_total {
        md.push_str(&format!(
            "Total {:.0} (min–max {:.0}–{:.0}). For comparison, the blk run's guest: {}; the net \
             client: {}.\n\n| reason | per boot (median) | min–max | share |\n|---|---|---|---|\n",
            t.median,
            t.min,
            t.max,
            report
                .blk_exit_total
                .map_or("-".into(), |s| format!("{:.0}", s.median)),
            report
                .net_exit_total
                .map_or("-".into(), |s| format!("{:.0}", s.median)),
        ));
        push_exit_rows(&mut md, &report.boot_exits);
    } else {
        md.push_str("Not measured.\n");
    }
    if !report.boot_ports.is_empty() {
        md.push_str(
            "\nPort I/O exits per boot by port (the busiest the hypervisor names; `other` is \
             the rest):\n\n| port | per boot (median) | min–max | share of port I/O |\n\
             |---|---|---|---|\n",
        );
        push_exit_rows(&mut md, &report.boot_ports);
    }
    md.push_str("\n## Footprint\n\n");
    if let (Some(f), Some(m)) = (report.image_file_bytes, report.image_mem_bytes) {
        md.push_str(&format!(
            "- Hypervisor image: {} loaded from the ELF, {} in memory (with .bss, which holds \
             the heap).\n",
            kib(f >> 10),
            kib(m >> 10)
        ));
    }
    if let Some(o) = report.own_footprint {
        md.push_str(&format!(
            "- After boot, before guests: heap {} in use of {}; other frames {} (stacks, page \
             tables, low memory; boot modules not counted).\n",
            kib(o.heap_used_kib),
            kib(o.heap_kib),
            kib(o.other_kib)
        ));
    }
    for (bench, g) in &report.guest_footprints {
        md.push_str(&format!(
            "- {bench} run, guest `{}`: RAM {}, overhead {} in frames (nested page table, disk \
             copies) + {} of heap (device state) = {:.3}% of its RAM (vCPU structures made when it starts are not counted).\n",
            g.guest,
            kib(g.ram_kib),
            kib(g.frames_kib),
            kib(g.heap_kib),
            (g.frames_kib + g.heap_kib) as f64 * 100.0 / g.ram_kib.max(1) as f64
        ));
    }
    if !report.problems.is_empty() {
        md.push_str("\n## Problems\n\n");
        for p in &report.problems {
            md.push_str(&format!("- {p}\n"));
        }
    }
    md
}

/// The JSON report.
pub fn json(report: &Report) -> Result<String, String> {
    serde_json::to_string_pretty(report).map_err(|e| format!("report.json: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: u64, reasons: &[(&str, u64)]) -> ExitCounts {
        ExitCounts {
            total,
            by_reason: reasons.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
        }
    }

    fn sample() -> Report {
        let raw = Raw {
            runs: 2,
            boot_wall_hv_s: vec![Some(20.0), Some(30.0)],
            boot_wall_plain_s: vec![Some(5.0), Some(6.0)],
            boot_exits: vec![
                counts(110, &[("io", 100), ("npf", 10)]),
                counts(90, &[("io", 90)]),
            ],
            boot_ports: vec![counts(100, &[("0x3f8", 100)]), counts(90, &[("0x3f8", 90)])],
            exit_cost_qemu: vec![Some(101.0), None],
            problems: vec!["blk-hv-0: timed out".into()],
            ..Raw::default()
        };
        build(raw, Some((1 << 20, 17 << 20)))
    }

    #[test]
    fn rows_are_per_run_ratios() {
        let r = sample();
        let boot = &r.rows[0];
        let s = boot.ratio.unwrap();
        assert_eq!((s.min, s.max, s.median, s.runs), (4.0, 5.0, 4.5, 2));
        assert_eq!(boot.ours_median, Some(25.0));
        // Rows with nothing measured are left out.
        assert!(r.rows.iter().all(|row| row.ratio.is_some()));
        assert_eq!(r.rows.len(), 2);
    }

    #[test]
    fn exit_reasons_count_missing_as_zero() {
        let r = sample();
        assert_eq!(r.boot_exits[0].reason, "io");
        assert_eq!(r.boot_exits[0].per_boot.median, 95.0);
        assert_eq!(r.boot_exits[1].per_boot.min, 0.0);
        assert!((r.boot_exits[0].share - 0.95).abs() < 1e-9);
    }

    #[test]
    fn renderings_carry_the_figures() {
        let r = sample();
        let t = table(&r);
        assert!(t.contains("wall time to userspace"), "{t}");
        assert!(t.contains("4.50x") && t.contains("4.00–5.00"), "{t}");
        assert!(t.contains("exits per Linux boot: 100 (io 95 (95%)"), "{t}");
        let md = markdown(&r);
        assert!(md.contains("| boot | wall time to userspace | Bulkhead / QEMU -kernel | 4.50x |"));
        assert!(md.contains("| io | 95 | 90–100 | 95.0% |"));
        assert!(md.contains("| 0x3f8 | 95 | 90–100 | 100.0% |"), "{md}");
        assert!(t.contains("port I/O exits by port: 0x3f8 95"), "{t}");
        assert!(md.contains("## Problems\n\n- blk-hv-0: timed out"));
        assert!(md.contains("17.0 MiB in memory"));
        let j: serde_json::Value = serde_json::from_str(&json(&r).unwrap()).unwrap();
        assert_eq!(j["rows"][0]["ratio"]["median"], 4.5);
    }
}
