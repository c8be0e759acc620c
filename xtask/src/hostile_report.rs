//! `cargo xtask test --hostile`: which scenarios make up the hostile battery, and the report
//! that ends it — what was tried (scenario, cases, iterations, fuzz executions) and what was
//! lost (neighbour stalls, wrong bytes, hypervisor failures, fuzz crashes), all of which must
//! be zero. Pure: it reads serial logs and the fuzz report's text, so it is tested here.
//!
//! Guests report in fixed lines the hypervisor prefixes with `[guest] `:
//! `HOSTILE SUMMARY <guest> cases=N iterations=M [refused=R] [key=value ...]` from each
//! hostile guest, `NEIGHBOUR SUMMARY disk-checker rounds=N wrong=W stalls=S max_round_ms=T`
//! from each disk-checker.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Scenarios in the battery besides those named `hostile*`.
const ALSO_HOSTILE: [&str; 4] = [
    "virtio-hostile",
    "guests-isolation",
    "guests-privileged",
    "guests-crash-restart",
];

/// Whether the case `<scenario>.<machine>` belongs to the hostile battery.
pub fn is_hostile_case(case_name: &str) -> bool {
    let scenario = case_name.split('.').next().unwrap_or(case_name);
    scenario.starts_with("hostile") || ALSO_HOSTILE.contains(&scenario)
}

/// What one case tried and lost, read from its serial log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseFigures {
    pub name: String,
    pub passed: bool,
    pub elapsed: Duration,
    /// Summed over the case's `HOSTILE SUMMARY` lines.
    pub hostile_cases: u64,
    pub iterations: u64,
    pub refused: u64,
    /// Guests that printed a `HOSTILE SUMMARY`.
    pub hostile_guests: Vec<String>,
    pub checker_rounds: u64,
    pub neighbour_stalls: u64,
    pub wrong_bytes: u64,
    pub hypervisor_failures: u64,
    /// Every other guest stopped after the last hostile guest did (None: no hostile guest
    /// or no stop lines), so the neighbours ran beside the whole attack.
    pub neighbours_outlived: Option<bool>,
}

/// The guest a hypervisor line `[cpuN guest] INFO  guest: stopped (...` is about.
fn stopped_guest(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("[cpu")?;
    let (prefix, tail) = rest.split_once(']')?;
    tail.trim_start()
        .strip_prefix("INFO")?
        .trim_start()
        .starts_with("guest: stopped (")
        .then(|| prefix.split_once(' ').map(|(_, g)| g))
        .flatten()
}

/// The value of `key=` among space-separated words.
fn field(words: &str, key: &str) -> Option<u64> {
    words.split_whitespace().find_map(|w| {
        let value = w.strip_prefix(key)?.strip_prefix('=')?;
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => value.parse().ok(),
        }
    })
}

/// Reads one case's log. `passed` is the harness' verdict on it; a case that failed with no
/// sign of what went wrong in its log counts as one hypervisor failure, so nothing is lost
/// silently.
pub fn figures(name: &str, passed: bool, elapsed: Duration, log: &str) -> CaseFigures {
    let mut f = CaseFigures {
        name: name.to_owned(),
        passed,
        elapsed,
        ..CaseFigures::default()
    };
    let mut saw_canary_pass = false;
    let mut stops: Vec<(usize, &str)> = Vec::new();
    for (at, line) in log.lines().enumerate() {
        if let Some(guest) = stopped_guest(line) {
            stops.push((at, guest));
        }
        if let Some(at) = line.find("HOSTILE SUMMARY ") {
            let rest = &line[at + "HOSTILE SUMMARY ".len()..];
            // The manifest's name, from the hypervisor's `[name]` prefix (the one stop lines
            // use), else the name the guest gives itself.
            let guest = line[..at]
                .trim_end()
                .strip_prefix('[')
                .and_then(|p| p.strip_suffix(']'))
                .filter(|p| !p.contains(' '))
                .or_else(|| rest.split_whitespace().next())
                .unwrap_or("?");
            // A guest restarted 100 times prints 100 summaries: name it once.
            if !f.hostile_guests.iter().any(|g| g == guest) {
                f.hostile_guests.push(guest.to_owned());
            }
            f.hostile_cases += field(rest, "cases").unwrap_or(0);
            f.iterations += field(rest, "iterations").unwrap_or(0);
            f.refused += field(rest, "refused").unwrap_or(0);
        } else if let Some(at) = line.find("NEIGHBOUR SUMMARY ") {
            let rest = &line[at..];
            f.checker_rounds += field(rest, "rounds").unwrap_or(0);
            f.wrong_bytes += field(rest, "wrong").unwrap_or(0);
            f.neighbour_stalls += field(rest, "stalls").unwrap_or(0);
        } else if line.contains("FAIL heartbeat: canary") {
            f.wrong_bytes += 1;
        } else if line.starts_with("PASS hypervisor-canary") {
            saw_canary_pass = true;
        } else if line.starts_with("PANIC")
            || line.starts_with("FAIL hypervisor-canary")
            || line.starts_with("BULKHEAD EXIT fail")
        {
            f.hypervisor_failures += 1;
        }
    }
    let last_hostile = stops
        .iter()
        .filter(|(_, g)| f.hostile_guests.iter().any(|h| h == g))
        .map(|(at, _)| *at)
        .max();
    f.neighbours_outlived = last_hostile.map(|last| {
        stops
            .iter()
            .filter(|(_, g)| !f.hostile_guests.iter().any(|h| h == g))
            .all(|(at, _)| *at > last)
    });
    let runs_guests = log.contains("GUEST ");
    if runs_guests && !saw_canary_pass && f.hypervisor_failures == 0 {
        // No canary verdict: the hypervisor did not get to the end of the run.
        f.hypervisor_failures += 1;
    }
    let lost = f.neighbour_stalls + f.wrong_bytes + f.hypervisor_failures;
    if !passed && lost == 0 {
        f.hypervisor_failures += 1;
    }
    f
}

