//! `cargo xtask bench`: Bulkhead against a peer measured in the same run (see
//! docs/BENCHMARKS.md). Boots Linux and the test guests under Bulkhead and, where a peer
//! exists, the same guest under plain QEMU, alternating the two; prints a table and writes
//! `target/bench/report.md`, `report.json` and `chart.png`.

mod chart;
mod image;
mod parse;
mod report;
mod runners;
mod setup;
mod stats;
mod suite;

use std::process::ExitCode;
use std::time::Instant;

use crate::args::{self, Spec};
use crate::sys::{self, Need};
use crate::{cargo, linux, paths};

use suite::{Bench, Plan};

/// Runs per figure unless `--runs` or `--quick` says otherwise.
const DEFAULT_RUNS: u32 = 3;
/// More than this would not finish in a working session.
const MAX_RUNS: u32 = 20;

fn plan(parsed: &args::Parsed) -> Result<Plan, String> {
    let runs = match (parsed.flag("quick"), parsed.number("runs")?) {
        (true, Some(_)) => return Err("--quick is --runs 1; give one of them".into()),
        (true, None) => 1,
        (false, runs) => runs.unwrap_or(DEFAULT_RUNS),
    };
    if runs == 0 || runs > MAX_RUNS {
        return Err(format!("--runs wants 1 to {MAX_RUNS}, got {runs}"));
    }
    let benches = match parsed.value("only") {
        None => Bench::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|name| {
                Bench::ALL
                    .into_iter()
                    .find(|b| b.name() == name.trim())
                    .ok_or_else(|| {
                        let all: Vec<&str> = Bench::ALL.iter().map(|b| b.name()).collect();
                        format!("--only: unknown bench `{name}` (known: {})", all.join(", "))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Plan {
        runs: runs as usize,
        benches,
        bochs: !parsed.flag("no-bochs"),
    })
}

pub fn bench(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: &["quick", "no-bochs"],
            options: &["runs", "only"],
        },
    )?;
    let plan = plan(&parsed)?;
    let started = Instant::now();
    let mut needs = vec![Need::Iso, Need::Qemu, Need::Font];
    if plan.bochs && plan.benches.contains(&Bench::Exits) {
        needs.push(Need::Bochs);
    }
    sys::ensure(&needs)?;
    let elf = cargo::build_kernel()?;
    cargo::build_guests()?;
    let artifacts = linux::ensure(linux::Options::default())?;
    let media = setup::prepare(&elf, artifacts, plan.runs)?;
    let raw = suite::run(&media, &plan);
    let image = std::fs::read(&elf).ok().and_then(|b| image::load_size(&b));
    let report = report::build(raw, image);

    let dir = setup::dir();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write("report.md", &report::markdown(&report))?;
    write("report.json", &report::json(&report)?)?;
    let font = std::fs::read(sys::FONT).map_err(|e| format!("reading {}: {e}", sys::FONT))?;
    // plotters keeps registered fonts for the life of the process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    let png = dir.join("chart.png");
    chart::draw(&report, &png, font)?;

    println!("==== bench results ({} run(s) each)", plan.runs);
    print!("{}", report::table(&report));
    for p in &report.problems {
        println!("problem: {p}");
    }
    println!(
        "xtask: bench: {}, report.json, chart.png in {} ({:.0} s)",
        paths::display(&dir.join("report.md")),
        paths::display(&dir),
        started.elapsed().as_secs_f64()
    );
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Plan, String> {
        let spec = Spec {
            flags: &["quick", "no-bochs"],
            options: &["runs", "only"],
        };
        plan(&args::parse(
            words.iter().map(|w| w.to_string()).collect(),
            &spec,
        )?)
    }

    #[test]
    fn options_pick_runs_and_benches() {
        let p = parse(&[]).unwrap();
        assert_eq!((p.runs, p.benches.len(), p.bochs), (3, 5, true));
        assert_eq!(parse(&["--quick"]).unwrap().runs, 1);
        assert_eq!(parse(&["--runs", "5"]).unwrap().runs, 5);
        assert!(parse(&["--quick", "--runs", "2"]).is_err());
        assert!(parse(&["--runs", "0"]).is_err());
        let p = parse(&["--only", "boot,exits", "--no-bochs"]).unwrap();
        assert_eq!(p.benches, vec![Bench::Boot, Bench::Exits]);
        assert!(!p.bochs);
        assert!(parse(&["--only", "disk"])
            .unwrap_err()
            .contains("known: boot"));
    }
}
