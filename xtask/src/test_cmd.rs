//! `cargo xtask test`: host unit tests, then every boot scenario, then one line
//! `N passed, N failed`.
//!
//! Counting: every host unit test counts once (summed from cargo's per-binary summaries; a
//! `cargo test` that fails without a failing test, e.g. a compile error, counts as one failure),
//! every scenario case counts once, and so does the self-check (a deliberately wrong marker
//! that must make a real boot fail).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::args::{self, Spec};
use crate::iso::{self, IsoSpec};
use crate::machine::{Emulator, Firmware};
use crate::runner::{self, CaseResult, Job};
use crate::scenario::{self, Case, Marker};
use crate::sys::{self, Need};
use crate::verdict::Problem;
use crate::{cargo, fuzz, hostile_report, linux, paths};

const DEFAULT_JOBS: usize = 2;
/// A line nobody prints: the self-check expects it, so its boot must fail.
const SELFCHECK_MARKER: &str = "xtask self-check: this line is never printed";

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub fn test(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: &["long", "skip-host", "list", "no-selfcheck", "hostile"],
            options: &["filter", "jobs"],
        },
    )?;
    let started = Instant::now();
    let filter = parsed.value("filter").unwrap_or("");
    let long = parsed.flag("long");
    let is_hostile = parsed.flag("hostile");
    let cases: Vec<Case> = scenario::load_dir(&paths::scenarios_dir())?
        .into_iter()
        .filter(|c| c.name.contains(filter) && (long || !c.long))
        .filter(|c| !is_hostile || hostile_report::is_hostile_case(&c.name))
        .collect();
    if cases.is_empty() && !filter.is_empty() {
        return Err(format!(
            "no scenario matches --filter `{filter}` (see --list)"
        ));
    }
    if parsed.flag("list") {
        for c in &cases {
            println!("{}", c.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = match parsed.number("jobs")? {
        Some(n) => (n as usize).max(1),
        None => DEFAULT_JOBS,
    };

    let mut tally = Tally::default();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    if !parsed.flag("skip-host") {
        let t = Instant::now();
        println!("==== host unit tests: cargo test --workspace");
        let host = cargo::host_tests()?;
        tally.passed += host.passed;
        tally.failed += host.failed;
        if !host.success && host.failed == 0 {
            println!("xtask: cargo test failed without a failing test (did it compile?)");
            tally.failed += 1;
        }
        println!(
            "xtask: host tests: {} passed, {} failed in {} binaries",
            host.passed, host.failed, host.suites
        );
        timings.push(("host tests", t.elapsed()));
    }

    let mut results = Vec::new();
    if !cases.is_empty() {
        results = run_scenarios(
            cases,
            jobs,
            !parsed.flag("no-selfcheck"),
            &mut tally,
            &mut timings,
        )?;
    }
    if is_hostile {
        hostile_summary(&results, &mut tally)?;
    }

    let mut timing: Vec<String> = timings
        .iter()
        .map(|(what, d)| format!("{what} {}", secs(*d)))
        .collect();
    timing.push(format!("total {}", secs(started.elapsed())));
    println!("xtask: time: {}", timing.join(", "));
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn needs(cases: &[Case]) -> Vec<Need> {
    let mut needs = vec![Need::Iso];
    let any = |f: &dyn Fn(&Case) -> bool| cases.iter().any(f);
    if any(&|c| c.machine.emulator == Emulator::Qemu) {
        needs.push(Need::Qemu);
    }
    if any(&|c| c.machine.firmware == Firmware::Uefi) {
        needs.push(Need::Uefi);
    }
    if any(&|c| c.machine.emulator == Emulator::Bochs) {
        needs.push(Need::Bochs);
    }
    needs
}

/// Builds one ISO per distinct (command line, manifest) and pairs every case with its ISO.
fn build_isos(kernel: &Path, cases: Vec<Case>, out_dir: &Path) -> Result<Vec<Job>, String> {
    let mut built: HashMap<IsoSpec, PathBuf> = HashMap::new();
    let mut work = Vec::new();
    for case in cases {
        let (spec, warnings) = IsoSpec::new(
            kernel.to_path_buf(),
            &case.cmdline,
            case.manifest.as_deref(),
        )?;
        let iso_path = match built.get(&spec) {
            Some(p) => p.clone(),
            None => {
                let p = out_dir.join(format!("iso-{}.iso", built.len()));
                for w in warnings {
                    println!("xtask: warning: {w}");
                }
                iso::build(&spec, &p)?;
                println!(
                    "xtask: {} <- cmdline `{}`{}",
                    paths::display(&p),
                    spec.cmdline,
                    spec.modules
                        .first()
                        .map(|m| format!(
                            ", manifest {} with {} images",
                            paths::display(&m.host_path),
                            spec.modules.len() - 1
                        ))
                        .unwrap_or_default()
                );
                built.insert(spec, p.clone());
                p
            }
        };
        work.push(Job {
            case,
            iso: iso_path,
        });
    }
    Ok(work)
}

/// The self-check: a copy of a QEMU case (the fastest) that also expects a line nobody prints.
fn selfcheck_job(work: &[Job]) -> Option<Job> {
    let base = work
        .iter()
        .find(|j| j.case.machine.emulator == Emulator::Qemu)
        .or_else(|| work.first())?;
    let mut case = base.case.clone();
    case.name = format!("selfcheck.{}", base.case.name);
    case.expect.push(Marker::new(SELFCHECK_MARKER).ok()?);
    Some(Job {
        case,
        iso: base.iso.clone(),
    })
}

/// The self-check passes when its case failed for the planted marker (and possibly for the
/// same reasons as its base case), and fails when the harness let it through.
fn selfcheck_verdict(result: &CaseResult) -> Result<(), String> {
    let caught = result
        .problems
        .iter()
        .any(|p| *p == Problem::Missing(SELFCHECK_MARKER.to_owned()));
    if caught {
        Ok(())
    } else {
        Err(format!(
            "the harness did not report the planted marker `{SELFCHECK_MARKER}` as missing"
        ))
    }
}

fn run_scenarios(
    cases: Vec<Case>,
    jobs: usize,
    selfcheck: bool,
    tally: &mut Tally,
    timings: &mut Vec<(&'static str, Duration)>,
) -> Result<Vec<CaseResult>, String> {
    let count = cases.len() as u32;
    sys::ensure(&needs(&cases))?;
    let t = Instant::now();
    println!("==== building the hypervisor and test guests");
    let any_manifest = cases.iter().any(|c| c.manifest.is_some());
    let built = cargo::build_kernel().and_then(|kernel| {
        if any_manifest {
            cargo::build_guests()?;
            // Linux guests boot Debian's kernel and an initramfs that xtask assembles.
            linux::ensure_for(cases.iter().filter_map(|c| c.manifest.as_deref()))?;
        }
        Ok(kernel)
    });
    let kernel = match built {
        Ok(k) => k,
        Err(e) => {
            println!("xtask: {e}; none of the {count} scenarios can run");
            tally.failed += count;
            return Ok(Vec::new());
        }
    };
    timings.push(("build", t.elapsed()));

    let out_dir = paths::scenario_out_dir();
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let t = Instant::now();
    let mut work = match build_isos(&kernel, cases, &out_dir) {
        Ok(w) => w,
        Err(e) => {
            println!("xtask: ISO: {e}; none of the {count} scenarios can run");
            tally.failed += count;
            return Ok(Vec::new());
        }
    };
    timings.push(("ISOs", t.elapsed()));
    let selfcheck_name = if selfcheck {
        selfcheck_job(&work).map(|job| {
            let name = job.case.name.clone();
            work.push(job);
            name
        })
    } else {
        None
    };

    println!(
        "==== {} boot scenarios, {jobs} at a time (logs in {})",
        work.len(),
        paths::display(&out_dir)
    );
    let t = Instant::now();
    let linux_watches = linux::bench::CaseWatches::start(
        work.iter()
            .filter(|j| Some(&j.case.name) != selfcheck_name.as_ref())
            .map(|j| (j.case.name.as_str(), j.case.manifest.as_deref())),
        |name| out_dir.join(format!("{name}.log")),
    );
    let print_lock = Mutex::new(());
    let results = runner::run_all(&work, jobs, &out_dir, &|r: &CaseResult| {
        let _guard = print_lock.lock();
        let verdict = if Some(&r.name) == selfcheck_name.as_ref() {
            if selfcheck_verdict(r).is_ok() {
                "PASS (failed as it must)"
            } else {
                "FAIL"
            }
        } else if r.passed() {
            "PASS"
        } else {
            "FAIL"
        };
        println!("{verdict:<4} {} ({})", r.name, secs(r.elapsed));
    });
    timings.push(("scenarios", t.elapsed()));
    linux_watches.report();

    let mut failed_names = Vec::new();
    for result in &results {
        if Some(&result.name) == selfcheck_name.as_ref() {
            match selfcheck_verdict(result) {
                Ok(()) => tally.passed += 1,
                Err(why) => {
                    println!("---- {} FAILED: {why}", result.name);
                    tally.failed += 1;
                    failed_names.push(result.name.clone());
                }
            }
        } else if result.passed() {
            tally.passed += 1;
        } else {
            print!("{}", runner::failure_report(result));
            tally.failed += 1;
            failed_names.push(result.name.clone());
        }
    }
    if !failed_names.is_empty() {
        println!("xtask: failed scenarios: {}", failed_names.join(" "));
    }
    Ok(results
        .into_iter()
        .filter(|r| Some(&r.name) != selfcheck_name.as_ref())
        .collect())
}

/// The hostile battery's report: printed, written to `target/hostile/report.md`, and one
/// failure more in the tally unless nothing was lost.
fn hostile_summary(results: &[CaseResult], tally: &mut Tally) -> Result<(), String> {
    let figures: Vec<_> = results
        .iter()
        .map(|r| hostile_report::figures(&r.name, r.passed(), r.elapsed, &r.log))
        .collect();
    let fuzz_path = fuzz::report_json();
    let fuzz = hostile_report::load_fuzz(&fuzz_path);
    let report = hostile_report::render(&figures, &fuzz, &paths::display(&fuzz_path));
    println!("==== hostile battery\n{report}");
    let out_dir = paths::target_dir().join("hostile");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let out = out_dir.join("report.md");
    std::fs::write(&out, &report).map_err(|e| format!("writing {}: {e}", out.display()))?;
    println!("xtask: hostile report in {}", paths::display(&out));
    let lost = hostile_report::total_lost(&figures, &fuzz);
    if lost > 0 {
        println!("xtask: the hostile battery lost {lost} (must be 0)");
        tally.failed += 1;
    } else {
        tally.passed += 1;
    }
    Ok(())
}