/// Executions and crashes of one fuzz target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuzzTarget {
    pub name: String,
    pub execs: u64,
    pub crashes: u64,
}

/// A non-negative count, rounded down; 0 for anything else.
fn count(v: Option<&Value>) -> u64 {
    v.and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64))
    })
    .unwrap_or(0)
}

/// Every object with an `execs` field, named by its `name`/`target` field or by the key it is
/// found under; so the report reads `{"targets": {...}}`, `{"targets": [...]}` or a flat map.
fn collect_fuzz(v: &Value, key: &str, out: &mut Vec<FuzzTarget>) {
    match v {
        Value::Object(members) if members.contains_key("execs") => {
            let name = ["name", "target"]
                .iter()
                .find_map(|k| members.get(*k).and_then(Value::as_str))
                .unwrap_or(key);
            out.push(FuzzTarget {
                name: name.to_owned(),
                execs: count(members.get("execs")),
                crashes: count(members.get("crashes")),
            });
        }
        Value::Object(members) => {
            for (k, child) in members {
                collect_fuzz(child, k, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_fuzz(item, key, out);
            }
        }
        _ => {}
    }
}

/// The fuzz report's targets, or why it could not be read.
pub fn parse_fuzz(text: &str) -> Result<Vec<FuzzTarget>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    collect_fuzz(&v, "?", &mut out);
    Ok(out)
}

/// The state of `cargo xtask fuzz`'s report.
pub enum Fuzz {
    NotRun,
    Unreadable(String),
    Ran(Vec<FuzzTarget>),
}

/// Reads `path` if it exists.
pub fn load_fuzz(path: &Path) -> Fuzz {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Fuzz::NotRun,
        Err(e) => Fuzz::Unreadable(e.to_string()),
        Ok(text) => match parse_fuzz(&text) {
            Ok(targets) => Fuzz::Ran(targets),
            Err(e) => Fuzz::Unreadable(e),
        },
    }
}

/// Everything lost over the battery; the run fails unless it is zero.
pub fn total_lost(cases: &[CaseFigures], fuzz: &Fuzz) -> u64 {
    let fuzz_crashes = match fuzz {
        Fuzz::Ran(t) => t.iter().map(|t| t.crashes).sum(),
        _ => 0,
    };
    cases
        .iter()
        .map(|c| c.neighbour_stalls + c.wrong_bytes + c.hypervisor_failures)
        .sum::<u64>()
        + fuzz_crashes
}

/// The report as Markdown: the tried/lost table per case, totals, and the fuzz targets.
pub fn render(cases: &[CaseFigures], fuzz: &Fuzz, fuzz_path: &str) -> String {
    let mut s = String::from("# Hostile battery\n\n");
    s.push_str(
        "| case | verdict | time | hostile guests | cases | iterations | refused | fuzz execs \
         | checker rounds | neighbours outlived | neighbour stalls | wrong bytes | hypervisor \
         failures / fuzz crashes |\n",
    );
    s.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for c in cases {
        let guests = if c.hostile_guests.is_empty() {
            "-".to_owned()
        } else {
            c.hostile_guests.join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} s | {guests} | {} | {} | {} | | {} | {} | {} | {} | {} |",
            c.name,
            if c.passed { "PASS" } else { "FAIL" },
            c.elapsed.as_secs_f64(),
            c.hostile_cases,
            c.iterations,
            c.refused,
            c.checker_rounds,
            match c.neighbours_outlived {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            c.neighbour_stalls,
            c.wrong_bytes,
            c.hypervisor_failures
        );
        for (k, v) in [
            ("cases", c.hostile_cases),
            ("iterations", c.iterations),
            ("refused", c.refused),
            ("stalls", c.neighbour_stalls),
            ("wrong", c.wrong_bytes),
            ("hv", c.hypervisor_failures),
        ] {
            *totals.entry(k).or_default() += v;
        }
    }
    if let Fuzz::Ran(targets) = fuzz {
        for ft in targets {
            let _ = writeln!(
                s,
                "| fuzz: {} | {} | | | | | | {} | | | | | {} |",
                ft.name,
                if ft.crashes == 0 { "PASS" } else { "FAIL" },
                ft.execs,
                ft.crashes
            );
            *totals.entry("execs").or_default() += ft.execs;
            *totals.entry("hv").or_default() += ft.crashes;
        }
    }
    let t = |k: &str| totals.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "| **total** ({} runs) | | | | {} | {} | {} | {} | | | {} | {} | {} |",
        cases.len(),
        t("cases"),
        t("iterations"),
        t("refused"),
        t("execs"),
        t("stalls"),
        t("wrong"),
        t("hv")
    );
    s.push_str("\nFuzzing: ");
    match fuzz {
        Fuzz::NotRun => {
            let _ = writeln!(s, "not run (no {fuzz_path}; `cargo xtask fuzz` writes it)");
        }
        Fuzz::Unreadable(why) => {
            let _ = writeln!(s, "{fuzz_path} could not be read: {why}");
        }
        Fuzz::Ran(targets) => {
            let _ = writeln!(s, "{} targets from {fuzz_path}", targets.len());
        }
    }
    let lost = total_lost(cases, fuzz);
    let _ = writeln!(
        s,
        "\n**Lost: {lost}** (neighbour stalls + wrong bytes + hypervisor failures + fuzz \
         crashes; must be 0)"
    );
    s
}

#[cfg(test)]
mod tests;
