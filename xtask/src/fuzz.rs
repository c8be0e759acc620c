//! `cargo xtask fuzz`: builds every cargo-fuzz target in `fuzz/` once, runs each for a fixed
//! time one after another, and reports executions and crashes per target.
//!
//! The committed seeds in `fuzz/corpus/<target>/` are read but never written; what libFuzzer
//! finds goes to `target/fuzz/corpus/<target>/`, crashes to `target/fuzz/artifacts/<target>/`,
//! its output to `target/fuzz/logs/<target>.log`, and the summary to `target/fuzz/report.json`
//! and `report.md`. Needs the nightly toolchain and cargo-fuzz, installed when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use crate::args::{self, Spec};
use crate::fuzz_report::{self, TargetRun};
use crate::paths;
use crate::runner;
use crate::sys::{self, Need};
use crate::verdict;

/// The toolchain cargo-fuzz builds with (libFuzzer's instrumentation needs `-Z` flags).
const NIGHTLY: &str = "nightly";
/// One input that runs this long counts as a hang (libFuzzer writes a `timeout-` artifact).
const INPUT_TIMEOUT_S: u32 = 10;
/// libFuzzer's default is 2 GiB; five engineers share this machine.
const RSS_LIMIT_MB: u32 = 1024;
const DEFAULT_MINUTES: u32 = 1;

fn fuzz_dir() -> PathBuf {
    paths::root().join("fuzz")
}

/// Everything generated: corpora, artifacts, logs, reports.
pub fn out_dir() -> PathBuf {
    paths::target_dir().join("fuzz")
}

/// The JSON report, which `cargo xtask test --hostile` reads too.
pub fn report_json() -> PathBuf {
    out_dir().join("report.json")
}

/// The `[[bin]]` names in fuzz/Cargo.toml, in file order.
pub fn targets() -> Result<Vec<String>, String> {
    let path = fuzz_dir().join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let bins = doc
        .get("bin")
        .and_then(|b| b.as_array())
        .ok_or_else(|| format!("{} has no [[bin]] targets", path.display()))?;
    Ok(bins
        .iter()
        .filter_map(|b| b.get("name")?.as_str().map(str::to_owned))
        .collect())
}

fn run_status(mut command: Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn quietly_succeeds(mut command: Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `rustup run nightly <program>`, free of the pinned toolchain cargo xtask runs under.
fn nightly(program: &str) -> Command {
    let mut command = Command::new("rustup");
    command
        .current_dir(paths::root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .args(["run", NIGHTLY, program]);
    command
}

/// Installs the nightly toolchain and cargo-fuzz when missing, as the other commands install
/// their system packages.
pub fn ensure_tools() -> Result<(), String> {
    sys::ensure(&[Need::Cxx])?;
    let mut probe = nightly("rustc");
    probe.arg("--version");
    if !quietly_succeeds(probe) {
        println!("xtask: fuzz: installing the nightly toolchain (rustup, minimal profile)");
        let mut install = Command::new("rustup");
        install.args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]);
        run_status(install, "rustup toolchain install nightly")?;
    }
    let mut probe = nightly("cargo");
    probe.args(["fuzz", "--version"]);
    if !quietly_succeeds(probe) {
        println!("xtask: fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz)");
        // Any toolchain builds cargo-fuzz; the pinned stable one is already here.
        let mut install = Command::new("cargo");
        install
            .current_dir(paths::root())
            .args(["install", "--locked", "cargo-fuzz"]);
        run_status(install, "cargo install cargo-fuzz")?;
    }
    Ok(())
}

/// Builds all targets once, so the runs that follow fuzz the same binaries. Safe Rust needs no
/// AddressSanitizer; without it each input runs several times faster. Debug assertions and
/// overflow checks stay on (cargo-fuzz's default), so arithmetic slips are found too.
fn build() -> Result<PathBuf, String> {
    let mut command = nightly("cargo");
    command.args(["fuzz", "build", "--fuzz-dir", "fuzz", "--sanitizer", "none"]);
    run_status(command, "cargo fuzz build")?;
    Ok(fuzz_dir()
        .join("target")
        .join("x86_64-unknown-linux-gnu")
        .join("release"))
}

fn count_files(dir: &Path) -> u32 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .count() as u32
    })
}

