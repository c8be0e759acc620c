//! Cargo invocations: the hypervisor, the test guests and the host unit tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::paths;

/// The cargo that runs us (same toolchain), or `cargo` from `$PATH`.
fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(paths::root());
    command
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot start cargo to {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo failed to {what} ({status})"))
    }
}

/// Builds the hypervisor and returns the path of its ELF.
pub fn build_kernel() -> Result<PathBuf, String> {
    let mut command = cargo();
    command.args([
        "build",
        "--release",
        "--target",
        paths::KERNEL_TARGET,
        "-p",
        "bulkhead",
        "--bin",
        "bulkhead",
    ]);
    run(command, "build the hypervisor")?;
    let elf = paths::kernel_elf();
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!(
            "cargo succeeded but {} does not exist",
            elf.display()
        ))
    }
}

/// Builds the test guests when their workspace exists; their ELFs land in
/// `tests/guests/target/x86_64-unknown-none/release/`. Returns whether it built anything.
pub fn build_guests() -> Result<bool, String> {
    let dir = paths::guests_dir();
    if !dir.join("Cargo.toml").is_file() {
        return Ok(false);
    }
    // Through the rustup proxy, not $CARGO: the guests have their own toolchain file, and
    // their own target directory whatever ours is.
    let mut command = Command::new("cargo");
    command
        .current_dir(&dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .args(["build", "--release", "--target", paths::KERNEL_TARGET]);
    run(command, "build the test guests")?;
    Ok(true)
}

/// What `cargo test --workspace` reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostTests {
    pub passed: u32,
    pub failed: u32,
    /// Test binaries (and doc-test runs) that printed a `test result:` line.
    pub suites: u32,
    /// cargo's own verdict (false also when something did not compile).
    pub success: bool,
}

/// Reads one libtest summary line, `test result: ok. 12 passed; 0 failed; ...`.
fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        match what {
            "passed" => passed = n.parse().ok(),
            "failed" => failed = n.parse().ok(),
            _ => {}
        }
    }
    Some((passed?, failed?))
}

/// Runs `cargo test --workspace` (the kernel crate's lib tests and xtask's own), echoing its
/// output and adding up the per-binary summaries.
pub fn host_tests() -> Result<HostTests, String> {
    let mut command = cargo();
    command.args(["test", "--workspace"]).stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start cargo test: {e}"))?;
    let mut result = HostTests::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading cargo test output: {e}"))?;
            println!("{line}");
            if let Some((passed, failed)) = parse_summary(&line) {
                result.passed += passed;
                result.failed += failed;
                result.suites += 1;
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo test: {e}"))?;
    result.success = status.success();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(
            parse_summary(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_summary(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some((3, 2))
        );
        assert_eq!(parse_summary("running 12 tests"), None);
        assert_eq!(parse_summary("test result: garbage"), None);
    }
}
