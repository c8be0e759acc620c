//! What one fuzzing run found, read from libFuzzer's output, and the table, JSON and Markdown
//! reports `cargo xtask fuzz` writes from it.

use std::fmt::Write as _;
use std::path::PathBuf;

/// One target's run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetRun {
    pub name: String,
    /// Wall-clock seconds the fuzzer ran.
    pub seconds: f64,
    /// libFuzzer's `stat::number_of_executed_units` (0 when it printed none, e.g. it crashed
    /// on a seed before the final stats).
    pub execs: u64,
    /// Crash, timeout, out-of-memory and leak artifacts written during this run.
    pub crashes: u32,
    /// Inputs in the working corpus after the run, plus the committed seeds.
    pub corpus_size: u32,
    /// Paths of the artifacts (relative to the repository when inside it).
    pub artifacts: Vec<String>,
    /// libFuzzer's exit status; nonzero with no artifact still counts as a failure.
    pub exit_code: Option<i32>,
    /// The full libFuzzer log.
    pub log: PathBuf,
}

impl TargetRun {
    /// A run fails when it left an artifact or libFuzzer did not exit cleanly.
    pub fn failed(&self) -> bool {
        self.crashes > 0 || self.exit_code != Some(0)
    }
}

/// The value of `stat::number_of_executed_units:` in libFuzzer's final stats
/// (`-print_final_stats=1`); the last one wins if the log holds several.
pub fn executed_units(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("stat::number_of_executed_units:")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Whether a file libFuzzer wrote under its artifact prefix reports a failure. `slow-unit-`
/// files are only slow inputs, not failures.
pub fn is_failure_artifact(file_name: &str) -> bool {
    ["crash-", "timeout-", "oom-", "leak-"]
        .iter()
        .any(|p| file_name.starts_with(p))
}

/// The table printed at the end of a run.
pub fn table(runs: &[TargetRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>8} {:>12} {:>9} {:>7} {:>8}",
        "target", "seconds", "execs", "execs/s", "corpus", "crashes"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<16} {:>8.0} {:>12} {:>9.0} {:>7} {:>8}{}",
            r.name,
            r.seconds,
            r.execs,
            rate(r),
            r.corpus_size,
            r.crashes,
            if r.crashes == 0 && r.exit_code != Some(0) {
                format!("  (libFuzzer exit {:?})", r.exit_code)
            } else {
                String::new()
            }
        );
    }
    for r in runs {
        for a in &r.artifacts {
            let _ = writeln!(out, "artifact ({}): {a}", r.name);
        }
    }
    out
}

fn rate(r: &TargetRun) -> f64 {
    if r.seconds > 0.0 {
        r.execs as f64 / r.seconds
    } else {
        0.0
    }
}

/// `target/fuzz/report.json`: one object per target.
pub fn json(runs: &[TargetRun]) -> String {
    let targets: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                // Tenths of a second are all the wall clock is good for.
                "seconds": (r.seconds * 10.0).round() / 10.0,
                "execs": r.execs,
                "crashes": r.crashes,
                "corpus_size": r.corpus_size,
                "exit_code": r.exit_code,
                "artifacts": r.artifacts,
                "log": crate::paths::display(&r.log),
            })
        })
        .collect();
    // Value's alternate Display is the pretty printer, and cannot fail.
    format!("{:#}\n", serde_json::json!({ "targets": targets }))
}

/// `target/fuzz/report.md`: the same as a Markdown table.
pub fn markdown(runs: &[TargetRun]) -> String {
    let mut out = String::from(
        "# Fuzzing report\n\n| target | seconds | execs | execs/s | corpus | crashes |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.0} | {} | {} |",
            r.name,
            r.seconds,
            r.execs,
            rate(r),
            r.corpus_size,
            r.crashes
        );
    }
    let artifacts: Vec<(&str, &String)> = runs
        .iter()
        .flat_map(|r| r.artifacts.iter().map(move |a| (r.name.as_str(), a)))
        .collect();
    if !artifacts.is_empty() {
        out.push_str("\n## Artifacts\n\n");
        for (name, a) in artifacts {
            let _ = writeln!(out, "- `{name}`: `{a}`");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_final_exec_count() {
        let log = "#2\tINITED cov: 10\n\
                   Done 1234 runs in 2 second(s)\n\
                   stat::number_of_executed_units: 1234\n\
                   stat::average_exec_per_sec:     617\n";
        assert_eq!(executed_units(log), Some(1234));
        assert_eq!(
            executed_units("==1== ERROR: libFuzzer: deadly signal"),
            None
        );
    }

    #[test]
    fn slow_units_are_not_failures() {
        assert!(is_failure_artifact("crash-0123abcd"));
        assert!(is_failure_artifact("timeout-99"));
        assert!(is_failure_artifact("oom-1"));
        assert!(!is_failure_artifact("slow-unit-1"));
    }

    #[test]
    fn reports_name_every_field_and_artifact() {
        let runs = [TargetRun {
            name: "elf\"x".into(),
            seconds: 2.0,
            execs: 100,
            crashes: 1,
            corpus_size: 7,
            artifacts: vec!["target/fuzz/artifacts/elf/crash-1".into()],
            exit_code: Some(77),
            log: PathBuf::from("target/fuzz/logs/elf.log"),
        }];
        let j = json(&runs);
        assert!(j.contains("\"name\": \"elf\\\"x\""), "{j}");
        for field in ["\"seconds\": 2.0", "\"execs\": 100", "\"crashes\": 1"] {
            assert!(j.contains(field), "{field} missing from {j}");
        }
        assert!(j.contains("\"corpus_size\": 7"));
        let read = crate::hostile_report::parse_fuzz(&j).unwrap();
        assert_eq!(
            (read[0].name.as_str(), read[0].execs, read[0].crashes),
            ("elf\"x", 100, 1)
        );
        assert!(table(&runs).contains("artifact (elf\"x): target/fuzz/artifacts/elf/crash-1"));
        assert!(markdown(&runs).contains("| 2 | 100 | 50 | 7 | 1 |"));
        assert!(runs[0].failed());
    }
}