fn failure_artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| fuzz_report::is_failure_artifact(&n.to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// Runs one built target for `seconds`.
fn run_target(bin_dir: &Path, name: &str, seconds: u32) -> Result<TargetRun, String> {
    let out = out_dir();
    let corpus = out.join("corpus").join(name);
    let artifacts = out.join("artifacts").join(name);
    let logs = out.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        create_dir(dir)?;
    }
    // Earlier runs' artifacts were reported then; only this run's count.
    for old in failure_artifacts(&artifacts) {
        let _ = std::fs::remove_file(old);
    }
    let seeds = fuzz_dir().join("corpus").join(name);
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;

    let mut command = Command::new(bin_dir.join(name));
    command
        .current_dir(paths::root())
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        // libFuzzer wants the trailing slash: the prefix is glued to the file name.
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    let dict = fuzz_dir().join(format!("{name}.dict"));
    if dict.is_file() {
        command.arg(format!("-dict={}", dict.display()));
    }
    // New inputs go to the first folder; the seeds are only read.
    command.arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    command.stdout(log).stderr(log_err);

    println!(
        "xtask: fuzz: {name} for {seconds} s (log: {})",
        paths::display(&log_path)
    );
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("cannot start fuzz target {name}: {e}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    // Lossy: a crashing target may print any bytes, and its log must still be read.
    let text = runner::read_log(&log_path);
    let found = failure_artifacts(&artifacts);
    let run = TargetRun {
        name: name.to_owned(),
        seconds: elapsed,
        execs: fuzz_report::executed_units(&text).unwrap_or(0),
        crashes: found.len() as u32,
        corpus_size: count_files(&corpus) + count_files(&seeds),
        artifacts: found.iter().map(|p| paths::display(p)).collect(),
        exit_code: status.code(),
        log: log_path,
    };
    if run.failed() {
        println!("xtask: fuzz: {name} FAILED; the end of its log:");
        for line in verdict::tail(&text, runner::TAIL_LINES) {
            println!("  | {line}");
        }
    }
    Ok(run)
}

/// Builds and runs `names` for `seconds` each; writes the reports and returns every run.
pub fn campaign(names: &[String], seconds: u32) -> Result<Vec<TargetRun>, String> {
    ensure_tools()?;
    let bin_dir = build()?;
    let mut runs = Vec::new();
    for name in names {
        runs.push(run_target(&bin_dir, name, seconds)?);
    }
    let out = out_dir();
    create_dir(&out)?;
    for (path, text) in [
        (report_json(), fuzz_report::json(&runs)),
        (out.join("report.md"), fuzz_report::markdown(&runs)),
    ] {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    print!("{}", fuzz_report::table(&runs));
    println!(
        "xtask: fuzz: reports in {}/report.json and report.md",
        paths::display(&out)
    );
    Ok(runs)
}

/// The targets to run: all of them, or the one `--target` names.
pub fn select(target: Option<&str>) -> Result<Vec<String>, String> {
    let all = targets()?;
    match target {
        None => Ok(all),
        Some(t) if all.iter().any(|a| a == t) => Ok(vec![t.to_owned()]),
        Some(t) => Err(format!(
            "no fuzz target `{t}`; fuzz/Cargo.toml has: {}",
            all.join(", ")
        )),
    }
}

pub fn fuzz(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: &["list"],
            options: &["minutes", "seconds", "target"],
        },
    )?;
    let names = select(parsed.value("target"))?;
    if parsed.flag("list") {
        for n in &names {
            println!("{n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let seconds = match (parsed.number("minutes")?, parsed.number("seconds")?) {
        (Some(_), Some(_)) => return Err("give --minutes or --seconds, not both".into()),
        (Some(m), None) => m.saturating_mul(60),
        (None, Some(s)) => s,
        (None, None) => DEFAULT_MINUTES * 60,
    };
    if seconds == 0 {
        return Err("a fuzzing run needs at least one second".into());
    }
    let runs = campaign(&names, seconds)?;
    let failed: Vec<&str> = runs
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.name.as_str())
        .collect();
    if failed.is_empty() {
        println!("xtask: fuzz: {} target(s), no crashes", runs.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("xtask: fuzz: crashes in {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead::devices::virtio::testing::fuzz as virtio;

    /// What each cargo-fuzz target calls, so its corpus can be replayed here on stable Rust.
    fn entry_point(target: &str) -> Option<fn(&[u8])> {
        Some(match target {
            "manifest" => bulkhead::manifest::fuzzing::manifest,
            "virtqueue" => virtio::virtqueue,
            "virtio_mmio" => virtio::mmio_registers,
            "virtio_blk" => virtio::blk_request,
            "virtio_net" => virtio::net,
            "virtio_console" => virtio::console,
            "decode" => bulkhead::decode::fuzzing::exit_path,
            "elf" => bulkhead::loader::fuzzing::elf,
            "bzimage" => bulkhead::loader::fuzzing::bzimage,
            "acpi" => bulkhead::loader::fuzzing::acpi,
            _ => return None,
        })
    }

    /// Every committed seed and every crash input kept as a regression passes its target's
    /// oracle: for the manifest, an error with positions or a plan that obeys every rule.
    #[test]
    fn every_committed_corpus_file_passes_its_target() {
        for target in targets().unwrap() {
            let run = entry_point(&target)
                .unwrap_or_else(|| panic!("fuzz target {target} has no entry point here"));
            let dir = fuzz_dir().join("corpus").join(&target);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e} (every target has seeds)", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "no seeds for {target}");
            for file in files {
                let bytes = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&bytes));
                assert!(outcome.is_ok(), "{target}: {} fails", file.display());
            }
        }
    }

    #[test]
    fn every_target_in_fuzz_cargo_toml_is_listed() {
        let all = targets().unwrap();
        for t in ["manifest", "virtqueue", "virtio_blk"] {
            assert!(all.iter().any(|a| a == t), "{t} missing from {all:?}");
        }
        assert!(select(Some("no-such-target")).is_err());
    }
}
